"""Companies and static groups: both trees share one materialized-path space (group ids).

A company's `path` and `sort_key` are those of its static group, so one scope filter on `path`
serves both trees, and `sort_key` orders either in tree order (depth first, siblings by name).
"""

from typing import TYPE_CHECKING

from tortoise import fields
from tortoise.models import Model

from server.models.enums import CompanyType, GroupKind, SetupState, UnlinkReason

if TYPE_CHECKING:  # the relations' targets (the package, whichever module holds them)
    from server.models import Instance

PATH_LENGTH = 400
SORT_KEY_LENGTH = 2000


def top_group(alias: str) -> str:
    """The condition keeping an instance's `All` group (`alias` a static_group; one `?`, the
    instance), as its partial index spells it (migration 0018): one probe, whatever the size."""
    return f"{alias}.instance_id = ? AND {alias}.kind = 'all'"


class StaticGroup(Model):
    id = fields.IntField(primary_key=True)
    instance: fields.ForeignKeyRelation["Instance"] = fields.ForeignKeyField(
        "models.Instance", related_name="groups", on_delete=fields.CASCADE
    )
    instance_id: int
    name = fields.CharField(max_length=255)
    kind = fields.CharEnumField(GroupKind, max_length=16)
    parent: fields.ForeignKeyNullableRelation["StaticGroup"] = fields.ForeignKeyField(
        "models.StaticGroup", related_name="children", null=True, on_delete=fields.RESTRICT
    )
    parent_id: int | None
    company: fields.ForeignKeyNullableRelation["Company"] = fields.ForeignKeyField(
        "models.Company", related_name="groups", null=True, on_delete=fields.RESTRICT
    )
    company_id: int | None
    path = fields.CharField(max_length=PATH_LENGTH)  # "/1/2/9/": ids from the top, this one last
    sort_key = fields.CharField(max_length=SORT_KEY_LENGTH)
    depth = fields.IntField()
    description = fields.CharField(max_length=500, default="")
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "static_group"
        unique_together = (("company", "kind"),)
        # No (instance_id, sort_key): no query reads the groups of an instance in tree order
        # but those of one parent (issue 12: its upkeep was a tenth of a first sync's writes)
        indexes = (
            ("instance_id", "path"),
            ("parent_id", "sort_key", "id"),  # a page of children in tree order
        )


class Company(Model):
    id = fields.IntField(primary_key=True)
    instance: fields.ForeignKeyRelation["Instance"] = fields.ForeignKeyField(
        "models.Instance", related_name="companies", on_delete=fields.CASCADE
    )
    instance_id: int
    public_id = fields.CharField(max_length=64)
    name = fields.CharField(max_length=255)
    sort_name = fields.CharField(max_length=255)  # casefolded name, for flat lists by name
    type = fields.CharEnumField(CompanyType, max_length=16)
    parent: fields.ForeignKeyNullableRelation["Company"] = fields.ForeignKeyField(
        "models.Company", related_name="children", null=True, on_delete=fields.RESTRICT
    )
    parent_id: int | None
    path = fields.CharField(max_length=PATH_LENGTH)  # its static group's path
    sort_key = fields.CharField(max_length=SORT_KEY_LENGTH)  # its static group's sort key
    depth = fields.IntField()
    upstream_status = fields.SmallIntField(default=1)  # 1 active, 2 suspended, 3 waiting
    email = fields.CharField(max_length=254, null=True)
    custom_identifier = fields.CharField(max_length=255, null=True)
    read_only = fields.BooleanField(default=False)  # ancestors above the imported company
    # fingerprints of what the last sync wrote (`reconcile_input`, `license_reconcile`)
    upstream_digest = fields.CharField(max_length=16, null=True)
    license_digest = fields.CharField(max_length=16, null=True)
    setup_state = fields.CharEnumField(SetupState, max_length=8, default=SetupState.PENDING)
    setup_at = fields.DatetimeField(null=True)
    unlinked_at = fields.DatetimeField(null=True)
    unlink_reason = fields.CharEnumField(UnlinkReason, max_length=8, null=True)
    created_at = fields.DatetimeField(auto_now_add=True)
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "company"
        unique_together = (("instance", "public_id"),)
        # Pages order by (sort key, id): each index ends with `id`, so a page is read in order
        # and stops, whatever the planner guesses of the range (no sort over a subtree)
        indexes = (
            ("instance_id", "path"),
            ("instance_id", "sort_key", "id"),
            ("instance_id", "type", "sort_name", "id"),
            ("parent_id", "sort_key", "id"),
            # all a sync that changed nothing reads (`reconcile_scope.differing`); SQLite's
            # only: on PostgreSQL the unique key above includes these columns instead (INCLUDE,
            # migration 0019, which Tortoise cannot declare), one index fewer to write
            (
                "instance_id",
                "public_id",
                "upstream_digest",
                "license_digest",
                "unlink_reason",
                "id",
            ),
        )


class SubtreeCount(Model):
    """Companies and computers in one static group's subtree, kept by every write.

    Companies (its own company included) by type and, for customers, by status; what the
    subtree and the group itself hold: computers, the protected ones, the seats and activations
    of licenses in force. Every write that changes them keeps them right (`domain.counters`),
    so a count over a subtree reads one row whatever its size. No row: nothing below. The first
    line is the table's description, which the migrations record."""

    group_id = fields.IntField(primary_key=True, generated=False)
    instance: fields.ForeignKeyRelation["Instance"] = fields.ForeignKeyField(
        "models.Instance", related_name="subtree_counts", on_delete=fields.CASCADE
    )
    instance_id: int
    distributors = fields.IntField(default=0)
    divisions = fields.IntField(default=0)
    msp_managers = fields.IntField(default=0)
    msps = fields.IntField(default=0)
    managed_msps = fields.IntField(default=0)
    customers_not_set_up = fields.IntField(default=0)
    customers_normal = fields.IntField(default=0)
    customers_unlinked = fields.IntField(default=0)
    computers = fields.IntField(default=0, db_default=0)
    own_computers = fields.IntField(default=0, db_default=0)
    protected = fields.IntField(default=0, db_default=0)  # computers announced CONNECTED, DELAYED
    own_protected = fields.IntField(default=0, db_default=0)
    seats = fields.IntField(default=0, db_default=0)  # of the licenses in force
    own_seats = fields.IntField(default=0, db_default=0)
    activated = fields.IntField(default=0, db_default=0)
    own_activated = fields.IntField(default=0, db_default=0)

    class Meta:
        table = "subtree_count"

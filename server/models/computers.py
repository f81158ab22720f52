"""Computers, the installers that enrol them, and sync runs."""

from typing import TYPE_CHECKING

from tortoise import fields
from tortoise.models import Model

from server.models.enums import ConnectionStatus, ProtectionStatus, SyncState

if TYPE_CHECKING:  # the relations' targets (the package, whichever module holds them)
    from server.models import Company, Instance, StaticGroup, User


class Installer(Model):
    """An enrolment token for a company group, stored as its SHA-256 only."""

    id = fields.IntField(primary_key=True)
    instance: fields.ForeignKeyRelation["Instance"] = fields.ForeignKeyField(
        "models.Instance", related_name="installers", on_delete=fields.CASCADE
    )
    instance_id: int
    company: fields.ForeignKeyRelation["Company"] = fields.ForeignKeyField(
        "models.Company", related_name="installers", on_delete=fields.RESTRICT
    )
    company_id: int
    group: fields.ForeignKeyRelation["StaticGroup"] = fields.ForeignKeyField(
        "models.StaticGroup", related_name="installers", on_delete=fields.RESTRICT
    )
    group_id: int
    name = fields.CharField(max_length=255)
    token_hash = fields.CharField(max_length=64, unique=True)
    created_by: fields.ForeignKeyNullableRelation["User"] = fields.ForeignKeyField(
        "models.User", related_name="installers", null=True, on_delete=fields.SET_NULL
    )
    created_by_id: int | None
    created_at = fields.DatetimeField(auto_now_add=True)
    expires_at = fields.DatetimeField(null=True)
    revoked_at = fields.DatetimeField(null=True)
    max_enrolments = fields.IntField(null=True)  # None: as many as it lives to enrol
    enrolments = fields.IntField(default=0, db_default=0)  # raised by each enrolment

    class Meta:
        table = "installer"


class Computer(Model):
    id = fields.IntField(primary_key=True)
    instance: fields.ForeignKeyRelation["Instance"] = fields.ForeignKeyField(
        "models.Instance", related_name="computers", on_delete=fields.CASCADE
    )
    instance_id: int
    group: fields.ForeignKeyRelation["StaticGroup"] = fields.ForeignKeyField(
        "models.StaticGroup", related_name="computers", on_delete=fields.RESTRICT
    )
    group_id: int
    company: fields.ForeignKeyNullableRelation["Company"] = fields.ForeignKeyField(
        "models.Company", related_name="computers", null=True, on_delete=fields.RESTRICT
    )
    company_id: int | None
    installer: fields.ForeignKeyNullableRelation["Installer"] = fields.ForeignKeyField(
        "models.Installer", related_name="computers", null=True, on_delete=fields.SET_NULL
    )
    installer_id: int | None
    # Set when an enrolment named the hardware of an enrolled computer without its agent
    # token: a conflict for a console user to settle (resolveDuplicateComputer).
    duplicate_of: fields.ForeignKeyNullableRelation["Computer"] = fields.ForeignKeyField(
        "models.Computer", related_name="duplicates", null=True, on_delete=fields.NO_ACTION
    )
    duplicate_of_id: int | None
    name = fields.CharField(max_length=255)
    sort_name = fields.CharField(max_length=255)
    hardware_id = fields.CharField(max_length=255)
    os = fields.CharField(max_length=255, null=True)
    agent_version = fields.CharField(max_length=64, null=True)
    protection_status = fields.CharEnumField(ProtectionStatus, max_length=8, null=True)
    agent_token_hash = fields.CharField(max_length=64, null=True, unique=True)
    enrolled_at = fields.DatetimeField(auto_now_add=True)
    last_connected_at = fields.DatetimeField(null=True)
    # The status last announced to subscribers, so transitions are detected once.
    announced_status = fields.CharEnumField(
        ConnectionStatus, max_length=16, default=ConnectionStatus.NEVER_CONNECTED
    )

    class Meta:
        table = "computer"
        # One original per hardware id and company: a partial unique index on
        # (instance_id, company_id, hardware_id) WHERE duplicate_of_id IS NULL, made by
        # migration 0004 (Tortoise cannot declare one that SQLite accepts).
        indexes = (
            ("duplicate_of_id",),
            ("instance_id", "group_id", "sort_name", "id"),  # a group's computers by name
            ("instance_id", "sort_name", "id"),  # every computer by name, a page at a time
            ("instance_id", "last_connected_at"),
            ("announced_status", "last_connected_at"),  # the transition detector
        )


class SyncRun(Model):
    id = fields.IntField(primary_key=True)
    instance: fields.ForeignKeyRelation["Instance"] = fields.ForeignKeyField(
        "models.Instance", related_name="sync_runs", on_delete=fields.CASCADE
    )
    instance_id: int
    state = fields.CharEnumField(SyncState, max_length=16, default=SyncState.QUEUED)
    trigger = fields.CharField(max_length=32)
    phase = fields.CharField(max_length=32, null=True)
    created_at = fields.DatetimeField(auto_now_add=True)
    started_at = fields.DatetimeField(null=True)
    finished_at = fields.DatetimeField(null=True)
    companies_seen = fields.IntField(default=0)
    created = fields.IntField(default=0)
    updated = fields.IntField(default=0)
    moved = fields.IntField(default=0)
    unlinked = fields.IntField(default=0)
    relinked = fields.IntField(default=0)
    licenses_seen = fields.IntField(default=0, db_default=0)
    licenses_created = fields.IntField(default=0, db_default=0)
    licenses_updated = fields.IntField(default=0, db_default=0)
    licenses_removed = fields.IntField(default=0, db_default=0)
    error = fields.TextField(null=True)

    class Meta:
        table = "sync_run"
        indexes = (("instance_id", "state"),)

"""Licenses synced from the MSP Administrator, and the daily usage ledger billed from them.

A license belongs to a company, so the company's path scopes it (area LICENSES). The ledger
keeps, per instance and day, the seats of that day's last snapshot per company and product:
rows carry no key to a license, so the history outlives licenses that go away upstream.
"""

from typing import TYPE_CHECKING

from tortoise import fields
from tortoise.models import Model

from server.models.enums import LicenseState

if TYPE_CHECKING:  # the relations' targets (the package, whichever module holds them)
    from server.models import Company, Instance

LICENSE_KEY_LENGTH = 64
PRODUCT_NAME_LENGTH = 255
SEARCH_TEXT_LENGTH = LICENSE_KEY_LENGTH + 1 + PRODUCT_NAME_LENGTH


class License(Model):
    """A license of a company, synced from the MSP Administrator.

    The database holds one composite key where these fields declare two (migration 0016,
    which Tortoise cannot express): (company_id, instance_id) references company (id,
    instance_id), ON DELETE RESTRICT, so a license never sits in another instance than its
    company's; the instance's CASCADE is the ORM's only, and removing an instance deletes its
    licenses first."""

    id = fields.IntField(primary_key=True)
    instance: fields.ForeignKeyRelation["Instance"] = fields.ForeignKeyField(
        "models.Instance", related_name="licenses", on_delete=fields.CASCADE
    )
    instance_id: int
    company: fields.ForeignKeyRelation["Company"] = fields.ForeignKeyField(
        "models.Company", related_name="licenses", on_delete=fields.RESTRICT
    )
    company_id: int
    public_license_key = fields.CharField(max_length=LICENSE_KEY_LENGTH)
    product_code = fields.IntField()
    product_name = fields.CharField(max_length=PRODUCT_NAME_LENGTH)
    seats = fields.IntField()  # ordered: the upstream quantity
    activated = fields.IntField()  # the upstream usage; above seats when overused
    state = fields.CharEnumField(LicenseState, max_length=16)
    trial = fields.BooleanField(default=False)
    expires_at = fields.DatetimeField(null=True)  # 00:00 UTC of the upstream expiration date
    search_text = fields.CharField(max_length=SEARCH_TEXT_LENGTH)  # casefolded key and product
    created_at = fields.DatetimeField(auto_now_add=True)
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "license"
        unique_together = (("instance", "public_license_key"),)
        indexes = (("instance_id", "company_id"), ("instance_id", "expires_at"))


class UsageDay(Model):
    """A day of an instance that has a usage snapshot (and the claim of the scheduled one).

    The unique (instance, day) row lets one process of all workers and hosts take the day's
    scheduled snapshot: whoever inserts it takes it."""

    id = fields.IntField(primary_key=True)
    instance: fields.ForeignKeyRelation["Instance"] = fields.ForeignKeyField(
        "models.Instance", related_name="usage_days", on_delete=fields.CASCADE
    )
    instance_id: int
    day = fields.DateField()
    taken_at = fields.DatetimeField()
    trigger = fields.CharField(max_length=16)  # "schedule" or "sync"

    class Meta:
        table = "usage_day"
        unique_together = (("instance", "day"),)


class UsageLine(Model):
    """Seats of one company and product in a day's last snapshot (billable licenses only).

    As for `License`, the database holds one composite key where these fields declare two
    (migration 0016): (company_id, instance_id) references company (id, instance_id), ON
    DELETE RESTRICT; the instance's CASCADE is the ORM's only."""

    id = fields.BigIntField(primary_key=True)
    instance: fields.ForeignKeyRelation["Instance"] = fields.ForeignKeyField(
        "models.Instance", related_name="usage_lines", on_delete=fields.CASCADE
    )
    instance_id: int
    day = fields.DateField()
    company: fields.ForeignKeyRelation["Company"] = fields.ForeignKeyField(
        "models.Company", related_name="usage_lines", on_delete=fields.RESTRICT
    )
    company_id: int
    product_code = fields.IntField()
    product_name = fields.CharField(max_length=PRODUCT_NAME_LENGTH)
    seats = fields.IntField()
    activated = fields.IntField()
    licenses = fields.IntField()

    class Meta:
        table = "usage_line"
        unique_together = (("instance", "day", "company", "product_code"),)
        # a company's month holds every column the report reads: a page of the report is read
        # off this index alone, no row of the table (one per company, product and day)
        indexes = (("company_id", "day", "product_code", "seats", "product_name"),)

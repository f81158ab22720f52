"""The daily usage ledger: a row per instance and day with a snapshot (also the claim of the
scheduled one), and the seats per company and product of that day's last snapshot (issue 13)."""

from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise import fields
from tortoise.indexes import Index


class Migration(migrations.Migration):
    dependencies = [("models", "0007_licenses")]

    initial = False

    operations = [
        ops.CreateModel(
            name="UsageDay",
            fields=[
                (
                    "id",
                    fields.IntField(generated=True, primary_key=True, unique=True, db_index=True),
                ),
                (
                    "instance",
                    fields.ForeignKeyField(
                        "models.Instance",
                        source_field="instance_id",
                        db_constraint=True,
                        to_field="id",
                        related_name="usage_days",
                        on_delete="CASCADE",
                    ),
                ),
                ("day", fields.DateField()),
                ("taken_at", fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ("trigger", fields.CharField(max_length=16)),
            ],
            options={
                "table": "usage_day",
                "app": "models",
                "unique_together": (("instance", "day"),),
                "pk_attr": "id",
                "table_description": "A day of an instance that has a usage snapshot (and the claim of the scheduled one).",
            },
            bases=["Model"],
        ),
        ops.CreateModel(
            name="UsageLine",
            fields=[
                (
                    "id",
                    fields.BigIntField(
                        generated=True, primary_key=True, unique=True, db_index=True
                    ),
                ),
                (
                    "instance",
                    fields.ForeignKeyField(
                        "models.Instance",
                        source_field="instance_id",
                        db_constraint=True,
                        to_field="id",
                        related_name="usage_lines",
                        on_delete="CASCADE",
                    ),
                ),
                ("day", fields.DateField()),
                (
                    "company",
                    fields.ForeignKeyField(
                        "models.Company",
                        source_field="company_id",
                        db_constraint=True,
                        to_field="id",
                        related_name="usage_lines",
                        on_delete="RESTRICT",
                    ),
                ),
                ("product_code", fields.IntField()),
                ("product_name", fields.CharField(max_length=255)),
                ("seats", fields.IntField()),
                ("activated", fields.IntField()),
                ("licenses", fields.IntField()),
            ],
            options={
                "table": "usage_line",
                "app": "models",
                "unique_together": (("instance", "day", "company", "product_code"),),
                "indexes": [Index(fields=["company_id", "day"])],
                "pk_attr": "id",
                "table_description": "Seats of one company and product in a day's last snapshot (billable licenses only).",
            },
            bases=["Model"],
        ),
    ]

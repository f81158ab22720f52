"""Licenses per company, synced from the MSP Administrator with the company tree, and the sync
run's license counters (issue 13)."""

from tortoise import migrations
from tortoise.migrations import operations as ops
from server.models.enums import LicenseState
from tortoise import fields
from tortoise.indexes import Index


async def byte_order(apps, schema_editor) -> None:
    """On PostgreSQL, licenses list by key byte-wise (COLLATE "C", as on SQLite), so the key's
    unique index serves the keyset pages."""
    client = schema_editor.client
    if client.capabilities.dialect != "postgres":
        return
    await client.execute_script(
        'ALTER TABLE "license" ALTER COLUMN "public_license_key" TYPE VARCHAR(64) COLLATE "C"'
    )


class Migration(migrations.Migration):
    dependencies = [("models", "0006_subtree_counts")]

    initial = False

    operations = [
        ops.CreateModel(
            name="License",
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
                        related_name="licenses",
                        on_delete="CASCADE",
                    ),
                ),
                (
                    "company",
                    fields.ForeignKeyField(
                        "models.Company",
                        source_field="company_id",
                        db_constraint=True,
                        to_field="id",
                        related_name="licenses",
                        on_delete="RESTRICT",
                    ),
                ),
                ("public_license_key", fields.CharField(max_length=64)),
                ("product_code", fields.IntField()),
                ("product_name", fields.CharField(max_length=255)),
                ("seats", fields.IntField()),
                ("activated", fields.IntField()),
                (
                    "state",
                    fields.CharEnumField(
                        description="ACTIVE: ACTIVE\nSUSPENDED: SUSPENDED\nEXPIRED: EXPIRED\nCANCELED: CANCELED",
                        enum_type=LicenseState,
                        max_length=16,
                    ),
                ),
                ("trial", fields.BooleanField(default=False)),
                ("expires_at", fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ("search_text", fields.CharField(max_length=320)),
                ("created_at", fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ("updated_at", fields.DatetimeField(auto_now=True, auto_now_add=False)),
            ],
            options={
                "table": "license",
                "app": "models",
                "unique_together": (("instance", "public_license_key"),),
                "indexes": [
                    Index(fields=["instance_id", "company_id"]),
                    Index(fields=["instance_id", "expires_at"]),
                ],
                "pk_attr": "id",
            },
            bases=["Model"],
        ),
        *(
            ops.AddField(
                model_name="SyncRun", name=name, field=fields.IntField(default=0, db_default=0)
            )
            for name in (
                "licenses_seen",
                "licenses_created",
                "licenses_updated",
                "licenses_removed",
            )
        ),
        ops.RunPython(byte_order, reverse_code=ops.RunPython.noop),
    ]

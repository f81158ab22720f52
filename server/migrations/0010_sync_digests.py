"""Fingerprints a sync compares instead of rows (issue 12): of each company's upstream values
as the last sync wrote them, and of its license listing as the last sync applied it; NULL: not
known (before this migration; a license's moving away), compared in full. One index holds them
with what else a sync that changed nothing needs to see so, read without the table's rows."""

from tortoise import fields, migrations
from tortoise.indexes import Index
from tortoise.migrations import operations as ops


class Migration(migrations.Migration):
    dependencies = [("models", "0009_computer_counts")]

    initial = False

    operations = [
        ops.AddField(
            model_name="Company",
            name="upstream_digest",
            field=fields.CharField(max_length=16, null=True),
        ),
        ops.AddField(
            model_name="Company",
            name="license_digest",
            field=fields.CharField(max_length=16, null=True),
        ),
        ops.AddIndex(
            model_name="Company",
            index=Index(
                fields=[
                    "instance_id",
                    "public_id",
                    "upstream_digest",
                    "license_digest",
                    "unlink_reason",
                    "id",
                ]
            ),
        ),
    ]

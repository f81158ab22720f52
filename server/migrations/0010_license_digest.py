"""A fingerprint of each company's license listing as the last sync applied it, so a sync
compares the licenses of only the companies whose listing changed (issue 12). NULL: not known
(before this migration, or after a license of the company moved away): compared in full."""

from tortoise import fields, migrations
from tortoise.migrations import operations as ops


class Migration(migrations.Migration):
    dependencies = [('models', '0008_usage_ledger')]

    initial = False

    operations = [
        ops.AddField(
            model_name="Company",
            name="license_digest",
            field=fields.CharField(max_length=32, null=True),
        ),
    ]

"""The usage report reads a company's month off one index (issue 12): (company_id, day) gains
the columns the report sums, so a page reads no ledger row, where it read one per company,
product and day, each on another table page (the ledger is written a day at a time)."""

from tortoise import migrations
from tortoise.indexes import Index
from tortoise.migrations import operations as ops


class Migration(migrations.Migration):
    dependencies = [("models", "0012_sync_upkeep")]

    initial = False

    operations = [
        ops.AddIndex(
            model_name="UsageLine",
            index=Index(fields=["company_id", "day", "product_code", "seats", "product_name"]),
        ),
        ops.RemoveIndex(model_name="UsageLine", fields=["company_id", "day"]),
    ]

"""Two partial indexes on the companies a sync's license read looks up besides those whose
listing changed: the unlinked ones and the read-only ancestors (issue 12). Both are few, so the
indexes cost next to nothing to keep; without them that lookup read every company of the
instance in every sync that changed a listing (0.2-0.4 s at 100,000 companies). The query
spells the conditions as the indexes do (`read_only = TRUE`, not a parameter), which is what
lets either database use them."""

from tortoise import migrations
from tortoise.migrations import operations as ops

UNLINKED_INDEX = "idx_company_unlinked"
READ_ONLY_INDEX = "idx_company_read_only"


class Migration(migrations.Migration):
    dependencies = [("models", "0011_short_sort_keys")]

    initial = False

    operations = [
        ops.RunSQL(
            f'CREATE INDEX "{UNLINKED_INDEX}" ON "company" ("instance_id") '
            'WHERE "unlinked_at" IS NOT NULL',
            reverse_sql=f'DROP INDEX "{UNLINKED_INDEX}"',
        ),
        ops.RunSQL(
            f'CREATE INDEX "{READ_ONLY_INDEX}" ON "company" ("instance_id") '
            'WHERE "read_only" = TRUE',
            reverse_sql=f'DROP INDEX "{READ_ONLY_INDEX}"',
        ),
    ]

"""What a sync's writes cost at 100,000 companies (issue 12).

Two partial indexes on the companies a sync's license read looks up besides those whose listing
changed: the unlinked ones and the read-only ancestors. Both are few, so the indexes cost next
to nothing to keep; without them that lookup read every company of the instance in every sync
that changed a listing (0.2-0.4 s). The query spells the conditions as the indexes do
(`read_only = TRUE`, not a parameter), which is what lets either database use them.

On PostgreSQL, the sequences of the tables a sync fills hand each connection 1,000 keys at a
time: a first sync reserves some 400,000 keys (`bulk.reserve_ids`), and one `nextval` at a time
cost half a second of it. Keys stay unique; a connection that closes leaves a gap, and nothing
reads order into these keys beyond telling rows apart."""

from tortoise import migrations
from tortoise.migrations import operations as ops

UNLINKED_INDEX = "idx_company_unlinked"
READ_ONLY_INDEX = "idx_company_read_only"
SEQUENCE_CACHE = 1000
SYNCED_TABLES = ("company", "static_group", "license")


async def cache_keys(apps, schema_editor) -> None:
    client = schema_editor.client
    if client.capabilities.dialect != "postgres":
        return
    for table in SYNCED_TABLES:
        await client.execute_script(f"ALTER SEQUENCE {table}_id_seq CACHE {SEQUENCE_CACHE}")


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
        ops.RunPython(cache_keys, reverse_code=ops.RunPython.noop),
    ]

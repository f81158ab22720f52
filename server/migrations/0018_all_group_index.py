"""One `All` group per instance, found with one index probe: a partial unique index on
static_group (instance_id) WHERE kind = 'all'. Every lookup of an instance's top group (its
counters' row, the path audit entries and sync checks start from) read all of the instance's
groups on both databases: 17 ms at 100,000 companies on SQLite, for every filtered computers
page and every audit entry without a group. The queries spell `kind = 'all'` as the index does
(`models.companies.top_group`): a parameter in its place would not reach a partial index."""

from tortoise import migrations
from tortoise.migrations import operations as ops

ALL_GROUP_INDEX = "idx_static_group_all"


class Migration(migrations.Migration):
    dependencies = [("models", "0017_known_sign_in_sites")]

    initial = False

    operations = [
        ops.RunSQL(
            f'CREATE UNIQUE INDEX "{ALL_GROUP_INDEX}" ON "static_group" ("instance_id") '
            "WHERE \"kind\" = 'all'",
            reverse_sql=f'DROP INDEX "{ALL_GROUP_INDEX}"',
        ),
    ]

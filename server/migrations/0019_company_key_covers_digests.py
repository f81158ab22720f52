"""On PostgreSQL the company's unique (instance_id, public_id) carries the fingerprints a sync
reads (`reconcile_scope.differing`) as INCLUDE columns, in place of 0010's index of
(instance_id, public_id, upstream_digest, license_digest, unlink_reason, id): the same read, off
the same kind of index range without the table's rows, and one index fewer to keep. That index
held the key's two columns first, so every company written (100,000 in a first sync) was written
into two indexes of the same key: some 0.65 s of a first sync's company COPY on a slow machine.

SQLite has no INCLUDE: it keeps both, as the model declares them (Tortoise cannot declare
INCLUDE either). The key keeps its name, so the model's unique_together names it still."""

from typing import Any

from tortoise import migrations
from tortoise.migrations import operations as ops

PUBLIC_ID_KEY = "uid_company_instanc_fe3ba8"
DIGESTS_INDEX = "idx_company_instanc_a21e19"
INCLUDED = ("upstream_digest", "license_digest", "unlink_reason", "id")


def _columns(names: tuple[str, ...]) -> str:
    return ", ".join(f'"{name}"' for name in names)


async def forward(apps: Any, schema_editor: Any) -> None:
    client = schema_editor.client
    if client.capabilities.dialect != "postgres":
        return
    await client.execute_script(f'DROP INDEX "{DIGESTS_INDEX}"')
    await client.execute_script(
        f'ALTER TABLE "company" DROP CONSTRAINT "{PUBLIC_ID_KEY}", ADD CONSTRAINT '
        f'"{PUBLIC_ID_KEY}" UNIQUE ("instance_id", "public_id") INCLUDE ({_columns(INCLUDED)})'
    )


async def backward(apps: Any, schema_editor: Any) -> None:
    client = schema_editor.client
    if client.capabilities.dialect != "postgres":
        return
    await client.execute_script(
        f'ALTER TABLE "company" DROP CONSTRAINT "{PUBLIC_ID_KEY}", ADD CONSTRAINT '
        f'"{PUBLIC_ID_KEY}" UNIQUE ("instance_id", "public_id")'
    )
    await client.execute_script(
        f'CREATE INDEX "{DIGESTS_INDEX}" ON "company" '
        f'({_columns(("instance_id", "public_id", *INCLUDED))})'
    )


class Migration(migrations.Migration):
    dependencies = [("models", "0018_all_group_index")]

    initial = False

    operations = [ops.RunPython(forward, reverse_code=backward)]

"""On PostgreSQL the company, the static group and the subtree counter rows lose their foreign
key to the instance; SQLite keeps them.

Those keys said only that the instance exists: they never kept a row out of the wrong tenant
(any existing instance satisfies them; the company keys of 0016 do that). Their guard is now
taken once per transaction instead of once per row: every writer of these rows holds the
instance's row from its start (`instances.keep_from_removal`), the row the removal locks first,
and the removal deletes them by name, not by cascade. Checked per row they cost a first sync of
100,000 companies 300,000 key checks, each of them locking the instance's row again: about 1 s
of its 10 s (`python -m tests.bench.sync --companies 100000` on PostgreSQL, three alternating
pairs with and without them: 0.3, 1.7 and 1.3 s less without).

The keys of the company tree (a company's parent, a group's parent and company) and of the
company-owned tables (license, usage line: 0016) stay: they are what makes a tree a tree and a
license its company's."""

from typing import Any

from tortoise import migrations
from tortoise.migrations import operations as ops

INSTANCE_KEYS = {
    "company": "company_instance_id_fkey",
    "static_group": "static_group_instance_id_fkey",
    "subtree_count": "subtree_count_instance_id_fkey",
}


async def forward(apps: Any, schema_editor: Any) -> None:
    client = schema_editor.client
    if client.capabilities.dialect != "postgres":
        return
    for table, key in INSTANCE_KEYS.items():
        await client.execute_script(f'ALTER TABLE "{table}" DROP CONSTRAINT "{key}"')


async def backward(apps: Any, schema_editor: Any) -> None:
    client = schema_editor.client
    if client.capabilities.dialect != "postgres":
        return
    for table, key in INSTANCE_KEYS.items():
        await client.execute_script(
            f'ALTER TABLE "{table}" ADD CONSTRAINT "{key}" FOREIGN KEY ("instance_id") '
            'REFERENCES "instance" ("id") ON DELETE CASCADE'
        )


class Migration(migrations.Migration):
    dependencies = [("models", "0019_company_key_covers_digests")]

    initial = False

    operations = [ops.RunPython(forward, reverse_code=backward)]

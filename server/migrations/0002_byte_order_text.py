"""On PostgreSQL, compare paths, sort keys and names byte-wise (COLLATE "C"), as SQLite does:
subtree ranges and keyset cursors then mean the same on both databases, whatever the
server's default collation, and the indexes on these columns serve them."""

from tortoise import migrations
from tortoise.migrations import operations as ops

BYTE_ORDERED = {
    "company": {"path": 400, "sort_key": 2000, "sort_name": 255},
    "static_group": {"path": 400, "sort_key": 2000},
    "computer": {"sort_name": 255},
    "console_user": {"email": 254},
    "permission_set": {"name": 255},
}


async def byte_order(apps, schema_editor) -> None:
    client = schema_editor.client
    if client.capabilities.dialect != "postgres":
        return
    for table, columns in BYTE_ORDERED.items():
        for column, length in columns.items():
            await client.execute_script(
                f'ALTER TABLE "{table}" ALTER COLUMN "{column}" TYPE VARCHAR({length}) COLLATE "C"'
            )


class Migration(migrations.Migration):
    dependencies = [("models", "0001_initial")]

    operations = [ops.RunPython(byte_order, reverse_code=ops.RunPython.noop)]

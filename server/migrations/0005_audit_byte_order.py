"""On PostgreSQL, compare the audit log's group paths byte-wise (COLLATE "C"), like the paths of
0002_byte_order_text: the AUDIT scope filter is a subtree range on `group_path`, and a range
means the same as on SQLite only under byte order, whatever the server's default collation."""

from tortoise import migrations
from tortoise.migrations import operations as ops


async def byte_order(apps, schema_editor) -> None:
    client = schema_editor.client
    if client.capabilities.dialect != "postgres":
        return
    await client.execute_script(
        'ALTER TABLE "audit_entry" ALTER COLUMN "group_path" TYPE VARCHAR(2000) COLLATE "C"'
    )


class Migration(migrations.Migration):
    dependencies = [("models", "0004_enrolment_guard")]

    operations = [ops.RunPython(byte_order, reverse_code=ops.RunPython.noop)]

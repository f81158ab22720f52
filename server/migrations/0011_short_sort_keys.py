"""Sort keys without padding (issue 12): a segment was the casefolded name in hex padded with
"0" to 96 characters, then 8 hex of the id; it becomes the unpadded hex, ".", the id
(`domain.tree_paths`). Keys averaged some 700 characters on a large tree, and upkeep of the
indexes holding them was most of a first sync's writes.

Set-based, one UPDATE per table on both databases: each old segment's name part loses its
padding, the trailing "0"s, given back one if that leaves half a byte (a name byte such as
0x30 ends in "0"). A name that ended in NUL bytes loses them: it then sorts as without them,
which no name the upstream sends can tell apart.

The index of static groups on (instance_id, sort_key) goes: every query that reads groups in
tree order reads one parent's children, off (parent_id, sort_key, id)."""

from tortoise import migrations
from tortoise.migrations import operations as ops

OLD_NAME = 96  # hex characters of the padded name in an old segment
OLD_SEGMENT = OLD_NAME + 8
LEVELS = 2000 // OLD_SEGMENT  # the most segments an old key (VARCHAR(2000)) holds
TABLES = ("company", "static_group")


def _name(level: int) -> str:
    """The unpadded name of segment `level` (0-based) of `sort_key`, as SQL."""
    trimmed = f"rtrim(substr(sort_key, {level * OLD_SEGMENT + 1}, {OLD_NAME}), '0')"
    return f"CASE length({trimmed}) % 2 WHEN 1 THEN {trimmed} || '0' ELSE {trimmed} END"


def _segment(level: int) -> str:
    start = level * OLD_SEGMENT
    segment = f"{_name(level)} || '.' || substr(sort_key, {start + OLD_NAME + 1}, 8)"
    return f"CASE WHEN length(sort_key) > {start} THEN {segment} ELSE '' END"


def new_sort_key() -> str:
    """The new key of an old `sort_key`, as SQL that SQLite and PostgreSQL both read."""
    return " || ".join(_segment(level) for level in range(LEVELS))


async def shorten(apps, schema_editor) -> None:
    client = schema_editor.client
    for table in TABLES:
        await client.execute_query(f"UPDATE {table} SET sort_key = {new_sort_key()}")


class Migration(migrations.Migration):
    dependencies = [("models", "0010_sync_digests")]

    initial = False

    operations = [
        ops.RunPython(shorten, reverse_code=ops.RunPython.noop),
        ops.RemoveIndex(model_name="StaticGroup", fields=["instance_id", "sort_key"]),
    ]

"""Computers in the subtree counters (issue 12): `computers` (the group's whole subtree) and
`own_computers` (the group itself), filled from the computers already there, so a subtree's
computer count reads one row instead of every computer below it."""

from tortoise import fields, migrations
from tortoise.migrations import operations as ops


COMPANY_COLUMNS = ("distributors", "divisions", "msp_managers", "msps", "managed_msps",
                   "customers_not_set_up", "customers_normal", "customers_unlinked")  # fmt: skip
NAMES = f"group_id, instance_id, {', '.join(COMPANY_COLUMNS)}, computers, own_computers"
ZEROS = ", ".join("0" for _ in COMPANY_COLUMNS)


def fill_sql() -> str:
    """Two statements: each group's own computers (one pass over the computers), then each
    group's subtree's, added up from the first over its path range (one range of groups per
    group): what `domain.counters` keeps right afterwards (written out here: a migration stays
    as it was when the code around it changes)."""
    subtree = (
        "SELECT SUM(s.own_computers) FROM static_group d JOIN subtree_count s ON s.group_id = d.id "
        "WHERE d.instance_id = g.instance_id AND d.path >= g.path "
        "AND d.path < substr(g.path, 1, length(g.path) - 1) || '0'"
    )
    return (
        f"INSERT INTO subtree_count ({NAMES}) SELECT m.group_id, m.instance_id, {ZEROS}, 0, "
        "COUNT(*) FROM computer m WHERE 1=1 GROUP BY m.group_id, m.instance_id "
        "ON CONFLICT (group_id) DO UPDATE SET own_computers = excluded.own_computers;\n"
        f"INSERT INTO subtree_count ({NAMES}) SELECT t.id, t.instance_id, {ZEROS}, t.n, 0 "
        f"FROM (SELECT g.id, g.instance_id, ({subtree}) AS n FROM static_group g) t "
        "WHERE t.n > 0 ON CONFLICT (group_id) DO UPDATE SET computers = excluded.computers"
    )


async def fill(apps, schema_editor) -> None:
    await schema_editor.client.execute_script(fill_sql())


class Migration(migrations.Migration):
    dependencies = [("models", "0008_usage_ledger")]

    initial = False

    operations = [
        *(
            ops.AddField(
                model_name="SubtreeCount", name=name, field=fields.IntField(default=0, db_default=0)
            )
            for name in ("computers", "own_computers")
        ),
        ops.RunPython(fill, reverse_code=ops.RunPython.noop),
    ]

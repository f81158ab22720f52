"""Seat usage in the subtree counters (issue 12): `protected` (the computers announced CONNECTED
or DELAYED), `seats` and `activated` (of the licenses in force), each over the group's whole
subtree and (`own_`) for the group itself, filled from the rows already there, so a subtree's
seat usage reads one row instead of every computer and license below it."""

from tortoise import fields, migrations
from tortoise.migrations import operations as ops

COMPANY_COLUMNS = ("distributors", "divisions", "msp_managers", "msps", "managed_msps",
                   "customers_not_set_up", "customers_normal", "customers_unlinked")  # fmt: skip
HELD = {"protected": "own_protected", "seats": "own_seats", "activated": "own_activated"}
ZEROS = ", ".join("0" for _ in COMPANY_COLUMNS)


def _upsert(columns: tuple[str, ...], select: str) -> str:
    """Rows of (group id, instance id, `columns`) from `select`: new rows with zeros elsewhere,
    existing ones with `columns` replaced."""
    return (
        f"INSERT INTO subtree_count (group_id, instance_id, {', '.join(COMPANY_COLUMNS)}, "
        f"{', '.join(columns)}) {select} ON CONFLICT (group_id) DO UPDATE SET "
        + ", ".join(f"{c} = excluded.{c}" for c in columns)
    )


def fill_sql() -> str:
    """Three statements: each group's own protected computers (one pass over the computers),
    each company group's own seats (one pass over the licenses in force), then each group's
    subtree's, added up from those over its path range (one range of groups per group): what
    `domain.counters` keeps right afterwards (written out here: a migration stays as it was
    when the code around it changes)."""
    subtree = ", ".join(f"SUM(s.{own})" for own in HELD.values())
    return ";\n".join(
        (
            _upsert(
                ("own_protected",),
                f"SELECT m.group_id, m.instance_id, {ZEROS}, SUM(CASE WHEN m.announced_status "
                "IN ('CONNECTED', 'DELAYED') THEN 1 ELSE 0 END) FROM computer m WHERE 1=1 "
                "GROUP BY m.group_id, m.instance_id",
            ),
            _upsert(
                ("own_seats", "own_activated"),
                f"SELECT g.id, g.instance_id, {ZEROS}, SUM(l.seats), SUM(l.activated) "
                "FROM license l JOIN company c ON c.id = l.company_id "
                "JOIN static_group g ON g.instance_id = c.instance_id AND g.path = c.path "
                "WHERE l.state = 'ACTIVE' GROUP BY g.id, g.instance_id",
            ),
            _upsert(
                tuple(HELD),
                f"SELECT g.id, g.instance_id, {ZEROS}, {subtree} FROM static_group g "
                "JOIN static_group d ON d.instance_id = g.instance_id AND d.path >= g.path "
                "AND d.path < substr(g.path, 1, length(g.path) - 1) || '0' "
                "JOIN subtree_count s ON s.group_id = d.id WHERE 1=1 "
                "GROUP BY g.id, g.instance_id",
            ),
        )
    )


async def fill(apps, schema_editor) -> None:
    await schema_editor.client.execute_script(fill_sql())


class Migration(migrations.Migration):
    dependencies = [("models", "0014_subtree_count_description")]

    initial = False

    operations = [
        *(
            ops.AddField(
                model_name="SubtreeCount", name=name, field=fields.IntField(default=0, db_default=0)
            )
            for pair in HELD.items()
            for name in pair
        ),
        ops.RunPython(fill, reverse_code=ops.RunPython.noop),
    ]

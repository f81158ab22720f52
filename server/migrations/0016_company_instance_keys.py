"""One foreign key per license and usage line instead of two: (company_id, instance_id)
references company (id, instance_id), ON DELETE RESTRICT, in place of company_id -> company
(RESTRICT) and instance_id -> instance (CASCADE).

On PostgreSQL every foreign key check is a trigger run per row: in a first sync of 100,000
companies (200,000 licenses, 150,000 usage lines) the instance keys' checks alone cost some
1.6 s (EXPLAIN ANALYZE of the usage lines' INSERT: "Trigger for constraint
usage_line_instance_id_fkey: time=700 ms calls=150553"). The composite key checks both columns
at once, and it is stronger: a license or usage line can never sit in another instance than
its company's. It needs company's UNIQUE (id, instance_id). An instance's licenses and usage
lines no longer go with it by cascade: removing an instance deletes them before its companies.

PostgreSQL alters the constraints in place (their names read from pg_constraint). SQLite
cannot: each table is rebuilt the way https://www.sqlite.org/lang_altertable.html ("Making
Other Kinds Of Table Schema Changes") describes, its definition taken from sqlite_master with
only the keys changed, its rows copied, its indexes recreated from their own SQL, and its
AUTOINCREMENT counter and planner statistics put back. Foreign keys stay on throughout (the
migration runs in a transaction, where the pragma that turns them off does nothing; nothing
references these tables), so the copy checks every row against the new key, and
`PRAGMA foreign_key_check` confirms it.

The License model's docstring says the database holds the key; its first line becomes the
model's description, recorded here (nothing in the database changes for it)."""

from __future__ import annotations

from typing import Any

from tortoise import migrations
from tortoise.migrations import operations as ops

TABLES = ("license", "usage_line")
COMPANY_KEY = "company_id_instance_id_key"


def composite_key(table: str) -> str:
    return f"{table}_company_id_instance_id_fkey"


def composite_key_sql(table: str) -> str:
    return (
        f'CONSTRAINT "{composite_key(table)}" FOREIGN KEY ("company_id", "instance_id") '
        'REFERENCES "company" ("id", "instance_id") ON DELETE RESTRICT'
    )


# The two single-column keys, as 0007 and 0008 created them (SQLite spells them in the column)
SINGLE_KEYS = {
    "company_id": '"company_id" INT NOT NULL REFERENCES "company" ("id") ON DELETE RESTRICT',
    "instance_id": '"instance_id" INT NOT NULL REFERENCES "instance" ("id") ON DELETE CASCADE',
}
PLAIN_COLUMNS = {column: f'"{column}" INT NOT NULL' for column in SINGLE_KEYS}


async def _rows(client: Any, sql: str, values: list[Any] | None = None) -> list[dict[str, Any]]:
    return list(await client.execute_query_dict(sql, values or []))


async def _postgres_forward(client: Any) -> None:
    await client.execute_script(
        f'ALTER TABLE "company" ADD CONSTRAINT "{COMPANY_KEY}" UNIQUE ("id", "instance_id")'
    )
    for table in TABLES:
        # the single-column keys to the company and the instance, whatever they are named
        rows = await _rows(
            client,
            "SELECT conname FROM pg_constraint WHERE contype = 'f' AND conrelid = $1::regclass "
            "AND confrelid IN ('company'::regclass, 'instance'::regclass) "
            "AND cardinality(conkey) = 1 ORDER BY conname",
            [table],
        )
        assert len(rows) == 2, f"{table}: expected its two keys, found {rows}"
        drops = ", ".join(f'DROP CONSTRAINT "{row["conname"]}"' for row in rows)
        await client.execute_script(
            f'ALTER TABLE "{table}" {drops}, ADD {composite_key_sql(table)}'
        )


async def _postgres_backward(client: Any) -> None:
    for table in TABLES:
        await client.execute_script(
            f'ALTER TABLE "{table}" DROP CONSTRAINT "{composite_key(table)}", '
            f'ADD CONSTRAINT "{table}_company_id_fkey" FOREIGN KEY ("company_id") '
            'REFERENCES "company" ("id") ON DELETE RESTRICT, '
            f'ADD CONSTRAINT "{table}_instance_id_fkey" FOREIGN KEY ("instance_id") '
            'REFERENCES "instance" ("id") ON DELETE CASCADE'
        )
    await client.execute_script(f'ALTER TABLE "company" DROP CONSTRAINT "{COMPANY_KEY}"')


def _replaced(sql: str, old: str, new: str) -> str:
    """`sql` with `old`, which must occur exactly once, replaced by `new`."""
    assert sql.count(old) == 1, f"expected one {old!r} in {sql!r}"
    return sql.replace(old, new)


def _with_composite_key(table: str, sql: str) -> str:
    for column, single in SINGLE_KEYS.items():
        sql = _replaced(sql, single, PLAIN_COLUMNS[column])
    body = sql.rstrip()
    assert body.endswith(")"), sql
    return f"{body[:-1].rstrip()},\n    {composite_key_sql(table)}\n)"


def _with_single_keys(table: str, sql: str) -> str:
    sql = _replaced(sql, f",\n    {composite_key_sql(table)}\n", "\n")
    for column, single in SINGLE_KEYS.items():
        sql = _replaced(sql, PLAIN_COLUMNS[column], single)
    return sql


async def _rebuild(client: Any, table: str, definition: Any) -> None:
    """Rebuild `table` on SQLite with the CREATE TABLE statement `definition` makes of its
    current one, keeping its rows, indexes, AUTOINCREMENT counter and statistics."""
    old = await _rows(
        client, "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", [table]
    )
    # its indexes in the order they were made (a unique constraint's comes with the table)
    indexes = await _rows(
        client,
        "SELECT sql FROM sqlite_master WHERE type = 'index' AND tbl_name = ? "
        "AND sql IS NOT NULL ORDER BY rowid",
        [table],
    )
    others = await _rows(
        client,
        "SELECT name FROM sqlite_master WHERE type IN ('trigger', 'view') AND sql LIKE ?",
        [f"%{table}%"],
    )
    assert not others, f"{table}: triggers or views to recreate too: {others}"
    sequence = await _rows(client, "SELECT seq FROM sqlite_sequence WHERE name = ?", [table])
    has_statistics = await _rows(
        client, "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'sqlite_stat1'"
    )
    statistics = (
        await _rows(client, "SELECT idx, stat FROM sqlite_stat1 WHERE tbl = ?", [table])
        if has_statistics
        else []
    )
    columns = ", ".join(
        f'"{c["name"]}"' for c in await _rows(client, f'PRAGMA table_info("{table}")')
    )
    new = f"new__{table}"
    created = definition(table, old[0]["sql"])
    await client.execute_script(
        _replaced(created, f'CREATE TABLE "{table}"', f'CREATE TABLE "{new}"')
    )
    await client.execute_script(f'INSERT INTO "{new}" ({columns}) SELECT {columns} FROM "{table}"')
    await client.execute_script(f'DROP TABLE "{table}"')
    await client.execute_script(f'ALTER TABLE "{new}" RENAME TO "{table}"')
    for index in indexes:
        await client.execute_script(index["sql"])
    await client.execute_query("DELETE FROM sqlite_sequence WHERE name = ?", [table])
    if sequence:
        await client.execute_query(
            "INSERT INTO sqlite_sequence (name, seq) VALUES (?, ?)", [table, sequence[0]["seq"]]
        )
    for row in statistics:
        await client.execute_query(
            "INSERT INTO sqlite_stat1 (tbl, idx, stat) VALUES (?, ?, ?)",
            [table, row["idx"], row["stat"]],
        )
    broken = await _rows(client, f'PRAGMA foreign_key_check("{table}")')
    assert not broken, f"{table}: rows that break its keys: {broken}"


async def forward(apps, schema_editor) -> None:
    client = schema_editor.client
    if client.capabilities.dialect == "postgres":
        await _postgres_forward(client)
        return
    await client.execute_script(
        f'CREATE UNIQUE INDEX "{COMPANY_KEY}" ON "company" ("id", "instance_id")'
    )
    for table in TABLES:
        await _rebuild(client, table, _with_composite_key)


async def backward(apps, schema_editor) -> None:
    client = schema_editor.client
    if client.capabilities.dialect == "postgres":
        await _postgres_backward(client)
        return
    for table in TABLES:
        await _rebuild(client, table, _with_single_keys)
    await client.execute_script(f'DROP INDEX "{COMPANY_KEY}"')


class Migration(migrations.Migration):
    dependencies = [("models", "0015_seat_counts")]

    initial = False

    operations = [
        ops.RunPython(forward, reverse_code=backward),
        # the model's docstring now says so, and its first line is the model's description
        ops.AlterModelOptions(
            name="License",
            options={
                "table": "license",
                "app": "models",
                "pk_attr": "id",
                "table_description": "A license of a company, synced from the MSP Administrator.",
            },
        ),
    ]

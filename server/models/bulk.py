"""Batched statements whose count does not grow with the data: rows travel as one JSON parameter
that the database reads as a table (`json_each` on SQLite, `jsonb_to_recordset` on PostgreSQL).

    source = rows_source({"id": "int", "name": "text"})
    await db.execute(f"UPDATE company SET name = x.name FROM {source} WHERE company.id = x.id",
                     [encode_rows(rows)])

Column names come from code, never from data; every value is inside the bound JSON parameter.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from operator import itemgetter
from typing import Any

import orjson

from server.models import db
from server.offload import computed

_PG_TYPES = {"int": "integer", "text": "text", "bool": "boolean"}


def encode_rows(rows: Iterable[Mapping[str, Any]]) -> str:
    return orjson.dumps(list(rows)).decode()


def encode_ids(ids: Iterable[int]) -> str:
    return orjson.dumps(sorted(set(ids))).decode()


def rows_source(columns: Mapping[str, str], alias: str = "x") -> str:
    """A FROM item reading a JSON array of objects (one `?` parameter) as a table `alias`."""
    for kind in columns.values():
        if kind not in _PG_TYPES:
            raise ValueError(f"unknown column type {kind!r}")
    if db.is_postgres():
        typed = ", ".join(f"{name} {_PG_TYPES[kind]}" for name, kind in columns.items())
        return f"jsonb_to_recordset(CAST(CAST(? AS text) AS jsonb)) AS {alias}({typed})"
    picked = ", ".join(f"json_extract(value, '$.{name}') AS {name}" for name in columns)
    return f"(SELECT {picked} FROM json_each(?)) AS {alias}"


def ids_source() -> str:
    """A subquery of the integers of a JSON array (one `?` parameter), for `id IN (...)`."""
    if db.is_postgres():
        return "SELECT CAST(jsonb_array_elements_text(CAST(CAST(? AS text) AS jsonb)) AS integer)"
    return "SELECT value FROM json_each(?)"


def typed_param(kind: str) -> str:
    """A `?` in a SELECT list, typed for PostgreSQL (which cannot infer it there)."""
    if not db.is_postgres():
        return "?"
    return {
        "int": "CAST(? AS integer)",
        "text": "CAST(? AS text)",
        "timestamp": "CAST(? AS timestamptz)",
    }[kind]


async def reserve_ids(counts: Mapping[str, int]) -> dict[str, list[int]]:
    """Take `n` fresh primary keys per table (tables from code), so that rows referring to each
    other can be inserted in one statement each. On PostgreSQL from the tables' sequences; on
    SQLite from `sqlite_sequence` (AUTOINCREMENT), advanced by one UPDATE that also takes the
    write lock, so no other writer can hand out the same keys."""
    wanted = {table: n for table, n in counts.items() if n > 0}
    reserved: dict[str, list[int]] = {table: [] for table in counts}
    if not wanted:
        return reserved
    if db.is_postgres():
        # a row per table, its keys in one array: a row per key cost more than the keys. The
        # sequence by its name (a serial's, `<table>_id_seq`) as a literal, which PostgreSQL
        # resolves once: looked up per key, 200,000 keys cost 0.4 s instead of 0.03 s
        union = " UNION ALL ".join(
            f"SELECT '{table}' AS t, array_agg(nextval('{table}_id_seq')) AS ids "
            f"FROM generate_series(1, {int(n)})"
            for table, n in wanted.items()
        )
        for table, ids in await db.fetch_tuples(union):
            reserved[table] = list(ids)
        return reserved
    tables = list(wanted)
    marks = ", ".join("?" for _ in tables)
    # A table that never had a row has no sqlite_sequence entry yet.
    await db.fetch(
        "INSERT INTO sqlite_sequence (name, seq) SELECT t.value, 0 FROM json_each(?) AS t "
        "WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence s WHERE s.name = t.value)",
        [orjson.dumps(tables).decode()],
    )
    cases = " ".join(f"WHEN '{table}' THEN {int(n)}" for table, n in wanted.items())
    rows = await db.fetch(
        f"UPDATE sqlite_sequence SET seq = seq + CASE name {cases} END "
        f"WHERE name IN ({marks}) RETURNING name, seq",
        tables,
    )
    for row in rows:
        top = int(row["seq"])
        reserved[row["name"]] = list(range(top - wanted[row["name"]] + 1, top + 1))
    return reserved


async def insert_records(
    table: str, columns: Sequence[str], records: Sequence[tuple[Any, ...]]
) -> None:
    """INSERT `records` (tuples in the order of `columns`) in one statement. SQLite runs the
    INSERT once per record in one call (`executemany`: reading rows out of one JSON text costs a
    parse per column per row there); PostgreSQL takes them by COPY, in its binary format (no
    limit on the number of rows, no text to parse)."""
    if db.is_postgres():
        await db.copy_records(table, columns, records)
        return
    marks = ", ".join("?" for _ in columns)
    await db.execute_many(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})", records)


async def insert_rows(
    table: str,
    columns: Mapping[str, str],
    rows: Sequence[Mapping[str, Any]],
    fixed: Mapping[str, Any],
) -> None:
    """`insert_records` of `rows`: `columns` (name: kind) from each row, `fixed` the same value
    in every row."""
    if len(columns) < 2:  # itemgetter of one name gives the value, not a tuple
        raise ValueError("insert_rows takes two or more columns from the rows")
    values, constants = itemgetter(*columns), tuple(fixed.values())

    def records() -> list[tuple[Any, ...]]:
        return [values(row) + constants for row in rows]

    # off the event loop: a first sync inserts 100,000 companies and as many groups
    await insert_records(table, [*columns, *fixed], await computed(records))


async def update_rows(
    table: str,
    columns: Mapping[str, str],
    rows: Sequence[Mapping[str, Any]],
    fixed: Mapping[str, Any],
    key: str = "id",
) -> None:
    """UPDATE the rows whose `key` is each row's, in one statement (see `insert_rows`):
    `columns` (name: kind, the key included) from each row, `fixed` the same for every row."""
    changed = [name for name in columns if name != key]
    if db.is_postgres():
        sets = [f"{name} = x.{name}" for name in changed] + [f"{name} = ?" for name in fixed]
        await db.fetch(
            f"UPDATE {table} SET {', '.join(sets)} FROM {rows_source(columns)} "
            f"WHERE {table}.{key} = x.{key}",
            [*fixed.values(), encode_rows(rows)],
        )
        return
    sets = [f"{name} = ?" for name in [*changed, *fixed]]
    constants = tuple(fixed.values())
    await db.execute_many(
        f"UPDATE {table} SET {', '.join(sets)} WHERE {key} = ?",
        [(*(row[name] for name in changed), *constants, row[key]) for row in rows],
    )

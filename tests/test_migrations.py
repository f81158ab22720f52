"""Migrations: on PostgreSQL every path column the scope filter compares as a range is
byte-ordered (COLLATE "C"), as on SQLite, the audit log's group paths included; on both
databases the sort keys written before 0011 come out in its form, in the same tree order, and
the usage ledger has 0013's index in place of the one it covers, 0015 counts the
protected computers and the seats of the licenses already there, 0016 gives licenses and
usage lines one key to their company within its instance (keeping every row, column, index and
key counter, and reversibly), 0019 has PostgreSQL's unique key of a company's public id carry
the fingerprints a sync reads in place of a second index (reversibly; SQLite keeps both), 0020
drops PostgreSQL's keys of the tree and counter rows to their instance (reversibly), and
the migrations build the models as they are (`makemigrations` would write nothing).

A fresh database (PostgreSQL on the suite's server or the local default; a SQLite file),
migrated in a process of its own, so this process's ORM is left alone."""

from __future__ import annotations

import asyncio
import importlib
import json
import os
import subprocess
import sys
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from tortoise import Tortoise
from tortoise.exceptions import IntegrityError
from tortoise.migrations.api import migrate
from tortoise.migrations.autodetector import MigrationAutodetector

from server.domain import tree_paths
from server.models import db
from tests.conftest import _postgres_database, postgres_server

ROOT = Path(__file__).resolve().parent.parent
BYTE_ORDERED = {
    ("audit_entry", "group_path"),
    ("company", "path"),
    ("company", "sort_key"),
    ("company", "sort_name"),
    ("static_group", "path"),
    ("static_group", "sort_key"),
    ("computer", "sort_name"),
    ("console_user", "email"),
    ("permission_set", "name"),
    ("license", "public_license_key"),
}


@pytest.fixture
def postgres_database() -> Iterator[str]:
    """A new one per test: each migrates an empty database of its own."""
    yield from _postgres_database(postgres_server())


@pytest.fixture(scope="module")
def migrated_database() -> Iterator[str]:
    for url in _postgres_database(postgres_server()):
        env = {k: v for k, v in os.environ.items() if not k.startswith("MSP_CONSOLE_")}
        env.update({"PYTHONPATH": str(ROOT), "DATABASE_URL": url})
        asyncio.run(_migrate(env))
        yield url


async def _migrate(env: dict[str, str]) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "server", "migrate", env=env, cwd=ROOT
    )
    assert await process.wait() == 0


async def _catalog(url: str, sql: str) -> list[asyncpg.Record]:
    """Rows of a query on PostgreSQL's catalog of the migrated database."""
    connection = await asyncpg.connect(url.replace("postgres://", "postgresql://"))
    try:
        return await connection.fetch(sql)
    finally:
        await connection.close()


@pytest.mark.needs_postgres
async def test_every_range_compared_text_column_is_byte_ordered(migrated_database):
    rows = await _catalog(
        migrated_database,
        "SELECT table_name, column_name, collation_name FROM information_schema.columns "
        "WHERE table_schema = 'public'",
    )
    collations = {(r["table_name"], r["column_name"]): r["collation_name"] for r in rows}
    assert {column: collations.get(column) for column in BYTE_ORDERED} == dict.fromkeys(
        BYTE_ORDERED, "C"
    )


@pytest.mark.needs_postgres
async def test_the_sequences_of_the_tables_a_sync_fills_hand_out_keys_by_the_thousand(
    migrated_database,
):
    rows = await _catalog(
        migrated_database,
        "SELECT c.relname AS name, s.seqcache AS cache FROM pg_sequence s "
        "JOIN pg_class c ON c.oid = s.seqrelid",
    )
    caches = {row["name"]: row["cache"] for row in rows}
    upkeep = importlib.import_module("server.migrations.0012_sync_upkeep")
    assert {name: caches[f"{name}_id_seq"] for name in upkeep.SYNCED_TABLES} == dict.fromkeys(
        upkeep.SYNCED_TABLES, upkeep.SEQUENCE_CACHE
    )
    assert caches["computer_id_seq"] == 1  # the others as they were


# (id, parent id, name) of a group tree, parents first; the names test the old padding: "a0"
# ends in a "0" of its own (0x30), "P" in one after which the padding begins (0x50), "Ab" is a
# prefix of a sibling's and has a child, the last is longer than the bytes a key keeps
GROUPS = [
    (1, None, "All"),
    (2, 1, "Companies"),
    (7, 2, "Ab"),
    (8, 7, "Zed"),
    (5, 2, "abc"),
    (6, 2, "a0"),
    (3, 2, "P"),
    (9, 2, "x" * 60),
]
TREE_ORDER = [1, 2, 6, 7, 8, 5, 3, 9]
COMPANY_GROUP = 7


def _old_sort_keys() -> dict[int, str]:
    """The keys as written before 0011: every name padded with "0" to NAME_BYTES bytes."""
    keys: dict[int, str] = {}
    for group_id, parent, name in GROUPS:
        head = name.casefold().encode()[: tree_paths.NAME_BYTES].hex().ljust(96, "0")
        keys[group_id] = (keys[parent] if parent else "") + f"{head}{group_id:08x}"
    return keys


async def migrate_old_sort_keys(url: str) -> None:
    """Migrate `url` to 0010, write `GROUPS` (and the company of one) with old sort keys,
    migrate to the end and print the keys of both tables as JSON (run in its own process)."""
    config = db.tortoise_config(url)
    await migrate(config=config, target="models.0010_sync_digests")
    await Tortoise.close_connections()
    await Tortoise.init(config=config)
    keys = _old_sort_keys()
    await db.execute(
        "INSERT INTO account (id, email, password_hash, services, created_at) "
        "VALUES (1, 'owner@example.test', '!', 'EBA', CURRENT_TIMESTAMP)"
    )
    await db.execute(
        "INSERT INTO instance (id, name, created_via, created_at, owner_id) "
        "VALUES (1, 'old keys', 'EBA', CURRENT_TIMESTAMP, 1)"
    )
    for group_id, parent, name in GROUPS:
        await db.execute(
            "INSERT INTO static_group (id, instance_id, name, kind, parent_id, path, sort_key, "
            "depth, description, created_at) "
            "VALUES (?, 1, ?, 'custom', ?, '/', ?, 0, '', CURRENT_TIMESTAMP)",
            [group_id, name, parent, keys[group_id]],
        )
    await db.execute(
        "INSERT INTO company (id, instance_id, public_id, name, sort_name, type, path, sort_key, "
        "depth, upstream_status, read_only, setup_state, created_at, updated_at) "
        "VALUES (1, 1, 'c', 'Ab', 'ab', 'MSP', '/', ?, 0, 1, FALSE, 'pending', "
        "CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)",
        [keys[COMPANY_GROUP]],
    )
    await Tortoise.close_connections()
    await migrate(config=config)
    groups = await db.fetch("SELECT id, sort_key FROM static_group ORDER BY sort_key")
    company = await db.fetch_value("SELECT sort_key FROM company")
    await Tortoise.close_connections()
    print(json.dumps({"groups": [[g["id"], g["sort_key"]] for g in groups], "company": company}))


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.needs_postgres)])
def empty_database(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "postgres":
        return str(request.getfixturevalue("postgres_database"))
    return f"sqlite://{tmp_path / 'old.db'}"


def in_own_process(function: str, url: str) -> Any:
    """What `function` of this module, run on `url` in a process of its own, printed last (as
    JSON)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MSP_CONSOLE_")}
    script = (
        f"import asyncio, sys; from tests.test_migrations import {function}; "
        f"asyncio.run({function}(sys.argv[1]))"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, url],
        env={**env, "PYTHONPATH": str(ROOT)},
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_0011_writes_old_sort_keys_in_the_new_form_in_tree_order(empty_database: str) -> None:
    migrated = in_own_process("migrate_old_sort_keys", empty_database)
    expected: dict[int, str] = {}
    for group_id, parent, name in GROUPS:
        parent_key = expected[parent] if parent else None
        expected[group_id] = tree_paths.child_sort_key(parent_key, name, group_id)
    assert [group_id for group_id, _ in migrated["groups"]] == TREE_ORDER
    assert {group_id: key for group_id, key in migrated["groups"]} == expected
    assert migrated["company"] == expected[COMPANY_GROUP]


async def usage_line_indexes(url: str) -> None:
    """Migrate `url` to the end and print the columns of each index of the usage ledger."""
    config = db.tortoise_config(url)
    await migrate(config=config)
    await Tortoise.close_connections()
    await Tortoise.init(config=config)
    if db.is_postgres():
        rows = await db.fetch("SELECT indexdef FROM pg_indexes WHERE tablename = 'usage_line'")
        columns = [row["indexdef"].split("(", 1)[1].rstrip(")").split(", ") for row in rows]
    else:
        columns = []
        for index in await db.fetch("PRAGMA index_list('usage_line')"):
            info = await db.fetch(f"PRAGMA index_info('{index['name']}')")
            columns.append([c["name"] for c in sorted(info, key=lambda c: c["seqno"])])
    await Tortoise.close_connections()
    print(json.dumps(columns))


def test_0013_reads_a_companys_month_of_usage_off_one_index(empty_database: str) -> None:
    indexes = in_own_process("usage_line_indexes", empty_database)
    assert ["company_id", "day", "product_code", "seats", "product_name"] in indexes
    assert ["company_id", "day"] not in indexes  # the covering index's prefix: no upkeep twice


async def pending_operations(url: str) -> None:
    """Print what `makemigrations` would write: the differences between the models and the
    state the migrations build (Tortoise's own autodetector; nothing is written)."""
    config = db.tortoise_config(url)
    await Tortoise.init(config=config)
    try:
        detector = MigrationAutodetector(Tortoise.apps, config["apps"])
        writers = await detector.changes()
    finally:
        await Tortoise.close_connections()
    print(json.dumps([op.describe() for writer in writers for op in writer.operations]))


def test_the_migrations_build_the_models_as_they_are(tmp_path: Path) -> None:
    # a model changed without a migration: the next makemigrations writes it into whatever
    # migration someone makes next (as a SubtreeCount description did until 0014)
    assert in_own_process("pending_operations", f"sqlite://{tmp_path / 'none.db'}") == []


async def migrate_seat_counts(url: str) -> None:
    """Migrate `url` to 0014, write a group below the top one with its company, computers and
    licenses (counted as 0014 counted them: computers only), migrate to the end and print the
    counter rows as JSON (run in its own process)."""
    config = db.tortoise_config(url)
    await migrate(config=config, target="models.0014_subtree_count_description")
    await Tortoise.close_connections()
    await Tortoise.init(config=config)
    top, below = "/1/", tree_paths.child_path("/1/", 2)
    statements = [
        "INSERT INTO account (id, email, password_hash, services, created_at) "
        "VALUES (1, 'owner@example.test', '!', 'EBA', CURRENT_TIMESTAMP)",
        "INSERT INTO instance (id, name, created_via, created_at, owner_id) "
        "VALUES (1, 'seats', 'EBA', CURRENT_TIMESTAMP, 1)",
        "INSERT INTO company (id, instance_id, public_id, name, sort_name, type, path, sort_key, "
        "depth, upstream_status, read_only, setup_state, created_at, updated_at) "
        f"VALUES (1, 1, 'c', 'C', 'c', 'CUSTOMER', '{below}', 'k', 1, 1, FALSE, 'pending', "
        "CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)",
        *(
            "INSERT INTO static_group (id, instance_id, name, kind, parent_id, company_id, path, "
            f"sort_key, depth, description, created_at) VALUES ({group_id}, 1, 'g', "
            f"'{kind}', {parent}, {company}, '{path}', 'k{group_id}', {depth}, '', "
            "CURRENT_TIMESTAMP)"
            for group_id, kind, parent, company, path, depth in (
                (1, "all", "NULL", "NULL", top, 0),
                (2, "company", 1, 1, below, 1),
            )
        ),
        *(
            "INSERT INTO computer (instance_id, group_id, company_id, name, sort_name, "
            f"hardware_id, enrolled_at, announced_status) VALUES (1, {group_id}, 1, 'pc', 'pc', "
            f"'hw{n}', CURRENT_TIMESTAMP, '{status}')"
            for n, (group_id, status) in enumerate(
                ((2, "CONNECTED"), (2, "NOT_CONNECTED"), (1, "DELAYED"), (1, "NEVER_CONNECTED"))
            )
        ),
        *(
            "INSERT INTO license (instance_id, company_id, public_license_key, product_code, "
            "product_name, seats, activated, state, trial, search_text, created_at, updated_at) "
            f"VALUES (1, 1, '{key}', 1, 'p', {seats}, {activated}, '{state}', FALSE, 'k', "
            "CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
            for key, seats, activated, state in (("A", 10, 3, "ACTIVE"), ("B", 5, 5, "SUSPENDED"))
        ),
        "INSERT INTO subtree_count (group_id, instance_id, distributors, divisions, msp_managers, "
        "msps, managed_msps, customers_not_set_up, customers_normal, customers_unlinked, "
        "computers, own_computers) VALUES (1, 1, 0, 0, 0, 0, 0, 1, 0, 0, 4, 2), "
        "(2, 1, 0, 0, 0, 0, 0, 1, 0, 0, 2, 2)",
    ]
    for statement in statements:
        await db.execute(statement)
    await Tortoise.close_connections()
    await migrate(config=config)
    rows = await db.fetch(
        "SELECT group_id, protected, own_protected, seats, own_seats, activated, own_activated "
        "FROM subtree_count ORDER BY group_id"
    )
    await Tortoise.close_connections()
    print(json.dumps([list(row.values()) for row in rows]))


def test_0015_counts_the_protected_computers_and_the_seats_already_there(
    empty_database: str,
) -> None:
    # group, protected (own), seats (own), activated (own): the top one holds a DELAYED
    # computer, its company group a CONNECTED one and the license in force
    assert in_own_process("migrate_seat_counts", empty_database) == [
        [1, 2, 1, 10, 0, 3, 0],
        [2, 1, 1, 10, 10, 3, 3],
    ]


COMPANY_OWNED = ("license", "usage_line")


async def _tenants_with_companies() -> None:
    """Two instances, with companies 1 and 2 in instance 1 and company 3 in instance 2."""
    statements = [
        *(
            statement
            for instance in (1, 2)
            for statement in (
                "INSERT INTO account (id, email, password_hash, services, created_at) "
                f"VALUES ({instance}, 'owner{instance}@example.test', '!', 'EBA', "
                "CURRENT_TIMESTAMP)",
                "INSERT INTO instance (id, name, created_via, created_at, owner_id) "
                f"VALUES ({instance}, 'i{instance}', 'EBA', CURRENT_TIMESTAMP, {instance})",
            )
        ),
        *(
            "INSERT INTO company (id, instance_id, public_id, name, sort_name, type, path, "
            "sort_key, depth, upstream_status, read_only, setup_state, created_at, updated_at) "
            f"VALUES ({company}, {instance}, 'c{company}', 'C', 'c', 'CUSTOMER', '/', 'k', 0, 1, "
            "FALSE, 'pending', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
            for company, instance in ((1, 1), (2, 1), (3, 2))
        ),
    ]
    for statement in statements:
        await db.execute(statement)


def _license_sql(instance: int, company: int, key: str) -> str:
    return (
        "INSERT INTO license (instance_id, company_id, public_license_key, product_code, "
        "product_name, seats, activated, state, trial, search_text, created_at, updated_at) "
        f"VALUES ({instance}, {company}, '{key}', 1, 'p', 10, 3, 'ACTIVE', FALSE, 'k', "
        "CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
    )


def _usage_line_sql(instance: int, company: int, product: int) -> str:
    return (
        "INSERT INTO usage_line (instance_id, day, company_id, product_code, product_name, "
        f"seats, activated, licenses) VALUES ({instance}, '2026-01-01', {company}, {product}, "
        "'p', 10, 3, 1)"
    )


async def insert_across_instances(url: str) -> None:
    """Migrate `url` to the end, then insert a license and a usage line of instance 1's company
    1 into instance 2, then into instance 1; print what the database made of each (as JSON)."""
    config = db.tortoise_config(url)
    await migrate(config=config)
    await Tortoise.close_connections()
    await Tortoise.init(config=config)
    answers: dict[str, list[str]] = {}
    try:  # closed whatever happens: an open SQLite connection keeps the process alive
        await _tenants_with_companies()
        for table, insert in (("license", _license_sql), ("usage_line", _usage_line_sql)):
            for instance in (2, 1):
                try:
                    await db.execute(insert(instance, 1, 7))
                    answers.setdefault(table, []).append("accepted")
                except IntegrityError:
                    answers.setdefault(table, []).append("refused")
    finally:
        await Tortoise.close_connections()
    print(json.dumps(answers))


def test_a_license_or_usage_line_outside_its_companys_instance_is_refused(
    empty_database: str,
) -> None:
    # into the other instance, then into the company's own
    assert in_own_process("insert_across_instances", empty_database) == {
        "license": ["refused", "accepted"],
        "usage_line": ["refused", "accepted"],
    }


ON_DELETE = {"r": "RESTRICT", "c": "CASCADE", "a": "NO ACTION", "n": "SET NULL"}
FOREIGN_KEYS_SQL = (
    "SELECT conname, confrelid::regclass::text AS target, confdeltype::text AS on_delete, "
    "(SELECT array_agg(a.attname ORDER BY k.n) FROM unnest(conkey) WITH ORDINALITY k(num, n) "
    "JOIN pg_attribute a ON a.attrelid = conrelid AND a.attnum = k.num) AS columns, "
    "(SELECT array_agg(a.attname ORDER BY k.n) FROM unnest(confkey) WITH ORDINALITY k(num, n) "
    "JOIN pg_attribute a ON a.attrelid = confrelid AND a.attnum = k.num) AS target_columns "
    "FROM pg_constraint WHERE contype = 'f' AND conrelid = '{table}'::regclass ORDER BY conname"
)


async def _foreign_keys(table: str) -> list[list[Any]]:
    """Each foreign key of `table`: [target table, columns, target columns, on delete]."""
    if db.is_postgres():
        rows = await db.fetch(FOREIGN_KEYS_SQL.replace("{table}", table))
        return sorted(
            [r["target"], list(r["columns"]), list(r["target_columns"]), ON_DELETE[r["on_delete"]]]
            for r in rows
        )
    keys: dict[int, list[Any]] = {}
    for row in sorted(
        await db.fetch(f"PRAGMA foreign_key_list('{table}')"), key=lambda r: r["seq"]
    ):
        key = keys.setdefault(row["id"], [row["table"], [], [], row["on_delete"]])
        key[1].append(row["from"])
        key[2].append(row["to"])
    return sorted(keys.values())


async def _shape(table: str) -> dict[str, Any]:
    """A table's columns (types, defaults, nullability), its indexes and other constraints
    (primary and unique keys), as the database's catalog states them."""
    if db.is_postgres():
        columns = await db.fetch(
            "SELECT column_name, data_type, character_maximum_length, collation_name, "
            "column_default, is_nullable, ordinal_position FROM information_schema.columns "
            "WHERE table_schema = current_schema() AND table_name = ? ORDER BY ordinal_position",
            [table],
        )
        indexes = await db.fetch(
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = ? ORDER BY indexname",
            [table],
        )
        constraints = await db.fetch(
            "SELECT conname, contype, pg_get_constraintdef(oid) AS definition FROM pg_constraint "
            "WHERE conrelid = ?::regclass AND contype <> 'f' ORDER BY conname",
            [table],
        )
    else:
        columns = await db.fetch(f"PRAGMA table_info('{table}')")
        indexes = await db.fetch(f"PRAGMA index_list('{table}')")
        for index in indexes:  # a unique constraint's own index included
            listed = await db.fetch(f"PRAGMA index_xinfo('{index['name']}')")
            index["columns"] = [(c["name"], c["desc"], c["coll"], c["key"]) for c in listed]
        constraints = await db.fetch(
            "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = ? "
            "ORDER BY name",
            [table],
        )
    return {"columns": columns, "indexes": indexes, "constraints": constraints}


async def _key_state() -> dict[str, Any]:
    """Where each company-owned table's keys stand: the last one handed out."""
    if db.is_postgres():
        return {
            table: await db.fetch(f"SELECT last_value, is_called FROM {table}_id_seq")
            for table in COMPANY_OWNED
        }
    return {
        table: await db.fetch_value("SELECT seq FROM sqlite_sequence WHERE name = ?", [table])
        for table in COMPANY_OWNED
    }


async def migrate_company_owned_rows(url: str) -> None:
    """Migrate `url` to 0015, write licenses and usage lines (removing the last of each, so a
    table's key counter stands above its highest id), migrate to the end and print the rows,
    shapes and key counters before and after, and the id of a license inserted then."""
    config = db.tortoise_config(url)
    await migrate(config=config, target="models.0015_seat_counts")
    await Tortoise.close_connections()
    await Tortoise.init(config=config)

    async def state() -> dict[str, Any]:
        return {
            "rows": {
                table: await db.fetch(f"SELECT * FROM {table} ORDER BY id")
                for table in COMPANY_OWNED
            },
            "shapes": {table: await _shape(table) for table in COMPANY_OWNED},
            "foreign_keys": {table: await _foreign_keys(table) for table in COMPANY_OWNED},
            "keys": await _key_state(),
        }

    try:  # closed whatever happens: an open SQLite connection keeps the process alive
        await _tenants_with_companies()
        for n, (instance, company) in enumerate(((1, 1), (1, 2), (2, 3), (1, 1))):
            await db.execute(_license_sql(instance, company, f"K{n}"))
            await db.execute(_usage_line_sql(instance, company, n))
        for table in COMPANY_OWNED:
            await db.execute(f"DELETE FROM {table} WHERE id = (SELECT MAX(id) FROM {table})")
        before = await state()
        await Tortoise.close_connections()
        await migrate(config=config)
        after = await state()
        await db.execute(_license_sql(1, 2, "new"))
        new_id = await db.fetch_value("SELECT id FROM license WHERE public_license_key = 'new'")
    finally:
        await Tortoise.close_connections()
    print(json.dumps({"before": before, "after": after, "new_id": new_id}, default=str))


def test_0016_keeps_every_row_column_index_and_key_counter_of_the_company_owned_tables(
    empty_database: str,
) -> None:
    migrated = in_own_process("migrate_company_owned_rows", empty_database)
    before, after = migrated["before"], migrated["after"]
    assert [len(before["rows"][table]) for table in COMPANY_OWNED] == [3, 3]
    assert after["rows"] == before["rows"]
    assert after["keys"] == before["keys"]
    assert after["shapes"] == before["shapes"]
    # only the foreign keys change: two (the company's and the instance's) become one
    for table in COMPANY_OWNED:
        assert before["foreign_keys"][table] == [
            ["company", ["company_id"], ["id"], "RESTRICT"],
            ["instance", ["instance_id"], ["id"], "CASCADE"],
        ]
        assert after["foreign_keys"][table] == [
            ["company", ["company_id", "instance_id"], ["id", "instance_id"], "RESTRICT"]
        ]
    highest = max(row["id"] for row in before["rows"]["license"])
    assert migrated["new_id"] > highest + 1  # above the removed one's too: no id reused


@pytest.mark.needs_postgres
async def test_each_company_owned_table_has_one_key_to_the_company_and_none_to_the_instance(
    migrated_database,
):
    for table in COMPANY_OWNED:
        rows = await _catalog(migrated_database, FOREIGN_KEYS_SQL.replace("{table}", table))
        keys = [
            (r["target"], list(r["columns"]), list(r["target_columns"]), r["on_delete"])
            for r in rows
        ]
        assert keys == [("company", ["company_id", "instance_id"], ["id", "instance_id"], "r")]


async def reverse_company_keys(url: str) -> None:
    """Migrate `url` to 0015, to the end and back to 0015, printing the company-owned tables'
    and the company's definitions at 0015 and after the way back (as JSON)."""
    config = db.tortoise_config(url)

    async def definitions() -> dict[str, Any]:
        await Tortoise.init(config=config)
        try:
            return {
                table: [await _shape(table), await _foreign_keys(table)]
                + (
                    []
                    if db.is_postgres()
                    else [
                        await db.fetch_value(
                            "SELECT sql FROM sqlite_master WHERE name = ?", [table]
                        )
                    ]
                )
                for table in (*COMPANY_OWNED, "company")
            }
        finally:
            await Tortoise.close_connections()

    await migrate(config=config, target="models.0015_seat_counts")
    await Tortoise.close_connections()
    at_0015 = await definitions()
    await migrate(config=config)
    await Tortoise.close_connections()
    await migrate(config=config, target="models.0015_seat_counts")
    await Tortoise.close_connections()
    print(json.dumps({"at_0015": at_0015, "back": await definitions()}, default=str))


def test_0016_reversed_gives_back_the_keys_and_tables_of_0015(empty_database: str) -> None:
    migrated = in_own_process("reverse_company_keys", empty_database)
    assert migrated["back"] == migrated["at_0015"]


async def there_and_back(url: str, before: str, read: Callable[[], Awaitable[Any]]) -> None:
    """Migrate `url` to the migration `before`, to the end and back to `before`, printing what
    `read` finds at each step ("before", "end", "back") as JSON."""
    config = db.tortoise_config(url)
    found: dict[str, Any] = {}
    target_before = f"models.{before}"
    for step, target in (("before", target_before), ("end", None), ("back", target_before)):
        await migrate(config=config, target=target)
        await Tortoise.close_connections()
        await Tortoise.init(config=config)
        try:
            found[step] = await read()
        finally:
            await Tortoise.close_connections()
    print(json.dumps(found, default=str))


async def company_shapes(url: str) -> None:
    """The company table's shape before 0019, after it and back."""
    await there_and_back(url, "0018_all_group_index", lambda: _shape("company"))


def test_0019_has_postgresqls_company_key_carry_the_fingerprints_instead_of_an_index(
    empty_database: str,
) -> None:
    shapes = in_own_process("company_shapes", empty_database)
    assert shapes["back"] == shapes["before"]
    if not empty_database.startswith("postgres"):
        assert shapes["end"] == shapes["before"]  # no INCLUDE there: both indexes stay
        return

    def on_public_id(step: str) -> list[str]:
        """The step's indexes that hold the public id: unique or not, and their columns."""
        return sorted(
            ("UNIQUE " if " UNIQUE " in d else "") + d.split(" USING btree ", 1)[1]
            for index in shapes[step]["indexes"]
            if "public_id" in (d := index["indexdef"])
        )

    assert on_public_id("before") == [
        "(instance_id, public_id, upstream_digest, license_digest, unlink_reason, id)",
        "UNIQUE (instance_id, public_id)",
    ]
    assert on_public_id("end") == [
        "UNIQUE (instance_id, public_id) "
        "INCLUDE (upstream_digest, license_digest, unlink_reason, id)"
    ]


KEYED_BY_LOCK = ("company", "static_group", "subtree_count")


async def instance_keys(url: str) -> None:
    """The foreign keys of the tables 0020 concerns before it, after it and back."""

    async def keys() -> dict[str, Any]:
        return {table: await _foreign_keys(table) for table in KEYED_BY_LOCK}

    await there_and_back(url, "0019_company_key_covers_digests", keys)


def test_0020_drops_postgresqls_keys_to_the_instance_of_the_tree_and_counter_rows_only(
    empty_database: str,
) -> None:
    keys = in_own_process("instance_keys", empty_database)
    assert keys["back"] == keys["before"]
    to_instance = ["instance", ["instance_id"], ["id"], "CASCADE"]
    for table in KEYED_BY_LOCK:
        assert to_instance in keys["before"][table]
    if not empty_database.startswith("postgres"):
        assert keys["end"] == keys["before"]  # SQLite keeps them: checked there, and cheap
        return
    assert keys["end"] == {
        table: [key for key in keys["before"][table] if key != to_instance]
        for table in KEYED_BY_LOCK
    }
    assert keys["end"]["company"] == [["company", ["parent_id"], ["id"], "RESTRICT"]]

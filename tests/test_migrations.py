"""Migrations on PostgreSQL: every path column the scope filter compares as a range is
byte-ordered (COLLATE "C"), as on SQLite, the audit log's group paths included.

Always PostgreSQL: a fresh database on the suite's server (or the local default), migrated by
`python -m server migrate` in a process of its own, so this process's ORM is left alone."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from tests.conftest import _postgres_database, postgres_server

pytestmark = [pytest.mark.needs_postgres]

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


async def test_every_range_compared_text_column_is_byte_ordered(migrated_database):
    connection = await asyncpg.connect(migrated_database.replace("postgres://", "postgresql://"))
    try:
        rows = await connection.fetch(
            "SELECT table_name, column_name, collation_name FROM information_schema.columns "
            "WHERE table_schema = 'public'"
        )
    finally:
        await connection.close()
    collations = {(r["table_name"], r["column_name"]): r["collation_name"] for r in rows}
    assert {column: collations.get(column) for column in BYTE_ORDERED} == dict.fromkeys(
        BYTE_ORDERED, "C"
    )

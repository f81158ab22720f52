"""A transaction cancelled while it begins gives its connection back (`db.transaction`)."""

from __future__ import annotations

import ast
import asyncio
import contextlib
from pathlib import Path

from tortoise import connections

from server.models import db

SERVER = Path(__file__).resolve().parents[1] / "server"


async def _one_statement_in_a_transaction() -> None:
    async with db.transaction():
        await db.fetch("SELECT 1")


async def _all_connections_returned() -> bool:
    """PostgreSQL: every connection of the pool is back within a few seconds (the app's
    background tasks borrow some for a moment); SQLite has one connection, no pool."""
    pool = getattr(connections.get("default"), "_pool", None)
    for _ in range(500):
        if pool is None or pool.get_idle_size() == pool.get_size():
            return True
        await asyncio.sleep(0.01)
    return False


async def test_a_transaction_cancelled_at_any_point_of_its_start_leaves_the_database_usable(
    app: object,
) -> None:
    # Cancelled after 0, 1, 2... turns of the event loop: among them, while its BEGIN runs.
    # Tortoise's own context kept SQLite's connection lock for good after one such cancel (every
    # later statement of the process waited for ever) and a PostgreSQL pool connection for each.
    for turns in range(30):
        task = asyncio.create_task(_one_statement_in_a_transaction())
        for _ in range(turns):
            await asyncio.sleep(0)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await asyncio.wait_for(_one_statement_in_a_transaction(), timeout=10)
        assert await _all_connections_returned(), f"a connection kept after {turns} turns"


async def test_a_failing_transaction_still_rolls_back_and_a_nested_one_is_a_savepoint(
    app: object,
) -> None:
    await db.execute("CREATE TABLE IF NOT EXISTS transaction_probe (n INT)")
    try:
        with contextlib.suppress(ZeroDivisionError):
            async with db.transaction():
                await db.execute("INSERT INTO transaction_probe VALUES (1)")
                async with db.transaction():  # a savepoint: its failure undoes it alone
                    with contextlib.suppress(ValueError):
                        async with db.transaction():
                            await db.execute("INSERT INTO transaction_probe VALUES (2)")
                            raise ValueError
                    await db.execute("INSERT INTO transaction_probe VALUES (3)")
                assert await db.fetch_value("SELECT SUM(n) FROM transaction_probe") == 4
                raise ZeroDivisionError
        assert await db.fetch_value("SELECT COUNT(*) FROM transaction_probe") == 0
        async with db.transaction():
            await db.execute("INSERT INTO transaction_probe VALUES (5)")
        assert await db.fetch_value("SELECT SUM(n) FROM transaction_probe") == 5
    finally:
        await db.execute("DROP TABLE transaction_probe")
    assert await _all_connections_returned()


def test_the_server_starts_transactions_only_through_db_transaction() -> None:
    found = []
    for path in sorted(SERVER.rglob("*.py")):
        if path == SERVER / "models" / "db.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module == "tortoise.transactions":
                found.append(f"{path.relative_to(SERVER.parent)}:{node.lineno}")
    assert found == []

"""SQLite's write-ahead log is copied back by the checkpointer, not by the writer that commits."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tortoise.backends.base.config_generator import expand_db_url
from tortoise.backends.sqlite import SqliteClient

from server.models import db
from server.models.checkpoints import WalCheckpointer

# 3,000 rows of 4,000 bytes: some 3,000 pages, three times SQLite's default autocheckpoint
WRITE = (
    "INSERT INTO filler SELECT randomblob(4000) FROM (WITH RECURSIVE n(i) AS "
    "(SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 3000) SELECT i FROM n)"
)


async def test_a_commit_leaves_the_log_to_the_checkpointer(tmp_path: Path) -> None:
    path = tmp_path / "console.db"
    settings = expand_db_url(db.tortoise_config(f"sqlite://{path}")["connections"]["default"])
    client = SqliteClient(connection_name="checkpoints", **settings["credentials"])
    await client.create_connection(with_db=True)
    try:
        await client.execute_script("CREATE TABLE filler (data BLOB)")
        await client.execute_script(WRITE)
        # committed, yet in the log alone: the writer did not wait for the copy
        assert path.stat().st_size < 1_000_000
        frames, copied = await WalCheckpointer(path).run_once()
        assert frames == copied > 3000
        assert path.stat().st_size > 12_000_000
        assert await client.execute_query_dict("SELECT COUNT(*) AS n FROM filler") == [{"n": 3000}]
    finally:
        await client.close()


async def test_the_app_runs_a_checkpointer_on_sqlite_alone(app: object) -> None:
    running = {task.get_name() for task in asyncio.all_tasks()}
    # PostgreSQL keeps its own log; on SQLite nothing else would copy it before 512 MiB
    assert ("wal-checkpoints" in running) is not db.is_postgres()

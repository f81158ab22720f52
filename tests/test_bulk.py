"""Batched writes (`server.models.bulk`) on the suite's database: a large insert takes every
row, and on PostgreSQL leaves the event loop free to serve the worker's other requests while
its rows are encoded."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence
from typing import Any, overload

import pytest

from server.models import db
from server.models.bulk import insert_records


class _Handed(Sequence[tuple[int, str]]):
    """Rows that count how many of them were handed to the driver."""

    def __init__(self, rows: list[tuple[int, str]]) -> None:
        self.rows, self.handed = rows, 0

    def __len__(self) -> int:
        return len(self.rows)

    @overload
    def __getitem__(self, index: int) -> tuple[int, str]: ...
    @overload
    def __getitem__(self, index: slice) -> list[tuple[int, str]]: ...
    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):
            self.handed = max(self.handed, min(index.stop or len(self), len(self)))
        return self.rows[index]

    def __iter__(self) -> Iterator[tuple[int, str]]:
        for row in self.rows:
            self.handed += 1
            yield row


async def test_a_large_insert_lets_the_event_loop_serve_others_between_its_rows(
    client: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(db, "COPY_TURN", 100)
    records = _Handed([(n, f"row {n}") for n in range(5_000)])
    longest = 0  # the most rows handed over between two turns of another task

    async def other_request() -> None:
        nonlocal longest
        seen = records.handed
        while True:
            await asyncio.sleep(0)
            longest, seen = max(longest, records.handed - seen), records.handed

    async with db.transaction():  # one connection: the temporary table is its own
        await db.execute("CREATE TEMPORARY TABLE bulk_probe (id INTEGER, name TEXT)")
        served = asyncio.ensure_future(other_request())
        await asyncio.sleep(0)
        try:
            await insert_records("bulk_probe", ("id", "name"), records)
        finally:
            served.cancel()
        stored = await db.fetch("SELECT COUNT(*) AS n, SUM(id) AS ids FROM bulk_probe")
        await db.execute("DROP TABLE bulk_probe")
    assert stored == [{"n": 5_000, "ids": sum(range(5_000))}]
    assert records.handed == 5_000
    if db.is_postgres():  # (SQLite takes the rows in its driver's thread)
        # the COPY is fed in turns of 100 rows: without them, asyncpg encodes all 5,000 before
        # it awaits anything
        assert 0 < longest <= 100

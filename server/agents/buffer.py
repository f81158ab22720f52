"""The check-in buffer: coalesces check-ins per agent token and writes them in batches.

A check-in is answered as soon as it is recorded here; the buffer writes what it holds every
`flush_interval` seconds (sooner when `max_pending` agents are waiting), one statement per batch.
A failed write keeps its records for the next round; `stop()` writes everything still held.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable
from datetime import datetime

from server.domain.agents import AgentReport, CheckinRecord, WrittenCheckins, write_checkins

log = logging.getLogger(__name__)

FlushListener = Callable[[list[str], WrittenCheckins], None]


class CheckinBuffer:
    def __init__(
        self,
        flush_interval: float,
        *,
        max_pending: int = 20_000,
        on_written: FlushListener | None = None,
    ) -> None:
        self.flush_interval = max(0.01, flush_interval)
        self.max_pending = max_pending
        self.on_written = on_written
        self._records: dict[str, CheckinRecord] = {}
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        # counters, for tests and metrics
        self.recorded = 0
        self.written = 0
        self.flushes = 0
        self.failures = 0
        self.last_flush_seconds = 0.0

    def __len__(self) -> int:
        return len(self._records)

    def record(self, token_hash: str, at: datetime, changes: AgentReport | None = None) -> None:
        """Remember a check-in; later ones of the same token in the same round coalesce."""
        self.recorded += 1
        existing = self._records.get(token_hash)
        if existing is None:
            self._records[token_hash] = CheckinRecord(token_hash, at, changes)
            if len(self._records) >= self.max_pending:
                self._wake.set()
        else:
            existing.merge(at, changes)

    def discard(self, token_hashes: Iterable[str]) -> None:
        """Drop what dead tokens recorded (a write would match no row anyway)."""
        for token_hash in token_hashes:
            self._records.pop(token_hash, None)

    async def flush(self) -> WrittenCheckins:
        """Write everything held now; on failure the records stay for the next round."""
        async with self._lock:
            if not self._records:
                return WrittenCheckins()
            records, self._records = self._records, {}
            started = time.perf_counter()
            try:
                written = await write_checkins(list(records.values()))
            except BaseException:
                self.failures += 1
                for token_hash, record in records.items():  # newer records win on merge
                    newer = self._records.get(token_hash)
                    if newer is None:
                        self._records[token_hash] = record
                    else:
                        record.merge(newer.at, newer.changes)
                        self._records[token_hash] = record
                raise
            self.flushes += 1
            self.written += len(written.rows)
            self.last_flush_seconds = time.perf_counter() - started
        if self.on_written is not None:
            try:
                self.on_written(list(records), written)
            except Exception:
                log.exception("check-in flush listener failed")
        return written

    async def start(self) -> None:
        if self._task is None:
            self._stopping = False
            self._task = asyncio.create_task(self._run(), name="checkin-buffer")

    async def stop(self) -> None:
        """Stop the background writer and write everything still held."""
        task, self._task = self._task, None
        self._stopping = True
        self._wake.set()
        if task is not None:
            await task
        await self.flush()

    async def _run(self) -> None:
        while not self._stopping:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.flush_interval)
            self._wake.clear()
            if self._stopping:
                return
            try:
                await self.flush()
            except Exception:
                log.exception("writing %d buffered check-ins failed; retrying", len(self))

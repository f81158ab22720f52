"""The enrolment writer: enrolments arriving together are written together.

A mass deployment sends thousands of enrolments at once; one transaction each would cost a
commit (and on PostgreSQL a round trip per statement) per computer. The writer waits `window`
seconds after the first enrolment for others to join, and whatever arrives while a batch is
being written joins the next (at most `in_flight` batches are written at once, so the next is
read while one commits): one transaction and a fixed number of statements per batch
(`server.domain.enrolment.enroll_batch`), each request answered with its own enrolment or
refusal. A lone enrolment waits only the window.
"""

from __future__ import annotations

import asyncio
import logging

from server.domain.enrolment import (
    Enrolment,
    EnrolmentRequest,
    Pending,
    enroll,
    enroll_batch,
)
from server.settings import Settings

log = logging.getLogger(__name__)

WINDOW = 0.002  # seconds the first enrolment of a batch waits for others
MAX_BATCH = 500  # enrolments in one transaction
IN_FLIGHT = 2  # transactions at once: the next batch is read while one commits


class EnrolmentWriter:
    def __init__(
        self,
        settings: Settings,
        *,
        window: float = WINDOW,
        max_batch: int = MAX_BATCH,
        in_flight: int = IN_FLIGHT,
    ) -> None:
        self.settings = settings
        self.window = window
        self.max_batch = max_batch
        self._slots = asyncio.Semaphore(in_flight)
        self._pending: list[tuple[Pending, asyncio.Future[Enrolment]]] = []
        self._collecting = False  # a task will take what is pending
        self._tasks: set[asyncio.Task[None]] = set()
        self.batches = 0  # written, for tests and metrics

    async def enroll(
        self, installer_token: str, request: EnrolmentRequest, client_address: str | None
    ) -> Enrolment:
        """Enrol with the next batch; raises AgentUnauthorized when refused."""
        future: asyncio.Future[Enrolment] = asyncio.get_running_loop().create_future()
        self._pending.append((Pending(installer_token, request, client_address), future))
        if not self._collecting:
            self._collect()
        return await asyncio.shield(future)  # a client that leaves does not undo the write

    async def stop(self) -> None:
        """Write what is waiting (called before the database goes down)."""
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def _collect(self) -> None:
        self._collecting = True
        task = asyncio.create_task(self._write(), name="enrolment-writer")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _write(self) -> None:
        """Once a transaction slot is free: wait the window, take what is pending, write it."""
        async with self._slots:
            await asyncio.sleep(self.window)
            batch = self._pending[: self.max_batch]
            del self._pending[: self.max_batch]
            self._collecting = False
            if self._pending:  # more than one batch holds
                self._collect()
            try:
                try:
                    results = await enroll_batch([p for p, _ in batch], settings=self.settings)
                except Exception:
                    log.exception("a batch of %d enrolments failed; one by one now", len(batch))
                    await self._one_by_one(batch)
                    return
                self.batches += 1
                for (_, future), result in zip(batch, results, strict=True):
                    _settle(future, result)
            finally:  # whatever happened, no agent's request waits for ever
                for _, future in batch:
                    _settle(future, RuntimeError("the enrolment was not written"))

    async def _one_by_one(self, batch: list[tuple[Pending, asyncio.Future[Enrolment]]]) -> None:
        """After a batch failed: each enrolment alone, so one bad request fails only itself."""
        for pending, future in batch:
            try:
                result: Enrolment | BaseException = await enroll(
                    pending.installer_token,
                    pending.request,
                    settings=self.settings,
                    client_address=pending.client_address,
                )
            except Exception as exc:
                result = exc
            _settle(future, result)


def _settle(future: asyncio.Future[Enrolment], result: Enrolment | BaseException) -> None:
    if future.done():
        return
    if isinstance(result, BaseException):
        future.set_exception(result)
    else:
        future.set_result(result)

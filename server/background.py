"""A periodic background task of the app's lifespan: `start()` runs `run_once()` in a loop
until `stop()`. One failed round is logged and the next one retries, so the task never dies of
it; shared by the usage snapshots, the connection watcher and the sync scheduler."""

from __future__ import annotations

import asyncio
import contextlib
import logging


class PeriodicTask:
    """Subclasses set `name` (of the asyncio task), `failure` (logged when a round raises) and
    `period`, and implement `run_once()`; `pause()` may wait differently between rounds."""

    name: str
    failure: str
    period: float
    _task: asyncio.Task[None] | None = None

    async def run_once(self) -> object:
        raise NotImplementedError

    async def pause(self) -> None:
        await asyncio.sleep(self.period)

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=self.name)

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        # `stop()` forgets the task before cancelling it: should a round swallow the
        # cancellation (a driver may), the loop still ends instead of running on unawaited.
        while self._task is asyncio.current_task():
            try:
                await self.run_once()
            except asyncio.CancelledError:
                raise
            except Exception:  # logged where the subclass lives, as before the base existed
                logging.getLogger(type(self).__module__).exception(self.failure)
            await self.pause()

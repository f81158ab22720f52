"""Sync runs: starting them, one at a time per instance, following them, and reading them.

One run at a time per instance, across processes too: the runner holds `locks.SYNC_RUN` for the
instance, and a QUEUED or RUNNING row whose lock nobody holds was left by a process that died,
so the next start marks it FAILED. Running one is `sync.execute`. Reading: every run of the
viewer's instance, newest first (the SYNC area).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import Iterable
from typing import Any

from server.domain import reconcile, sync
from server.domain.access import Scope
from server.domain.errors import UpstreamFailed
from server.domain.instances import keep_from_removal
from server.domain.listing import Listing, sql_in
from server.domain.sync import ProgressCallback
from server.domain.upstream_connection import ClientFactory, connected, require_sync_write
from server.events import EventBus, InProcessEventBus
from server.models import SyncRun, db, locks
from server.models.enums import Area, SyncState
from server.settings import Settings
from server.upstream.client import MspAdministratorClient

ACTIVE = (SyncState.QUEUED, SyncState.RUNNING)
FINISHED = (SyncState.SUCCEEDED, SyncState.FAILED)
_INTERRUPTED = "interrupted: the process running this sync stopped before it finished"

# run id -> the task running it in this process, and the lock it releases when it ends
_tasks: dict[int, tuple[asyncio.Task[None], locks.Lock]] = {}


# -- starting and following -----------------------------------------------------------------


def _forget(run_id: int, _: asyncio.Task[Any]) -> None:
    _tasks.pop(run_id, None)


async def running_run(instance_id: int) -> SyncRun | None:
    return await SyncRun.filter(instance_id=instance_id, state__in=ACTIVE).order_by("-id").first()


async def _begin(instance_id: int, trigger: str, bus: EventBus) -> SyncRun:
    """Create a run; call with the instance's run lock held (earlier active runs are stale)."""
    for stale in await SyncRun.filter(instance_id=instance_id, state__in=ACTIVE):
        await sync.finish(stale, bus, None, SyncState.FAILED, error=_INTERRUPTED)
    async with db.transaction():  # InstanceRemoved if it went since the caller looked
        await keep_from_removal(instance_id)
        run = await SyncRun.create(instance_id=instance_id, trigger=trigger, state=SyncState.QUEUED)
    await sync.publish(run, bus, None)
    return run


async def start_sync(
    instance_id: int,
    trigger: str,
    *,
    settings: Settings,
    bus: EventBus,
    scope: Scope | None = None,
    make_client: ClientFactory = MspAdministratorClient,
) -> SyncRun:
    """Start a run in the background, or return the one in progress."""
    await require_sync_write(scope, instance_id)
    await connected(instance_id)
    deadline = time.monotonic() + 5
    while True:
        lock = await locks.try_lock(locks.SYNC_RUN, instance_id)
        if lock is not None:
            try:
                run = await _begin(instance_id, trigger, bus)
            except BaseException:
                await lock.release()
                raise
            task = asyncio.create_task(
                sync.execute(run, lock, settings, bus, None, make_client=make_client),
                name=f"sync-run-{run.id}",
            )
            _tasks[run.id] = (task, lock)
            task.add_done_callback(functools.partial(_forget, run.id))
            return run
        running = await running_run(instance_id)
        if running is not None:
            return running
        if time.monotonic() > deadline:  # held, yet no run shows: a runner being born or gone
            raise UpstreamFailed("a sync of this instance is starting or ending; try again")
        await asyncio.sleep(0.05)


async def sync_now(
    instance_id: int,
    settings: Settings,
    trigger: str = "manual",
    on_progress: ProgressCallback | None = None,
    *,
    bus: EventBus | None = None,
    make_client: ClientFactory = MspAdministratorClient,
    after_first_write: reconcile.Hook | None = None,
) -> SyncRun:
    """Run a sync in this task and return it finished; if one is in progress (here or in
    another process), follow that one to its end instead."""
    bus = bus or InProcessEventBus()
    await connected(instance_id)
    watched: SyncRun | None = None
    reported: tuple[Any, ...] | None = None
    while True:
        if watched is not None:
            watched = await SyncRun.get(id=watched.id)
            if _progress_of(watched) != reported:
                reported = _progress_of(watched)
                await sync.call(on_progress, watched)
            if watched.state in FINISHED:
                return watched
        lock = await locks.try_lock(locks.SYNC_RUN, instance_id)
        if lock is not None:
            if watched is not None and (await SyncRun.get(id=watched.id)).state in FINISHED:
                await lock.release()
                return await SyncRun.get(id=watched.id)
            try:
                run = await _begin(instance_id, trigger, bus)
            except BaseException:
                await lock.release()
                raise
            await sync.execute(
                run,
                lock,
                settings,
                bus,
                on_progress,
                make_client=make_client,
                after_first_write=after_first_write,
            )
            return run  # as the run ended: its row is gone if the instance was removed meanwhile
        if watched is None:
            watched = await running_run(instance_id)
        await asyncio.sleep(0.2)


def _progress_of(run: SyncRun) -> tuple[Any, ...]:
    return (run.state, run.phase, run.companies_seen)


async def cancel_running(bus: EventBus | None = None) -> None:
    """Interrupt the runs of this process (at shutdown); each is marked FAILED."""
    running = list(_tasks.items())
    for task, _ in (entry for _, entry in running):
        task.cancel()
    for run_id, (task, lock) in running:
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
        if not lock.released:  # cancelled before it started: nothing ran, nothing released
            with contextlib.suppress(Exception):
                run = await SyncRun.get(id=run_id)
                if run.state in ACTIVE:
                    await sync.finish(
                        run,
                        bus or InProcessEventBus(),
                        None,
                        SyncState.FAILED,
                        error="interrupted: the sync was stopped",
                    )
            await lock.release()


async def recover_interrupted(bus: EventBus) -> int:
    """Mark FAILED the active runs nobody runs any more (their process died); returns how many."""
    failed = 0
    for instance_id in {
        r.instance_id for r in await SyncRun.filter(state__in=ACTIVE).only("id", "instance_id")
    }:
        lock = await locks.try_lock(locks.SYNC_RUN, instance_id)
        if lock is None:
            continue
        try:
            for stale in await SyncRun.filter(instance_id=instance_id, state__in=ACTIVE):
                await sync.finish(stale, bus, None, SyncState.FAILED, error=_INTERRUPTED)
                failed += 1
        finally:
            await lock.release()
    return failed


# -- reading ----------------------------------------------------------------------------------

WITHHELD_ERROR = "the sync failed; users with sync rights on the whole instance can read why"


def visible(scope: Scope) -> Listing[SyncRun]:
    listing = Listing(SyncRun, "sync_run r", "r", ("r.id",), ("id",), descending=True)
    listing.filter("r.instance_id = ?", scope.instance_id)
    # Runs belong to the whole instance: reading them takes SYNC on some group.
    return listing if scope.paths(Area.SYNC) else listing.filter("1=0")


async def by_ids(scope: Scope, ids: Iterable[int]) -> dict[int, SyncRun]:
    values: list[Any] = list(set(ids))
    runs = await visible(scope).filter(*sql_in("r.id", values)).rows() if values else []
    return {r.id: r for r in runs}


async def latest(scope: Scope) -> SyncRun | None:
    rows = await visible(scope).rows(limit=1)
    return rows[0] if rows else None


def error_for(scope: Scope, run: SyncRun) -> str | None:
    """A run's error as the viewer may read it: the text can name upstream companies and
    email addresses of the whole account, so only a viewer whose SYNC rights cover the whole
    instance reads it; others learn that the run failed."""
    if run.error is None:
        return None
    return run.error if scope.covers_instance(Area.SYNC) else WITHHELD_ERROR

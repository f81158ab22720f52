"""The scheduled sync: every `sync_interval` seconds per connected instance, and at start for
those whose last sync is older than that. With several workers (or hosts) exactly one process
schedules: the holder of `locks.SYNC_SCHEDULER`; the others keep trying to take over."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Collection

from server.background import PeriodicTask
from server.domain import sync_runs
from server.domain.errors import NotFound
from server.events import EventBus
from server.models import db, locks
from server.settings import Settings

log = logging.getLogger(__name__)

SCHEDULED = "schedule"


async def due_instances(
    interval: int, now: dt.datetime | None = None, among: Collection[int] | None = None
) -> list[int]:
    """Connected instances (of `among`, if given) whose last run, or connection before any run,
    is `interval` seconds old."""
    cutoff = (now or dt.datetime.now(dt.UTC)) - dt.timedelta(seconds=interval)
    rows = await db.fetch(
        "SELECT i.id AS id FROM instance i WHERE i.upstream_url IS NOT NULL AND COALESCE("
        "(SELECT MAX(r.created_at) FROM sync_run r WHERE r.instance_id = i.id), i.connected_at"
        ") < ? ORDER BY i.id",
        [cutoff],
    )
    return [row["id"] for row in rows if among is None or row["id"] in among]


class SyncScheduler(PeriodicTask):
    """`start()` in the app's lifespan, `stop()` at its end (which also interrupts the runs of
    this process). A `sync_interval` of 0 or less turns scheduling off."""

    name = "sync-scheduler"
    failure = "scheduling syncs failed"

    def __init__(
        self,
        settings: Settings,
        bus: EventBus,
        *,
        period: float | None = None,
        election_key: int = 0,
    ) -> None:
        self.settings = settings
        self.election_key = election_key
        self.bus = bus
        interval = settings.sync_interval
        self.period = period if period is not None else max(1.0, min(60.0, interval / 10))
        self._leader: locks.Lock | None = None

    @property
    def enabled(self) -> bool:
        return self.settings.sync_interval > 0

    @property
    def is_leader(self) -> bool:
        return self._leader is not None

    async def start(self) -> None:
        if self.enabled:
            await super().start()

    async def stop(self) -> None:
        await super().stop()
        await sync_runs.cancel_running(self.bus)
        leader, self._leader = self._leader, None
        if leader is not None:
            await leader.release()

    async def run_once(
        self, now: dt.datetime | None = None, among: Collection[int] | None = None
    ) -> list[int]:
        """If this process schedules: start the due syncs; returns their instance ids."""
        if self._leader is None:
            self._leader = await locks.try_lock(locks.SYNC_SCHEDULER, self.election_key)
            if self._leader is None:
                return []
            log.info("this process schedules the syncs (every %s s)", self.settings.sync_interval)
            await sync_runs.recover_interrupted(self.bus)
        started = []
        for instance_id in await due_instances(self.settings.sync_interval, now, among):
            try:
                await sync_runs.start_sync(
                    instance_id, SCHEDULED, settings=self.settings, bus=self.bus
                )
            except NotFound:  # removed since it was listed
                continue
            except Exception:
                log.exception("could not start the scheduled sync of instance %s", instance_id)
                continue
            log.info("scheduled sync of instance %s started", instance_id)
            started.append(instance_id)
        return started

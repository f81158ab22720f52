"""The daily usage snapshot, taken at `MSP_CONSOLE_USAGE_SNAPSHOT_AT` (UTC) in every process
that serves: each one looks once a period, and the database decides who takes a day (the
unique `usage_day` row, `usage.take_scheduled_snapshot`), so however many workers and hosts
run, each instance's day is taken once. Before the time of day nothing is asked; after it, a
day already taken (by the schedule or a sync) costs one small query a period."""

from __future__ import annotations

import datetime as dt
import logging

from server.background import PeriodicTask
from server.domain import usage
from server.domain.errors import InstanceRemoved
from server.settings import Settings

log = logging.getLogger(__name__)


class UsageSnapshots(PeriodicTask):
    """`start()` in the app's lifespan, `stop()` at its end."""

    name = "usage-snapshots"
    failure = "usage snapshots failed"

    def __init__(self, settings: Settings, *, period: float = 60.0) -> None:
        self.at = settings.usage_snapshot_time
        self.period = period

    async def run_once(self, now: dt.datetime | None = None) -> list[int]:
        """Take today's snapshot of every connected instance that lacks one, once the time of
        day has come; returns the instances this process took."""
        now = now or dt.datetime.now(dt.UTC)
        if not usage.snapshot_due(now, self.at):
            return []
        taken = []
        for instance_id in await usage.instances_without_snapshot(now):
            try:
                if await usage.take_scheduled_snapshot(instance_id, now):
                    taken.append(instance_id)
            except InstanceRemoved:  # since it was listed: nothing left to take
                continue
            except Exception:  # the next period tries again
                log.exception("usage snapshot of instance %s failed", instance_id)
        if taken:
            log.info("usage snapshot of %s taken for instances %s", now.date(), taken)
        return taken

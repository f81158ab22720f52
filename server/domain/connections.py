"""Connection status of computers, derived from the last check-in, in SQL and in Python alike.

`CONNECTED` while the last check-in is at most the check-in interval plus a grace old, `DELAYED`
until `not_connected_after` seconds, `NOT_CONNECTED` after, `NEVER_CONNECTED` without one. The
status is never stored as truth: `announced_status` only remembers what subscribers were last
told, so `ConnectionWatcher` can publish each transition once.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from tortoise.transactions import in_transaction

from server import events
from server.background import PeriodicTask
from server.domain import counters
from server.events import EventBus
from server.models import db
from server.models.enums import ConnectionStatus
from server.settings import Settings

CONNECTED = ConnectionStatus.CONNECTED
DELAYED = ConnectionStatus.DELAYED
NOT_CONNECTED = ConnectionStatus.NOT_CONNECTED
NEVER_CONNECTED = ConnectionStatus.NEVER_CONNECTED


def utc(moment: datetime) -> datetime:
    """The same instant in UTC (stored datetimes compare as text on SQLite, so one offset)."""
    if moment.tzinfo is None:
        raise ValueError("naive datetime: connection status needs an aware one")
    return moment.astimezone(UTC)


def thresholds(now: datetime, settings: Settings) -> tuple[datetime, datetime]:
    """(connected_since, delayed_since): a check-in at or after each is CONNECTED / DELAYED."""
    now = utc(now)
    connected_since = now - timedelta(seconds=settings.checkin_interval + settings.connection_grace)
    delayed_since = now - timedelta(seconds=settings.not_connected_after)
    return connected_since, min(delayed_since, connected_since)


def connection_status(
    last_connected_at: datetime | None, now: datetime, settings: Settings
) -> ConnectionStatus:
    """The Python twin of `connection_status_sql`."""
    if last_connected_at is None:
        return NEVER_CONNECTED
    connected_since, delayed_since = thresholds(now, settings)
    last = utc(last_connected_at)
    if last >= connected_since:
        return CONNECTED
    if last >= delayed_since:
        return DELAYED
    return NOT_CONNECTED


def _column(column_prefix: str) -> str:
    if column_prefix and not column_prefix.endswith("."):
        column_prefix += "."
    return f"{column_prefix}last_connected_at"


def connection_status_sql(
    column_prefix: str, now: datetime, settings: Settings
) -> tuple[str, list[Any]]:
    """A CASE expression giving a computer's status name, with its parameters.

    `column_prefix` is the table alias (`"c"` or `"c."`; `""` for none). Use it in a select list
    or compared with a status name; to count per status, group by the selected column (`GROUP BY
    1`), not by a second copy: PostgreSQL sees other parameter numbers as another expression.
    """
    column = _column(column_prefix)
    connected_since, delayed_since = thresholds(now, settings)
    sql = (
        f"(CASE WHEN {column} IS NULL THEN '{NEVER_CONNECTED.value}' "
        f"WHEN {column} >= ? THEN '{CONNECTED.value}' "
        f"WHEN {column} >= ? THEN '{DELAYED.value}' "
        f"ELSE '{NOT_CONNECTED.value}' END)"
    )
    return sql, [connected_since, delayed_since]


def _status_range(
    column: str, status: ConnectionStatus, connected_since: datetime, delayed_since: datetime
) -> tuple[str, list[Any]]:
    if status is NEVER_CONNECTED:
        return f"{column} IS NULL", []
    if status is CONNECTED:
        return f"{column} >= ?", [connected_since]
    if status is DELAYED:
        return f"({column} < ? AND {column} >= ?)", [connected_since, delayed_since]
    return f"{column} < ?", [delayed_since]


def connection_status_filter_sql(
    column_prefix: str,
    statuses: Iterable[ConnectionStatus | str],
    now: datetime,
    settings: Settings,
) -> tuple[str, list[Any]]:
    """A WHERE condition keeping computers in any of `statuses`, as index-friendly ranges.

    Equivalent to `connection_status_sql(...) IN (...)`; an empty list keeps nothing (`1=0`).
    """
    column = _column(column_prefix)
    connected_since, delayed_since = thresholds(now, settings)
    wanted = sorted({ConnectionStatus(s) for s in statuses}, key=list(ConnectionStatus).index)
    if not wanted:
        return "1=0", []
    if len(wanted) == len(ConnectionStatus):
        return "1=1", []
    parts: list[str] = []
    params: list[Any] = []
    for status in wanted:
        sql, values = _status_range(column, status, connected_since, delayed_since)
        parts.append(sql)
        params.extend(values)
    return "(" + " OR ".join(parts) + ")", params


def _stale_announcement_sql(
    now: datetime, settings: Settings, announced: Iterable[ConnectionStatus]
) -> tuple[str, list[Any]]:
    """Computers `announced` in one of these whose computed status differs (ranges, no CASE)."""
    parts: list[str] = []
    params: list[Any] = []
    for status in announced:
        others = [s for s in ConnectionStatus if s is not status]
        sql, values = connection_status_filter_sql("", others, now, settings)
        parts.append(f"(announced_status = '{status.value}' AND {sql})")
        params.extend(values)
    return "(" + " OR ".join(parts) + ")", params


async def announce_transitions(
    bus: EventBus | None,
    settings: Settings,
    now: datetime | None = None,
    *,
    instance_id: int | None = None,
    batch: int = 5000,
) -> dict[int, list[int]]:
    """Store the computed status of every computer whose announcement is stale and publish
    `COMPUTER_CONNECTION` per instance with their ids; returns {instance_id: computer_ids}.

    A round claims up to `batch` computers announced protected (CONNECTED, DELAYED) and up to
    `batch` others, each with one statement (UPDATE ... RETURNING, which gives the new status,
    not the old: hence two), so a row is claimed exactly once even with several processes
    watching; in the round's transaction the subtree counters' `protected` follows the
    computers that crossed over (one upsert)."""
    now = utc(now or datetime.now(UTC))
    status_sql, status_params = connection_status_sql("", now, settings)
    protecting = [s for s in ConnectionStatus if s.value in counters.PROTECTING]
    claims = []
    for announced in (protecting, [s for s in ConnectionStatus if s not in protecting]):
        stale_sql, stale_params = _stale_announcement_sql(now, settings, announced)
        if instance_id is not None:
            stale_sql = f"({stale_sql} AND instance_id = ?)"
            stale_params.append(instance_id)
        names = ", ".join(f"'{s.value}'" for s in announced)
        statement = (
            f"UPDATE computer SET announced_status = {status_sql} "
            f"WHERE id IN (SELECT id FROM computer WHERE {stale_sql} LIMIT {int(batch)}) "
            # again on the row itself: PostgreSQL checks it anew on a row another claim updated
            f"AND announced_status IN ({names}) "
            "RETURNING id, instance_id, announced_status, "
            "(SELECT g.path FROM static_group g WHERE g.id = computer.group_id) AS group_path"
        )
        claims.append((statement, [*status_params, *stale_params], announced is protecting))
    changed: dict[int, list[int]] = defaultdict(list)
    while True:
        rows, full = [], False
        moves: list[counters.Held] = []
        async with in_transaction():
            for statement, params, was_protected in claims:
                claimed = await db.fetch(statement, params)
                full = full or len(claimed) == batch
                rows += claimed
                delta = -1 if was_protected else 1
                moves += [
                    (row["instance_id"], row["group_path"], counters.PROTECTED, delta)
                    for row in claimed
                    if (row["announced_status"] in counters.PROTECTING) != was_protected
                ]
            await counters.shift_held(moves)
        batch_changes: dict[int, list[int]] = defaultdict(list)
        for row in rows:
            batch_changes[row["instance_id"]].append(row["id"])
        if bus is not None:
            for instance, ids in batch_changes.items():
                await bus.publish(
                    events.COMPUTER_CONNECTION,
                    {"instance_id": instance, "computer_ids": sorted(ids)},
                )
        for instance, ids in batch_changes.items():
            changed[instance].extend(ids)
        if not full:
            return {instance: sorted(ids) for instance, ids in changed.items()}


class ConnectionWatcher(PeriodicTask):
    """Announces connection-status transitions every `period` seconds, or sooner when woken
    (a check-in that reconnects a computer wakes it)."""

    name = "connection-watcher"
    failure = "announcing connection transitions failed"

    def __init__(
        self,
        settings: Settings,
        bus: EventBus | None,
        *,
        period: float = 5.0,
        min_gap: float = 0.2,
    ) -> None:
        self.settings = settings
        self.bus = bus
        self.period = period
        self.min_gap = min_gap
        self._wake = asyncio.Event()

    def wake(self) -> None:
        self._wake.set()

    async def run_once(self, now: datetime | None = None) -> dict[int, list[int]]:
        return await announce_transitions(self.bus, self.settings, now)

    async def pause(self) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), self.period)
        self._wake.clear()
        await asyncio.sleep(self.min_gap)

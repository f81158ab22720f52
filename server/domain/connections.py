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
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from server import events
from server.background import PeriodicTask
from server.domain import counters
from server.events import EventBus
from server.models import db
from server.models.bulk import encode_ids, ids_source
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


def _stale_ranges(now: datetime, settings: Settings) -> list[tuple[str, list[Any]]]:
    """Computers whose computed status differs from `announced_status`, as ranges of the
    (announced_status, last_connected_at) index: per announced status, no check-in and the
    check-ins outside that status's own range. Each range holds only stale rows, so a batch
    reads no other row (one range per announced status with the check-ins filtered read every
    computer announced alike, at each batch: a batch cost in proportion to the instance)."""
    column = "last_connected_at"
    connected_since, delayed_since = thresholds(now, settings)
    outside: dict[ConnectionStatus, list[tuple[str, list[Any]]]] = {
        CONNECTED: [(f"{column} < ?", [connected_since])],
        DELAYED: [(f"{column} >= ?", [connected_since]), (f"{column} < ?", [delayed_since])],
        NOT_CONNECTED: [(f"{column} >= ?", [delayed_since])],
        NEVER_CONNECTED: [(f"{column} IS NOT NULL", [])],
    }
    ranges: list[tuple[str, list[Any]]] = []
    for status, checked_in in outside.items():
        if status is not NEVER_CONNECTED:
            checked_in = [(f"{column} IS NULL", []), *checked_in]
        for sql, values in checked_in:
            ranges.append((f"announced_status = '{status.value}' AND {sql}", values))
    return ranges


def stale_batch_sql(
    now: datetime, settings: Settings, batch: int, instance_id: int | None = None
) -> tuple[str, list[Any]]:
    """The ids of at most `batch` computers whose announcement is stale: each range read in
    index order up to the batch (`ORDER BY` keeps PostgreSQL off a scan that would filter the
    table), one after the other until the batch is full."""
    arms: list[str] = []
    params: list[Any] = []
    for n, (sql, values) in enumerate(_stale_ranges(now, settings)):
        if instance_id is not None:
            sql += " AND instance_id = ?"
            values = [*values, instance_id]
        arms.append(
            f"SELECT id FROM (SELECT id FROM computer WHERE {sql} "
            f"ORDER BY last_connected_at LIMIT {int(batch)}) AS stale_{n}"
        )
        params.extend(values)
    return " UNION ALL ".join(arms) + f" LIMIT {int(batch)}", params


async def announce_transitions(
    bus: EventBus | None,
    settings: Settings,
    now: datetime | None = None,
    *,
    instance_id: int | None = None,
    batch: int = 500,
) -> dict[int, list[int]]:
    """Store the computed status of every computer whose announcement is stale and publish
    `COMPUTER_CONNECTION` per instance with their ids; returns {instance_id: computer_ids}.

    Each batch is one transaction: the stale rows read (locked on PostgreSQL) with the status
    they were announced in, the UPDATE ... RETURNING of those still stale, and the subtree
    counters' `protected` shifted for those that entered or left CONNECTED/DELAYED (RETURNING
    gives only the new status). So a row is claimed exactly once even with several processes
    watching: one that waited on another's row locks (PostgreSQL) finds the row announced when
    it checks the status again. Batches are small and the event loop is given back between
    them: on SQLite every request's statements share the connection (and the write lock) with
    the watcher, so each waits for one batch at most, however many computers turned stale at
    once.
    """
    now = utc(now or datetime.now(UTC))
    status_sql, status_params = connection_status_sql("", now, settings)
    stale_sql, stale_params = stale_batch_sql(now, settings, batch, instance_id)
    # each computer's instance row taken before it (KEY SHARE), as `instances.remove_instance`
    # asks; the computers of an instance being removed are skipped: they go with it. The
    # computers are locked in id order, as check-ins and the removal lock them: in the order
    # the plan happens to read them, the watcher could hold one a check-in batch waits for
    # while it waits for one the batch holds.
    claim = (
        "SELECT m.id, m.announced_status, g.path FROM computer m "
        "JOIN static_group g ON g.id = m.group_id JOIN instance n ON n.id = m.instance_id "
        f"WHERE m.id IN ({stale_sql})"
        + (
            " ORDER BY m.id FOR KEY SHARE OF n SKIP LOCKED FOR UPDATE OF m"
            if db.is_postgres()
            else ""
        )
    )
    statement = (
        f"UPDATE computer SET announced_status = {status_sql} "
        f"WHERE id IN ({ids_source()}) AND announced_status <> {status_sql} "
        "RETURNING id, instance_id, announced_status"
    )
    changed: dict[int, list[int]] = defaultdict(list)
    while True:
        async with db.transaction():
            claimed = {row["id"]: row for row in await db.fetch(claim, stale_params)}
            rows = []
            if claimed:
                rows = await db.fetch(
                    statement, [*status_params, encode_ids(claimed), *status_params]
                )
            await counters.shift_held(_protected_moves(claimed, rows))
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
        if len(claimed) < batch:
            return {instance: sorted(ids) for instance, ids in changed.items()}
        await asyncio.sleep(0)


def _protected_moves(
    claimed: Mapping[int, Mapping[str, Any]], announced: Iterable[Mapping[str, Any]]
) -> list[counters.Held]:
    """A computer announced anew that entered CONNECTED/DELAYED (+1) or left them (-1)."""
    moves: list[counters.Held] = []
    for row in announced:
        was = claimed[row["id"]]
        delta = int(row["announced_status"] in counters.PROTECTING) - int(
            was["announced_status"] in counters.PROTECTING
        )
        if delta:
            moves.append((row["instance_id"], was["path"], counters.PROTECTED, delta))
    return moves


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

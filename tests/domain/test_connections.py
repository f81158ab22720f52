"""Connection status: the SQL expression, the filter and the Python twin agree at every boundary;
transitions are stored and announced once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from tortoise.transactions import in_transaction

from server import events
from server.domain.connections import (
    ConnectionWatcher,
    announce_transitions,
    connection_status,
    connection_status_filter_sql,
    connection_status_sql,
)
from server.events import InProcessEventBus
from server.models import Computer, db
from server.models.db import count_statements, fetch
from server.models.enums import ConnectionStatus
from tests.agents.conftest import SETTINGS, Tree, database, tree
from tests.waiting import eventually

__all__ = ["database", "tree"]  # fixtures

S = ConnectionStatus
CONNECTED_FOR = SETTINGS.checkin_interval + SETTINGS.connection_grace  # 120 s
DELAYED_FOR = SETTINGS.not_connected_after  # 1 day
US = timedelta(microseconds=1)


async def add_computer(
    tree: Tree, last_connected_at: datetime | None, announced: ConnectionStatus = S.NEVER_CONNECTED
) -> Computer:
    n = await Computer.filter(instance_id=tree.instance.id).count()
    return await Computer.create(
        instance_id=tree.instance.id,
        group_id=tree.customer_group.id,
        company_id=tree.customer.id,
        name=f"pc-{n}",
        sort_name=f"pc-{n}",
        hardware_id=f"hw-{n}",
        last_connected_at=last_connected_at,
        announced_status=announced,
    )


def test_the_python_status_at_the_boundaries() -> None:
    now = datetime(2030, 5, 1, 12, 0, 0, tzinfo=UTC)
    connected_edge = now - timedelta(seconds=CONNECTED_FOR)
    delayed_edge = now - timedelta(seconds=DELAYED_FOR)
    assert connection_status(None, now, SETTINGS) is S.NEVER_CONNECTED
    assert connection_status(now, now, SETTINGS) is S.CONNECTED
    assert connection_status(now + timedelta(hours=1), now, SETTINGS) is S.CONNECTED  # clock skew
    assert connection_status(connected_edge, now, SETTINGS) is S.CONNECTED
    assert connection_status(connected_edge - US, now, SETTINGS) is S.DELAYED
    assert connection_status(delayed_edge, now, SETTINGS) is S.DELAYED
    assert connection_status(delayed_edge - US, now, SETTINGS) is S.NOT_CONNECTED
    # the same instants in another offset
    paris = timezone(timedelta(hours=2))
    assert connection_status(connected_edge.astimezone(paris), now.astimezone(paris), SETTINGS) is (
        S.CONNECTED
    )
    with pytest.raises(ValueError):
        connection_status(now.replace(tzinfo=None), now, SETTINGS)


def test_a_grace_longer_than_not_connected_after_skips_delayed() -> None:
    settings = replace(SETTINGS, not_connected_after=30)
    now = datetime(2030, 5, 1, tzinfo=UTC)
    assert connection_status(now - timedelta(seconds=100), now, settings) is S.CONNECTED
    assert connection_status(now - timedelta(seconds=121), now, settings) is S.NOT_CONNECTED


def _offsets() -> list[timedelta]:
    edges = [timedelta(0), timedelta(seconds=CONNECTED_FOR), timedelta(seconds=DELAYED_FOR)]
    return [edge + delta for edge in edges for delta in (-US, timedelta(0), US)] + [
        timedelta(seconds=-5), timedelta(seconds=30), timedelta(days=30),
    ]  # fmt: skip


@pytest.mark.parametrize(
    "now",
    [datetime(2030, 5, 1, 12, tzinfo=UTC), datetime(2030, 5, 1, 12, 0, 0, 500_000, tzinfo=UTC)],
    ids=["whole-second", "fractional"],
)  # fmt: skip
async def test_sql_and_python_agree_at_every_boundary(tree: Tree, now: datetime) -> None:
    computers = [await add_computer(tree, now - offset) for offset in _offsets()]
    computers.append(await add_computer(tree, None))
    expected = {c.id: connection_status(c.last_connected_at, now, SETTINGS) for c in computers}
    assert set(expected.values()) == set(ConnectionStatus)

    case, params = connection_status_sql("c", now, SETTINGS)
    rows = await fetch(
        f"SELECT c.id AS id, {case} AS status FROM computer c WHERE c.instance_id = ?",
        [*params, tree.instance.id],
    )
    assert {row["id"]: S(row["status"]) for row in rows} == expected

    for wanted in ([S.CONNECTED], [S.DELAYED], [S.NOT_CONNECTED], [S.NEVER_CONNECTED],
                   [S.CONNECTED, S.NOT_CONNECTED], [S.DELAYED, S.NEVER_CONNECTED],
                   list(S), []):  # fmt: skip
        condition, values = connection_status_filter_sql("c.", wanted, now, SETTINGS)
        found = await fetch(
            f"SELECT c.id AS id FROM computer c WHERE c.instance_id = ? AND {condition}",
            [tree.instance.id, *values],
        )
        assert {row["id"] for row in found} == {i for i, s in expected.items() if s in wanted}


async def test_statuses_can_be_counted_in_one_statement(tree: Tree) -> None:
    now = datetime.now(UTC)
    for offset in (10, 20, 500, 10**6):
        await add_computer(tree, now - timedelta(seconds=offset))
    await add_computer(tree, None)
    case, params = connection_status_sql("", now, SETTINGS)
    with count_statements() as counter:
        rows = await fetch(
            f"SELECT {case} AS status, COUNT(*) AS n FROM computer WHERE instance_id = ? "
            "GROUP BY 1",
            [*params, tree.instance.id],
        )
    assert counter.count == 1
    assert {row["status"]: row["n"] for row in rows} == {
        "CONNECTED": 2, "DELAYED": 1, "NOT_CONNECTED": 1, "NEVER_CONNECTED": 1,
    }  # fmt: skip


async def test_transitions_are_stored_and_announced_once(tree: Tree) -> None:
    now = datetime.now(UTC)
    fresh = await add_computer(tree, now - timedelta(seconds=5))  # NEVER -> CONNECTED
    late = await add_computer(tree, now - timedelta(seconds=300), S.CONNECTED)  # -> DELAYED
    gone = await add_computer(tree, now - timedelta(days=2), S.DELAYED)  # -> NOT_CONNECTED
    back = await add_computer(tree, now - timedelta(seconds=1), S.NOT_CONNECTED)  # -> CONNECTED
    steady = await add_computer(tree, now - timedelta(seconds=5), S.CONNECTED)
    never = await add_computer(tree, None)
    bus = InProcessEventBus()
    async with bus.subscribe(events.COMPUTER_CONNECTION) as stream:
        with count_statements() as counter:
            changed = await announce_transitions(bus, SETTINGS, now, instance_id=tree.instance.id)
        event = await asyncio.wait_for(anext(stream), 1)
    # the claims of the computers announced protected and of the others, then the counters'
    # `protected`: one upsert and the check that no group moved meanwhile
    assert counter.count == 4
    ids = sorted([fresh.id, late.id, gone.id, back.id])
    assert changed == {tree.instance.id: ids}
    assert event == {"instance_id": tree.instance.id, "computer_ids": ids}
    stored = dict(
        await Computer.filter(instance_id=tree.instance.id).values_list("id", "announced_status")
    )
    assert stored == {
        fresh.id: S.CONNECTED, late.id: S.DELAYED, gone.id: S.NOT_CONNECTED,
        back.id: S.CONNECTED, steady.id: S.CONNECTED, never.id: S.NEVER_CONNECTED,
    }  # fmt: skip
    assert await announce_transitions(bus, SETTINGS, now, instance_id=tree.instance.id) == {}

    # time passes: the connected ones are late now
    later = now + timedelta(seconds=CONNECTED_FOR + 10)
    changed = await announce_transitions(None, SETTINGS, later, instance_id=tree.instance.id)
    assert changed == {tree.instance.id: sorted([fresh.id, back.id, steady.id])}


@pytest.fixture
async def watcher_paused(app: Any) -> AsyncIterator[None]:
    """The app's own watcher stopped: it would announce at the real time meanwhile."""
    watcher = app.state.agent_runtime.watcher
    await watcher.stop()
    try:
        yield
    finally:
        await watcher.start()


async def test_every_stale_announcement_is_claimed_once_whatever_the_batches(
    tree: Tree, watcher_paused: None
) -> None:
    # every status announced beside a check-in at every boundary: each stale pair is one
    # index range of the watcher's, and the batches must leave none out and take none twice
    now = datetime(2030, 5, 1, 12, 0, 0, 500_000, tzinfo=UTC)
    checkins: list[datetime | None] = [now - offset for offset in _offsets()]
    made = [
        await add_computer(tree, seen, announced) for announced in S for seen in [*checkins, None]
    ]
    expected = {c.id: connection_status(c.last_connected_at, now, SETTINGS) for c in made}
    stale = sorted(c.id for c in made if expected[c.id] is not c.announced_status)
    assert len(stale) == 3 * (len(checkins) + 1)  # each check-in is stale for three of four
    batch = 5
    with count_statements() as counter:
        changed = await announce_transitions(
            None, SETTINGS, now, instance_id=tree.instance.id, batch=batch
        )
    assert changed == {tree.instance.id: stale}
    batches = len(stale) // batch + 1  # the last batch is the one not full
    # a batch: its claim, the UPDATE, and the counters' shift (an upsert and a check) when one
    # of its computers entered or left CONNECTED/DELAYED; an empty last one, its claim only
    assert 2 * batches - 1 <= counter.count <= 4 * batches
    stored = dict(
        await Computer.filter(instance_id=tree.instance.id).values_list("id", "announced_status")
    )
    assert stored == expected
    assert await announce_transitions(None, SETTINGS, now, instance_id=tree.instance.id) == {}


async def test_transitions_are_claimed_in_batches(tree: Tree) -> None:
    now = datetime.now(UTC)
    computers = [await add_computer(tree, now) for _ in range(7)]
    bus = InProcessEventBus()
    published: list[dict[str, Any]] = []
    async with bus.subscribe(events.COMPUTER_CONNECTION) as stream:
        changed = await announce_transitions(bus, SETTINGS, now, instance_id=tree.instance.id,
                                             batch=3)  # fmt: skip
        while len(published) < 3:
            published.append(await asyncio.wait_for(anext(stream), 1))
    assert sorted(changed[tree.instance.id]) == [c.id for c in computers]
    assert sorted(len(e["computer_ids"]) for e in published) == [1, 3, 3]


async def test_rows_another_watcher_claimed_meanwhile_are_not_announced_again(
    tree: Tree, watcher_paused: None
) -> None:
    # Every worker runs a watcher. On PostgreSQL a second one's UPDATE picks the rows the
    # first is announcing, waits on their locks, then finds them announced: it must skip them
    # (on SQLite it waits for the first's transaction before reading).
    now = datetime.now(UTC)
    late = [await add_computer(tree, now - timedelta(seconds=300), S.CONNECTED) for _ in range(3)]
    claimed, release = asyncio.Event(), asyncio.Event()

    async def first_watcher() -> dict[int, list[int]]:
        async with in_transaction():
            changed = await announce_transitions(None, SETTINGS, now, instance_id=tree.instance.id)
            claimed.set()
            await release.wait()
        return changed

    first = asyncio.create_task(first_watcher())
    await claimed.wait()
    second = asyncio.create_task(
        announce_transitions(None, SETTINGS, now, instance_id=tree.instance.id)
    )
    if db.is_postgres():
        await eventually(
            lambda: db.fetch_value(
                "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND wait_event_type = 'Lock' AND query LIKE 'SELECT m.id, m.announced_status%'"
            ),
            what="the second watcher waiting on the rows the first locked",
        )
    release.set()
    assert await first == {tree.instance.id: [c.id for c in late]}
    assert await second == {}


async def test_the_watcher_announces_in_the_background(tree: Tree) -> None:
    computer = await add_computer(tree, datetime.now(UTC))
    bus = InProcessEventBus()
    watcher = ConnectionWatcher(SETTINGS, bus, period=0.05, min_gap=0.01)
    async with bus.subscribe(events.COMPUTER_CONNECTION) as stream:
        await watcher.start()
        try:
            while True:
                event = await asyncio.wait_for(anext(stream), 2)
                if event["instance_id"] == tree.instance.id:
                    break
        finally:
            await watcher.stop()
    assert event["computer_ids"] == [computer.id]
    assert (await Computer.get(id=computer.id)).announced_status is S.CONNECTED

"""The daily usage snapshot: not before its time of day, once per instance and day however
many processes look (the database's claim decides), and never for a day that has passed."""

from __future__ import annotations

import asyncio
import datetime as dt

from tortoise.queryset import QuerySet

from server.domain.usage_snapshots import UsageSnapshots
from server.models import Instance, UsageDay, db
from server.settings import Settings
from tests import factories
from tests.sync_support import tenant


async def connected(with_license: bool = True) -> int:
    owner = await tenant()
    await Instance.filter(id=owner.instance_id).update(upstream_url="http://127.0.0.1:1")
    tree = await factories.company_tree(owner.instance_id, msps=1, customers_per_msp=1)
    if with_license:
        await factories.license(owner.instance_id, tree.all_customers[0], seats=8)
    return owner.instance_id


def at(day: int, hour: int, minute: int = 0) -> dt.datetime:
    return dt.datetime(2031, 3, day, hour, minute, tzinfo=dt.UTC)


# The session's app takes today's snapshot of every connected instance once its time of day
# has passed, whenever its period comes round: the tests read only the days they take.
TESTS_DAYS = dt.date(2031, 1, 1)


def days_of(instance_id: int) -> QuerySet[UsageDay]:
    return UsageDay.filter(instance_id=instance_id, day__gte=TESTS_DAYS)


async def test_nothing_is_taken_before_the_time_of_day(app):
    instance_id = await connected()
    snapshots = UsageSnapshots(Settings(usage_snapshot_at="06:15"))
    assert instance_id not in await snapshots.run_once(at(2, 6, 14))
    assert not await days_of(instance_id).exists()
    assert instance_id in await snapshots.run_once(at(2, 6, 15))
    assert instance_id not in await snapshots.run_once(at(2, 23, 59))  # once a day
    lines = await db.fetch(
        "SELECT day, seats FROM usage_line WHERE instance_id = ? AND day >= ?",
        [instance_id, TESTS_DAYS],
    )
    assert [(str(row["day"]), row["seats"]) for row in lines] == [("2031-03-02", 8)]


async def test_many_processes_looking_at_once_take_each_day_once(app):
    instance_id = await connected()
    processes = [UsageSnapshots(Settings(usage_snapshot_at="00:30")) for _ in range(6)]
    taken = await asyncio.gather(*(p.run_once(at(5, 1)) for p in processes))
    assert sum(instance_id in each for each in taken) == 1
    days = await days_of(instance_id).values_list("trigger", flat=True)
    assert days == ["schedule"]


async def test_a_missed_day_is_not_invented(app):
    instance_id = await connected()
    snapshots = UsageSnapshots(Settings())
    await snapshots.run_once(at(10, 1))
    await snapshots.run_once(at(12, 1))  # the 11th: the console was down
    days = await days_of(instance_id).order_by("day").values_list("day", flat=True)
    assert [str(day) for day in days] == ["2031-03-10", "2031-03-12"]


async def test_an_instance_without_an_upstream_takes_no_snapshot(app):
    owner = await tenant()
    await UsageSnapshots(Settings()).run_once(at(3, 12))
    assert not await UsageDay.filter(instance_id=owner.instance_id).exists()

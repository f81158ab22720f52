"""Removing an instance while other writers are busy in it: the enrolment, the connection
watcher, a sync's apply, check-ins, customer actions. Each interleaving ends with the instance
and all its rows gone, and the other writer either done first (its rows removed with the rest)
or refused as writing to an instance that no longer exists.

On PostgreSQL a third connection holds a row lock to stop one writer at a chosen point while
the other one starts; on SQLite writers run one at a time, so the same tests run the writers
one after the other."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar
from urllib.parse import urlsplit

import asyncpg
import pytest

from server.domain import agents, audit, customers, enrolment, sync, sync_runs, usage
from server.domain.agents import CheckinRecord, write_checkins
from server.domain.connections import announce_transitions
from server.domain.enrolment import AgentUnauthorized, EnrolmentRequest
from server.domain.errors import InstanceRemoved, NotFound
from server.domain.installers import create_installer
from server.domain.instances import remove_instance
from server.domain.secrets import token_hash
from server.events import InProcessEventBus
from server.models import Company, Computer, Instance, SyncRun, db, locks
from server.models.enums import CompanyType, SyncState
from server.settings import Settings
from server.upstream.codes import CUSTOMER
from server.upstream.simulator import Simulator
from tests import factories
from tests.agents.conftest import SETTINGS, Tree, database, tree
from tests.api.test_accounts import rows_of
from tests.sync_support import connected_tenant, synced
from tests.waiting import eventually

__all__ = ["database", "tree"]  # fixtures
pytestmark = pytest.mark.usefixtures("database")  # the tests of a synced tenant too
T = TypeVar("T")


@contextlib.asynccontextmanager
async def holding(settings: Settings, sql: str, *params: Any) -> AsyncIterator[None]:
    """On PostgreSQL, the rows `sql` locks held by a connection of the test's own until the
    block ends; nothing on SQLite."""
    if not db.is_postgres():
        yield
        return
    parts = urlsplit(settings.database_url)
    connection = await asyncpg.connect(f"postgresql://{parts.netloc}{parts.path}")
    try:
        async with connection.transaction():
            await connection.execute(sql, *params)
            yield
    finally:
        await connection.close()


HOLD_COMPUTER = "SELECT 1 FROM computer WHERE id = $1 FOR UPDATE"


async def lock_waits(statement: str = "") -> int:
    """How many statements (starting with `statement`) wait for a lock on PostgreSQL."""
    return int(
        await db.fetch_value(
            "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND wait_event_type = 'Lock' AND query LIKE ?",
            [f"{statement}%"],
        )
    )


async def started(writer: Awaitable[T], statement: str) -> asyncio.Task[T]:
    """`writer` as a task, once it waits for a lock in a statement starting with `statement`
    (PostgreSQL); on SQLite, where writers run one at a time, once it is done."""
    task = asyncio.create_task(writer)
    if not db.is_postgres():
        await asyncio.wait([task])
        return task
    await eventually(
        lambda: task.done() or lock_waits(statement), what=f"{statement}... waiting for a lock"
    )
    assert not task.done(), task
    return task


async def arrived(writer: Awaitable[T]) -> asyncio.Task[T]:
    """`writer` as a task, once it waits for a lock (or is done) on PostgreSQL: it met what the
    writer under way holds. On SQLite it waits for that writer's transaction."""
    before = await lock_waits() if db.is_postgres() else 0
    task = asyncio.create_task(writer)
    if db.is_postgres():

        async def waiting_or_done() -> bool:
            return task.done() or await lock_waits() > before

        await eventually(waiting_or_done, what="the writer waiting for a lock, or done")
    return task


async def removed(instance: Instance) -> None:
    await remove_instance(instance.owner_id, instance.created_via, instance.id)


async def nothing_left(instance_id: int) -> None:
    left = await rows_of(instance_id)
    assert {table: rows for table, rows in left.items() if rows} == {}


def request(hardware_id: str) -> EnrolmentRequest:
    return EnrolmentRequest(hardware_id, f"host-{hardware_id}", "Windows 11", "11.1")


async def enrolled(token: str, hardware_id: str) -> enrolment.Enrolment:
    return await enrolment.enroll(token, request(hardware_id), settings=SETTINGS)


async def test_an_enrolment_under_way_is_removed_with_the_instance(
    tree: Tree, settings: Settings
) -> None:
    installer, token = await create_installer(tree.scope, company_id=tree.customer.id)
    # the enrolment stops at counting itself against its installer, its computer inserted
    async with holding(
        settings, "SELECT 1 FROM installer WHERE id = $1 FOR NO KEY UPDATE", installer.id
    ):
        enrolling = await started(enrolled(token, "hw-1"), "UPDATE installer SET enrolments")
        removing = await arrived(removed(tree.instance))
    done = await asyncio.gather(enrolling, removing, return_exceptions=True)
    assert isinstance(done[0], enrolment.Enrolment), done
    assert done[1] is None, done
    await nothing_left(tree.instance.id)


async def test_an_enrolment_arriving_during_the_removal_is_refused_as_an_unknown_token(
    tree: Tree, settings: Settings
) -> None:
    _, token = await create_installer(tree.scope, company_id=tree.customer.id)
    computer = await factories.computer(tree.instance.id, tree.customer, "pc-1")
    # the removal stops at the instance's computers
    async with holding(settings, HOLD_COMPUTER, computer.id):
        removing = await started(removed(tree.instance), "DELETE FROM computer")
        enrolling = await arrived(enrolled(token, "hw-1"))
    done = await asyncio.gather(removing, enrolling, return_exceptions=True)
    assert done[0] is None, done
    assert isinstance(done[1], AgentUnauthorized), done
    assert done[1].message == "unknown installer token"
    await nothing_left(tree.instance.id)


async def unlinked(tree: Tree) -> None:
    """A customer action, run as the API runs it (`audited`)."""
    async with audit.recorded(tree.scope, tree.owner.id, "unlinkCustomer"):
        await customers.unlink_customer(tree.scope, tree.owner.id, tree.customer.id)


async def test_a_customer_action_under_way_is_removed_with_the_instance(
    tree: Tree, settings: Settings
) -> None:
    top = "SELECT 1 FROM subtree_count WHERE group_id = $1 FOR UPDATE"
    # the unlink stops at the counters, its customer and installers locked
    async with holding(settings, top, tree.all_group.id):
        unlinking = await started(unlinked(tree), "INSERT INTO subtree_count")
        removing = await arrived(removed(tree.instance))
    done = await asyncio.gather(unlinking, removing, return_exceptions=True)
    assert done == [None, None], done
    await nothing_left(tree.instance.id)


async def test_a_customer_action_arriving_during_the_removal_finds_the_instance_removed(
    tree: Tree, settings: Settings
) -> None:
    computer = await factories.computer(tree.instance.id, tree.customer, "pc-1")
    async with holding(settings, HOLD_COMPUTER, computer.id):
        removing = await started(removed(tree.instance), "DELETE FROM computer")
        unlinking = await arrived(unlinked(tree))
    done = await asyncio.gather(removing, unlinking, return_exceptions=True)
    assert done[0] is None, done
    assert isinstance(done[1], NotFound), done
    await nothing_left(tree.instance.id)


async def stale_computer(tree: Tree, name: str) -> Computer:
    """A computer that checked in just now, announced NEVER_CONNECTED: the watcher's to announce."""
    computer = await factories.computer(tree.instance.id, tree.customer, name)
    computer.last_connected_at = datetime.now(UTC)
    await computer.save(update_fields=["last_connected_at"])
    return computer


async def test_the_watcher_announcing_during_the_removal_neither_deadlocks_nor_fails(
    tree: Tree, settings: Settings
) -> None:
    held = await factories.computer(tree.instance.id, tree.customer, "pc-0")
    await stale_computer(tree, "pc-1")
    async with holding(settings, HOLD_COMPUTER, held.id):
        removing = await started(removed(tree.instance), "DELETE FROM computer")
        announcing = await arrived(
            announce_transitions(None, SETTINGS, instance_id=tree.instance.id)
        )
    done = await asyncio.gather(removing, announcing, return_exceptions=True)
    assert done[0] is None, done
    assert done[1] == {}, done
    await nothing_left(tree.instance.id)


async def test_the_watcher_and_a_check_in_batch_neither_deadlock_nor_fail(
    tree: Tree, settings: Settings
) -> None:
    """Both lock the same computers; stored (and gone stale) in another order than their ids,
    the watcher met them as stored: it held b, waited for c (held here), then wanted a, which
    the batch held while it waited for b."""
    computers = await agent_computers(tree, "abc")
    now = datetime.now(UTC)
    for name, ago in (("b", 3), ("c", 2), ("a", 1)):  # a rewritten: stored last
        computer = computers[name]
        computer.last_connected_at = now - timedelta(seconds=ago)
        await computer.save(update_fields=["last_connected_at"])
    async with holding(settings, HOLD_COMPUTER, computers["c"].id):
        announcing = await started(
            announce_transitions(None, SETTINGS, instance_id=tree.instance.id), "SELECT m.id"
        )
        checking = await arrived(write_checkins([checked_in(computers[n]) for n in "abc"]))
    done = await asyncio.gather(announcing, checking, return_exceptions=True)
    assert not [d for d in done if isinstance(d, BaseException)], done
    assert sorted(done[0][tree.instance.id]) == sorted(c.id for c in computers.values()), done


async def test_an_announcement_under_way_is_removed_with_the_instance(
    tree: Tree, settings: Settings
) -> None:
    stale = await stale_computer(tree, "pc-1")
    top = "SELECT 1 FROM subtree_count WHERE group_id = $1 FOR UPDATE"
    # the watcher stops at the counters, the computer claimed and announced
    async with holding(settings, top, tree.all_group.id):
        announcing = await started(
            announce_transitions(None, SETTINGS, instance_id=tree.instance.id),
            "INSERT INTO subtree_count",
        )
        removing = await arrived(removed(tree.instance))
    done = await asyncio.gather(announcing, removing, return_exceptions=True)
    assert done[0] == {tree.instance.id: [stale.id]}, done
    assert done[1] is None, done
    await nothing_left(tree.instance.id)


async def agent_computers(tree: Tree, names: str, by_time: str = "") -> dict[str, Computer]:
    """A computer with an agent token per name, created (their ids rising) in that order; last
    checked in (an hour ago) in the order `by_time` gives, if any."""
    now = datetime.now(UTC) - timedelta(hours=1)
    computers = {}
    for name in names:
        n = by_time.index(name) if by_time else names.index(name)
        made = await factories.computer(
            tree.instance.id, tree.customer, f"pc-{n}-{name}", now + timedelta(seconds=n)
        )
        made.agent_token_hash = token_hash(f"agt_token-{name}-{made.id}")
        await made.save(update_fields=["agent_token_hash"])
        computers[name] = made
    return computers


def checked_in(computer: Computer) -> CheckinRecord:
    return CheckinRecord(computer.agent_token_hash or "", datetime.now(UTC))


async def test_check_ins_during_the_removal_neither_deadlock_nor_fail(
    tree: Tree, settings: Settings
) -> None:
    """A batch of check-ins locks its computers, the removal deletes them: whatever order each
    meets them in, one waits for the other."""
    # the removal meets them by name or by check-in as y, q, x, p; the batch in the order stored
    # (read whole on a small table) or as sent (looked up on a large one): x, p, y
    computers = await agent_computers(tree, "xpyq", "yqxp")
    batch = [checked_in(computers[name]) for name in "xpy"]
    lock = "SELECT 1 FROM computer WHERE id = ANY($1::int[]) FOR UPDATE"
    # each stops at a computer held here, having locked one the other meets later
    async with holding(settings, lock, [computers["p"].id, computers["q"].id]):
        checking_in = await started(write_checkins(batch), "UPDATE computer")
        removing = await started(removed(tree.instance), "DELETE FROM computer")
    done = await asyncio.gather(checking_in, removing, return_exceptions=True)
    assert not [d for d in done if isinstance(d, BaseException)], done
    await nothing_left(tree.instance.id)


async def test_a_batch_of_several_statements_and_the_removal_neither_deadlock_nor_fail(
    tree: Tree, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch too large for one statement is written chunk by chunk; each chunk locks its
    computers in id order, but the chunks are not in id order. Here the batch holds y, waits
    for p (held here); the removal holds x, waits for p; then the batch wants x."""
    monkeypatch.setattr(agents, "POSTGRES_ROWS_PER_STATEMENT", 1)
    monkeypatch.setattr(agents, "SQLITE_ROWS_PER_STATEMENT", 1)
    computers = await agent_computers(tree, "xpyq")
    batch = [checked_in(computers[name]) for name in "ypx"]
    async with holding(settings, HOLD_COMPUTER, computers["p"].id):
        checking = await started(write_checkins(batch), "UPDATE computer")
        removing = await started(removed(tree.instance), "DELETE FROM computer")
    done = await asyncio.gather(checking, removing, return_exceptions=True)
    assert not [d for d in done if isinstance(d, BaseException)], done
    await nothing_left(tree.instance.id)


@pytest.mark.upstream_tree(20, 3)
async def test_a_sync_applying_under_way_is_removed_with_the_instance(
    sim: Simulator, settings: Settings
) -> None:
    owner = await connected_tenant(None, sim)
    assert owner.instance_id is not None
    instance = await Instance.get(id=owner.instance_id)
    applying, go_on = asyncio.Event(), asyncio.Event()

    async def pause() -> None:
        applying.set()
        await go_on.wait()

    syncing = asyncio.create_task(synced(owner, settings, after_first_write=pause))
    await applying.wait()
    removing = await arrived(removed(instance))
    go_on.set()
    done = await asyncio.gather(syncing, removing, return_exceptions=True)
    assert not [d for d in done if isinstance(d, BaseException)], done
    assert done[0].state == SyncState.SUCCEEDED, done[0].error
    await nothing_left(instance.id)


async def synced_with_a_computer(
    sim: Simulator, settings: Settings
) -> tuple[factories.Owner, Instance, Computer]:
    """A synced tenant's owner, instance, and a computer for a test to hold the removal at."""
    owner = await connected_tenant(None, sim)
    assert owner.instance_id is not None
    assert (await synced(owner, settings)).state == SyncState.SUCCEEDED
    instance = await Instance.get(id=owner.instance_id)
    customer = await Company.filter(instance_id=instance.id, type=CompanyType.CUSTOMER).first()
    assert customer is not None
    return owner, instance, await factories.computer(instance.id, customer, "pc-0")


@pytest.mark.upstream_tree(20, 3)
async def test_a_sync_applying_during_the_removal_fails_as_the_instance_is_gone(
    sim: Simulator, settings: Settings
) -> None:
    owner, instance, held = await synced_with_a_computer(sim, settings)
    for company in sim.tree.of_type(CUSTOMER)[:3]:  # for the apply to write
        sim.tree.rename(company["publicId"], f"{company['publicId']} renamed")
    removing: list[asyncio.Task[None]] = []

    async def remove_before_the_apply(run: SyncRun) -> None:
        if run.phase == sync.APPLY and not removing:
            removing.append(await started(removed(instance), "DELETE FROM computer"))

    async with holding(settings, HOLD_COMPUTER, held.id):
        syncing = asyncio.create_task(synced(owner, settings, on_progress=remove_before_the_apply))
        await eventually(lambda: removing, what="the removal under way")
        if db.is_postgres():  # the apply meets what the removal holds

            async def waiting_or_done() -> bool:
                return syncing.done() or await lock_waits() > 1

            await eventually(waiting_or_done, what="the apply waiting for a lock, or done")
    done = await asyncio.gather(removing[0], syncing, return_exceptions=True)
    assert done[0] is None, done
    assert isinstance(done[1], SyncRun), done
    assert done[1].state == SyncState.FAILED, done
    assert done[1].error == "the instance was removed", done[1].error
    await nothing_left(instance.id)


@pytest.mark.upstream_tree(20, 3)
async def test_a_sync_started_during_the_removal_is_refused_as_the_instance_is_gone(
    sim: Simulator, settings: Settings
) -> None:
    _, instance, held = await synced_with_a_computer(sim, settings)
    start = sync_runs.start_sync(instance.id, "manual", settings=settings, bus=InProcessEventBus())
    async with holding(settings, HOLD_COMPUTER, held.id):
        removing = await started(removed(instance), "DELETE FROM computer")
        starting = await arrived(start)  # its run's row waits for the removal, not its key
    done = await asyncio.gather(removing, starting, return_exceptions=True)
    assert done[0] is None, done
    assert isinstance(done[1], NotFound), done  # InstanceRemoved on PostgreSQL
    await nothing_left(instance.id)
    lock = await locks.try_lock(locks.SYNC_RUN, instance.id)
    assert lock is not None  # let go by the refused start
    await lock.release()


@pytest.mark.upstream_tree(20, 3)
async def test_a_usage_snapshot_arriving_during_the_removal_finds_the_instance_removed(
    sim: Simulator, settings: Settings
) -> None:
    _, instance, held = await synced_with_a_computer(sim, settings)
    tomorrow = datetime.now(UTC) + timedelta(days=1)  # no snapshot of that day yet
    async with holding(settings, HOLD_COMPUTER, held.id):
        removing = await started(removed(instance), "DELETE FROM computer")
        snapshot = await arrived(usage.take_scheduled_snapshot(instance.id, tomorrow))
    done = await asyncio.gather(removing, snapshot, return_exceptions=True)
    assert done[0] is None, done
    assert isinstance(done[1], InstanceRemoved), done
    await nothing_left(instance.id)

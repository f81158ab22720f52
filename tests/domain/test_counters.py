"""The subtree counters stay equal to a full recount through any sequence of writes: syncs of a
randomly edited upstream (adds, moves, removals, re-adds, renames; licenses added, moved,
resized, suspended, reactivated, removed), every customer action (setup, skip, skip for all,
unlink, relink), and the computers' writes (enrolment batches with duplicates, into company
and custom groups; check-ins and the connection watcher's announcements at any later moment;
removals; duplicates resolved both ways), on whichever database the suite runs. The recount
here is the slow, independent one: a GROUP BY per group over its subtree's path range."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from tortoise.transactions import in_transaction

from server.domain import computers, counters, customers, sync_runs
from server.domain.access import Scope
from server.domain.agents import CheckinRecord, write_checkins
from server.domain.connections import announce_transitions
from server.domain.enrolment import EnrolmentRequest, Pending, enroll_batch
from server.domain.errors import DomainError
from server.domain.installers import create_installer
from server.domain.instances import create_group
from server.models import Company, Computer, StaticGroup, SyncRun, User, db
from server.models.enums import (
    CompanyType,
    ConnectionStatus,
    DuplicateResolution,
    GroupKind,
    SyncState,
)
from server.settings import Settings
from server.upstream.simulator import Simulator, UpstreamTree
from server.upstream.simulator.license_book import ACTIVE
from tests.domain.test_sync import EDIT, apply_edit
from tests.sync_support import connected_tenant

ACTION = st.tuples(
    st.sampled_from(["setup", "skip", "unlink", "relink", "skip_all"]), st.integers(0, 10**6)
)
COMPUTER_ACTION = st.tuples(
    st.sampled_from(["enrol", "remove", "keep_new", "keep_existing", "checkin", "announce"]),
    st.integers(0, 10**6),
    st.integers(1, 4),
)
LICENSE_EDIT = st.tuples(
    st.sampled_from(["add", "resize", "suspend", "activate", "move", "remove"]),
    st.integers(0, 10**6),
    st.integers(0, 10**6),
)
STEP = st.one_of(
    st.tuples(st.just("sync"), st.lists(EDIT, min_size=1, max_size=4)),
    st.tuples(st.just("licenses"), st.lists(LICENSE_EDIT, min_size=1, max_size=4)),
    ACTION,
    COMPUTER_ACTION,
)
PROTECTED_SQL = "m.announced_status IN ('CONNECTED', 'DELAYED')"
# when the watcher announces, after the test started: connected, delayed, not connected
LATER = (0, 600, 10**6)


async def full_recount(instance_id: int) -> dict[int, dict[str, int]]:
    """Counts per group recomputed from the companies and the computers, without the counters'
    code."""
    rows = await db.fetch(
        "SELECT g.id AS group_id, c.type AS type, c.setup_state AS setup_state, "
        "c.unlinked_at IS NOT NULL AS unlinked, COUNT(*) AS n FROM static_group g "
        "JOIN company c ON c.instance_id = g.instance_id AND c.path >= g.path "
        "AND c.path < substr(g.path, 1, length(g.path) - 1) || '0' "
        "WHERE g.instance_id = ? GROUP BY g.id, c.type, c.setup_state, c.unlinked_at IS NOT NULL",
        [instance_id],
    )
    expected: dict[int, dict[str, int]] = {}

    def counts_of(group_id: int) -> dict[str, int]:
        return expected.setdefault(group_id, dict.fromkeys(counters.STORED, 0))

    for row in rows:
        if row["type"] == CompanyType.CUSTOMER.value:
            if row["unlinked"]:
                column = "customers_unlinked"
            elif row["setup_state"] == "pending":
                column = "customers_not_set_up"
            else:
                column = "customers_normal"
        else:
            column = counters.TYPE_COLUMNS[CompanyType(row["type"])]
        counts_of(row["group_id"])[column] += int(row["n"])
    held = await db.fetch(
        "SELECT g.id AS group_id, COUNT(*) AS n, "
        "SUM(CASE WHEN m.group_id = g.id THEN 1 ELSE 0 END) AS own, "
        f"SUM(CASE WHEN {PROTECTED_SQL} THEN 1 ELSE 0 END) AS p, "
        f"SUM(CASE WHEN m.group_id = g.id AND {PROTECTED_SQL} THEN 1 ELSE 0 END) AS own_p "
        "FROM static_group g "
        "JOIN static_group d ON d.instance_id = g.instance_id AND d.path >= g.path "
        "AND d.path < substr(g.path, 1, length(g.path) - 1) || '0' "
        "JOIN computer m ON m.group_id = d.id WHERE g.instance_id = ? GROUP BY g.id",
        [instance_id],
    )
    for row in held:
        counts_of(row["group_id"]).update(
            computers=int(row["n"]),
            own_computers=int(row["own"]),
            protected=int(row["p"]),
            own_protected=int(row["own_p"]),
        )
    seats = await db.fetch(
        "SELECT g.id AS group_id, SUM(l.seats) AS s, SUM(l.activated) AS a, "
        "SUM(CASE WHEN c.path = g.path THEN l.seats ELSE 0 END) AS own_s, "
        "SUM(CASE WHEN c.path = g.path THEN l.activated ELSE 0 END) AS own_a FROM static_group g "
        "JOIN company c ON c.instance_id = g.instance_id AND c.path >= g.path "
        "AND c.path < substr(g.path, 1, length(g.path) - 1) || '0' "
        "JOIN license l ON l.company_id = c.id WHERE g.instance_id = ? AND l.state = 'ACTIVE' "
        "GROUP BY g.id",
        [instance_id],
    )
    for row in seats:
        counts_of(row["group_id"]).update(
            seats=int(row["s"]),
            own_seats=int(row["own_s"]),
            activated=int(row["a"]),
            own_activated=int(row["own_a"]),
        )
    return expected


async def stored(instance_id: int) -> dict[int, dict[str, int]]:
    rows = await db.fetch(
        f"SELECT group_id, {', '.join(counters.STORED)} FROM subtree_count WHERE instance_id = ?",
        [instance_id],
    )
    found = {row.pop("group_id"): {k: int(v) for k, v in row.items()} for row in rows}
    return {key: counts for key, counts in found.items() if any(counts.values())}


async def stored_and_recounted(
    instance_id: int,
) -> tuple[dict[int, dict[str, int]], dict[int, dict[str, int]]]:
    """`stored` and `full_recount` read from one snapshot: the app's connection watcher runs
    through the session and announces the test's new computers whenever it wakes; its commit
    between two separate reads made them differ by what it announced."""
    async with db.transaction():
        if db.is_postgres():  # else each statement reads its own snapshot
            await db.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        return await stored(instance_id), await full_recount(instance_id)


async def synced(sim: Simulator, settings: Settings) -> tuple[int, SyncRun]:
    """A tenant connected to `sim`, after its first sync: its instance and that run."""
    owner = await connected_tenant(None, sim)
    instance_id = owner.instance_id or 0
    return instance_id, await sync_runs.sync_now(instance_id, settings)


async def owner_scope(instance_id: int) -> Scope:
    user = await User.get(instance_id=instance_id, account_id__not_isnull=True)
    top = await StaticGroup.get(instance_id=instance_id, kind=GroupKind.ALL)
    return Scope.for_owner(instance_id, user.id, top.path)


async def a_customer_and_its_group(instance_id: int) -> tuple[Company, StaticGroup]:
    customer = await Company.filter(instance_id=instance_id, type=CompanyType.CUSTOMER).first()
    assert customer is not None
    return customer, await StaticGroup.get(company_id=customer.id, kind=GroupKind.COMPANY)


async def insert_behind_the_counters(
    customer: Company, group: StaticGroup, hardware_id: str
) -> None:
    """A computer written straight into its table, as a restore would: no counter moves."""
    await db.execute(
        "INSERT INTO computer (instance_id, group_id, company_id, name, sort_name, "
        "hardware_id, enrolled_at, announced_status) "
        "VALUES (?, ?, ?, 'pc', 'pc', ?, ?, 'NEVER_CONNECTED')",
        [customer.instance_id, group.id, customer.id, hardware_id, dt.datetime.now(dt.UTC)],
    )


async def act(scope: Scope, owner_id: int, kind: str, pick: int) -> None:
    choices = await Company.filter(
        instance_id=scope.instance_id, type=CompanyType.CUSTOMER
    ).order_by("id")
    if kind == "skip_all":
        await customers.skip_setup_for_all_new_customers(scope, owner_id)
        return
    if not choices:
        return
    target = choices[pick % len(choices)].id
    try:
        if kind == "setup":
            await customers.setup_customer(scope, owner_id, target, None, False)
        elif kind == "skip":
            await customers.skip_customer_setup(scope, owner_id, target)
        elif kind == "unlink":
            await customers.unlink_customer(scope, owner_id, target)
        else:
            await customers.relink_customer(scope, owner_id, target)
    except DomainError:
        pass  # a transition that does not apply changes nothing


class Computers:
    """The computers' writes of the test: enrolment batches through a customer's installers (of
    its company's group and of a custom group in it), removals and resolutions."""

    def __init__(self, scope: Scope, settings: Settings) -> None:
        self.scope, self.settings = scope, settings
        self.tokens: dict[int, list[str]] = {}
        self.started = dt.datetime.now(dt.UTC)

    async def act(self, kind: str, pick: int, size: int) -> None:
        if kind == "enrol":
            await self._enrol(pick, size)
            return
        if kind == "announce":
            moment = self.started + dt.timedelta(seconds=LATER[pick % len(LATER)])
            await announce_transitions(None, self.settings, moment)
            return
        if kind == "checkin":
            found = await Computer.filter(instance_id=self.scope.instance_id).order_by("id")
            await write_checkins(
                [CheckinRecord(c.agent_token_hash or "", self.started) for c in found[pick % 3 :]]
            )
            return
        duplicates = kind.startswith("keep")
        found = await Computer.filter(
            instance_id=self.scope.instance_id, duplicate_of_id__isnull=not duplicates
        ).order_by("id")
        if not found:
            return
        target = found[pick % len(found)].id
        try:
            if kind == "remove":
                await computers.remove_computer(self.scope, target)
            else:
                keep = (
                    DuplicateResolution.KEEP_NEW
                    if kind == "keep_new"
                    else (DuplicateResolution.KEEP_EXISTING)
                )
                await computers.resolve_duplicate(self.scope, target, keep)
        except DomainError:
            pass  # one with duplicates stays until they are settled

    async def _enrol(self, pick: int, size: int) -> None:
        choices = await Company.filter(
            instance_id=self.scope.instance_id, type=CompanyType.CUSTOMER
        ).order_by("id")
        if not choices:
            return
        company = choices[pick % len(choices)]
        tokens = self.tokens.get(company.id)
        if tokens is None:
            group = await StaticGroup.get(company_id=company.id, kind=GroupKind.COMPANY)
            laptops = await create_group(self.scope.instance_id, "Laptops", GroupKind.CUSTOM, group)
            try:
                tokens = self.tokens[company.id] = [
                    (await create_installer(self.scope, company_id=company.id, group_id=g.id))[1]
                    for g in (group, laptops)
                ]
            except DomainError:
                return  # an unlinked customer gets no installer
        # pairs of one hardware id, in the company's group and in its custom group: the second
        # a duplicate of the first, or both of an earlier one
        batch = [
            Pending(tokens[n % 2], EnrolmentRequest(f"hw-{(pick + n // 2) % 3}", "pc", "os", "1"))
            for n in range(size)
        ]
        await enroll_batch(batch, settings=self.settings)  # refusals change nothing


def edit_licenses(upstream: UpstreamTree, edit: tuple[str, int, int]) -> None:
    kind, a, b = edit
    book = upstream.licenses
    companies = [c["publicId"] for c in upstream.subtree(upstream.account_id)]
    keys = sorted(book.licenses)
    if kind == "add" or not keys:
        book.add(companies[a % len(companies)], quantity=b % 50, usage=b % 7)
        return
    key = keys[a % len(keys)]
    if kind == "resize":
        book.set_quantity(key, b % 50)
        book.set_usage(key, b % 60)
    elif kind == "suspend":
        book.suspend(key)
    elif kind == "activate":
        book.set_state(key, ACTIVE)
    elif kind == "move":
        book.move(key, companies[b % len(companies)])
    else:
        book.remove(key)


# Besides the random ones: a duplicate in another group kept (it moves to the enrolled
# computer's group), and companies with computers below them moved by a sync, then settled.
@example(seed=0, size=5, steps=[("enrol", 0, 2), ("keep_new", 0, 1)])
@example(
    seed=1,
    size=9,
    steps=[
        *(("enrol", k, 3) for k in range(4)),
        ("sync", [("move", 1, 0), ("move", 2, 1), ("move", 3, 2), ("move", 5, 1)]),
        ("keep_new", 1, 1),
        ("remove", 2, 1),
        ("keep_existing", 0, 1),
    ],
)
# And computers announced connected, delayed, not connected, then removed and settled while
# protected, with licenses of every kind of change and a move of their companies.
@example(
    seed=2,
    size=8,
    steps=[
        ("enrol", 0, 4),
        ("announce", 0, 1),
        ("announce", 1, 1),
        ("checkin", 1, 1),
        ("announce", 0, 1),
        ("keep_new", 0, 1),
        ("remove", 1, 1),
        ("announce", 2, 1),
        ("licenses", [("add", 1, 9), ("add", 2, 14), ("resize", 0, 30), ("move", 0, 4)]),
        ("sync", [("move", 1, 0), ("move", 2, 1)]),
        ("licenses", [("suspend", 0, 0), ("activate", 1, 0), ("remove", 1, 0)]),
    ],
)
@given(
    seed=st.integers(0, 10_000),
    size=st.integers(5, 14),
    steps=st.lists(STEP, min_size=1, max_size=12),
)
@hypothesis_settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
async def test_counters_equal_a_full_recount_after_any_writes(
    app: object, settings: Settings, seed: int, size: int, steps: list[Any]
) -> None:
    upstream = UpstreamTree.generate(size, seed)
    async with Simulator(upstream) as sim:
        instance_id, run = await synced(sim, settings)
        assert run.state == SyncState.SUCCEEDED, run.error
        assert await stored(instance_id) == await full_recount(instance_id)
        scope = await owner_scope(instance_id)
        machines = Computers(scope, settings)
        removed: list[str] = []
        for step in steps:
            if step[0] in ("sync", "licenses"):
                for edit in step[1]:
                    if step[0] == "sync":
                        apply_edit(upstream, removed, edit)
                    else:
                        edit_licenses(upstream, edit)
                run = await sync_runs.sync_now(instance_id, settings)
                assert run.state == SyncState.SUCCEEDED, run.error
            elif step[0] in ("enrol", "remove", "keep_new", "keep_existing", "checkin", "announce"):
                await machines.act(*step)
            else:
                await act(scope, scope.user_id, *step)
            counted, recounted = await stored_and_recounted(instance_id)
            assert counted == recounted, step
        # the repair finds nothing to repair
        assert await counters.recount(instance_id) == 0


async def test_recount_repairs_counters_written_wrong(app: object, settings: Settings) -> None:
    async with Simulator(UpstreamTree.generate(12, 3)) as sim:
        instance_id, _ = await synced(sim, settings)
        right = await stored(instance_id)
        await db.execute(
            "UPDATE subtree_count SET customers_normal = customers_normal + 7 "
            "WHERE instance_id = ?",
            [instance_id],
        )
        await db.execute(
            f"INSERT INTO subtree_count (group_id, instance_id, {', '.join(counters.COLUMNS)}) "
            f"VALUES (?, ?, {', '.join('3' for _ in counters.COLUMNS)})",
            [10**9, instance_id],
        )
        assert await counters.recount(instance_id) == len(right) + 1
        assert await stored(instance_id) == right == await full_recount(instance_id)


async def test_the_repair_counts_the_computers_the_sync_only_rolls_up(
    app: object, settings: Settings
) -> None:
    """Computers written behind the counters' back (a restore): a recount that rolls up the
    stored own counts leaves them wrong; `recount(count_held=True)` counts them."""
    async with Simulator(UpstreamTree.generate(12, 3)) as sim:
        instance_id, _ = await synced(sim, settings)
        customer, group = await a_customer_and_its_group(instance_id)
        await insert_behind_the_counters(customer, group, "hw-restored")
        right = await full_recount(instance_id)
        assert await counters.recount(instance_id) == 0
        assert await stored(instance_id) != right
        assert await counters.recount(instance_id, count_held=True) == depth_of(group.path)
        assert await stored(instance_id) == right


async def test_computers_shifted_along_a_path_a_sync_changed_follow_their_group(
    app: object, settings: Settings
) -> None:
    """An enrolment reads its group's path, a sync moves the group and commits, then the
    enrolment shifts along the path it read: the shift finds the group moved and counts the
    computers along the new path (a race of PostgreSQL's; SQLite runs one writer at a time, and
    the same check runs there)."""
    upstream = UpstreamTree.generate(12, 5)
    async with Simulator(upstream) as sim:
        instance_id, _ = await synced(sim, settings)
        customer, group = await a_customer_and_its_group(instance_id)
        read_before = group.path
        parents = [c for c in upstream.subtree(upstream.account_id) if c["type"] != "CUSTOMER"]
        parent = upstream.get(customer.public_id)["parentId"]
        target = next(p for p in parents if p["publicId"] != parent)
        upstream.move(customer.public_id, target["publicId"])
        await sync_runs.sync_now(instance_id, settings)
        assert (await StaticGroup.get(id=group.id)).path != read_before
        async with in_transaction():
            await insert_behind_the_counters(customer, group, "hw-late")
            await counters.shift_held([(instance_id, read_before, counters.COMPUTERS, 1)])
        assert await stored(instance_id) == await full_recount(instance_id)


async def test_a_removal_takes_away_the_status_the_watcher_announced_meanwhile(
    app: object, settings: Settings
) -> None:
    """The connection watcher announces a computer between a removal's read of it and its
    delete (run right before the DELETE reaches the driver): the removal keeps the computer
    locked in a transaction of its own from that read to the counters' shift, so the watcher
    waits for it and then finds nothing to announce; `protected` leaves with the computer.
    (It ran in its caller's transaction only: called outside one, as `Computers` calls it,
    each statement committed alone, and both the watcher's -1 and the removal's -1 for the
    CONNECTED it had read were counted.)"""
    async with Simulator(UpstreamTree.generate(12, 5)) as sim:
        instance_id, _ = await synced(sim, settings)
        scope = await owner_scope(instance_id)
        await Computers(scope, settings).act("enrol", 0, 1)
        await announce_transitions(None, settings, instance_id=instance_id)  # CONNECTED
        computer = await Computer.get(instance_id=instance_id)
        assert computer.announced_status == ConnectionStatus.CONNECTED
        told, announced = asyncio.Event(), asyncio.Event()
        announced_first: list[bool] = []

        async def announce_not_connected() -> None:  # made here: outside the removal's context
            await told.wait()
            later = dt.datetime.now(dt.UTC) + dt.timedelta(days=30)
            await announce_transitions(None, settings, later, instance_id=instance_id)
            announced.set()

        watcher = asyncio.create_task(announce_not_connected())
        with pytest.MonkeyPatch.context() as patch:
            client = type(db.connection())
            owner = next(c for c in client.__mro__ if "execute_query" in vars(c))
            execute_query = vars(owner)["execute_query"]

            async def watcher_first(self: Any, query: str, values: Any = None) -> Any:
                if query.startswith("DELETE FROM computer") and not told.is_set():
                    told.set()
                    with contextlib.suppress(TimeoutError):  # waiting for the removal's lock
                        await asyncio.wait_for(announced.wait(), 0.5)
                    announced_first.append(announced.is_set())
                return await execute_query(self, query, values)

            patch.setattr(owner, "execute_query", watcher_first)
            await computers.remove_computer(scope, computer.id)
        await watcher
        assert await stored(instance_id) == await full_recount(instance_id)
        assert announced_first == [False]


def depth_of(path: str) -> int:
    return path.count("/") - 1


async def test_the_migration_fills_the_counters_a_recount_keeps(app: object, settings: Settings):
    """Migration 0006 fills the counters of a database that has companies already (0015 then
    the seats of their licenses)."""
    import importlib

    migration = importlib.import_module("server.migrations.0006_subtree_counts")
    seats = importlib.import_module("server.migrations.0015_seat_counts")
    async with Simulator(UpstreamTree.generate(12, 4)) as sim:
        instance_id, _ = await synced(sim, settings)
        await customers.skip_setup_for_all_new_customers(
            await owner_scope(instance_id),
            None,
        )
        right = await stored(instance_id)
        await db.execute("DELETE FROM subtree_count")
        await db.connection().execute_script(migration.fill_sql())
        await db.connection().execute_script(seats.fill_sql())
        assert await stored(instance_id) == right == await full_recount(instance_id)


async def test_migration_0009_fills_the_computer_counters(app: object, settings: Settings) -> None:
    """Migration 0009 counts the computers of a database that has some already, in the rows of
    their groups and of every group above (rows made where there were none)."""
    import importlib

    migration = importlib.import_module("server.migrations.0009_computer_counts")
    async with Simulator(UpstreamTree.generate(12, 4)) as sim:
        instance_id, _ = await synced(sim, settings)
        machines = Computers(await owner_scope(instance_id), settings)
        for pick in range(4):
            await machines.act("enrol", pick, 3)
        right = await stored(instance_id)
        assert any(counts["own_computers"] for counts in right.values())
        await db.execute(
            "UPDATE subtree_count SET computers = 0, own_computers = 0 WHERE instance_id = ?",
            [instance_id],
        )
        await db.execute(
            "DELETE FROM subtree_count WHERE instance_id = ? AND distributors + divisions "
            "+ msp_managers + msps + managed_msps + customers_not_set_up + customers_normal "
            "+ customers_unlinked = 0",
            [instance_id],
        )
        await db.connection().execute_script(migration.fill_sql())
        # its columns only: the rows it makes anew hold none of 0015's (protected, seats), and
        # the session's connection watcher may announce the new computers (protected) any time
        filled = (*counters.TYPE_COLUMNS.values(), *counters.STATUS_COLUMNS.values())
        filled += (counters.COMPUTERS, counters.OWN_COMPUTERS)

        def of_0009(counts: dict[int, dict[str, int]]) -> dict[int, dict[str, int]]:
            kept = {group: {c: row[c] for c in filled} for group, row in counts.items()}
            return {group: row for group, row in kept.items() if any(row.values())}

        after, recounted = await stored_and_recounted(instance_id)
        assert of_0009(after) == of_0009(right) == of_0009(recounted)


async def test_migration_0015_fills_the_seat_counters(app: object, settings: Settings) -> None:
    """Migration 0015 counts the protected computers and the seats of the licenses in force of
    a database that has them already, in the rows of their groups and of every group above."""
    import importlib

    migration = importlib.import_module("server.migrations.0015_seat_counts")
    upstream = UpstreamTree.generate(12, 4)
    for pick in range(6):
        edit_licenses(upstream, ("add", pick * 5, pick * 7 + 3))
    async with Simulator(upstream) as sim:
        instance_id, _ = await synced(sim, settings)
        machines = Computers(await owner_scope(instance_id), settings)
        for pick in range(4):
            await machines.act("enrol", pick, 3)
        await machines.act("checkin", 1, 1)
        await machines.act("announce", 0, 1)
        right = await stored(instance_id)
        assert any(counts["own_protected"] for counts in right.values())
        assert any(counts["own_seats"] for counts in right.values())
        await db.execute(
            "UPDATE subtree_count SET protected = 0, own_protected = 0, seats = 0, own_seats = 0, "
            "activated = 0, own_activated = 0 WHERE instance_id = ?",
            [instance_id],
        )
        await db.connection().execute_script(migration.fill_sql())
        assert await stored(instance_id) == right == await full_recount(instance_id)


async def test_the_recount_command_repairs_an_instance(app: object, settings: Settings) -> None:
    """`msp-console recount --instance ID`, run as the command it is: prints what it corrected."""
    from tests.test_sync_command import msp_console

    async with Simulator(UpstreamTree.generate(10, 6)) as sim:
        instance_id, _ = await synced(sim, settings)
    right = await stored(instance_id)
    await db.execute(
        "UPDATE subtree_count SET customers_normal = customers_normal + 2 WHERE instance_id = ?",
        [instance_id],
    )
    await db.execute(  # and one computers counter, which the command counts again
        "UPDATE subtree_count SET computers = computers + 3, own_computers = own_computers + 1 "
        "WHERE group_id = (SELECT MIN(group_id) FROM subtree_count WHERE instance_id = ?)",
        [instance_id],
    )
    code, output = await msp_console(settings, "recount", "--instance", str(instance_id))
    assert code == 0, output
    assert f"instance {instance_id}: {len(right)} counter rows corrected" in output, output
    assert await stored(instance_id) == right
    code, output = await msp_console(settings, "recount", "--instance", "999999999")
    assert code == 1 and "no instance 999999999" in output, output


async def test_writers_running_at_once_neither_deadlock_nor_lose_a_count(
    app: object, settings: Settings
) -> None:
    """Every writer takes its locks in one order (company rows, installers, then the counters,
    the top row first), so a sync that moves, removes and re-adds companies, a customer action
    and an enrolment batch can run at once: round after round, none fails (PostgreSQL would
    break a deadlock by failing one) and the counters equal a full recount."""
    upstream = UpstreamTree.generate(14, 7)
    async with Simulator(upstream) as sim:
        instance_id, run = await synced(sim, settings)
        assert run.state == SyncState.SUCCEEDED, run.error
        scope = await owner_scope(instance_id)
        machines = Computers(scope, settings)
        for pick in range(4):  # computers below several customers, their installers made
            await machines.act("enrol", pick, 2)
        removed: list[str] = []
        for turn in range(16):
            for edit in (("move", turn, turn + 1), ("move", turn + 3, turn), ("remove", turn, 0)):
                apply_edit(upstream, removed, edit)
            if turn % 3 == 2:
                apply_edit(upstream, removed, ("readd", turn, 0))
            done = await asyncio.gather(
                sync_runs.sync_now(instance_id, settings),
                machines.act("enrol", turn, 3),
                act(scope, scope.user_id, "unlink" if turn % 2 else "relink", turn),
                machines.act("remove", turn, 1),
                return_exceptions=True,
            )
            failed = [result for result in done if isinstance(result, BaseException)]
            assert not failed, failed
            assert done[0].state == SyncState.SUCCEEDED, done[0].error
            counted, recounted = await stored_and_recounted(instance_id)
            assert counted == recounted, turn

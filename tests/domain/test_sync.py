"""The sync: connecting, runs, and the reconcile, through real HTTP against the simulator."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import gc
import logging
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from server import events, offload
from server.domain import (
    counters,
    reconcile,
    sync,
    sync_runs,
    tree_paths,
    upstream_connection,
)
from server.domain.access import Scope
from server.domain.errors import (
    ImportNotAllowed,
    InvalidCredentials,
    InvalidInput,
    PermissionDenied,
    UpstreamFailed,
    UpstreamNotConnected,
)
from server.domain.instances import create_group
from server.domain.reconcile_input import Wanted, wanted_companies
from server.domain.secrets import hash_password
from server.domain.sync_scheduler import SyncScheduler, due_instances
from server.domain.tree_paths import COMPANY_LEVELS_THAT_FIT
from server.events import InProcessEventBus
from server.models import Company, Instance, StaticGroup, SyncRun, User, db, locks
from server.models.enums import CompanyType, GroupKind, SyncState, UnlinkReason
from server.settings import Settings
from server.upstream.client import MspAdministratorClient
from server.upstream.codes import ACTIVE, CUSTOMER, MANAGED_MSP, MSP, MSP_MANAGER, SUSPENDED
from server.upstream.simulator import (
    DEFAULT_PASSWORD,
    DEFAULT_USERNAME,
    Faults,
    Simulator,
    UpstreamTree,
)
from tests import factories
from tests.conftest import LOCAL_UPSTREAM, TEST_SECRET
from tests.sync_support import (
    FAST_CLIENT,
    assert_mirrors,
    check_trees,
    closed_port,
    companies_of,
    connected_tenant,
    console_tree,
    dump,
    fast_client,
    groups_of,
    left_to_plan,
    port_that,
    synced,
    synced_tenant,
    tenant,
)

ROOT = Path(__file__).resolve().parents[2]


@dataclasses.dataclass
class NativeUser:
    """A tenant synced from the simulator, its first customer (upstream id, company, group) and
    a console user living in that customer's group, who signs in with factories.PASSWORD."""

    owner: factories.Owner
    target: str
    company: Company
    group: StaticGroup
    user: User


async def a_native_user(sim: Simulator, settings: Settings) -> NativeUser:
    owner = await synced_tenant(sim, settings)
    target = sim.tree.of_type(CUSTOMER)[0]["publicId"]
    company = await Company.get(instance_id=owner.instance_id, public_id=target)
    group = await StaticGroup.get(company_id=company.id, kind=GroupKind.COMPANY)
    user = await User.create(
        instance_id=owner.instance_id,
        email=factories.unique_email("native"),
        home_group=group,
        password_hash=await hash_password(factories.PASSWORD),
    )
    return NativeUser(owner, target, company, group, user)


def ids_of(tree: UpstreamTree) -> set[str]:
    return set(tree.snapshot()) | {c["publicId"] for c in tree.ancestors_of(tree.account_id)}


# -- connecting ---------------------------------------------------------------------------------


async def test_connecting_stores_the_account_with_the_password_encrypted(
    app: object, sim: Simulator
) -> None:
    owner = await connected_tenant(None, sim)
    instance = await Instance.get(id=owner.instance_id)
    assert instance.upstream_url == sim.url
    assert instance.upstream_username == DEFAULT_USERNAME
    assert instance.upstream_company_id == sim.tree.account_id
    assert instance.upstream_password_encrypted
    assert DEFAULT_PASSWORD not in instance.upstream_password_encrypted


async def test_connecting_with_a_wrong_password_is_refused_and_stores_nothing(
    app: object, sim: Simulator, settings: Settings
) -> None:
    owner = await tenant()
    with pytest.raises(InvalidCredentials) as caught:
        await upstream_connection.connect_msp_administrator(
            None,
            owner.instance_id or 0,
            sim.url,
            DEFAULT_USERNAME,
            "hunter2",
            settings,
            make_client=FAST_CLIENT,
        )
    assert "hunter2" not in caught.value.message
    assert (await Instance.get(id=owner.instance_id)).upstream_url is None


async def test_a_distributor_account_cannot_be_imported(
    app: object, sim: Simulator, settings: Settings
) -> None:
    owner = await tenant()
    sim.add_user("distributor@msp.example", "pw", sim.tree.distributor_id)
    with pytest.raises(ImportNotAllowed) as caught:
        await upstream_connection.connect_msp_administrator(
            None,
            owner.instance_id or 0,
            sim.url,
            "distributor@msp.example",
            "pw",
            settings,
            make_client=FAST_CLIENT,
        )
    assert "Distributor" in caught.value.message


async def test_an_unreachable_upstream_fails_with_a_clear_error(
    app: object, settings: Settings
) -> None:
    owner = await tenant()
    async with Simulator(UpstreamTree.generate(10, seed=1)) as gone:
        url = gone.url
    with pytest.raises(UpstreamFailed) as caught:
        await upstream_connection.connect_msp_administrator(
            None,
            owner.instance_id or 0,
            url,
            DEFAULT_USERNAME,
            DEFAULT_PASSWORD,
            settings,
            make_client=FAST_CLIENT,
        )
    assert caught.value.message == "could not reach the MSP Administrator at 127.0.0.1"


async def test_connecting_needs_sync_write(app: object, sim: Simulator, settings: Settings) -> None:
    owner = await tenant()
    assert owner.instance_id is not None
    reader = Scope(owner.instance_id, 0, False, {})
    with pytest.raises(PermissionDenied):
        await upstream_connection.connect_msp_administrator(
            reader,
            owner.instance_id,
            sim.url,
            DEFAULT_USERNAME,
            DEFAULT_PASSWORD,
            settings,
            make_client=FAST_CLIENT,
        )


async def test_a_sync_without_a_connection_is_refused(app: object, settings: Settings) -> None:
    owner = await tenant()
    with pytest.raises(UpstreamNotConnected):
        await synced(owner, settings)


# -- what a sync does ---------------------------------------------------------------------------


async def test_a_first_sync_builds_both_trees_with_read_only_ancestors(
    app: object, sim: Simulator, settings: Settings
) -> None:
    owner = await connected_tenant(None, sim)
    run = await synced(owner, settings)
    assert (run.state, run.error, run.phase) == (SyncState.SUCCEEDED, None, sync.DONE)
    ancestors = sim.tree.ancestors_of(sim.tree.account_id)
    assert run.companies_seen == 60
    assert run.created == 60 + len(ancestors)
    await assert_mirrors(owner.instance_id or 0, sim.tree, ids_of(sim.tree))
    top = await Company.get(instance_id=owner.instance_id, parent_id=None)
    assert (top.public_id, top.type, top.read_only, top.depth) == (
        sim.tree.distributor_id,
        CompanyType.DISTRIBUTOR,
        True,
        0,
    )
    customers = await Company.filter(instance_id=owner.instance_id, type=CompanyType.CUSTOMER)
    assert customers and all(c.setup_state.value == "pending" for c in customers)


async def test_a_second_sync_of_the_same_upstream_changes_nothing(
    app: object, sim: Simulator, settings: Settings
) -> None:
    owner = await synced_tenant(sim, settings)
    before = await dump(owner.instance_id or 0)
    run = await synced(owner, settings)
    assert (run.created, run.updated, run.moved, run.unlinked, run.relinked) == (0, 0, 0, 0, 0)
    assert await dump(owner.instance_id or 0) == before


async def test_a_sync_holds_full_garbage_collections_back_until_it_ends(
    app: object, sim: Simulator, settings: Settings
) -> None:
    usual = gc.get_threshold()
    seen: dict[str | None, int] = {}

    def threshold_of_full_collections(run: SyncRun) -> None:
        seen[run.phase] = gc.get_threshold()[2]

    owner = await connected_tenant(None, sim)
    await synced(owner, settings, on_progress=threshold_of_full_collections)
    # while the snapshot is held (its licenses read, then applied): none; at the end: as usual
    assert seen[sync.LICENSES] > 1_000_000 and seen[sync.APPLY] > 1_000_000
    assert seen[sync.DONE] == usual[2]
    assert gc.get_threshold() == usual
    with offload.no_full_collection():  # two at once: back when the last one ends
        with offload.no_full_collection():
            assert gc.get_threshold()[2] > 1_000_000
        assert gc.get_threshold()[2] > 1_000_000
    assert gc.get_threshold() == usual


async def _analyzed_during(owner: factories.Owner, settings: Settings) -> bool:
    """Whether a sync of the tenant refreshed the planner's statistics of the company table."""
    if db.is_postgres():
        count = "SELECT relname, analyze_count FROM pg_stat_user_tables"
        before = dict(await db.fetch_tuples(count))
        await synced(owner, settings)
        after = dict(await db.fetch_tuples(count))
        # a sync rewrites no computer: sampling a million of them would only cost it time
        assert after["computer"] == before["computer"]
        return bool(after["company"] > before["company"])
    await db.execute("DELETE FROM sqlite_stat1 WHERE tbl = 'company'")
    await synced(owner, settings)
    return bool(await db.fetch_value("SELECT COUNT(*) FROM sqlite_stat1 WHERE tbl = 'company'"))


async def test_statistics_are_refreshed_after_a_sync_that_rewrote_a_tenth_of_the_tree(
    app: object, sim: Simulator, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sync, "STATISTICS_AFTER", 3)  # the tree has 60 companies, not 5,000
    owner = await connected_tenant(None, sim)
    await db.execute("ANALYZE")  # sqlite_stat1 exists from here on
    assert await _analyzed_during(owner, settings)  # all 60 and their ancestors are new
    customers = [c["publicId"] for c in sim.tree.of_type(CUSTOMER)]
    for public_id in customers[:4]:  # more than 3, but fewer than a tenth of the tree
        sim.tree.rename(public_id, f"{public_id} renamed")
        sim.tree.move(public_id, sim.tree.account_id)
    assert not await _analyzed_during(owner, settings)
    for public_id in customers[4:12]:  # 12 moved in all: more than a tenth
        sim.tree.move(public_id, sim.tree.account_id)
    assert await _analyzed_during(owner, settings)


async def test_renames_moves_and_removals_follow_with_groups_computers_and_custom_groups(
    app: object, sim: Simulator, settings: Settings
) -> None:
    owner = await synced_tenant(sim, settings)
    instance_id = owner.instance_id or 0
    upstream = sim.tree
    msps = upstream.of_type(MSP)
    moving = msps[0]["publicId"]
    customer = upstream.of_type(CUSTOMER, moving)[0]["publicId"]
    company = await Company.get(instance_id=instance_id, public_id=customer)
    computer = await factories.computer(instance_id, company, "pc-1")
    group = await StaticGroup.get(company_id=company.id, kind=GroupKind.COMPANY)
    custom = await StaticGroup.create(
        instance_id=instance_id,
        name="Laptops",
        kind=GroupKind.CUSTOM,
        parent=group,
        path="",
        sort_key="",
        depth=group.depth + 1,
    )
    custom.path = f"{group.path}{custom.id}/"
    custom.sort_key = group.sort_key + tree_paths.sort_segment("Laptops", custom.id)
    await custom.save()

    upstream.rename(moving, 'Zeta, "the" MSP')
    upstream.move(moving, upstream.of_type(MANAGED_MSP)[0]["publicId"])
    upstream.rename(customer, "Ärger & Söhne")
    gone = upstream.of_type(CUSTOMER, msps[1]["publicId"])[0]["publicId"]
    upstream.remove(gone)
    run = await synced(owner, settings)
    assert (run.updated, run.moved, run.unlinked, run.created) == (2, 1, 1, 0)
    await assert_mirrors(instance_id, upstream, ids_of(upstream) | {gone})

    company = await Company.get(id=company.id)
    await computer.refresh_from_db()
    await custom.refresh_from_db()
    group = await StaticGroup.get(id=group.id)
    assert computer.group_id == group.id  # type: ignore[attr-defined]
    assert (group.name, company.name) == ("Ärger & Söhne", "Ärger & Söhne")
    assert custom.parent_id == group.id  # type: ignore[attr-defined]
    assert custom.path == f"{group.path}{custom.id}/" and custom.depth == group.depth + 1
    removed = await Company.get(instance_id=instance_id, public_id=gone)
    assert removed.unlinked_at is not None and removed.unlink_reason == UnlinkReason.UPSTREAM


async def test_a_customer_back_upstream_is_relinked_with_its_status_unless_a_user_unlinked_it(
    app: object, sim: Simulator, settings: Settings
) -> None:
    owner = await synced_tenant(sim, settings)
    instance_id = owner.instance_id or 0
    first, second = (c["publicId"] for c in sim.tree.of_type(CUSTOMER)[:2])
    await Company.filter(instance_id=instance_id, public_id=first).update(setup_state="done")
    await Company.filter(instance_id=instance_id, public_id=second).update(
        unlinked_at=dt.datetime.now(dt.UTC), unlink_reason=UnlinkReason.USER
    )
    sim.tree.remove(first)
    sim.tree.remove(second)
    run = await synced(owner, settings)
    assert run.unlinked == 1  # the other one was unlinked already
    sim.tree.readd(first)
    sim.tree.readd(second)
    run = await synced(owner, settings)
    assert run.relinked == 1
    back = await Company.get(instance_id=instance_id, public_id=first)
    assert (back.unlinked_at, back.unlink_reason, back.setup_state.value) == (None, None, "done")
    kept = await Company.get(instance_id=instance_id, public_id=second)
    assert kept.unlinked_at is not None and kept.unlink_reason == UnlinkReason.USER


async def test_suspended_companies_stay_with_their_status(
    app: object, sim: Simulator, settings: Settings
) -> None:
    owner = await connected_tenant(None, sim)
    target = sim.tree.of_type(CUSTOMER)[3]["publicId"]
    sim.tree.suspend(target)
    await synced(owner, settings)
    company = await Company.get(instance_id=owner.instance_id, public_id=target)
    assert (company.upstream_status, company.unlinked_at) == (SUSPENDED, None)
    sim.tree.activate(target)
    run = await synced(owner, settings)
    assert run.updated == 1
    assert (await Company.get(id=company.id)).upstream_status == ACTIVE


async def test_customer_status_events_name_the_customers_whose_status_changed(
    app: object, sim: Simulator, settings: Settings
) -> None:
    owner = await connected_tenant(None, sim)
    bus = InProcessEventBus()
    await synced(owner, settings, bus=bus)
    gone = sim.tree.of_type(CUSTOMER)[0]["publicId"]
    sim.tree.remove(gone)
    async with bus.subscribe("customer_status") as stream, bus.subscribe("sync_run") as runs:
        run = await synced(owner, settings, bus=bus)
        event = await asyncio.wait_for(anext(stream), 1)
        states = []
        while not states or states[-1] not in sync_runs.FINISHED:
            payload = await asyncio.wait_for(anext(runs), 1)
            assert payload == {"instance_id": owner.instance_id, "run_id": run.id}
            states.append((await SyncRun.get(id=run.id)).state)
    company = await Company.get(instance_id=owner.instance_id, public_id=gone)
    assert event == {"instance_id": owner.instance_id, "company_ids": [company.id]}


async def test_unlinking_revokes_installers_and_disables_users_and_relinking_enables_them(
    app: object, sim: Simulator, settings: Settings
) -> None:
    from server.domain.secrets import token_hash
    from server.models import Installer

    native = await a_native_user(sim, settings)
    owner, target, user = native.owner, native.target, native.user
    installer = await Installer.create(
        instance_id=owner.instance_id,
        company=native.company,
        group=native.group,
        name="agent",
        token_hash=token_hash(factories.unique_email("token")),
    )
    sim.tree.remove(target)
    await synced(owner, settings)
    await user.refresh_from_db()
    await installer.refresh_from_db()
    assert not user.enabled and user.disabled_by_unlink_id == native.company.id  # type: ignore[attr-defined]
    assert installer.revoked_at is not None
    sim.tree.readd(target)
    await synced(owner, settings)
    await user.refresh_from_db()
    await installer.refresh_from_db()
    assert user.enabled and user.disabled_by_unlink_id is None  # type: ignore[attr-defined]
    assert installer.revoked_at is not None  # revoked installers stay revoked


async def test_an_unlink_by_the_sync_ends_the_users_sessions_so_a_relink_revives_no_token(
    app: object, sim: Simulator, settings: Settings
) -> None:
    from server.domain import accounts
    from server.models import Session

    native = await a_native_user(sim, settings)
    owner, target, user = native.owner, native.target, native.user
    old_token, _ = await accounts.login(user.email, factories.PASSWORD, None, 3600)
    bus = InProcessEventBus()
    sim.tree.remove(target)
    async with bus.subscribe(events.SESSION_ENDED) as ended:
        await synced(owner, settings, bus=bus)
        event = await asyncio.wait_for(anext(ended), 2)
    assert event == {"instance_id": owner.instance_id, "user_ids": [user.id]}
    assert not await Session.filter(user_id=user.id).exists()
    sim.tree.readd(target)
    await synced(owner, settings)
    await user.refresh_from_db()
    assert user.enabled
    assert await accounts.resolve_session(old_token, 3600) is None
    new_token, _ = await accounts.login(user.email, factories.PASSWORD, None, 3600)
    assert await accounts.resolve_session(new_token, 3600) is not None


async def test_a_type_change_upstream_gets_its_shared_objects_group(
    app: object, sim: Simulator, settings: Settings
) -> None:
    owner = await synced_tenant(sim, settings)
    customer = sim.tree.of_type(CUSTOMER, sim.tree.account_id)[0]["publicId"]
    sim.tree.companies[customer]["type"] = MSP  # promoted upstream
    sim.tree._changed()
    run = await synced(owner, settings)
    assert run.updated == 1
    await assert_mirrors(owner.instance_id or 0, sim.tree, ids_of(sim.tree))


def _customer(tree: UpstreamTree) -> str:
    return str(tree.of_type(CUSTOMER, tree.account_id)[0]["publicId"])


def _set(tree: UpstreamTree, field: str, value: str) -> None:
    tree.companies[_customer(tree)][field] = value
    tree._changed()


ALONE: dict[str, Callable[[UpstreamTree], object]] = {
    "a renamed company": lambda t: t.rename(_customer(t), "Renamed alone"),
    "a moved company": lambda t: t.move(
        _customer(t),
        next(
            c["publicId"]
            for c in t.of_type(MSP)
            if c["publicId"] != t.get(_customer(t))["parentId"]
        ),
    ),
    "a suspended company": lambda t: t.set_status(_customer(t), SUSPENDED),
    "a changed email": lambda t: _set(t, "email", "changed@example.test"),
    "a changed custom identifier": lambda t: _set(t, "customIdentifier", "CHANGED-1"),
    "a company of another type": lambda t: _set(t, "type", MSP),
    "a renamed read-only ancestor": lambda t: t.rename(t.distributor_id, "Renamed Distributor"),
    "a new company": lambda t: t.add(t.account_id, "New alone", CUSTOMER),
    "a company gone upstream": lambda t: t.remove(_customer(t)),
}


@pytest.mark.parametrize("change", sorted(ALONE))
async def test_a_sync_after_one_that_changed_nothing_finds_a_change_alone(
    app: object, sim: Simulator, settings: Settings, change: str
) -> None:
    """The apply that sees nothing changed from fingerprints alone misses no kind of change."""
    owner = await synced_tenant(sim, settings)
    instance_id = owner.instance_id or 0
    ever_seen = ids_of(sim.tree)
    run = await synced(owner, settings)
    assert (run.created, run.updated, run.moved, run.unlinked, run.relinked) == (0, 0, 0, 0, 0)
    ALONE[change](sim.tree)
    ever_seen |= ids_of(sim.tree)
    run = await synced(owner, settings)
    assert run.created + run.updated + run.moved + run.unlinked == 1, change
    await assert_mirrors(instance_id, sim.tree, ever_seen)
    assert await counters.recount(instance_id) == 0, "the counters followed"


async def test_a_company_back_upstream_after_a_sync_that_changed_nothing_is_relinked(
    app: object, sim: Simulator, settings: Settings
) -> None:
    owner = await connected_tenant(None, sim)
    customer = _customer(sim.tree)
    await synced(owner, settings)
    sim.tree.remove(customer)
    assert (await synced(owner, settings)).unlinked == 1
    run = await synced(owner, settings)
    assert (run.created, run.updated, run.moved, run.unlinked, run.relinked) == (0, 0, 0, 0, 0)
    sim.tree.readd(customer)
    assert (await synced(owner, settings)).relinked == 1
    await assert_mirrors(owner.instance_id or 0, sim.tree, ids_of(sim.tree))


# -- convergence --------------------------------------------------------------------------------

EDIT = st.tuples(
    st.sampled_from(["add", "rename", "move", "remove", "readd", "suspend", "activate"]),
    st.integers(0, 10**6),
    st.integers(0, 10**6),
)
NAMES = ("Acme", 'Quote "Co", Ltd', "ÖBB Ügyfél", "zeta", "Alpha", "東京", "a" * 200, "Acme")


def apply_edit(upstream: UpstreamTree, removed: list[str], edit: tuple[str, int, int]) -> None:
    kind, a, b = edit
    companies = list(upstream.subtree(upstream.account_id))
    below = companies[1:]
    parents = [c for c in companies if c["type"] != CUSTOMER]
    if kind == "add":
        parent = parents[a % len(parents)]
        child_type = MSP if parent["type"] == MSP_MANAGER and b % 3 == 0 else CUSTOMER
        upstream.add(parent["publicId"], NAMES[b % len(NAMES)], child_type)
    elif kind == "rename":
        upstream.rename(companies[a % len(companies)]["publicId"], NAMES[b % len(NAMES)] + str(b))
    elif kind == "move" and below:
        moving = below[a % len(below)]["publicId"]
        targets = [
            p
            for p in parents
            if not upstream.is_within(p["publicId"], moving)
            and p["publicId"] != upstream.get(moving)["parentId"]
        ]
        if targets:
            upstream.move(moving, targets[b % len(targets)]["publicId"])
    elif kind == "remove" and below:
        gone = below[a % len(below)]["publicId"]
        upstream.remove(gone)
        removed.append(gone)
    elif kind == "readd" and removed:
        back = removed[a % len(removed)]
        if upstream_parent(upstream, back) in upstream.companies:
            upstream.readd(back)
            removed.remove(back)
    elif kind in ("suspend", "activate"):
        target = companies[a % len(companies)]["publicId"]
        upstream.set_status(target, SUSPENDED if kind == "suspend" else ACTIVE)


def upstream_parent(upstream: UpstreamTree, removed_id: str) -> str:
    return upstream._removed[removed_id][0]["parentId"]


@given(
    seed=st.integers(0, 10_000),
    size=st.integers(5, 14),
    rounds=st.lists(st.lists(EDIT, min_size=1, max_size=5), min_size=1, max_size=4),
)
@hypothesis_settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
async def test_random_upstream_edits_converge_node_for_node(
    app: object,
    settings: Settings,
    seed: int,
    size: int,
    rounds: list[list[tuple[str, int, int]]],
) -> None:
    upstream = UpstreamTree.generate(size, seed)
    async with Simulator(upstream) as sim:
        owner = await connected_tenant(None, sim)
        instance_id = owner.instance_id or 0
        ever_seen = ids_of(upstream)
        run = await synced(owner, settings)
        assert run.state == SyncState.SUCCEEDED, run.error
        await assert_mirrors(instance_id, upstream, ever_seen)
        removed: list[str] = []
        for edits in rounds:
            for edit in edits:
                apply_edit(upstream, removed, edit)
            ever_seen |= ids_of(upstream)
            run = await synced(owner, settings)
            assert run.state == SyncState.SUCCEEDED, run.error
            await assert_mirrors(instance_id, upstream, ever_seen)
            assert await left_to_plan(instance_id, sim) == []
            before = await dump(instance_id)
            again = await synced(owner, settings)
            assert (again.created, again.updated, again.moved) == (0, 0, 0)
            assert (again.unlinked, again.relinked) == (0, 0)
            assert await dump(instance_id) == before


# -- faults -------------------------------------------------------------------------------------


def _some(kind: int) -> Callable[[Simulator], str]:
    return lambda sim: sim.tree.of_type(kind)[-1]["publicId"]


Arm = Callable[[Simulator, bool], None]


def _on_the_walk(fault: Callable[..., object], *args: Any, **options: Any) -> Arm:
    """Arms `fault` (a `Faults` method) on the walk's Company/Children calls: from the third
    one, or (`last`) at the end of the walk, on its last page."""

    def arm(sim: Simulator, last: bool) -> None:
        fault(
            sim.faults,
            *args,
            **options,
            endpoint="Company/Children",
            after=0 if last else 2,
            end_of_walk=last,
        )

    return arm


FAULTS: dict[str, tuple[Arm, str]] = {
    "maintenance": (_on_the_walk(Faults.maintenance, 10_000), "503 (unavailable)"),
    "rate limited": (
        _on_the_walk(Faults.rate_limit, 10_000, retry_after=5),
        "429 (rate limited)",
    ),
    "server error": (
        _on_the_walk(Faults.server_error, 10_000, status=502),
        "answered 502; giving up",
    ),
    "dropped connection": (
        _on_the_walk(Faults.drop_connection, 10_000),
        "could not reach the MSP Administrator at 127.0.0.1 (Company/Children, 3 attempts)",
    ),
    "body that is not JSON": (_on_the_walk(Faults.malformed_body), "a body that is not JSON"),
    "body of the wrong shape": (
        _on_the_walk(Faults.malformed_body, body=lambda answer: {**answer, "totalCount": "many"}),
        "totalCount must be an integer",
    ),
    "company listed twice": (
        lambda sim, last: sim.faults.duplicate_company(
            sim.tree.of_type(CUSTOMER)[0]["publicId"], under=_some(MSP)(sim)
        ),
        "twice",
    ),
    "cycle": (
        lambda sim, last: sim.faults.cycle(_some(MSP)(sim), sim.tree.account_id),
        "cycle",
    ),
    "wrong parent": (
        lambda sim, last: sim.faults.wrong_parent(
            sim.tree.of_type(CUSTOMER, _some(MSP)(sim))[0]["publicId"], sim.tree.account_id
        ),
        "as its parent",
    ),
}
STRUCTURAL = {"company listed twice", "cycle", "wrong parent"}
CASES = [(name, False) for name in FAULTS] + [
    (name, True) for name in FAULTS if name not in STRUCTURAL
]


@pytest.mark.parametrize(
    ("fault", "at_last_page"),
    CASES,
    ids=[f"{name}{' at the last page' if last else ''}" for name, last in CASES],
)
async def test_a_failing_upstream_fails_the_run_and_changes_nothing(
    app: object, sim: Simulator, settings: Settings, fault: str, at_last_page: bool
) -> None:
    owner = await connected_tenant(None, sim)
    instance_id = owner.instance_id or 0
    assert (await synced(owner, settings)).state == SyncState.SUCCEEDED
    upstream = sim.tree
    ever_seen = ids_of(upstream)
    # Enough upstream changes that an apply would write to every table it touches.
    upstream.rename(upstream.of_type(CUSTOMER)[1]["publicId"], "Renamed")
    upstream.move(
        upstream.of_type(MSP)[0]["publicId"], upstream.of_type(MANAGED_MSP)[0]["publicId"]
    )
    upstream.remove(upstream.of_type(CUSTOMER)[2]["publicId"])
    upstream.add(upstream.account_id, "Brand New", CUSTOMER)
    before = await dump(instance_id)

    arm, expected = FAULTS[fault]
    arm(sim, at_last_page)
    run = await synced(owner, settings)
    assert run.state == SyncState.FAILED
    assert run.error and expected in run.error, run.error
    assert run.phase == sync.FETCH
    if at_last_page:
        assert sim.faults.fired, "the fault fired"
    assert await dump(instance_id) == before

    sim.faults.clear()
    run = await synced(owner, settings)
    assert run.state == SyncState.SUCCEEDED, run.error
    await assert_mirrors(instance_id, upstream, ever_seen | ids_of(upstream))


async def test_a_password_changed_upstream_fails_the_run_naming_the_account(
    app: object, sim: Simulator, settings: Settings
) -> None:
    owner = await connected_tenant(None, sim)
    sim.state.users[DEFAULT_USERNAME].password = "changed"
    run = await synced(owner, settings)
    assert run.state == SyncState.FAILED
    assert run.error == f"MSP Administrator refused the credentials of {DEFAULT_USERNAME!r}"


async def test_credentials_stored_under_another_secret_key_fail_the_run_clearly(
    app: object, sim: Simulator, settings: Settings
) -> None:
    owner = await connected_tenant(None, sim)
    other = dataclasses.replace(settings, secret_key="another-secret-key-0123456789-abcdefghij")
    run = await synced(owner, other)
    assert run.state == SyncState.FAILED
    assert run.error == (
        "stored credentials cannot be decrypted with this secret key; "
        "connect the MSP Administrator again"
    )


async def test_a_failure_inside_the_apply_phase_rolls_everything_back(
    app: object, sim: Simulator, settings: Settings
) -> None:
    owner = await synced_tenant(sim, settings)
    instance_id = owner.instance_id or 0
    sim.tree.add(sim.tree.account_id, "Never Seen", CUSTOMER)
    sim.tree.remove(sim.tree.of_type(CUSTOMER)[0]["publicId"])
    before = await dump(instance_id)

    async def explode() -> None:
        raise RuntimeError("disk on fire")

    run = await synced(owner, settings, after_first_write=explode)
    assert (run.state, run.phase, run.error) == (
        SyncState.FAILED,
        sync.APPLY,
        "internal error: RuntimeError",
    )
    assert await dump(instance_id) == before


async def test_a_process_killed_in_the_apply_phase_leaves_the_tree_intact(
    app: object, sim: Simulator, settings: Settings
) -> None:
    owner = await synced_tenant(sim, settings)
    instance_id = owner.instance_id or 0
    upstream = sim.tree
    ever_seen = ids_of(upstream)
    upstream.add(upstream.account_id, "Half Written", CUSTOMER)
    upstream.rename(upstream.of_type(MSP)[0]["publicId"], "Renamed MSP")
    upstream.remove(upstream.of_type(CUSTOMER)[0]["publicId"])
    before = await dump(instance_id)

    env = {
        **os.environ,
        "DATABASE_URL": settings.database_url,
        "MSP_CONSOLE_SECRET_KEY": TEST_SECRET,
        "MSP_CONSOLE_UPSTREAM_ALLOWED_HOSTS": ",".join(LOCAL_UPSTREAM),
    }
    worker = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.domain.sync_process",
        str(instance_id),
        "60",
        cwd=ROOT,
        env=env,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert worker.stderr is not None
        line = (await asyncio.wait_for(worker.stderr.readline(), 30)).decode()
        assert "apply phase paused" in line, line
        running = await SyncRun.get(instance_id=instance_id, state=SyncState.RUNNING)
        assert running.phase == sync.APPLY
    finally:
        worker.send_signal(signal.SIGKILL)
        await worker.wait()
    assert worker.returncode == -signal.SIGKILL

    assert await dump(instance_id) == before
    run = await synced(owner, settings)
    assert run.state == SyncState.SUCCEEDED, run.error
    await assert_mirrors(instance_id, upstream, ever_seen | ids_of(upstream))
    interrupted = await SyncRun.get(id=running.id)
    assert interrupted.state == SyncState.FAILED and "interrupted" in (interrupted.error or "")


async def test_tokens_expiring_every_few_calls_do_not_stop_a_large_sync(
    app: object, settings: Settings
) -> None:
    async with Simulator(UpstreamTree.generate(5_000, seed=8)) as sim:
        owner = await connected_tenant(None, sim)
        sim.faults.expire_tokens_after(3)
        sim.faults.reject_renewals(2)
        run = await synced(owner, settings)
        assert run.state == SyncState.SUCCEEDED, run.error
        assert run.companies_seen == 5_000
        assert sim.calls["Token/Renew"] > 20
        await assert_mirrors(owner.instance_id or 0, sim.tree, ids_of(sim.tree))


# -- the upstream as an attacker, or as an SSRF tool -------------------------------------------


async def connect(
    owner: factories.Owner,
    url: str,
    settings: Settings,
    make_client: upstream_connection.ClientFactory = FAST_CLIENT,
) -> Instance:
    return await upstream_connection.connect_msp_administrator(
        None,
        owner.instance_id or 0,
        url,
        DEFAULT_USERNAME,
        DEFAULT_PASSWORD,
        settings,
        make_client=make_client,
    )


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("http://localhost:{port}", LOCAL_UPSTREAM),
        ("http://127.0.0.1:{port}", ("mspapi.eset.com",)),
        ("http://127.0.0.1:{port}", ()),
        ("http://169.254.169.254/latest/meta-data/", LOCAL_UPSTREAM),
        ("http://[::ffff:169.254.169.254]/", LOCAL_UPSTREAM),
        ("http://2852039166/", LOCAL_UPSTREAM),
        ("http://10.0.0.1:{port}", LOCAL_UPSTREAM),
        ("https://mspapi.eset.com.evil.example/", ("mspapi.eset.com",)),
        ("https://mspapi.eset.com@127.0.0.1:{port}", ("mspapi.eset.com",)),
        ("https://127.0.0.1:{port}@mspapi.eset.com", ("mspapi.eset.com",)),
        ("http://127.0.0.1:{port}?u=http://mspapi.eset.com", ("mspapi.eset.com",)),
    ],
)
async def test_connecting_to_a_host_not_allowed_is_refused_before_any_request(
    app: object, sim: Simulator, settings: Settings, url: str, allowed: tuple[str, ...]
) -> None:
    owner = await tenant()
    limited = dataclasses.replace(settings, upstream_allowed_hosts=allowed)
    with pytest.raises(InvalidInput) as caught:
        await connect(owner, url.format(port=sim.port), limited)
    assert caught.value.field == "url"
    assert sim.calls.total() == 0
    assert (await Instance.get(id=owner.instance_id)).upstream_url is None


@pytest.mark.parametrize(
    "url",
    [
        "http://2130706433:{port}",
        "http://0x7f.0.0.1:{port}/",
        "http://[::ffff:127.0.0.1]:{port}",
        "HTTP://127.0.0.1.:{port}//",
    ],
)
async def test_any_spelling_of_an_allowed_host_connects_and_is_stored_in_one(
    app: object, sim: Simulator, settings: Settings, url: str
) -> None:
    owner = await tenant()
    instance = await connect(owner, url.format(port=sim.port), settings)
    assert instance.upstream_url == sim.url


async def test_a_run_on_a_host_no_longer_allowed_fails_cleanly_without_a_request(
    app: object, sim: Simulator, settings: Settings
) -> None:
    owner = await synced_tenant(sim, settings)
    sim.tree.add(sim.tree.account_id, "Never Fetched", CUSTOMER)
    before = await dump(owner.instance_id or 0)
    sim.state.reset_counters()
    only_eset = dataclasses.replace(settings, upstream_allowed_hosts=("mspapi.eset.com",))
    run = await synced(owner, only_eset)
    assert (run.state, run.phase) == (SyncState.FAILED, sync.FETCH)
    assert run.error == (
        "the MSP Administrator host 127.0.0.1 is not allowed; an operator can allow it in "
        "MSP_CONSOLE_UPSTREAM_ALLOWED_HOSTS"
    )
    assert sim.calls.total() == 0
    assert await dump(owner.instance_id or 0) == before


async def test_connecting_to_a_closed_port_or_a_silent_one_answers_the_same(
    app: object, settings: Settings
) -> None:
    owner = await tenant()
    impatient = fast_client(timeout=0.2)
    with pytest.raises(UpstreamFailed) as closed:
        await connect(owner, f"http://127.0.0.1:{closed_port()}", settings, impatient)
    async with port_that(None) as port:
        with pytest.raises(UpstreamFailed) as silent:
            await connect(owner, f"http://127.0.0.1:{port}", settings, impatient)
    assert closed.value.message == silent.value.message
    assert closed.value.message == "could not reach the MSP Administrator at 127.0.0.1"


NOT_THE_API: dict[str, Callable[[Simulator, str], None]] = {
    "not JSON": lambda sim, _: sim.faults.malformed_body(
        body="<html>secret internals</html>", endpoint="Token/Get"
    ),
    "of the wrong shape": lambda sim, _: sim.faults.malformed_body(
        body={"secret": "internals"}, endpoint="Token/Get"
    ),
    "a 404 on the token endpoint": lambda sim, _: sim.faults.server_error(
        status=404, endpoint="Token/Get"
    ),
    "a redirect": lambda sim, elsewhere: sim.faults.redirect(elsewhere, endpoint="Token/Get"),
    "a 200 without a body": lambda sim, _: sim.faults.malformed_body(
        body=b"", endpoint="User/Current"
    ),
}


@pytest.mark.parametrize("answer", [*NOT_THE_API, "not HTTP"])
async def test_an_answer_that_is_not_the_apis_is_refused_without_quoting_it(
    app: object, sim: Simulator, settings: Settings, answer: str
) -> None:
    owner = await tenant()
    async with Simulator(UpstreamTree.generate(10, seed=1)) as elsewhere:
        if answer == "not HTTP":
            async with port_that(b"SSH-2.0-secret internals\r\n") as port:
                with pytest.raises(UpstreamFailed) as caught:
                    await connect(owner, f"http://127.0.0.1:{port}", settings)
        else:
            NOT_THE_API[answer](sim, elsewhere.url)
            with pytest.raises(UpstreamFailed) as caught:
                await connect(owner, sim.url, settings)
        assert elsewhere.calls.total() == 0
    assert caught.value.message == (
        "the server at 127.0.0.1 does not answer like the MSP Administrator API; check the URL"
    )
    assert caught.value.field == "url"
    assert (await Instance.get(id=owner.instance_id)).upstream_url is None


async def test_a_redirect_during_a_run_is_not_followed_and_fails_it(
    app: object, sim: Simulator, settings: Settings
) -> None:
    owner = await connected_tenant(None, sim)
    async with Simulator(UpstreamTree.generate(10, seed=1)) as elsewhere:
        sim.faults.redirect(elsewhere.url, 10_000, endpoint="Company/Children")
        run = await synced(owner, settings)
        assert elsewhere.calls.total() == 0
    assert run.state == SyncState.FAILED
    assert run.error and "answered a redirect (307)" in run.error


def _chain_to(sim: Simulator, level: int) -> None:
    """A chain of MSPs below the account whose last one is on `level` of the whole tree."""
    tree = sim.tree
    sim.faults.deep_chain(tree.account_id, level - len(tree.ancestors_of(tree.account_id)) - 1)


HUGE = 256 * 2**20
LIMITS: dict[str, tuple[Callable[[Simulator], None], dict[str, Any], str]] = {
    "a huge body": (
        lambda sim: sim.faults.huge_body(HUGE, endpoint="Company/Children", after=1),
        {"upstream_max_body_bytes": 65_536},
        "answered more than 65536 bytes, the limit of an answer "
        "(MSP_CONSOLE_UPSTREAM_MAX_BODY_BYTES)",
    ),
    "an endless totalCount": (
        lambda sim: sim.faults.endless_children(sim.tree.of_type(MSP)[0]["publicId"]),
        {},
        "company tree holds more than 100000 companies, the limit of a sync",
    ),
    "more companies than allowed": (
        lambda sim: None,
        {"upstream_max_companies": 40},
        "company tree holds more than 40 companies",
    ),
    "a chain deeper than the columns hold": (
        lambda sim: _chain_to(sim, COMPANY_LEVELS_THAT_FIT + 1),
        {},
        f"company tree is deeper than the limit of {COMPANY_LEVELS_THAT_FIT} levels",
    ),
    "an endless chain": (
        lambda sim: sim.faults.deep_chain(sim.tree.account_id, 10**6),
        {},
        f"is on level {COMPANY_LEVELS_THAT_FIT + 1} (MSP_CONSOLE_UPSTREAM_MAX_DEPTH)",
    ),
    "a fetch that takes too long": (
        lambda sim: sim.faults.slow(1.0, 10_000, endpoint="Company/Children", after=1),
        {"upstream_max_fetch_seconds": 0.3},
        "calls took longer than the limit of 0.3 s (at Company/Children) "
        "(MSP_CONSOLE_UPSTREAM_MAX_FETCH_SECONDS)",
    ),
}


@pytest.mark.parametrize("limit", LIMITS)
async def test_an_upstream_beyond_a_limit_fails_the_run_naming_it_and_changes_nothing(
    app: object, sim: Simulator, settings: Settings, limit: str
) -> None:
    owner = await connected_tenant(None, sim)
    instance_id = owner.instance_id or 0
    assert (await synced(owner, settings)).state == SyncState.SUCCEEDED
    upstream = sim.tree
    upstream.rename(upstream.of_type(CUSTOMER)[1]["publicId"], "Renamed")
    upstream.remove(upstream.of_type(CUSTOMER)[2]["publicId"])
    upstream.add(upstream.account_id, "Brand New", CUSTOMER)
    before = await dump(instance_id)

    arm, overrides, expected = LIMITS[limit]
    arm(sim)
    run = await synced(owner, dataclasses.replace(settings, **overrides))
    assert (run.state, run.phase) == (SyncState.FAILED, sync.FETCH)
    assert run.error and expected in run.error, run.error
    assert sim.state.bytes_streamed < HUGE // 4
    assert await dump(instance_id) == before

    sim.faults.clear()
    run = await synced(owner, settings)
    assert run.state == SyncState.SUCCEEDED, run.error


async def test_a_tree_as_deep_as_the_limit_fits_every_column(
    app: object, sim: Simulator, settings: Settings
) -> None:
    from server.models.companies import PATH_LENGTH, SORT_KEY_LENGTH

    owner = await connected_tenant(None, sim)
    _chain_to(sim, COMPANY_LEVELS_THAT_FIT)
    run = await synced(owner, settings)
    assert run.state == SyncState.SUCCEEDED, run.error
    deepest = await Company.filter(instance_id=owner.instance_id).order_by("-depth").first()
    assert deepest is not None and deepest.depth == COMPANY_LEVELS_THAT_FIT - 1
    groups = await groups_of(owner.instance_id or 0)
    assert max(len(g["sort_key"]) for g in groups) <= SORT_KEY_LENGTH
    assert max(len(g["path"]) for g in groups) <= PATH_LENGTH
    await check_trees(owner.instance_id or 0)


def _on_every_customer(field: str, value: Callable[[dict[str, Any]], Any]) -> Any:
    def change(answer: dict[str, Any]) -> dict[str, Any]:
        companies = [
            {**c, field: value(c)} if c["type"] == CUSTOMER else c for c in answer["companies"]
        ]
        return {**answer, "companies": companies}

    return change


@pytest.mark.parametrize(
    ("field", "value", "longest"),
    [
        ("name", lambda c: "ü" * 256, 255),
        ("email", lambda c: "a" * 245 + "@x.example", 254),
        ("customIdentifier", lambda c: "C" * 256, 255),
        ("publicId", lambda c: c["publicId"] + "-" * 29, 64),
    ],
)
async def test_a_value_longer_than_its_column_fails_the_run_naming_it_and_changes_nothing(
    app: object,
    sim: Simulator,
    settings: Settings,
    field: str,
    value: Callable[[dict[str, Any]], Any],
    longest: int,
) -> None:
    owner = await synced_tenant(sim, settings)
    sim.tree.add(sim.tree.account_id, "Brand New", CUSTOMER)
    before = await dump(owner.instance_id or 0)
    sim.faults.malformed_body(
        10_000, body=_on_every_customer(field, value), endpoint="Company/Children"
    )
    run = await synced(owner, settings)
    assert run.state == SyncState.FAILED
    assert run.error and run.error.endswith(
        f"has a {field} of {longest + 1} characters; the console holds at most {longest}"
    ), run.error
    assert await dump(owner.instance_id or 0) == before


async def test_values_as_long_as_their_columns_are_kept_whole(
    app: object, sim: Simulator, settings: Settings
) -> None:
    owner = await connected_tenant(None, sim)
    sim.faults.malformed_body(
        10_000,
        body=_on_every_customer("customIdentifier", lambda c: "Ž" * 255),
        endpoint="Company/Children",
    )
    name = "ü" * 255
    customer = sim.tree.of_type(CUSTOMER)[0]["publicId"]
    sim.tree.rename(customer, name)
    run = await synced(owner, settings)
    assert run.state == SyncState.SUCCEEDED, run.error
    stored = await Company.get(instance_id=owner.instance_id, public_id=customer)
    assert (stored.name, stored.custom_identifier) == (name, "Ž" * 255)


@pytest.mark.parametrize(
    ("url", "username", "field"),
    [
        ("http://127.0.0.1:{port}/" + "a" * 2048, DEFAULT_USERNAME, "url"),
        ("http://127.0.0.1:{port}", "u" * 255, "username"),
    ],
)
async def test_connecting_with_oversized_input_is_refused_before_any_request(
    app: object, sim: Simulator, settings: Settings, url: str, username: str, field: str
) -> None:
    owner = await tenant()
    with pytest.raises(InvalidInput, match="at most") as caught:
        await upstream_connection.connect_msp_administrator(
            None,
            owner.instance_id or 0,
            url.format(port=sim.port),
            username,
            "pw",
            settings,
            make_client=FAST_CLIENT,
        )
    assert caught.value.field == field
    assert sim.calls.total() == 0


async def test_neither_run_errors_nor_logs_hold_the_password_or_tokens(
    app: object, sim: Simulator, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    password = "s3cr3t-Pa55word-of-the-ops-user"
    sim.add_user("ops@msp.example", password, sim.tree.account_id)
    owner = await tenant()
    await upstream_connection.connect_msp_administrator(
        None,
        owner.instance_id or 0,
        sim.url,
        "ops@msp.example",
        password,
        settings,
        make_client=FAST_CLIENT,
    )
    failures = [
        lambda: sim.faults.malformed_body(
            body=lambda b: {**b, "expiresIn": "never"}, endpoint="Token/Get"
        ),
        lambda: sim.faults.huge_body(HUGE, endpoint="Token/Get"),
        lambda: sim.faults.redirect(sim.url, endpoint="Token/Get"),
        lambda: sim.faults.malformed_body(body={"accessToken": 7}, endpoint="Token/Get"),
    ]
    errors = []
    for arm in failures:
        sim.faults.clear()
        arm()
        run = await synced(owner, dataclasses.replace(settings, upstream_max_body_bytes=65_536))
        assert run.state == SyncState.FAILED
        errors.append(run.error or "")
    said = caplog.text + "".join(errors)
    assert not [s for s in [password, *sim.state.issued_tokens] if s in said]
    assert sim.state.issued_tokens, "tokens were handed out, and none was said"


# -- one run at a time --------------------------------------------------------------------------


async def test_starting_a_sync_during_a_run_returns_the_running_one(
    app: object, sim: Simulator, settings: Settings
) -> None:
    owner = await connected_tenant(None, sim)
    instance_id = owner.instance_id or 0
    bus = InProcessEventBus()
    sim.faults.delay = 0.05
    start = {"settings": settings, "bus": bus, "make_client": FAST_CLIENT}
    first = await sync_runs.start_sync(instance_id, "manual", **start)
    second = await sync_runs.start_sync(instance_id, "manual", **start)
    assert second.id == first.id
    followed = await sync_runs.sync_now(
        instance_id, settings, bus=bus, make_client=FAST_CLIENT
    )  # joins it
    assert followed.id == first.id and followed.state == SyncState.SUCCEEDED
    assert await SyncRun.filter(instance_id=instance_id).count() == 1


async def test_a_run_left_active_by_a_dead_process_is_failed_by_the_next_start(
    app: object, sim: Simulator, settings: Settings
) -> None:
    owner = await connected_tenant(None, sim)
    instance_id = owner.instance_id or 0
    orphan = await SyncRun.create(
        instance_id=instance_id, trigger="manual", state=SyncState.RUNNING
    )
    assert await sync_runs.recover_interrupted(InProcessEventBus()) >= 1
    await orphan.refresh_from_db()
    assert orphan.state == SyncState.FAILED and "interrupted" in (orphan.error or "")


async def test_the_run_lock_excludes_other_holders_until_released() -> None:
    first = await locks.try_lock(locks.SYNC_RUN, 10**6)
    assert first is not None
    assert await locks.try_lock(locks.SYNC_RUN, 10**6) is None
    await first.release()
    again = await locks.try_lock(locks.SYNC_RUN, 10**6)
    assert again is not None
    await again.release()


# -- the schedule -------------------------------------------------------------------------------


async def test_the_scheduler_syncs_instances_whose_last_sync_is_older_than_the_interval(
    app: object, sim: Simulator, settings: Settings
) -> None:
    owner = await connected_tenant(None, sim)
    instance_id = owner.instance_id or 0
    later = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=settings.sync_interval + 60)
    assert instance_id not in await due_instances(settings.sync_interval)
    assert instance_id in await due_instances(settings.sync_interval, later)

    bus = InProcessEventBus()
    leader = SyncScheduler(settings, bus, election_key=7)
    other = SyncScheduler(settings, bus, election_key=7)
    try:
        started = await leader.run_once(later, among=[instance_id])
        assert await other.run_once(later, among=[instance_id]) == []
        assert leader.is_leader and not other.is_leader
    finally:
        await other.stop()
        await leader.stop()
    assert instance_id in started
    run = await SyncRun.filter(instance_id=instance_id).order_by("-id").first()
    assert run is not None and run.trigger == "schedule"


# -- drafts -------------------------------------------------------------------------------------


async def wanted_of(sim: Simulator) -> dict[str, Wanted]:
    async with MspAdministratorClient(sim.url, DEFAULT_USERNAME, DEFAULT_PASSWORD) as api:
        return wanted_companies(await api.fetch_tree(sim.tree.account_id))


def moved_and_added(upstream: UpstreamTree) -> tuple[str, str]:
    """An MSP moved under a Managed MSP upstream, and a customer added below it: their ids."""
    moving = upstream.of_type(MSP)[0]["publicId"]
    upstream.move(moving, upstream.of_type(MANAGED_MSP)[0]["publicId"])
    return moving, upstream.add(moving, "New", CUSTOMER)


async def drafted_ids(instance_id: int, wanted: dict[str, Wanted]) -> dict[str, int]:
    """The new companies' ids of an apply of `wanted` with a draft made just before it: those
    the draft reserved if the apply kept it, fresh ones if it planned again."""
    draft = await reconcile.draft(instance_id, wanted)
    assert draft is not None
    reserved = {row["public_id"]: row["id"] for row in draft.planned.plan.new_companies}
    await reconcile.apply_snapshot(instance_id, wanted, draft=draft)
    return reserved


async def test_an_apply_writes_its_draft_when_the_rows_it_was_planned_from_are_unchanged(
    app: object, sim: Simulator
) -> None:
    owner = await connected_tenant(None, sim)
    instance_id = owner.instance_id or 0
    wanted = await wanted_of(sim)
    drafted = await drafted_ids(instance_id, wanted)
    assert len(drafted) == len(wanted)
    assert {row["public_id"]: row["id"] for row in await companies_of(instance_id)} == drafted
    # a re-sync's draft, planned from the rows around a move and an addition, is kept too
    upstream = sim.tree
    _, added = moved_and_added(upstream)
    drafted = await drafted_ids(instance_id, await wanted_of(sim))
    assert list(drafted) == [added]
    assert (await Company.get(instance_id=instance_id, public_id=added)).id == drafted[added]
    await assert_mirrors(instance_id, upstream, ids_of(upstream))


async def test_an_apply_plans_again_when_a_row_its_draft_was_planned_from_changed(
    app: object, sim: Simulator, settings: Settings
) -> None:
    owner = await synced_tenant(sim, settings)
    instance_id = owner.instance_id or 0
    upstream = sim.tree
    moving, _ = moved_and_added(upstream)
    wanted = await wanted_of(sim)
    draft = await reconcile.draft(instance_id, wanted)
    assert draft is not None
    # after the draft, a user adds a group inside the subtree the move lays out again
    company = await Company.get(instance_id=instance_id, public_id=moving)
    group = await StaticGroup.get(company_id=company.id, kind=GroupKind.COMPANY)
    custom = await create_group(instance_id, "Laptops", GroupKind.CUSTOM, group)

    changes = await reconcile.apply_snapshot(instance_id, wanted, draft=draft)
    assert (changes.moved, changes.created) == (1, 1)
    await check_trees(instance_id)
    group = await StaticGroup.get(id=group.id)
    custom = await StaticGroup.get(id=custom.id)
    assert custom.path == f"{group.path}{custom.id}/" and custom.depth == group.depth + 1
    await assert_mirrors(instance_id, upstream, ids_of(upstream))
    new = await Company.get(instance_id=instance_id, name="New")
    assert new.id not in {row["id"] for row in draft.planned.plan.new_companies}


# -- statements ---------------------------------------------------------------------------------


async def apply_statements(instance_id: int, snapshot: Any) -> int:
    with db.count_statements() as counter:
        await reconcile.apply_snapshot(instance_id, wanted_companies(snapshot))
    return counter.count


async def test_the_apply_phase_issues_as_many_statements_for_1000_companies_as_for_100(
    app: object,
) -> None:
    counts = []
    for size in (100, 1_000):
        async with Simulator(UpstreamTree.generate(size, seed=size)) as sim:
            owner = await connected_tenant(None, sim)
            instance_id = owner.instance_id or 0
            async with MspAdministratorClient(sim.url, DEFAULT_USERNAME, DEFAULT_PASSWORD) as api:
                first = await apply_statements(
                    instance_id, await api.fetch_tree(sim.tree.account_id)
                )
                upstream = sim.tree
                customers = upstream.of_type(CUSTOMER)
                upstream.rename(customers[0]["publicId"], "Renamed")
                upstream.move(customers[1]["publicId"], upstream.of_type(MSP)[-1]["publicId"])
                upstream.remove(customers[2]["publicId"])
                upstream.suspend(customers[3]["publicId"])
                upstream.add(upstream.of_type(MSP)[0]["publicId"], "New", CUSTOMER)
                upstream.move(
                    upstream.of_type(MSP)[0]["publicId"],
                    upstream.of_type(MANAGED_MSP)[0]["publicId"],
                )
                second = await apply_statements(
                    instance_id, await api.fetch_tree(upstream.account_id)
                )
                third = await apply_statements(
                    instance_id, await api.fetch_tree(upstream.account_id)
                )
            await check_trees(instance_id)
            assert (await console_tree(instance_id))[0] == upstream.snapshot()
            counts.append((first, second, third))
    assert counts[0] == counts[1], counts
    assert counts[0][2] == 1, "a no-op apply only reads the companies' fingerprints"

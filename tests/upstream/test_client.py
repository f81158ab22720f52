"""The MSP Administrator client against the simulator, over real HTTP on a real port."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from server.upstream.client import (
    MspAdministratorClient,
    UpstreamAuthError,
    UpstreamCompanyRef,
    UpstreamNotFound,
    UpstreamProtocolError,
    UpstreamSnapshot,
    UpstreamTreeError,
    UpstreamUnavailable,
    UpstreamUnreachable,
)
from server.upstream.simulator import Simulator, UpstreamTree
from server.upstream.tree import CUSTOMER, DISTRIBUTOR, MSP, MSP_MANAGER, SUSPENDED

FAST = {
    "timeout": 2.0,
    "max_retries": 3,
    "max_backoff_total": 2.0,
    "backoff_base": 0.002,
    "backoff_max": 0.02,
}


def connect(
    sim: Simulator,
    username: str = "demo@msp.example",
    password: str = "demo",
    **overrides: Any,
) -> MspAdministratorClient:
    return MspAdministratorClient(sim.url, username, password, **{**FAST, **overrides})


def as_tree(snapshot: UpstreamSnapshot) -> dict[str, tuple[str, int, int, str]]:
    return {c.public_id: (c.name, c.type, c.status, c.parent_id) for c in snapshot.companies}


def parents_of_a_walk(tree: UpstreamTree) -> set[str]:
    return {c["publicId"] for c in tree.subtree(tree.account_id) if c["type"] != CUSTOMER}


def pages_of_a_walk(tree: UpstreamTree) -> int:
    return sum(max(1, -(-len(tree.children_of(p)) // 100)) for p in parents_of_a_walk(tree))


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    async with Simulator(UpstreamTree.generate(300, seed=21)) as sim:
        yield sim


async def fetch(sim: Simulator, **overrides: Any) -> UpstreamSnapshot:
    async with connect(sim, **overrides) as client:
        return await client.fetch_tree(sim.tree.account_id)


# -- logging in ---------------------------------------------------------------------------------


async def test_wrong_credentials_fail_with_an_auth_error_that_keeps_the_password_secret(
    sim: Simulator,
) -> None:
    async with connect(sim, password="hunter2-wrong") as client:
        with pytest.raises(UpstreamAuthError) as caught:
            await client.current_user()
    assert "demo@msp.example" in str(caught.value)
    assert "hunter2" not in str(caught.value)
    assert "hunter2" not in repr(client)
    assert sim.calls["Token/Get"] == 1, "a refusal is not retried"


async def test_the_current_user_names_its_company(sim: Simulator) -> None:
    tree = sim.tree
    async with connect(sim) as client:
        user = await client.current_user()
    assert user.email == "demo@msp.example"
    account = tree.get(tree.account_id)
    assert user.company == UpstreamCompanyRef(tree.account_id, account["name"], MSP_MANAGER)


async def test_a_user_on_the_distributor_reports_the_distributor_as_its_company(
    sim: Simulator,
) -> None:
    sim.add_user("distributor@msp.example", "pw", sim.tree.distributor_id)
    async with connect(sim, "distributor@msp.example", "pw") as client:
        user = await client.current_user()
    assert user.company.type == DISTRIBUTOR


async def test_an_expired_access_token_is_renewed_and_the_call_repeated(sim: Simulator) -> None:
    async with connect(sim) as client:
        await client.current_user()
        sim.faults.expire_tokens_after(1)
        company, _ = await client.company_detail(sim.tree.account_id)
    assert company.public_id == sim.tree.account_id
    assert client.stats.renewals == 1
    assert sim.calls["Company/Detail"] == 2, "refused once, then repeated"
    assert sim.calls["Token/Get"] == 1


async def test_a_refused_renewal_is_followed_by_a_new_login(sim: Simulator) -> None:
    async with connect(sim) as client:
        await client.current_user()
        sim.faults.expire_tokens_after(1)
        sim.faults.reject_renewals(1)
        await client.company_detail(sim.tree.account_id)
    assert sim.faults.fired["renewal_rejected"] == 1
    assert (client.stats.logins, sim.calls["Token/Get"]) == (2, 2)


async def test_a_token_is_renewed_before_its_lifetime_runs_out(sim: Simulator) -> None:
    sim.faults.token_lifetime = 1
    async with connect(sim) as client:
        await client.current_user()
        await asyncio.sleep(1.0)
        await client.current_user()
    assert client.stats.renewals == 1
    assert sim.calls["User/Current"] == 2, "no call was refused"


async def test_a_large_tree_is_read_with_tokens_expiring_every_three_calls() -> None:
    async with Simulator(UpstreamTree.generate(5_000, seed=8)) as sim:
        sim.faults.expire_tokens_after(3)
        async with connect(sim) as client:
            user = await client.current_user()
            snapshot = await client.fetch_tree(user.company.public_id)
    assert as_tree(snapshot) == sim.tree.snapshot()
    answered = sum(sim.children_asked.values()) + 2  # and User/Current, Company/Detail
    assert client.stats.renewals >= answered // 3 - 1
    assert client.stats.renewals == sim.calls["Token/Renew"]
    assert sim.calls["Token/Get"] == 1


# -- reading the tree ---------------------------------------------------------------------------


async def test_the_whole_tree_is_read_exactly_as_the_upstream_holds_it(sim: Simulator) -> None:
    tree = sim.tree
    async with connect(sim) as client:
        snapshot = await client.fetch_tree(tree.account_id)
        again = await client.fetch_tree(tree.account_id)
    assert as_tree(snapshot) == tree.snapshot()
    assert snapshot == again, "the order is deterministic"
    assert snapshot.root.public_id == tree.account_id
    assert [a.public_id for a in snapshot.ancestors] == [
        c["publicId"] for c in tree.ancestors_of(tree.account_id)
    ]
    placed = {snapshot.root.public_id}
    for company in snapshot.descendants:
        assert company.parent_id in placed, "parents come before their children"
        placed.add(company.public_id)


async def test_no_customer_has_its_children_asked(sim: Simulator) -> None:
    await fetch(sim)
    assert set(sim.children_asked) == parents_of_a_walk(sim.tree)
    assert set(sim.children_asked.values()) == {1}


async def test_children_are_read_page_by_page_up_to_the_total_count(sim: Simulator) -> None:
    tree = sim.tree
    async with connect(sim, page_size=3) as client:
        children = await client.children(tree.account_id)
    assert [c.public_id for c in children] == [
        c["publicId"] for c in tree.children_of(tree.account_id)
    ]
    assert sim.children_asked[tree.account_id] == -(-len(children) // 3)


async def test_a_walk_runs_in_parallel_so_it_is_bounded_by_the_upstream_latency() -> None:
    async with Simulator(UpstreamTree.generate(2_000, seed=9)) as sim:
        sim.faults.delay = 0.03
        async with connect(sim) as client:
            await client.fetch_tree(sim.tree.account_id)
    assert client.stats.busy_seconds < client.stats.wait_seconds / 3


async def test_progress_is_reported_and_ends_at_the_total(sim: Simulator) -> None:
    seen: list[int] = []

    async def on_progress(count: int) -> None:
        seen.append(count)

    async with connect(sim, progress_interval=0) as client:
        snapshot = await client.fetch_tree(sim.tree.account_id, on_progress=on_progress)
    assert len(seen) > 2
    assert seen == sorted(seen)
    assert seen[-1] == len(snapshot.companies) == 300


async def test_changes_upstream_show_in_the_next_fetch(sim: Simulator) -> None:
    tree = sim.tree
    before = as_tree(await fetch(sim))
    first_msp, second_msp, third_msp = (c["publicId"] for c in tree.of_type(MSP)[:3])
    moved = tree.children_of(first_msp)[0]["publicId"]
    renamed = tree.children_of(second_msp)[0]["publicId"]
    tree.move(moved, second_msp)
    tree.rename(renamed, 'Ünïcode, "quoted" & renamed')
    tree.suspend(renamed)
    removed = {c["publicId"] for c in tree.subtree(third_msp)}
    tree.remove(third_msp)
    added = tree.add(first_msp, "Brand New Customer", CUSTOMER)

    after = as_tree(await fetch(sim))
    assert after == tree.snapshot()
    assert after[moved][3] == second_msp
    assert after[renamed][:3] == ('Ünïcode, "quoted" & renamed', CUSTOMER, SUSPENDED)
    assert not removed & after.keys()
    assert added in after

    tree.readd(third_msp)
    tree.remove(added)
    assert removed <= as_tree(await fetch(sim)).keys()
    assert len(before) == len(tree.snapshot())


async def test_an_unknown_company_fails_as_not_found(sim: Simulator) -> None:
    unknown = "00000000-0000-4000-8000-000000000000"
    async with connect(sim) as client:
        with pytest.raises(UpstreamNotFound, match=unknown):
            await client.fetch_tree(unknown)
        with pytest.raises(UpstreamNotFound, match=unknown):
            await client.children(unknown)


# -- an upstream in trouble ---------------------------------------------------------------------


async def test_maintenance_is_waited_out_then_the_call_succeeds(sim: Simulator) -> None:
    sim.faults.maintenance(3)
    async with connect(sim) as client:
        await client.current_user()
    assert client.stats.retries == 3
    assert sim.faults.fired["maintenance"] == 3


async def test_rate_limiting_is_waited_out_honouring_retry_after(sim: Simulator) -> None:
    sim.faults.rate_limit(2, retry_after=0.2, endpoint="User/Current")
    async with connect(sim) as client:
        started = time.monotonic()
        await client.current_user()
    assert time.monotonic() - started >= 0.4
    assert sim.calls["User/Current"] == 3


async def test_a_retry_after_of_zero_is_retried_at_once(sim: Simulator) -> None:
    sim.faults.rate_limit(5, retry_after=0)
    async with connect(sim) as client:
        await client.current_user()
    assert client.stats.retries == 5
    assert client.stats.backoff_seconds == 0


async def test_endless_maintenance_fails_as_unavailable_within_the_backoff_budget(
    sim: Simulator,
) -> None:
    sim.faults.maintenance(100_000)
    async with connect(sim, max_backoff_total=0.3) as client:
        started = time.monotonic()
        with pytest.raises(UpstreamUnavailable, match="503"):
            await client.current_user()
    assert time.monotonic() - started < 1.0


async def test_a_retry_after_beyond_the_budget_fails_at_once(sim: Simulator) -> None:
    sim.faults.rate_limit(1, retry_after=60)
    async with connect(sim, max_backoff_total=5) as client:
        started = time.monotonic()
        with pytest.raises(UpstreamUnavailable, match="429"):
            await client.current_user()
    assert time.monotonic() - started < 1.0
    assert sim.calls.total() == 1


async def test_server_errors_are_retried_then_the_call_succeeds(sim: Simulator) -> None:
    sim.faults.server_error(2, status=502)
    async with connect(sim) as client:
        await client.current_user()
    assert client.stats.retries == 2


async def test_server_errors_beyond_the_retries_fail_as_unavailable(sim: Simulator) -> None:
    sim.faults.server_error(100, endpoint="User/Current")
    async with connect(sim, max_retries=3) as client:
        with pytest.raises(UpstreamUnavailable, match="500"):
            await client.current_user()
    assert sim.calls["User/Current"] == 4, "one call and three retries"


async def test_a_dropped_connection_is_retried(sim: Simulator) -> None:
    sim.faults.drop_connection(1, endpoint="Company/Detail")
    async with connect(sim) as client:
        company, _ = await client.company_detail(sim.tree.account_id)
    assert company.public_id == sim.tree.account_id
    assert sim.faults.fired["drop"] == 1
    assert sim.calls["Company/Detail"] == 2


async def test_a_slow_answer_times_out_and_is_retried(sim: Simulator) -> None:
    sim.faults.slow(0.5, endpoint="User/Current")
    async with connect(sim, timeout=0.1) as client:
        await client.current_user()
    assert client.stats.retries == 1
    assert sim.calls["User/Current"] == 2


@pytest.mark.parametrize(
    ("arm", "error", "problem", "unanswered"),
    [
        (lambda f: f.malformed_body(end_of_walk=True), UpstreamProtocolError, "not JSON", 0),
        (lambda f: f.maintenance(1_000, end_of_walk=True), UpstreamUnavailable, "503", 1),
        (
            lambda f: f.drop_connection(1_000, end_of_walk=True),
            UpstreamUnreachable,
            "could not reach",
            1,
        ),
    ],
    ids=["malformed", "maintenance", "dropped"],
)
async def test_a_failure_on_the_very_last_page_of_the_walk_fails_the_fetch(
    sim: Simulator,
    arm: Callable[[Any], Any],
    error: type[Exception],
    problem: str,
    unanswered: int,
) -> None:
    arm(sim.faults)
    with pytest.raises(error, match=problem) as caught:
        await fetch(sim, max_backoff_total=0.2)
    assert "Company/Children" in str(caught.value)
    # Every other page was answered: the fault hit the very last one.
    assert sim.children_asked.total() == pages_of_a_walk(sim.tree) - unanswered
    assert sim.faults.fired.total() >= 1


def first_company(change: Callable[[dict[str, Any]], None]) -> Callable[[Any], Any]:
    def corrupt(body: Any) -> Any:
        change(body["companies"][0])
        return body

    return corrupt


@pytest.mark.parametrize(
    ("endpoint", "corrupt", "problem"),
    [
        ("Company/Children", lambda b: {**b, "totalCount": "17"}, "totalCount must be an integer"),
        ("Company/Children", lambda b: {"companies": b["companies"]}, "totalCount is missing"),
        ("Company/Children", lambda b: {**b, "companies": {}}, "companies must be an array"),
        ("Company/Children", lambda b: [b], "the body must be an object, got an array"),
        (
            "Company/Children",
            first_company(lambda c: c.update(name=None)),
            "companies[0].name must be a string, got null",
        ),
        (
            "Company/Children",
            first_company(lambda c: c.update(type=4242)),
            "companies[0].type has an unknown value 4242",
        ),
        (
            "Company/Children",
            first_company(lambda c: c.update(status=True)),
            "companies[0].status must be an integer, got a boolean",
        ),
        (
            "Company/Children",
            first_company(lambda c: c.update(email=7)),
            "companies[0].email must be a string or null",
        ),
        (
            "Company/Children",
            first_company(lambda c: c.pop("publicId")),
            "companies[0].publicId is missing",
        ),
        ("Company/Detail", lambda b: {**b, "ancestors": None}, "ancestors must be an array"),
        (
            "Company/Detail",
            lambda b: {**b, "ancestors": [{"publicId": "x", "name": "y"}]},
            "ancestors[0].type is missing",
        ),
        ("User/Current", lambda b: {**b, "company": "acme"}, "company must be an object"),
        ("Token/Get", lambda b: {**b, "expiresIn": "soon"}, "expiresIn must be an integer"),
        ("Token/Get", lambda b: {**b, "accessToken": None}, "accessToken must be a string"),
    ],
)
async def test_a_body_of_the_wrong_shape_fails_naming_the_endpoint_and_field(
    sim: Simulator, endpoint: str, corrupt: Callable[[Any], Any], problem: str
) -> None:
    if endpoint == "Company/Children":
        sim.faults.malformed_body(body=corrupt, last_page_of=sim.tree.account_id)
    else:
        sim.faults.malformed_body(body=corrupt, endpoint=endpoint)
    async with connect(sim) as client:
        with pytest.raises(UpstreamProtocolError) as caught:
            user = await client.current_user()
            await client.fetch_tree(user.company.public_id)
    message = str(caught.value)
    assert endpoint in message
    assert problem in message
    assert sim.faults.fired["malformed"] == 1, "a wrong body is not retried"


async def test_a_total_count_that_changes_between_pages_fails(sim: Simulator) -> None:
    sim.faults.malformed_body(
        body=lambda b: {**b, "totalCount": b["totalCount"] + 1},
        endpoint="Company/Children",
        after=1,
    )
    with pytest.raises(UpstreamTreeError, match="changed while paging"):
        await fetch(sim, page_size=5)


async def test_a_company_listed_under_two_parents_fails_naming_it(sim: Simulator) -> None:
    tree = sim.tree
    first_msp, second_msp = (c["publicId"] for c in tree.of_type(MSP)[:2])
    twice = tree.children_of(first_msp)[0]["publicId"]
    sim.faults.duplicate_company(twice, under=second_msp)
    with pytest.raises(UpstreamTreeError, match=f"{twice} twice") as caught:
        await fetch(sim)
    assert first_msp in str(caught.value) and second_msp in str(caught.value)


async def test_a_company_listed_twice_under_its_parent_fails_naming_it(sim: Simulator) -> None:
    msp = sim.tree.of_type(MSP)[0]["publicId"]
    twice = sim.tree.children_of(msp)[0]["publicId"]
    sim.faults.duplicate_company(twice)
    with pytest.raises(UpstreamTreeError, match=f"{twice} is listed twice under {msp}"):
        await fetch(sim)


@pytest.mark.parametrize("ancestor", ["account", "distributor", "msp"])
async def test_a_company_listing_an_ancestor_as_its_child_fails_as_a_cycle(
    sim: Simulator, ancestor: str
) -> None:
    tree = sim.tree
    msp = tree.of_type(MSP)[0]["publicId"]
    below = tree.add(msp, "Nested MSP", MSP)
    above = {"account": tree.account_id, "distributor": tree.distributor_id, "msp": msp}[ancestor]
    sim.faults.cycle(below, above)
    with pytest.raises(UpstreamTreeError, match=f"cycle: {above}"):
        await fetch(sim)


async def test_a_child_naming_another_parent_fails(sim: Simulator) -> None:
    tree = sim.tree
    first_msp, second_msp = (c["publicId"] for c in tree.of_type(MSP)[:2])
    stray = tree.children_of(first_msp)[0]["publicId"]
    sim.faults.wrong_parent(stray, second_msp)
    with pytest.raises(UpstreamTreeError, match=f"{stray} is listed under {first_msp}"):
        await fetch(sim)


# -- what the client keeps to itself, and what it reports -----------------------------------------


async def test_neither_errors_nor_logs_reveal_the_password_or_tokens(
    sim: Simulator, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    password = "s3cr3t-Pa55word"
    sim.add_user("ops@msp.example", password, sim.tree.account_id)
    faults = sim.faults
    faults.expire_tokens_after(2)
    faults.reject_renewals(1)
    faults.maintenance(2)
    faults.drop_connection(1, after=4)
    faults.server_error(1, after=6)
    faults.malformed_body(body=lambda b: {**b, "expiresIn": None}, endpoint="Token/Renew", after=3)
    async with connect(sim, "ops@msp.example", password) as client:
        with pytest.raises(UpstreamProtocolError) as caught:
            await client.fetch_tree(sim.tree.account_id)
    assert client.stats.retries >= 3 and client.stats.renewals >= 2
    secrets = [password, *sim.state.issued_tokens]
    said = caplog.text + str(caught.value) + repr(client) + repr(client.stats)
    assert not [secret for secret in secrets if secret in said]


async def test_statistics_count_calls_retries_and_time_waiting(sim: Simulator) -> None:
    sim.faults.server_error(2)
    sim.faults.delay = 0.002
    async with connect(sim) as client:
        await client.fetch_tree(sim.tree.account_id)
    stats = client.stats
    assert stats.calls_by_endpoint == sim.calls
    assert stats.calls == sim.calls.total()
    assert (stats.retries, stats.logins) == (2, 1)
    assert stats.calls * 0.002 <= stats.wait_seconds
    assert 0 < stats.busy_seconds <= stats.wait_seconds

"""The MSP Administrator client against the simulator, over real HTTP on a real port."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable
from typing import Any

import pytest

from server.upstream.client import (
    MspAdministratorClient,
    UpstreamAuthError,
    UpstreamCompanyRef,
    UpstreamError,
    UpstreamLimitExceeded,
    UpstreamNotFound,
    UpstreamProtocolError,
    UpstreamSnapshot,
    UpstreamTreeError,
    UpstreamUnavailable,
    UpstreamUnreachable,
)
from server.upstream.codes import CUSTOMER, DISTRIBUTOR, MSP, MSP_MANAGER, SUSPENDED
from server.upstream.simulator import Simulator, UpstreamTree
from tests.sync_support import FAST as SYNC_FAST
from tests.sync_support import closed_port, port_that

FAST = {**SYNC_FAST, "max_retries": 3, "max_backoff_total": 2.0}


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


pytestmark = pytest.mark.upstream_tree(300, 21)


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


# -- an upstream that is not one, or a hostile one ------------------------------------------------


async def login_error(port: int) -> Exception:
    url = f"http://127.0.0.1:{port}"
    async with MspAdministratorClient(url, "u", "p", **{**FAST, "timeout": 0.2}) as client:
        with pytest.raises(UpstreamError) as caught:
            await client.current_user()
    return caught.value


async def test_a_closed_port_and_a_port_that_never_answers_fail_with_the_same_message() -> None:
    closed = await login_error(closed_port())
    async with port_that(None) as port:
        silent = await login_error(port)
    assert type(closed) is type(silent) is UpstreamUnreachable
    assert (
        str(closed)
        == str(silent)
        == ("could not reach the MSP Administrator at 127.0.0.1 (Token/Get, 4 attempts)")
    )


@pytest.mark.parametrize(
    "reply",
    [b"SSH-2.0-OpenSSH_9.6 secret-banner\r\n", b"-ERR secret-banner\r\n", b"\x16\x03\x01\x00"],
    ids=["ssh", "redis", "tls"],
)
async def test_a_port_that_does_not_speak_http_fails_as_a_protocol_error_quoting_nothing(
    reply: bytes,
) -> None:
    async with port_that(reply) as port:
        error = await login_error(port)
    assert type(error) is UpstreamProtocolError
    assert str(error) == "MSP Administrator Token/Get answered something that is not HTTP"


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
@pytest.mark.parametrize("endpoint", ["Token/Get", "Company/Children"])
async def test_a_redirect_is_an_answer_that_is_never_followed(
    sim: Simulator, status: int, endpoint: str
) -> None:
    async with Simulator(UpstreamTree.generate(10, seed=3)) as elsewhere:
        sim.faults.redirect(elsewhere.url, status=status, endpoint=endpoint)
        with pytest.raises(UpstreamProtocolError) as caught:
            await fetch(sim)
        assert elsewhere.calls.total() == 0, "nothing went where the redirect pointed"
    assert str(caught.value) == (
        f"MSP Administrator {endpoint} answered a redirect ({status}), which the API never "
        "does; it was not followed"
    )


@pytest.mark.parametrize(
    ("status", "said"),
    [
        (400, "rejected the request as invalid"),
        (403, ": access denied"),
        (404, ": company {} not found"),
    ],
)
async def test_what_an_upstream_writes_in_an_error_answer_is_never_quoted(
    sim: Simulator, status: int, said: str
) -> None:
    sim.faults.server_error(status=status, endpoint="Company/Children")  # "internal error"
    async with connect(sim) as client:
        with pytest.raises(UpstreamError) as caught:
            await client.children(sim.tree.account_id)
    expected = f"MSP Administrator Company/Children{' ' if status == 400 else ''}{said}"
    assert str(caught.value) == expected.format(sim.tree.account_id)


HUGE = 256 * 2**20


@pytest.mark.parametrize("endpoint", ["Token/Get", "Company/Children"])
async def test_a_huge_answer_is_read_no_further_than_the_limit(
    sim: Simulator, endpoint: str
) -> None:
    sim.faults.huge_body(HUGE, endpoint=endpoint)
    with pytest.raises(UpstreamLimitExceeded) as caught:
        await fetch(sim, max_body_bytes=2**20)
    assert caught.value.limit == "max_body_bytes"
    assert str(caught.value) == (
        f"MSP Administrator {endpoint} answered more than 1048576 bytes, the limit of an answer"
    )
    # The client hung up: only what the kernel buffers took got out of the simulator.
    assert sim.state.bytes_streamed < HUGE // 4
    assert sim.faults.fired["huge"] == 1, "an answer over the limit is not asked again"


async def test_an_answer_within_the_limit_is_read_whole(sim: Simulator) -> None:
    sim.faults.huge_body(2**20, endpoint="Company/Children")
    with pytest.raises(UpstreamProtocolError, match="companies is missing"):
        await fetch(sim, max_body_bytes=2**20)


async def test_an_endless_total_count_fails_at_its_first_page(sim: Simulator) -> None:
    msp = sim.tree.of_type(MSP)[0]["publicId"]
    sim.faults.endless_children(msp)
    with pytest.raises(UpstreamLimitExceeded) as caught:
        await fetch(sim, max_companies=100_000)
    assert caught.value.limit == "max_companies"
    assert str(caught.value).startswith(
        "MSP Administrator company tree holds more than 100000 companies, the limit of a sync "
        f"({msp} counts 1000000000000 children, with room for "
    )
    assert sim.children_asked[msp] == 1


async def test_a_tree_larger_than_the_limit_fails_even_when_each_page_fits() -> None:
    tree = UpstreamTree.generate(4, seed=1)
    msps = [tree.add(tree.account_id, f"MSP {n}", MSP) for n in range(4)]
    for msp in msps:
        for n in range(10):
            tree.add(msp, f"Customer {n}", CUSTOMER)
    async with Simulator(tree) as sim:
        allowed = len(tree.snapshot()) - 5
        sim.faults.delay = 0.05  # the four MSPs are asked at once, each with room for ten
        with pytest.raises(UpstreamLimitExceeded, match=f"more than {allowed} companies"):
            await fetch(sim, max_companies=allowed)
        assert {sim.children_asked[msp] for msp in msps} == {1}
        assert await fetch(sim, max_companies=allowed + 5)


@pytest.mark.parametrize("beyond", [0, 1, 50])
async def test_a_tree_deeper_than_the_limit_fails_as_soon_as_it_shows(
    sim: Simulator, beyond: int
) -> None:
    tree = sim.tree
    account_level = len(tree.ancestors_of(tree.account_id)) + 1
    sim.faults.deep_chain(tree.account_id, 16 - account_level + beyond)
    if not beyond:
        snapshot = await fetch(sim, max_depth=16)
        assert len(snapshot.companies) == 300 + 16 - account_level
        return
    with pytest.raises(UpstreamLimitExceeded) as caught:
        await fetch(sim, max_depth=16)
    assert caught.value.limit == "max_depth"
    pattern = (
        r"MSP Administrator company tree is deeper than the limit of 16 levels \(counting the "
        rf"{account_level - 1} companies above the account\): company [0-9a-f-]+ is on level 17"
    )
    assert re.fullmatch(pattern, str(caught.value)), str(caught.value)
    assert sim.children_asked.total() < pages_of_a_walk(tree) + 16, "the chain was not walked"


async def test_ancestors_alone_deeper_than_the_limit_fail_before_any_child_is_asked(
    sim: Simulator,
) -> None:
    with pytest.raises(UpstreamLimitExceeded, match="is on level"):
        await fetch(sim, max_depth=len(sim.tree.ancestors_of(sim.tree.account_id)))
    assert sim.children_asked.total() == 0


async def test_calls_past_the_time_limit_fail_naming_it(sim: Simulator) -> None:
    sim.faults.slow(1.0, endpoint="Company/Children")
    with pytest.raises(UpstreamLimitExceeded) as caught:
        await fetch(sim, max_seconds=0.2)
    assert caught.value.limit == "max_seconds"
    assert str(caught.value) == (
        "MSP Administrator calls took longer than the limit of 0.2 s (at Company/Children)"
    )


async def test_a_backoff_that_would_end_past_the_time_limit_is_not_waited(
    sim: Simulator,
) -> None:
    sim.faults.rate_limit(1, retry_after=30, endpoint="User/Current")
    async with connect(sim, max_backoff_total=60, max_seconds=5) as client:
        with pytest.raises(UpstreamLimitExceeded, match="at User/Current"):
            await client.current_user()
    assert client.stats.backoff_seconds == 0
    assert sim.calls["User/Current"] == 1

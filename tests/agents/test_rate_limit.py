"""Enrolment limits against a real uvicorn: per installer token and per client address (the
hardware id is the caller's choice, so limiting on it limits nothing), 429 with Retry-After and
nothing written; X-Forwarded-For counts only from a trusted proxy."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from server.agents import TokenBuckets
from server.agents.routes import address_key
from server.domain.installers import create_installer
from server.models.db import fetch_value

from .conftest import AgentServer, Tree, bearer, computer_rows, enrolment_body, start_agent_server

BURST = 3


@pytest.fixture
async def limited(database: None, request: pytest.FixtureRequest) -> AsyncIterator[AgentServer]:
    """A server allowing BURST enrolments per installer and per address, refilling at one a
    minute; `trusted` (the parameter) makes 127.0.0.1 a trusted proxy."""
    proxies = ("127.0.0.1",) if getattr(request, "param", False) else ()
    server = await start_agent_server(
        enrolment_burst=BURST, enrolments_per_minute=1, trusted_proxies=proxies
    )
    yield server
    await server.stop()


async def try_enrol(
    http: aiohttp.ClientSession, server: AgentServer, token: str, hardware_id: str, via: str | None
) -> tuple[int, dict[str, Any], aiohttp.ClientResponse]:
    headers = bearer(token)
    if via is not None:
        headers["X-Forwarded-For"] = via
    async with http.post(
        f"{server.url}/enroll", json=enrolment_body(hardware_id), headers=headers
    ) as response:
        return response.status, await response.json(), response


async def installers(tree: Tree, count: int) -> list[str]:
    return [
        (await create_installer(tree.scope, company_id=tree.customer.id))[1] for _ in range(count)
    ]


async def enrolments(tree: Tree) -> int:
    return int(
        await fetch_value(
            "SELECT COALESCE(SUM(enrolments), 0) FROM installer WHERE instance_id = ?",
            [tree.instance.id],
        )
    )


@pytest.mark.parametrize("limited", [True], indirect=True)
async def test_enrolments_are_limited_per_installer_token_whatever_the_address(
    limited: AgentServer, http: aiohttp.ClientSession, tree: Tree
) -> None:
    token, other = await installers(tree, 2)
    for i in range(BURST):  # new machines, each behind its own address
        status, _, _ = await try_enrol(http, limited, token, f"hw-{i}", f"198.51.100.{i}")
        assert status == 201
    rows, counted = await computer_rows(tree.instance.id), await enrolments(tree)

    status, answer, response = await try_enrol(http, limited, token, "hw-new", "198.51.100.99")
    assert status == 429 and answer["code"] == "RATE_LIMITED" and "installer" in answer["error"]
    assert 1 <= int(response.headers["Retry-After"]) <= 60
    assert await computer_rows(tree.instance.id) == rows and await enrolments(tree) == counted
    status, _, _ = await try_enrol(http, limited, other, "hw-new", "198.51.100.98")
    assert status == 201  # another installer has its own allowance


@pytest.mark.parametrize("limited", [True], indirect=True)
async def test_enrolments_are_limited_per_client_address_whatever_the_installer(
    limited: AgentServer, http: aiohttp.ClientSession, tree: Tree
) -> None:
    tokens = await installers(tree, BURST + 1)
    for i, token in enumerate(tokens[:BURST]):
        assert (await try_enrol(http, limited, token, f"hw-{i}", "203.0.113.7"))[0] == 201
    rows = await computer_rows(tree.instance.id)
    status, answer, _ = await try_enrol(http, limited, tokens[BURST], "hw-x", "203.0.113.7")
    assert status == 429 and "address" in answer["error"]
    assert await computer_rows(tree.instance.id) == rows
    assert (await try_enrol(http, limited, tokens[BURST], "hw-x", "203.0.113.8"))[0] == 201


async def test_x_forwarded_for_from_an_untrusted_peer_does_not_move_the_address(
    limited: AgentServer, http: aiohttp.ClientSession, tree: Tree
) -> None:
    tokens = await installers(tree, BURST + 1)
    for i, token in enumerate(tokens[:BURST]):
        status, _, _ = await try_enrol(http, limited, token, f"hw-{i}", f"192.0.2.{i}")
        assert status == 201
    status, _, _ = await try_enrol(http, limited, tokens[BURST], "hw-x", "192.0.2.200")
    assert status == 429  # every request came from 127.0.0.1, whatever the header said


async def test_the_hardware_id_does_not_buy_a_fresh_allowance(
    limited: AgentServer, http: aiohttp.ClientSession, tree: Tree
) -> None:
    (token,) = await installers(tree, 1)
    statuses = [
        (await try_enrol(http, limited, token, f"hw-{i}", None))[0] for i in range(BURST + 2)
    ]
    assert statuses == [201] * BURST + [429, 429]


def test_token_buckets_hold_a_bounded_number_of_keys() -> None:
    now = [0.0]
    buckets = TokenBuckets(1, burst=5, clock=lambda: now[0], max_keys=100)
    for i in range(1000):  # addresses an attacker may cycle through
        buckets.acquire(f"k{i}")
    assert len(buckets) <= 100
    assert TokenBuckets(0.5, burst=2).rate == pytest.approx(1 / 120)  # fractions of one a minute


@pytest.mark.parametrize(
    ("address", "key"),
    [
        ("198.51.100.7", "address:198.51.100.7"),
        ("2001:db8:1:2:3:4:5:6", "address:2001:db8:1:2::/64"),
        ("2001:db8:1:2:ffff::1", "address:2001:db8:1:2::/64"),  # one site, one allowance
        ("::ffff:198.51.100.7", "address:198.51.100.7"),
        (None, "address:"),
        ("not an address", "address:not an address"),
    ],
)
def test_addresses_are_limited_per_host_or_ipv6_site(address: str | None, key: str) -> None:
    assert address_key(address) == key

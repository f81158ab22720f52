"""Agent tokens die at once everywhere: a token superseded by a re-enrolment or belonging to a
removed computer is refused by every runtime sharing the event bus (the workers of a console),
even by one that had it cached, or was reading it from the database at that moment."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp

from server.agents import AgentTokenCache
from server.domain import agents as agent_domain
from server.domain import global_ids
from server.domain.secrets import token_hash
from server.events import InProcessEventBus
from server.models import Computer

from .conftest import SETTINGS, AgentServer, Tree, bearer, enrol, start_agent_server


async def checkin(http: aiohttp.ClientSession, server: AgentServer, token: str) -> int:
    async with http.post(f"{server.url}/checkin", json={}, headers=bearer(token)) as response:
        return response.status


async def two_workers() -> tuple[AgentServer, AgentServer]:
    """Two agent servers on one bus; check-ins flushed only at the end, so that a token is not
    found dead by a flush: only the bus can tell."""
    bus = InProcessEventBus()
    first = await start_agent_server(bus=bus, checkin_flush_interval=60.0)
    second = await start_agent_server(bus=bus, checkin_flush_interval=60.0)
    return first, second


async def test_a_token_superseded_on_one_worker_is_refused_at_once_on_another(
    database: None, http: aiohttp.ClientSession, tree: Tree, installer: Any
) -> None:
    a, b = await two_workers()
    try:
        first = await enrol(http, a, installer[1], "hw-moves")
        assert await checkin(http, b, first["agentToken"]) == 200  # b caches it
        again = await enrol(http, a, installer[1], "hw-moves", agentToken=first["agentToken"])
        assert await checkin(http, b, first["agentToken"]) == 401
        assert await checkin(http, a, first["agentToken"]) == 401
        assert await checkin(http, b, again["agentToken"]) == 200
    finally:
        await a.stop()
        await b.stop()


async def test_a_removed_computers_token_is_refused_at_once_and_its_checkins_dropped(
    database: None, http: aiohttp.ClientSession, tree: Tree, installer: Any
) -> None:
    a, b = await two_workers()
    try:
        body = await enrol(http, a, installer[1], "hw-gone")
        key = global_ids.decode(body["computerId"])[1]
        assert await checkin(http, b, body["agentToken"]) == 200
        assert len(b.runtime.buffer) == 1
        # what removeComputer does once its transaction committed
        await Computer.filter(id=key).delete()
        await agent_domain.publish_revoked_tokens(
            a.bus, tree.instance.id, [token_hash(body["agentToken"])]
        )
        assert len(b.runtime.buffer) == 0  # the buffered check-in is dropped
        assert await checkin(http, b, body["agentToken"]) == 401
        assert await checkin(http, a, body["agentToken"]) == 401
        assert (await b.runtime.buffer.flush()).rows == {}
    finally:
        await a.stop()
        await b.stop()


async def test_a_token_revoked_while_its_load_is_in_flight_is_refused(
    database: None, tree: Tree, installer: Any
) -> None:
    enrolment = await agent_domain.enroll(
        installer[1], {"hardwareId": "hw-inflight", "hostname": "a", "os": "", "agentVersion": ""},
        settings=SETTINGS,
    )  # fmt: skip
    dead = token_hash(enrolment.agent_token)
    cache = AgentTokenCache()
    pending = asyncio.ensure_future(cache.get(dead))
    await asyncio.sleep(0)  # the lookup is under way: it may read the row before it dies
    cache.revoke([dead])
    assert await pending is None
    assert cache.peek(dead) is None and await cache.get(dead) is None
    alive = AgentTokenCache()
    assert (await alive.get(dead)) is not None  # the control: the row was readable

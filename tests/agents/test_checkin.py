"""`POST /agent/v1/checkin` against a real uvicorn: authentication from memory, batched writes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import orjson
import pytest

from server import events
from server.agents import CheckinBuffer, TokenBuckets
from server.domain import agents as agent_domain
from server.domain import global_ids
from server.domain.secrets import new_token, token_hash
from server.models import Computer
from server.models.db import count_statements, fetch_value
from server.models.enums import ConnectionStatus, ProtectionStatus

from .conftest import (
    SETTINGS,
    AgentServer,
    Tree,
    bearer,
    computer_rows,
    enrol,
    start_agent_server,
    utcnow,
    wait_until,
)


async def checkin(
    http: aiohttp.ClientSession, server: AgentServer, token: str | None, body: Any = None, **kw: Any
) -> tuple[int, Any, aiohttp.ClientResponse]:
    headers = kw.pop("headers", {})
    if token is not None:
        headers.update(bearer(token))
    if body is not None:
        kw["data"] = body if isinstance(body, bytes) else orjson.dumps(body)
    async with http.post(f"{server.url}/checkin", headers=headers, **kw) as response:
        raw = await response.read()
        return response.status, (orjson.loads(raw) if raw else None), response


@pytest.fixture
async def agent(
    agent_server: AgentServer, http: aiohttp.ClientSession, installer: Any
) -> tuple[int, str]:
    """An enrolled agent: (computer id, agent token)."""
    body = await enrol(http, agent_server, installer[1], "hw-agent", hostname="PC-1", os="Win 11")
    return global_ids.decode(body["computerId"])[1], body["agentToken"]


async def last_connected(computer_id: int) -> datetime | None:
    return (await Computer.get(id=computer_id)).last_connected_at


async def test_a_checkin_answers_the_interval_and_is_stored_within_the_flush_interval(
    agent_server: AgentServer, http: aiohttp.ClientSession, agent: tuple[int, str]
) -> None:
    computer_id, token = agent
    enrolled_at = await last_connected(computer_id)
    assert enrolled_at is not None
    await asyncio.sleep(0.01)
    sent = utcnow()
    status, body, response = await checkin(http, agent_server, token, {})
    assert status == 200 and body == {"nextCheckInSeconds": agent_server.settings.checkin_interval}
    assert response.content_type == "application/json"

    async def stored() -> bool:
        value = await last_connected(computer_id)
        return value is not None and value >= sent

    took = await wait_until(stored)
    assert took <= agent_server.settings.checkin_flush_interval + 0.8  # slack for a busy machine


async def test_an_empty_body_is_a_plain_checkin(
    agent_server: AgentServer, http: aiohttp.ClientSession, agent: tuple[int, str]
) -> None:
    status, _, _ = await checkin(http, agent_server, agent[1], b"")
    assert status == 200


async def test_reported_values_are_stored_when_they_change(
    agent_server: AgentServer, http: aiohttp.ClientSession, agent: tuple[int, str]
) -> None:
    computer_id, token = agent
    report = {"hostname": "PC-2", "os": "Win 12", "agentVersion": "12.1",
              "protectionStatus": "WARNING"}  # fmt: skip
    status, _, _ = await checkin(http, agent_server, token, report)
    assert status == 200
    await agent_server.runtime.buffer.flush()
    computer = await Computer.get(id=computer_id)
    assert (computer.name, computer.sort_name, computer.os, computer.agent_version) == (
        "PC-2", "pc-2", "Win 12", "12.1",
    )  # fmt: skip
    assert computer.protection_status == ProtectionStatus.WARNING

    # omitted values are kept; a later report wins over an earlier one of the same round
    await checkin(http, agent_server, token, {"protectionStatus": "CRITICAL"})
    await checkin(http, agent_server, token, {"protectionStatus": "OK"})
    await agent_server.runtime.buffer.flush()
    computer = await Computer.get(id=computer_id)
    assert (computer.name, computer.protection_status) == ("PC-2", ProtectionStatus.OK)


async def test_unchanged_reports_write_only_the_time(
    database: None, http: aiohttp.ClientSession, tree: Tree, installer: Any
) -> None:
    # a server that does not flush on its own: the record read below stays in the buffer
    server = await start_agent_server(checkin_flush_interval=60.0)
    try:
        token = (await enrol(http, server, installer[1], "hw-unchanged", hostname="PC-1",
                             os="Win 11"))["agentToken"]  # fmt: skip
        await checkin(http, server, token, {"hostname": "PC-1", "os": "Win 11"})
        record = server.runtime.buffer._records[token_hash(token)]
        assert record.changes is None
        await checkin(http, server, token, {"hostname": "PC-9"})
        assert record.changes is not None and record.changes.hostname == "PC-9"
        assert record.changes.os is None
    finally:
        await server.stop()


async def test_checkins_authenticate_from_memory(
    agent_server: AgentServer, http: aiohttp.ClientSession, agent: tuple[int, str]
) -> None:
    await checkin(http, agent_server, agent[1], {})
    with count_statements() as counter:
        for _ in range(5):
            status, _, _ = await checkin(http, agent_server, agent[1], {"os": "Win 11"})
            assert status == 200
    assert counter.count == 0


async def test_concurrent_cache_misses_are_loaded_in_one_statement(
    agent_server: AgentServer, http: aiohttp.ClientSession, tree: Tree, installer: Any
) -> None:
    tokens = [
        (await enrol(http, agent_server, installer[1], f"hw-miss-{i}"))["agentToken"]
        for i in range(10)
    ]
    agent_server.runtime.tokens.clear()
    loads = agent_server.runtime.tokens.loads
    results = await asyncio.gather(*(checkin(http, agent_server, t, {}) for t in tokens))
    assert [status for status, _, _ in results] == [200] * 10
    assert agent_server.runtime.tokens.loads - loads <= 2  # requests may straddle a load


async def test_a_round_of_checkins_is_written_in_one_statement(
    database: None, http: aiohttp.ClientSession, tree: Tree, installer: Any
) -> None:
    server = await start_agent_server(checkin_flush_interval=60.0)
    try:
        computers = [await enrol(http, server, installer[1], f"hw-batch-{i}") for i in range(30)]
        sent = utcnow()
        for body in computers:
            for _ in range(2):  # coalesced per agent
                assert (await checkin(http, server, body["agentToken"], {}))[0] == 200
        assert len(server.runtime.buffer) == 30
        with count_statements() as counter:
            written = await server.runtime.buffer.flush()
    finally:
        await server.stop()
    assert len(counter.statements) == 1, counter.statements
    ids = [global_ids.decode(b["computerId"])[1] for b in computers]
    assert sorted(row["id"] for row in written.rows.values()) == sorted(ids)
    stored = await Computer.filter(id__in=ids).values_list("last_connected_at", flat=True)
    assert all(value is not None and value >= sent for value in stored)


async def test_stopping_the_runtime_writes_every_buffered_checkin(
    database: None, http: aiohttp.ClientSession, tree: Tree, installer: Any
) -> None:
    server = await start_agent_server(checkin_flush_interval=60.0)
    try:
        bodies = [await enrol(http, server, installer[1], f"hw-stop-{i}") for i in range(5)]
        ids = [global_ids.decode(b["computerId"])[1] for b in bodies]
        enrolled = dict(await Computer.filter(id__in=ids).values_list("id", "last_connected_at"))
        await asyncio.sleep(0.01)
        for body in bodies:
            assert (await checkin(http, server, body["agentToken"], {"os": "Linux"}))[0] == 200
        await asyncio.sleep(0.3)
        assert len(server.runtime.buffer) == 5
        assert dict(await Computer.filter(id__in=ids).values_list("id", "last_connected_at")) == (
            enrolled
        )
    finally:
        await server.stop()
    for computer in await Computer.filter(id__in=ids):
        assert computer.last_connected_at > enrolled[computer.id]
        assert computer.os == "Linux"


async def test_a_failed_write_is_retried_with_nothing_lost(
    database: None, monkeypatch: pytest.MonkeyPatch, tree: Tree, installer: Any
) -> None:
    enrolment = await agent_domain.enroll(
        installer[1], {"hardwareId": "hw-retry", "hostname": "a", "os": "", "agentVersion": ""},
        settings=SETTINGS,
    )  # fmt: skip
    buffer = CheckinBuffer(60.0)
    calls = 0
    real_write = agent_domain.write_checkins

    async def failing_once(records: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise OSError("database went away")
        return await real_write(records)

    monkeypatch.setattr("server.agents.buffer.write_checkins", failing_once)
    at = utcnow() + timedelta(seconds=5)
    buffer.record(token_hash(enrolment.agent_token), at)
    with pytest.raises(OSError):
        await buffer.flush()
    assert len(buffer) == 1
    await buffer.stop()
    assert len(buffer) == 0
    assert await last_connected(enrolment.computer.id) == at


async def test_a_reconnecting_computer_is_announced(
    agent_server: AgentServer, http: aiohttp.ClientSession, tree: Tree, agent: tuple[int, str]
) -> None:
    computer_id, token = agent
    await agent_server.runtime.buffer.flush()
    long_ago = utcnow() - timedelta(days=3)
    await Computer.filter(id=computer_id).update(
        last_connected_at=long_ago, announced_status=ConnectionStatus.NOT_CONNECTED
    )
    async with agent_server.bus.subscribe(events.COMPUTER_CONNECTION) as stream:
        assert (await checkin(http, agent_server, token, {}))[0] == 200

        async def announced() -> None:
            async for event in stream:
                if (
                    event["instance_id"] == tree.instance.id
                    and computer_id in event["computer_ids"]
                ):
                    return

        await asyncio.wait_for(announced(), 10.0)  # a bound for a slow machine, not a timing
    computer = await Computer.get(id=computer_id)
    assert computer.announced_status == ConnectionStatus.CONNECTED


# --- refusals: each writes nothing --------------------------------------------------------


@pytest.fixture
async def unchanged(
    tree: Tree, agent_server: AgentServer, agent: tuple[int, str]
) -> AsyncIterator[None]:
    await agent_server.runtime.buffer.flush()
    await agent_server.runtime.watcher.run_once()  # settle what the enrolment announces
    before = await computer_rows(tree.instance.id)
    recorded = agent_server.runtime.buffer.recorded
    yield
    await agent_server.runtime.buffer.flush()
    assert agent_server.runtime.buffer.recorded == recorded
    assert await computer_rows(tree.instance.id) == before


BAD_REPORTS: list[tuple[str, bytes, str | None]] = [
    ("not JSON", b"{", None),
    ("trailing garbage", b"{} x", None),
    ("a JSON array", b"[]", None),
    ("JSON null", b"null", None),
    ("a number as hostname", b'{"hostname": 1}', "hostname"),
    ("null os", b'{"os": null}', "os"),
    ("an object as agentVersion", b'{"agentVersion": {}}', "agentVersion"),
    ("an unknown protection status", b'{"protectionStatus": "FINE"}', "protectionStatus"),
    ("a lower-case protection status", b'{"protectionStatus": "ok"}', "protectionStatus"),
    ("an unknown field", b'{"lastSeen": "now"}', "lastSeen"),
    ("a blank hostname", b'{"hostname": ""}', "hostname"),
    ("a 256-character os", orjson.dumps({"os": "o" * 256}), "os"),
    ("invalid UTF-8", b'{"os": "\xff"}', None),
]


@pytest.mark.parametrize(("case", "body", "field"), BAD_REPORTS, ids=[c[0] for c in BAD_REPORTS])
async def test_a_malformed_checkin_is_refused_with_400(
    agent_server: AgentServer,
    http: aiohttp.ClientSession,
    agent: tuple[int, str],
    unchanged: None,
    case: str,
    body: bytes,
    field: str | None,
) -> None:
    status, answer, _ = await checkin(http, agent_server, agent[1], body)
    assert status == 400, case
    assert answer["field"] == field and answer["code"] == "INVALID_INPUT"


async def test_a_checkin_over_64_kib_is_refused_with_413(
    agent_server: AgentServer, http: aiohttp.ClientSession, agent: tuple[int, str], unchanged: None
) -> None:
    body = b'{"os": "' + b"x" * (64 * 1024) + b'"}'
    status, _, _ = await checkin(http, agent_server, agent[1], body)
    assert status == 413


async def test_a_streamed_checkin_over_64_kib_is_refused_with_413(
    agent_server: AgentServer, http: aiohttp.ClientSession, agent: tuple[int, str], unchanged: None
) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"os": "'
        for _ in range(65):
            yield b"x" * 1024
        yield b'"}'

    headers = bearer(agent[1])
    async with http.post(f"{agent_server.url}/checkin", data=chunks(), headers=headers) as response:
        assert response.status == 413
        assert "Content-Length" not in response.request_info.headers


async def test_a_lying_content_length_is_refused(
    agent_server: AgentServer, http: aiohttp.ClientSession, agent: tuple[int, str], unchanged: None
) -> None:
    status, _, _ = await checkin(
        http, agent_server, agent[1], b"{}", headers={"Content-Length": "100000"}
    )
    assert status == 413


@pytest.mark.parametrize(
    "token", [None, "", "garbage", "agt_" + "A" * 43, "inst_notanagent"],
    ids=["missing", "empty", "garbage", "unknown", "installer-like"],
)  # fmt: skip
async def test_a_checkin_without_a_valid_agent_token_is_refused_with_401(
    agent_server: AgentServer,
    http: aiohttp.ClientSession,
    agent: tuple[int, str],
    unchanged: None,
    token: str | None,
) -> None:
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    status, answer, _ = await checkin(http, agent_server, None, {}, headers=headers)
    assert status == 401 and answer["code"] == "UNAUTHENTICATED"


async def test_an_installer_token_cannot_check_in(
    agent_server: AgentServer,
    http: aiohttp.ClientSession,
    installer: Any,
    agent: tuple[int, str],
    unchanged: None,
) -> None:
    status, _, _ = await checkin(http, agent_server, installer[1], {})
    assert status == 401


async def test_a_superseded_token_is_refused_with_401(
    agent_server: AgentServer,
    http: aiohttp.ClientSession,
    installer: Any,
    agent: tuple[int, str],
) -> None:
    computer_id, old_token = agent
    again = await enrol(http, agent_server, installer[1], "hw-agent", agentToken=old_token)
    assert global_ids.decode(again["computerId"])[1] == computer_id
    await agent_server.runtime.buffer.flush()
    before = await last_connected(computer_id)
    status, _, _ = await checkin(http, agent_server, old_token, {"hostname": "evil"})
    assert status == 401
    await agent_server.runtime.buffer.flush()
    computer = await Computer.get(id=computer_id)
    assert computer.last_connected_at == before and computer.name == "host-hw-agent"


async def test_a_token_superseded_by_another_process_stops_working_after_one_flush(
    agent_server: AgentServer, http: aiohttp.ClientSession, agent: tuple[int, str]
) -> None:
    computer_id, token = agent
    await checkin(http, agent_server, token, {})
    await agent_server.runtime.buffer.flush()
    before = await last_connected(computer_id)
    # what a re-enrolment served by another worker does to the row
    await Computer.filter(id=computer_id).update(agent_token_hash=token_hash(new_token("agt")))
    status, _, _ = await checkin(http, agent_server, token, {"os": "stale"})
    assert status == 200  # still cached here ...
    await agent_server.runtime.buffer.flush()
    computer = await Computer.get(id=computer_id)
    assert computer.last_connected_at == before and computer.os == "Win 11"  # ... writes nothing
    status, _, _ = await checkin(http, agent_server, token, {})
    assert status == 401


async def test_checkins_beyond_the_rate_are_refused_with_429(
    agent_server: AgentServer, http: aiohttp.ClientSession, agent: tuple[int, str]
) -> None:
    _, token = agent
    limit = agent_server.settings.agent_requests_per_minute
    statuses = [(await checkin(http, agent_server, token, {}))[0] for _ in range(limit + 3)]
    assert statuses.count(200) == limit and statuses[limit:] == [429, 429, 429]
    await agent_server.runtime.buffer.flush()
    recorded = agent_server.runtime.buffer.recorded
    status, answer, response = await checkin(http, agent_server, token, {"os": "limited"})
    assert status == 429 and answer["code"] == "RATE_LIMITED"
    assert 1 <= int(response.headers["Retry-After"]) <= 60 // limit + 1
    assert agent_server.runtime.buffer.recorded == recorded


def test_token_buckets_refill_at_the_configured_rate() -> None:
    now = [1000.0]
    buckets = TokenBuckets(30, clock=lambda: now[0])
    assert all(buckets.acquire("a") == 0 for _ in range(30))
    wait = buckets.acquire("a")
    assert wait == pytest.approx(2.0)
    assert buckets.retry_after(wait) == "2"
    assert buckets.acquire("b") == 0  # keys are independent
    now[0] += 2.0
    assert buckets.acquire("a") == 0 and buckets.acquire("a") > 0
    now[0] += 60.0
    assert buckets.prune() == 2 and len(buckets) == 0
    assert TokenBuckets(0).acquire("a") == 0  # 0 disables limiting


def test_buffered_records_coalesce_per_token() -> None:
    buffer = CheckinBuffer(1.0)
    early, late = datetime(2030, 1, 1, tzinfo=UTC), datetime(2030, 1, 1, 0, 0, 5, tzinfo=UTC)
    buffer.record("t", late, agent_domain.AgentReport(hostname="b"))
    buffer.record("t", early, agent_domain.AgentReport(os="x"))
    assert len(buffer) == 1 and buffer.recorded == 2
    record = buffer._records["t"]
    assert record.at == late
    assert record.changes == agent_domain.AgentReport(hostname="b", os="x")


async def test_many_checkins_stay_fast(
    agent_server: AgentServer, http: aiohttp.ClientSession, tree: Tree, installer: Any
) -> None:
    tokens = [
        (await enrol(http, agent_server, installer[1], f"hw-load-{i}"))["agentToken"]
        for i in range(50)
    ]
    started = asyncio.get_running_loop().time()
    results = await asyncio.gather(
        *(checkin(http, agent_server, t, {"os": "Win 11"}) for t in tokens for _ in range(4))
    )
    elapsed = asyncio.get_running_loop().time() - started
    assert [r[0] for r in results] == [200] * 200
    assert elapsed < 5.0
    assert await fetch_value("SELECT COUNT(*) FROM computer WHERE instance_id = ?",
                             [tree.instance.id]) == 50  # fmt: skip


async def test_the_unbuffered_checkin_writes_at_once(
    agent_server: AgentServer, http: aiohttp.ClientSession, agent: tuple[int, str]
) -> None:
    computer_id, token = agent
    at = utcnow() + timedelta(seconds=1)
    interval = await agent_domain.checkin(token, {"os": "BSD"}, settings=SETTINGS, now=at)
    assert interval == SETTINGS.checkin_interval
    computer = await Computer.get(id=computer_id)
    assert computer.last_connected_at == at and computer.os == "BSD"
    with pytest.raises(agent_domain.AgentUnauthorized):
        await agent_domain.checkin("agt_unknown", {}, settings=SETTINGS)
    with pytest.raises(agent_domain.InvalidInput):
        await agent_domain.checkin(token, {"os": 1}, settings=SETTINGS)

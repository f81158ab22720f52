"""`POST /agent/v1/enroll` against a real uvicorn."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import aiohttp
import orjson
import pytest

from server import events
from server.domain import global_ids
from server.domain.installers import create_installer, revoke_installer
from server.domain.secrets import token_hash
from server.models import Company, Computer, Installer
from server.models.db import fetch_value
from server.models.enums import ConnectionStatus

from .conftest import (
    AgentServer,
    Tree,
    bearer,
    computer_rows,
    enrol,
    enrolment_body,
    utcnow,
    wait_until,
)


async def post(
    http: aiohttp.ClientSession, server: AgentServer, path: str, token: str | None, **kw: Any
) -> tuple[int, Any, aiohttp.ClientResponse]:
    headers = kw.pop("headers", {})
    if token is not None:
        headers.update(bearer(token))
    async with http.post(f"{server.url}/{path}", headers=headers, **kw) as response:
        raw = await response.read()
        try:
            body = orjson.loads(raw) if raw else None
        except orjson.JSONDecodeError:
            body = raw
        return response.status, body, response


async def test_enrolment_creates_a_computer_in_the_installers_group(
    agent_server: AgentServer, http: aiohttp.ClientSession, tree: Tree, installer: Any
) -> None:
    _, token = installer
    before = utcnow()
    body = await enrol(http, agent_server, token, "hw-1", hostname="PC-001", os="Windows 11")

    assert body["checkInIntervalSeconds"] == agent_server.settings.checkin_interval
    assert body["agentToken"].startswith("agt_") and len(body["agentToken"]) >= 40
    _, computer_id = global_ids.decode(body["computerId"], "Computer")
    computer = await Computer.get(id=computer_id)
    assert computer.instance_id == tree.instance.id  # type: ignore[attr-defined]
    assert computer.company_id == tree.customer.id  # type: ignore[attr-defined]
    assert computer.group_id == tree.customer_group.id  # type: ignore[attr-defined]
    assert (computer.name, computer.sort_name, computer.os) == ("PC-001", "pc-001", "Windows 11")
    assert computer.hardware_id == "hw-1" and computer.agent_version == "11.1.2"
    assert computer.agent_token_hash == token_hash(body["agentToken"])
    assert computer.last_connected_at is not None and computer.last_connected_at >= before


async def test_an_installer_for_a_custom_group_enrols_into_that_group(
    agent_server: AgentServer, http: aiohttp.ClientSession, tree: Tree
) -> None:
    _, token = await create_installer(
        tree.scope, company_id=tree.customer.id, group_id=tree.custom_group.id
    )
    body = await enrol(http, agent_server, token, "laptop-1")
    computer = await Computer.get(id=global_ids.decode(body["computerId"])[1])
    assert computer.group_id == tree.custom_group.id  # type: ignore[attr-defined]


async def test_enrolment_is_announced_as_a_connection(
    agent_server: AgentServer, http: aiohttp.ClientSession, tree: Tree, installer: Any
) -> None:
    async with agent_server.bus.subscribe(events.COMPUTER_CONNECTION) as stream:
        body = await enrol(http, agent_server, installer[1], "hw-announced")
        computer_id = global_ids.decode(body["computerId"])[1]
        async for event in stream:
            if event["instance_id"] == tree.instance.id and computer_id in event["computer_ids"]:
                break
    computer = await Computer.get(id=computer_id)
    assert computer.announced_status == ConnectionStatus.CONNECTED


async def test_reenrolment_returns_the_same_computer_with_a_new_token(
    agent_server: AgentServer, http: aiohttp.ClientSession, tree: Tree, installer: Any
) -> None:
    _, token = installer
    first = await enrol(http, agent_server, token, "hw-2", hostname="old", os="Win 10")
    status, _, _ = await post(http, agent_server, "checkin", first["agentToken"], json={})
    assert status == 200

    # another installer of the same company, for another group
    _, other_token = await create_installer(
        tree.scope, company_id=tree.customer.id, group_id=tree.custom_group.id
    )
    second = await enrol(
        http, agent_server, other_token, "hw-2", hostname="new", os="Win 11", agentVersion="12.0"
    )

    assert second["computerId"] == first["computerId"]
    assert second["agentToken"] != first["agentToken"]
    status, body, _ = await post(http, agent_server, "checkin", first["agentToken"], json={})
    assert status == 401 and body["code"] == "UNAUTHENTICATED"
    status, _, _ = await post(http, agent_server, "checkin", second["agentToken"], json={})
    assert status == 200
    computer = await Computer.get(id=global_ids.decode(second["computerId"])[1])
    assert (computer.name, computer.os, computer.agent_version) == ("new", "Win 11", "12.0")
    assert computer.agent_token_hash == token_hash(second["agentToken"])
    assert await Computer.filter(instance_id=tree.instance.id).count() == 1


async def test_the_same_hardware_in_another_company_is_another_computer(
    agent_server: AgentServer, http: aiohttp.ClientSession, tree: Tree, installer: Any
) -> None:
    _, other_token = await create_installer(tree.scope, company_id=tree.other.id)
    first = await enrol(http, agent_server, installer[1], "hw-shared")
    second = await enrol(http, agent_server, other_token, "hw-shared")
    assert first["computerId"] != second["computerId"]
    status, _, _ = await post(http, agent_server, "checkin", first["agentToken"], json={})
    assert status == 200


async def test_longest_accepted_values_are_stored(
    agent_server: AgentServer, http: aiohttp.ClientSession, tree: Tree, installer: Any
) -> None:
    body = await enrol(
        http, agent_server, installer[1], "h" * 255, hostname="n" * 255, os="o" * 255,
        agentVersion="v" * 64,
    )  # fmt: skip
    computer = await Computer.get(id=global_ids.decode(body["computerId"])[1])
    assert len(computer.name) == 255 and computer.agent_version == "v" * 64


# --- refusals: each writes nothing --------------------------------------------------------


@pytest.fixture
async def unchanged(tree: Tree, agent_server: AgentServer) -> AsyncIterator[None]:
    """Asserts that the test changed no computer of its instance (after a flush)."""
    await agent_server.runtime.watcher.run_once()  # settle what the enrolment announces
    before = await computer_rows(tree.instance.id)
    recorded = agent_server.runtime.buffer.recorded
    yield
    await agent_server.runtime.buffer.flush()
    assert await computer_rows(tree.instance.id) == before
    assert agent_server.runtime.buffer.recorded == recorded


BAD_BODIES: list[tuple[str, Any, str | None]] = [
    ("not JSON", b"{hardwareId:", None),
    ("empty body", b"", None),
    ("a JSON array", b"[]", None),
    ("a JSON string", b'"hw"', None),
    ("a number as hostname", {**enrolment_body(), "hostname": 7}, "hostname"),
    ("null os", {**enrolment_body(), "os": None}, "os"),
    ("a list as hardwareId", {**enrolment_body(), "hardwareId": ["a"]}, "hardwareId"),
    ("a missing hardwareId", {k: v for k, v in enrolment_body().items() if k != "hardwareId"},
     "hardwareId"),
    ("a missing agentVersion", {k: v for k, v in enrolment_body().items()
                                if k != "agentVersion"}, "agentVersion"),
    ("an unknown field", {**enrolment_body(), "admin": True}, "admin"),
    ("a blank hardwareId", {**enrolment_body(), "hardwareId": "  "}, "hardwareId"),
    ("a 256-character hostname", {**enrolment_body(), "hostname": "x" * 256}, "hostname"),
    ("a 256-character hardwareId", {**enrolment_body(), "hardwareId": "x" * 256}, "hardwareId"),
    ("a 65-character agentVersion", {**enrolment_body(), "agentVersion": "1" * 65},
     "agentVersion"),
    ("a NUL in the os", {**enrolment_body(), "os": "Win\x0011"}, "os"),
    ("a lone surrogate", b'{"hardwareId": "\\ud800", "hostname": "a", "os": "", '
                         b'"agentVersion": ""}', None),
]  # fmt: skip


@pytest.mark.parametrize(("case", "body", "field"), BAD_BODIES, ids=[c[0] for c in BAD_BODIES])
async def test_a_malformed_enrolment_is_refused_with_400(
    agent_server: AgentServer,
    http: aiohttp.ClientSession,
    installer: Any,
    unchanged: None,
    case: str,
    body: Any,
    field: str | None,
) -> None:
    kw = {"data": body} if isinstance(body, bytes) else {"json": body}
    status, answer, response = await post(http, agent_server, "enroll", installer[1], **kw)
    assert status == 400, case
    assert response.content_type == "application/json"
    assert answer["field"] == field and answer["error"]


async def test_a_body_over_64_kib_is_refused_with_413(
    agent_server: AgentServer, http: aiohttp.ClientSession, installer: Any, unchanged: None
) -> None:
    body = enrolment_body(hostname="x" * (64 * 1024))
    status, answer, _ = await post(http, agent_server, "enroll", installer[1], json=body)
    assert status == 413 and answer["code"] == "TOO_LARGE"


async def test_a_streamed_body_over_64_kib_is_refused_with_413(
    agent_server: AgentServer, http: aiohttp.ClientSession, installer: Any, unchanged: None
) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"hardwareId": "hw-big", "hostname": "'
        for _ in range(70):
            yield b"x" * 1024
        yield b'", "os": "", "agentVersion": ""}'

    status, _, response = await post(http, agent_server, "enroll", installer[1], data=chunks())
    assert status == 413
    assert response.request_info.headers.get("Transfer-Encoding") == "chunked"


async def test_a_body_of_exactly_64_kib_is_read(
    agent_server: AgentServer, http: aiohttp.ClientSession, installer: Any, unchanged: None
) -> None:
    head, tail = b'{"hardwareId": "a", "os": "", "agentVersion": "", "hostname": "', b'"}'
    raw = head + b"x" * (64 * 1024 - len(head) - len(tail)) + tail
    assert len(raw) == 64 * 1024
    status, answer, _ = await post(http, agent_server, "enroll", installer[1], data=raw)
    assert status == 400 and answer["field"] == "hostname"  # too long a name, not too big a body


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Basic dXNlcjpwYXNz"}, {"Authorization": "Bearer"},
     {"Authorization": "Bearer inst_garbage"}, {"Authorization": "Bearer " + "x" * 300}],
    ids=["missing", "basic", "empty", "garbage", "overlong"],
)  # fmt: skip
async def test_enrolment_without_a_valid_installer_token_is_refused_with_401(
    agent_server: AgentServer,
    http: aiohttp.ClientSession,
    unchanged: None,
    headers: dict[str, str],
) -> None:
    status, answer, response = await post(
        http, agent_server, "enroll", None, json=enrolment_body(), headers=headers
    )
    assert status == 401 and answer["code"] == "UNAUTHENTICATED"
    assert response.headers["WWW-Authenticate"] == "Bearer"


async def test_an_agent_token_cannot_enrol(
    agent_server: AgentServer, http: aiohttp.ClientSession, tree: Tree, installer: Any
) -> None:
    body = await enrol(http, agent_server, installer[1], "hw-agent")
    rows = await computer_rows(tree.instance.id)
    status, _, _ = await post(
        http, agent_server, "enroll", body["agentToken"], json=enrolment_body()
    )
    assert status == 401
    assert await computer_rows(tree.instance.id) == rows


async def test_a_revoked_installer_is_refused_with_401(
    agent_server: AgentServer, http: aiohttp.ClientSession, tree: Tree, unchanged: None
) -> None:
    installer, token = await create_installer(tree.scope, company_id=tree.customer.id)
    await revoke_installer(tree.scope, installer.id)
    status, answer, _ = await post(http, agent_server, "enroll", token, json=enrolment_body())
    assert status == 401 and "revoked" in answer["error"]


async def test_an_expired_installer_is_refused_with_401(
    agent_server: AgentServer, http: aiohttp.ClientSession, tree: Tree, unchanged: None
) -> None:
    installer, token = await create_installer(
        tree.scope, company_id=tree.customer.id, expires_at=utcnow() + timedelta(hours=1)
    )
    await Installer.filter(id=installer.id).update(expires_at=utcnow() - timedelta(seconds=1))
    status, answer, _ = await post(http, agent_server, "enroll", token, json=enrolment_body())
    assert status == 401 and "expired" in answer["error"]


async def test_an_installer_of_an_unlinked_customer_is_refused_with_401(
    agent_server: AgentServer, http: aiohttp.ClientSession, tree: Tree, unchanged: None
) -> None:
    _, token = await create_installer(tree.scope, company_id=tree.customer.id)
    await Company.filter(id=tree.customer.id).update(unlinked_at=utcnow())
    status, answer, _ = await post(http, agent_server, "enroll", token, json=enrolment_body())
    assert status == 401 and "unlinked" in answer["error"]


async def test_reenrolment_with_a_revoked_installer_keeps_the_old_token(
    agent_server: AgentServer, http: aiohttp.ClientSession, tree: Tree
) -> None:
    installer, token = await create_installer(tree.scope, company_id=tree.customer.id)
    first = await enrol(http, agent_server, token, "hw-keep")
    await revoke_installer(tree.scope, installer.id)
    status, _, _ = await post(http, agent_server, "enroll", token, json=enrolment_body("hw-keep"))
    assert status == 401
    status, _, _ = await post(http, agent_server, "checkin", first["agentToken"], json={})
    assert status == 200  # agents already enrolled keep checking in


async def test_repeated_enrolment_of_one_machine_is_rate_limited(
    agent_server: AgentServer, http: aiohttp.ClientSession, tree: Tree, installer: Any
) -> None:
    limit = agent_server.settings.agent_requests_per_minute
    for _ in range(limit):
        await enrol(http, agent_server, installer[1], "hw-loop")
    rows = await computer_rows(tree.instance.id)
    status, _, response = await post(
        http, agent_server, "enroll", installer[1], json=enrolment_body("hw-loop")
    )
    assert status == 429 and int(response.headers["Retry-After"]) >= 1
    assert await computer_rows(tree.instance.id) == rows
    await enrol(http, agent_server, installer[1], "hw-other")  # other machines are not limited


async def test_the_enrolment_tokens_hash_is_stored_not_the_token(
    agent_server: AgentServer, http: aiohttp.ClientSession, tree: Tree, installer: Any
) -> None:
    body = await enrol(http, agent_server, installer[1], "hw-hash")
    token = body["agentToken"]
    found = await fetch_value(
        "SELECT COUNT(*) FROM computer WHERE agent_token_hash = ? OR name = ?", [token, token]
    )
    assert found == 0

    async def cached() -> bool:
        return agent_server.runtime.tokens.peek(token_hash(token)) is not None

    await wait_until(cached)

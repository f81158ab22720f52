"""Connection limits on a real uvicorn, served as `serve` serves the console: a client that sends
nothing loses the connection at the deadline, one that trickles its headers or body gets 408
then; requests and websockets that keep to it are served; past the connection cap a request
gets 503; an oversized header block is refused; a flood of refusals is logged in one line."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import replace
from urllib.parse import urlsplit

import pytest
import websockets
from starlette.applications import Starlette

from server.observability import REGISTRY
from server.settings import Settings
from tests import factories
from tests.api.sockets import subscribed
from tests.conftest import serving
from tests.waiting import eventually, subscriptions_open

DEADLINE = 0.3
CLOSED_WITHIN = 5.0  # generous: a loaded machine is slow, and a missing deadline is for ever
TRICKLE_INTERVAL = 0.05
HEALTHZ = b"GET /healthz HTTP/1.1\r\nHost: console.test\r\n\r\n"
SKIP = "mutation($id: ID!) { skipCustomerSetup(input: {customerId: $id}) { errors { code } } }"


@pytest.fixture(scope="module")
async def limited_url(app, settings) -> AsyncIterator[str]:
    """The console behind a uvicorn with short deadlines, and a keep-alive timeout long enough
    that only the deadlines can close an idle connection."""
    limits = replace(
        settings,
        request_header_timeout=DEADLINE,
        request_body_timeout=DEADLINE,
        keep_alive_timeout=60,
    )
    async with serving(app, limits) as url:
        yield url


@contextlib.asynccontextmanager
async def connection(url: str) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    address = urlsplit(url)
    reader, writer = await asyncio.open_connection(address.hostname, address.port)
    try:
        yield reader, writer
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """One response's status and body (the console always sends a Content-Length)."""
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), CLOSED_WITHIN)
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in header_lines if line)
    body = await reader.readexactly(int(headers["content-length"]))
    return int(status_line.split(" ")[1]), body


async def closing(reader: asyncio.StreamReader) -> bytes:
    """What the server sends until it closes the connection (fails if it keeps it open)."""
    try:
        return await asyncio.wait_for(reader.read(), CLOSED_WITHIN)
    except ConnectionResetError:
        return b""


def timed_out_with_408(answer: bytes) -> bool:
    """Whether `answer`, all the server sent before closing, is a 408 that says it closes."""
    head, _, body = answer.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").lower().split("\r\n")
    return (
        status_line == "http/1.1 408 request timeout"
        and "connection: close" in header_lines
        and body == b"Request Timeout"
    )


async def trickle(writer: asyncio.StreamWriter, data: bytes) -> int:
    """Send `data` a byte at a time; how many bytes went before the server closed."""
    for sent, byte in enumerate(data):
        if writer.is_closing():
            return sent
        writer.write(bytes([byte]))
        try:
            await writer.drain()
        except OSError:
            return sent
        await asyncio.sleep(TRICKLE_INTERVAL)
    return len(data)


def timed_out(phase: str) -> float:
    return REGISTRY.get_sample_value("msp_connections_timed_out_total", {"phase": phase}) or 0.0


def requests_served() -> int:
    """uvicorn's tasks serving a request, in this process (the tests' servers run in it)."""
    return sum(
        getattr(task.get_coro(), "__qualname__", "") == "RequestResponseCycle.run_asgi"
        for task in asyncio.all_tasks()
    )


def headers_too_large() -> float:
    return REGISTRY.get_sample_value("msp_request_headers_too_large_total") or 0.0


def refused_total() -> float:
    return REGISTRY.get_sample_value("msp_connections_refused_total") or 0.0


async def test_a_connection_that_sends_nothing_is_closed_at_the_header_deadline(limited_url):
    before = timed_out("headers")
    async with connection(limited_url) as (reader, _):
        assert await closing(reader) == b""
    assert timed_out("headers") > before


async def test_headers_trickled_byte_by_byte_are_cut_at_the_deadline_with_408(
    limited_url: str,
) -> None:
    slow_request = HEALTHZ.replace(b"\r\n\r\n", b"\r\nX-Padding: " + b"a" * 200 + b"\r\n\r\n")
    async with connection(limited_url) as (reader, writer):
        sending = asyncio.create_task(trickle(writer, slow_request))
        assert timed_out_with_408(await closing(reader))
        sent = await sending
    # cut while bytes were still coming, long before the request was complete
    assert 0 < sent < len(slow_request)


async def test_a_body_trickled_within_the_size_limit_is_cut_at_the_body_deadline_with_408(
    limited_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    body = json.dumps({"query": "{ __typename }"}).encode()
    head = (
        b"POST /graphql HTTP/1.1\r\nHost: console.test\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n" % len(body)
    )
    before = timed_out("body")
    async with connection(limited_url) as (reader, writer):
        writer.write(head)
        sending = asyncio.create_task(trickle(writer, body))
        assert timed_out_with_408(await closing(reader))
        sent = await sending
    assert sent < len(body)
    assert timed_out("body") > before
    # the request's task, seeing its client gone, ends without an error logged
    await eventually(lambda: not requests_served(), what="the request's task ending")
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_a_body_owed_to_a_request_answered_already_is_cut_without_a_second_answer(
    limited_url: str,
) -> None:
    # the agent API refuses a check-in without a token before reading its body
    head = b"POST /agent/v1/checkin HTTP/1.1\r\nHost: console.test\r\nContent-Length: 50\r\n\r\n"
    async with connection(limited_url) as (reader, writer):
        writer.write(head + b"{")
        status, _ = await response(reader)
        assert status == 401
        assert await closing(reader) == b""  # at the body deadline, no 408 after the 401


async def test_requests_on_a_keep_alive_connection_each_get_a_fresh_deadline(limited_url):
    async with connection(limited_url) as (reader, writer):
        for _ in range(4):  # together longer than one deadline: it restarts after each response
            await asyncio.sleep(DEADLINE / 3)
            writer.write(HEALTHZ)
            assert await response(reader) == (200, b"ok")
        # then idle: closed a deadline after the last response, not kept for keep-alive's 60 s
        assert await closing(reader) == b""


async def test_a_websocket_subscription_outlives_the_deadlines(client, limited_url):
    owner = await factories.owner(client)
    tree = await factories.company_tree(
        owner.instance_id, msps=1, customers_per_msp=1, computers_per_customer=0
    )
    customer = tree.customers[tree.msps[0].id][0]
    before = subscriptions_open()
    query = "subscription { customerStatusChanged { id } }"
    async with subscribed(limited_url, owner.token, query) as socket:
        await eventually(lambda: subscriptions_open() > before, what="the subscription listening")
        await asyncio.sleep(3 * DEADLINE)  # past the header and the body deadline
        await client.query(SKIP, {"id": factories.global_id(customer)}, owner.token)
        message = json.loads(await asyncio.wait_for(socket.recv(), CLOSED_WITHIN))
        assert message["payload"]["data"]["customerStatusChanged"] == {
            "id": factories.global_id(customer)
        }


async def test_past_the_connection_cap_a_request_gets_503_and_the_others_are_served(app, settings):
    async with (
        serving(app, replace(settings, max_connections=3)) as url,
        connection(url) as (served, served_writer),
        connection(url),  # open, idle
    ):
        served_writer.write(HEALTHZ)
        assert await response(served) == (200, b"ok")
        async with connection(url) as (refused, refused_writer):
            refused_writer.write(HEALTHZ)
            assert await response(refused) == (503, b"Service Unavailable")
            assert await closing(refused) == b""
        served_writer.write(HEALTHZ)  # the third connection gone, there is room again
        assert await response(served) == (200, b"ok")


async def test_a_flood_past_the_connection_cap_is_counted_in_full_and_logged_in_one_line(
    app: Starlette, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    before = refused_total()
    async with (
        serving(app, replace(settings, max_connections=2)) as url,  # its own lines: none yet
        connection(url),  # open, idle: with the flood's, two
    ):
        for _ in range(50):
            async with connection(url) as (reader, writer):
                writer.write(HEALTHZ)
                assert await response(reader) == (503, b"Service Unavailable")
    assert refused_total() - before == 50
    lines = [r.getMessage() for r in caplog.records if "503" in r.getMessage()]
    assert len(lines) == 1, lines
    assert not [r for r in caplog.records if r.getMessage() == "Exceeded concurrency limit."]


async def test_past_the_connection_cap_a_websocket_handshake_gets_503_too(client, app, settings):
    owner = await factories.owner(client)
    query = "subscription { customerStatusChanged { id } }"
    async with (
        serving(app, replace(settings, max_connections=3)) as url,
        subscribed(url, owner.token, query) as first,
        connection(url),  # open, idle
    ):
        before = refused_total()
        with pytest.raises(websockets.InvalidStatus) as refused:
            async with subscribed(url, owner.token, query):
                pass
        assert refused.value.response.status_code == 503
        assert refused_total() - before == 1
        await first.ping()  # the earlier socket is still served


async def test_a_header_block_past_the_limit_is_refused(limited_url, settings):
    padding = b"X-Padding: " + b"a" * 1000 + b"\r\n"
    async with connection(limited_url) as (reader, writer):
        writer.write(HEALTHZ.removesuffix(b"\r\n"))
        writer.write(padding * (settings.max_header_bytes // len(padding) + 1))
        assert (await closing(reader)).startswith(b"HTTP/1.1 431 ")
    async with connection(limited_url) as (reader, writer):
        writer.write(HEALTHZ.removesuffix(b"\r\n") + padding * 8 + b"\r\n")
        assert await response(reader) == (200, b"ok")


async def test_pipelined_requests_are_each_answered_then_the_header_deadline_closes(limited_url):
    body = json.dumps({"query": "{ __typename }"}).encode()
    graphql = (
        b"POST /graphql HTTP/1.1\r\nHost: console.test\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
    )
    async with connection(limited_url) as (reader, writer):
        writer.write(HEALTHZ + graphql + HEALTHZ)  # one write: the server reads them together
        assert await response(reader) == (200, b"ok")
        status, answer = await response(reader)
        assert (status, json.loads(answer)["data"]) == (200, {"__typename": "Query"})
        assert await response(reader) == (200, b"ok")
        assert await closing(reader) == b""


async def test_a_head_left_incomplete_behind_a_pipelined_request_gets_408(
    limited_url: str,
) -> None:
    async with connection(limited_url) as (reader, writer):
        writer.write(HEALTHZ + b"GET /healthz HTTP/1.1\r\nHost: con")  # read together
        assert await response(reader) == (200, b"ok")
        assert timed_out_with_408(await closing(reader))


async def test_a_flood_of_oversized_heads_is_counted_in_full_and_logged_in_one_line(
    app: Starlette, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    padding = b"X-Padding: " + b"a" * 1000 + b"\r\n"
    oversized = HEALTHZ.removesuffix(b"\r\n") + padding * (settings.max_header_bytes // 1000 + 1)
    before = headers_too_large()
    async with serving(app, settings) as url:  # a listener of its own: none of its lines yet
        for _ in range(50):
            async with connection(url) as (reader, writer):
                writer.write(oversized)
                assert (await closing(reader)).startswith(b"HTTP/1.1 431 ")
    assert headers_too_large() - before == 50
    lines = [r.getMessage() for r in caplog.records if "431" in r.getMessage()]
    assert len(lines) == 1, lines


async def test_a_header_block_pipelined_behind_a_request_is_held_to_the_limit_too(
    limited_url, settings
):
    padding = b"X-Padding: " + b"a" * 1000 + b"\r\n"
    async with connection(limited_url) as (reader, writer):
        writer.write(HEALTHZ + HEALTHZ.removesuffix(b"\r\n"))  # the next head begins at once
        assert await response(reader) == (200, b"ok")
        writer.write(padding * (settings.max_header_bytes // len(padding) + 1))
        assert (await closing(reader)).startswith(b"HTTP/1.1 431 ")

"""A graphql-transport-ws client for the API tests, against the real uvicorn of `server_url`:
connect and sign in, subscribe, run an operation, read what arrives."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import websockets
from websockets.asyncio.client import ClientConnection

PROTOCOL = "graphql-transport-ws"


def ws_url(server_url: str) -> str:
    return server_url.replace("http://", "ws://") + "/graphql"


@contextlib.asynccontextmanager
async def acknowledged(server_url: str, token: str) -> AsyncIterator[ClientConnection]:
    """A socket whose `connection_init` with `token` the console acknowledged."""
    async with websockets.connect(ws_url(server_url), subprotocols=[PROTOCOL]) as socket:
        init = {"type": "connection_init", "payload": {"authorization": f"Bearer {token}"}}
        await socket.send(json.dumps(init))
        assert json.loads(await asyncio.wait_for(socket.recv(), 5))["type"] == "connection_ack"
        yield socket


async def subscribe(
    socket: ClientConnection, operation_id: str, query: str, variables: dict | None = None
) -> None:
    payload = {"query": query, "variables": variables or {}}
    await socket.send(json.dumps({"id": operation_id, "type": "subscribe", "payload": payload}))


@contextlib.asynccontextmanager
async def subscribed(server_url: str, token: str, query: str) -> AsyncIterator[ClientConnection]:
    """An acknowledged socket running `query` as operation "1"."""
    async with acknowledged(server_url, token) as socket:
        await subscribe(socket, "1", query)
        yield socket


async def operation(
    socket: ClientConnection, operation_id: str, query: str, variables: dict | None = None
) -> dict[str, Any]:
    """Run a query or mutation over the socket: its `next` payload (then `complete`)."""
    await subscribe(socket, operation_id, query, variables)
    message = json.loads(await asyncio.wait_for(socket.recv(), 5))
    assert message["id"] == operation_id and message["type"] == "next", message
    done = json.loads(await asyncio.wait_for(socket.recv(), 5))
    assert done == {"id": operation_id, "type": "complete"}, done
    return message["payload"]


async def received(
    socket: ClientConnection, quiet: float = 0.5, at_least: int = 0, within: float = 10.0
) -> list[dict[str, Any]]:
    """Every `next` message until the socket stays quiet for `quiet` seconds, once `at_least`
    have come (waiting up to `within` seconds for those: a loaded machine is slow to send)."""
    messages: list[dict[str, Any]] = []
    while True:
        try:
            wait = within if len(messages) < at_least else quiet
            message = json.loads(await asyncio.wait_for(socket.recv(), wait))
        except TimeoutError:
            return messages
        assert message["type"] == "next", message
        assert "errors" not in message["payload"], message
        messages.append(message["payload"]["data"])


async def settled(bus: Any, before: int) -> None:
    """Wait until a new socket's subscriptions are all on the bus (its count stops growing)."""
    last, stable = bus.subscriber_count, 0
    for _ in range(200):
        await asyncio.sleep(0.01)
        count = bus.subscriber_count
        stable = stable + 1 if count == last and count > before else 0
        if stable >= 5:
            return
        last = count
    raise AssertionError("the subscription did not reach the bus")

"""Subscriptions over a real uvicorn with a real websocket client (graphql-transport-ws)."""

import asyncio
import json

import pytest
import websockets

from tests import factories

PROTOCOL = "graphql-transport-ws"


def ws_url(server_url: str) -> str:
    return server_url.replace("http://", "ws://") + "/graphql"


async def connect(server_url, token):
    socket = await websockets.connect(ws_url(server_url), subprotocols=[PROTOCOL])
    await socket.send(
        json.dumps({"type": "connection_init", "payload": {"authorization": f"Bearer {token}"}})
    )
    return socket


@pytest.mark.parametrize("payload", [{}, {"authorization": "Bearer nope"}, {"authorization": 5}])
async def test_a_socket_without_a_valid_token_is_closed_with_4403(server_url, payload):
    async with websockets.connect(ws_url(server_url), subprotocols=[PROTOCOL]) as socket:
        await socket.send(json.dumps({"type": "connection_init", "payload": payload}))
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await asyncio.wait_for(socket.recv(), 5)
    assert closed.value.rcvd.code == 4403


async def test_logout_closes_the_sessions_open_sockets_with_4403(client, server_url):
    owner = await factories.owner(client)
    socket = await connect(server_url, owner.token)
    try:
        assert json.loads(await asyncio.wait_for(socket.recv(), 5))["type"] == "connection_ack"
        await socket.send(
            json.dumps(
                {
                    "id": "1",
                    "type": "subscribe",
                    "payload": {"query": "subscription { customerStatusChanged { id } }"},
                }
            )
        )
        await client.query("mutation { logout { errors { code } } }", token=owner.token)
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await asyncio.wait_for(socket.recv(), 5)
        assert closed.value.rcvd.code == 4403
    finally:
        await socket.close()

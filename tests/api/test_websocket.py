"""Subscriptions over a real uvicorn with a real websocket client (graphql-transport-ws)."""

import asyncio
import json

import pytest
import websockets

from tests import factories
from tests.api import scoped_users

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


async def test_an_open_subscription_follows_the_viewers_rights_as_they_change(client, server_url):
    owner = await factories.owner(client)
    tree = await factories.company_tree(
        owner.instance_id, msps=2, customers_per_msp=1, computers_per_customer=0
    )
    first, second = tree.msps
    rights = await scoped_users.permission_set(
        owner.instance_id, [await scoped_users.group_of(first)]
    )
    user = await scoped_users.scoped_user(
        client,
        owner.instance_id,
        [],
        home=await scoped_users.all_group(owner.instance_id),
        sets=[rights],
    )
    socket = await connect(server_url, user.token)
    try:
        assert json.loads(await asyncio.wait_for(socket.recv(), 5))["type"] == "connection_ack"
        await socket.send(
            json.dumps(
                {
                    "id": "1",
                    "type": "subscribe",
                    "payload": {
                        "query": "subscription { customerStatusChanged { name customerStatus } }"
                    },
                }
            )
        )
        await asyncio.sleep(0.3)
        # the user loses the first MSP and gains the second, while the socket stays open
        await rights.groups.clear()
        await rights.groups.add(await scoped_users.group_of(second))
        await asyncio.sleep(1.1)  # rights are re-read at most once a second
        for msp in (first, second):
            await client.query(
                "mutation($i: SkipCustomerSetupInput!) { skipCustomerSetup(input: $i) "
                "{ errors { code } } }",
                {"i": {"customerId": factories.global_id(tree.customers[msp.id][0])}},
                owner.token,
            )
        message = json.loads(await asyncio.wait_for(socket.recv(), 5))
        assert message["payload"]["data"]["customerStatusChanged"] == {
            "name": tree.customers[second.id][0].name,
            "customerStatus": "NORMAL",
        }
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(socket.recv(), 1)
    finally:
        await socket.close()


async def test_a_socket_holds_a_bounded_number_of_subscriptions(client, server_url, settings):
    owner = await factories.owner(client)
    limit = settings.max_subscriptions_per_socket
    query = "subscription { customerStatusChanged { id } }"
    socket = await connect(server_url, owner.token)

    async def subscribe(operation_id: str) -> None:
        message = {"id": operation_id, "type": "subscribe", "payload": {"query": query}}
        await socket.send(json.dumps(message))

    async def next_message(within: float) -> dict | None:
        try:
            return json.loads(await asyncio.wait_for(socket.recv(), within))
        except TimeoutError:
            return None

    try:
        assert (await next_message(5) or {}).get("type") == "connection_ack"
        for n in range(limit):
            await subscribe(str(n))
        await subscribe("one too many")
        refused = await next_message(5)
        assert refused is not None and refused["id"] == "one too many", refused
        assert refused["type"] == "next", refused  # a result with the error, then complete
        assert refused["payload"]["errors"][0]["extensions"]["code"] == "TOO_MANY_SUBSCRIPTIONS"
        assert await next_message(5) == {"id": "one too many", "type": "complete"}
        # ending one makes room for another
        await socket.send(json.dumps({"id": "0", "type": "complete"}))
        await asyncio.sleep(0.2)
        await subscribe("room again")
        assert await next_message(1) is None  # no error: it runs, waiting for events
    finally:
        await socket.close()

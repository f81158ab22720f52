"""Subscriptions over a real uvicorn with a real websocket client (graphql-transport-ws)."""

import asyncio
import contextlib
import json
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
import websockets
from starlette.applications import Starlette

from server.api.companies import Company
from server.api.subscriptions import RIGHTS_RECHECK_SECONDS
from server.app import create_app
from server.models import Session
from server.observability import REGISTRY
from server.settings import Settings
from tests import factories
from tests.api import scoped_users
from tests.api.sockets import (
    PROTOCOL,
    acknowledged,
    operation,
    received,
    settled,
    subscribe,
    subscribed,
    ws_url,
)
from tests.conftest import serving
from tests.graphql_client import GraphQLClient
from tests.waiting import eventually, subscriptions_open


async def user_with_rights_on(client, owner, company):
    """A native user at the top of the tree with one permission set, on `company`'s group."""
    rights = await scoped_users.permission_set(
        owner.instance_id, [await scoped_users.group_of(company)]
    )
    home = await scoped_users.all_group(owner.instance_id)
    user = await scoped_users.scoped_user(client, owner.instance_id, [], home=home, sets=[rights])
    return rights, user


@pytest.mark.parametrize("payload", [{}, {"authorization": "Bearer nope"}, {"authorization": 5}])
async def test_a_socket_without_a_valid_token_is_closed_with_4403(server_url, payload):
    async with websockets.connect(ws_url(server_url), subprotocols=[PROTOCOL]) as socket:
        await socket.send(json.dumps({"type": "connection_init", "payload": payload}))
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await asyncio.wait_for(socket.recv(), 5)
    assert closed.value.rcvd.code == 4403


async def test_logout_closes_the_sessions_open_sockets_with_4403(client, server_url):
    owner = await factories.owner(client)
    query = "subscription { customerStatusChanged { id } }"
    async with subscribed(server_url, owner.token, query) as socket:
        await client.query("mutation { logout { errors { code } } }", token=owner.token)
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await asyncio.wait_for(socket.recv(), 5)
        assert closed.value.rcvd.code == 4403


async def test_an_open_subscription_follows_the_viewers_rights_as_they_change(client, server_url):
    owner = await factories.owner(client)
    tree = await factories.company_tree(
        owner.instance_id, msps=2, customers_per_msp=1, computers_per_customer=0
    )
    first, second = tree.msps
    rights, user = await user_with_rights_on(client, owner, first)
    query = "subscription { customerStatusChanged { name customerStatus } }"
    before = subscriptions_open()
    async with subscribed(server_url, user.token, query) as socket:
        await eventually(lambda: subscriptions_open() > before, what="the subscription listening")
        rights_read = time.monotonic()  # the server read them before it listened
        # the user loses the first MSP and gains the second, while the socket stays open
        await rights.groups.clear()
        await rights.groups.add(await scoped_users.group_of(second))
        # the server re-reads rights with an event once they are older than its interval
        await eventually(
            lambda: time.monotonic() - rights_read > RIGHTS_RECHECK_SECONDS,
            what="the rights the server holds due for a re-read",
        )
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


async def test_a_socket_holds_a_bounded_number_of_subscriptions(client, server_url, settings):
    owner = await factories.owner(client)
    limit = settings.max_subscriptions_per_socket
    query = "subscription { customerStatusChanged { id } }"
    async with acknowledged(server_url, owner.token) as socket:

        async def next_message(within: float) -> dict | None:
            try:
                return json.loads(await asyncio.wait_for(socket.recv(), within))
            except TimeoutError:
                return None

        sent = [str(n) for n in range(limit + 1)]
        for operation_id in sent:
            await subscribe(socket, operation_id, query)
        # the operations sign in concurrently: any one of them is the one too many
        refused = await next_message(5)
        assert refused is not None and refused["id"] in sent, refused
        assert refused["type"] == "next", refused  # a result with the error, then complete
        assert refused["payload"]["errors"][0]["extensions"]["code"] == "TOO_MANY_SUBSCRIPTIONS"
        assert await next_message(5) == {"id": refused["id"], "type": "complete"}
        assert await next_message(1) is None  # the others run, waiting for events
        # ending one makes room for another, once the server has ended it (it does not say when)
        running = next(operation_id for operation_id in sent if operation_id != refused["id"])
        await socket.send(json.dumps({"id": running, "type": "complete"}))
        attempts = iter(range(100))

        async def room_again() -> bool:
            operation_id = f"room again {next(attempts)}"
            await subscribe(socket, operation_id, query)
            answer = await next_message(0.5)
            if answer is None:
                return True  # no error: it runs, waiting for events
            assert answer["payload"]["errors"][0]["extensions"]["code"] == "TOO_MANY_SUBSCRIPTIONS"
            assert await next_message(5) == {"id": operation_id, "type": "complete"}
            return False

        await eventually(room_again, what="room for a subscription after one ended")


CUSTOMER = "query($id: ID!) { node(id: $id) { ... on Company { name customerStatus } } }"
SKIP = """mutation($id: ID!) { skipCustomerSetup(input: {customerId: $id}) {
  errors { code } customer { customerStatus } } }"""


async def test_operations_on_an_open_socket_see_the_rights_as_they_are_now(client, server_url):
    owner = await factories.owner(client)
    tree = await factories.company_tree(
        owner.instance_id, msps=1, customers_per_msp=2, computers_per_customer=0
    )
    [msp] = tree.msps
    first, second = (factories.global_id(c) for c in tree.customers[msp.id])
    rights, user = await user_with_rights_on(client, owner, msp)
    async with acknowledged(server_url, user.token) as socket:
        seen = await operation(socket, "1", CUSTOMER, {"id": first})
        assert seen["data"]["node"]["customerStatus"] == "NOT_SET_UP"
        skipped = await operation(socket, "2", SKIP, {"id": first})
        assert skipped["data"]["skipCustomerSetup"]["errors"] == []

        # the owner deletes the user's only permission set while the socket stays open
        deleted = await client.query(
            "mutation($i: DeletePermissionSetInput!) { deletePermissionSet(input: $i) "
            "{ errors { code } } }",
            {"i": {"permissionSetId": factories.global_id(rights)}},
            owner.token,
        )
        assert deleted["deletePermissionSet"]["errors"] == []

        assert (await operation(socket, "3", CUSTOMER, {"id": first}))["data"] == {"node": None}
        refused = await operation(socket, "4", SKIP, {"id": second})
        assert refused["data"]["skipCustomerSetup"]["errors"] == [{"code": "NOT_FOUND"}]
        still = await client.query(CUSTOMER, {"id": second}, owner.token)
        assert still["node"]["customerStatus"] == "NOT_SET_UP"


async def test_an_operation_after_the_session_ended_is_refused_and_the_socket_closes(
    client, server_url
):
    owner = await factories.owner(client)
    async with acknowledged(server_url, owner.token) as socket:
        assert (await operation(socket, "1", "{ viewer { via } }"))["data"] == {
            "viewer": {"via": "EBA"}
        }
        # the session expires: no event announces it
        await Session.filter(account_id=owner.account_id).update(
            expires_at=datetime.now(UTC) - timedelta(seconds=1)
        )
        await subscribe(socket, "2", "{ viewer { via } }")
        answer = json.loads(await asyncio.wait_for(socket.recv(), 5))
        assert answer["payload"]["data"] == {"viewer": None}
        assert [e["extensions"]["code"] for e in answer["payload"]["errors"]] == ["UNAUTHENTICATED"]
        with pytest.raises(websockets.ConnectionClosed) as closed:
            while True:  # then `complete`, and the socket is closed long before its recheck
                await asyncio.wait_for(socket.recv(), 5)
        assert closed.value.rcvd.code == 4403


async def test_a_client_asking_for_the_legacy_graphql_ws_protocol_is_refused(server_url):
    socket = await websockets.connect(ws_url(server_url), subprotocols=["graphql-ws"])
    try:
        assert socket.subprotocol is None  # the handshake did not agree on graphql-ws
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await asyncio.wait_for(socket.recv(), 5)  # closed at once, before connection_init
        assert closed.value.rcvd.code == 4406
    finally:
        await socket.close()


INIT_TIMEOUT = 0.3


async def test_a_socket_that_never_sends_connection_init_is_closed_with_4408_at_the_timeout(
    client: GraphQLClient, app: Starlette, settings: Settings
) -> None:
    owner = await factories.owner(client)
    short = create_app(replace(settings, websocket_init_timeout=INIT_TIMEOUT), bus=app.state.bus)
    async with (
        serving(short) as url,
        websockets.connect(ws_url(url), subprotocols=[PROTOCOL]) as silent,
        acknowledged(url, owner.token) as signed_in,
    ):
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await asyncio.wait_for(silent.recv(), 5)  # Strawberry's default, 60 s, fails here
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4408
        # the socket that sent connection_init in time is served past the timeout
        await asyncio.sleep(2 * INIT_TIMEOUT)
        payload = await operation(signed_in, "1", "{ __typename }")
        assert payload["data"] == {"__typename": "Query"}


def session_watches() -> int:
    return sum(t.get_name() == "websocket-session-watch" for t in asyncio.all_tasks())


async def test_a_second_connection_init_closes_the_socket_with_4429_and_starts_nothing(
    client, server_url
):
    owner = await factories.owner(client)
    before = session_watches()
    async with acknowledged(server_url, owner.token) as socket:
        assert session_watches() == before + 1
        init = {"type": "connection_init", "payload": {"authorization": f"Bearer {owner.token}"}}
        await socket.send(json.dumps(init))
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await asyncio.wait_for(socket.recv(), 5)
        assert closed.value.rcvd.code == 4429
    await eventually(lambda: session_watches() == before, what="the closed socket's watch ended")


async def test_a_subscriber_that_falls_behind_is_ended_with_subscriber_too_slow(
    client, server_url, app
):
    from server import events

    owner = await factories.owner(client)
    hub = app.state.hub
    before = hub.subscriber_count
    query = "subscription { customerStatusChanged { id } }"
    async with subscribed(server_url, owner.token, query) as socket:
        await eventually(lambda: hub.subscriber_count > before, what="the subscriber at the hub")
        # its mailbox overflowed (the hub closes it so): what it held, then the error
        (subscriber,) = hub._topics[events.CUSTOMER_STATUS].subscribers[owner.instance_id]
        subscriber.mailbox.close(events.SubscriberTooSlow("more than 1000 events waiting"))
        ended = json.loads(await asyncio.wait_for(socket.recv(), 5))
        assert ended["type"] == "next", ended
        assert ended["payload"]["errors"][0]["extensions"]["code"] == "SUBSCRIBER_TOO_SLOW"
        assert json.loads(await asyncio.wait_for(socket.recv(), 5)) == {
            "id": "1",
            "type": "complete",
        }


async def test_an_event_is_fetched_once_per_worker_whatever_the_number_of_subscribers(
    client, server_url, app
):
    from server import events

    owner = await factories.owner(client)
    tree = await factories.company_tree(
        owner.instance_id, msps=1, customers_per_msp=2, computers_per_customer=0
    )
    hub = app.state.hub
    query = "subscription { customerStatusChanged { id customerStatus } }"
    for subscribers, customer in zip((1, 25), tree.all_customers, strict=True):
        async with contextlib.AsyncExitStack() as stack:
            sockets = []
            for _ in range(subscribers):
                before = hub.subscriber_count
                sockets.append(
                    await stack.enter_async_context(subscribed(server_url, owner.token, query))
                )
                await settled(hub, before)
            fetched = hub.fetches(events.CUSTOMER_STATUS)
            await client.query(SKIP, {"id": factories.global_id(customer)}, owner.token)
            got = await asyncio.gather(*(received(s, at_least=1) for s in sockets))
            assert hub.fetches(events.CUSTOMER_STATUS) == fetched + 1
        assert (
            got
            == [
                [
                    {
                        "customerStatusChanged": {
                            "id": factories.global_id(customer),
                            "customerStatus": "NORMAL",
                        }
                    }
                ]
            ]
            * subscribers
        )


PLAIN_FIELDS = """subscription { customerStatusChanged { id publicId name type depth customerStatus
  unlinkedAt readOnly suspended email customIdentifier } }"""


async def raw_messages(socket, at_least: int) -> list[str]:
    """The text of every message until the socket stays quiet, once `at_least` have come."""
    texts: list[str] = []
    while True:
        try:
            texts.append(await asyncio.wait_for(socket.recv(), 10 if len(texts) < at_least else 1))
        except TimeoutError:
            return texts


def renders() -> float:
    return REGISTRY.get_sample_value("msp_subscription_renders_total") or 0.0


async def test_shared_renders_send_the_very_bytes_the_per_subscriber_path_sends(
    client, server_url, app, settings
):
    owner = await factories.owner(client)
    tree = await factories.company_tree(
        owner.instance_id, msps=2, customers_per_msp=1, computers_per_customer=0
    )
    first, second = tree.msps
    _, user = await user_with_rights_on(client, owner, first)  # sees the first MSP's customer
    # the same console, its execution shortcuts off, hearing the same bus
    plain = create_app(replace(settings, execution_shortcuts=False), bus=app.state.bus)
    async with serving(plain) as plain_url, contextlib.AsyncExitStack() as stack:
        sockets = {}
        for url, hub in ((server_url, app.state.hub), (plain_url, plain.state.hub)):
            for token in (owner.token, user.token):
                before = hub.subscriber_count
                sockets[url, token] = await stack.enter_async_context(
                    subscribed(url, token, PLAIN_FIELDS)
                )
                await settled(hub, before)
        rendered = renders()
        for msp in (first, second):
            customer = tree.customers[msp.id][0]
            await client.query(SKIP, {"id": factories.global_id(customer)}, owner.token)
        got = {
            key: await raw_messages(socket, 2 if key[1] == owner.token else 1)
            for key, socket in sockets.items()
        }
    for token, expected in ((owner.token, 2), (user.token, 1)):
        shared, per_subscriber = got[server_url, token], got[plain_url, token]
        assert len(shared) == expected
        assert shared == per_subscriber
    # the first MSP's customer went to both subscribers of the console with the shortcuts,
    # rendered once; its renders are all the ones counted (the other console takes none)
    assert renders() - rendered == (2 if settings.execution_shortcuts else 0)


async def test_a_selection_with_a_resolver_is_rendered_for_each_subscriber(
    client, server_url, app, settings
):
    owner = await factories.owner(client)
    tree = await factories.company_tree(
        owner.instance_id, msps=1, customers_per_msp=1, computers_per_customer=0
    )
    (msp,) = tree.msps
    (customer,) = tree.customers[msp.id]
    _, user = await user_with_rights_on(client, owner, customer)  # its MSP out of sight
    hub = app.state.hub
    query = "subscription { customerStatusChanged { name parent { name } } }"
    async with contextlib.AsyncExitStack() as stack:
        sockets = []
        for token in (owner.token, user.token, owner.token):
            before = hub.subscriber_count
            sockets.append(await stack.enter_async_context(subscribed(server_url, token, query)))
            await settled(hub, before)
        rendered = renders()
        await client.query(SKIP, {"id": factories.global_id(customer)}, owner.token)
        got = [await received(socket, at_least=1) for socket in sockets]
    seen_by_owner = [
        {"customerStatusChanged": {"name": customer.name, "parent": {"name": msp.name}}}
    ]
    assert got == [
        seen_by_owner,
        [{"customerStatusChanged": {"name": customer.name, "parent": None}}],
        seen_by_owner,
    ]
    assert renders() - rendered == (3 if settings.execution_shortcuts else 0)


async def test_an_error_while_rendering_an_event_reaches_the_subscriber_masked(
    client, server_url, app, monkeypatch
):
    owner = await factories.owner(client)
    tree = await factories.company_tree(
        owner.instance_id, msps=1, customers_per_msp=1, computers_per_customer=0
    )
    (customer,) = tree.all_customers
    hub = app.state.hub

    def broken(company: Company) -> str:
        raise RuntimeError("internal detail of the failure")

    # reading a row's name fails (the constructor's write goes nowhere)
    monkeypatch.setattr(
        Company, "name", property(broken, lambda company, value: None), raising=False
    )
    before = hub.subscriber_count
    async with subscribed(
        server_url, owner.token, "subscription { customerStatusChanged { id name } }"
    ) as socket:
        await settled(hub, before)
        await client.query(SKIP, {"id": factories.global_id(customer)}, owner.token)
        (text,) = await raw_messages(socket, 1)
    assert "internal detail" not in text
    message = json.loads(text)
    assert message["payload"]["errors"] == [
        {
            "message": "Unexpected error.",
            "locations": [{"line": 1, "column": 43}],
            "path": ["customerStatusChanged", "name"],
            "extensions": {"code": "INTERNAL_SERVER_ERROR"},
        }
    ]

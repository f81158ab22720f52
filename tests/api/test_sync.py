"""connectMspAdministrator, startSync, the instance's MSP status and the syncStatus
subscription, against the simulator over real HTTP (and a real websocket)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from server.domain import global_ids
from server.domain.sync_runs import WITHHELD_ERROR
from server.models import SyncRun
from server.models.enums import Area, Level, SyncState
from server.upstream.codes import CUSTOMER
from server.upstream.simulator import DEFAULT_PASSWORD, DEFAULT_USERNAME, Simulator, UpstreamTree
from tests import factories
from tests.api.scoped_users import all_group, group_of, scoped_user
from tests.api.sockets import subscribed
from tests.graphql_client import GraphQLClient, error_codes
from tests.sync_support import connected_tenant
from tests.waiting import eventually, subscriptions_open

CONNECT = """mutation($input: ConnectMspAdministratorInput!) {
  connectMspAdministrator(input: $input) {
    instance { mspStatus mspAdministratorUrl }
    errors { code message field }
    clientMutationId
  }
}"""
START = """mutation($input: StartSyncInput) {
  startSync(input: $input) {
    run { id state trigger phase companiesSeen }
    errors { code message field }
    clientMutationId
  }
}"""
STATUS = """{ instance { mspStatus lastSync { id state trigger error created unlinked } } }"""
SUBSCRIBE = """subscription {
  syncStatus { id state phase companiesSeen created updated moved unlinked relinked error }
}"""


pytestmark = pytest.mark.upstream_tree(40, 11)


def credentials(sim: Simulator, **changes: str) -> dict[str, Any]:
    return {
        "input": {
            "url": sim.url,
            "username": DEFAULT_USERNAME,
            "password": DEFAULT_PASSWORD,
            "clientMutationId": "c1",
            **changes,
        }
    }


async def finished(client: GraphQLClient, token: str) -> dict[str, Any]:
    """The instance once its last sync has ended. Not the first answer saying so: a response's
    fields are read one after the other, so `mspStatus` may have been read just before the run
    ended and `lastSync` just after (seen under load on PostgreSQL)."""

    async def ended() -> dict[str, Any] | None:
        instance = (await client.query(STATUS, token=token))["instance"]
        last = instance["lastSync"]
        done = last and last["state"] in ("SUCCEEDED", "FAILED")
        return instance if done and instance["mspStatus"] != "SYNCHRONIZING" else None

    return await eventually(ended, within=20, what="the last sync ended")


async def test_connecting_checks_the_account_and_starts_the_first_sync(
    client: GraphQLClient, sim: Simulator
) -> None:
    owner = await factories.owner(client)
    body = await client.execute(CONNECT, credentials(sim), token=owner.token)
    payload = body["data"]["connectMspAdministrator"]
    assert payload["errors"] == [] and payload["clientMutationId"] == "c1"
    assert payload["instance"]["mspAdministratorUrl"] == sim.url
    assert payload["instance"]["mspStatus"] in ("SYNCHRONIZING", "SYNCHRONIZED")
    assert DEFAULT_PASSWORD not in json.dumps(body).replace(DEFAULT_USERNAME, "")

    instance = await finished(client, owner.token)
    assert instance["mspStatus"] == "SYNCHRONIZED"
    assert instance["lastSync"]["state"] == "SUCCEEDED", instance
    assert instance["lastSync"]["trigger"] == "connect"
    data = await client.query(
        "{ rootCompanies { type descendants(first: 0) { totalCount } } "
        "managedCustomers(first: 1) { statusCounts { notSetUp normal unlinked } } }",
        token=owner.token,
    )
    top = data["rootCompanies"][0]
    assert top["type"] == "DISTRIBUTOR"  # the read-only ancestor shows the whole hierarchy
    assert top["descendants"]["totalCount"] >= 40
    counts = data["managedCustomers"]["statusCounts"]
    assert counts["notSetUp"] == len(sim.tree.of_type(CUSTOMER))


async def test_wrong_credentials_answer_invalid_credentials(
    client: GraphQLClient, sim: Simulator
) -> None:
    owner = await factories.owner(client)
    data = await client.query(CONNECT, credentials(sim, password="hunter2"), token=owner.token)
    payload = data["connectMspAdministrator"]
    assert [e["code"] for e in payload["errors"]] == ["INVALID_CREDENTIALS"]
    assert payload["instance"] is None
    assert "hunter2" not in json.dumps(data)
    assert (await client.query(STATUS, token=owner.token))["instance"]["mspStatus"] == (
        "DISCONNECTED"
    )


async def test_an_unreachable_upstream_answers_upstream_error_naming_the_host(
    client: GraphQLClient,
) -> None:
    owner = await factories.owner(client)
    async with Simulator(UpstreamTree.generate(10, seed=2)) as gone:
        variables = credentials(gone)
    data = await client.query(CONNECT, variables, token=owner.token)
    (error,) = data["connectMspAdministrator"]["errors"]
    assert (error["code"], error["field"]) == ("UPSTREAM_ERROR", "url")
    assert error["message"] == "could not reach the MSP Administrator at 127.0.0.1"


async def test_a_url_that_is_not_http_is_invalid_input(
    client: GraphQLClient, sim: Simulator
) -> None:
    owner = await factories.owner(client)
    data = await client.query(CONNECT, credentials(sim, url="ftp://x"), token=owner.token)
    (error,) = data["connectMspAdministrator"]["errors"]
    assert (error["code"], error["field"]) == ("INVALID_INPUT", "url")


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
        "http://localhost:5432",
        "http://0xa9fea9fe/",
        "https://mspapi.eset.com@10.0.0.1/",
    ],
)
async def test_connecting_to_a_host_not_allowed_answers_invalid_input_and_stores_nothing(
    client: GraphQLClient, url: str
) -> None:
    owner = await factories.owner(client)
    variables = {"input": {"url": url, "username": DEFAULT_USERNAME, "password": "pw"}}
    data = await client.query(CONNECT, variables, token=owner.token)
    (error,) = data["connectMspAdministrator"]["errors"]
    assert (error["code"], error["field"]) == ("INVALID_INPUT", "url")
    assert data["connectMspAdministrator"]["instance"] is None
    status = await client.query(STATUS, token=owner.token)
    assert status["instance"] == {"mspStatus": "DISCONNECTED", "lastSync": None}


async def test_a_distributor_account_answers_import_not_allowed(
    client: GraphQLClient, sim: Simulator
) -> None:
    owner = await factories.owner(client)
    sim.add_user("dist@msp.example", "pw", sim.tree.distributor_id)
    variables = credentials(sim, username="dist@msp.example", password="pw")
    data = await client.query(CONNECT, variables, token=owner.token)
    (error,) = data["connectMspAdministrator"]["errors"]
    assert error["code"] == "IMPORT_NOT_ALLOWED"
    assert "Distributor" in error["message"]


async def test_start_sync_without_a_connection_answers_upstream_not_connected(
    client: GraphQLClient,
) -> None:
    owner = await factories.owner(client)
    data = await client.query(START, {"input": {"clientMutationId": "s"}}, token=owner.token)
    payload = data["startSync"]
    assert [e["code"] for e in payload["errors"]] == ["UPSTREAM_NOT_CONNECTED"]
    assert (payload["run"], payload["clientMutationId"]) == (None, "s")


async def test_start_sync_needs_a_signed_in_viewer(client: GraphQLClient) -> None:
    body = await client.execute(START, {})
    assert error_codes(body) == ["UNAUTHENTICATED"]


async def test_start_sync_twice_returns_the_running_run(
    client: GraphQLClient, sim: Simulator
) -> None:
    owner = await connected_tenant(client, sim)
    sim.faults.delay = 0.1
    first = (await client.query(START, {}, token=owner.token))["startSync"]
    second = (await client.query(START, {}, token=owner.token))["startSync"]
    assert first["errors"] == second["errors"] == []
    assert first["run"]["id"] == second["run"]["id"]
    assert first["run"]["trigger"] == "manual"
    assert first["run"]["state"] in ("QUEUED", "RUNNING")
    status = await client.query(STATUS, token=owner.token)
    assert status["instance"]["mspStatus"] == "SYNCHRONIZING"
    instance = await finished(client, owner.token)
    assert instance["lastSync"]["id"] == first["run"]["id"]
    assert instance["lastSync"]["state"] == "SUCCEEDED"
    runs = await client.query("{ syncRuns { totalCount } }", token=owner.token)
    assert runs["syncRuns"]["totalCount"] == 1


async def test_a_subscriber_sees_the_progress_and_end_of_a_run_started_by_another_client(
    client: GraphQLClient, server_url: str
) -> None:
    async with Simulator(UpstreamTree.generate(400, seed=3)) as sim:
        owner = await connected_tenant(client, sim)
        sim.faults.delay = 0.05
        before = subscriptions_open()
        async with subscribed(server_url, owner.token, SUBSCRIBE) as socket:
            await eventually(lambda: subscriptions_open() > before, what="it listens")

            started = (await client.query(START, {}, token=owner.token))["startSync"]["run"]
            seen: list[dict[str, Any]] = []
            while not seen or seen[-1]["state"] not in ("SUCCEEDED", "FAILED"):
                message = json.loads(await asyncio.wait_for(socket.recv(), 20))
                assert message["type"] == "next", message
                seen.append(message["payload"]["data"]["syncStatus"])
    assert {event["id"] for event in seen} == {started["id"]}
    progress = [e for e in seen if e["state"] == "RUNNING" and e["phase"] == "fetch"]
    assert any(0 < e["companiesSeen"] < 400 for e in progress), seen
    assert any(e["phase"] == "apply" for e in seen)
    last = seen[-1]
    assert (last["state"], last["phase"], last["error"]) == ("SUCCEEDED", "done", None)
    assert last["companiesSeen"] == 400 and last["created"] > 400


async def tenant_with_a_run(client: GraphQLClient, **values: Any) -> tuple[Any, Any, SyncRun]:
    """An owner, a tree with one MSP, and a run of the instance holding `values`."""
    owner = await factories.owner(client)
    assert owner.instance_id is not None
    tree = await factories.company_tree(owner.instance_id, msps=1, computers_per_customer=0)
    return (
        owner,
        tree,
        await SyncRun.create(instance_id=owner.instance_id, trigger="manual", **values),
    )


async def test_a_runs_error_is_told_only_to_viewers_with_sync_rights_on_the_whole_instance(
    client: GraphQLClient,
) -> None:
    """The error text can name upstream companies and emails of the whole account."""
    error = "upstream refused: boss@globex.example is not an administrator of Globex Corp"
    owner, tree, run = await tenant_with_a_run(client, state=SyncState.FAILED, error=error)
    sync_read = {Area.SYNC: Level.READ}
    whole = await scoped_user(
        client, owner.instance_id, [await all_group(owner.instance_id)], sync_read
    )
    partial = await scoped_user(
        client, owner.instance_id, [await group_of(tree.msps[0])], sync_read
    )
    query = """query($id: ID!) { node(id: $id) { ... on SyncRun { error } }
      syncRuns(first: 1) { edges { node { error } } } instance { lastSync { error } } }"""
    for token, expected in (
        (owner.token, error),
        (whole.token, error),
        (partial.token, WITHHELD_ERROR),
    ):
        data = await client.query(query, {"id": global_ids.encode("SyncRun", run.id)}, token)
        assert data["node"]["error"] == expected
        assert data["syncRuns"]["edges"][0]["node"]["error"] == expected
        assert data["instance"]["lastSync"]["error"] == expected
    succeeded = await SyncRun.create(
        instance_id=owner.instance_id, trigger="manual", state=SyncState.SUCCEEDED
    )
    data = await client.query(
        query, {"id": global_ids.encode("SyncRun", succeeded.id)}, partial.token
    )
    assert data["node"]["error"] is None and data["instance"]["lastSync"]["error"] is None


async def test_a_runs_license_counts_are_told_only_to_viewers_with_licenses_on_the_whole_instance(
    client: GraphQLClient,
) -> None:
    owner, tree, run = await tenant_with_a_run(
        client, state=SyncState.SUCCEEDED,
        licenses_seen=40, licenses_created=3, licenses_updated=2, licenses_removed=1,
    )  # fmt: skip
    top = await all_group(owner.instance_id)
    sync_only = {Area.SYNC: Level.READ}
    with_licenses = {Area.SYNC: Level.READ, Area.LICENSES: Level.READ}
    viewers = {
        "owner": owner.token,
        "licenses on All": (
            await scoped_user(client, owner.instance_id, [top], with_licenses)
        ).token,
        "no licenses": (await scoped_user(client, owner.instance_id, [top], sync_only)).token,
        "licenses on an MSP": (
            await scoped_user(
                client, owner.instance_id, [await group_of(tree.msps[0])], with_licenses
            )
        ).token,
    }
    counts = {"seen": 40, "created": 3, "updated": 2, "removed": 1}
    query = """query($id: ID!) {
      node(id: $id) { ... on SyncRun { licenses { seen created updated removed } } }
      instance { lastSync { licenses { seen created updated removed } } } }"""
    for name, token in viewers.items():
        data = await client.query(query, {"id": global_ids.encode("SyncRun", run.id)}, token)
        expected = counts if name in ("owner", "licenses on All") else None
        assert data["node"]["licenses"] == expected, name
        assert data["instance"]["lastSync"]["licenses"] == expected, name

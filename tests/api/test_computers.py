"""Removing computers and settling duplicates through GraphQL, with agents enrolled and checking
in through the console's own agent API on a real uvicorn: a removed computer's agent token is
refused at once; scope, audit and bad input as for every mutation."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from server.domain import global_ids
from server.domain.instances import create_group
from server.models import AuditEntry, Computer, db
from server.models.enums import Area, GroupKind, Level
from tests import factories
from tests.api.scoped_users import group_of, scoped_user
from tests.graphql_client import error_codes

CREATE_INSTALLER = """mutation($input: CreateInstallerInput!) { createInstaller(input: $input) {
  token errors { code } } }"""
NODE = """query($id: ID!) { node(id: $id) { id ... on Computer { name hardwareId
  duplicateOf { id } group { id } } } }"""


def gid(type_name: str, key: int) -> str:
    return global_ids.encode(type_name, key)


def key_of(global_id: str) -> int:
    return global_ids.decode(global_id)[1]


class Agents:
    """Agents of one tenant, enrolling and checking in over HTTP."""

    def __init__(self, http: httpx.AsyncClient) -> None:
        self.http = http

    async def enrol(self, installer_token: str, hardware_id: str, **fields: Any) -> dict[str, Any]:
        body = {"hardwareId": hardware_id, "hostname": f"pc-{hardware_id}", "os": "Windows 11",
                "agentVersion": "11.1", **fields}  # fmt: skip
        response = await self.http.post(
            "/agent/v1/enroll", json=body, headers={"authorization": f"Bearer {installer_token}"}
        )
        assert response.status_code == 201, response.text
        return dict(response.json())

    async def checkin(self, agent_token: str) -> int:
        response = await self.http.post(
            "/agent/v1/checkin", json={}, headers={"authorization": f"Bearer {agent_token}"}
        )
        return response.status_code


@pytest.fixture
async def agents(server_url: str) -> Any:
    async with httpx.AsyncClient(base_url=server_url) as http:
        yield Agents(http)


@pytest.fixture
async def tenant(client: Any) -> Any:
    """An owner, a customer with a custom group `Laptops`, and an installer for each group."""
    owner = await factories.owner(client)
    tree = await factories.company_tree(
        owner.instance_id, msps=1, customers_per_msp=2, computers_per_customer=0
    )
    customer = tree.all_customers[0]
    group = await group_of(customer)
    laptops = await create_group(owner.instance_id, "Laptops", GroupKind.CUSTOM, group, None)
    tokens = {}
    for name, group_id in (("office", None), ("laptops", gid("StaticGroup", laptops.id))):
        fields = {"companyId": gid("Company", customer.id), "groupId": group_id}
        made = await client.query(CREATE_INSTALLER, {"input": fields}, owner.token)
        tokens[name] = made["createInstaller"]["token"]
    return owner, tree, customer, group, laptops, tokens


async def rows(instance_id: int) -> list[dict[str, Any]]:
    return await db.fetch(
        "SELECT id, group_id, duplicate_of_id, agent_token_hash, name FROM computer "
        "WHERE instance_id = ? ORDER BY id",
        [instance_id],
    )


async def remove(client: Any, token: str, computer_id: str) -> dict[str, Any]:
    variables = {"input": {"computerId": computer_id, "clientMutationId": "r1"}}
    data = await client.operation("RemoveComputer", variables, token)
    return dict(data["removeComputer"])


async def resolve(client: Any, token: str, computer_id: str, keep: str) -> dict[str, Any]:
    data = await client.operation(
        "ResolveDuplicateComputer", {"input": {"computerId": computer_id, "keep": keep}}, token
    )
    return dict(data["resolveDuplicateComputer"])


async def test_a_removed_computers_agent_token_is_refused_at_once(client, tenant, agents):
    owner, _, _, group, _, tokens = tenant
    agent = await agents.enrol(tokens["office"], "hw-remove")
    assert await agents.checkin(agent["agentToken"]) == 200  # cached by the agent API

    payload = await remove(client, owner.token, agent["computerId"])

    assert payload == {"removedComputerId": agent["computerId"], "errors": [],
                       "clientMutationId": "r1"}  # fmt: skip
    assert await agents.checkin(agent["agentToken"]) == 401
    assert (await client.query(NODE, {"id": agent["computerId"]}, owner.token))["node"] is None
    assert not await Computer.filter(id=key_of(agent["computerId"])).exists()
    entry = await AuditEntry.filter(instance_id=owner.instance_id, action="removeComputer").get()
    assert (entry.outcome, entry.object_id, entry.group_path) == (
        "SUCCESS", agent["computerId"], group.path,
    )  # fmt: skip
    assert entry.detail["name"] == "pc-hw-remove"


async def test_keep_existing_removes_the_duplicate_and_kills_its_token(client, tenant, agents):
    owner, _, _, _, _, tokens = tenant
    existing = await agents.enrol(tokens["office"], "hw-keep")
    duplicate = await agents.enrol(tokens["office"], "hw-keep", hostname="intruder")
    assert await agents.checkin(duplicate["agentToken"]) == 200

    payload = await resolve(client, owner.token, duplicate["computerId"], "KEEP_EXISTING")

    assert payload["errors"] == []
    assert payload["computer"]["id"] == existing["computerId"]
    assert payload["computer"]["duplicateOf"] is None
    assert await agents.checkin(duplicate["agentToken"]) == 401
    assert await agents.checkin(existing["agentToken"]) == 200
    assert not await Computer.filter(id=key_of(duplicate["computerId"])).exists()
    entry = await AuditEntry.filter(
        instance_id=owner.instance_id, action="resolveDuplicateComputer"
    ).get()
    assert (entry.outcome, entry.object_id) == ("SUCCESS", duplicate["computerId"])


async def test_keep_new_puts_the_duplicate_in_the_enrolled_computers_place(client, tenant, agents):
    owner, _, _, _, laptops, tokens = tenant
    existing = await agents.enrol(tokens["laptops"], "hw-reimaged")
    new = await agents.enrol(tokens["office"], "hw-reimaged", hostname="reimaged")
    another = await agents.enrol(tokens["office"], "hw-reimaged", hostname="third")

    payload = await resolve(client, owner.token, new["computerId"], "KEEP_NEW")

    assert payload["errors"] == []
    kept = payload["computer"]
    assert (kept["id"], kept["name"], kept["duplicateOf"]) == (new["computerId"], "reimaged", None)
    assert kept["group"] == {"id": gid("StaticGroup", laptops.id), "name": "Laptops"}
    assert await agents.checkin(existing["agentToken"]) == 401
    assert await agents.checkin(new["agentToken"]) == 200
    third = (await client.query(NODE, {"id": another["computerId"]}, owner.token))["node"]
    assert third["duplicateOf"] == {"id": new["computerId"]}  # now a duplicate of the kept one
    # the kept computer continues with its own token from now on
    again = await agents.enrol(tokens["office"], "hw-reimaged", agentToken=new["agentToken"])
    assert again["computerId"] == new["computerId"]


async def test_duplicates_are_listed_with_what_they_claim(client, tenant, agents):
    owner, _, _, _, _, tokens = tenant
    existing = await agents.enrol(tokens["office"], "hw-listed")
    duplicate = await agents.enrol(tokens["office"], "hw-listed")
    await agents.enrol(tokens["office"], "hw-alone")
    data = await client.operation("DuplicateComputers", {}, owner.token)
    edges = data["computers"]["edges"]
    assert data["computers"]["totalCount"] == 1
    assert edges[0]["node"]["id"] == duplicate["computerId"]
    assert edges[0]["node"]["duplicateOf"]["id"] == existing["computerId"]
    assert edges[0]["node"]["hardwareId"] == "hw-listed"
    others = await client.query(
        "{ computers(duplicates: false) { totalCount edges { node { duplicateOf { id } } } } }",
        token=owner.token,
    )
    assert others["computers"]["totalCount"] == 2
    assert all(e["node"]["duplicateOf"] is None for e in others["computers"]["edges"])


async def test_a_computer_with_duplicates_is_not_removed_until_they_are_settled(
    client, tenant, agents
):
    owner, _, _, _, _, tokens = tenant
    existing = await agents.enrol(tokens["office"], "hw-contested")
    await agents.enrol(tokens["office"], "hw-contested")
    before = await rows(owner.instance_id)
    payload = await remove(client, owner.token, existing["computerId"])
    assert [(e["code"], e["field"]) for e in payload["errors"]] == [
        ("INVALID_TRANSITION", "computerId")
    ]
    assert payload["removedComputerId"] is None
    assert await rows(owner.instance_id) == before
    assert await agents.checkin(existing["agentToken"]) == 200


async def test_only_a_duplicate_can_be_resolved(client, tenant, agents):
    owner, _, _, _, _, tokens = tenant
    alone = await agents.enrol(tokens["office"], "hw-single")
    before = await rows(owner.instance_id)
    for keep in ("KEEP_NEW", "KEEP_EXISTING"):
        payload = await resolve(client, owner.token, alone["computerId"], keep)
        assert [e["code"] for e in payload["errors"]] == ["INVALID_TRANSITION"]
        assert payload["computer"] is None
    assert await rows(owner.instance_id) == before


async def test_both_need_write_on_computers_and_hide_what_is_out_of_scope(client, tenant, agents):
    owner, tree, _, group, laptops, tokens = tenant
    existing = await agents.enrol(tokens["office"], "hw-scope")
    duplicate = await agents.enrol(tokens["laptops"], "hw-scope")
    stranger = await factories.owner(client)
    neighbour = await scoped_user(
        client, owner.instance_id, [await group_of(tree.all_customers[1])]
    )
    reader = await scoped_user(client, owner.instance_id, [group], {Area.COMPUTERS: Level.READ})
    no_computers = await scoped_user(
        client, owner.instance_id, [group], {Area.COMPANIES: Level.WRITE}
    )
    laptop_admin = await scoped_user(
        client, owner.instance_id, [laptops], {Area.COMPUTERS: Level.WRITE}
    )
    before = await rows(owner.instance_id)
    expectations = [
        (stranger.token, "NOT_FOUND"),
        (neighbour.token, "NOT_FOUND"),
        (no_computers.token, "NOT_FOUND"),
        (reader.token, "FORBIDDEN"),
    ]
    for token, code in expectations:
        for target in (existing, duplicate):
            assert [e["code"] for e in (await remove(client, token, target["computerId"]))[
                "errors"]] == [code]  # fmt: skip
        for keep in ("KEEP_NEW", "KEEP_EXISTING"):
            payload = await resolve(client, token, duplicate["computerId"], keep)
            assert [e["code"] for e in payload["errors"]] == [code]
    # Write on the duplicate's group only: it sees no enrolled computer, may not remove it ...
    seen = await client.query(NODE, {"id": duplicate["computerId"]}, laptop_admin.token)
    assert seen["node"]["duplicateOf"] is None
    payload = await resolve(client, laptop_admin.token, duplicate["computerId"], "KEEP_NEW")
    assert [e["code"] for e in payload["errors"]] == ["FORBIDDEN"]
    assert await rows(owner.instance_id) == before
    failures = await AuditEntry.filter(
        instance_id=owner.instance_id, action__in=["removeComputer", "resolveDuplicateComputer"]
    ).values_list("outcome", flat=True)
    assert set(failures) == {"NOT_FOUND", "FORBIDDEN"}
    # ... but may let the duplicate go; the computer kept is out of its sight.
    payload = await resolve(client, laptop_admin.token, duplicate["computerId"], "KEEP_EXISTING")
    assert payload["errors"] == [] and payload["computer"] is None
    assert await agents.checkin(duplicate["agentToken"]) == 401
    assert await agents.checkin(existing["agentToken"]) == 200


@pytest.mark.parametrize(
    "computer_id",
    ["garbage", "", "x" * 5000, gid("Company", 1), "Q29tcHV0ZXI6LTE", "Q29tcHV0ZXI6YWJj"],
    ids=["garbage", "empty", "oversized", "another type", "negative", "not a number"],
)
async def test_a_malformed_computer_id_is_a_bad_user_input(client, tenant, computer_id):
    owner = tenant[0]
    before = await rows(owner.instance_id)
    for document, extra in (
        ("mutation($input: RemoveComputerInput!) { removeComputer(input: $input) "
         "{ removedComputerId } }", {}),
        ("mutation($input: ResolveDuplicateComputerInput!) { resolveDuplicateComputer("
         "input: $input) { computer { id } } }", {"keep": "KEEP_NEW"}),
    ):  # fmt: skip
        body = await client.execute(
            document, {"input": {"computerId": computer_id, **extra}}, owner.token
        )
        assert body.get("data") is None or set(body["data"].values()) == {None}
        assert error_codes(body) == ["BAD_USER_INPUT"], body
    assert await rows(owner.instance_id) == before


async def test_a_computer_that_does_not_exist_is_not_found(client, tenant):
    owner = tenant[0]
    payload = await remove(client, owner.token, gid("Computer", 10**9))
    assert [e["code"] for e in payload["errors"]] == ["NOT_FOUND"]
    payload = await resolve(client, owner.token, gid("Computer", 10**9), "KEEP_NEW")
    assert [e["code"] for e in payload["errors"]] == ["NOT_FOUND"]


async def test_an_unknown_resolution_is_refused_before_anything_runs(client, tenant, agents):
    owner, _, _, _, _, tokens = tenant
    await agents.enrol(tokens["office"], "hw-enum")
    duplicate = await agents.enrol(tokens["office"], "hw-enum")
    before = await rows(owner.instance_id)
    body = await client.execute(
        "mutation($input: ResolveDuplicateComputerInput!) { resolveDuplicateComputer("
        "input: $input) { computer { id } } }",
        {"input": {"computerId": duplicate["computerId"], "keep": "KEEP_BOTH"}},
        owner.token,
    )
    assert body.get("data") is None and body["errors"]
    assert await rows(owner.instance_id) == before


async def test_an_instance_with_duplicates_is_removed_whole(client, tenant, agents):
    owner, _, _, _, _, tokens = tenant
    existing = await agents.enrol(tokens["office"], "hw-instance")
    await agents.enrol(tokens["office"], "hw-instance")
    data = await client.operation(
        "RemoveInstance", {"input": {"instanceId": gid("Instance", owner.instance_id)}}, owner.token
    )
    assert data["removeInstance"]["errors"] == []
    assert await rows(owner.instance_id) == []
    assert not await Computer.filter(id=key_of(existing["computerId"])).exists()

"""Installers through GraphQL, and the agents they enrol through the console's own agent API
on a real uvicorn."""

import asyncio
import datetime as dt
import os
import stat
import subprocess
from dataclasses import replace

import httpx
import pytest

from server.domain import global_ids, installers
from server.domain.instances import create_group
from server.models import Computer, Installer
from server.models.enums import Area, GroupKind, Level
from tests import factories
from tests.api.scoped_users import group_of, scoped_user
from tests.graphql_client import error_codes
from tests.waiting import eventually

CREATE = """mutation($input: CreateInstallerInput!) { createInstaller(input: $input) {
  token config installCommand errors { code field message }
  installer { id name revoked agentEndpoint expiresAt maxEnrolments enrolments
              company { name } group { name } } } }"""
REVOKE = """mutation($input: RevokeInstallerInput!) { revokeInstaller(input: $input) {
  errors { code } installer { id revoked } } }"""


@pytest.fixture
async def tenant(client):
    owner = await factories.owner(client)
    tree = await factories.company_tree(
        owner.instance_id, msps=2, customers_per_msp=1, computers_per_customer=0
    )
    return owner, tree


def company_id(company):
    return global_ids.encode("Company", company.id)


async def create(client, token, **fields):
    data = await client.query(CREATE, {"input": fields}, token)
    return data["createInstaller"]


async def test_an_installer_carries_what_an_agent_needs_and_its_token_once(
    client, tenant, settings
):
    owner, tree = tenant
    customer = tree.all_customers[0]
    payload = await create(client, owner.token, companyId=company_id(customer), name="Office")
    assert payload["errors"] == []
    installer = payload["installer"]
    assert installer["revoked"] is False and installer["agentEndpoint"] == settings.public_agent_url
    assert installer["group"]["name"] == customer.name == installer["company"]["name"]
    assert payload["config"]["installerToken"] == payload["token"]
    assert payload["config"]["enrollUrl"] == settings.public_agent_url + "/enroll"
    assert payload["token"] in payload["installCommand"]
    stored = await Installer.get(id=global_ids.decode(installer["id"])[1])
    assert stored.token_hash != payload["token"] and len(payload["token"]) > 40
    listed = await client.query(
        "query($id: ID!) { node(id: $id) { ... on Company { installers { totalCount "
        "edges { node { id name } } } } } }",
        {"id": company_id(customer)},
        owner.token,
    )
    assert listed["node"]["installers"]["edges"][0]["node"]["name"] == "Office"


async def test_agents_enrol_and_check_in_through_the_console(client, tenant, server_url):
    owner, tree = tenant
    customer = tree.all_customers[0]
    payload = await create(client, owner.token, companyId=company_id(customer))
    async with httpx.AsyncClient(base_url=server_url) as http:
        enrolled = await http.post(
            "/agent/v1/enroll",
            json={
                "hardwareId": "hw-1",
                "hostname": "desk-1",
                "os": "Windows 11",
                "agentVersion": "11.1",
            },
            headers={"authorization": f"Bearer {payload['token']}"},
        )
        assert enrolled.status_code == 201, enrolled.text
        agent = enrolled.json()
        checked = await http.post(
            "/agent/v1/checkin",
            json={"os": "Windows 11 Pro"},
            headers={"authorization": f"Bearer {agent['agentToken']}"},
        )
        assert checked.status_code == 200 and checked.json()["nextCheckInSeconds"] > 0

    async def checked_in() -> dict | None:  # check-ins are written in batches, once a second
        data = await client.query(
            "query($id: ID!) { node(id: $id) { ... on Computer { name os connectionStatus "
            "group { name } company { name } } } }",
            {"id": agent["computerId"]},
            owner.token,
        )
        return data["node"] if data["node"]["os"] == "Windows 11 Pro" else None

    computer = await eventually(checked_in, what="the check-in's details stored")
    assert computer == {
        "name": "desk-1",
        "os": "Windows 11 Pro",
        "connectionStatus": "CONNECTED",
        "group": {"name": customer.name},
        "company": {"name": customer.name},
    }


async def test_a_revoked_installer_enrols_nothing(client, tenant, server_url):
    owner, tree = tenant
    payload = await create(client, owner.token, companyId=company_id(tree.all_customers[0]))
    revoked = await client.query(
        REVOKE, {"input": {"installerId": payload["installer"]["id"]}}, owner.token
    )
    assert revoked["revokeInstaller"] == {
        "errors": [],
        "installer": {"id": payload["installer"]["id"], "revoked": True},
    }
    async with httpx.AsyncClient(base_url=server_url) as http:
        refused = await http.post(
            "/agent/v1/enroll",
            json={"hardwareId": "hw-2", "hostname": "x", "os": "y", "agentVersion": "1"},
            headers={"authorization": f"Bearer {payload['token']}"},
        )
    assert refused.status_code == 401


@pytest.mark.parametrize(
    "fields,code,field",
    [
        ({"name": "x" * 256}, "INVALID_INPUT", "name"),
        ({"expiresAt": "2001-01-01T00:00:00+00:00"}, "INVALID_INPUT", "expiresAt"),
        ({"maxEnrolments": 0}, "INVALID_INPUT", "maxEnrolments"),
        ({"maxEnrolments": -5}, "INVALID_INPUT", "maxEnrolments"),
        ({"maxEnrolments": 1_000_001}, "INVALID_INPUT", "maxEnrolments"),
    ],
)
async def test_bad_installer_input_is_refused_and_creates_nothing(
    client, tenant, fields, code, field
):
    owner, tree = tenant
    before = await Installer.filter(instance_id=owner.instance_id).count()
    payload = await create(
        client, owner.token, companyId=company_id(tree.all_customers[0]), **fields
    )
    assert [(e["code"], e["field"]) for e in payload["errors"]] == [(code, field)]
    assert payload["token"] is None
    assert await Installer.filter(instance_id=owner.instance_id).count() == before


@pytest.mark.parametrize("group_id", ["", "not an id", global_ids.encode("Company", 1)])
async def test_a_group_id_that_is_no_group_id_is_bad_input_not_the_default_group(
    client, tenant, group_id
):
    """An empty groupId once meant "the company's group"; every malformed id is refused."""
    owner, tree = tenant
    before = await Installer.filter(instance_id=owner.instance_id).count()
    variables = {"input": {"companyId": company_id(tree.all_customers[0]), "groupId": group_id}}
    body = await client.execute(CREATE, variables, owner.token)
    assert error_codes(body) == ["BAD_USER_INPUT"], body
    assert body["errors"][0]["extensions"]["field"] == "groupId"
    assert await Installer.filter(instance_id=owner.instance_id).count() == before


async def test_an_installer_for_another_companys_group_is_refused(client, tenant):
    owner, tree = tenant
    first, second = tree.all_customers[:2]
    other_group = global_ids.encode("StaticGroup", (await second.groups.all())[0].id)
    payload = await create(client, owner.token, companyId=company_id(first), groupId=other_group)
    assert payload["errors"][0]["code"] == "INVALID_INPUT"


async def test_another_instances_company_is_not_found(client, tenant):
    _, tree = tenant
    stranger = await factories.owner(client)
    payload = await create(client, stranger.token, companyId=company_id(tree.all_customers[0]))
    assert payload["errors"][0]["code"] == "NOT_FOUND"
    revoke = await client.query(
        REVOKE, {"input": {"installerId": global_ids.encode("Installer", 1)}}, stranger.token
    )
    assert revoke["revokeInstaller"]["errors"][0]["code"] == "NOT_FOUND"


async def test_the_config_file_is_downloaded_with_the_token_shown_at_creation(client, tenant):
    owner, tree = tenant
    payload = await create(client, owner.token, companyId=company_id(tree.all_customers[0]))
    body = {"installerId": payload["installer"]["id"], "token": payload["token"]}
    auth = {"authorization": f"Bearer {owner.token}"}
    ok = await client.http.post("/installers/config", json=body, headers=auth)
    assert ok.status_code == 200 and "attachment" in ok.headers["content-disposition"]
    assert ok.json()["installerToken"] == payload["token"]
    wrong = await client.http.post(
        "/installers/config", json={**body, "token": "nope"}, headers=auth
    )
    assert wrong.status_code == 404
    assert (await client.http.post("/installers/config", json=body)).status_code == 401
    stranger = await factories.owner(client)
    foreign = await client.http.post(
        "/installers/config", json=body, headers={"authorization": f"Bearer {stranger.token}"}
    )
    assert foreign.status_code == 404
    garbage = await client.http.post("/installers/config", content=b"[1, 2", headers=auth)
    assert garbage.status_code == 400


async def test_installers_expire(client, tenant):
    owner, tree = tenant
    soon = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)).isoformat()
    payload = await create(
        client, owner.token, companyId=company_id(tree.all_customers[0]), expiresAt=soon
    )
    assert payload["installer"]["expiresAt"].startswith(soon[:16])


INSTALLER_NODE = """query($id: ID!) { node(id: $id) { ... on Installer {
  id name company { id name } group { id name } } } }"""


async def test_an_installer_shows_only_to_viewers_who_may_see_its_company(client, tenant):
    """Rights on a custom group inside a customer do not reveal the customer through its
    installers: the installer stays out of sight, and cannot be revoked or downloaded."""
    owner, tree = tenant
    customer = tree.all_customers[0]
    customer_group = await group_of(customer)
    laptops = await create_group(owner.instance_id, "Laptops", GroupKind.CUSTOM, customer_group)
    payload = await create(
        client,
        owner.token,
        companyId=company_id(customer),
        groupId=global_ids.encode("StaticGroup", laptops.id),
    )
    installer_id = payload["installer"]["id"]
    inside = await scoped_user(client, owner.instance_id, [laptops], {Area.INSTALLERS: Level.WRITE})
    assert (await client.query(INSTALLER_NODE, {"id": installer_id}, inside.token)) == {
        "node": None
    }
    revoke = await client.query(REVOKE, {"input": {"installerId": installer_id}}, inside.token)
    assert revoke["revokeInstaller"]["errors"][0]["code"] == "NOT_FOUND"
    download = await client.http.post(
        "/installers/config",
        json={"installerId": installer_id, "token": payload["token"]},
        headers={"authorization": f"Bearer {inside.token}"},
    )
    assert download.status_code == 404
    assert not (await Installer.get(id=global_ids.decode(installer_id)[1])).revoked_at
    # with the customer's group in sight, the same installer shows with its company
    customer_user = await scoped_user(
        client, owner.instance_id, [customer_group], {Area.INSTALLERS: Level.READ}
    )
    seen = await client.query(INSTALLER_NODE, {"id": installer_id}, customer_user.token)
    assert seen["node"]["company"] == {"id": company_id(customer), "name": customer.name}
    assert seen["node"]["group"] == {
        "id": global_ids.encode("StaticGroup", laptops.id),
        "name": "Laptops",
    }


async def test_an_installer_expires_after_the_configured_lifetime_unless_told(
    client, tenant, settings
):
    owner, tree = tenant
    before = dt.datetime.now(dt.UTC)
    payload = await create(client, owner.token, companyId=company_id(tree.all_customers[0]))
    expires = dt.datetime.fromisoformat(payload["installer"]["expiresAt"])
    ttl = dt.timedelta(days=settings.installer_ttl_days)
    assert before + ttl <= expires <= dt.datetime.now(dt.UTC) + ttl
    setup = await client.query(
        """mutation($input: SetupCustomerInput!) { setupCustomer(input: $input) {
             errors { code } installer { expiresAt } } }""",
        {"input": {"customerId": company_id(tree.all_customers[1])}},
        owner.token,
    )
    expires = dt.datetime.fromisoformat(setup["setupCustomer"]["installer"]["expiresAt"])
    assert before + ttl <= expires <= dt.datetime.now(dt.UTC) + ttl


async def test_an_installer_counts_its_enrolments_up_to_its_cap(client, tenant, server_url):
    owner, tree = tenant
    payload = await create(
        client, owner.token, companyId=company_id(tree.all_customers[0]), maxEnrolments=1
    )
    assert (payload["installer"]["maxEnrolments"], payload["installer"]["enrolments"]) == (1, 0)
    body = {"hostname": "x", "os": "y", "agentVersion": "1"}
    auth = {"authorization": f"Bearer {payload['token']}"}
    async with httpx.AsyncClient(base_url=server_url) as http:
        first = await http.post("/agent/v1/enroll", json={"hardwareId": "a", **body}, headers=auth)
        second = await http.post("/agent/v1/enroll", json={"hardwareId": "b", **body}, headers=auth)
    assert (first.status_code, second.status_code) == (201, 401)
    read = await client.query(
        "query($id: ID!) { node(id: $id) { ... on Installer { enrolments maxEnrolments } } }",
        {"id": payload["installer"]["id"]},
        owner.token,
    )
    assert read["node"] == {"enrolments": 1, "maxEnrolments": 1}


def run_printed_command(command: str, state: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MSP_AGENT_STATE_DIR": state}
    return subprocess.run(
        ["/bin/sh", "-c", command], env=env, capture_output=True, text=True, timeout=60
    )


async def test_the_printed_command_enrols_and_run_again_re_enrols_the_same_computer(
    client, tenant, server_url, settings, tmp_path
):
    owner, tree = tenant
    payload = await create(client, owner.token, companyId=company_id(tree.all_customers[0]))
    installer = await Installer.get(id=global_ids.decode(payload["installer"]["id"])[1])
    assert payload["installCommand"] == installers.installer_command(
        installer, payload["token"], settings
    )
    # What createInstaller prints, for a console whose public agent URL is this test server.
    here = replace(settings, public_agent_url=f"{server_url}/agent/v1")
    command = installers.installer_command(installer, payload["token"], here)
    state = tmp_path / "agent state"

    first = await asyncio.to_thread(run_printed_command, command, str(state))
    assert first.returncode == 0, first.stderr
    computer_id = first.stdout.strip().removeprefix("enrolled: computer ")
    first_token = (state / "agent-token").read_text()
    assert stat.S_IMODE(os.stat(state / "agent-token").st_mode) == 0o600

    second = await asyncio.to_thread(run_printed_command, command, str(state))
    assert second.returncode == 0, second.stderr
    assert second.stdout.strip() == f"enrolled: computer {computer_id}"
    second_token = (state / "agent-token").read_text()
    assert second_token != first_token
    async with httpx.AsyncClient(base_url=server_url) as http:
        for token, status in ((first_token, 401), (second_token, 200)):
            answer = await http.post(
                "/agent/v1/checkin", json={}, headers={"authorization": f"Bearer {token}"}
            )
            assert answer.status_code == status
    stored = await Computer.filter(instance_id=owner.instance_id)
    assert [global_ids.encode("Computer", c.id) for c in stored] == [computer_id]
    assert stored[0].hardware_id == (state / "hardware-id").read_text()

"""The audit log: every mutation leaves one entry (success with its change, failure after the
rollback), and it is read through the AUDIT scope."""

from __future__ import annotations

import pytest

from server.domain import global_ids
from server.models import AuditEntry
from server.models.enums import Area, Level
from tests import factories
from tests.api.scoped_users import PASSWORD, group_of, scoped_user

LOG = """query($first: Int, $after: String) { auditLog(first: $first, after: $after) {
  totalCount pageInfo { hasNextPage endCursor }
  edges { node { id action objectType objectId actorEmail outcome detail createdAt
                 actor { email } } } } }"""
SKIP = """mutation($input: SkipCustomerSetupInput!) { skipCustomerSetup(input: $input) {
  errors { code } } }"""


def gid(type_name: str, key: int) -> str:
    return global_ids.encode(type_name, key)


async def entries(instance_id: int) -> list[AuditEntry]:
    return await AuditEntry.filter(instance_id=instance_id).order_by("id")


@pytest.fixture
async def world(client):
    owner = await factories.owner(client)
    tree = await factories.company_tree(
        owner.instance_id, msps=2, customers_per_msp=2, computers_per_customer=0
    )
    return owner, tree


async def test_a_success_and_a_failure_each_leave_one_entry(client, world):
    owner, tree = world
    customer = tree.all_customers[0]
    before = len(await entries(owner.instance_id))
    for _ in range(2):
        await client.query(
            SKIP, {"input": {"customerId": gid("Company", customer.id)}}, owner.token
        )
    new = (await entries(owner.instance_id))[before:]
    assert [(e.action, e.outcome) for e in new] == [
        ("skipCustomerSetup", "SUCCESS"),
        ("skipCustomerSetup", "INVALID_TRANSITION"),
    ]
    success = new[0]
    assert success.object_type == "Company"
    assert success.object_id == gid("Company", customer.id)
    assert success.actor_email == owner.email
    assert success.group_path == customer.path
    log = await client.query(LOG, {"first": 2}, token=owner.token)
    assert [e["node"]["outcome"] for e in log["auditLog"]["edges"]] == [
        "INVALID_TRANSITION",
        "SUCCESS",
    ]
    assert log["auditLog"]["edges"][1]["node"]["actor"] == {"email": owner.email}


async def test_a_failed_setup_leaves_only_its_failure(client, world):
    owner, tree = world
    customer = tree.all_customers[1]
    before = len(await entries(owner.instance_id))
    payload = await client.query(
        """mutation($input: SetupCustomerInput!) { setupCustomer(input: $input) {
             errors { code } } }""",
        {
            "input": {
                "customerId": gid("Company", customer.id),
                "user": {"email": owner.email, "password": "a secret password"},
            }
        },
        token=owner.token,
    )
    assert payload["setupCustomer"]["errors"] == [{"code": "ALREADY_EXISTS"}]
    new = (await entries(owner.instance_id))[before:]
    assert [(e.action, e.outcome) for e in new] == [("setupCustomer", "ALREADY_EXISTS")]
    assert "a secret password" not in str(new[0].detail)


async def test_sign_ins_are_recorded_and_failed_ones_too(client, world):
    owner, tree = world
    user = await scoped_user(client, owner.instance_id, [await group_of(tree.msps[0])])
    refused = await client.query(
        factories.LOGIN, {"input": {"email": user.email, "password": "wrong", "via": None}}
    )
    assert refused["login"]["errors"][0]["code"] == "INVALID_CREDENTIALS"
    await client.query(
        factories.LOGIN,
        {"input": {"email": "nobody@example.test", "password": "wrong", "via": None}},
    )
    await client.query("mutation { logout { errors { code } } }", token=user.token)
    logged = [
        (e.action, e.outcome, e.actor_email)
        for e in await entries(owner.instance_id)
        if e.action in {"login", "logout"} and e.actor_email == user.email
    ]
    assert logged == [
        ("login", "SUCCESS", user.email),
        ("login", "INVALID_CREDENTIALS", user.email),
        ("logout", "SUCCESS", user.email),
    ]
    assert not await AuditEntry.filter(actor_email="nobody@example.test").exists()
    assert PASSWORD not in str([e.detail for e in await entries(owner.instance_id)])


async def test_the_log_is_read_through_the_audit_scope(client, world):
    owner, tree = world
    a_group = await group_of(tree.msps[0])
    auditor_a = await scoped_user(client, owner.instance_id, [a_group], {Area.AUDIT: Level.READ})
    no_audit = await scoped_user(client, owner.instance_id, [a_group], {Area.COMPANIES: Level.READ})
    for customer in tree.all_customers:
        await client.query(
            SKIP, {"input": {"customerId": gid("Company", customer.id)}}, owner.token
        )
    a_ids = {gid("Company", c.id) for c in tree.customers[tree.msps[0].id]}
    seen = await client.query(LOG, {"first": 100}, token=auditor_a.token)
    skipped = [
        e["node"]["objectId"]
        for e in seen["auditLog"]["edges"]
        if e["node"]["action"] == "skipCustomerSetup"
    ]
    assert set(skipped) == a_ids
    objects = {e["node"]["objectId"] for e in seen["auditLog"]["edges"]}
    assert not objects & {gid("Company", c.id) for c in tree.customers[tree.msps[1].id]}
    visible = await AuditEntry.filter(
        instance_id=owner.instance_id, group_path__startswith=a_group.path
    ).count()
    assert seen["auditLog"]["totalCount"] == visible
    assert (await client.query(LOG, token=no_audit.token))["auditLog"]["totalCount"] == 0
    everything = await client.query(LOG, {"first": 100}, token=owner.token)
    assert everything["auditLog"]["totalCount"] == len(await entries(owner.instance_id))
    # One entry by id, through node: visible to the auditor of A, null for the other one.
    entry_id = seen["auditLog"]["edges"][0]["node"]["id"]
    node = "query($id: ID!) { node(id: $id) { id ... on AuditEntry { action } } }"
    assert (await client.query(node, {"id": entry_id}, token=auditor_a.token))["node"]
    assert (await client.query(node, {"id": entry_id}, token=no_audit.token))["node"] is None


async def test_the_log_pages_newest_first(client, world):
    owner, tree = world
    for customer in tree.all_customers:
        await client.query(
            SKIP, {"input": {"customerId": gid("Company", customer.id)}}, owner.token
        )
    first = (await client.query(LOG, {"first": 2}, token=owner.token))["auditLog"]
    assert first["pageInfo"]["hasNextPage"]
    second = (
        await client.query(
            LOG, {"first": 2, "after": first["pageInfo"]["endCursor"]}, token=owner.token
        )
    )["auditLog"]
    ids = [e["node"]["id"] for e in first["edges"] + second["edges"]]
    keys = [global_ids.decode(i)[1] for i in ids]
    assert keys == sorted(keys, reverse=True) and len(set(keys)) == 4


async def test_users_and_permission_sets_are_filed_where_they_live(client, world):
    """A user's entries under its home group; a set's under the deepest group above all of
    its groups, so that whoever audits those groups reads them."""
    owner, tree = world
    (first, second), (other, _) = (tree.customers[m.id] for m in tree.msps)
    groups = {c.id: await group_of(c) for c in (first, second, other)}
    msp_group = await group_of(tree.msps[0])
    create_set = """mutation($input: CreatePermissionSetInput!) { createPermissionSet(
      input: $input) { permissionSet { id } errors { code } } }"""
    levels = [{"area": "COMPUTERS", "level": "READ"}]
    made = []
    for name, customers in (("one MSP", [first, second]), ("two MSPs", [first, other])):
        variables = {
            "input": {
                "name": name,
                "levels": levels,
                "groupIds": [gid("StaticGroup", groups[c.id].id) for c in customers],
            }
        }
        payload = await client.query(create_set, variables, owner.token)
        made.append(payload["createPermissionSet"]["permissionSet"]["id"])
    create_user = """mutation($input: CreateUserInput!) { createUser(input: $input) {
      user { id } errors { code } } }"""
    user_input = {
        "email": factories.unique_email("filed"),
        "password": "a long enough password",
        "homeGroupId": gid("StaticGroup", groups[second.id].id),
    }
    user = (await client.query(create_user, {"input": user_input}, owner.token))["createUser"]
    update_user = """mutation($input: UpdateUserInput!) { updateUser(input: $input) {
      errors { code } } }"""
    update = {"userId": user["user"]["id"], "tag": "moved on"}
    assert (await client.query(update_user, {"input": update}, owner.token))["updateUser"] == {
        "errors": []
    }
    delete_set = """mutation($input: DeletePermissionSetInput!) { deletePermissionSet(
      input: $input) { errors { code } } }"""
    await client.query(delete_set, {"input": {"permissionSetId": made[0]}}, owner.token)
    filed = {
        (e.action, e.object_id): e.group_path
        for e in await entries(owner.instance_id)
        if e.action in {"createPermissionSet", "deletePermissionSet", "createUser", "updateUser"}
    }
    above_both_msps = msp_group.path.rsplit("/", 2)[0] + "/"
    assert filed == {
        ("createPermissionSet", made[0]): msp_group.path,
        ("createPermissionSet", made[1]): above_both_msps,
        ("deletePermissionSet", made[0]): msp_group.path,
        ("createUser", user["user"]["id"]): groups[second.id].path,
        ("updateUser", user["user"]["id"]): groups[second.id].path,
    }

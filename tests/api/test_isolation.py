"""The isolation matrix: two MSPs under one manager, customers under each, and a second
instance. Users scoped to each level (and both owners) try every query field, `node` and `nodes`
with every id of the other side, every mutation on the other side, and every subscription:
nothing of the other side is returned, counted or changed."""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import pytest

from graphql import get_named_type
from server import events
from server.api.schema import build_schema
from server.domain import global_ids, installers, usage
from server.models import (
    AuditEntry,
    Company,
    Computer,
    Installer,
    License,
    PermissionSet,
    StaticGroup,
    SyncRun,
    User,
    db,
)
from server.models.enums import Area, CompanyType, Level
from tests import factories
from tests.api.scoped_users import all_group, group_of, ids_in, owner_scope, scoped_user
from tests.api.sockets import received, settled, subscribed
from tests.graphql_client import error_codes

COMPANY = """fragment C on Company { id parent { id } ancestors { id } computerCount
  staticGroup { id computerCount } children(first: 10) { totalCount edges { node { id } } }
  licenses(first: 5) { totalCount edges { node { id company { id } } } }
  seatUsage { seats activated } }"""
GROUP = """fragment G on StaticGroup { id parent { id } ancestors { id } company { id }
  computerCount children(first: 10) { totalCount edges { node { id } } } }"""
EVERYTHING_QUERY = (
    """query Everything($month: String!) {
  viewer { user { id homeGroup { id } permissionSets { id groups { id } } }
           instance { id lastSync { id } } }
  instance { id }
  rootCompanies { ...C descendants(first: 20) { totalCount edges { node { ...C } } } }
  rootGroups { ...G children(first: 10) { edges { node { ...G
    children(first: 10) { edges { node { ...G } } } } } } }
  managedCustomers(first: 20) { totalCount statusCounts { notSetUp normal unlinked }
    edges { node { ...C } } }
  computers(first: 20) { totalCount edges { node { id group { id } company { id } } } }
  syncRuns(first: 5) { totalCount edges { node { id } } }
  users(first: 20) { totalCount edges { node { id homeGroup { id } permissionSets { id } } } }
  permissionSets(first: 20) { totalCount edges { node { id groups { id } } } }
  auditLog(first: 50) { totalCount edges { node { id actor { id } } } }
  licenses(first: 50) { totalCount edges { node { id company { id } } } }
  usageReport(month: $month, first: 50) { totalCount edges { node { company { id } } } }
}
"""
    + COMPANY
    + GROUP
)


@dataclass
class Item:
    """An object of the world: visible to a viewer of its instance whose prefix covers every
    one of its paths (instance-wide objects have none)."""

    type: str
    key: int
    instance_id: int
    paths: tuple[str, ...]
    owner_account: int | None = None  # Account objects: only their own viewer sees them
    areas: frozenset[str] = frozenset()  # PermissionSet objects: the areas they grant

    @property
    def gid(self) -> str:
        return global_ids.encode(self.type, self.key)


@dataclass
class Viewer:
    name: str
    token: str
    instance_id: int
    prefix: str
    user_id: int
    account_id: int | None = None
    licenses: bool = True  # holds LICENSES READ where it sees

    def sees(self, item: Item) -> bool:
        if item.type == "Account":
            return item.owner_account == self.account_id
        if item.type == "License" and not self.licenses:
            return False
        return item.instance_id == self.instance_id and all(
            p.startswith(self.prefix) for p in item.paths
        )


@dataclass
class World:
    viewers: list[Viewer]
    instances: list[int]
    trees: list[factories.Tree]
    owners: list[factories.Owner]
    items: list[Item] = field(default_factory=list)

    def foreign(self, viewer: Viewer, *types: str) -> list[Item]:
        return [i for i in self.items if not viewer.sees(i) and (not types or i.type in types)]

    def visible(self, viewer: Viewer, *types: str) -> list[Item]:
        return [i for i in self.items if viewer.sees(i) and (not types or i.type in types)]


async def inventory(world: World) -> list[Item]:
    """Every object of both instances, with the paths that decide who sees it."""
    items: list[Item] = []
    for instance_id in world.instances:
        groups = {g.id: g for g in await StaticGroup.filter(instance_id=instance_id)}
        items += [Item("StaticGroup", g.id, instance_id, (g.path,)) for g in groups.values()]
        for c in await Company.filter(instance_id=instance_id):
            items.append(Item("Company", c.id, instance_id, (c.path,)))
        for m in await Computer.filter(instance_id=instance_id):
            items.append(Item("Computer", m.id, instance_id, (groups[m.group_id].path,)))
        for i in await Installer.filter(instance_id=instance_id):
            items.append(Item("Installer", i.id, instance_id, (groups[i.group_id].path,)))
        for u in await User.filter(instance_id=instance_id):
            items.append(Item("User", u.id, instance_id, (groups[u.home_group_id].path,)))
        for s in await PermissionSet.filter(instance_id=instance_id).prefetch_related("groups"):
            paths = tuple(g.path for g in s.groups)
            areas = frozenset(s.levels)
            items.append(Item("PermissionSet", s.id, instance_id, paths, areas=areas))
        for e in await AuditEntry.filter(instance_id=instance_id):
            items.append(Item("AuditEntry", e.id, instance_id, (e.group_path,)))
        companies = {c.id: c for c in await Company.filter(instance_id=instance_id)}
        for lic in await License.filter(instance_id=instance_id):
            items.append(Item("License", lic.id, instance_id, (companies[lic.company_id].path,)))
        for r in await SyncRun.filter(instance_id=instance_id):
            items.append(Item("SyncRun", r.id, instance_id, ()))
        items.append(Item("Instance", instance_id, instance_id, ()))
    for owner in world.owners:
        items.append(Item("Account", owner.account_id, -1, (), owner_account=owner.account_id))
    return items


@pytest.fixture(scope="module")
async def world(client) -> World:
    owners, trees = [], []
    for prefix in ("", "Other "):
        owner = await factories.owner(client)
        tree = await factories.company_tree(
            owner.instance_id, msps=2, customers_per_msp=2, computers_per_customer=2, prefix=prefix
        )
        scope = await owner_scope(owner.instance_id)
        for customer in tree.all_customers:
            await installers.create_installer(scope, company_id=customer.id)
        await SyncRun.create(instance_id=owner.instance_id, trigger="manual")
        for company in (*tree.msps, *tree.all_customers):
            await factories.license(owner.instance_id, company, seats=3, activated=company.id % 5)
        await usage.record_snapshot(owner.instance_id, dt.datetime.now(dt.UTC))
        owners.append(owner)
        trees.append(tree)
    tree = trees[0]
    instance_id = owners[0].instance_id
    msp_a = tree.msps[0]
    customer_a = tree.customers[msp_a.id][0]
    viewers = []
    for owner in owners:
        root = await all_group(owner.instance_id)
        owner_user = await User.get(instance_id=owner.instance_id, account_id=owner.account_id)
        viewers.append(
            Viewer(
                f"owner {owner.instance_id}",
                owner.token,
                owner.instance_id,
                root.path,
                owner_user.id,
                owner.account_id,
            )
        )
    for name, company in (("manager", tree.manager), ("msp A", msp_a), ("customer A", customer_a)):
        group = await group_of(company)
        user = await scoped_user(client, instance_id, [group])
        viewers.append(Viewer(name, user.token, instance_id, group.path, user.user.id))
    group = await group_of(msp_a)
    blind = {area: Level.WRITE for area in Area if area is not Area.LICENSES}
    user = await scoped_user(client, instance_id, [group], blind)
    viewers.append(
        Viewer("msp A without licenses", user.token, instance_id, group.path, user.user.id,
               licenses=False)
    )  # fmt: skip
    await scoped_user(client, owners[1].instance_id, [await group_of(trees[1].manager)])
    # Some history in every scope: one skipped customer per MSP, in both instances.
    for owner, t in zip(owners, trees, strict=True):
        for msp in t.msps:
            customer = t.customers[msp.id][1]
            await client.query(
                """mutation($input: SkipCustomerSetupInput!) {
                     skipCustomerSetup(input: $input) { errors { code } } }""",
                {"input": {"customerId": global_ids.encode("Company", customer.id)}},
                token=owner.token,
            )
    world = World(viewers, [o.instance_id for o in owners], trees, owners)
    world.items = await inventory(world)
    return world


VIEWERS = ["owner", "other owner", "manager", "msp A", "customer A", "msp A without licenses"]


def pick(world: World, name: str) -> Viewer:
    index = VIEWERS.index(name)
    return world.viewers[index]


# Reads ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", VIEWERS)
async def test_every_query_field_returns_and_counts_only_the_viewers_side(client, world, name):
    viewer = pick(world, name)
    world.items = await inventory(world)  # with the audit entries of the tests before
    this_month = dt.datetime.now(dt.UTC).strftime("%Y-%m")  # at run time: a run may cross a month
    data = await client.query(EVERYTHING_QUERY, {"month": this_month}, token=viewer.token)
    returned = ids_in(data)
    by_gid = {i.gid: i for i in world.items}
    unknown = {g for g in returned if g not in by_gid}
    assert not unknown, unknown  # nothing but objects of the world
    leaked = {g for g in returned if not viewer.sees(by_gid[g])}
    assert not leaked, [(by_gid[g].type, by_gid[g].key) for g in leaked]

    def count(*types: str, where=lambda item: True) -> int:
        return len([i for i in world.visible(viewer, *types) if where(i)])

    customers = {c.id for c in await Company.filter(type=CompanyType.CUSTOMER)}
    managed = data["managedCustomers"]
    assert managed["totalCount"] == count("Company", where=lambda i: i.key in customers)
    assert sum(managed["statusCounts"].values()) == managed["totalCount"]
    assert data["computers"]["totalCount"] == count("Computer")
    assert data["users"]["totalCount"] == count("User")
    assert data["permissionSets"]["totalCount"] == count("PermissionSet")
    audit_visible = await AuditEntry.filter(
        instance_id=viewer.instance_id, group_path__startswith=viewer.prefix
    ).count()
    assert data["auditLog"]["totalCount"] == audit_visible
    assert data["syncRuns"]["totalCount"] == 1
    # one billable license per company with a license: one row of usage each
    assert data["licenses"]["totalCount"] == count("License")
    assert data["usageReport"]["totalCount"] == count("License")
    if not viewer.licenses:  # no seat of any license shows, however it is asked
        usages = [e["node"]["seatUsage"] for e in data["managedCustomers"]["edges"]]
        assert usages and all(u == {"seats": 0, "activated": 0} for u in usages)
    assert data["viewer"]["instance"]["id"] == global_ids.encode("Instance", viewer.instance_id)
    # The tops start where the viewer's scope starts; parents and ancestors stop there.
    tops = {c["id"] for c in data["rootCompanies"]}
    for company in data["rootCompanies"]:
        assert company["parent"] is None and company["ancestors"] == []
    visible_companies = count("Company")
    descendants = sum(c["descendants"]["totalCount"] for c in data["rootCompanies"])
    assert len(tops) + descendants == visible_companies
    group_tops = data["rootGroups"]
    assert len(group_tops) == 1
    assert group_tops[0]["parent"] is None and group_tops[0]["ancestors"] == []
    assert group_tops[0]["computerCount"] == count("Computer")
    # Every computer count is of what the viewer sees.
    for company in data["managedCustomers"]["edges"]:
        assert company["node"]["computerCount"] == 2


@pytest.mark.parametrize("name", VIEWERS)
async def test_node_and_nodes_with_every_id_of_the_other_side_give_null(client, world, name):
    viewer = pick(world, name)
    foreign = world.foreign(viewer)
    assert foreign
    node = "query($id: ID!) { node(id: $id) { id } }"
    for item in foreign:
        data = await client.query(node, {"id": item.gid}, token=viewer.token)
        assert data["node"] is None, (item.type, item.key)
    nodes = "query($ids: [ID!]!) { nodes(ids: $ids) { id } }"
    for start in range(0, len(foreign), 30):
        chunk = [i.gid for i in foreign[start : start + 30]]
        data = await client.query(nodes, {"ids": chunk}, token=viewer.token)
        assert data["nodes"] == [None] * len(chunk)
    # The control: what the viewer may see comes back.
    own = [i.gid for i in world.visible(viewer)][:30]
    data = await client.query(nodes, {"ids": own}, token=viewer.token)
    assert [n["id"] if n else None for n in data["nodes"]] == own


# Writes -----------------------------------------------------------------------------------


async def snapshot() -> dict[str, list[dict[str, Any]]]:
    """Every row a mutation could change (the audit log, which records attempts, aside)."""
    return {
        "company": await db.fetch(
            "SELECT id, setup_state, unlinked_at, unlink_reason, name FROM company ORDER BY id"
        ),
        "user": await db.fetch(
            "SELECT id, enabled, password_hash, home_group_id, tag, description, "
            "session_timeout, disabled_by_unlink_id FROM console_user ORDER BY id"
        ),
        "installer": await db.fetch("SELECT id, revoked_at, name FROM installer ORDER BY id"),
        "permission_set": await db.fetch(
            "SELECT id, name, description, levels FROM permission_set ORDER BY id"
        ),
        "permission_set_group": await db.fetch(
            "SELECT * FROM permission_set_group ORDER BY permission_set_id, staticgroup_id"
        ),
        "user_permission_set": await db.fetch(
            "SELECT * FROM user_permission_set ORDER BY console_user_id, permissionset_id"
        ),
        "static_group": await db.fetch("SELECT id, path, name FROM static_group ORDER BY id"),
        "instance": await db.fetch("SELECT id, name FROM instance ORDER BY id"),
        "session": await db.fetch("SELECT id FROM session ORDER BY id"),
        "computer": await db.fetch(
            "SELECT id, group_id, duplicate_of_id, agent_token_hash, name FROM computer ORDER BY id"
        ),
    }


# Mutations that name no object: each acts on the caller's own session, account or instance,
# so there is no other side to point it at. Every other mutation of the schema names objects by
# id, and `attempts` must try a foreign id in each of those arguments, or the test fails.
NAMES_NO_OBJECT = {
    "login": "signs in: the session it makes is the caller's",
    "logout": "ends the caller's own session",
    "createInstance": "creates the caller's own instance",
    "connectMspAdministrator": "connects the viewer's own instance",
    "startSync": "syncs the viewer's own instance",
    "skipSetupForAllNewCustomers": "acts on the viewer's scope: checked below to stay in it",
}


def mutation_fields() -> dict[str, Any]:
    return dict(build_schema()._schema.mutation_type.fields)


def id_arguments(mutation: Any) -> set[str]:
    """The input fields of a mutation that hold ids (one or a list)."""
    fields = get_named_type(mutation.args["input"].type).fields
    return {name for name, f in fields.items() if get_named_type(f.type).name == "ID"}


def test_every_mutation_either_names_objects_or_is_listed_as_naming_none():
    """A new mutation without id arguments must be listed above, with its reason; one with id
    arguments is held to an isolation case for each of them by the test below."""
    fields = mutation_fields()
    without_ids = {name for name, f in fields.items() if not id_arguments(f)}
    assert without_ids == set(NAMES_NO_OBJECT)


def attempts(world: World, viewer: Viewer) -> Iterable[tuple[str, dict[str, Any], str]]:
    """(mutation, input, refusal) for a foreign id in every id argument of every mutation; the
    other arguments are valid and of the viewer's side, so only the foreign id can be refused."""
    customers = {c.id for t in world.trees for c in t.all_customers}
    own_group = next(
        i.gid for i in world.visible(viewer, "StaticGroup") if i.paths == (viewer.prefix,)
    )
    own_set = next(  # one the viewer may edit: it holds every area the set grants
        i.gid
        for i in world.visible(viewer, "PermissionSet")
        if viewer.licenses or "LICENSES" not in i.areas
    )
    own_customer = next(i.gid for i in world.visible(viewer, "Company") if i.key in customers)
    # A user the viewer may edit: itself, or (the owner is managed through the portal) another.
    own_user = global_ids.encode("User", viewer.user_id)
    if viewer.account_id is not None:
        own_user = next(i.gid for i in world.visible(viewer, "User") if i.key != viewer.user_id)
    for item in world.foreign(viewer, "Instance"):
        # Only an owner, through the portal, may remove an instance: a console user is refused
        # whatever the instance, before it is looked up.
        refusal = "NOT_FOUND" if viewer.account_id is not None else "FORBIDDEN"
        yield "removeInstance", {"instanceId": item.gid}, refusal
    for item in world.foreign(viewer, "Company"):
        for action in ("setupCustomer", "skipCustomerSetup", "unlinkCustomer", "relinkCustomer"):
            yield action, {"customerId": item.gid}, "NOT_FOUND"
        yield "createInstaller", {"companyId": item.gid}, "NOT_FOUND"
    for item in world.foreign(viewer, "StaticGroup"):
        intruder = factories.unique_email("intruder")
        user = {"email": intruder, "password": "long enough password", "homeGroupId": item.gid}
        yield "createUser", user, "NOT_FOUND"
        yield "updateUser", {"userId": own_user, "homeGroupId": item.gid}, "NOT_FOUND"
        levels = [{"area": "COMPANIES", "level": "READ"}]
        new_set = {"name": f"intruder {item.key}", "levels": levels, "groupIds": [item.gid]}
        yield "createPermissionSet", new_set, "NOT_FOUND"
        yield (
            "updatePermissionSet",
            {"permissionSetId": own_set, "groupIds": [item.gid]},
            "NOT_FOUND",
        )
        yield "createInstaller", {"companyId": own_customer, "groupId": item.gid}, "NOT_FOUND"
    for item in world.foreign(viewer, "User"):
        yield "updateUser", {"userId": item.gid, "enabled": False}, "NOT_FOUND"
        yield "updateUser", {"userId": item.gid, "password": "a new password for you"}, "NOT_FOUND"
        yield "assignPermissionSets", {"userId": item.gid, "permissionSetIds": []}, "NOT_FOUND"
    for item in world.foreign(viewer, "PermissionSet"):
        yield "updatePermissionSet", {"permissionSetId": item.gid, "name": "renamed"}, "NOT_FOUND"
        yield "deletePermissionSet", {"permissionSetId": item.gid}, "NOT_FOUND"
        assign = {"userId": own_user, "permissionSetIds": [item.gid]}
        yield "assignPermissionSets", assign, "NOT_FOUND"
        user = {
            "email": factories.unique_email("intruder"),
            "password": "long enough password",
            "homeGroupId": own_group,
            "permissionSetIds": [item.gid],
        }
        yield "createUser", user, "NOT_FOUND"
    for item in world.foreign(viewer, "Installer"):
        yield "revokeInstaller", {"installerId": item.gid}, "NOT_FOUND"
    for item in world.foreign(viewer, "Computer"):
        yield "removeComputer", {"computerId": item.gid}, "NOT_FOUND"
        for keep in ("KEEP_NEW", "KEEP_EXISTING"):
            yield "resolveDuplicateComputer", {"computerId": item.gid, "keep": keep}, "NOT_FOUND"


@pytest.mark.parametrize("name", VIEWERS)
async def test_every_mutation_on_the_other_side_is_refused_and_changes_nothing(client, world, name):
    viewer = pick(world, name)
    fields = mutation_fields()
    foreign = {i.gid for i in world.foreign(viewer)}
    before = await snapshot()
    tried: set[tuple[str, str]] = set()  # (mutation, id argument) given a foreign id
    for field_name, payload, refusal in attempts(world, viewer):
        input_type = fields[field_name].args["input"].type
        document = (
            f"mutation($input: {input_type}) {{ {field_name}(input: $input) "
            "{ errors { code } } }"
        )
        body = await client.execute(document, {"input": payload}, token=viewer.token)
        payload_errors = (body.get("data") or {}).get(field_name) or {"errors": []}
        codes = [e["code"] for e in payload_errors["errors"]] + error_codes(body)
        assert codes == [refusal], (field_name, payload, body)
        for argument, value in payload.items():
            given = value if isinstance(value, list) else [value]
            if foreign.intersection(g for g in given if isinstance(g, str)):
                tried.add((field_name, argument))
    expected = {(n, a) for n, f in fields.items() for a in id_arguments(f)}
    assert expected - tried == set(), "mutation arguments never given a foreign id"
    # Skipping every new customer touches the viewer's side only; it is one of the mutations.
    after_skip = await client.query(
        "mutation { skipSetupForAllNewCustomers { count customers { id } errors { code } } }",
        token=viewer.token,
    )
    skipped = after_skip["skipSetupForAllNewCustomers"]["customers"]
    by_gid = {i.gid: i for i in world.items}
    assert all(viewer.sees(by_gid[c["id"]]) for c in skipped)
    after = await snapshot()
    mine = {i.key for i in world.visible(viewer, "Company")}
    for row_before, row_after in zip(before["company"], after["company"], strict=True):
        if row_before["id"] not in mine:
            assert row_before == row_after
    assert {k: v for k, v in after.items() if k != "company"} == {
        k: v for k, v in before.items() if k != "company"
    }


# Subscriptions ----------------------------------------------------------------------------


SUBSCRIPTIONS = {
    "customerStatusChanged": "subscription { customerStatusChanged { id parent { id } } }",
    "computerConnectionChanged": "subscription { computerConnectionChanged { id group { id } } }",
    "syncStatus": "subscription { syncStatus { id } }",
    "licenseChanged": "subscription { licenseChanged { id company { id } } }",
}


@pytest.mark.parametrize("subscription", sorted(SUBSCRIPTIONS))
async def test_every_subscription_delivers_only_the_viewers_side(
    client, world, app, server_url, subscription
):
    bus, hub = app.state.bus, app.state.hub
    async with contextlib.AsyncExitStack() as stack:
        sockets = []
        for viewer in world.viewers:
            before = hub.subscriber_count
            socket = await stack.enter_async_context(
                subscribed(server_url, viewer.token, SUBSCRIPTIONS[subscription])
            )
            await settled(hub, before)
            sockets.append(socket)
        kinds = {
            "customerStatusChanged": ("Company", events.CUSTOMER_STATUS, "company_ids"),
            "computerConnectionChanged": ("Computer", events.COMPUTER_CONNECTION, "computer_ids"),
            "syncStatus": ("SyncRun", events.SYNC_RUN, "run_id"),
            "licenseChanged": ("License", events.LICENSE_CHANGED, "license_ids"),
        }
        type_name, topic, key = kinds[subscription]
        for instance_id in world.instances:
            objects = [
                i for i in world.items if i.type == type_name and i.instance_id == instance_id
            ]
            if key == "run_id":
                for item in objects:
                    await bus.publish(topic, {"instance_id": instance_id, "run_id": item.key})
            else:
                await bus.publish(
                    topic, {"instance_id": instance_id, key: [i.key for i in objects]}
                )
        for viewer, socket in zip(world.viewers, sockets, strict=True):
            expected = sorted(i.gid for i in world.visible(viewer, type_name))
            got = await received(socket, at_least=1 if expected else 0)
            ids = set()
            for data in got:
                ids |= ids_in(data)
            by_gid = {i.gid: i for i in world.items}
            assert all(viewer.sees(by_gid[g]) for g in ids), viewer.name
            delivered = [d[subscription]["id"] for d in got]
            assert sorted(delivered) == expected

"""Console users and permission sets through the API: created and managed within the manager's
own rights, disabled at once, listed through the USERS scope."""

from __future__ import annotations

import asyncio

import pytest

from server import events
from server.domain import global_ids, secrets
from server.models import PermissionSet, Session, StaticGroup, User
from server.models.enums import Area, Level
from tests import factories
from tests.api.scoped_users import (
    EVERYTHING,
    PASSWORD,
    all_group,
    group_of,
    permission_set,
    scoped_user,
)
from tests.graphql_client import error_codes

CREATE_USER = """mutation($input: CreateUserInput!) { createUser(input: $input) {
  user { id email enabled tag description sessionTimeout homeGroup { id }
         permissionSets { id name } }
  errors { code field } } }"""
UPDATE_USER = """mutation($input: UpdateUserInput!) { updateUser(input: $input) {
  user { id enabled sessionTimeout tag } errors { code field } } }"""
ASSIGN = """mutation($input: AssignPermissionSetsInput!) { assignPermissionSets(input: $input) {
  user { id permissionSets { id } } errors { code field } } }"""
CREATE_SET = """mutation($input: CreatePermissionSetInput!) { createPermissionSet(input: $input) {
  permissionSet { id name levels { area level } groups { id } } errors { code field } } }"""
UPDATE_SET = """mutation($input: UpdatePermissionSetInput!) { updatePermissionSet(input: $input) {
  permissionSet { id name levels { area level } groups { id } } errors { code field } } }"""
DELETE_SET = """mutation($input: DeletePermissionSetInput!) { deletePermissionSet(input: $input) {
  deletedPermissionSetId errors { code field } } }"""
LISTS = """{ users { totalCount edges { node { id email } } }
  permissionSets { totalCount edges { node { id name } } } }"""


def gid(type_name: str, key: int) -> str:
    return global_ids.encode(type_name, key)


def codes(payload: dict) -> list[str]:
    return [e["code"] for e in payload["errors"]]


@pytest.fixture
async def world(client):
    owner = await factories.owner(client)
    tree = await factories.company_tree(
        owner.instance_id, msps=2, customers_per_msp=2, computers_per_customer=0
    )
    msp_a, msp_b = [await group_of(m) for m in tree.msps]
    admin_a = await scoped_user(client, owner.instance_id, [msp_a])
    return owner, tree, msp_a, msp_b, admin_a


async def create_user(client, token, home: StaticGroup, sets=(), **extra) -> dict:
    email = extra.pop("email", None) or factories.unique_email("made")
    variables = {
        "input": {
            "email": email,
            "password": extra.pop("password", "long enough password"),
            "homeGroupId": gid("StaticGroup", home.id),
            "permissionSetIds": [gid("PermissionSet", s.id) for s in sets],
            **extra,
        }
    }
    return (await client.query(CREATE_USER, variables, token=token))["createUser"]


async def test_the_owner_creates_a_user_who_signs_in_with_its_rights(client, world):
    owner, tree, msp_a, _, _ = world
    given = await permission_set(owner.instance_id, [msp_a], {Area.COMPANIES: Level.READ})
    email = factories.unique_email("new")
    made = await create_user(
        client, owner.token, msp_a, [given], email=email, tag="ops", sessionTimeout=600
    )
    assert made["errors"] == []
    user = made["user"]
    assert user["email"] == email and user["enabled"] and user["tag"] == "ops"
    assert user["sessionTimeout"] == 600
    assert user["homeGroup"]["id"] == gid("StaticGroup", msp_a.id)
    assert [s["id"] for s in user["permissionSets"]] == [gid("PermissionSet", given.id)]
    token = await factories.login(client, email, "long enough password", None)
    roots = await client.query("{ rootCompanies { name } }", token=token)
    assert [c["name"] for c in roots["rootCompanies"]] == [tree.msps[0].name]


async def test_a_user_manager_creates_users_only_within_its_own_rights(client, world):
    owner, tree, msp_a, msp_b, _ = world
    manager = await scoped_user(
        client,
        owner.instance_id,
        [msp_a],
        {Area.USERS: Level.WRITE, Area.COMPANIES: Level.READ},
    )
    readable = await permission_set(owner.instance_id, [msp_a], {Area.COMPANIES: Level.READ})
    writable = await permission_set(owner.instance_id, [msp_a], {Area.COMPANIES: Level.WRITE})
    elsewhere = await permission_set(owner.instance_id, [msp_b], {Area.COMPANIES: Level.READ})
    assert (await create_user(client, manager.token, msp_a, [readable]))["errors"] == []
    customer_group = await group_of(tree.customers[tree.msps[0].id][0])
    assert (await create_user(client, manager.token, customer_group))["errors"] == []
    refused = await create_user(client, manager.token, msp_a, [writable])
    assert codes(refused) == ["FORBIDDEN"]
    hidden = await create_user(client, manager.token, msp_a, [elsewhere])
    assert codes(hidden) == ["NOT_FOUND"]
    foreign_home = await create_user(client, manager.token, msp_b)
    assert codes(foreign_home) == ["NOT_FOUND"]
    above = await create_user(client, manager.token, await all_group(owner.instance_id))
    assert codes(above) == ["NOT_FOUND"]
    reader = await scoped_user(client, owner.instance_id, [msp_a], {Area.USERS: Level.READ})
    assert codes(await create_user(client, reader.token, msp_a)) == ["FORBIDDEN"]


@pytest.mark.parametrize(
    ("extra", "code", "field"),
    [
        ({"email": "nope"}, "INVALID_INPUT", "email"),
        ({"email": "x" * 1000 + "@example.test"}, "INVALID_INPUT", "email"),
        ({"password": "short"}, "INVALID_INPUT", "password"),
        ({"password": "p" * 5000}, "INVALID_INPUT", "password"),
        ({"sessionTimeout": 5}, "INVALID_INPUT", "sessionTimeout"),
        ({"sessionTimeout": 10**9}, "INVALID_INPUT", "sessionTimeout"),
        ({"description": "d" * 501}, "INVALID_INPUT", "description"),
        ({"tag": "bad\x00tag"}, "INVALID_INPUT", "tag"),
    ],
)
async def test_bad_user_input_is_refused(client, world, extra, code, field):
    owner, _, msp_a, _, _ = world
    before = await User.filter(instance_id=owner.instance_id).count()
    made = await create_user(client, owner.token, msp_a, **extra)
    assert [(e["code"], e["field"]) for e in made["errors"]] == [(code, field)]
    assert await User.filter(instance_id=owner.instance_id).count() == before


async def test_broken_unicode_in_an_email_or_password_is_refused_and_changes_nothing(client, world):
    owner, _, msp_a, _, _ = world
    before = await User.filter(instance_id=owner.instance_id).count()
    home = gid("StaticGroup", msp_a.id)
    for extra, field in (
        ({"email": "broken\ud800@example.test"}, "email"),
        ({"password": "long enough \udfff password"}, "password"),
    ):
        fields = {"email": factories.unique_email("broken"), "password": "long enough password"}
        variables = {"input": {**fields, "homeGroupId": home, **extra}}
        body = await client.execute_escaped(CREATE_USER, variables, owner.token)
        assert codes(body["data"]["createUser"]) == ["INVALID_INPUT"], body
        assert body["data"]["createUser"]["errors"][0]["field"] == field
    assert await User.filter(instance_id=owner.instance_id).count() == before
    target = await scoped_user(client, owner.instance_id, [msp_a], {Area.COMPANIES: Level.READ})
    variables = {"input": {"userId": gid("User", target.user.id), "password": "new \ud800 pass"}}
    body = await client.execute_escaped(UPDATE_USER, variables, owner.token)
    assert codes(body["data"]["updateUser"]) == ["INVALID_INPUT"]
    await factories.login(client, target.email, PASSWORD, None)  # the old password still works


async def test_an_email_of_an_account_or_user_is_taken(client, world):
    owner, _, msp_a, _, admin_a = world
    for email in (owner.email, admin_a.email, admin_a.email.upper()):
        made = await create_user(client, owner.token, msp_a, email=email)
        assert [(e["code"], e["field"]) for e in made["errors"]] == [("ALREADY_EXISTS", "email")]


async def test_disabling_a_user_ends_its_sessions_at_once(client, world, app):
    owner, _, msp_a, _, admin_a = world
    target = await scoped_user(client, owner.instance_id, [msp_a], {Area.COMPANIES: Level.READ})
    session = await session_of(target.token)
    async with app.state.bus.subscribe(events.SESSION_ENDED) as ended:
        payload = (
            await client.query(
                UPDATE_USER,
                {"input": {"userId": gid("User", target.user.id), "enabled": False}},
                token=admin_a.token,
            )
        )["updateUser"]
        assert payload["errors"] == [] and payload["user"]["enabled"] is False
        event = await asyncio.wait_for(anext(ended), 2)
    assert event == {"instance_id": owner.instance_id, "session_ids": [session.id]}
    assert not await Session.filter(user_id=target.user.id).exists()
    body = await client.execute("{ rootCompanies { id } }", token=target.token)
    assert error_codes(body) == ["UNAUTHENTICATED"]
    refused = await client.query(
        factories.LOGIN,
        {"input": {"email": target.email, "password": PASSWORD, "via": None}},
    )
    assert codes(refused["login"]) == ["INVALID_CREDENTIALS"]
    enabled = (
        await client.query(
            UPDATE_USER,
            {"input": {"userId": gid("User", target.user.id), "enabled": True}},
            token=admin_a.token,
        )
    )["updateUser"]
    assert enabled["user"]["enabled"] is True
    await factories.login(client, target.email, PASSWORD, None)


async def session_of(token: str) -> Session:
    return await Session.get(token_hash=secrets.token_hash(token))


async def change_password(client, token: str, user_id: int, password: str) -> dict:
    variables = {"input": {"userId": gid("User", user_id), "password": password}}
    return (await client.query(UPDATE_USER, variables, token=token))["updateUser"]


async def test_a_password_changed_by_an_admin_ends_every_session_of_the_user(client, world, app):
    owner, _, msp_a, _, admin_a = world
    target = await scoped_user(client, owner.instance_id, [msp_a], {Area.COMPANIES: Level.READ})
    other_token = await factories.login(client, target.email, PASSWORD, None)
    sessions = sorted([(await session_of(target.token)).id, (await session_of(other_token)).id])
    async with app.state.bus.subscribe(events.SESSION_ENDED) as ended:
        changed = await change_password(client, admin_a.token, target.user.id, "a new password")
        assert changed["errors"] == []
        event = await asyncio.wait_for(anext(ended), 2)
    assert event["instance_id"] == owner.instance_id and sorted(event["session_ids"]) == sessions
    for token in (target.token, other_token):
        body = await client.execute("{ rootCompanies { id } }", token=token)
        assert error_codes(body) == ["UNAUTHENTICATED"]
    await factories.login(client, target.email, "a new password", None)
    assert (await client.query("{ viewer { via } }", token=admin_a.token))["viewer"]


async def test_a_user_changing_its_own_password_keeps_only_the_session_it_acts_from(
    client, world, app
):
    owner, _, msp_a, _, _ = world
    user = await scoped_user(client, owner.instance_id, [msp_a])  # USERS WRITE where it lives
    elsewhere = await factories.login(client, user.email, PASSWORD, None)
    ended_session = await session_of(elsewhere)
    async with app.state.bus.subscribe(events.SESSION_ENDED) as ended:
        changed = await change_password(client, user.token, user.user.id, "my own new password")
        assert changed["errors"] == []
        event = await asyncio.wait_for(anext(ended), 2)
    assert event == {"instance_id": owner.instance_id, "session_ids": [ended_session.id]}
    body = await client.execute("{ rootCompanies { id } }", token=elsewhere)
    assert error_codes(body) == ["UNAUTHENTICATED"]
    kept = await client.query("{ viewer { user { email } } }", token=user.token)
    assert kept["viewer"]["user"]["email"] == user.email


async def test_a_viewer_sees_its_own_home_group_even_outside_its_scope_and_nothing_more(
    client, world
):
    owner, _, msp_a, msp_b, _ = world
    user = await scoped_user(
        client, owner.instance_id, [msp_a], {Area.COMPANIES: Level.READ}, home=msp_b
    )
    data = await client.query("{ viewer { user { homeGroup { id name } } } }", token=user.token)
    assert data["viewer"]["user"]["homeGroup"] == {
        "id": gid("StaticGroup", msp_b.id),
        "name": msp_b.name,
    }
    node = "query($id: ID!) { node(id: $id) { id } }"
    assert (await client.query(node, {"id": gid("StaticGroup", msp_b.id)}, user.token)) == {
        "node": None
    }
    roots = await client.query("{ rootGroups { id } }", token=user.token)
    assert roots["rootGroups"] == [{"id": gid("StaticGroup", msp_a.id)}]


async def test_managers_cannot_disable_themselves_the_owner_or_someone_above_them(client, world):
    owner, tree, msp_a, _, admin_a = world
    owner_user = await User.get(instance_id=owner.instance_id, account_id__isnull=False)
    manager_group = await group_of(tree.manager)
    # Lives in MSP A, but holds rights on the whole manager: more than admin A holds.
    above = await scoped_user(client, owner.instance_id, [manager_group], home=msp_a)
    cases = [
        (admin_a.token, admin_a.user.id, "INVALID_INPUT"),
        (owner.token, owner_user.id, "FORBIDDEN"),
        (admin_a.token, owner_user.id, "NOT_FOUND"),
        (admin_a.token, above.user.id, "FORBIDDEN"),
    ]
    for token, user_id, code in cases:
        payload = (
            await client.query(
                UPDATE_USER,
                {"input": {"userId": gid("User", user_id), "enabled": False}},
                token=token,
            )
        )["updateUser"]
        assert codes(payload) == [code], (user_id, code)
    reset = (
        await client.query(
            UPDATE_USER,
            {"input": {"userId": gid("User", above.user.id), "password": "taken over now"}},
            token=admin_a.token,
        )
    )["updateUser"]
    assert codes(reset) == ["FORBIDDEN"]
    assert (await User.get(id=above.user.id)).enabled


async def test_updating_details_and_clearing_the_session_timeout(client, world):
    owner, _, msp_a, _, admin_a = world
    target = await scoped_user(client, owner.instance_id, [msp_a], {Area.COMPANIES: Level.READ})
    user_id = gid("User", target.user.id)
    first = await client.query(
        UPDATE_USER,
        {"input": {"userId": user_id, "sessionTimeout": 300, "tag": "t"}},
        token=admin_a.token,
    )
    assert first["updateUser"]["user"]["sessionTimeout"] == 300
    cleared = await client.query(
        UPDATE_USER, {"input": {"userId": user_id, "sessionTimeout": None}}, token=admin_a.token
    )
    assert cleared["updateUser"]["user"]["sessionTimeout"] is None
    assert cleared["updateUser"]["user"]["tag"] == "t"


async def test_permission_sets_are_created_within_the_creators_rights(client, world):
    owner, _, msp_a, msp_b, _ = world
    manager = await scoped_user(
        client,
        owner.instance_id,
        [msp_a],
        {Area.USERS: Level.WRITE, Area.COMPUTERS: Level.USE},
    )

    async def create(token, name, levels, groups):
        variables = {
            "input": {
                "name": name,
                "levels": [{"area": a, "level": lv} for a, lv in levels],
                "groupIds": [gid("StaticGroup", g.id) for g in groups],
            }
        }
        return (await client.query(CREATE_SET, variables, token=token))["createPermissionSet"]

    name = f"A computers {factories.unique_email()}"
    made = await create(manager.token, name, [("COMPUTERS", "USE")], [msp_a])
    assert made["errors"] == []
    assert made["permissionSet"]["levels"] == [{"area": "COMPUTERS", "level": "USE"}]
    assert made["permissionSet"]["groups"] == [{"id": gid("StaticGroup", msp_a.id)}]
    assert codes(await create(manager.token, name, [("COMPUTERS", "READ")], [msp_a])) == [
        "ALREADY_EXISTS"
    ]
    assert codes(await create(manager.token, "x1", [("COMPUTERS", "WRITE")], [msp_a])) == [
        "FORBIDDEN"
    ]
    assert codes(await create(manager.token, "x2", [("SYNC", "READ")], [msp_a])) == ["FORBIDDEN"]
    assert codes(await create(manager.token, "x3", [("COMPUTERS", "READ")], [msp_b])) == [
        "NOT_FOUND"
    ]
    assert codes(
        await create(manager.token, "x4", [("COMPUTERS", "READ"), ("COMPUTERS", "USE")], [msp_a])
    ) == ["INVALID_INPUT"]
    assert codes(await create(manager.token, "x5", [("COMPUTERS", "READ")], [])) == [
        "INVALID_INPUT"
    ]
    assert codes(await create(manager.token, "n" * 300, [("COMPUTERS", "READ")], [msp_a])) == [
        "INVALID_INPUT"
    ]
    assert codes(await create(manager.token, " ", [("COMPUTERS", "READ")], [msp_a])) == [
        "INVALID_INPUT"
    ]
    body = await client.execute(
        CREATE_SET,
        {"input": {"name": "x6", "levels": [{"area": "NOPE", "level": "READ"}], "groupIds": []}},
        token=manager.token,
    )
    assert body.get("errors") and body.get("data") is None
    assert not await PermissionSet.filter(name__in=["x1", "x2", "x3", "x4", "x5"]).exists()


async def test_updating_and_deleting_a_set_stays_within_the_editors_rights(client, world):
    owner, _, msp_a, msp_b, admin_a = world
    mine = await permission_set(owner.instance_id, [msp_a], {Area.COMPANIES: Level.READ})
    wide = await permission_set(owner.instance_id, [msp_a, msp_b], {Area.COMPANIES: Level.READ})
    holder = await scoped_user(client, owner.instance_id, [msp_a], sets=[mine])
    renamed = (
        await client.query(
            UPDATE_SET,
            {
                "input": {
                    "permissionSetId": gid("PermissionSet", mine.id),
                    "name": f"renamed {mine.id}",
                    "levels": [{"area": "COMPANIES", "level": "WRITE"}],
                }
            },
            token=admin_a.token,
        )
    )["updatePermissionSet"]
    assert renamed["errors"] == []
    assert renamed["permissionSet"]["levels"] == [{"area": "COMPANIES", "level": "WRITE"}]
    moved = (
        await client.query(
            UPDATE_SET,
            {
                "input": {
                    "permissionSetId": gid("PermissionSet", mine.id),
                    "groupIds": [gid("StaticGroup", msp_b.id)],
                }
            },
            token=admin_a.token,
        )
    )["updatePermissionSet"]
    assert codes(moved) == ["NOT_FOUND"]
    for document, field in (
        (UPDATE_SET, "updatePermissionSet"),
        (DELETE_SET, "deletePermissionSet"),
    ):
        payload = (
            await client.query(
                document,
                {"input": {"permissionSetId": gid("PermissionSet", wide.id)}},
                token=admin_a.token,
            )
        )[field]
        assert codes(payload) == ["NOT_FOUND"]
    deleted = (
        await client.query(
            DELETE_SET,
            {"input": {"permissionSetId": gid("PermissionSet", mine.id)}},
            token=admin_a.token,
        )
    )["deletePermissionSet"]
    assert deleted == {"deletedPermissionSetId": gid("PermissionSet", mine.id), "errors": []}
    assert not await PermissionSet.filter(id=mine.id).exists()
    roots = await client.query("{ rootCompanies { id } }", token=holder.token)
    assert roots["rootCompanies"] == []  # its only set is gone: it sees nothing now


async def assign(client, token: str, user_id: int, set_ids: list[int]) -> dict:
    ids = [gid("PermissionSet", key) for key in set_ids]
    variables = {"input": {"userId": gid("User", user_id), "permissionSetIds": ids}}
    return (await client.query(ASSIGN, variables, token=token))["assignPermissionSets"]


async def test_assigning_sets_replaces_the_visible_ones_and_keeps_the_others(client, world):
    owner, tree, msp_a, msp_b, admin_a = world
    customer_group = await group_of(tree.customers[tree.msps[0].id][0])
    a_read = await permission_set(owner.instance_id, [msp_a], {Area.COMPANIES: Level.READ})
    a_customer = await permission_set(owner.instance_id, [customer_group], EVERYTHING)
    b_read = await permission_set(owner.instance_id, [msp_b], {Area.COMPANIES: Level.READ})
    target = await scoped_user(client, owner.instance_id, [msp_a], sets=[a_read])
    # A set outside admin A's view, held by the target: invisible, so kept.
    await target.user.permission_sets.add(
        await permission_set(owner.instance_id, [customer_group], {Area.SYNC: Level.READ})
    )
    hidden_holder = await User.get(id=target.user.id).prefetch_related("permission_sets")
    assert len(hidden_holder.permission_sets) == 2
    payload = await assign(client, admin_a.token, target.user.id, [a_customer.id])
    assert payload["errors"] == []
    assert {s["id"] for s in payload["user"]["permissionSets"]} >= {
        gid("PermissionSet", a_customer.id)
    }
    held = await User.get(id=target.user.id).prefetch_related("permission_sets")
    assert a_read.id not in {s.id for s in held.permission_sets}
    assert a_customer.id in {s.id for s in held.permission_sets}
    refused = await assign(client, admin_a.token, target.user.id, [b_read.id])
    assert codes(refused) == ["NOT_FOUND"]


async def test_users_and_sets_are_listed_through_the_users_scope(client, world):
    owner, tree, msp_a, msp_b, admin_a = world
    admin_b = await scoped_user(client, owner.instance_id, [msp_b])
    customer_a = await scoped_user(
        client, owner.instance_id, [await group_of(tree.customers[tree.msps[0].id][0])]
    )
    no_users = await scoped_user(client, owner.instance_id, [msp_a], {Area.COMPANIES: Level.READ})
    seen_by_a = await client.query(LISTS, token=admin_a.token)
    emails = {e["node"]["email"] for e in seen_by_a["users"]["edges"]}
    assert emails == {admin_a.email, customer_a.email, no_users.email}
    assert seen_by_a["users"]["totalCount"] == 3
    assert seen_by_a["permissionSets"]["totalCount"] == 3
    seen_by_b = await client.query(LISTS, token=admin_b.token)
    assert {e["node"]["email"] for e in seen_by_b["users"]["edges"]} == {admin_b.email}
    assert seen_by_b["permissionSets"]["totalCount"] == 1
    nothing = await client.query(LISTS, token=no_users.token)
    assert nothing["users"]["totalCount"] == 0 and nothing["permissionSets"]["totalCount"] == 0
    by_owner = await client.query(LISTS, token=owner.token)
    assert by_owner["users"]["totalCount"] == 5  # with the owner itself
    assert by_owner["permissionSets"]["totalCount"] == 4
    searched = await client.query(
        "query($s: String) { users(search: $s) { totalCount } }",
        {"s": admin_b.email.upper()},
        token=owner.token,
    )
    assert searched["users"]["totalCount"] == 1


@pytest.mark.parametrize("value", ["", "bad", gid("Company", 1), "VXNlcjox" * 40])
async def test_malformed_user_ids_are_bad_user_input(client, world, value):
    owner = world[0]
    body = await client.execute(
        UPDATE_USER, {"input": {"userId": value, "enabled": False}}, token=owner.token
    )
    assert error_codes(body) == ["BAD_USER_INPUT"]


async def test_too_many_ids_are_refused(client, world):
    owner, _, msp_a, _, _ = world
    body = await client.execute(
        CREATE_USER,
        {
            "input": {
                "email": factories.unique_email(),
                "password": "long enough password",
                "homeGroupId": gid("StaticGroup", msp_a.id),
                "permissionSetIds": [gid("PermissionSet", n) for n in range(1, 150)],
            }
        },
        token=owner.token,
    )
    assert error_codes(body) == ["BAD_USER_INPUT"]


async def test_disabling_a_user_closes_its_open_subscriptions_with_4403(
    client, world, app, server_url
):
    import websockets

    from tests.api.sockets import settled, subscribed

    owner, _, msp_a, _, admin_a = world
    target = await scoped_user(client, owner.instance_id, [msp_a], {Area.COMPANIES: Level.READ})
    before = app.state.hub.subscriber_count
    query = "subscription { customerStatusChanged { id } }"
    async with subscribed(server_url, target.token, query) as socket:
        await settled(app.state.hub, before)
        payload = await client.query(
            UPDATE_USER,
            {"input": {"userId": gid("User", target.user.id), "enabled": False}},
            token=admin_a.token,
        )
        assert payload["updateUser"]["errors"] == []
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await asyncio.wait_for(socket.recv(), 5)
    assert closed.value.rcvd.code == 4403


async def test_a_sign_in_with_a_nul_character_is_refused_like_any_wrong_credentials(client):
    for email, password in (("a\x00b@example.test", "whatever"), ("a@example.test", "pa\x00ss")):
        body = await client.execute(
            factories.LOGIN, {"input": {"email": email, "password": password, "via": None}}
        )
        assert [e["code"] for e in body["data"]["login"]["errors"]] == ["INVALID_CREDENTIALS"]

"""The customer lifecycle through the API: the setup wizard end to end, every transition of the
status machine, races, rights, hostile input, and the events subscribers get."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt

import pytest

from server import events
from server.api.schema import build_schema
from server.domain import counters, global_ids, installers
from server.domain.customers import SETUP_SESSION_TIMEOUT, SETUP_USER_DESCRIPTION
from server.models import Company, Installer, PermissionSet, Session, User
from server.models.db import count_statements
from server.models.enums import Area, Level, SetupState, UnlinkReason
from tests import factories
from tests.api.scoped_users import group_of, permission_set, scoped_user, shared_objects_of
from tests.graphql_client import error_codes

SETUP = """mutation($input: SetupCustomerInput!) { setupCustomer(input: $input) {
  customer { id customerStatus }
  user { id email enabled homeGroup { id name } }
  installer { id name revoked agentEndpoint company { id } group { id } }
  installerToken
  errors { code message field }
  clientMutationId } }"""
SKIP = """mutation($input: SkipCustomerSetupInput!) { skipCustomerSetup(input: $input) {
  customer { id customerStatus } errors { code field } } }"""
SKIP_ALL = """mutation { skipSetupForAllNewCustomers(input: {clientMutationId: "all"}) {
  customers { id customerStatus } count errors { code } clientMutationId } }"""
UNLINK = """mutation($input: UnlinkCustomerInput!) { unlinkCustomer(input: $input) {
  customer { id customerStatus unlinkedAt } errors { code field } } }"""
RELINK = """mutation($input: RelinkCustomerInput!) { relinkCustomer(input: $input) {
  customer { id customerStatus unlinkedAt } errors { code field } } }"""
ACTIONS = {
    "setup": ("setupCustomer", SETUP),
    "skip": ("skipCustomerSetup", SKIP),
    "unlink": ("unlinkCustomer", UNLINK),
    "relink": ("relinkCustomer", RELINK),
}


def gid(company: Company) -> str:
    return global_ids.encode("Company", company.id)


async def act(client, action: str, company: Company, token: str, **extra) -> dict:
    field, document = ACTIONS[action]
    data = await client.query(
        document, {"input": {"customerId": gid(company), **extra}}, token=token
    )
    return data[field]


async def states(companies: list[Company]) -> set[SetupState]:
    ids = [c.id for c in companies]
    return set(await Company.filter(id__in=ids).values_list("setup_state", flat=True))


async def fresh(company: Company) -> Company:
    return await Company.get(id=company.id)


@pytest.fixture
async def world(client):
    owner = await factories.owner(client)
    tree = await factories.company_tree(owner.instance_id, msps=2, customers_per_msp=2)
    return owner, tree


# The wizard -------------------------------------------------------------------------------


async def test_the_setup_wizard_end_to_end(client, world, settings):
    owner, tree = world
    customer, sibling = tree.customers[tree.msps[0].id]
    email = factories.unique_email("customer")
    payload = (
        await client.query(
            SETUP,
            {
                "input": {
                    "customerId": gid(customer),
                    "user": {"email": email, "password": "a good password"},
                    "clientMutationId": "wizard",
                }
            },
            token=owner.token,
        )
    )["setupCustomer"]
    assert payload["errors"] == []
    assert payload["clientMutationId"] == "wizard"
    assert payload["customer"]["customerStatus"] == "NORMAL"
    assert payload["user"]["email"] == email
    assert payload["user"]["homeGroup"]["name"] == customer.name
    installer = payload["installer"]
    assert installer["company"]["id"] == gid(customer)
    assert installer["revoked"] is False
    assert installer["agentEndpoint"] == settings.public_agent_url
    assert payload["installerToken"].startswith("inst_")

    user = await User.get(email=email).prefetch_related("permission_sets__groups")
    assert user.tag == customer.name
    assert user.description == SETUP_USER_DESCRIPTION
    assert user.session_timeout == SETUP_SESSION_TIMEOUT == 900
    assert user.home_group_id == (await group_of(customer)).id
    sets = sorted(user.permission_sets, key=lambda s: s.name)
    assert len(sets) == 2
    on_customer = [s for s in sets if [g.id for g in s.groups] == [user.home_group_id]]
    assert len(on_customer) == 1 and on_customer[0].levels["COMPANIES"] == "READ"
    shared = next(s for s in sets if s is not on_customer[0])
    assert {g.id for g in shared.groups} == {
        (await shared_objects_of(tree.manager)).id,
        (await shared_objects_of(tree.msps[0])).id,
    }
    assert shared.levels == {"GROUPS": "USE", "INSTALLERS": "USE"}

    # The new user signs in as a console user and sees its customer only.
    token = await factories.login(client, email, "a good password", None)
    seen = await client.query(
        """{ rootCompanies { id parent { id } ancestors { id } }
             rootGroups { id children { totalCount } }
             managedCustomers { totalCount statusCounts { notSetUp normal unlinked } }
             computers { totalCount edges { node { id } } } }""",
        token=token,
    )
    assert [c["id"] for c in seen["rootCompanies"]] == [gid(customer)]
    assert seen["rootCompanies"][0]["parent"] is None
    assert seen["rootCompanies"][0]["ancestors"] == []
    assert [g["id"] for g in seen["rootGroups"]] == [
        global_ids.encode("StaticGroup", user.home_group_id)
    ]
    assert seen["managedCustomers"]["totalCount"] == 1
    assert seen["managedCustomers"]["statusCounts"] == {"notSetUp": 0, "normal": 1, "unlinked": 0}
    assert {e["node"]["id"] for e in seen["computers"]["edges"]} == {
        global_ids.encode("Computer", c.id) for c in tree.computers[customer.id]
    }
    assert seen["computers"]["totalCount"] == 2

    # ... creates an installer for it ...
    if "createInstaller" in build_schema()._schema.mutation_type.fields:
        created = await client.query(
            """mutation($input: CreateInstallerInput!) { createInstaller(input: $input) {
                 installer { id } token errors { code } } }""",
            {"input": {"companyId": gid(customer)}},
            token=token,
        )
        assert created["createInstaller"]["errors"] == []
        assert created["createInstaller"]["token"]
    else:  # the mutation comes with the agent API; the rule is the domain's
        from server.domain.access import load_scope

        scope = await load_scope(owner.instance_id, user.id, False, None)
        await installers.create_installer(scope, company_id=customer.id, created_by_id=user.id)
    assert await Installer.filter(company_id=customer.id).count() == 2

    # ... and can neither see nor touch the sibling customer.
    node = await client.query(
        "query($id: ID!) { node(id: $id) { id } }", {"id": gid(sibling)}, token=token
    )
    assert node["node"] is None
    for action in ("setup", "skip", "unlink", "relink"):
        result = await act(client, action, sibling, token)
        assert [e["code"] for e in result["errors"]] == ["NOT_FOUND"], action
    assert (await fresh(sibling)).setup_state == SetupState.PENDING
    # Nor its own company's status: it reads it, it does not change it.
    assert [e["code"] for e in (await act(client, "unlink", customer, token))["errors"]] == [
        "FORBIDDEN"
    ]


async def test_a_setup_without_user_and_installer_only_marks_the_customer_set_up(client, world):
    owner, tree = world
    customer = tree.customers[tree.msps[1].id][0]
    users_before = await User.filter(instance_id=owner.instance_id).count()
    payload = await act(client, "setup", customer, owner.token, createInstaller=False)
    assert payload["errors"] == []
    assert payload["user"] is None and payload["installer"] is None
    assert payload["installerToken"] is None
    assert payload["customer"]["customerStatus"] == "NORMAL"
    assert (await fresh(customer)).setup_state == SetupState.DONE
    assert await User.filter(instance_id=owner.instance_id).count() == users_before
    assert await Installer.filter(company_id=customer.id).count() == 0


async def test_a_setup_that_fails_midway_leaves_nothing_behind(client, world, monkeypatch):
    owner, tree = world
    customer = tree.customers[tree.msps[0].id][0]
    email = factories.unique_email("partial")

    async def broken(*args, **kwargs):
        from server.domain.errors import InvalidInput

        raise InvalidInput("the installer could not be made", "createInstaller")

    monkeypatch.setattr(installers, "create_installer", broken)
    payload = await act(
        client, "setup", customer, owner.token, user={"email": email, "password": "long enough"}
    )
    assert [e["code"] for e in payload["errors"]] == ["INVALID_INPUT"]
    assert (await fresh(customer)).setup_state == SetupState.PENDING
    assert not await User.filter(email=email).exists()
    assert not await PermissionSet.filter(instance_id=owner.instance_id).exists()


async def test_a_setup_with_a_taken_email_creates_nothing(client, world):
    owner, tree = world
    customer = tree.customers[tree.msps[0].id][0]
    payload = await act(
        client,
        "setup",
        customer,
        owner.token,
        user={"email": owner.email, "password": "long enough"},
    )
    assert [(e["code"], e["field"]) for e in payload["errors"]] == [
        ("ALREADY_EXISTS", "user.email")
    ]
    assert (await fresh(customer)).setup_state == SetupState.PENDING
    assert await Installer.filter(company_id=customer.id).count() == 0


async def test_two_customers_with_the_same_name_both_get_their_permission_sets(client):
    owner = await factories.owner(client)
    tree = await factories.company_tree(owner.instance_id, msps=2, customers_per_msp=1)
    twin = tree.customers[tree.msps[1].id][0]
    twin.name = tree.customers[tree.msps[0].id][0].name
    await twin.save(update_fields=["name"])
    for n, customer in enumerate(tree.all_customers):
        user = {"email": factories.unique_email(f"twin{n}"), "password": "long enough"}
        payload = await act(client, "setup", customer, owner.token, user=user)
        assert payload["errors"] == []
    names = await PermissionSet.filter(instance_id=owner.instance_id).values_list("name", flat=True)
    assert len(names) == len(set(names)) == 4


# Rights -------------------------------------------------------------------------------------


async def test_setup_needs_write_on_the_customer_and_use_on_the_shared_objects(client, world):
    owner, tree = world
    msp = tree.msps[0]
    customer = tree.customers[msp.id][0]
    reader = await scoped_user(
        client, owner.instance_id, [await group_of(msp)], dict.fromkeys(Area, Level.READ)
    )
    only_customer = await scoped_user(client, owner.instance_id, [await group_of(customer)])
    for viewer in (reader, only_customer):
        user = {"email": factories.unique_email("denied"), "password": "long enough"}
        payload = await act(client, "setup", customer, viewer.token, user=user)
        assert [e["code"] for e in payload["errors"]] == ["FORBIDDEN"]
        assert not await User.filter(email=user["email"]).exists()
    assert await Installer.filter(company_id=customer.id).count() == 0
    assert (await fresh(customer)).setup_state == SetupState.PENDING


async def test_an_msp_admin_sets_up_its_customer_with_no_more_than_it_holds(client, world):
    owner, tree = world
    msp = tree.msps[0]
    customer = tree.customers[msp.id][0]
    levels = {
        Area.COMPANIES: Level.WRITE,
        Area.COMPUTERS: Level.USE,
        Area.INSTALLERS: Level.WRITE,
        Area.GROUPS: Level.READ,
    }
    admin = await scoped_user(client, owner.instance_id, [await group_of(msp)], levels)
    email = factories.unique_email("capped")
    payload = await act(
        client, "setup", customer, admin.token, user={"email": email, "password": "long enough"}
    )
    assert payload["errors"] == []
    user = await User.get(email=email).prefetch_related("permission_sets__groups")
    granted = {s.name: (s.levels, {g.id for g in s.groups}) for s in user.permission_sets}
    assert sorted((v[0] for v in granted.values()), key=len) == sorted(
        [
            {"COMPANIES": "READ", "COMPUTERS": "USE", "GROUPS": "READ", "INSTALLERS": "WRITE"},
            {"GROUPS": "READ", "INSTALLERS": "USE"},
        ],
        key=len,
    )
    # Only the Shared Objects group the admin can see (its MSP's), not the manager's.
    shared = next(groups for levels, groups in granted.values() if len(levels) == 2)
    assert shared == {(await shared_objects_of(msp)).id}


# The status machine ---------------------------------------------------------------------

STATES = {
    "NOT_SET_UP": (SetupState.PENDING, None),
    "NORMAL_SET_UP": (SetupState.DONE, None),
    "NORMAL_SKIPPED": (SetupState.SKIPPED, None),
    "UNLINKED_BY_USER_NOT_SET_UP": (SetupState.PENDING, UnlinkReason.USER),
    "UNLINKED_BY_USER_NORMAL": (SetupState.DONE, UnlinkReason.USER),
    "UNLINKED_UPSTREAM": (SetupState.SKIPPED, UnlinkReason.UPSTREAM),
}
# (state, action) -> the status after, or the error code
TRANSITIONS = {
    ("NOT_SET_UP", "setup"): "NORMAL",
    ("NOT_SET_UP", "skip"): "NORMAL",
    ("NOT_SET_UP", "unlink"): "UNLINKED",
    ("NOT_SET_UP", "relink"): "INVALID_TRANSITION",
    ("NORMAL_SET_UP", "setup"): "INVALID_TRANSITION",
    ("NORMAL_SET_UP", "skip"): "INVALID_TRANSITION",
    ("NORMAL_SET_UP", "unlink"): "UNLINKED",
    ("NORMAL_SET_UP", "relink"): "INVALID_TRANSITION",
    ("NORMAL_SKIPPED", "setup"): "INVALID_TRANSITION",
    ("NORMAL_SKIPPED", "skip"): "INVALID_TRANSITION",
    ("NORMAL_SKIPPED", "unlink"): "UNLINKED",
    ("NORMAL_SKIPPED", "relink"): "INVALID_TRANSITION",
    ("UNLINKED_BY_USER_NOT_SET_UP", "setup"): "INVALID_TRANSITION",
    ("UNLINKED_BY_USER_NOT_SET_UP", "skip"): "INVALID_TRANSITION",
    ("UNLINKED_BY_USER_NOT_SET_UP", "unlink"): "INVALID_TRANSITION",
    ("UNLINKED_BY_USER_NOT_SET_UP", "relink"): "NOT_SET_UP",
    ("UNLINKED_BY_USER_NORMAL", "setup"): "INVALID_TRANSITION",
    ("UNLINKED_BY_USER_NORMAL", "skip"): "INVALID_TRANSITION",
    ("UNLINKED_BY_USER_NORMAL", "unlink"): "INVALID_TRANSITION",
    ("UNLINKED_BY_USER_NORMAL", "relink"): "NORMAL",
    ("UNLINKED_UPSTREAM", "setup"): "INVALID_TRANSITION",
    ("UNLINKED_UPSTREAM", "skip"): "INVALID_TRANSITION",
    ("UNLINKED_UPSTREAM", "unlink"): "INVALID_TRANSITION",
    ("UNLINKED_UPSTREAM", "relink"): "INVALID_TRANSITION",
}


async def put_in(company: Company, state: str) -> None:
    setup, reason = STATES[state]
    company.setup_state = setup
    company.unlinked_at = dt.datetime.now(dt.UTC) if reason else None
    company.unlink_reason = reason
    await company.save(update_fields=["setup_state", "unlinked_at", "unlink_reason"])
    await counters.recount(company.instance_id)  # type: ignore[attr-defined]  # written directly


@pytest.fixture(scope="module")
async def machine(client):
    owner = await factories.owner(client)
    tree = await factories.company_tree(
        owner.instance_id, msps=2, customers_per_msp=12, computers_per_customer=0
    )
    return owner, tree


@pytest.mark.parametrize(("state", "action"), sorted(TRANSITIONS))
async def test_every_transition_of_the_status_machine(client, machine, state, action):
    owner, tree = machine
    customer = tree.all_customers[sorted(TRANSITIONS).index((state, action))]
    await put_in(customer, state)
    before = await fresh(customer)
    result = await act(client, action, customer, owner.token)
    expected = TRANSITIONS[(state, action)]
    if expected == "INVALID_TRANSITION":
        assert [e["code"] for e in result["errors"]] == ["INVALID_TRANSITION"]
        assert result["customer"] is None
        after = await fresh(customer)
        assert (after.setup_state, after.unlinked_at, after.unlink_reason) == (
            before.setup_state,
            before.unlinked_at,
            before.unlink_reason,
        )
    else:
        assert result["errors"] == []
        assert result["customer"]["customerStatus"] == expected
        after = await fresh(customer)
        if action == "unlink":
            assert after.unlink_reason == UnlinkReason.USER
            assert after.setup_state == before.setup_state


@pytest.mark.parametrize("action", ["setup", "skip", "unlink", "relink"])
async def test_a_company_that_is_not_a_customer_answers_not_a_customer(client, machine, action):
    owner, tree = machine
    for company in (tree.msps[0], tree.manager):
        result = await act(client, action, company, owner.token)
        assert [e["code"] for e in result["errors"]] == ["NOT_A_CUSTOMER"]


async def test_setup_and_skip_racing_exactly_one_wins(client):
    owner = await factories.owner(client)
    tree = await factories.company_tree(
        owner.instance_id, msps=1, customers_per_msp=6, computers_per_customer=0
    )
    for n, customer in enumerate(tree.all_customers):
        email = factories.unique_email(f"race{n}")
        setup, skip = await asyncio.gather(
            act(
                client,
                "setup",
                customer,
                owner.token,
                user={"email": email, "password": "long enough"},
            ),
            act(client, "skip", customer, owner.token),
        )
        outcomes = sorted([bool(setup["errors"]), bool(skip["errors"])])
        assert outcomes == [False, True], (setup, skip)
        loser = setup if setup["errors"] else skip
        assert [e["code"] for e in loser["errors"]] == ["INVALID_TRANSITION"]
        after = await fresh(customer)
        if setup["errors"]:  # skip won: the setup left nothing
            assert after.setup_state == SetupState.SKIPPED
            assert not await User.filter(email=email).exists()
            assert await Installer.filter(company_id=customer.id).count() == 0
        else:
            assert after.setup_state == SetupState.DONE
            assert await User.filter(email=email).exists()


async def test_two_unlinks_racing_exactly_one_wins(client, world):
    owner, tree = world
    customer = tree.customers[tree.msps[1].id][1]
    results = await asyncio.gather(
        *(act(client, "unlink", customer, owner.token) for _ in range(3))
    )
    codes = sorted(e["code"] for r in results for e in r["errors"])
    assert codes == ["INVALID_TRANSITION", "INVALID_TRANSITION"]


# Unlink and relink ------------------------------------------------------------------------


async def test_unlink_revokes_installers_disables_users_and_relink_gives_back_the_status(
    client, world, app
):
    owner, tree = world
    customer = tree.customers[tree.msps[0].id][1]
    email = factories.unique_email("unlinked")
    setup = await act(
        client, "setup", customer, owner.token, user={"email": email, "password": "long enough"}
    )
    assert setup["errors"] == []
    token = await factories.login(client, email, "long enough", None)
    group = await group_of(customer)
    already_disabled = await scoped_user(client, owner.instance_id, [group])
    already_disabled.user.enabled = False
    await already_disabled.user.save(update_fields=["enabled"])

    async with (
        app.state.bus.subscribe(events.SESSION_ENDED) as ended,
        app.state.bus.subscribe(events.CUSTOMER_STATUS) as changed,
    ):
        result = await act(client, "unlink", customer, owner.token)
        assert result["errors"] == []
        assert result["customer"]["customerStatus"] == "UNLINKED"
        status_event = await asyncio.wait_for(anext(changed), 2)
        ended_event = await asyncio.wait_for(anext(ended), 2)
    assert status_event == {"instance_id": owner.instance_id, "company_ids": [customer.id]}
    created = await User.get(email=email)
    assert ended_event["user_ids"] == [created.id]
    assert not created.enabled and created.disabled_by_unlink_id == customer.id
    assert not await Session.filter(user_id=created.id).exists()
    body = await client.execute("{ viewer { user { email } } }", token=token)
    assert "UNAUTHENTICATED" in error_codes(body)
    installers_left = await Installer.filter(company_id=customer.id)
    assert installers_left and all(i.revoked_at is not None for i in installers_left)
    # Its group and computers stay.
    seen = await client.query(
        "query($id: ID!) { node(id: $id) { ... on Company { staticGroup { id } computerCount } } }",
        {"id": gid(customer)},
        token=owner.token,
    )
    assert seen["node"]["computerCount"] == 2

    relinked = await act(client, "relink", customer, owner.token)
    assert relinked["errors"] == []
    assert relinked["customer"]["customerStatus"] == "NORMAL"
    assert relinked["customer"]["unlinkedAt"] is None
    assert (await User.get(email=email)).enabled
    assert not (await User.get(id=already_disabled.user.id)).enabled
    assert all(i.revoked_at is not None for i in await Installer.filter(company_id=customer.id))
    await factories.login(client, email, "long enough", None)


async def test_skip_for_all_new_customers_touches_only_what_the_viewer_may_write(client):
    owner = await factories.owner(client)
    tree = await factories.company_tree(
        owner.instance_id, msps=2, customers_per_msp=3, computers_per_customer=0
    )
    mine, theirs = (tree.customers[m.id] for m in tree.msps)
    await put_in(mine[0], "UNLINKED_BY_USER_NOT_SET_UP")
    await put_in(mine[1], "NORMAL_SET_UP")
    admin = await scoped_user(
        client, owner.instance_id, [await group_of(tree.msps[0])], {Area.COMPANIES: Level.WRITE}
    )
    data = (await client.query(SKIP_ALL, token=admin.token))["skipSetupForAllNewCustomers"]
    assert data["errors"] == [] and data["clientMutationId"] == "all"
    assert data["count"] == 1
    assert [c["id"] for c in data["customers"]] == [gid(mine[2])]
    assert (await fresh(mine[2])).setup_state == SetupState.SKIPPED
    assert (await fresh(mine[0])).setup_state == SetupState.PENDING  # unlinked: untouched
    assert await states(theirs) == {SetupState.PENDING}
    reader = await scoped_user(
        client, owner.instance_id, [await group_of(tree.msps[1])], {Area.COMPANIES: Level.USE}
    )
    data = (await client.query(SKIP_ALL, token=reader.token))["skipSetupForAllNewCustomers"]
    assert data["count"] == 0
    assert await states(theirs) == {SetupState.PENDING}
    again = (await client.query(SKIP_ALL, token=owner.token))["skipSetupForAllNewCustomers"]
    assert again["count"] == 3


# Hostile input ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "customer_id",
    ["", "not-an-id", "x" * 5000, global_ids.encode("Computer", 1), "Q29tcGFueTotMQ"],
)
async def test_malformed_and_wrongly_typed_ids_are_bad_user_input(client, world, customer_id):
    owner, _ = world
    body = await client.execute(SETUP, {"input": {"customerId": customer_id}}, token=owner.token)
    assert error_codes(body) == ["BAD_USER_INPUT"]


async def test_missing_and_foreign_customers_are_not_found(client, world):
    owner, _ = world
    other = await factories.owner(client)
    foreign = await factories.company_tree(
        other.instance_id, msps=1, customers_per_msp=1, computers_per_customer=0
    )
    missing = Company(id=2_000_000_000)
    for customer in (missing, foreign.all_customers[0]):
        for action in ACTIONS:
            result = await act(client, action, customer, owner.token)
            assert [e["code"] for e in result["errors"]] == ["NOT_FOUND"]
    assert (await fresh(foreign.all_customers[0])).setup_state == SetupState.PENDING


@pytest.mark.parametrize(
    ("user", "field"),
    [
        ({"email": "not an email", "password": "long enough"}, "user.email"),
        ({"email": "a" * 300 + "@example.test", "password": "long enough"}, "user.email"),
        ({"email": "x@example.test\x00", "password": "long enough"}, "user.email"),
        ({"email": "short@example.test", "password": "short"}, "user.password"),
        ({"email": "long@example.test", "password": "p" * 100_000}, "user.password"),
    ],
)
async def test_bad_emails_and_passwords_are_refused_before_anything_is_written(
    client, world, user, field
):
    owner, tree = world
    customer = tree.customers[tree.msps[1].id][0]
    body = await client.execute(
        SETUP, {"input": {"customerId": gid(customer), "user": user}}, token=owner.token
    )
    if body.get("errors"):  # the query limits may refuse a huge document first
        assert error_codes(body) in (["BAD_USER_INPUT"], ["QUERY_TOO_LARGE"])
        return
    payload = body["data"]["setupCustomer"]
    assert [(e["code"], e["field"]) for e in payload["errors"]] == [("INVALID_INPUT", field)]
    assert (await fresh(customer)).setup_state == SetupState.PENDING


async def test_signed_out_callers_are_refused(client, world):
    _, tree = world
    body = await client.execute(SETUP, {"input": {"customerId": gid(tree.all_customers[0])}})
    assert error_codes(body) == ["UNAUTHENTICATED"]
    assert (await fresh(tree.all_customers[0])).setup_state == SetupState.PENDING


async def test_a_customer_user_sees_its_status_change_but_not_its_siblings(client, world, app):
    owner, tree = world
    customer, sibling = tree.customers[tree.msps[1].id]
    viewer = await scoped_user(client, owner.instance_id, [await group_of(customer)])
    async with app.state.bus.subscribe(events.CUSTOMER_STATUS) as changed:
        for company in (sibling, customer):
            assert (await act(client, "skip", company, owner.token))["errors"] == []
        payloads = [await asyncio.wait_for(anext(changed), 2) for _ in range(2)]
    assert [p["company_ids"] for p in payloads] == [[sibling.id], [customer.id]]
    # What a subscriber reloads goes through its scope: the sibling reloads to nothing.
    found = await client.query(
        "query($ids: [ID!]!) { nodes(ids: $ids) { id } }",
        {"ids": [gid(sibling), gid(customer)]},
        token=viewer.token,
    )
    assert found["nodes"] == [None, {"id": gid(customer)}]


# Speed --------------------------------------------------------------------------------------


async def test_the_managed_customers_page_costs_a_user_with_50_sets_what_it_costs_the_owner(
    client,
):
    owner = await factories.owner(client)
    tree = await factories.company_tree(
        owner.instance_id, msps=5, customers_per_msp=10, computers_per_customer=1
    )
    sets = [
        await permission_set(owner.instance_id, [await group_of(c)]) for c in tree.all_customers
    ]
    user = await scoped_user(
        client, owner.instance_id, [await group_of(tree.all_customers[0])], sets=sets
    )
    counts = []
    for token in (owner.token, user.token):
        with count_statements() as counter:
            data = await client.operation("ManagedCustomers", {"first": 50}, token)
        assert data["managedCustomers"]["totalCount"] == 50
        counts.append(counter.count)
    # session (with the viewer's grants), page, totalCount, statusCounts, parents, groups,
    # computer counts: the same for both, and no statement per permission set or per row
    assert counts == [7, 7]


async def test_a_status_change_reaches_the_subscribers_who_see_the_customer_only(
    client, world, app, server_url
):
    from tests.api.sockets import received, settled, subscribed

    owner, tree = world
    mine, theirs = (tree.customers[m.id][0] for m in tree.msps)
    admin_a = await scoped_user(client, owner.instance_id, [await group_of(tree.msps[0])])
    admin_b = await scoped_user(client, owner.instance_id, [await group_of(tree.msps[1])])
    query = "subscription { customerStatusChanged { id customerStatus } }"
    async with contextlib.AsyncExitStack() as stack:
        sockets = []
        for viewer in (admin_a, admin_b):
            before = app.state.hub.subscriber_count
            sockets.append(
                await stack.enter_async_context(subscribed(server_url, viewer.token, query))
            )
            await settled(app.state.hub, before)
        assert (await act(client, "skip", mine, owner.token))["errors"] == []
        assert (await act(client, "unlink", theirs, owner.token))["errors"] == []
        got_a, got_b = [await received(s, at_least=1) for s in sockets]
    assert got_a == [{"customerStatusChanged": {"id": gid(mine), "customerStatus": "NORMAL"}}]
    assert got_b == [{"customerStatusChanged": {"id": gid(theirs), "customerStatus": "UNLINKED"}}]

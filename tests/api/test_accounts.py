"""Accounts, sign-in, sessions and the mixed-account instance rules, through the real app."""

import asyncio
import re
import threading
from typing import Any

import pytest

from server.domain import accounts, secrets
from server.models import Company, Instance, Session, StaticGroup, db
from server.models.enums import Service, SyncState
from tests import factories
from tests.conftest import METRICS_TOKEN
from tests.graphql_client import error_codes
from tests.sync_support import connected_tenant, synced

VIEWER = (
    "{ viewer { via account { id email services mixed } user { email }"
    " instance { id createdVia accessibleVia } } }"
)


async def test_a_mixed_account_reaches_its_instance_through_both_services(client):
    owner = await factories.owner(client, via=Service.EMA2)
    tokens = {
        via: await factories.login(client, owner.email, factories.PASSWORD, via)
        for via in ("EBA", "EMA2")
    }
    seen = {via: (await client.query(VIEWER, token=t))["viewer"] for via, t in tokens.items()}
    assert seen["EBA"]["via"] == "EBA" and seen["EMA2"]["via"] == "EMA2"
    assert seen["EBA"]["instance"]["id"] == seen["EMA2"]["instance"]["id"]
    assert seen["EBA"]["instance"]["createdVia"] == "EMA2"
    assert sorted(seen["EBA"]["instance"]["accessibleVia"]) == ["EBA", "EMA2"]
    assert seen["EBA"]["account"]["mixed"] is True


async def test_a_wrong_service_and_a_wrong_password_get_the_same_answer(client):
    owner = await factories.owner(client, services=(Service.EBA,))
    answers = []
    for password, via in ((factories.PASSWORD, "EMA2"), ("wrong password!", "EBA")):
        body = await client.operation(
            "Login", {"input": {"email": owner.email, "password": password, "via": via}}
        )
        answers.append(body["login"])
    assert answers[0] == answers[1]
    assert answers[0]["token"] is None
    assert answers[0]["errors"][0]["code"] == "INVALID_CREDENTIALS"


async def test_an_account_owner_cannot_sign_in_as_a_native_console_user(client):
    owner = await factories.owner(client)
    body = await client.operation(
        "Login", {"input": {"email": owner.email, "password": factories.PASSWORD, "via": None}}
    )
    assert body["login"]["errors"][0]["code"] == "INVALID_CREDENTIALS"


async def test_unknown_emails_and_oversized_passwords_are_refused_the_same_way(client):
    for email, password in (("nobody@example.test", "whatever1"), ("a@b.c", "x" * 100_000)):
        body = await client.operation(
            "Login", {"input": {"email": email, "password": password, "via": "EBA"}}
        )
        assert body["login"]["errors"][0]["code"] == "INVALID_CREDENTIALS"


async def test_an_instance_is_created_through_the_service_of_the_session(client):
    owner = await factories.owner(client, via=Service.EMA2, with_instance=False)
    assert (await client.query(VIEWER, token=owner.token))["viewer"]["instance"] is None
    data = await client.operation(
        "CreateInstance", {"input": {"name": "Acme MSP", "clientMutationId": "c1"}}, owner.token
    )
    payload = data["createInstance"]
    assert payload["errors"] == [] and payload["clientMutationId"] == "c1"
    assert payload["instance"]["createdVia"] == "EMA2"
    assert payload["instance"]["mspStatus"] == "DISCONNECTED"
    groups = await client.query(
        "{ rootGroups { name children { edges { node { name } } } } }", token=owner.token
    )
    assert groups["rootGroups"][0]["name"] == "All"
    assert groups["rootGroups"][0]["children"]["edges"][0]["node"]["name"] == "Companies"


async def test_an_account_has_at_most_one_instance(client):
    owner = await factories.owner(client)
    data = await client.operation("CreateInstance", {"input": {"name": "Second"}}, owner.token)
    assert data["createInstance"]["errors"][0]["code"] == "ALREADY_EXISTS"
    assert await Instance.filter(owner_id=owner.account_id).count() == 1


@pytest.mark.parametrize(
    "name", ["   ", "x" * 256, "tab\there", "nul\x00byte"], ids=["blank", "long", "tab", "nul"]
)
async def test_a_bad_instance_name_is_refused_and_nothing_is_created(client, name):
    owner = await factories.owner(client, with_instance=False)
    data = await client.operation("CreateInstance", {"input": {"name": name}}, owner.token)
    assert data["createInstance"]["errors"][0]["code"] == "INVALID_INPUT"
    assert data["createInstance"]["errors"][0]["field"] == "name"
    assert not await Instance.filter(owner_id=owner.account_id).exists()


async def test_removal_through_the_other_service_is_refused_and_removes_nothing(client):
    owner = await factories.owner(client, via=Service.EBA)
    await factories.company_tree(owner.instance_id, msps=1, customers_per_msp=2)
    other = await factories.login(client, owner.email, factories.PASSWORD, "EMA2")
    instance_id = (await client.query(VIEWER, token=other))["viewer"]["instance"]["id"]
    data = await client.operation("RemoveInstance", {"input": {"instanceId": instance_id}}, other)
    assert data["removeInstance"]["errors"][0]["code"] == "REMOVAL_RESERVED_TO_CREATING_SERVICE"
    assert data["removeInstance"]["removedInstanceId"] is None
    assert await Instance.filter(id=owner.instance_id).exists()
    assert await Company.filter(instance_id=owner.instance_id).count() == 4


async def test_removal_through_the_creating_service_removes_everything_of_the_instance(client):
    owner = await factories.owner(client, via=Service.EBA)
    await factories.company_tree(owner.instance_id, msps=1, customers_per_msp=2)
    instance_id = (await client.query(VIEWER, token=owner.token))["viewer"]["instance"]["id"]
    data = await client.operation(
        "RemoveInstance", {"input": {"instanceId": instance_id}}, owner.token
    )
    assert data["removeInstance"] == {
        "removedInstanceId": instance_id,
        "errors": [],
        "clientMutationId": None,
    }
    assert (await client.query(VIEWER, token=owner.token))["viewer"]["instance"] is None
    assert not await Company.filter(instance_id=owner.instance_id).exists()
    assert not await StaticGroup.filter(instance_id=owner.instance_id).exists()
    # the account may create a new one afterwards
    again = await client.operation("CreateInstance", {"input": {"name": "Again"}}, owner.token)
    assert again["createInstance"]["errors"] == []


async def tables_with_instance_rows() -> list[str]:
    """Every table of the database with an `instance_id` column, read from its catalog (so a
    table added later is counted without being listed here)."""
    if db.is_postgres():
        rows = await db.fetch(
            "SELECT table_name AS name FROM information_schema.columns "
            "WHERE table_schema = current_schema() AND column_name = 'instance_id'"
        )
    else:
        rows = await db.fetch(
            "SELECT m.name FROM sqlite_master m JOIN pragma_table_info(m.name) p "
            "WHERE m.type = 'table' AND p.name = 'instance_id'"
        )
    return sorted(row["name"] for row in rows)


async def rows_of(instance_id: int) -> dict[str, list[dict[str, Any]]]:
    """Every row of the instance, table by table, the instance's own included."""
    rows = {
        table: await db.fetch(
            f"SELECT * FROM {table} WHERE instance_id = ? ORDER BY 1", [instance_id]
        )
        for table in await tables_with_instance_rows()
    }
    rows["instance"] = await db.fetch("SELECT * FROM instance WHERE id = ?", [instance_id])
    return rows


@pytest.mark.upstream_tree(60, 21)
async def test_removing_a_synced_instance_leaves_no_row_of_it_and_the_others_as_they_were(
    client, sim, settings
):
    owners = [await connected_tenant(client, sim) for _ in range(2)]
    for owner in owners:
        assert (await synced(owner, settings)).state == SyncState.SUCCEEDED
        customer = await Company.filter(instance_id=owner.instance_id, type="CUSTOMER").first()
        assert customer is not None
        await factories.computer(owner.instance_id, customer, "pc-1")
    removed, kept = owners
    before = await rows_of(kept.instance_id)
    held = {table for table, rows in (await rows_of(removed.instance_id)).items() if rows}
    # the rows a sync and an enrolment write, those RESTRICT keys guard among them
    assert {"license", "usage_line", "usage_day", "subtree_count", "computer"} <= held
    instance_id = (await client.query(VIEWER, token=removed.token))["viewer"]["instance"]["id"]
    data = await client.operation(
        "RemoveInstance", {"input": {"instanceId": instance_id}}, removed.token
    )
    assert data["removeInstance"]["errors"] == []
    left = await rows_of(removed.instance_id)
    assert {table: rows for table, rows in left.items() if rows} == {}
    assert await rows_of(kept.instance_id) == before


async def test_an_account_cannot_remove_another_accounts_instance(client):
    first = await factories.owner(client)
    second = await factories.owner(client)
    first_id = (await client.query(VIEWER, token=first.token))["viewer"]["instance"]["id"]
    data = await client.operation(
        "RemoveInstance", {"input": {"instanceId": first_id}}, second.token
    )
    assert data["removeInstance"]["errors"][0]["code"] == "NOT_FOUND"
    assert await Instance.filter(id=first.instance_id).exists()


async def test_a_malformed_instance_id_is_a_bad_user_input_error(client):
    owner = await factories.owner(client)
    body = await client.execute(
        "mutation($i: RemoveInstanceInput!) { removeInstance(input: $i) { removedInstanceId } }",
        {"i": {"instanceId": "not-an-id"}},
        owner.token,
    )
    assert error_codes(body) == ["BAD_USER_INPUT"]
    assert await Instance.filter(id=owner.instance_id).exists()


@pytest.mark.parametrize(
    "query",
    [
        "{ viewer { via } }",
        "{ instance { id } }",
        "{ rootCompanies { id } }",
        "{ rootGroups { id } }",
        "{ managedCustomers { totalCount } }",
        "{ computers { totalCount } }",
        "{ syncRuns { totalCount } }",
        '{ node(id: "Q29tcGFueTox") { id } }',
        '{ nodes(ids: ["Q29tcGFueTox"]) { id } }',
        'mutation { createInstance(input: {name: "x"}) { errors { code } } }',
        "mutation { logout { errors { code } } }",
    ],
)
@pytest.mark.parametrize("token", [None, "msp_not-a-real-token", "x" * 5000])
async def test_every_field_but_login_needs_a_valid_token(client, query, token):
    body = await client.execute(query, token=token)
    assert error_codes(body) == ["UNAUTHENTICATED"]


async def test_introspection_and_typename_need_no_token(client):
    data = await client.query("{ __typename __schema { queryType { name } } }")
    assert data["__schema"]["queryType"]["name"] == "Query"


async def test_logout_ends_the_session(client):
    owner = await factories.owner(client)
    data = await client.query("mutation { logout { errors { code } } }", token=owner.token)
    assert data["logout"]["errors"] == []
    assert error_codes(await client.execute(VIEWER, token=owner.token)) == ["UNAUTHENTICATED"]


async def test_session_tokens_are_stored_only_as_hashes(client):
    owner = await factories.owner(client)
    stored = await Session.all().values_list("token_hash", flat=True)
    assert owner.token not in stored
    assert secrets.token_hash(owner.token) in stored


async def test_an_expired_session_is_refused(client):
    owner = await factories.owner(client)
    session = await Session.get(token_hash=secrets.token_hash(owner.token))
    session.expires_at = accounts.utcnow()
    await session.save(update_fields=["expires_at"])
    assert error_codes(await client.execute(VIEWER, token=owner.token)) == ["UNAUTHENTICATED"]


async def test_emails_are_unique_across_accounts_whatever_their_case(client):
    owner = await factories.owner(client)
    with pytest.raises(Exception) as refused:
        await accounts.create_account(owner.email.upper(), factories.PASSWORD, [Service.EBA])
    assert getattr(refused.value, "code", None) == "ALREADY_EXISTS"


async def hashing_in_flight(client) -> float:
    """Password hashes and verifications running or queued, as /metrics reports them."""
    text = (
        await client.http.get("/metrics", headers={"authorization": f"Bearer {METRICS_TOKEN}"})
    ).text
    return float(re.search(r"^msp_password_hashing (\S+)$", text, re.M).group(1))  # type: ignore[union-attr]


async def test_requests_are_answered_while_sign_ins_wait_for_password_hashing(client, settings):
    """argon2 runs in a bounded pool, off the event loop: with every hashing thread busy and
    sign-ins queued behind them, other requests of the worker are still answered."""
    owner = await factories.owner(client)
    threads, queued = settings.password_hashing_threads, 4
    before = await hashing_in_flight(client)
    gate = threading.Event()
    busy = [asyncio.ensure_future(secrets.in_hashing_pool(gate.wait)) for _ in range(threads)]
    sign_ins: list[asyncio.Future] = []
    try:
        sign_ins = [
            asyncio.ensure_future(factories.login(client, owner.email, factories.PASSWORD, "EBA"))
            for _ in range(queued)
        ]
        async with asyncio.timeout(30):  # a guard against hanging, not a measurement
            while await hashing_in_flight(client) < before + threads + queued:  # noqa: ASYNC110 - a gauge has no event to wait on
                await asyncio.sleep(0.01)
        data = await client.query(VIEWER, token=owner.token)
        assert data["viewer"]["account"]["email"] == owner.email
        assert not any(sign_in.done() for sign_in in sign_ins)
    finally:
        gate.set()
    tokens = await asyncio.gather(*sign_ins)
    assert len(set(tokens)) == queued
    await asyncio.gather(*busy)


async def test_a_sign_in_with_broken_unicode_is_refused_like_any_wrong_credentials(client):
    owner = await factories.owner(client)
    for email, password in (
        ("a\ud800@example.test", "whatever"),
        (owner.email, factories.PASSWORD + "\udfff"),
        (owner.email + "\udfff", factories.PASSWORD),
    ):
        body = await client.execute_escaped(
            factories.LOGIN, {"input": {"email": email, "password": password, "via": "EBA"}}
        )
        assert [e["code"] for e in body["data"]["login"]["errors"]] == ["INVALID_CREDENTIALS"]

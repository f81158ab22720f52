"""Query limits: each refusal is a clear error before any resolver runs; the cost of every
query is reported in `extensions.cost`."""

import hashlib

import pytest

from server.models.db import count_statements
from tests import factories
from tests.graphql_client import error_codes


async def post(client, query, token, variables=None, **extra):
    response = await client.http.post(
        "/graphql",
        json={"query": query, "variables": variables or {}, **extra},
        headers={"authorization": f"Bearer {token}"},
    )
    return response


@pytest.fixture(scope="module")
async def owner(client):
    return await factories.owner(client)


async def refused_without_running(client, owner, query):
    with count_statements() as counter:
        body = (await post(client, query, owner.token)).json()
    # Only the session lookup ran: no resolver reached the database.
    assert counter.count == 1, counter.statements
    assert "data" not in body
    return body


async def test_a_too_deep_query_is_refused(client, owner):
    nested = "children { edges { node { " * 6 + "id" + " } } }" * 6
    body = await refused_without_running(client, owner, f"{{ rootCompanies {{ {nested} }} }}")
    assert "exceeds maximum operation depth" in body["errors"][0]["message"]


async def test_a_too_costly_query_is_refused_with_its_cost(client, owner):
    query = (
        "{ rootCompanies { children(first: 100) { edges { node { children(first: 100) "
        "{ edges { node { children(first: 100) { edges { node { id } } } } } } } } } } }"
    )
    body = await refused_without_running(client, owner, query)
    error = body["errors"][0]
    assert error["extensions"]["code"] == "QUERY_TOO_COSTLY"
    assert error["extensions"]["cost"] > 50_000


async def test_too_many_aliases_are_refused(client, owner):
    aliases = " ".join(f"a{n}: viewer {{ via }}" for n in range(40))
    body = await refused_without_running(client, owner, f"{{ {aliases} }}")
    assert "aliases" in body["errors"][0]["message"]


async def test_a_too_long_query_is_refused(client, owner):
    fields = " ".join("__typename" for _ in range(3000))
    body = (await post(client, f"{{ {fields} }}", owner.token)).json()
    assert "data" not in body
    assert "token" in body["errors"][0]["message"].lower()


async def test_the_cost_of_a_query_is_reported_and_follows_page_sizes(client, owner):
    query = "query($n: Int) { managedCustomers(first: $n) { edges { node { parent { id } } } } }"
    small = (await post(client, query, owner.token, {"n": 10})).json()
    large = (await post(client, query, owner.token, {"n": 100})).json()
    assert small["extensions"]["cost"]["requested"] < large["extensions"]["cost"]["requested"]
    assert large["extensions"]["cost"]["limit"] == 50_000


async def test_persisted_queries_are_stored_by_hash_and_run_without_the_document(client, owner):
    query = "{ viewer { via } }"
    digest = hashlib.sha256(query.encode()).hexdigest()
    extensions = {"persistedQuery": {"version": 1, "sha256Hash": digest}}
    unknown = await client.http.post(
        "/graphql",
        json={"extensions": extensions},
        headers={"authorization": f"Bearer {owner.token}"},
    )
    assert error_codes(unknown.json()) == ["PERSISTED_QUERY_NOT_FOUND"]
    first = await post(client, query, owner.token, extensions=extensions)
    assert first.json()["data"] == {"viewer": {"via": "EBA"}}
    again = await client.http.post(
        "/graphql",
        json={"extensions": extensions},
        headers={"authorization": f"Bearer {owner.token}"},
    )
    assert again.json()["data"] == {"viewer": {"via": "EBA"}}


async def test_a_persisted_query_whose_hash_does_not_match_is_refused(client, owner):
    extensions = {"persistedQuery": {"version": 1, "sha256Hash": "0" * 64}}
    response = await post(client, "{ viewer { via } }", owner.token, extensions=extensions)
    assert response.status_code == 400

"""Automatic persisted queries: a document is remembered only once it has run for a signed-in
viewer, in a store bounded by entries and by bytes."""

import hashlib

import pytest

from server.api.http import GraphQLView
from server.api.persisted import PersistedQueries, PersistedQueryNotFound, Registration
from tests import factories
from tests.graphql_client import error_codes


def extensions_for(document: str) -> dict:
    digest = hashlib.sha256(document.encode()).hexdigest()
    return {"persistedQuery": {"version": 1, "sha256Hash": digest}}


async def send(client, token, document=None, *, extensions):
    body = {"extensions": extensions, **({"query": document} if document is not None else {})}
    headers = {"authorization": f"Bearer {token}"} if token else {}
    return await client.http.post("/graphql", json=body, headers=headers)


@pytest.fixture(scope="module")
async def owner(client):
    return await factories.owner(client)


async def test_a_document_registered_once_then_runs_by_its_hash_alone(client, owner):
    document = "{ viewer { via } }"
    extensions = extensions_for(document)
    unknown = await send(client, owner.token, extensions=extensions)
    assert error_codes(unknown.json()) == ["PERSISTED_QUERY_NOT_FOUND"]
    first = await send(client, owner.token, document, extensions=extensions)
    assert first.json()["data"] == {"viewer": {"via": "EBA"}}
    again = await send(client, owner.token, extensions=extensions)
    assert again.json()["data"] == {"viewer": {"via": "EBA"}}


async def test_a_document_whose_hash_does_not_match_is_refused(client, owner):
    extensions = {"persistedQuery": {"version": 1, "sha256Hash": "0" * 64}}
    response = await send(client, owner.token, "{ viewer { via } }", extensions=extensions)
    assert response.status_code == 400


@pytest.mark.parametrize(
    "persisted",
    [
        {"version": 2, "sha256Hash": "0" * 64},
        {"version": 1, "sha256Hash": "0" * 63},
        {"version": 1, "sha256Hash": 5},
        {"version": 1},
    ],
)
async def test_a_malformed_persisted_query_extension_is_a_400(client, owner, persisted):
    response = await send(
        client, owner.token, "{ viewer { via } }", extensions={"persistedQuery": persisted}
    )
    assert response.status_code == 400


async def test_a_document_over_100_kb_runs_but_is_not_stored(client, owner):
    document = "{ viewer { via } } # " + "x" * 100_000
    extensions = extensions_for(document)
    registered = await send(client, owner.token, document, extensions=extensions)
    assert registered.json()["data"] == {"viewer": {"via": "EBA"}}
    later = await send(client, owner.token, extensions=extensions)
    assert error_codes(later.json()) == ["PERSISTED_QUERY_NOT_FOUND"]


@pytest.mark.parametrize("token", [None, "not-a-session"])
async def test_an_anonymous_registration_is_not_stored(client, owner, token):
    document = f"{{ viewer {{ via }} }} # anonymous {token}"
    extensions = extensions_for(document)
    registered = await send(client, token, document, extensions=extensions)
    assert error_codes(registered.json()) == ["UNAUTHENTICATED"]
    later = await send(client, owner.token, extensions=extensions)
    assert error_codes(later.json()) == ["PERSISTED_QUERY_NOT_FOUND"]


@pytest.mark.parametrize(
    "document",
    [
        "# nothing but a comment " + "x" * 50_000,
        "{ viewer { via }",  # does not parse
        "{ noSuchField }",  # does not validate
        "query($n: Int!) { managedCustomers(first: $n) { totalCount } }",  # $n missing
        "{ " + " ".join(f"a{n}: viewer {{ via }}" for n in range(31)) + " }",  # too many aliases
        "{ rootCompanies { children(first: 100) { edges { node { children(first: 100) { edges "
        "{ node { children(first: 100) { edges { node { id } } } } } } } } } } }",  # too costly
    ],
)
async def test_a_document_that_cannot_run_is_not_stored(client, owner, document):
    extensions = extensions_for(document)
    registered = await send(client, owner.token, document, extensions=extensions)
    assert "data" not in registered.json() and registered.json()["errors"]
    later = await send(client, owner.token, extensions=extensions)
    assert error_codes(later.json()) == ["PERSISTED_QUERY_NOT_FOUND"]


def test_the_store_is_bounded_by_bytes_evicting_the_least_recently_used():
    store = PersistedQueries(max_bytes=250)
    documents = [f"{{ viewer {{ via }} }} # {n} " + "x" * 90 for n in range(3)]
    registrations = [Registration(hashlib.sha256(d.encode()).hexdigest(), d) for d in documents]
    store.remember(registrations[0])
    store.remember(registrations[1])
    store.resolve(None, extensions_for(documents[0]))  # used: the other one is older now
    store.remember(registrations[2])
    assert store.stored_bytes <= 250
    with pytest.raises(PersistedQueryNotFound):
        store.resolve(None, extensions_for(documents[1]))
    for kept in (documents[0], documents[2]):
        assert store.resolve(None, extensions_for(kept)) == (kept, None)


def test_a_document_larger_than_the_whole_store_is_not_stored():
    store = PersistedQueries(max_bytes=100)
    document = "{ viewer { via } } #" + "x" * 100
    store.remember(Registration(hashlib.sha256(document.encode()).hexdigest(), document))
    assert store.stored_bytes == 0
    with pytest.raises(PersistedQueryNotFound):
        store.resolve(None, extensions_for(document))


def test_the_store_is_also_bounded_by_entries():
    store = PersistedQueries(max_bytes=10_000, max_entries=2)
    documents = [f"{{ viewer {{ via }} }} # {n}" for n in range(3)]
    for document in documents:
        store.remember(Registration(hashlib.sha256(document.encode()).hexdigest(), document))
    with pytest.raises(PersistedQueryNotFound):
        store.resolve(None, extensions_for(documents[0]))
    assert store.stored_bytes == sum(len(d) for d in documents[1:])


def test_the_endpoint_store_follows_the_setting(app, settings):
    views = {route.endpoint for route in app.routes if isinstance(route.endpoint, GraphQLView)}
    [view] = views  # one view serves both HTTP and websockets
    assert view.persisted.max_bytes == settings.persisted_query_bytes == 4 * 1_048_576

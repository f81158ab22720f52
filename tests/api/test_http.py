"""GraphQL over HTTP: media types, status codes, GET for queries only, health probes."""

import re

from tests import factories
from tests.conftest import METRICS_TOKEN

GRAPHQL_RESPONSE = "application/graphql-response+json"


async def test_the_spec_media_type_is_used_when_the_client_accepts_it(client):
    owner = await factories.owner(client)
    response = await client.http.post(
        "/graphql",
        json={"query": "{ viewer { via } }"},
        headers={"authorization": f"Bearer {owner.token}", "accept": GRAPHQL_RESPONSE},
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith(GRAPHQL_RESPONSE)
    assert response.json()["data"] == {"viewer": {"via": "EBA"}}


async def test_a_request_that_fails_before_execution_is_a_400_without_data(client):
    for query in ("{ viewer { ", "{ noSuchField }"):
        response = await client.http.post(
            "/graphql", json={"query": query}, headers={"accept": GRAPHQL_RESPONSE}
        )
        assert response.status_code == 400
        assert "data" not in response.json() and response.json()["errors"]


async def test_legacy_json_clients_get_200_for_the_same_errors(client):
    response = await client.http.post(
        "/graphql", json={"query": "{ noSuchField }"}, headers={"accept": "application/json"}
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")


async def test_queries_work_by_get_but_mutations_do_not(client):
    owner = await factories.owner(client)
    headers = {"authorization": f"Bearer {owner.token}"}
    query = await client.http.get(
        "/graphql", params={"query": "{ viewer { via } }"}, headers=headers
    )
    assert query.json()["data"] == {"viewer": {"via": "EBA"}}
    mutation = await client.http.get(
        "/graphql", params={"query": "mutation { logout { errors { code } } }"}, headers=headers
    )
    assert mutation.status_code == 405
    still = await client.query("{ viewer { via } }", token=owner.token)
    assert still["viewer"]["via"] == "EBA"


SUBSCRIPTION = "subscription { syncStatus { id state } }"


async def test_a_subscription_over_http_is_refused_before_it_runs_and_logs_nothing(client, caplog):
    owner = await factories.owner(client)
    headers = {"authorization": f"Bearer {owner.token}"}
    sent = [
        client.http.post(
            "/graphql", json={"query": SUBSCRIPTION}, headers={**headers, "accept": accept}
        )
        for accept in (GRAPHQL_RESPONSE, "application/json")
    ]
    sent.append(client.http.get("/graphql", params={"query": SUBSCRIPTION}, headers=headers))
    sent.append(client.http.post("/graphql", json={"query": SUBSCRIPTION}))  # signed out
    answers = [await request for request in sent]
    # a request error, the GraphQL-over-HTTP way: no `data`; 400 for clients of the spec's
    # media type, 200 for legacy JSON clients (as for a document that fails validation)
    assert [a.status_code for a in answers] == [400, 200, 200, 200]
    for answer in answers:
        body = answer.json()
        assert "data" not in body
        assert [e["extensions"]["code"] for e in body["errors"]] == ["WEBSOCKET_REQUIRED"]
        assert "websocket" in body["errors"][0]["message"]
    assert not [r for r in caplog.records if r.levelname == "ERROR"]


async def test_a_query_beside_a_subscription_in_one_document_still_runs_by_name(client):
    owner = await factories.owner(client)
    document = "query Mine { viewer { via } } subscription Live { syncStatus { id } }"
    response = await client.http.post(
        "/graphql",
        json={"query": document, "operationName": "Mine"},
        headers={"authorization": f"Bearer {owner.token}"},
    )
    body = response.json()
    assert body["data"] == {"viewer": {"via": "EBA"}} and "errors" not in body


async def test_malformed_json_is_a_400(client):
    response = await client.http.post(
        "/graphql", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert response.status_code == 400


async def test_graphiql_is_served_to_browsers(client):
    response = await client.http.get("/graphql", headers={"accept": "text/html"})
    assert response.status_code == 200 and "graphiql" in response.text.lower()


async def test_health_and_readiness(client):
    assert (await client.http.get("/healthz")).text == "ok"
    ready = await client.http.get("/readyz")
    assert ready.status_code == 200 and ready.json() == {"ready": True}


FRESH_ID = re.compile(r"[0-9a-f]{32}")


async def test_responses_carry_a_request_id_and_keep_a_sane_given_one(client):
    fresh = await client.http.get("/healthz")
    assert FRESH_ID.fullmatch(fresh.headers["x-request-id"])
    for sane in ("trace-42", "a.b:c_d-E", "x" * 128):
        given = await client.http.get("/healthz", headers={"x-request-id": sane})
        assert given.headers.get_list("x-request-id") == [sane]


async def test_a_hostile_request_id_is_replaced_by_a_fresh_one_never_echoed(client):
    """Anything but 1 to 128 of [A-Za-z0-9._:-] would reach logs and answers verbatim: the
    console answers with an id of its own instead, and only that one."""
    seen = set()
    for hostile in ("bad id\x7f" * 50, "x" * 129, "a b", "id;drop", "<script>", "ünï".encode(), ""):
        response = await client.http.get("/healthz", headers={"x-request-id": hostile})
        [answered] = response.headers.get_list("x-request-id")
        assert FRESH_ID.fullmatch(answered), (hostile, answered)
        seen.add(answered)
    assert len(seen) == 7  # a new one each time, not a constant stand-in


async def test_metrics_count_operations_by_name(client):
    owner = await factories.owner(client)
    await client.http.post(
        "/graphql",
        json={"query": "query MetricsProbe { viewer { via } }"},
        headers={"authorization": f"Bearer {owner.token}"},
    )
    metrics = await client.http.get(
        "/metrics", headers={"authorization": f"Bearer {METRICS_TOKEN}"}
    )
    text = metrics.text
    assert 'msp_graphql_requests_total{operation="MetricsProbe",outcome="ok"}' in text
    assert "msp_graphql_request_seconds_bucket" in text

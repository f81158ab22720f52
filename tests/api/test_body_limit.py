"""Request bodies are bounded for every route: over the limit, declared or streamed, the answer
is 413 with a clear error and nothing runs."""

from __future__ import annotations

from dataclasses import replace

import httpx
import orjson
import pytest

from server.app import create_app
from server.models.db import count_statements

LIMIT = 10_000


@pytest.fixture
async def http(app, settings):
    bounded = create_app(replace(settings, max_request_bytes=LIMIT))
    transport = httpx.ASGITransport(app=bounded)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        yield client


def login_body(size: int) -> bytes:
    """A sign-in padded with whitespace (free for the token limit) to `size` bytes."""
    body = orjson.dumps(
        {
            "query": "mutation($i: LoginInput!) { login(input: $i) { token } }",
            "variables": {"i": {"email": "nobody@example.test", "password": "x", "via": "EBA"}},
        }
    )
    return body[:-1] + b" " * (size - len(body)) + b"}"


def refused(response: httpx.Response) -> None:
    assert response.status_code == 413
    error = response.json()["errors"][0]
    assert error["extensions"]["code"] == "TOO_LARGE"
    assert str(LIMIT) in error["message"]
    assert response.headers["x-request-id"]


async def test_a_declared_body_over_the_limit_is_refused_unread(http):
    with count_statements() as counter:
        response = await http.post(
            "/graphql", content=login_body(LIMIT + 1), headers={"content-type": "application/json"}
        )
    refused(response)
    assert counter.count == 0  # not even the sign-in throttle ran


async def test_a_streamed_body_over_the_limit_is_refused(http):
    body = login_body(3 * LIMIT)

    async def chunks():
        for start in range(0, len(body), 1000):
            yield body[start : start + 1000]

    with count_statements() as counter:
        response = await http.post(
            "/graphql", content=chunks(), headers={"content-type": "application/json"}
        )
    assert "content-length" not in response.request.headers  # found out only while reading
    refused(response)
    assert counter.count == 0


async def test_a_body_within_the_limit_is_served(http):
    response = await http.post(
        "/graphql", content=login_body(LIMIT), headers={"content-type": "application/json"}
    )
    assert response.status_code == 200
    assert response.json()["data"]["login"]["token"] is None  # unknown account, but it ran

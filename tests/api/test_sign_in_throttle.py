"""Sign-in throttling: per account and per address, over a sliding minute, shared by every
worker (here: two apps on one database), and with nothing readable stored."""

from __future__ import annotations

import uuid
from dataclasses import replace

import httpx
import pytest

from server.app import create_app
from server.domain import accounts
from server.domain.errors import RateLimited
from server.domain.throttle import check_sign_in
from server.models import SignInWindow
from server.models.enums import Service
from tests import factories
from tests.graphql_client import GraphQLClient

LIMIT = 3


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def worker(settings, address: str) -> httpx.AsyncClient:
    """A console app of its own (as another worker would be) seen from `address`."""
    app = create_app(replace(settings, login_attempts_per_minute=LIMIT))
    transport = httpx.ASGITransport(app=app, client=(address, 40000))  # type: ignore[arg-type]
    return httpx.AsyncClient(transport=transport, base_url="http://t")


async def sign_in(http: httpx.AsyncClient, email: str, password: str) -> dict:
    body = await GraphQLClient(http).operation(
        "Login", {"input": {"email": email, "password": password, "via": "EBA"}}
    )
    return body["login"]


def code(payload: dict) -> str | None:
    return payload["errors"][0]["code"] if payload["errors"] else None


async def test_an_account_is_throttled_across_workers(app, settings):
    email = f"{unique('throttled')}@example.test"
    await accounts.create_account(email, factories.PASSWORD, [Service.EBA])
    first, second = worker(settings, "192.0.2.1"), worker(settings, "192.0.2.2")
    async with first, second:
        codes = [
            code(await sign_in(http, email, "wrong password"))
            for http in (first, second, first, second)
        ]
        assert codes == ["INVALID_CREDENTIALS"] * LIMIT + ["RATE_LIMITED"]
        # the right password is refused too while the minute lasts, from any address
        refused = await sign_in(first, email, factories.PASSWORD)
        assert refused["token"] is None and code(refused) == "RATE_LIMITED"


async def test_an_address_is_throttled_whatever_the_accounts(app, settings):
    address = "198.51.100.7"
    async with worker(settings, address) as http:
        codes = [
            code(await sign_in(http, f"{unique('spray')}@example.test", "guess"))
            for _ in range(LIMIT + 1)
        ]
    assert codes == ["INVALID_CREDENTIALS"] * LIMIT + ["RATE_LIMITED"]
    # another address may still sign in
    async with worker(settings, "198.51.100.8") as http:
        assert code(await sign_in(http, f"{unique('other')}@example.test", "guess")) == (
            "INVALID_CREDENTIALS"
        )


async def test_the_window_slides_over_the_previous_minute(app):
    email, address = unique("window"), unique("address")
    start = 1_000_000 * 60.0  # the start of a minute
    for _ in range(LIMIT):
        await check_sign_in(email, address, LIMIT, now=start + 50)
    # early in the next minute the previous one still counts almost in full
    with pytest.raises(RateLimited):
        await check_sign_in(email, address, LIMIT, now=start + 60 + 5)
    # late in it, little of the previous minute is left: 2 attempts now + 3 x 0.1 <= 3
    await check_sign_in(email, address, LIMIT, now=start + 60 + 54)
    # two minutes on, nothing of the first minute is left, and its rows are gone
    await check_sign_in(email, address, LIMIT, now=start + 180)
    assert not await SignInWindow.filter(minute=1_000_000).exists()


async def test_nothing_readable_is_stored(app):
    email, address = f"{unique('private')}@example.test", "203.0.113.99"
    await check_sign_in(email, address, LIMIT)
    stored = await SignInWindow.all().values_list("key_hash", flat=True)
    assert all(len(key) == 64 and email not in key and address not in key for key in stored)

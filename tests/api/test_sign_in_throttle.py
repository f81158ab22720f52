"""Sign-in throttling through the API: failed sign-ins only, per account and client address,
shared by every worker (here: several apps on one database), with the client address taken
from X-Forwarded-For only when a trusted proxy sends it."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import replace

import httpx

from server.app import create_app
from server.domain import accounts
from server.models.enums import Service
from server.settings import Settings
from tests import factories

LIMIT = Settings().login_attempts_per_minute  # the default: 10 failures a minute
PROXY = "192.0.2.10"


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}@example.test"


def worker(settings: Settings, address: str, **changes: object) -> httpx.AsyncClient:
    """A console app of its own (as another worker would be) seen from `address`, with the
    default sign-in limits unless `changes` says otherwise."""
    defaults = Settings()
    limits = {
        "login_attempts_per_minute": defaults.login_attempts_per_minute,
        "login_attempts_per_address_per_minute": defaults.login_attempts_per_address_per_minute,
        "login_attempts_per_account_per_hour": defaults.login_attempts_per_account_per_hour,
    }
    app = create_app(replace(settings, **{**limits, **changes}))  # type: ignore[arg-type]
    transport = httpx.ASGITransport(app=app, client=(address, 40000))
    return httpx.AsyncClient(transport=transport, base_url="http://t")


async def sign_in(
    http: httpx.AsyncClient, email: str, password: str, forwarded_for: str | None = None
) -> dict:
    headers = {"x-forwarded-for": forwarded_for} if forwarded_for else {}
    response = await http.post(
        "/graphql",
        json={
            "query": factories.LOGIN,
            "variables": {"input": {"email": email, "password": password, "via": "EBA"}},
        },
        headers=headers,
    )
    return response.json()["data"]["login"]


def code(payload: dict) -> str | None:
    return payload["errors"][0]["code"] if payload["errors"] else None


async def account() -> str:
    email = unique("owner")
    await accounts.create_account(email, factories.PASSWORD, [Service.EBA])
    return email


async def test_a_strangers_failures_from_one_address_do_not_lock_the_owner_out_of_another(
    app, settings
):
    email = await account()
    stranger, owner = worker(settings, "203.0.113.66"), worker(settings, "198.51.100.20")
    async with stranger, owner:
        codes = [code(await sign_in(stranger, email, "guess")) for _ in range(LIMIT + 1)]
        assert codes == ["INVALID_CREDENTIALS"] * LIMIT + ["RATE_LIMITED"]
        signed_in = await sign_in(owner, email, factories.PASSWORD)
        assert signed_in["errors"] == [] and signed_in["token"]


async def test_successful_sign_ins_never_count(app, settings):
    email = await account()
    async with worker(settings, "198.51.100.21") as http:
        for _ in range(LIMIT + 1):
            signed_in = await sign_in(http, email, factories.PASSWORD)
            assert signed_in["errors"] == [] and signed_in["token"]
        # and they leave the whole allowance of failures for a typo
        codes = [code(await sign_in(http, email, "typo")) for _ in range(LIMIT)]
        assert codes == ["INVALID_CREDENTIALS"] * LIMIT


async def test_the_eleventh_failure_is_refused_even_with_the_right_password_across_workers(
    app, settings
):
    email = await account()
    first, second = worker(settings, "198.51.100.22"), worker(settings, "198.51.100.22")
    async with first, second:
        codes = [
            code(await sign_in(http, email, "wrong password"))
            for http in [first, second] * (LIMIT // 2)
        ]
        assert codes == ["INVALID_CREDENTIALS"] * LIMIT
        refused = await sign_in(first, email, factories.PASSWORD)
        assert refused["token"] is None and code(refused) == "RATE_LIMITED"
        assert refused["viewer"] is None


async def test_parallel_guesses_cannot_slip_past_the_limit(app, settings):
    email = await account()
    async with worker(settings, "198.51.100.23", login_attempts_per_minute=3) as http:
        answers = await asyncio.gather(*(sign_in(http, email, "guess") for _ in range(8)))
    codes = sorted(code(a) for a in answers)
    assert codes == ["INVALID_CREDENTIALS"] * 3 + ["RATE_LIMITED"] * 5


async def test_an_address_spraying_one_password_over_many_accounts_is_stopped(app, settings):
    limits = {"login_attempts_per_address_per_minute": 4}
    async with worker(settings, "203.0.113.70", **limits) as http:
        codes = [code(await sign_in(http, unique("sprayed"), "Summer2026!")) for _ in range(5)]
        assert codes == ["INVALID_CREDENTIALS"] * 4 + ["RATE_LIMITED"]
        # the address is refused for an account it never failed on, right password or not
        email = await account()
        assert code(await sign_in(http, email, factories.PASSWORD)) == "RATE_LIMITED"
    async with worker(settings, "203.0.113.71", **limits) as http:
        assert (await sign_in(http, email, factories.PASSWORD))["token"]


async def test_x_forwarded_for_from_an_untrusted_peer_does_not_change_the_address(app, settings):
    email = await account()
    async with worker(settings, "203.0.113.80", trusted_proxies=(PROXY,)) as http:
        codes = [
            code(await sign_in(http, email, "guess", forwarded_for=f"198.18.0.{n}"))
            for n in range(LIMIT + 1)
        ]
    assert codes == ["INVALID_CREDENTIALS"] * LIMIT + ["RATE_LIMITED"]


async def test_x_forwarded_for_from_a_trusted_proxy_names_the_client(app, settings):
    email = await account()
    async with worker(settings, PROXY, trusted_proxies=(PROXY,)) as proxy:
        codes = [
            code(await sign_in(proxy, email, "guess", forwarded_for="203.0.113.90"))
            for _ in range(LIMIT + 1)
        ]
        assert codes == ["INVALID_CREDENTIALS"] * LIMIT + ["RATE_LIMITED"]
        # the owner behind the same proxy comes from another address
        signed_in = await sign_in(proxy, email, factories.PASSWORD, forwarded_for="198.51.100.9")
        assert signed_in["errors"] == [] and signed_in["token"]


async def test_a_botnet_is_refused_at_an_account_while_its_owner_signs_in_from_a_known_address(
    app, settings
):
    email, home = await account(), "198.51.100.30"
    limits = {"trusted_proxies": (PROXY,), "login_attempts_per_account_per_hour": 5}
    async with worker(settings, PROXY, **limits) as proxy:
        signed_in = await sign_in(proxy, email, factories.PASSWORD, forwarded_for=home)
        assert signed_in["token"]
        bots = [f"198.18.1.{n}" for n in range(7)]
        codes = [code(await sign_in(proxy, email, "guess", forwarded_for=bot)) for bot in bots[:5]]
        assert codes == ["INVALID_CREDENTIALS"] * 5  # one guess each, far below their own limit
        # the account is refused to every new address, right password or not
        for bot in bots[5:]:
            refused = await sign_in(proxy, email, factories.PASSWORD, forwarded_for=bot)
            assert refused["token"] is None and code(refused) == "RATE_LIMITED"
        # while its owner signs in from home
        signed_in = await sign_in(proxy, email, factories.PASSWORD, forwarded_for=home)
        assert signed_in["errors"] == [] and signed_in["token"]

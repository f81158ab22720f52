"""The sign-in throttle's counting: a sliding minute, failures only, refusals not counted, a
per-address limit an office behind one NAT does not reach, an IPv6 /64 counted as one site, a
sliding hour of an account's failures from the sites it is not known at (which its known sites
are not held to, until they are forgotten), and nothing readable stored."""

from __future__ import annotations

import uuid
from dataclasses import replace

import pytest

from server.domain.errors import RateLimited
from server.domain.throttle import SignInLimits, begin_sign_in, succeeded
from server.models import KnownSignInSite, SignInAccountWindow, SignInWindow
from server.settings import Settings

SECRET = "throttle-test-secret"
LIMITS = SignInLimits(
    per_account_and_address=3,
    per_address=100,
    per_account_from_unknown_sites=1000,
    known_site_days=90,
)
START = 1_000_000 * 60.0  # the start of a minute
HOUR = 20_000 * 3600.0  # the start of an hour, far from START
DAY = 86_400
BOTNET = replace(LIMITS, per_account_from_unknown_sites=5)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}@example.test"


async def fail(email: str, address: str, limits: SignInLimits = LIMITS, now: float = START) -> None:
    """A failed attempt: begun and never taken back."""
    await begin_sign_in(email, address, limits, SECRET, now=now)


async def sign_in(email: str, address: str, limits: SignInLimits = LIMITS, now: float = START):
    """A successful attempt: begun and taken back, its site known from now on."""
    await succeeded(await begin_sign_in(email, address, limits, SECRET, now=now))


def bots(network: int, count: int) -> list[str]:
    """`count` addresses, each of them a site of its own."""
    return [f"10.{network}.{n // 256}.{n % 256}" for n in range(count)]


async def test_the_window_slides_over_the_previous_minute(app):
    email, address = unique("window"), "192.0.2.50"
    for _ in range(3):
        await fail(email, address, now=START + 50)
    # early in the next minute the previous one still counts almost in full
    with pytest.raises(RateLimited):
        await fail(email, address, now=START + 60 + 5)
    # late in it, little of the previous minute is left: 2 failures now + 3 x 0.1 <= 3
    await fail(email, address, now=START + 60 + 54)
    # two minutes on, nothing of the first minute is left, and its rows are gone
    await fail(email, address, now=START + 180)
    assert not await SignInWindow.filter(minute=1_000_000).exists()


async def test_refused_attempts_do_not_count_so_the_lockout_ends_as_the_failures_slide_out(app):
    email, address = unique("patient"), "192.0.2.51"
    for _ in range(3):
        await fail(email, address, now=START + 1)
    for second in (30, 61, 66, 71, 76):  # knocking on, in this minute and the next
        with pytest.raises(RateLimited):
            await fail(email, address, now=START + second)
    # 21 s into the next minute the three failures weigh 3 x 0.65: room for one more attempt,
    # which there would not be had the five refusals counted
    await fail(email, address, now=START + 81)


async def test_a_success_takes_its_attempt_back(app):
    email, address = unique("owner"), "192.0.2.52"
    for _ in range(10):
        await succeeded(await begin_sign_in(email, address, LIMITS, SECRET, now=START))
    for _ in range(3):  # the whole allowance is left for failures
        await fail(email, address)
    with pytest.raises(RateLimited):
        await fail(email, address)


async def test_an_office_of_technicians_behind_one_address_is_not_stopped_by_its_typos(app):
    """The default per-address limit: fifteen technicians behind one NAT each mistype their
    password three times in the same minute, and all of them then sign in."""
    defaults = Settings()
    limits = SignInLimits(
        defaults.login_attempts_per_minute,
        defaults.login_attempts_per_address_per_minute,
        defaults.login_attempts_per_account_per_hour,
        defaults.login_known_site_days,
    )
    office = "198.51.100.200"
    technicians = [unique("technician") for _ in range(15)]
    for email in technicians:
        for _ in range(3):
            await fail(email, office, limits)
    for email in technicians:
        await succeeded(await begin_sign_in(email, office, limits, SECRET, now=START))


async def test_the_limits_are_counted_per_account_and_address_and_per_address(app):
    email, address = unique("target"), "203.0.113.60"
    for _ in range(3):
        await fail(email, address)
    with pytest.raises(RateLimited):
        await fail(email, address)
    await fail(email, "203.0.113.61")  # another address
    await fail(unique("other"), address)  # another account from the same address
    sprayer = replace(LIMITS, per_address=2)
    spraying = "203.0.113.62"
    await fail(unique("a"), spraying, sprayer)
    await fail(unique("b"), spraying, sprayer)
    with pytest.raises(RateLimited):
        await fail(unique("c"), spraying, sprayer)


async def test_the_addresses_of_one_ipv6_site_share_its_allowances(app):
    """A host holds a whole /64: rotating through it buys no fresh guesses at an account, nor
    fresh room for spraying."""
    email = unique("rotated")
    for n in range(3):
        await fail(email, f"2001:db8:7:7::{n + 1}")
    with pytest.raises(RateLimited):
        await fail(email, "2001:db8:7:7:ffff:ffff:ffff:ffff")
    await fail(email, "2001:db8:7:8::1")  # the next /64 is another site
    sprayer = replace(LIMITS, per_address=2)
    await fail(unique("a"), "2001:db8:9:9::a", sprayer)
    await fail(unique("b"), "2001:db8:9:9::b", sprayer)
    with pytest.raises(RateLimited):
        await fail(unique("c"), "2001:db8:9:9::c", sprayer)


async def test_failures_from_many_addresses_at_one_account_are_refused_past_its_hourly_limit(app):
    email = unique("attacked")
    first, *others = bots(1, 5 + 10 + 1)
    for address in [first, *others[:4]]:  # each address far below its own limit
        await fail(email, address, BOTNET, now=HOUR + 10)
    # a sixth address is refused, in this minute or later in the hour
    for n, address in enumerate(others[4:14]):
        with pytest.raises(RateLimited, match="new places"):
            await fail(email, address, BOTNET, now=HOUR + 60 + 300 * n)
    # the ten refusals did not count: 720 s into the next hour the five failures weigh
    # 5 x 0.8, room for one more (had they counted, 15 x 0.8 would still refuse it)
    with pytest.raises(RateLimited):
        await fail(email, others[14], BOTNET, now=HOUR + 3600 + 700)
    await fail(email, others[14], BOTNET, now=HOUR + 3600 + 720)
    # another account is not held by this one's attack
    await fail(unique("bystander"), first, BOTNET, now=HOUR + 3600 + 720)


async def test_a_known_site_signs_in_while_its_account_is_under_attack_and_keeps_its_own_limit(
    app,
):
    email, home = unique("owner"), "198.51.100.210"
    await sign_in(email, home, BOTNET, now=HOUR)
    # the owner's typos at home do not use up the account's allowance for unknown sites
    for _ in range(3):
        await fail(email, home, BOTNET, now=HOUR + 100)
    with pytest.raises(RateLimited, match="wait a minute"):  # its own per-address limit
        await fail(email, home, BOTNET, now=HOUR + 100)
    for address in bots(2, 5):
        await fail(email, address, BOTNET, now=HOUR + 200)
    with pytest.raises(RateLimited):
        await fail(email, "203.0.113.210", BOTNET, now=HOUR + 200)
    # under attack, home still signs in once its own minute has passed
    await sign_in(email, home, BOTNET, now=HOUR + 300)


async def test_a_site_known_for_one_account_is_not_known_for_another(app):
    known_for, attacked, office = unique("a"), unique("b"), "198.51.100.211"
    await sign_in(known_for, office, BOTNET, now=HOUR)
    for address in bots(3, 5):
        await fail(attacked, address, BOTNET, now=HOUR)
    with pytest.raises(RateLimited):
        await fail(attacked, office, BOTNET, now=HOUR)
    await sign_in(known_for, office, BOTNET, now=HOUR)


async def test_a_known_site_is_forgotten_once_the_retention_has_passed(app):
    email, home = unique("away"), "198.51.100.212"
    two_days = replace(BOTNET, known_site_days=2)
    day = int(HOUR // DAY)
    await sign_in(email, home, two_days, now=day * DAY)
    await sign_in(email, home, two_days, now=(day + 1) * DAY)  # the last success
    for address in bots(4, 5):
        await fail(email, address, two_days, now=(day + 3) * DAY)
    await fail(email, home, two_days, now=(day + 3) * DAY)  # two days on: still known
    for address in bots(5, 5):
        await fail(email, address, two_days, now=(day + 4) * DAY)
    with pytest.raises(RateLimited):  # three days on, home is just another site
        await sign_in(email, home, two_days, now=(day + 4) * DAY)
    # and the day's first success, from anywhere, prunes the sites forgotten by then
    assert await KnownSignInSite.filter(day=day + 1).exists()
    await sign_in(unique("other"), home, two_days, now=(day + 4) * DAY)
    assert not await KnownSignInSite.filter(day__lt=day + 2).exists()


async def test_nothing_readable_or_guessable_is_stored(app):
    email, address = unique("private"), "203.0.113.99"
    before = set(await SignInWindow.all().values_list("key_hash", flat=True))
    await fail(email, address)
    stored = set(await SignInWindow.all().values_list("key_hash", flat=True)) - before
    assert len(stored) == 2
    assert all(len(key) == 64 and email not in key and address not in key for key in stored)
    # keyed by the secret: the same email and address under another key are other rows
    await begin_sign_in(email, address, LIMITS, "another secret", now=START)
    again = set(await SignInWindow.all().values_list("key_hash", flat=True)) - before - stored
    assert len(again) == 2


async def test_nothing_readable_or_guessable_is_stored_of_known_sites_or_an_accounts_failures(app):
    email, address = unique("private"), "203.0.113.98"
    tables = (KnownSignInSite, SignInAccountWindow)

    async def keys() -> set[str]:
        return {key for t in tables for key in await t.all().values_list("key_hash", flat=True)}

    before = await keys()
    await fail(email, address)  # an unknown site: counted against the account
    await sign_in(email, address)  # and now known
    stored = await keys() - before
    assert len(stored) == 2
    assert all(len(key) == 64 and email not in key and address not in key for key in stored)
    await sign_in(email, address, now=START + 1)  # known: not counted against the account
    assert await keys() - before == stored
    await succeeded(await begin_sign_in(email, address, LIMITS, "another secret", now=START))
    assert len(await keys() - before - stored) == 2

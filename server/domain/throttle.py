"""Sign-in throttling: failed sign-ins per account and client address, and per account from
the sites it is not known at, counted in the database.

Only failures count, so knowing someone's email locks nobody out: an attacker's failures are
counted against the account *from the attacker's address*, and the owner signs in from its own.
A success never counts: an attempt is counted as a failure when it starts (so parallel guesses
cannot slip past the limit between check and count) and taken back when it succeeds. Once the
failures of an account from an address reach the limit, that address is refused for that
account, right password or not, until the window has slid past them; refused attempts are not
counted, so the window does pass. A second, higher limit on the failures of an address over all
accounts slows password spraying, yet leaves room for an office of technicians behind one NAT.

Those two limits leave a botnet one allowance per address at one account: 10,000 addresses
would guess 10,000 times the per-address allowance each minute. A limit on the account alone
would let anyone lock the owner out by failing on purpose. So the sites an account has signed
in from are remembered (for a retention period from the last success), and a third limit
counts the failures of an account from every *other* site together, in a sliding hour. When
it is reached, the account is refused to unknown sites, right password or not, while its known
sites keep their own per-address allowance: an attacker can neither go on guessing nor lock the
owner out of the places it signs in from. An hour, because a distributed attack can be slow:
a per-minute cap low enough to matter would also stop a traveller's few typos, and a day-long
one would keep an attacked owner out of a new place a day after the attack ends. The default
(100 an hour) is far beyond a person's typos and holds a botnet to some 2,400 guesses a day.

Every worker and host counts against the same rows: a throttle held in process would give an
attacker one allowance per worker. Attempts are counted per bucket (a minute, or an hour for
the account from unknown sites), and a limit applies to a sliding window estimated from the
current bucket's count and the previous one's, weighted by how much of the previous bucket the
window still covers. Keys are stored as HMAC-SHA256 under the secret key, so the tables hold no
email address and no client address, not even a guessable hash. Addresses count by `site` (an
IPv6 /64 as one): a host rotating through its /64 gets no fresh allowance with each address.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from dataclasses import dataclass

from server.client_address import site
from server.domain.errors import RateLimited
from server.models import db


@dataclass(frozen=True, slots=True)
class SignInLimits:
    """Failed sign-ins allowed in a sliding minute (per account and address, per address) and
    in a sliding hour (per account, from its unknown sites); how many days a site stays known
    after a success from it."""

    per_account_and_address: int
    per_address: int
    per_account_from_unknown_sites: int
    known_site_days: int


@dataclass(frozen=True, slots=True)
class Window:
    """A table of attempts counted per key and bucket of `seconds`."""

    table: str
    bucket: str
    seconds: int


MINUTE = Window("sign_in_window", "minute", 60)
HOUR = Window("sign_in_account_window", "hour", 3600)
DAY_SECONDS = 86_400


@dataclass(frozen=True, slots=True)
class Count:
    """The keys an attempt was counted against in one window's bucket."""

    window: Window
    bucket: int
    keys: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Attempt:
    """A sign-in attempt counted as failed until `succeeded` takes it back (and, on the first
    success of the day from its site, records the day)."""

    counts: tuple[Count, ...]
    site_key: str
    today: int | None  # None: its site's success is already recorded for today
    forget_sites_before: int


def _key(secret_key: str, kind: str, value: str) -> str:
    message = f"{kind}\x00{value}".encode("utf-8", "surrogatepass")  # whatever JSON carried
    digest = hmac.new(secret_key.encode(), message, hashlib.sha256)
    return digest.hexdigest()


async def begin_sign_in(
    email: str,
    address: str | None,
    limits: SignInLimits,
    secret_key: str,
    now: float | None = None,
) -> Attempt:
    """Count a sign-in attempt as a failure; refuse it (RATE_LIMITED, and then not counted)
    when it would take its account-and-address or its address over the limit, or, from a site
    not known for the account, the account's failures from such sites."""
    now = time.time() if now is None else now
    account = email.strip().lower()[:254]
    where = site(address)  # no address (not over TCP): all such attempts share one key
    site_key = _key(secret_key, "known-site", f"{account}\x00{where}")
    today = int(now // DAY_SECONDS)
    forget_before = today - limits.known_site_days
    last_day = await _last_success_day(site_key)
    limited = {
        MINUTE: {
            _key(secret_key, "account-address", f"{account}\x00{where}"): (
                limits.per_account_and_address
            ),
            _key(secret_key, "address", where): limits.per_address,
        }
    }
    if last_day is None or last_day < forget_before:
        limited[HOUR] = {
            _key(secret_key, "account-unknown-sites", account): (
                limits.per_account_from_unknown_sites
            )
        }
    async with db.transaction():
        # minute before hour, keys sorted: one lock order for every transaction
        counted = [await _count(window, keys, now) for window, keys in limited.items()]
        first_today = None if last_day == today else today
        attempt = Attempt(tuple(c for c, _ in counted), site_key, first_today, forget_before)
        refused = [count.window for count, over in counted if over]
        if refused:
            await _take_back(attempt)
    if MINUTE in refused:
        raise RateLimited("too many failed sign-ins; wait a minute and try again")
    if refused:
        raise RateLimited(
            "too many failed sign-ins to this account from new places; try again later, or "
            "from where you usually sign in"
        )
    return attempt


async def succeeded(attempt: Attempt) -> None:
    """A successful sign-in never counts: take its attempt back, and know its site from now on.
    The day of the success is written once a day per site (the usual sign-in writes nothing
    more), and that write forgets, through the index on the day, the sites not seen within
    the retention."""
    await _take_back(attempt)
    if attempt.today is None:
        return
    await db.execute(
        "INSERT INTO known_sign_in_site (key_hash, day) VALUES (?, ?) "
        "ON CONFLICT (key_hash) DO UPDATE SET day = excluded.day",
        [attempt.site_key, attempt.today],
    )
    await db.execute("DELETE FROM known_sign_in_site WHERE day < ?", [attempt.forget_sites_before])


async def _last_success_day(site_key: str) -> int | None:
    day = await db.fetch_value("SELECT day FROM known_sign_in_site WHERE key_hash = ?", [site_key])
    return None if day is None else int(day)


async def _count(window: Window, limited: dict[str, int], now: float) -> tuple[Count, bool]:
    """Count an attempt against `limited`'s keys in `window`; whether one goes over its limit."""
    bucket, into = divmod(now, window.seconds)
    bucket = int(bucket)
    keys = sorted(limited)
    table, column = window.table, window.bucket
    # The upsert locks each row until commit: concurrent attempts count one after another.
    # It returns each key's count in the previous bucket too: one statement for both.
    counted = {
        row["key_hash"]: (row["attempts"], row["previous"] or 0)
        for row in await db.fetch(
            f"INSERT INTO {table} (key_hash, {column}, attempts) VALUES "
            + ", ".join("(?, ?, 1)" for _ in keys)
            + f" ON CONFLICT (key_hash, {column}) DO UPDATE "
            f"SET attempts = {table}.attempts + 1 RETURNING key_hash, attempts, "
            f"(SELECT p.attempts FROM {table} p WHERE p.key_hash = {table}.key_hash "
            f"AND p.{column} = {table}.{column} - 1) AS previous",
            [value for key in keys for value in (key, bucket)],
        )
    }
    await db.execute(f"DELETE FROM {table} WHERE {column} < ?", [bucket - 1])
    still_covered = 1 - into / window.seconds
    over = any(
        counted[key][0] + counted[key][1] * still_covered > limit for key, limit in limited.items()
    )
    return Count(window, bucket, tuple(keys)), over


async def _take_back(attempt: Attempt) -> None:
    for count in attempt.counts:
        table, column = count.window.table, count.window.bucket
        await db.execute(
            f"UPDATE {table} SET attempts = attempts - 1 WHERE {column} = ? AND attempts > 0 "
            f"AND key_hash IN ({', '.join('?' * len(count.keys))})",
            [count.bucket, *count.keys],
        )

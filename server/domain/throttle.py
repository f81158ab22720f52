"""Sign-in throttling: failed sign-ins per account and client address, counted in the database.

Only failures count, so knowing someone's email locks nobody out: an attacker's failures are
counted against the account *from the attacker's address*, and the owner signs in from its own.
A success never counts: an attempt is counted as a failure when it starts (so parallel guesses
cannot slip past the limit between check and count) and taken back when it succeeds. Once the
failures of an account from an address reach the limit, that address is refused for that
account, right password or not, until the window has slid past them; refused attempts are not
counted, so the window does pass. A second, higher limit on the failures of an address over all
accounts slows password spraying, yet leaves room for an office of technicians behind one NAT.

Every worker and host counts against the same rows: a throttle held in process would give an
attacker one allowance per worker. Attempts are counted per minute, and a limit applies to a
sliding minute estimated from the current count and the previous one, weighted by how much of
the previous minute the window still covers. Keys are stored as HMAC-SHA256 under the secret
key, so the table holds no email address and no client address, not even a guessable hash.
Addresses count by `site` (an IPv6 /64 as one): a host rotating through its /64 gets no fresh
allowance with each address.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from dataclasses import dataclass

from server.client_address import site
from server.domain.errors import RateLimited
from server.models import db

WINDOW_SECONDS = 60


@dataclass(frozen=True, slots=True)
class SignInLimits:
    """Failed sign-ins allowed in a sliding minute."""

    per_account_and_address: int
    per_address: int


@dataclass(frozen=True, slots=True)
class Attempt:
    """A sign-in attempt counted as failed until `succeeded` takes it back."""

    keys: tuple[str, ...]
    minute: int


def _key(secret_key: str, kind: str, value: str) -> str:
    message = f"{kind}\x00{value}".encode("utf-8", "surrogatepass")  # whatever JSON carried
    digest = hmac.new(secret_key.encode(), message, hashlib.sha256)
    return digest.hexdigest()


def _keys(secret_key: str, email: str, address: str | None, limits: SignInLimits) -> dict[str, int]:
    """The keys an attempt counts against, each with its limit."""
    account = email.strip().lower()[:254]
    where = site(address)  # no address (not over TCP): all such attempts share one key
    return {
        _key(secret_key, "account-address", f"{account}\x00{where}"): (
            limits.per_account_and_address
        ),
        _key(secret_key, "address", where): limits.per_address,
    }


async def begin_sign_in(
    email: str,
    address: str | None,
    limits: SignInLimits,
    secret_key: str,
    now: float | None = None,
) -> Attempt:
    """Count a sign-in attempt as a failure; refuse it (RATE_LIMITED, and then not counted)
    when it would take its account-and-address or its address over the limit."""
    now = time.time() if now is None else now
    minute, into = divmod(now, WINDOW_SECONDS)
    minute = int(minute)
    limited = _keys(secret_key, email, address, limits)
    keys = sorted(limited)  # one order for every transaction: row locks cannot deadlock
    marks = ", ".join("?" * len(keys))
    async with db.transaction():
        # The upsert locks each row until commit: concurrent attempts count one after another.
        current = {
            row["key_hash"]: row["attempts"]
            for row in await db.fetch(
                "INSERT INTO sign_in_window (key_hash, minute, attempts) VALUES "
                + ", ".join("(?, ?, 1)" for _ in keys)
                + " ON CONFLICT (key_hash, minute) DO UPDATE "
                "SET attempts = sign_in_window.attempts + 1 RETURNING key_hash, attempts",
                [value for key in keys for value in (key, minute)],
            )
        }
        previous = {
            row["key_hash"]: row["attempts"]
            for row in await db.fetch(
                f"SELECT key_hash, attempts FROM sign_in_window "
                f"WHERE minute = ? AND key_hash IN ({marks})",
                [minute - 1, *keys],
            )
        }
        await db.execute("DELETE FROM sign_in_window WHERE minute < ?", [minute - 1])
        still_covered = 1 - into / WINDOW_SECONDS
        refused = any(
            current[key] + previous.get(key, 0) * still_covered > limit
            for key, limit in limited.items()
        )
        attempt = Attempt(tuple(keys), minute)
        if refused:
            await _take_back(attempt)
    if refused:
        raise RateLimited("too many failed sign-ins; wait a minute and try again")
    return attempt


async def succeeded(attempt: Attempt) -> None:
    """A successful sign-in never counts: take its attempt back."""
    await _take_back(attempt)


async def _take_back(attempt: Attempt) -> None:
    await db.execute(
        "UPDATE sign_in_window SET attempts = attempts - 1 WHERE minute = ? AND attempts > 0 "
        f"AND key_hash IN ({', '.join('?' * len(attempt.keys))})",
        [attempt.minute, *attempt.keys],
    )

"""Sign-in throttling per account and per client address, counted in the database.

Every worker and host of a console counts against the same limit: a throttle held in process
would give an attacker one allowance per worker. Attempts are counted per minute, and the limit
applies to a sliding minute estimated from the current count and the previous one, weighted by
how much of the previous minute the sliding window still covers. Keys are stored as SHA-256, so
the table holds no email address and no client address.
"""

from __future__ import annotations

import hashlib
import time

from tortoise.transactions import in_transaction

from server.domain.errors import RateLimited
from server.models import db

WINDOW_SECONDS = 60


def _keys(email: str, address: str | None) -> list[str]:
    keys = [f"email:{email.strip().lower()[:254]}"]
    if address:
        keys.append(f"addr:{address[:64]}")
    return [hashlib.sha256(key.encode()).hexdigest() for key in keys]


async def check_sign_in(
    email: str, address: str | None, limit: int, now: float | None = None
) -> None:
    """Count an attempt for the account and the address; refuse it when either is over
    `limit` attempts in the last minute. Refused attempts count too: an attacker who keeps
    trying stays locked out."""
    now = time.time() if now is None else now
    minute, into = divmod(now, WINDOW_SECONDS)
    minute = int(minute)
    keys = _keys(email, address)
    async with in_transaction():
        current: dict[str, int] = {}
        for key in keys:
            current[key] = await db.fetch_value(
                "INSERT INTO sign_in_window (key_hash, minute, attempts) VALUES (?, ?, 1) "
                "ON CONFLICT (key_hash, minute) DO UPDATE "
                "SET attempts = sign_in_window.attempts + 1 RETURNING attempts",
                [key, minute],
            )
        previous = {
            row["key_hash"]: row["attempts"]
            for row in await db.fetch(
                "SELECT key_hash, attempts FROM sign_in_window WHERE minute = ? AND key_hash IN "
                f"({', '.join('?' * len(keys))})",
                [minute - 1, *keys],
            )
        }
        await db.execute("DELETE FROM sign_in_window WHERE minute < ?", [minute - 1])
    still_covered = 1 - into / WINDOW_SECONDS
    for key in keys:
        if current[key] + previous.get(key, 0) * still_covered > limit:
            raise RateLimited("too many sign-in attempts; wait a minute and try again")

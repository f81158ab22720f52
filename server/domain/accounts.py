"""Accounts, console sign-in and sessions.

A session token is random (256 bits) and stored as its SHA-256 only. An account owner signs in
through a portal (`via`); a native console user signs in with `via` null. Wrong password and
wrong service give the same answer.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from server import events
from server.domain import secrets, validation
from server.domain.errors import AlreadyExists, InvalidCredentials, InvalidInput
from server.events import EventBus
from server.models import Account, Session, User, db
from server.models.bulk import encode_ids, encode_rows, ids_source, rows_source
from server.models.enums import Service

TOKEN_PREFIX = "msp"  # noqa: S105 - a label, not a secret
LAST_SEEN_RESOLUTION = dt.timedelta(seconds=60)  # write last_seen at most once a minute


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


async def email_taken(email: str) -> bool:
    value = await db.fetch_value(
        "SELECT 1 FROM account WHERE email = ? "
        "UNION ALL SELECT 1 FROM console_user WHERE email = ?",
        [email, email],
    )
    return value is not None


async def create_account(email: str, password: str, services: list[Service]) -> Account:
    email = validation.email(email)
    password = validation.password(password)
    if not services:
        raise InvalidInput("an account is registered with at least one service", "services")
    names = sorted({Service(s).value for s in services})
    password_hash = await secrets.hash_password(password)
    async with db.transaction():
        if await email_taken(email):
            raise AlreadyExists("an account or user with this email exists", "email")
        return await Account.create(
            email=email, password_hash=password_hash, services=",".join(names)
        )


@dataclass(frozen=True, slots=True)
class SessionInfo:
    """Who a request acts as: the session's account (owners) and console user, if any."""

    session_id: int
    account_id: int | None
    via: Service | None
    user_id: int | None
    instance_id: int | None
    owner: bool
    home_group_path: str | None
    # (levels as stored, group path) of the user's permission sets, read with the session
    grants: tuple[tuple[object, str], ...] = ()


async def login(email: str, password: str, via: Service | None, ttl: int) -> tuple[str, Session]:
    """Check the credentials and open a session; every failure is INVALID_CREDENTIALS."""
    refused = InvalidCredentials("wrong email, password or service")
    if not isinstance(email, str) or not isinstance(password, str) or len(password) > 1024:
        raise refused
    if not validation.storable(email) or not validation.storable(password):  # never a match
        raise refused
    email = email.strip().lower()[:254]
    account: Account | None = None
    user: User | None = None
    if via is not None:
        account = await Account.get_or_none(email=email)
        ok = await secrets.verify_password(account.password_hash if account else None, password)
        if not ok or account is None or via not in account.service_list:
            raise refused
    else:
        user = await User.get_or_none(email=email, account_id=None)
        ok = await secrets.verify_password(user.password_hash if user else None, password)
        if not ok or user is None or not user.enabled:
            raise refused
    token = secrets.new_token(TOKEN_PREFIX)
    now = utcnow()
    timeout = user.session_timeout if user and user.session_timeout else ttl
    session = await Session.create(
        token_hash=secrets.token_hash(token),
        account=account,
        user=user,
        via=via,
        expires_at=now + dt.timedelta(seconds=min(ttl, timeout) if user else ttl),
        last_seen_at=now,
    )
    return token, session


_SESSION_SQL = """
SELECT s.id AS session_id, s.token_hash, s.account_id, s.via, s.expires_at, s.last_seen_at,
       u.id AS user_id, u.instance_id, u.enabled, u.session_timeout, u.account_id AS owner_account,
       g.path AS home_group_path, ps.levels AS grant_levels, pg.path AS grant_path
FROM session s
LEFT JOIN console_user u ON u.id = s.user_id OR (s.user_id IS NULL AND u.account_id = s.account_id)
LEFT JOIN static_group g ON g.id = u.home_group_id
LEFT JOIN user_permission_set ups ON ups.console_user_id = u.id AND u.account_id IS NULL
LEFT JOIN permission_set ps ON ps.id = ups.permissionset_id AND ps.instance_id = u.instance_id
LEFT JOIN permission_set_group psg ON psg.permission_set_id = ps.id
LEFT JOIN static_group pg ON pg.id = psg.staticgroup_id AND pg.instance_id = u.instance_id
WHERE {where}
"""


def _as_datetime(value: object) -> dt.datetime:
    if isinstance(value, dt.datetime):
        return value if value.tzinfo else value.replace(tzinfo=dt.UTC)
    return dt.datetime.fromisoformat(str(value))


async def resolve_session(token: str, default_ttl: int) -> SessionInfo | None:
    """The live session of a bearer token, or None (unknown, expired, idle, user disabled)."""
    if not token or len(token) > 256:
        return None
    rows = await db.fetch(
        _SESSION_SQL.format(where="s.token_hash = ?"), [secrets.token_hash(token)]
    )
    found = await _live_sessions(rows, default_ttl)
    return next(iter(found.values()), None)


async def resolve_sessions(tokens: Sequence[str], default_ttl: int) -> dict[str, SessionInfo]:
    """The live sessions of many bearer tokens (the missing ones are not live) in one
    statement, and one more to note those seen: what open subscriptions re-read together."""
    by_hash = {secrets.token_hash(t): t for t in set(tokens) if t and len(t) <= 256}
    if not by_hash:
        return {}
    source = rows_source({"h": "text"})
    rows = await db.fetch(
        _SESSION_SQL.format(where=f"s.token_hash IN (SELECT x.h FROM {source})"),
        [encode_rows({"h": h} for h in by_hash)],
    )
    found = await _live_sessions(rows, default_ttl)
    return {by_hash[h]: session for h, session in found.items()}


async def _live_sessions(rows: Sequence[dict], default_ttl: int) -> dict[str, SessionInfo]:
    """Sessions by token hash from the rows of `_SESSION_SQL` (a row per grant), the dead
    ones left out; notes the live ones as seen (at most once a minute, one statement)."""
    grouped: dict[str, list[dict]] = {}
    for row in rows:
        grouped.setdefault(row["token_hash"], []).append(row)
    now = utcnow()
    live: dict[str, SessionInfo] = {}
    seen: list[int] = []
    for token_hash, group in grouped.items():
        row = group[0]
        last_seen = _as_datetime(row["last_seen_at"])
        idle_limit = dt.timedelta(seconds=row["session_timeout"] or default_ttl)
        if _as_datetime(row["expires_at"]) <= now or now - last_seen > idle_limit:
            continue
        if row["user_id"] is not None and not row["enabled"]:
            continue
        if now - last_seen > LAST_SEEN_RESOLUTION:
            seen.append(row["session_id"])
        live[token_hash] = SessionInfo(
            session_id=row["session_id"],
            account_id=row["account_id"],
            via=Service(row["via"]) if row["via"] else None,
            user_id=row["user_id"],
            instance_id=row["instance_id"],
            owner=row["owner_account"] is not None,
            home_group_path=row["home_group_path"],
            grants=tuple(
                (r["grant_levels"], r["grant_path"])
                for r in group
                if r["grant_path"] is not None and r["grant_levels"] is not None
            ),
        )
    if seen:
        await db.execute(
            f"UPDATE session SET last_seen_at = ? WHERE id IN ({ids_source()})",
            [now, encode_ids(seen)],
        )
    return live


async def logout(session_id: int) -> None:
    await Session.filter(id=session_id).delete()


async def end_user_sessions(
    user_ids: Sequence[int], keep_session_id: int | None = None
) -> list[int]:
    """End every session of these users but the one kept; returns the ids of those ended."""
    if not user_ids:
        return []
    rows = await db.fetch(
        f"DELETE FROM session WHERE user_id IN ({ids_source()}) AND id <> ? RETURNING id",
        [encode_ids(user_ids), -1 if keep_session_id is None else keep_session_id],
    )
    return [row["id"] for row in rows]


async def publish_sessions_ended(
    bus: EventBus,
    instance_id: int,
    *,
    user_ids: Sequence[int] = (),
    session_ids: Sequence[int] = (),
) -> None:
    """Tell open websockets (after commit) whose sessions ended: every session of `user_ids`,
    and the sessions `session_ids`."""
    if user_ids:
        await bus.publish(
            events.SESSION_ENDED, {"instance_id": instance_id, "user_ids": list(user_ids)}
        )
    if session_ids:
        await bus.publish(
            events.SESSION_ENDED, {"instance_id": instance_id, "session_ids": list(session_ids)}
        )


async def own_account(session: SessionInfo) -> Account | None:
    """The account a session signed in as through a portal (an account lives outside any
    instance, so the session, not a scope, says whose it is); None for a console user."""
    if session.account_id is None:
        return None
    return await Account.get_or_none(id=session.account_id)

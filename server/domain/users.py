"""Native console users: created and managed by the account owner, or by users with WRITE on
USERS where the user lives (its home group), never with more rights than the manager holds.

A manager may only change a user whose every right it holds itself: otherwise resetting a
password or handing out sets would be a way up. Disabling a user ends its sessions at once.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from tortoise.exceptions import IntegrityError

from server.domain import permission_sets, secrets, validation
from server.domain import search as text_search
from server.domain.access import Scope
from server.domain.accounts import email_taken, end_user_sessions
from server.domain.errors import AlreadyExists, InvalidInput, NotFound, PermissionDenied
from server.domain.listing import Listing, sql_in
from server.models import StaticGroup, User, db
from server.models.enums import Area, GroupKind, Level

MIN_SESSION_TIMEOUT = 60
MAX_SESSION_TIMEOUT = 7 * 24 * 3600
DESCRIPTION_MAX = 500
TAG_MAX = 255
SOURCE = "console_user u JOIN static_group g ON g.id = u.home_group_id"


def visible(scope: Scope, search: str | None = None) -> Listing[User]:
    """Users whose home group is within the viewer's USERS scope, by email."""
    listing = Listing(
        User, SOURCE, "u", ("u.email", "u.id"), ("email", "id"), text_keys=frozenset({"u.email"})
    )
    condition, params = scope.sql("g.path", Area.USERS, Level.READ)
    listing.filter("u.instance_id = ?", scope.instance_id).filter(condition, *params)
    match = text_search.contains("u.email", search)
    if match:
        listing.filter(match[0], *match[1])
    return listing


async def by_ids(scope: Scope, ids: Iterable[int]) -> dict[int, User]:
    values: list[Any] = list(set(ids))
    found = await visible(scope).filter(*sql_in("u.id", values)).rows() if values else []
    return {u.id: u for u in found}


def session_timeout(value: int | None, field: str = "sessionTimeout") -> int | None:
    if value is None:
        return None
    if not MIN_SESSION_TIMEOUT <= value <= MAX_SESSION_TIMEOUT:
        raise InvalidInput(
            f"a session timeout is {MIN_SESSION_TIMEOUT} to {MAX_SESSION_TIMEOUT} seconds", field
        )
    return value


async def _home_group(scope: Scope, group_id: int, field: str = "homeGroupId") -> StaticGroup:
    group = await StaticGroup.get_or_none(id=group_id, instance_id=scope.instance_id)
    if group is None or not scope.allows(group.path):
        raise NotFound("no such group", field)
    if group.kind is GroupKind.SHARED_OBJECTS:
        raise InvalidInput("a Shared Objects group holds no users", field)
    scope.require(group.path, Area.USERS, Level.WRITE)
    return group


async def create_user(
    scope: Scope,
    actor_id: int | None,
    *,
    email: str,
    password: str,
    home_group_id: int,
    permission_set_ids: Sequence[int] = (),
    description: str | None = None,
    tag: str | None = None,
    session_timeout_seconds: int | None = None,
) -> User:
    """A native user in a group the creator manages, with sets the creator may hand out."""
    email = validation.email(email)
    password = validation.password(password)
    description = permission_sets.plain_text(description, "description", max_length=DESCRIPTION_MAX)
    tag = permission_sets.plain_text(tag, "tag", max_length=TAG_MAX)
    timeout = session_timeout(session_timeout_seconds)
    group = await _home_group(scope, home_group_id)
    sets = await permission_sets.checked_sets(scope, permission_set_ids)
    password_hash = await secrets.hash_password(password)
    async with db.transaction():
        user = await insert(
            scope.instance_id,
            email,
            "email",
            password_hash=password_hash,
            home_group=group,
            description=description or "",
            tag=tag or "",
            session_timeout=timeout,
            created_by_id=actor_id,
        )
        if sets:
            await user.permission_sets.add(*sets)
    return user


async def insert(instance_id: int, email: str, field: str, **columns: Any) -> User:
    """Writes a console user, in the caller's transaction. No account or user may hold its email:
    checked here, and by the unique index when another writer takes it in between (both refuse
    with AlreadyExists on `field`)."""
    if await email_taken(email):
        raise AlreadyExists("an account or user with this email exists", field)
    try:
        return await User.create(instance_id=instance_id, email=email, **columns)
    except IntegrityError:
        raise AlreadyExists("an account or user with this email exists", field) from None


async def editable(scope: Scope, actor_id: int | None, user_id: int) -> User:
    """A user the viewer may change: visible, USERS WRITE on its home group, not the owner,
    and holding nothing the viewer does not hold."""
    user = (await by_ids(scope, [user_id])).get(user_id)
    if user is None:
        raise NotFound("no such user", "userId")
    home = await StaticGroup.get(id=user.home_group_id)
    scope.require(home.path, Area.USERS, Level.WRITE)
    if user.is_owner:
        raise PermissionDenied("the account owner is managed through the portal", "userId")
    grants = await permission_sets.grants_of_user(scope.instance_id, user.id)
    permission_sets.require_within(scope, grants, "this user's permission sets", "userId")
    return user


@dataclass(frozen=True, slots=True)
class UserChange:
    user: User
    ended_session_ids: list[int]


async def update_user(
    scope: Scope,
    actor_id: int | None,
    user_id: int,
    *,
    enabled: bool | None = None,
    password: str | None = None,
    description: str | None = None,
    tag: str | None = None,
    session_timeout_seconds: int | None = None,
    clear_session_timeout: bool = False,
    home_group_id: int | None = None,
    actor_session_id: int | None = None,
) -> UserChange:
    """Enable or disable a user, or change its details. Disabling ends its sessions at once; a
    new password ends them too, but for the one a user changing its own password acts from
    (`actor_session_id`): whoever knew the old password is signed out everywhere else."""
    user = await editable(scope, actor_id, user_id)
    if password is not None:
        password = validation.password(password)
    description = permission_sets.plain_text(description, "description", max_length=DESCRIPTION_MAX)
    tag = permission_sets.plain_text(tag, "tag", max_length=TAG_MAX)
    timeout = session_timeout(session_timeout_seconds)
    if enabled is False and user.id == actor_id:
        raise InvalidInput("you cannot disable yourself", "enabled")
    group = await _home_group(scope, home_group_id) if home_group_id is not None else None
    fields: list[str] = []
    end_sessions = False
    kept_session_id = None
    if enabled is not None and enabled != user.enabled:
        user.enabled = enabled
        fields.append("enabled")
        if enabled:
            user.disabled_by_unlink_id = None
            fields.append("disabled_by_unlink_id")
        end_sessions = not enabled
    if password is not None:
        user.password_hash = await secrets.hash_password(password)
        fields.append("password_hash")
        if not end_sessions:
            end_sessions = True
            kept_session_id = actor_session_id if user.id == actor_id else None
    if description is not None:
        user.description = description
        fields.append("description")
    if tag is not None:
        user.tag = tag
        fields.append("tag")
    if timeout is not None or clear_session_timeout:
        user.session_timeout = timeout
        fields.append("session_timeout")
    if group is not None:
        user.home_group_id = group.id
        fields.append("home_group_id")
    ended: list[int] = []
    async with db.transaction():
        if fields:
            await user.save(update_fields=fields)
        if end_sessions:
            ended = await end_user_sessions([user.id], kept_session_id)
    return UserChange(user, ended)


async def assign_permission_sets(
    scope: Scope, actor_id: int | None, user_id: int, set_ids: Sequence[int]
) -> User:
    """Replace the user's sets among those the viewer sees; sets it cannot see are kept."""
    user = await editable(scope, actor_id, user_id)
    sets = await permission_sets.checked_sets(scope, set_ids)
    visible_now = (await permission_sets.by_user_ids(scope, [user.id]))[user.id]
    async with db.transaction():
        if visible_now:
            await user.permission_sets.remove(*visible_now)
        if sets:
            await user.permission_sets.add(*sets)
    return user


async def own_user(scope: Scope) -> User | None:
    """The viewer itself: a viewer always sees itself, whatever its USERS rights."""
    return await User.get_or_none(id=scope.user_id, instance_id=scope.instance_id)


async def home_group_path(scope: Scope, user_id: int) -> str:
    """Where a user of the viewer's instance lives: its audit entries are filed there."""
    path = await db.fetch_value(
        "SELECT g.path FROM console_user u JOIN static_group g ON g.id = u.home_group_id "
        "WHERE u.id = ? AND u.instance_id = ?",
        [user_id, scope.instance_id],
    )
    return str(path or "")

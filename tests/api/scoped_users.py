"""Native console users scoped to parts of a tree, signed in through the API (for the tests of
customers, users, audit and isolation)."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

from server.domain import secrets
from server.domain.access import Scope
from server.models import Company, PermissionSet, StaticGroup, User
from server.models.enums import Area, GroupKind, Level
from tests import factories
from tests.graphql_client import GraphQLClient

PASSWORD = "scoped user password"
EVERYTHING = dict.fromkeys(Area, Level.WRITE)
_serial = itertools.count(1)
_HASH: dict[str, str] = {}


async def password_hash() -> str:
    """argon2 is slow on purpose: hash the one test password once."""
    if PASSWORD not in _HASH:
        _HASH[PASSWORD] = await secrets.hash_password(PASSWORD)
    return _HASH[PASSWORD]


@dataclass
class ScopedUser:
    user: User
    email: str
    token: str


async def group_of(company: Company) -> StaticGroup:
    return await StaticGroup.get(company_id=company.id, kind=GroupKind.COMPANY)


async def shared_objects_of(company: Company) -> StaticGroup:
    return await StaticGroup.get(company_id=company.id, kind=GroupKind.SHARED_OBJECTS)


async def all_group(instance_id: int) -> StaticGroup:
    return await StaticGroup.get(instance_id=instance_id, kind=GroupKind.ALL)


async def owner_scope(instance_id: int) -> Scope:
    owner = await User.get(instance_id=instance_id, account_id__isnull=False)
    return Scope.for_owner(instance_id, owner.id, (await all_group(instance_id)).path)


async def permission_set(
    instance_id: int, groups: list[StaticGroup], levels: dict[Area, Level] | None = None
) -> PermissionSet:
    levels = EVERYTHING if levels is None else levels
    created = await PermissionSet.create(
        instance_id=instance_id,
        name=f"set {next(_serial)}",
        levels={a.value: lv.name for a, lv in levels.items()},
    )
    await created.groups.add(*groups)
    return created


async def scoped_user(
    client: GraphQLClient,
    instance_id: int,
    groups: list[StaticGroup],
    levels: dict[Area, Level] | None = None,
    *,
    home: StaticGroup | None = None,
    sets: list[PermissionSet] | None = None,
) -> ScopedUser:
    """A native user living in `home` (the first group), with one set of `levels` on `groups`
    (or the given sets), signed in."""
    email = factories.unique_email("user")
    user = await User.create(
        instance_id=instance_id,
        email=email,
        password_hash=await password_hash(),
        home_group=home or groups[0],
    )
    assigned = sets if sets is not None else [await permission_set(instance_id, groups, levels)]
    if assigned:
        await user.permission_sets.add(*assigned)
    token = await factories.login(client, email, PASSWORD, None)
    return ScopedUser(user, email, token)


def ids_in(value: Any) -> set[str]:
    """Every `id` anywhere in a GraphQL response."""
    found: set[str] = set()
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "id" and isinstance(item, str):
                found.add(item)
            else:
                found |= ids_in(item)
    elif isinstance(value, list):
        for item in value:
            found |= ids_in(item)
    return found

"""Reading the static group tree through a viewer's scope.

Shared Objects groups hold no computers and are not part of the Computers tree: they are
reachable by id (and by the permission sets that grant them) but left out of tree listings.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from server.domain.access import ANYWHERE, Scope
from server.domain.listing import Listing, Page, PageRequest, sql_in
from server.models import StaticGroup, db
from server.models.companies import top_group
from server.models.enums import GroupKind

_IN_TREE = f"g.kind <> '{GroupKind.SHARED_OBJECTS.value}'"


def _of_instance(instance_id: int) -> Listing[StaticGroup]:
    listing = Listing(
        StaticGroup, "static_group g", "g", ("g.sort_key", "g.id"), ("sort_key", "id")
    )
    return listing.filter("g.instance_id = ?", instance_id)


def visible(scope: Scope) -> Listing[StaticGroup]:
    condition, params = scope.sql("g.path")
    return _of_instance(scope.instance_id).filter(condition, *params)


def children(scope: Scope, parent_id: int) -> Listing[StaticGroup]:
    return visible(scope).filter("g.parent_id = ?", parent_id).filter(_IN_TREE)


async def children_pages(
    scope: Scope, parent_ids: Sequence[int], request: PageRequest
) -> dict[int, Page[StaticGroup]]:
    return await visible(scope).filter(_IN_TREE).pages_by("g.parent_id", parent_ids, request)


async def children_counts(scope: Scope, parent_ids: Sequence[int]) -> dict[int, int]:
    return await visible(scope).filter(_IN_TREE).counts_by("g.parent_id", parent_ids)


async def by_ids(scope: Scope, ids: Iterable[int]) -> dict[int, StaticGroup]:
    return {g.id: g for g in await _where_in(scope, "g.id", ids)}


async def by_paths(scope: Scope, paths: Iterable[str]) -> dict[str, StaticGroup]:
    return {g.path: g for g in await _where_in(scope, "g.path", paths)}


async def by_company_ids(scope: Scope, company_ids: Iterable[int]) -> dict[int, StaticGroup]:
    """Each company's own group (kind COMPANY)."""
    listing = visible(scope).filter("g.kind = ?", GroupKind.COMPANY.value)
    ids = list(set(company_ids))
    groups = await listing.filter(*sql_in("g.company_id", ids)).rows() if ids else []
    return {g.company_id: g for g in groups if g.company_id is not None}  # always, by kind


async def _where_in(scope: Scope, column: str, values: Iterable[Any]) -> list[StaticGroup]:
    values = list(set(values))
    return await visible(scope).filter(*sql_in(column, values)).rows() if values else []


async def own_home_group(scope: Scope) -> StaticGroup | None:
    """The viewer's own home group: a viewer always sees where it lives, even when its
    permission sets grant nothing there."""
    rows = await db.fetch(
        "SELECT g.* FROM console_user u JOIN static_group g ON g.id = u.home_group_id "
        "WHERE u.id = ? AND u.instance_id = ? AND g.instance_id = ?",
        [scope.user_id, scope.instance_id, scope.instance_id],
    )
    return db.from_row(StaticGroup, rows[0]) if rows else None


def roots_listing(scope: Scope) -> Listing[StaticGroup]:
    """The tops of the group tree the viewer may see (Shared Objects groups left out): the
    groups at the scope's minimal path prefixes, whose parents no grant covers, read off the
    (instance_id, path) index one row each; the whole instance's top has no parent."""
    prefixes = scope.paths()
    listing = _of_instance(scope.instance_id).filter(_IN_TREE)
    if ANYWHERE in prefixes:
        return listing.filter("g.parent_id IS NULL")
    return listing.filter(*sql_in("g.path", prefixes)) if prefixes else listing.filter("1=0")


async def roots(scope: Scope) -> list[StaticGroup]:
    return await roots_listing(scope).rows()


async def all_group_path(instance_id: int) -> str | None:
    """The path of the instance's `All` group (None: no such instance), in one index probe."""
    path = await db.fetch_value(
        f"SELECT g.path FROM static_group g WHERE {top_group('g')}", [instance_id]
    )
    return str(path) if path is not None else None

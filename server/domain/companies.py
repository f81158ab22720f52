"""Reading the company tree through a viewer's scope (customer status: `customers`)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from server.domain import counters, customers, tree_paths
from server.domain import search as name_search
from server.domain.access import Scope
from server.domain.listing import Listing, Page, PageRequest, sql_in
from server.models import Company, db
from server.models.enums import CompanyType, CustomerStatus


def visible(scope: Scope, *, by_name: bool = False) -> Listing[Company]:
    """Every company the viewer may see, in tree order (or by name)."""
    order, key = (
        (("c.sort_name", "c.id"), ("sort_name", "id"))
        if by_name
        else (
            ("c.sort_key", "c.id"),
            ("sort_key", "id"),
        )
    )
    listing = Listing(Company, "company c", "c", order, key, text_keys=frozenset({"c.sort_name"}))
    condition, params = scope.sql("c.path")
    return listing.filter("c.instance_id = ?", scope.instance_id).filter(condition, *params)


def narrow(
    listing: Listing[Company],
    types: Sequence[CompanyType] | None = None,
    statuses: Sequence[CustomerStatus] | None = None,
    search: str | None = None,
) -> Listing[Company]:
    if types is not None:
        listing.filter(*sql_in("c.type", [t.value for t in types]) if types else ("1=0",))
    if statuses is not None:
        listing.filter(customers.status_sql(statuses))
    match = name_search.contains("c.sort_name", search)
    if match:
        listing.filter(match[0], *match[1])
    return listing


def descendants(
    scope: Scope,
    company: Company,
    types: Sequence[CompanyType] | None = None,
    statuses: Sequence[CustomerStatus] | None = None,
    search: str | None = None,
) -> Listing[Company]:
    """Below `company` in tree order: a `sort_key` range (a subtree is a prefix of it, itself
    the range's low end), so the page reads its rows off the sort-key index in order and stops;
    the scope, intersected with the subtree, stays a filter on `path` (none when it covers it)."""
    low, high = tree_paths.sort_key_bounds(company.sort_key)
    listing = Listing(Company, "company c", "c", ("c.sort_key", "c.id"), ("sort_key", "id"))
    condition, params = scope.sql_within("c.path", company.path)
    listing.filter("c.instance_id = ?", scope.instance_id).filter(condition, *params)
    listing.between(low, high)
    return narrow(listing, types, statuses, search)


async def descendant_count(
    scope: Scope,
    company: Company,
    types: Sequence[CompanyType] | None = None,
    statuses: Sequence[CustomerStatus] | None = None,
    search: str | None = None,
) -> tuple[int, bool]:
    """How many `descendants` lists, and whether exactly: from the counters, or under a search
    counted up to COUNT_CAP."""
    if name_search.contains("c.sort_name", search) is None:
        counts = await counters.descendant_counts(scope, company)
        return counts.matching(types, statuses), True
    return await descendants(scope, company, types, statuses, search).count_capped(
        counters.COUNT_CAP
    )


def children(
    scope: Scope, parent_id: int, types: Sequence[CompanyType] | None = None
) -> Listing[Company]:
    return narrow(visible(scope).filter("c.parent_id = ?", parent_id), types)


async def children_pages(
    scope: Scope,
    parent_ids: Sequence[int],
    types: Sequence[CompanyType] | None,
    request: PageRequest,
) -> dict[int, Page[Company]]:
    return await narrow(visible(scope), types).pages_by("c.parent_id", parent_ids, request)


async def children_counts(
    scope: Scope, parent_ids: Sequence[int], types: Sequence[CompanyType] | None
) -> dict[int, int]:
    return await narrow(visible(scope), types).counts_by("c.parent_id", parent_ids)


async def by_ids(scope: Scope, ids: Iterable[int]) -> dict[int, Company]:
    return {c.id: c for c in await _where_in(scope, "c.id", ids)}


async def by_paths(scope: Scope, paths: Iterable[str]) -> dict[str, Company]:
    return {c.path: c for c in await _where_in(scope, "c.path", paths)}


async def _where_in(scope: Scope, column: str, values: Iterable[Any]) -> list[Company]:
    values = list(set(values))
    return await visible(scope).filter(*sql_in(column, values)).rows() if values else []


async def roots(scope: Scope) -> list[Company]:
    """The tops of what the viewer may see: visible companies whose parent is not visible."""
    listing = visible(scope)
    parent_visible, parent_params = scope.sql("p.path")
    rows = await db.fetch(
        f"SELECT c.* FROM company c LEFT JOIN company p ON p.id = c.parent_id "
        f"WHERE {listing._where_sql()} AND (p.id IS NULL OR NOT {parent_visible}) "
        f"ORDER BY c.sort_key",
        [*listing.params, *parent_params],
    )
    return [db.from_row(Company, row) for row in rows]


def ancestor_paths(company: Company) -> list[str]:
    return tree_paths.ancestor_paths(company.path)

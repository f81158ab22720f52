"""Reading the company tree through a viewer's scope, and the derived customer status."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from server.domain import search as name_search
from server.domain import tree
from server.domain.access import Scope
from server.domain.listing import Listing, Page, PageRequest, sql_in
from server.models import Company, db
from server.models.enums import CompanyType, CustomerStatus, SetupState

STATUS_SQL = {
    CustomerStatus.UNLINKED: "c.unlinked_at IS NOT NULL",
    CustomerStatus.NOT_SET_UP: "(c.unlinked_at IS NULL AND c.setup_state = 'pending')",
    CustomerStatus.NORMAL: "(c.unlinked_at IS NULL AND c.setup_state <> 'pending')",
}


def _subtree(column: str, path: str) -> tuple[Any, ...]:
    sql, params = tree.subtree_sql(column, path)
    return (sql, *params)


def customer_status(company: Company) -> CustomerStatus | None:
    if company.type != CompanyType.CUSTOMER:
        return None
    if company.unlinked_at is not None:
        return CustomerStatus.UNLINKED
    if company.setup_state == SetupState.PENDING:
        return CustomerStatus.NOT_SET_UP
    return CustomerStatus.NORMAL


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


def _narrow(
    listing: Listing[Company],
    types: Sequence[CompanyType] | None = None,
    statuses: Sequence[CustomerStatus] | None = None,
    search: str | None = None,
) -> Listing[Company]:
    if types is not None:
        listing.filter(*sql_in("c.type", [t.value for t in types]) if types else ("1=0",))
    if statuses is not None:
        if not statuses:
            listing.filter("1=0")
        else:
            listing.filter("c.type = ?", CompanyType.CUSTOMER.value)
            listing.filter("(" + " OR ".join(STATUS_SQL[s] for s in set(statuses)) + ")")
    match = name_search.contains("c.sort_name", search)
    if match:
        listing.filter(match[0], *match[1])
    return listing


def managed_customers(
    scope: Scope, statuses: Sequence[CustomerStatus] | None, search: str | None
) -> Listing[Company]:
    listing = visible(scope, by_name=True).filter("c.type = ?", CompanyType.CUSTOMER.value)
    return _narrow(listing, statuses=statuses, search=search)


async def status_counts(scope: Scope, search: str | None) -> dict[CustomerStatus, int]:
    """Customers the viewer may see matching `search`, per status, in one statement."""
    listing = visible(scope).filter("c.type = ?", CompanyType.CUSTOMER.value)
    _narrow(listing, search=search)
    sums = ", ".join(
        f"SUM(CASE WHEN {sql} THEN 1 ELSE 0 END) AS {status.value.lower()}"
        for status, sql in STATUS_SQL.items()
    )
    rows = await db.fetch(
        f"SELECT {sums} FROM {listing.source} WHERE {listing._where_sql()}", listing.params
    )
    row = rows[0] if rows else {}
    return {status: int(row.get(status.value.lower()) or 0) for status in CustomerStatus}


def descendants(
    scope: Scope,
    company: Company,
    types: Sequence[CompanyType] | None = None,
    statuses: Sequence[CustomerStatus] | None = None,
    search: str | None = None,
) -> Listing[Company]:
    listing = (
        visible(scope).filter(*_subtree("c.path", company.path)).filter("c.id <> ?", company.id)
    )
    return _narrow(listing, types, statuses, search)


def children(
    scope: Scope, parent_id: int, types: Sequence[CompanyType] | None = None
) -> Listing[Company]:
    return _narrow(visible(scope).filter("c.parent_id = ?", parent_id), types)


async def children_pages(
    scope: Scope,
    parent_ids: Sequence[int],
    types: Sequence[CompanyType] | None,
    request: PageRequest,
) -> dict[int, Page[Company]]:
    return await _narrow(visible(scope), types).pages_by("c.parent_id", parent_ids, request)


async def children_counts(
    scope: Scope, parent_ids: Sequence[int], types: Sequence[CompanyType] | None
) -> dict[int, int]:
    return await _narrow(visible(scope), types).counts_by("c.parent_id", parent_ids)


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
    return tree.ancestor_paths(company.path)

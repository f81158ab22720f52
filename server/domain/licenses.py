"""Reading licenses through a viewer's scope: a license is seen where its company's path lies
within the viewer's LICENSES scope (READ), so a viewer without that area sees none, anywhere.

`seat_usage` sets the seats a company's licenses order against the computers this console holds
for it (the discrepancy an MSP looks for). Computer counts come from `computer_counts`, the one
place a stored subtree counter can replace the count.
"""

from __future__ import annotations

import bisect
import datetime as dt
import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from server.domain import search as name_search
from server.domain import tree_paths
from server.domain.access import Scope, minimal_prefixes
from server.domain.connections import thresholds
from server.domain.errors import InvalidInput
from server.domain.listing import Listing, Page, PageRequest, sql_in
from server.models import Company, License, db
from server.models.enums import Area, LicenseState
from server.settings import Settings

SOURCE = "license l JOIN company c ON c.id = l.company_id"
MAX_EXPIRING_DAYS = 3650
IN_FORCE = LicenseState.ACTIVE  # the state whose seats count as ordered


def search_text(key: str, product_name: str) -> str:
    """What the `search` filter matches a license on: its key and product, casefolded."""
    return f"{key} {product_name}".casefold()


def visible(scope: Scope) -> Listing[License]:
    """Every license the viewer may see, by key."""
    listing = Listing(
        License,
        SOURCE,
        "l",
        ("l.public_license_key", "l.id"),
        ("public_license_key", "id"),
        text_keys=frozenset({"l.public_license_key"}),
    )
    condition, params = scope.sql("c.path", Area.LICENSES)
    return listing.filter("l.instance_id = ?", scope.instance_id).filter(condition, *params)


def start_of_day(moment: dt.datetime) -> dt.datetime:
    moment = moment.astimezone(dt.UTC)
    return dt.datetime(moment.year, moment.month, moment.day, tzinfo=dt.UTC)


def narrow(
    listing: Listing[License],
    states: Sequence[LicenseState] | None = None,
    expiring_within_days: int | None = None,
    over_used: bool | None = None,
    search: str | None = None,
    now: dt.datetime | None = None,
) -> Listing[License]:
    """The root list's filters. Expiring within N days: an expiration date from today (UTC)
    to N days from today, both included."""
    if states is not None:
        listing.filter(*sql_in("l.state", [s.value for s in states]) if states else ("1=0",))
    if expiring_within_days is not None:
        if not 0 <= expiring_within_days <= MAX_EXPIRING_DAYS:
            raise InvalidInput(
                f"expiringWithinDays must be between 0 and {MAX_EXPIRING_DAYS}",
                "expiringWithinDays",
            )
        today = start_of_day(now or dt.datetime.now(dt.UTC))
        listing.filter(
            "l.expires_at >= ? AND l.expires_at <= ?",
            today,
            today + dt.timedelta(days=expiring_within_days),
        )
    if over_used is not None:
        listing.filter("l.activated > l.seats" if over_used else "l.activated <= l.seats")
    match = name_search.contains("l.search_text", search)
    if match:
        company = name_search.contains("c.sort_name", search)
        assert company is not None
        listing.filter(f"({match[0]} OR {company[0]})", *match[1], *company[1])
    return listing


async def by_ids(scope: Scope, ids: Iterable[int]) -> dict[int, License]:
    values: list[Any] = list(set(ids))
    found = await visible(scope).filter(*sql_in("l.id", values)).rows() if values else []
    return {license.id: license for license in found}


async def by_ids_with_paths(scope: Scope, ids: Iterable[int]) -> dict[int, tuple[License, str]]:
    """Licenses with their company's path (what a subscriber's scope check needs), in one
    statement."""
    values: list[Any] = list(set(ids))
    if not values:
        return {}
    listing = visible(scope).filter(*sql_in("l.id", values))
    rows = await listing.rows_with("c.path", "company_path")
    return {license.id: (license, path) for license, path in rows}


async def pages_by_company(
    scope: Scope, company_ids: Sequence[int], request: PageRequest
) -> dict[int, Page[License]]:
    """The same page of the own licenses of many companies, in one statement."""
    return await visible(scope).pages_by("l.company_id", list(company_ids), request)


async def counts_by_company(scope: Scope, company_ids: Sequence[int]) -> dict[int, int]:
    return await visible(scope).counts_by("l.company_id", list(company_ids))


@dataclass(frozen=True, slots=True)
class SeatUsage:
    seats: int = 0
    activated: int = 0
    computers: int = 0
    protected: int = 0  # of the computers, CONNECTED or DELAYED

    @property
    def over_used(self) -> bool:
        return self.activated > self.seats


def _subtree_sums(
    rows: list[dict[str, Any]], columns: Sequence[str], paths: Iterable[tuple[int, str]]
) -> dict[int, tuple[int, ...]]:
    """Per (key, path): the sums of `columns` over the rows (ordered by `path`) in its subtree."""
    ordered = [row["path"] for row in rows]
    running = [
        list(itertools.accumulate((int(row[column] or 0) for row in rows), initial=0))
        for column in columns
    ]
    sums = {}
    for key, path in paths:
        low, high = tree_paths.subtree_bounds(path)
        start, end = bisect.bisect_left(ordered, low), bisect.bisect_left(ordered, high)
        sums[key] = tuple(total[end] - total[start] for total in running)
    return sums


def _subtrees(column: str, companies: Sequence[Company]) -> list[tuple[str, list[str]]]:
    return [tree_paths.subtree_sql(column, p) for p in minimal_prefixes(c.path for c in companies)]


async def license_sums(
    scope: Scope, companies: Sequence[Company], recursive: bool
) -> dict[int, tuple[int, int]]:
    """(seats, activated) of the licenses in force of each company (with its subtree when
    recursive), in one statement."""
    if not companies:
        return {}
    condition, params = scope.sql("c.path", Area.LICENSES)
    if recursive:
        subtrees = _subtrees("c.path", companies)
        where = "(" + " OR ".join(sql for sql, _ in subtrees) + ")"
        where_params = [v for _, values in subtrees for v in values]
    else:
        ids: list[Any] = [c.id for c in companies]
        where, where_params = sql_in("c.id", ids)[0], ids
    rows = await db.fetch(
        "SELECT c.path AS path, SUM(l.seats) AS seats, SUM(l.activated) AS activated "
        f"FROM {SOURCE} WHERE l.instance_id = ? AND l.state = ? AND {condition} AND {where} "
        f"GROUP BY c.path ORDER BY {db.text_order('c.path')}",
        [scope.instance_id, IN_FORCE.value, *params, *where_params],
    )
    if recursive:
        sums = _subtree_sums(rows, ("seats", "activated"), ((c.id, c.path) for c in companies))
        return {key: (value[0], value[1]) for key, value in sums.items()}
    by_path = {row["path"]: (int(row["seats"] or 0), int(row["activated"] or 0)) for row in rows}
    return {c.id: by_path.get(c.path, (0, 0)) for c in companies}


async def computer_counts(
    scope: Scope,
    companies: Sequence[Company],
    recursive: bool,
    settings: Settings,
    now: dt.datetime | None = None,
) -> dict[int, tuple[int, int]]:
    """(computers, protected) per company, through the viewer's COMPUTERS scope, in one
    statement: recursive counts every computer in the company group's subtree (a company's
    group shares its path), otherwise the computers enrolled for the company itself. The one
    place a stored subtree counter may replace the count."""
    if not companies:
        return {}
    _, delayed_since = thresholds(now or dt.datetime.now(dt.UTC), settings)
    condition, params = scope.sql("g.path", Area.COMPUTERS)
    protected = "SUM(CASE WHEN m.last_connected_at >= ? THEN 1 ELSE 0 END)"
    if recursive:
        subtrees = _subtrees("g.path", companies)
        rows = await db.fetch(
            f"SELECT g.path AS path, COUNT(*) AS computers, {protected} AS protected "
            "FROM computer m JOIN static_group g ON g.id = m.group_id "
            f"WHERE m.instance_id = ? AND {condition} AND "
            f"({' OR '.join(sql for sql, _ in subtrees)}) "
            f"GROUP BY g.path ORDER BY {db.text_order('g.path')}",
            [
                delayed_since,
                scope.instance_id,
                *params,
                *[v for _, values in subtrees for v in values],
            ],
        )
        sums = _subtree_sums(rows, ("computers", "protected"), ((c.id, c.path) for c in companies))
        return {key: (value[0], value[1]) for key, value in sums.items()}
    ids = [c.id for c in companies]
    rows = await db.fetch(
        f"SELECT m.company_id AS company_id, COUNT(*) AS computers, {protected} AS protected "
        "FROM computer m JOIN static_group g ON g.id = m.group_id "
        f"WHERE m.instance_id = ? AND {condition} AND {sql_in('m.company_id', ids)[0]} "
        "GROUP BY m.company_id",
        [delayed_since, scope.instance_id, *params, *ids],
    )
    found = {row["company_id"]: (int(row["computers"]), int(row["protected"] or 0)) for row in rows}
    return {key: found.get(key, (0, 0)) for key in ids}


async def seat_usage(
    scope: Scope, companies: Sequence[Company], recursive: bool, settings: Settings
) -> dict[int, SeatUsage]:
    """Seat usage of each company, in two statements whatever their number."""
    seats = await license_sums(scope, companies, recursive)
    counts = await computer_counts(scope, companies, recursive, settings)
    return {c.id: SeatUsage(*seats.get(c.id, (0, 0)), *counts.get(c.id, (0, 0))) for c in companies}

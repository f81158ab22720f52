"""Reading licenses through a viewer's scope: a license is seen where its company's path lies
within the viewer's LICENSES scope (READ), so a viewer without that area sees none, anywhere.

`seat_usage` sets the seats a company's licenses order against the computers this console holds
for it (the discrepancy an MSP looks for); over a subtree, from the subtree counters.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from server.domain import counters, tree_paths
from server.domain import search as name_search
from server.domain.access import Scope
from server.domain.errors import InvalidInput
from server.domain.listing import Listing, Page, PageRequest, sql_in
from server.models import Company, License, db
from server.models.enums import Area, LicenseState

SOURCE = "license l JOIN company c ON c.id = l.company_id"
MAX_EXPIRING_DAYS = 3650


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


async def seat_usage(
    scope: Scope, companies: Sequence[Company], recursive: bool
) -> dict[int, SeatUsage]:
    """Seat usage of each company, whatever their number: recursive, from the counter rows of
    the minimal prefixes of the viewer's LICENSES and COMPUTERS scopes inside each subtree (one
    statement); otherwise from the company's own licenses and computers (two statements).
    `protected` counts the computers announced CONNECTED or DELAYED: as of the last
    announcement (`connections.announce_transitions`, within seconds of the clock), the
    instant the computerConnectionChanged subscription reports."""
    if not companies:
        return {}
    if recursive:
        return await _subtree_usage(scope, companies)
    seats = await _own_license_sums(scope, companies)
    counts = await _own_computer_counts(scope, companies)
    return {c.id: SeatUsage(*seats[c.id], *counts[c.id]) for c in companies}


async def _subtree_usage(scope: Scope, companies: Sequence[Company]) -> dict[int, SeatUsage]:
    columns = {
        Area.LICENSES: (counters.SEATS, counters.ACTIVATED),
        Area.COMPUTERS: (counters.COMPUTERS, counters.PROTECTED),
    }
    groups_of = {
        (c.id, area): [tree_paths.path_ids(p)[-1] for p in scope.within(c.path, area)]
        for c in companies
        for area in columns
    }
    found = await counters.totals(
        scope.instance_id, [c for pair in columns.values() for c in pair], groups_of
    )
    return {
        c.id: SeatUsage(
            *(found[(c.id, area)][column] for area, pair in columns.items() for column in pair)
        )
        for c in companies
    }


async def _own_license_sums(
    scope: Scope, companies: Sequence[Company]
) -> dict[int, tuple[int, int]]:
    """(seats, activated) of the licenses in force of each company itself, in one statement."""
    condition, params = scope.sql("c.path", Area.LICENSES)
    ids: list[Any] = [c.id for c in companies]
    rows = await db.fetch(
        "SELECT c.id AS id, SUM(l.seats) AS seats, SUM(l.activated) AS activated "
        f"FROM {SOURCE} WHERE l.instance_id = ? AND l.state = ? AND {condition} "
        f"AND {sql_in('c.id', ids)[0]} GROUP BY c.id",
        [scope.instance_id, counters.IN_FORCE.value, *params, *ids],
    )
    found = {row["id"]: (int(row["seats"] or 0), int(row["activated"] or 0)) for row in rows}
    return {key: found.get(key, (0, 0)) for key in ids}


async def _own_computer_counts(
    scope: Scope, companies: Sequence[Company]
) -> dict[int, tuple[int, int]]:
    """(computers, protected) enrolled for each company itself, through the viewer's COMPUTERS
    scope, in one statement."""
    condition, params = scope.sql("g.path", Area.COMPUTERS)
    ids = [c.id for c in companies]
    protecting = ", ".join("?" for _ in counters.PROTECTING)
    rows = await db.fetch(
        "SELECT m.company_id AS company_id, COUNT(*) AS computers, "
        f"SUM(CASE WHEN m.announced_status IN ({protecting}) THEN 1 ELSE 0 END) AS protected "
        "FROM computer m JOIN static_group g ON g.id = m.group_id "
        f"WHERE m.instance_id = ? AND {condition} AND {sql_in('m.company_id', ids)[0]} "
        "GROUP BY m.company_id",
        [*sorted(counters.PROTECTING), scope.instance_id, *params, *ids],
    )
    found = {row["company_id"]: (int(row["computers"]), int(row["protected"] or 0)) for row in rows}
    return {key: found.get(key, (0, 0)) for key in ids}

"""Reading computers through a viewer's scope (the COMPUTERS area on their group's path),
filtered and counted by connection status in SQL."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from typing import Any

from server.domain import search as name_search
from server.domain.access import Scope
from server.domain.connections import connection_status_filter_sql
from server.domain.listing import Listing, sql_in
from server.models import Computer, StaticGroup, db
from server.models.enums import Area, ConnectionStatus
from server.settings import Settings

SOURCE = "computer m JOIN static_group g ON g.id = m.group_id"


def visible(scope: Scope) -> Listing[Computer]:
    listing = Listing(
        Computer,
        SOURCE,
        "m",
        ("m.sort_name", "m.id"),
        ("sort_name", "id"),
        text_keys=frozenset({"m.sort_name"}),
    )
    condition, params = scope.sql("g.path", Area.COMPUTERS)
    return listing.filter("m.instance_id = ?", scope.instance_id).filter(condition, *params)


def in_group(listing: Listing[Computer], group: StaticGroup, recursive: bool) -> Listing[Computer]:
    if recursive:
        return listing.filter("g.path LIKE ?", group.path + "%")
    return listing.filter("m.group_id = ?", group.id)


def narrow(
    listing: Listing[Computer],
    settings: Settings,
    statuses: Sequence[ConnectionStatus] | None = None,
    search: str | None = None,
    now: dt.datetime | None = None,
) -> Listing[Computer]:
    if statuses is not None:
        moment = now or dt.datetime.now(dt.UTC)
        condition, params = connection_status_filter_sql("m.", statuses, moment, settings)
        listing.filter(condition, *params)
    match = name_search.contains("m.sort_name", search)
    if match:
        listing.filter(match[0], *match[1])
    return listing


async def by_ids(scope: Scope, ids: Iterable[int]) -> dict[int, Computer]:
    values: list[Any] = list(set(ids))
    computers = await visible(scope).filter(*sql_in("m.id", values)).rows() if values else []
    return {c.id: c for c in computers}


async def counts_in_groups(
    scope: Scope, groups: Sequence[StaticGroup], recursive: bool
) -> dict[int, int]:
    """Computers per group (with subgroups when recursive), in one statement."""
    if not groups:
        return {}
    if not recursive:
        return await visible(scope).counts_by("m.group_id", [g.id for g in groups])
    listing = visible(scope).filter(*sql_in("t.id", [g.id for g in groups]))
    rows = await db.fetch(
        "SELECT t.id AS group_id, COUNT(*) AS n FROM static_group t "
        "JOIN static_group g ON g.instance_id = t.instance_id AND g.path LIKE t.path || '%' "
        "JOIN computer m ON m.group_id = g.id "
        f"WHERE {listing._where_sql()} GROUP BY t.id",
        listing.params,
    )
    counts = dict.fromkeys((g.id for g in groups), 0)
    counts.update({row["group_id"]: int(row["n"]) for row in rows})
    return counts

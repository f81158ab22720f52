"""Reading computers through a viewer's scope (the COMPUTERS area on their group's path),
filtered and counted by connection status in SQL."""

from __future__ import annotations

import bisect
import datetime as dt
import itertools
from collections.abc import Iterable, Sequence
from typing import Any

from server.domain import search as name_search
from server.domain import tree
from server.domain.access import Scope, minimal_prefixes
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
        sql, bounds = tree.subtree_sql("g.path", group.path)
        return listing.filter(sql, *bounds)
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
    # Count per group within the subtrees asked for, then add each subtree up: one
    # statement driven by the groups' path index, and sums by bisecting the sorted paths.
    subtrees = [
        tree.subtree_sql("g.path", path) for path in minimal_prefixes(g.path for g in groups)
    ]
    scope_sql, scope_params = scope.sql("g.path", Area.COMPUTERS)
    rows = await db.fetch(
        "SELECT g.path AS path, x.n AS n FROM (SELECT m.group_id, COUNT(*) AS n FROM computer m "
        "WHERE m.instance_id = ? AND m.group_id IN (SELECT g.id FROM static_group g "
        f"WHERE g.instance_id = ? AND {scope_sql} AND "
        f"({' OR '.join(sql for sql, _ in subtrees)})) GROUP BY m.group_id) x "
        "JOIN static_group g ON g.id = x.group_id ORDER BY g.path",
        [
            scope.instance_id,
            scope.instance_id,
            *scope_params,
            *[value for _, values in subtrees for value in values],
        ],
    )
    paths = [row["path"] for row in rows]
    running = list(itertools.accumulate((int(row["n"]) for row in rows), initial=0))
    counts = {}
    for group in groups:
        low, high = tree.subtree_bounds(group.path)
        counts[group.id] = (
            running[bisect.bisect_left(paths, high)] - running[bisect.bisect_left(paths, low)]
        )
    return counts

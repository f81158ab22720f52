"""Reading sync runs: every run of the viewer's instance, newest first (the SYNC area)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from server.domain.access import Scope
from server.domain.listing import Listing, sql_in
from server.models import SyncRun
from server.models.enums import Area


def visible(scope: Scope) -> Listing[SyncRun]:
    listing = Listing(SyncRun, "sync_run r", "r", ("r.id",), ("id",), descending=True)
    listing.filter("r.instance_id = ?", scope.instance_id)
    # Runs belong to the whole instance: reading them takes SYNC on some group.
    return listing if scope.paths(Area.SYNC) else listing.filter("1=0")


async def by_ids(scope: Scope, ids: Iterable[int]) -> dict[int, SyncRun]:
    values: list[Any] = list(set(ids))
    runs = await visible(scope).filter(*sql_in("r.id", values)).rows() if values else []
    return {r.id: r for r in runs}


async def latest(scope: Scope) -> SyncRun | None:
    rows = await visible(scope).rows(limit=1)
    return rows[0] if rows else None

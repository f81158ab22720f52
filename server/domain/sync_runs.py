"""Reading sync runs: every run of the viewer's instance, newest first (the SYNC area)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from server.domain.access import Scope
from server.domain.listing import Listing, sql_in
from server.models import SyncRun
from server.models.enums import Area

WITHHELD_ERROR = "the sync failed; users with sync rights on the whole instance can read why"


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


def error_for(scope: Scope, run: SyncRun) -> str | None:
    """A run's error as the viewer may read it: the text can name upstream companies and
    email addresses of the whole account, so only a viewer whose SYNC rights cover the whole
    instance reads it; others learn that the run failed."""
    if run.error is None:
        return None
    return run.error if scope.covers_instance(Area.SYNC) else WITHHELD_ERROR

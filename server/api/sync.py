"""Sync runs and the instance's MSP status."""

from __future__ import annotations

import datetime as dt

import strawberry
from strawberry.types import Info

from server.api.context import Context
from server.api.enums import SyncState
from server.api.node import Node, resolves
from server.api.pagination import CountedConnection, PageInfo, build_edges, page_request
from server.api.permissions import Authenticated
from server.domain import global_ids, sync_runs
from server.models import SyncRun as SyncRunModel


@strawberry.type
class SyncRun(Node):
    id: strawberry.ID
    state: SyncState  # type: ignore[valid-type]
    trigger: str
    phase: str | None
    created_at: dt.datetime
    started_at: dt.datetime | None
    finished_at: dt.datetime | None
    companies_seen: int
    created: int
    updated: int
    moved: int
    unlinked: int
    relinked: int
    error: str | None

    @classmethod
    def of(cls, model: SyncRunModel) -> SyncRun:
        return cls(
            id=strawberry.ID(global_ids.encode("SyncRun", model.id)),
            state=model.state,
            trigger=model.trigger,
            phase=model.phase,
            created_at=model.created_at,
            started_at=model.started_at,
            finished_at=model.finished_at,
            companies_seen=model.companies_seen,
            created=model.created,
            updated=model.updated,
            moved=model.moved,
            unlinked=model.unlinked,
            relinked=model.relinked,
            error=model.error,
        )


@strawberry.type
class SyncRunEdge:
    cursor: str
    node: SyncRun


@strawberry.type
class SyncRunConnection(CountedConnection):
    edges: list[SyncRunEdge]
    page_info: PageInfo


@resolves("SyncRun")
async def sync_run_node(info: Info[Context, None], key: int) -> SyncRun | None:
    found = await info.context.loaders.sync_run_by_id.load(key)
    return SyncRun.of(found) if found else None


@strawberry.type
class SyncQueries:
    @strawberry.field(permission_classes=[Authenticated], description="Newest first.")
    async def sync_runs(
        self,
        info: Info[Context, None],
        first: int | None = None,
        after: str | None = None,
        last: int | None = None,
        before: str | None = None,
    ) -> SyncRunConnection:
        request = page_request(first, after, last, before, key_length=1)
        listing = sync_runs.visible(info.context.require_scope())
        page = await listing.page(request)
        return SyncRunConnection(
            edges=build_edges(page, SyncRun.of, SyncRunEdge),
            page_info=PageInfo.of(page),
            _count=listing.count,
        )

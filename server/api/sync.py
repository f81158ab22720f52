"""Sync runs (`syncRuns`), connecting an MSP Administrator, and starting a sync."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Annotated

import strawberry
from strawberry.types import Info

from server.api.authentication import Authenticated
from server.api.context import Context
from server.api.enums import SyncState
from server.api.errors import UserError
from server.api.execution import direct
from server.api.mutations import mutation
from server.api.node import Node, resolves
from server.api.pagination import Connection, page_request, paginate
from server.domain import global_ids, sync, sync_runs
from server.domain.errors import NotFound
from server.models import SyncRun as SyncRunModel

if TYPE_CHECKING:
    from server.api.instances import Instance


@strawberry.type
class SyncRun(Node):
    id: strawberry.ID
    state: SyncState
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
    model: strawberry.Private[SyncRunModel]

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
            model=model,
        )

    @strawberry.field(description="Why the run failed; the details only for sync rights on All.")
    @direct
    def error(self, info: Info[Context, None]) -> str | None:
        return sync_runs.error_for(info.context.require_scope(), self.model)


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
    ) -> Connection[SyncRun]:
        request = page_request(first, after, last, before, key_length=1)
        return await paginate(sync_runs.visible(info.context.require_scope()), request, SyncRun.of)


@strawberry.input
class ConnectMspAdministratorInput:
    url: str
    username: str
    password: str
    client_mutation_id: str | None = None


@strawberry.type
class ConnectMspAdministratorPayload:
    instance: Annotated[Instance, strawberry.lazy("server.api.instances")] | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)
    client_mutation_id: str | None = None


@strawberry.input
class StartSyncInput:
    client_mutation_id: str | None = None


@strawberry.type
class StartSyncPayload:
    run: SyncRun | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)
    client_mutation_id: str | None = None


def _instance_id(context: Context) -> int:
    session = context.require_session()
    if session.instance_id is None:
        raise NotFound("create an instance first")
    return session.instance_id


@strawberry.type
class SyncMutations:
    @mutation(
        "Connect the instance to an MSP Administrator account (the credentials are checked "
        "against it, stored encrypted and never returned) and start the first sync."
    )
    async def connect_msp_administrator(
        self, info: Info[Context, None], input: ConnectMspAdministratorInput
    ) -> ConnectMspAdministratorPayload:
        from server.api.instances import own_instance

        context = info.context
        instance_id = _instance_id(context)
        await sync.connect_msp_administrator(
            context.require_scope(),
            instance_id,
            input.url,
            input.username,
            input.password,
            context.settings,
        )
        await sync.start_sync(instance_id, "connect", settings=context.settings, bus=context.bus)
        return ConnectMspAdministratorPayload(instance=await own_instance(context))

    @mutation("Check for new MSP customers now: start a sync, or return the one in progress.")
    async def start_sync(
        self, info: Info[Context, None], input: StartSyncInput | None = None
    ) -> StartSyncPayload:
        context = info.context
        run = await sync.start_sync(
            _instance_id(context),
            "manual",
            settings=context.settings,
            bus=context.bus,
            scope=context.require_scope(),
        )
        return StartSyncPayload(run=SyncRun.of(run))

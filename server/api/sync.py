"""Sync runs (`syncRuns`), connecting an MSP Administrator, and starting a sync."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Annotated

import strawberry
from strawberry.types import Info

from server.api.context import Context
from server.api.enums import SyncState
from server.api.execution import direct
from server.api.mutations import mutation, mutation_input, payload
from server.api.node import Node, refetchable
from server.api.pagination import Connection, connection_query
from server.domain import global_ids, sync_runs, upstream_connection
from server.domain.errors import NotFound
from server.models import SyncRun as SyncRunModel
from server.models.enums import Area

if TYPE_CHECKING:
    from server.api.instances import Instance


@strawberry.type
class SyncRunLicenses:
    seen: int
    created: int
    updated: int
    removed: int


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

    @strawberry.field(
        description="Licenses read, created, updated and removed: null unless the viewer may "
        "read licenses on the whole instance."
    )
    def licenses(self, info: Info[Context, None]) -> SyncRunLicenses | None:
        if not info.context.require_scope().covers_instance(Area.LICENSES):
            return None
        return SyncRunLicenses(
            seen=self.model.licenses_seen,
            created=self.model.licenses_created,
            updated=self.model.licenses_updated,
            removed=self.model.licenses_removed,
        )

    @strawberry.field(description="Why the run failed; the details only for sync rights on All.")
    @direct
    def error(self, info: Info[Context, None]) -> str | None:
        return sync_runs.error_for(info.context.require_scope(), self.model)


refetchable("SyncRun", lambda loaders: loaders.sync_run_by_id, SyncRun.of)


@strawberry.type
class SyncQueries:
    sync_runs: Connection[SyncRun] = connection_query(
        sync_runs.visible, SyncRun.of, "Newest first.", key_length=1
    )


@mutation_input
class ConnectMspAdministratorInput:
    url: str
    username: str
    password: str


@payload
class ConnectMspAdministratorPayload:
    instance: Annotated[Instance, strawberry.lazy("server.api.instances")] | None = None


@mutation_input
class StartSyncInput:
    """Nothing but clientMutationId."""


@payload
class StartSyncPayload:
    run: SyncRun | None = None


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
        await upstream_connection.connect_msp_administrator(
            context.require_scope(),
            instance_id,
            input.url,
            input.username,
            input.password,
            context.settings,
        )
        await sync_runs.start_sync(
            instance_id, "connect", settings=context.settings, bus=context.bus
        )
        return ConnectMspAdministratorPayload(instance=await own_instance(context))

    @mutation("Check for new MSP customers now: start a sync, or return the one in progress.")
    async def start_sync(
        self, info: Info[Context, None], input: StartSyncInput | None = None
    ) -> StartSyncPayload:
        context = info.context
        run = await sync_runs.start_sync(
            _instance_id(context),
            "manual",
            settings=context.settings,
            bus=context.bus,
            scope=context.require_scope(),
        )
        return StartSyncPayload(run=SyncRun.of(run))

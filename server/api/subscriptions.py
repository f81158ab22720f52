"""Live updates over graphql-transport-ws: each event carries ids; every subscriber reloads
them through its own scope with fresh loaders, so nobody receives what it may not see."""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator
from typing import Any

import strawberry
from strawberry.types import Info

from server import events
from server.api.authentication import Authenticated, refresh
from server.api.companies import Company
from server.api.computers import Computer
from server.api.context import Context
from server.api.enums import SyncState
from server.api.errors import TooManySubscriptions
from server.api.licenses import License
from server.api.node import decode_id
from server.api.sync import SyncRun
from server.domain import companies, computers, licenses, sync_runs
from server.domain.access import Scope
from server.observability import SUBSCRIPTIONS_OPEN

FINISHED = {SyncState.SUCCEEDED, SyncState.FAILED}
RIGHTS_RECHECK_SECONDS = 1.0


async def _events(
    info: Info[Context, None], topic: str
) -> AsyncGenerator[tuple[dict[str, Any], Scope], None]:
    """Events of the viewer's instance, each with the viewer's scope as it is now (rights
    change while a socket stays open: re-read at most once a second, so a burst of events
    costs one session read); ends when the session does."""
    context = info.context
    instance_id = context.require_scope().instance_id
    socket = context.socket
    assert socket is not None, "subscriptions run over graphql-transport-ws only"
    limit = context.settings.max_subscriptions_per_socket
    if socket.open_subscriptions >= limit:  # each one holds a task and a bus subscription
        raise TooManySubscriptions(f"at most {limit} subscriptions on one connection")
    socket.open_subscriptions += 1
    refreshed = time.monotonic()
    SUBSCRIPTIONS_OPEN.inc()
    try:
        async with context.bus.subscribe(topic) as stream:
            async for payload in stream:
                if payload.get("instance_id") != instance_id:
                    continue
                if time.monotonic() - refreshed > RIGHTS_RECHECK_SECONDS:
                    await refresh(context)
                    refreshed = time.monotonic()
                if context.session is None or context.scope is None:
                    return
                yield payload, context.scope
    finally:
        SUBSCRIPTIONS_OPEN.dec()
        socket.open_subscriptions -= 1


@strawberry.type
class Subscription:
    @strawberry.subscription(
        permission_classes=[Authenticated],
        description="Every change of a run of the viewer's instance; ends with the run when "
        "runId is given.",
    )
    async def sync_status(
        self, info: Info[Context, None], run_id: strawberry.ID | None = None
    ) -> AsyncGenerator[SyncRun, None]:
        scope = info.context.require_scope()
        wanted = decode_id(run_id, "SyncRun", "runId") if run_id is not None else None
        if wanted is not None:
            current = (await sync_runs.by_ids(scope, [wanted])).get(wanted)
            if current is None:
                return
            yield SyncRun.of(current)
            if current.state in FINISHED:
                return
        async for payload, scope in _events(info, events.SYNC_RUN):
            if wanted is not None and payload["run_id"] != wanted:
                continue
            run = (await sync_runs.by_ids(scope, [payload["run_id"]])).get(payload["run_id"])
            if run is None:
                continue
            yield SyncRun.of(run)
            if wanted is not None and run.state in FINISHED:
                return

    @strawberry.subscription(
        permission_classes=[Authenticated],
        description="Every status change of a customer the viewer may see.",
    )
    async def customer_status_changed(
        self, info: Info[Context, None]
    ) -> AsyncGenerator[Company, None]:
        async for payload, scope in _events(info, events.CUSTOMER_STATUS):
            found = await companies.by_ids(scope, payload["company_ids"])
            for company_id in payload["company_ids"]:
                if company_id in found:
                    yield Company.of(found[company_id])

    @strawberry.subscription(
        permission_classes=[Authenticated],
        description="A computer the viewer may see became connected, delayed or not connected.",
    )
    async def computer_connection_changed(
        self, info: Info[Context, None]
    ) -> AsyncGenerator[Computer, None]:
        async for payload, scope in _events(info, events.COMPUTER_CONNECTION):
            found = await computers.by_ids(scope, payload["computer_ids"])
            for computer_id in payload["computer_ids"]:
                if computer_id in found:
                    yield Computer.of(found[computer_id])

    @strawberry.subscription(
        permission_classes=[Authenticated],
        description="A license the viewer may see (LICENSES READ) changed in a sync.",
    )
    async def license_changed(self, info: Info[Context, None]) -> AsyncGenerator[License, None]:
        async for payload, scope in _events(info, events.LICENSE_CHANGED):
            found = await licenses.by_ids(scope, payload["license_ids"])
            for license_id in payload["license_ids"]:
                if license_id in found:
                    yield License.of(found[license_id])

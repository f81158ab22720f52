"""Live updates over graphql-transport-ws, served by the worker's hub (`server/hub.py`).

Each event is fetched once per worker, whatever the number of subscribers: the rows with their
paths, read for the whole instance (`access.whole_instance`). Each subscriber then receives a
row only when its own scope `allows` the row's path: the one access mechanism, applied in
memory. The rows are made API objects once per batch, marked `share`d, so that the
subscribers that receive a row with a selection of the same shape get one rendering of it
(`server/api/execution.py`). Rights change while a socket stays open: the hub re-reads the
scopes of all its subscribers once a second, together in one statement, and before a fetch
those read over a second ago; a subscriber whose session ended stops at its next event. A
subscriber that falls `events.QUEUE_LIMIT` batches of events behind is ended with
`SUBSCRIBER_TOO_SLOW` rather than silently losing events.
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any

import strawberry
from strawberry.types import Info

from server import events
from server.api.authentication import Authenticated
from server.api.companies import Company
from server.api.computers import Computer
from server.api.context import Context
from server.api.enums import SyncState
from server.api.errors import SubscriberTooSlow, TooManySubscriptions
from server.api.execution import share
from server.api.licenses import License
from server.api.node import decode_id
from server.api.sync import SyncRun
from server.domain import companies, computers, licenses, sync_runs
from server.domain.access import Scope, scope_of, whole_instance
from server.domain.accounts import resolve_sessions
from server.events import EventBus, Mailbox
from server.hub import Hub
from server.models.enums import Area
from server.observability import SUBSCRIPTIONS_OPEN

FINISHED = {SyncState.SUCCEEDED, SyncState.FAILED}
RIGHTS_RECHECK_SECONDS = 1.0


@dataclass(eq=False)
class Viewer:
    """A subscriber's context, and when its rights were last read."""

    context: Context
    refreshed: float

    @property
    def scope(self) -> Scope | None:
        """The viewer's scope, or None once its session has ended."""
        return self.context.scope if self.context.session is not None else None


def make_hub(bus: EventBus, session_ttl: int) -> Hub:
    """The hub of one worker, with every subscription topic and how to fetch its events."""

    async def refresh(viewers: Sequence[Viewer], age: float) -> None:
        """Re-read the rights of the viewers last read over `age` seconds ago, in one
        statement."""
        now = time.monotonic()
        due = [v for v in viewers if now - v.refreshed > age]
        if not due:
            return
        sessions = await resolve_sessions([v.context.token or "" for v in due], session_ttl)
        for viewer in due:
            token = viewer.context.token or ""
            session = sessions.get(token)
            scope = None
            if session is not None:
                scope = await scope_of(  # no statement: the grants came with the session
                    session.instance_id,
                    session.user_id,
                    session.owner,
                    session.home_group_path,
                    session.grants,
                )
            viewer.context.sign_in(session, scope, token if session else None)
            viewer.refreshed = now

    hub = Hub(bus, refresh, refresh_every=RIGHTS_RECHECK_SECONDS)
    hub.register(events.SYNC_RUN, _load_runs)
    hub.register(events.CUSTOMER_STATUS, _load_companies)
    hub.register(events.COMPUTER_CONNECTION, _load_computers)
    hub.register(events.LICENSE_CHANGED, _load_licenses)
    return hub


def _ids(payloads: Sequence[dict[str, Any]], key: str) -> set[int]:
    return {i for p in payloads for i in (p.get(key) or ()) if isinstance(i, int)}


async def _load_runs(instance_id: int, payloads: Sequence[dict[str, Any]]) -> Mapping[Any, Any]:
    ids = {p["run_id"] for p in payloads if isinstance(p.get("run_id"), int)}
    return await sync_runs.by_ids(whole_instance(instance_id), ids)


async def _load_companies(
    instance_id: int, payloads: Sequence[dict[str, Any]]
) -> Mapping[Any, Any]:
    found = await companies.by_ids(whole_instance(instance_id), _ids(payloads, "company_ids"))
    return {i: share(Company.of(company)) for i, company in found.items()}


async def _load_computers(
    instance_id: int, payloads: Sequence[dict[str, Any]]
) -> Mapping[Any, Any]:
    ids = _ids(payloads, "computer_ids")
    found = await computers.by_ids_with_paths(whole_instance(instance_id), ids)
    return {i: (share(Computer.of(computer)), path) for i, (computer, path) in found.items()}


async def _load_licenses(instance_id: int, payloads: Sequence[dict[str, Any]]) -> Mapping[Any, Any]:
    ids = _ids(payloads, "license_ids")
    found = await licenses.by_ids_with_paths(whole_instance(instance_id), ids)
    return {i: (share(License.of(license)), path) for i, (license, path) in found.items()}


def _subscription(
    info: Info[Context, None],
    topic: str,
    pick: Callable[[Scope, dict[str, Any], Mapping[Any, Any]], list[Any]],
) -> AbstractAsyncContextManager[Mailbox]:
    """The viewer's subscription to `topic` at its hub: `pick` chooses, in memory, what of
    each event the viewer's scope lets it receive."""
    context = info.context
    instance_id = context.require_scope().instance_id
    assert context.hub is not None, "the GraphQL view gives every context its worker's hub"
    viewer = Viewer(context, time.monotonic())

    def select(payload: dict[str, Any], found: Mapping[Any, Any]) -> list[Any] | None:
        scope = viewer.scope
        return None if scope is None else pick(scope, payload, found)

    return context.hub.subscribe(topic, instance_id, select, viewer)


async def _receive(
    info: Info[Context, None],
    topic: str,
    pick: Callable[[Scope, dict[str, Any], Mapping[Any, Any]], list[Any]],
) -> AsyncGenerator[Any, None]:
    """Every row `pick` lets through, until the session ends; SUBSCRIBER_TOO_SLOW when this
    subscriber falls too far behind."""
    context = info.context
    socket = context.socket
    assert socket is not None, "subscriptions run over graphql-transport-ws only"
    limit = context.settings.max_subscriptions_per_socket
    if socket.open_subscriptions >= limit:  # each one holds a mailbox at the hub
        raise TooManySubscriptions(f"at most {limit} subscriptions on one connection")
    socket.open_subscriptions += 1
    try:
        async with _subscription(info, topic, pick) as mailbox:
            SUBSCRIPTIONS_OPEN.inc()  # counted once the hub holds it: from now on it hears events
            try:
                async for rows in mailbox:
                    for row in rows:
                        yield row
            except events.SubscriberTooSlow:
                raise SubscriberTooSlow(
                    f"this subscription fell more than {mailbox.limit} events behind and "
                    "was ended; subscribe again (and read what changed meanwhile)"
                ) from None
            finally:
                SUBSCRIPTIONS_OPEN.dec()
    finally:
        socket.open_subscriptions -= 1


def _pick_runs(scope: Scope, payload: dict[str, Any], found: Mapping[Any, Any]) -> list[Any]:
    run = found.get(payload.get("run_id"))
    return [run] if run is not None and scope.paths(Area.SYNC) else []


def _pick_companies(scope: Scope, payload: dict[str, Any], found: Mapping[Any, Any]) -> list[Any]:
    rows = (found.get(i) for i in payload.get("company_ids") or ())
    return [c for c in rows if c is not None and scope.allows(c.model.path)]


def _pick_computers(scope: Scope, payload: dict[str, Any], found: Mapping[Any, Any]) -> list[Any]:
    rows = (found.get(i) for i in payload.get("computer_ids") or ())
    return [c for c, path in filter(None, rows) if scope.allows(path, Area.COMPUTERS)]


def _pick_licenses(scope: Scope, payload: dict[str, Any], found: Mapping[Any, Any]) -> list[Any]:
    rows = (found.get(i) for i in payload.get("license_ids") or ())
    return [x for x, path in filter(None, rows) if scope.allows(path, Area.LICENSES)]


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

        def pick(scope: Scope, payload: dict[str, Any], found: Mapping[Any, Any]) -> list[Any]:
            if wanted is not None and payload.get("run_id") != wanted:
                return []
            return _pick_runs(scope, payload, found)

        async for run in _receive(info, events.SYNC_RUN, pick):
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
        async for company in _receive(info, events.CUSTOMER_STATUS, _pick_companies):
            yield company

    @strawberry.subscription(
        permission_classes=[Authenticated],
        description="A computer the viewer may see became connected, delayed or not connected.",
    )
    async def computer_connection_changed(
        self, info: Info[Context, None]
    ) -> AsyncGenerator[Computer, None]:
        async for computer in _receive(info, events.COMPUTER_CONNECTION, _pick_computers):
            yield computer

    @strawberry.subscription(
        permission_classes=[Authenticated],
        description="A license the viewer may see (LICENSES READ) changed in a sync.",
    )
    async def license_changed(self, info: Info[Context, None]) -> AsyncGenerator[License, None]:
        async for license in _receive(info, events.LICENSE_CHANGED, _pick_licenses):
            yield license

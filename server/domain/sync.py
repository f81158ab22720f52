"""Running one sync: fetch the whole upstream tree (phase `fetch`) and the licenses of its
companies (phase `licenses`, during which the apply's plan is drafted: `reconcile.draft`), then
apply the difference in one transaction (phase `apply`, see `reconcile`): a run that fails or is
interrupted changes nothing. Every change of a run is published as a `SYNC_RUN` event;
customers whose status a run changed as one `CUSTOMER_STATUS` event per batch of ids, and
licenses it created or changed as `LICENSE_CHANGED` events. Starting runs, one at a time per
instance, is `sync_runs`' part.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from server import events
from server.domain import reconcile
from server.domain.accounts import publish_sessions_ended
from server.domain.errors import DomainError
from server.domain.reconcile_input import Wanted, check_fits, wanted_companies
from server.domain.upstream_connection import (
    ClientFactory,
    check_importable,
    connected,
    explain,
    open_client,
)
from server.events import EventBus
from server.models import SyncRun, db, locks
from server.models.enums import SyncState
from server.observability import SYNC_RUNS
from server.offload import begun, computed, no_full_collection
from server.settings import Settings
from server.upstream.client import UpstreamError
from server.upstream.licenses import fetch_licenses

log = logging.getLogger(__name__)

FETCH, LICENSES, APPLY, DONE = "fetch", "licenses", "apply", "done"
# rows changed by a sync before the planner statistics are refreshed: at least this many, and
# a tenth of the tree (as PostgreSQL's autovacuum would), so that a re-sync changing 1% of a
# large tree does not pay for an ANALYZE (a second at 100,000 companies and 1,000,000 computers)
STATISTICS_AFTER = 500
STATISTICS_AFTER_SHARE = 0.1
# what a sync writes, whose statistics it refreshes (computers follow their groups by reference:
# no computer row changes, so sampling up to a million of them would be time for nothing)
WRITTEN_TABLES = ("company", "static_group", "license", "usage_line")
EVENT_BATCH = 500

ProgressCallback = Callable[[SyncRun], Awaitable[None] | None]


async def call(callback: ProgressCallback | None, run: SyncRun) -> None:
    if callback is None:
        return
    result = callback(run)
    if inspect.isawaitable(result):
        await result


async def publish(run: SyncRun, bus: EventBus, on_progress: ProgressCallback | None) -> None:
    await bus.publish(events.SYNC_RUN, {"instance_id": run.instance_id, "run_id": run.id})
    await call(on_progress, run)


async def update(
    run: SyncRun, bus: EventBus, on_progress: ProgressCallback | None, **values: Any
) -> None:
    """Save these values of the run, and tell its watchers."""
    for name, value in values.items():
        setattr(run, name, value)
    await run.save(update_fields=list(values))
    await publish(run, bus, on_progress)


async def finish(
    run: SyncRun,
    bus: EventBus,
    on_progress: ProgressCallback | None,
    state: SyncState,
    **values: Any,
) -> None:
    """End the run in `state` (SUCCEEDED or FAILED), counted and logged."""
    await update(run, bus, on_progress, state=state, finished_at=dt.datetime.now(dt.UTC), **values)
    SYNC_RUNS.labels(state.value).inc()
    log.info(
        "sync run %s of instance %s (%s) %s: %s companies, +%s ~%s >%s -%s <%s; "
        "%s licenses, +%s ~%s -%s%s",
        run.id,
        run.instance_id,
        run.trigger,
        state.value,
        run.companies_seen,
        run.created,
        run.updated,
        run.moved,
        run.unlinked,
        run.relinked,
        run.licenses_seen,
        run.licenses_created,
        run.licenses_updated,
        run.licenses_removed,
        f"; {run.error}" if run.error else "",
    )


async def execute(
    run: SyncRun,
    lock: locks.Lock,
    settings: Settings,
    bus: EventBus,
    on_progress: ProgressCallback | None,
    *,
    make_client: ClientFactory,
    after_first_write: reconcile.Hook | None = None,
) -> None:
    """Fetch, then apply; the run ends SUCCEEDED or FAILED with an error naming the problem.
    Releases `lock` (the instance's run lock, held by the caller) at the end."""
    try:
        instance = await connected(run.instance_id)
        await update(
            run,
            bus,
            on_progress,
            state=SyncState.RUNNING,
            phase=FETCH,
            started_at=dt.datetime.now(dt.UTC),
        )
        client = open_client(instance, settings, make_client)

        async def fetched(seen: int) -> None:
            await update(run, bus, on_progress, companies_seen=seen)

        with no_full_collection():  # a snapshot of the whole tree is held from here
            async with client:
                user = await client.current_user()
                check_importable(user)
                snapshot = await client.fetch_tree(user.company.public_id, on_progress=fetched)
                # every value checked: refused before asking for licenses
                await computed(check_fits, snapshot)
                await update(run, bus, on_progress, phase=LICENSES)

                async def read(seen: int) -> None:
                    await update(run, bus, on_progress, licenses_seen=seen)

                async def prepared() -> tuple[dict[str, Wanted], reconcile.Draft | None]:
                    wanted = await computed(wanted_companies, snapshot, checked=True)
                    return wanted, await reconcile.draft(instance.id, wanted)

                # the companies are built and their plan drafted while the licenses are read
                with begun(prepared()) as preparing:
                    licenses = await fetch_licenses(
                        client,
                        [company.public_id for company in snapshot.companies],
                        max_licenses=settings.upstream_max_licenses,
                        on_progress=read,
                    )
                    wanted, draft = await preparing
            await update(run, bus, on_progress, phase=APPLY, companies_seen=len(snapshot.companies))
            changes = await reconcile.apply_snapshot(
                instance.id,
                wanted,
                after_first_write=after_first_write,
                licenses=licenses,
                draft=draft,
            )
        if instance.upstream_company_id != user.company.public_id:
            instance.upstream_company_id = user.company.public_id
            await instance.save(update_fields=["upstream_company_id"])
        rewritten = changes.created + changes.moved + changes.unlinked
        if rewritten > max(STATISTICS_AFTER, STATISTICS_AFTER_SHARE * len(wanted)):
            await db.refresh_statistics(WRITTEN_TABLES)
        await finish(
            run,
            bus,
            on_progress,
            SyncState.SUCCEEDED,
            phase=DONE,
            created=changes.created,
            updated=changes.updated,
            moved=changes.moved,
            unlinked=changes.unlinked,
            relinked=changes.relinked,
            licenses_seen=changes.licenses.seen,
            licenses_created=changes.licenses.created,
            licenses_updated=changes.licenses.updated,
            licenses_removed=changes.licenses.removed,
        )
        ids = sorted(set(changes.status_changed))
        for start in range(0, len(ids), EVENT_BATCH):
            await bus.publish(
                events.CUSTOMER_STATUS,
                {"instance_id": instance.id, "company_ids": ids[start : start + EVENT_BATCH]},
            )
        changed = changes.licenses.changed_ids
        for start in range(0, len(changed), EVENT_BATCH):
            await bus.publish(
                events.LICENSE_CHANGED,
                {"instance_id": instance.id, "license_ids": changed[start : start + EVENT_BATCH]},
            )
        await publish_sessions_ended(bus, instance.id, user_ids=changes.disabled_users)
    except asyncio.CancelledError:
        with contextlib.suppress(Exception):
            await asyncio.shield(
                finish(
                    run,
                    bus,
                    on_progress,
                    SyncState.FAILED,
                    error="interrupted: the sync was stopped",
                )
            )
        raise
    except (UpstreamError, DomainError) as exc:
        message = exc.message if isinstance(exc, DomainError) else explain(exc)
        log.warning("sync run %s of instance %s failed: %s", run.id, run.instance_id, message)
        await finish(run, bus, on_progress, SyncState.FAILED, error=message)
    except Exception as exc:
        log.exception("sync run %s failed unexpectedly", run.id)
        await finish(
            run, bus, on_progress, SyncState.FAILED, error=f"internal error: {type(exc).__name__}"
        )
    finally:
        await lock.release()

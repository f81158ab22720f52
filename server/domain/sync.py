"""Syncing an instance from its MSP Administrator: connecting, and running syncs.

A run fetches the whole upstream tree first (phase `fetch`), then applies the difference in one
transaction (phase `apply`, see `reconcile`): a run that fails or is interrupted changes nothing.
One run at a time per instance, across processes too: the runner holds `locks.SYNC_RUN` for the
instance, and a QUEUED or RUNNING row whose lock nobody holds was left by a process that died,
so the next start marks it FAILED. Every change of a run is published as a `SYNC_RUN` event;
customers whose status a run changed as one `CUSTOMER_STATUS` event per batch of ids.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import inspect
import logging
import os
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

from server import events
from server.domain import reconcile
from server.domain.access import Scope
from server.domain.accounts import publish_sessions_ended
from server.domain.errors import (
    DomainError,
    ImportNotAllowed,
    InvalidCredentials,
    InvalidInput,
    NotFound,
    UpstreamFailed,
    UpstreamNotConnected,
)
from server.domain.instances import ALL_GROUP
from server.domain.secrets import decrypt, encrypt
from server.events import EventBus, InProcessEventBus
from server.models import Instance, StaticGroup, SyncRun, db, locks
from server.models.enums import Area, GroupKind, Level, SyncState
from server.observability import SYNC_RUNS
from server.settings import Settings
from server.upstream import hosts
from server.upstream.client import (
    MspAdministratorClient,
    UpstreamAuthError,
    UpstreamError,
    UpstreamLimitExceeded,
    UpstreamUnavailable,
    UpstreamUnreachable,
    UpstreamUser,
)

log = logging.getLogger(__name__)

FETCH, APPLY, DONE = "fetch", "apply", "done"
ACTIVE = (SyncState.QUEUED, SyncState.RUNNING)
STATISTICS_AFTER = 500  # rows changed by a sync before the planner statistics are refreshed
FINISHED = (SyncState.SUCCEEDED, SyncState.FAILED)
TYPE_NAMES = {
    1001: "ESET HQ",
    1002: "Distributor",
    1003: "Division",
    1004: "MSP Manager",
    1005: "MSP",
    1006: "Managed MSP",
    1007: "MSP Customer",
}
EVENT_BATCH = 500
PAUSE_ENV = "MSP_CONSOLE_SYNC_PAUSE_AFTER_FIRST_WRITE"
"""Seconds to sleep inside the apply transaction after its first write (crash tests only)."""

ProgressCallback = Callable[[SyncRun], Awaitable[None] | None]
client_options: dict[str, Any] = {}
"""Extra `MspAdministratorClient` arguments for every run (tests shorten timeouts here)."""

# run id -> the task running it in this process, and the lock it releases when it ends
_tasks: dict[int, tuple[asyncio.Task[None], locks.Lock]] = {}


# -- connecting -----------------------------------------------------------------------------


async def require_sync_write(scope: Scope | None, instance_id: int) -> None:
    """SYNC WRITE on the instance's `All` group (the sync changes the whole tree)."""
    if scope is None:  # the system itself: the command line, the demo
        return
    if scope.instance_id != instance_id:
        raise NotFound("no such instance")
    group = await StaticGroup.get_or_none(instance_id=instance_id, kind=GroupKind.ALL)
    scope.require(group.path if group else f"/{ALL_GROUP}/", Area.SYNC, Level.WRITE)


def allowed_url(url: str, settings: Settings) -> tuple[str, str]:
    """(the URL to call, its host) when its host is one of `MSP_CONSOLE_UPSTREAM_ALLOWED_HOSTS`;
    checked before any request, at connecting and at every run (the setting may have changed)."""
    try:
        url, host = hosts.base_url(url)
    except ValueError as exc:
        raise InvalidInput(str(exc), "url") from None
    if len(url) > _longest("upstream_url"):
        raise InvalidInput(
            f"the MSP Administrator URL has at most {_longest('upstream_url')} characters", "url"
        )
    if not hosts.is_allowed(host, settings.upstream_allowed_hosts):
        raise InvalidInput(
            f"the MSP Administrator host {host} is not allowed; an operator can allow it in "
            "MSP_CONSOLE_UPSTREAM_ALLOWED_HOSTS",
            "url",
        )
    return url, host


def _longest(field: str) -> int:
    """How many characters an instance's column holds."""
    return int(Instance._meta.fields_map[field].constraints["max_length"])


_LIMIT_SETTINGS = {
    "max_body_bytes": "MSP_CONSOLE_UPSTREAM_MAX_BODY_BYTES",
    "max_companies": "MSP_CONSOLE_UPSTREAM_MAX_COMPANIES",
    "max_depth": "MSP_CONSOLE_UPSTREAM_MAX_DEPTH",
    "max_seconds": "MSP_CONSOLE_UPSTREAM_MAX_FETCH_SECONDS",
}


def _limits(settings: Settings) -> dict[str, Any]:
    """The client's limits, from the settings named in `_LIMIT_SETTINGS`."""
    return {
        "max_body_bytes": settings.upstream_max_body_bytes,
        "max_companies": settings.upstream_max_companies,
        "max_depth": settings.upstream_max_depth,
        "max_seconds": settings.upstream_max_fetch_seconds,
    }


def _explain(error: UpstreamError) -> str:
    """A client error as a run reports it: a limit names the setting that sets it."""
    if isinstance(error, UpstreamLimitExceeded):
        return f"{error} ({_LIMIT_SETTINGS[error.limit]})"
    return str(error)


def _check_importable(user: UpstreamUser) -> None:
    if user.company.type not in reconcile.IMPORTABLE:
        kind = TYPE_NAMES.get(user.company.type, f"type {user.company.type}")
        raise ImportNotAllowed(
            f"{user.email} belongs to {user.company.name!r} ({kind}); only MSP, Managed MSP "
            "and MSP Manager accounts can be imported"
        )


async def connect_msp_administrator(
    scope: Scope | None,
    instance_id: int,
    url: str,
    username: str,
    password: str,
    settings: Settings,
) -> Instance:
    """Check the credentials against the upstream and store them (the password encrypted with
    the secret key). `scope` None acts as the system (no permission check).

    Failures say what a user can act on and no more: the URL chooses the host, so nothing may
    tell a closed port from a silent one, or quote what some other server answered."""
    await require_sync_write(scope, instance_id)
    url, host = allowed_url(url, settings)
    if not username or not username.strip():
        raise InvalidInput("the username must not be empty", "username")
    if len(username.strip()) > _longest("upstream_username"):
        raise InvalidInput(
            f"the username has at most {_longest('upstream_username')} characters", "username"
        )
    if not password:
        raise InvalidInput("the password must not be empty", "password")
    instance = await Instance.get_or_none(id=instance_id)
    if instance is None:
        raise NotFound("no such instance")
    opts = {"timeout": 15.0, "max_retries": 2, "max_backoff_total": 20.0, **_limits(settings)}
    try:
        async with MspAdministratorClient(
            url, username.strip(), password, **{**opts, **client_options}
        ) as client:
            user = await client.current_user()
    except UpstreamAuthError:
        raise InvalidCredentials(
            "the MSP Administrator refused this username and password", "password"
        ) from None
    except UpstreamUnreachable:
        raise UpstreamFailed(f"could not reach the MSP Administrator at {host}", "url") from None
    except UpstreamLimitExceeded as exc:
        raise UpstreamFailed(_explain(exc), "url") from None
    except UpstreamUnavailable:
        raise UpstreamFailed(
            f"the MSP Administrator at {host} is unavailable; try again later", "url"
        ) from None
    except UpstreamError as exc:
        log.warning("instance %s: %s is not an MSP Administrator: %s", instance_id, host, exc)
        raise UpstreamFailed(
            f"the server at {host} does not answer like the MSP Administrator API; check the URL",
            "url",
        ) from None
    except ValueError as exc:  # aiohttp refuses some URLs this way
        raise InvalidInput(f"the MSP Administrator URL is not usable: {exc}", "url") from None
    _check_importable(user)
    instance.upstream_url = url
    instance.upstream_username = username.strip()
    instance.upstream_password_encrypted = encrypt(settings.secret_key, password)
    instance.upstream_company_id = user.company.public_id
    instance.connected_at = dt.datetime.now(dt.UTC)
    await instance.save(
        update_fields=[
            "upstream_url",
            "upstream_username",
            "upstream_password_encrypted",
            "upstream_company_id",
            "connected_at",
        ]
    )
    log.info(
        "instance %s connected to the MSP Administrator at %s as %s", instance_id, url, username
    )
    return instance


async def _connected(instance_id: int) -> Instance:
    instance = await Instance.get_or_none(id=instance_id)
    if instance is None:
        raise NotFound("no such instance")
    if not (
        instance.upstream_url
        and instance.upstream_username
        and instance.upstream_password_encrypted
    ):
        raise UpstreamNotConnected("no MSP Administrator is connected to this instance")
    return instance


# -- starting runs --------------------------------------------------------------------------


async def running_run(instance_id: int) -> SyncRun | None:
    return await SyncRun.filter(instance_id=instance_id, state__in=ACTIVE).order_by("-id").first()


async def _begin(instance_id: int, trigger: str, bus: EventBus) -> SyncRun:
    """Create a run; call with the instance's run lock held (earlier active runs are stale)."""
    for stale in await SyncRun.filter(instance_id=instance_id, state__in=ACTIVE):
        await _finish(stale, bus, None, SyncState.FAILED, error=_INTERRUPTED)
    run = await SyncRun.create(instance_id=instance_id, trigger=trigger, state=SyncState.QUEUED)
    await _publish(run, bus, None)
    return run


_INTERRUPTED = "interrupted: the process running this sync stopped before it finished"


async def start_sync(
    instance_id: int,
    trigger: str,
    *,
    settings: Settings,
    bus: EventBus,
    scope: Scope | None = None,
) -> SyncRun:
    """Start a run in the background, or return the one in progress."""
    await require_sync_write(scope, instance_id)
    await _connected(instance_id)
    deadline = time.monotonic() + 5
    while True:
        lock = await locks.try_lock(locks.SYNC_RUN, instance_id)
        if lock is not None:
            try:
                run = await _begin(instance_id, trigger, bus)
            except BaseException:
                await lock.release()
                raise
            task = asyncio.create_task(
                _execute(run, lock, settings, bus, None), name=f"sync-run-{run.id}"
            )
            _tasks[run.id] = (task, lock)

            def forget(_: asyncio.Task[None], key: int = run.id) -> None:
                _tasks.pop(key, None)

            task.add_done_callback(forget)
            return run
        running = await running_run(instance_id)
        if running is not None:
            return running
        if time.monotonic() > deadline:  # held, yet no run shows: a runner being born or gone
            raise UpstreamFailed("a sync of this instance is starting or ending; try again")
        await asyncio.sleep(0.05)


async def sync_now(
    instance_id: int,
    settings: Settings,
    trigger: str = "manual",
    on_progress: ProgressCallback | None = None,
    *,
    bus: EventBus | None = None,
) -> SyncRun:
    """Run a sync in this task and return it finished; if one is in progress (here or in
    another process), follow that one to its end instead."""
    bus = bus or InProcessEventBus()
    await _connected(instance_id)
    watched: SyncRun | None = None
    reported: tuple[Any, ...] | None = None
    while True:
        if watched is not None:
            watched = await SyncRun.get(id=watched.id)
            if _progress_of(watched) != reported:
                reported = _progress_of(watched)
                await _call(on_progress, watched)
            if watched.state in FINISHED:
                return watched
        lock = await locks.try_lock(locks.SYNC_RUN, instance_id)
        if lock is not None:
            if watched is not None and (await SyncRun.get(id=watched.id)).state in FINISHED:
                await lock.release()
                return await SyncRun.get(id=watched.id)
            try:
                run = await _begin(instance_id, trigger, bus)
            except BaseException:
                await lock.release()
                raise
            await _execute(run, lock, settings, bus, on_progress)
            return await SyncRun.get(id=run.id)
        if watched is None:
            watched = await running_run(instance_id)
        await asyncio.sleep(0.2)


def _progress_of(run: SyncRun) -> tuple[Any, ...]:
    return (run.state, run.phase, run.companies_seen)


async def cancel_running(bus: EventBus | None = None) -> None:
    """Interrupt the runs of this process (at shutdown); each is marked FAILED."""
    running = list(_tasks.items())
    for task, _ in (entry for _, entry in running):
        task.cancel()
    for run_id, (task, lock) in running:
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
        if not lock.released:  # cancelled before it started: nothing ran, nothing released
            with contextlib.suppress(Exception):
                run = await SyncRun.get(id=run_id)
                if run.state in ACTIVE:
                    await _finish(
                        run,
                        bus or InProcessEventBus(),
                        None,
                        SyncState.FAILED,
                        error="interrupted: the sync was stopped",
                    )
            await lock.release()


async def recover_interrupted(bus: EventBus) -> int:
    """Mark FAILED the active runs nobody runs any more (their process died); returns how many."""
    failed = 0
    for instance_id in {
        r.instance_id for r in await SyncRun.filter(state__in=ACTIVE).only("id", "instance_id")
    }:
        lock = await locks.try_lock(locks.SYNC_RUN, instance_id)
        if lock is None:
            continue
        try:
            for stale in await SyncRun.filter(instance_id=instance_id, state__in=ACTIVE):
                await _finish(stale, bus, None, SyncState.FAILED, error=_INTERRUPTED)
                failed += 1
        finally:
            await lock.release()
    return failed


# -- a run ----------------------------------------------------------------------------------


async def _call(callback: ProgressCallback | None, run: SyncRun) -> None:
    if callback is None:
        return
    result = callback(run)
    if inspect.isawaitable(result):
        await result


async def _publish(run: SyncRun, bus: EventBus, on_progress: ProgressCallback | None) -> None:
    await bus.publish(events.SYNC_RUN, {"instance_id": run.instance_id, "run_id": run.id})
    await _call(on_progress, run)


async def _update(
    run: SyncRun, bus: EventBus, on_progress: ProgressCallback | None, **values: Any
) -> None:
    for name, value in values.items():
        setattr(run, name, value)
    await run.save(update_fields=list(values))
    await _publish(run, bus, on_progress)


async def _finish(
    run: SyncRun,
    bus: EventBus,
    on_progress: ProgressCallback | None,
    state: SyncState,
    **values: Any,
) -> None:
    await _update(run, bus, on_progress, state=state, finished_at=dt.datetime.now(dt.UTC), **values)
    SYNC_RUNS.labels(state.value).inc()
    log.info(
        "sync run %s of instance %s (%s) %s: %s companies, +%s ~%s >%s -%s <%s%s",
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
        f"; {run.error}" if run.error else "",
    )


def _password(instance: Instance, settings: Settings) -> str:
    try:
        return decrypt(settings.secret_key, instance.upstream_password_encrypted or "")
    except ValueError as exc:  # the secret key changed since the credentials were stored
        raise UpstreamNotConnected(f"{exc}; connect the MSP Administrator again") from None


def _pause_hook() -> reconcile.Hook | None:
    seconds = os.environ.get(PAUSE_ENV)
    if not seconds:
        return None

    async def pause() -> None:
        print("msp-console sync: apply phase paused after its first write", file=sys.stderr)
        sys.stderr.flush()
        await asyncio.sleep(float(seconds))

    return pause


async def _execute(
    run: SyncRun,
    lock: locks.Lock,
    settings: Settings,
    bus: EventBus,
    on_progress: ProgressCallback | None,
) -> None:
    """Fetch, then apply; the run ends SUCCEEDED or FAILED with an error naming the problem."""
    try:
        instance = await _connected(run.instance_id)
        await _update(
            run,
            bus,
            on_progress,
            state=SyncState.RUNNING,
            phase=FETCH,
            started_at=dt.datetime.now(dt.UTC),
        )
        url, _ = allowed_url(instance.upstream_url or "", settings)
        password = _password(instance, settings)

        async def fetched(seen: int) -> None:
            await _update(run, bus, on_progress, companies_seen=seen)

        async with MspAdministratorClient(
            url,
            instance.upstream_username or "",
            password,
            **{**_limits(settings), **client_options},
        ) as client:
            user = await client.current_user()
            _check_importable(user)
            snapshot = await client.fetch_tree(user.company.public_id, on_progress=fetched)
        await _update(run, bus, on_progress, phase=APPLY, companies_seen=len(snapshot.companies))
        changes = await reconcile.apply_snapshot(
            instance.id, snapshot, after_first_write=_pause_hook()
        )
        if instance.upstream_company_id != user.company.public_id:
            instance.upstream_company_id = user.company.public_id
            await instance.save(update_fields=["upstream_company_id"])
        if changes.created + changes.moved + changes.unlinked > STATISTICS_AFTER:
            await db.refresh_statistics()
        await _finish(
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
        )
        ids = sorted(set(changes.status_changed))
        for start in range(0, len(ids), EVENT_BATCH):
            await bus.publish(
                events.CUSTOMER_STATUS,
                {"instance_id": instance.id, "company_ids": ids[start : start + EVENT_BATCH]},
            )
        await publish_sessions_ended(bus, instance.id, user_ids=changes.disabled_users)
    except asyncio.CancelledError:
        with contextlib.suppress(Exception):
            await asyncio.shield(
                _finish(
                    run,
                    bus,
                    on_progress,
                    SyncState.FAILED,
                    error="interrupted: the sync was stopped",
                )
            )
        raise
    except (UpstreamError, DomainError) as exc:
        message = exc.message if isinstance(exc, DomainError) else _explain(exc)
        log.warning("sync run %s of instance %s failed: %s", run.id, run.instance_id, message)
        await _finish(run, bus, on_progress, SyncState.FAILED, error=message)
    except Exception as exc:
        log.exception("sync run %s failed unexpectedly", run.id)
        await _finish(
            run, bus, on_progress, SyncState.FAILED, error=f"internal error: {type(exc).__name__}"
        )
    finally:
        await lock.release()

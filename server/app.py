"""The application factory: one ASGI app serving GraphQL, the agent API and health probes."""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import AsyncIterator

import uvicorn
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import BaseRoute, Route, WebSocketRoute
from tortoise.contrib.starlette import RegisterTortoise

from server.agents import AgentRuntime, agent_routes, create_agent_app
from server.api.downloads import installer_config
from server.api.http import GraphQLView
from server.api.reports import usage_csv
from server.api.schema import build_schema
from server.body_limit import BodyLimitMiddleware
from server.connection_limits import uvicorn_options
from server.domain.secrets import bound_password_hashing
from server.domain.sync_scheduler import SyncScheduler
from server.domain.usage_snapshots import UsageSnapshots
from server.events import EventBus, create_event_bus
from server.models import db
from server.models.checkpoints import WalCheckpointer
from server.observability import RequestIdMiddleware, metrics_endpoint, worker_stopped
from server.settings import Settings


async def healthz(request: Request) -> PlainTextResponse:
    return PlainTextResponse("ok")


async def readyz(request: Request) -> JSONResponse:
    try:
        await db.fetch_value("SELECT 1")
    except Exception as exc:
        return JSONResponse({"ready": False, "error": type(exc).__name__}, status_code=503)
    return JSONResponse({"ready": True})


async def serve_agent_port(settings: Settings, runtime: AgentRuntime) -> uvicorn.Server | None:
    """The agent API on a port of its own too (like ESET's 2222), sharing the runtime."""
    if not settings.agent_port:
        return None
    config = uvicorn.Config(
        create_agent_app(settings, runtime=runtime),
        host=settings.agent_host,
        port=settings.agent_port,
        lifespan="off",
        log_level="warning",
        **uvicorn_options(settings),
    )
    server = uvicorn.Server(config)
    asyncio.create_task(server.serve(), name="agent-listener")  # noqa: RUF006 - kept by uvicorn
    return server


def create_app(settings: Settings | None = None, bus: EventBus | None = None) -> Starlette:
    """Creates the console application."""
    settings = settings or Settings.from_env()
    bound_password_hashing(settings.password_hashing_threads)
    bus = bus or create_event_bus(settings.database_url)
    graphql = GraphQLView(build_schema(settings), settings, bus)
    agent_runtime = AgentRuntime(settings, bus)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with RegisterTortoise(app, config=db.tortoise_config(settings.database_url)):
            checkpoints = None
            if not settings.is_postgres:  # PostgreSQL's autovacuum keeps its own statistics
                await db.refresh_statistics()
                checkpoints = WalCheckpointer(db.sqlite_file())
                await checkpoints.start()
            await bus.start()
            scheduler = SyncScheduler(settings, bus)
            await scheduler.start()
            snapshots = UsageSnapshots(settings)
            await snapshots.start()
            await agent_runtime.start()
            agent_listener = await serve_agent_port(settings, agent_runtime)
            try:
                yield
            finally:
                if agent_listener is not None:
                    agent_listener.should_exit = True
                await agent_runtime.stop()  # writes every buffered check-in
                await scheduler.stop()
                await snapshots.stop()
                await bus.stop()
                if checkpoints is not None:
                    await checkpoints.stop()
                worker_stopped()

    routes: list[BaseRoute] = [
        Route("/graphql", graphql, methods=["GET", "POST"]),
        WebSocketRoute("/graphql", graphql),
        Route("/healthz", healthz),
        Route("/readyz", readyz),
        Route("/metrics", metrics_endpoint(settings.metrics_token, settings.metrics_public)),
        Route("/installers/config", installer_config, methods=["POST"]),
        Route("/reports/usage.csv", usage_csv, methods=["GET"]),
        *agent_routes(agent_runtime),
    ]
    middleware = [
        Middleware(RequestIdMiddleware),
        Middleware(BodyLimitMiddleware, limit=settings.max_request_bytes),
    ]
    if settings.cors_origins:
        middleware.append(
            Middleware(
                CORSMiddleware,
                allow_origins=list(settings.cors_origins),
                allow_methods=["GET", "POST"],
                allow_headers=["authorization", "content-type"],
            )
        )
    app = Starlette(routes=routes, middleware=middleware, lifespan=lifespan)
    app.state.settings = settings
    app.state.bus = bus
    app.state.hub = graphql.hub
    app.state.agent_runtime = agent_runtime
    return app


def app_from_env() -> Starlette:
    """The app uvicorn workers build (`factory=True`): settings from the environment."""
    app = create_app(Settings.from_env())
    # What start-up built (modules, the schema) lives as long as the worker. Frozen, it is
    # no longer walked by every full collection, which showed as a long tail of page latency.
    gc.freeze()
    return app

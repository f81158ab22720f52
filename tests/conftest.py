"""Shared fixtures: a fresh database (SQLite file, or a new PostgreSQL database when
MSP_TEST_DATABASE_URL is PostgreSQL), migrated once; the real app with its lifespan; an
in-process GraphQL client; a real uvicorn for websocket and network tests.

Every test makes its own accounts and instances: the product is multi-tenant, so tests
are isolated the way tenants are.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import tempfile
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
import pytest
import uvicorn
from tortoise import Tortoise
from tortoise.migrations.api import migrate

from server.app import create_app
from server.connection_limits import uvicorn_options
from server.models import db
from server.settings import Settings
from server.upstream.simulator import Simulator, UpstreamTree
from tests.graphql_client import GraphQLClient

TEST_SECRET = "test-secret-key-that-is-long-enough-0123456789"
LOCAL_UPSTREAM = ("127.0.0.1",)
"""The host the tests' simulators listen on, allowed as an MSP Administrator in tests only."""
METRICS_TOKEN = "test-metrics-token"


@pytest.fixture(scope="session")
def database_url() -> AsyncIterator[str]:
    base = os.environ.get("MSP_TEST_DATABASE_URL", "sqlite")
    if base == "sqlite":
        with tempfile.TemporaryDirectory() as folder:
            yield f"sqlite://{Path(folder) / 'test.db'}"
        return
    yield from _postgres_database(db.normalize_url(base))


DEFAULT_POSTGRES = "postgres://root@127.0.0.1:5432/test"


def postgres_server() -> str:
    """The suite's PostgreSQL when it runs on one, else the local default (for the tests that
    always need PostgreSQL)."""
    configured = os.environ.get("MSP_TEST_DATABASE_URL", "")
    if configured and configured != "sqlite":
        url = db.normalize_url(configured)
        if url.startswith("postgres://"):
            return url
    return DEFAULT_POSTGRES


def _postgres_database(base: str):
    """A new database on the server of `base`, dropped at the end of the session."""
    name = f"msp_test_{uuid.uuid4().hex[:12]}"
    parts = urlsplit(base)
    admin = urlunsplit(("postgresql", parts.netloc, parts.path, "", ""))
    loop = asyncio.new_event_loop()

    async def run(sql: str) -> None:
        conn = await asyncpg.connect(admin)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    loop.run_until_complete(run(f'CREATE DATABASE "{name}"'))
    try:
        yield urlunsplit(("postgres", parts.netloc, f"/{name}", "", ""))
    finally:
        loop.run_until_complete(run(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        loop.close()


# The one setting the suite takes from the environment: CI runs tests/api once more with
# MSP_CONSOLE_EXECUTION_SHORTCUTS=off, so that both ways of executing answer alike.
FROM_ENVIRONMENT = ("MSP_CONSOLE_EXECUTION_SHORTCUTS",)


@pytest.fixture(scope="session")
def settings(database_url: str) -> Settings:
    return Settings.from_env(
        {name: os.environ[name] for name in FROM_ENVIRONMENT if name in os.environ},
        database_url=database_url,
        secret_key=TEST_SECRET,
        public_agent_url="https://console.example.test/agent/v1",
        login_attempts_per_minute=1000,
        upstream_allowed_hosts=LOCAL_UPSTREAM,
        login_attempts_per_address_per_minute=1000,
        login_attempts_per_account_per_hour=1000,
        metrics_token=METRICS_TOKEN,
    )


@pytest.fixture(scope="session")
async def app(settings: Settings) -> AsyncIterator[object]:
    await migrate(config=db.tortoise_config(settings.database_url))
    await Tortoise.close_connections()
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def sim(request: pytest.FixtureRequest) -> AsyncIterator[Simulator]:
    """An MSP Administrator simulator on a real port, serving a generated tree of 60 companies
    (seed 5), or what the test's `@pytest.mark.upstream_tree(companies, seed)` asks for."""
    marker = request.node.get_closest_marker("upstream_tree")
    companies, seed = marker.args if marker else (60, 5)
    async with Simulator(UpstreamTree.generate(companies, seed=seed)) as simulator:
        yield simulator


@pytest.fixture(scope="session")
async def client(app: object) -> AsyncIterator[GraphQLClient]:
    transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="http://console.test") as http:
        yield GraphQLClient(http)


def _free_port() -> int:
    with contextlib.closing(socket.socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
async def server_url(app: object) -> AsyncIterator[str]:
    """The same app behind a real uvicorn (its lifespan already runs in-process)."""
    async with serving(app) as url:
        yield url


@contextlib.asynccontextmanager
async def serving(app: Any, settings: Settings | None = None) -> AsyncIterator[str]:
    """`app` behind a real uvicorn as `serve` runs it, with the connection limits of `settings`
    (by default the app's own), without its lifespan (the caller runs what it needs)."""
    port = _free_port()
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        lifespan="off",
        log_level="warning",
        **uvicorn_options(settings or app.state.settings),
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:  # noqa: ASYNC110 - uvicorn offers no event to wait on
        await asyncio.sleep(0.01)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    await task

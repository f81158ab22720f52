"""Fixtures for the agent API and its domain: a database, a company tree per test, a live server.

The database is a new SQLite file (or a new PostgreSQL database when `MSP_TEST_DATABASE_URL` is
PostgreSQL) in a Tortoise context of its own; every test builds its own instance, so tests never
see each other's rows.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import asyncpg
import pytest
import uvicorn
from starlette.applications import Starlette
from tortoise import Tortoise
from tortoise.context import TortoiseContext, _current_context
from tortoise.migrations.api import migrate

from server.agents import AgentRuntime, agent_routes
from server.domain.access import Scope
from server.domain.installers import create_installer
from server.domain.tree_paths import child_path, child_sort_key, sort_name
from server.events import InProcessEventBus
from server.models import Account, Company, Computer, Installer, Instance, StaticGroup, User
from server.models.db import fetch, normalize_url, tortoise_config
from server.models.enums import CompanyType, GroupKind, Service
from server.settings import Settings

SETTINGS = Settings(
    database_url="sqlite://:memory:",
    public_agent_url="http://agents.example:2222/agent/v1",
    checkin_interval=60,
    connection_grace=60,
    not_connected_after=86_400,
    checkin_flush_interval=0.2,
    agent_requests_per_minute=20,
)
_counter = itertools.count(1)
_run = uuid.uuid4().hex[:8]  # rows of earlier runs may remain in a shared test database


async def _create_database() -> tuple[str, Callable[[], Awaitable[None]]]:
    """A new database: a SQLite file, or one on the PostgreSQL server of
    `MSP_TEST_DATABASE_URL`; with the coroutine function that drops it."""
    base = os.environ.get("MSP_TEST_DATABASE_URL", "sqlite")
    if base == "sqlite":
        folder = tempfile.mkdtemp(prefix="msp-agents-")

        async def remove() -> None:
            shutil.rmtree(folder, ignore_errors=True)

        return f"sqlite://{folder}/test.db", remove
    parts = urlsplit(normalize_url(base))
    admin = urlunsplit(("postgresql", parts.netloc, parts.path, "", ""))
    name = f"msp_agents_test_{uuid.uuid4().hex[:12]}"

    async def run(sql: str) -> None:
        conn = await asyncpg.connect(admin)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    await run(f'CREATE DATABASE "{name}"')

    async def drop() -> None:
        await run(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    return urlunsplit(("postgres", parts.netloc, f"/{name}", "", "")), drop


@contextlib.contextmanager
def current(context: TortoiseContext) -> Iterator[None]:
    """Make `context` the current Tortoise context (tasks created inside inherit it)."""
    token = _current_context.set(context)
    try:
        yield
    finally:
        _current_context.reset(token)


@pytest.fixture(scope="session")
async def agent_database() -> AsyncIterator[TortoiseContext]:
    """The agents' own database, in a Tortoise context of its own (never the global fallback,
    so it coexists with the app fixtures of the rest of the suite)."""
    url, drop = await _create_database()
    with current(TortoiseContext()):  # built by the migrations, as every database is
        await migrate(config=tortoise_config(url))
        await Tortoise.close_connections()
    context = TortoiseContext()
    with current(context):
        await context.init(config=tortoise_config(url))
    try:
        yield context
    finally:
        with current(context):
            await context.close_connections()
        await drop()


@pytest.fixture
async def database(agent_database: TortoiseContext) -> AsyncIterator[TortoiseContext]:
    """The agents' database, current for the test."""
    token = _current_context.set(agent_database)
    yield agent_database
    _current_context.reset(token)


@dataclass
class Tree:
    """One instance: All > Companies > MSP > (Customer > Custom group, Other customer)."""

    instance: Instance
    owner: User
    all_group: StaticGroup
    companies_group: StaticGroup
    msp: Company
    msp_group: StaticGroup
    customer: Company
    customer_group: StaticGroup
    custom_group: StaticGroup
    other: Company
    other_group: StaticGroup

    @property
    def scope(self) -> Scope:
        return Scope.for_owner(self.instance.id, self.owner.id, self.all_group.path)


async def make_group(
    instance: Instance,
    name: str,
    kind: GroupKind,
    parent: StaticGroup | None,
    company: Company | None = None,
) -> StaticGroup:
    group = await StaticGroup.create(
        instance=instance,
        name=name,
        kind=kind,
        parent=parent,
        company=company,
        path="/",
        sort_key="",
        depth=0 if parent is None else parent.depth + 1,
    )
    group.path = child_path(parent.path if parent else None, group.id)
    group.sort_key = child_sort_key(parent.sort_key if parent else None, name, group.id)
    await group.save(update_fields=["path", "sort_key"])
    return group


async def make_company(
    instance: Instance,
    name: str,
    kind: CompanyType,
    parent: Company | None,
    parent_group: StaticGroup,
) -> tuple[Company, StaticGroup]:
    company = await Company.create(
        instance=instance,
        public_id=f"pub-{next(_counter)}",
        name=name,
        sort_name=sort_name(name),
        type=kind,
        parent=parent,
        path="/",
        sort_key="",
        depth=parent_group.depth + 1,
    )
    group = await make_group(instance, name, GroupKind.COMPANY, parent_group, company)
    company.path, company.sort_key = group.path, group.sort_key
    await company.save(update_fields=["path", "sort_key"])
    return company, group


async def build_tree() -> Tree:
    n = next(_counter)
    account = await Account.create(
        email=f"owner{n}-{_run}@msp.example", password_hash="x", services=Service.EMA2.value
    )
    instance = await Instance.create(name=f"Console {n}", owner=account, created_via=Service.EMA2)
    all_group = await make_group(instance, "All", GroupKind.ALL, None)
    companies_group = await make_group(instance, "Companies", GroupKind.COMPANIES, all_group)
    owner = await User.create(
        instance=instance,
        account=account,
        email=f"owner{n}-{_run}@msp.example",
        home_group=all_group,
    )
    msp, msp_group = await make_company(
        instance, "Acme MSP", CompanyType.MSP, None, companies_group
    )
    customer, customer_group = await make_company(
        instance, "Globex", CompanyType.CUSTOMER, msp, msp_group
    )
    custom_group = await make_group(instance, "Laptops", GroupKind.CUSTOM, customer_group)
    other, other_group = await make_company(
        instance, "Initech", CompanyType.CUSTOMER, msp, msp_group
    )
    return Tree(
        instance, owner, all_group, companies_group, msp, msp_group, customer, customer_group,
        custom_group, other, other_group,
    )  # fmt: skip


@pytest.fixture
async def tree(database: TortoiseContext) -> Tree:
    return await build_tree()


@pytest.fixture
async def installer(tree: Tree) -> tuple[Installer, str]:
    """An installer of the tree's customer, with its token."""
    return await create_installer(tree.scope, company_id=tree.customer.id, created_by_id=None)


async def computer_rows(instance_id: int) -> list[dict[str, Any]]:
    """Every stored column of an instance's computers, to show that nothing was written."""
    return await fetch("SELECT * FROM computer WHERE instance_id = ? ORDER BY id", [instance_id])


async def computer(computer_id: int) -> Computer:
    return await Computer.get(id=computer_id)


class _QuietServer(uvicorn.Server):
    """A uvicorn server that leaves the test process's signal handlers alone."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@dataclass
class AgentServer:
    url: str  # the agent API's base URL, ".../agent/v1"
    runtime: AgentRuntime
    bus: InProcessEventBus
    settings: Settings
    server: uvicorn.Server
    task: asyncio.Task[None]

    async def stop(self) -> None:
        self.server.should_exit = True
        await self.task


async def start_agent_server(
    settings: Settings = SETTINGS, *, bus: InProcessEventBus | None = None, **overrides: Any
) -> AgentServer:
    """A real uvicorn on 127.0.0.1 serving the agent routes, the runtime run by its lifespan
    (servers given one bus behave as workers of one console)."""
    settings = replace(settings, **overrides)
    bus = bus or InProcessEventBus()
    runtime = AgentRuntime(settings, bus, watcher_period=1.0)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await runtime.start()
        try:
            yield
        finally:
            await runtime.stop()

    app = Starlette(routes=agent_routes(runtime), lifespan=lifespan)
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=0,
        log_level="warning",
        access_log=False,
        proxy_headers=False,  # as `serve` runs it: server.client_address decides
    )
    server = _QuietServer(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
            raise RuntimeError("uvicorn stopped during startup")
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    return AgentServer(f"http://127.0.0.1:{port}/agent/v1", runtime, bus, settings, server, task)


@pytest.fixture(scope="module")
async def agent_server(agent_database: TortoiseContext) -> AsyncIterator[AgentServer]:
    with current(agent_database):
        server = await start_agent_server()
    yield server
    with current(agent_database):
        await server.stop()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def enrolment_body(hardware_id: str = "hw-1", **fields: Any) -> dict[str, Any]:
    return {
        "hardwareId": hardware_id,
        "hostname": fields.pop("hostname", f"host-{hardware_id}"),
        "os": fields.pop("os", "Windows 11 Pro"),
        "agentVersion": fields.pop("agentVersion", "11.1.2"),
        **fields,
    }


async def enrol(
    http: aiohttp.ClientSession,
    server: AgentServer,
    token: str,
    hardware_id: str = "hw-1",
    **fields: Any,
) -> dict[str, Any]:
    async with http.post(
        f"{server.url}/enroll", json=enrolment_body(hardware_id, **fields), headers=bearer(token)
    ) as response:
        assert response.status == 201, await response.text()
        return dict(await response.json())


async def wait_until(predicate: Any, within: float = 3.0, step: float = 0.02) -> float:
    """Poll an async predicate until true; returns the seconds it took."""
    started = asyncio.get_running_loop().time()
    while True:
        if await predicate():
            return asyncio.get_running_loop().time() - started
        if asyncio.get_running_loop().time() - started > within:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(step)


def utcnow() -> datetime:
    return datetime.now(UTC)

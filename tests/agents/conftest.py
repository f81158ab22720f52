"""Fixtures for the agent API and its domain: a company tree per test, a live agent server.

The database is the suite's own (tests/conftest.py: a SQLite file, or a new PostgreSQL database
when `MSP_TEST_DATABASE_URL` is PostgreSQL), built by the migrations and opened by the `app`
fixture; the tree is built by the domain functions that build every instance. Every test
builds its own instance, so tests never see each other's rows.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import aiohttp
import pytest
import uvicorn
from starlette.applications import Starlette

from server.agents import AgentRuntime, agent_routes
from server.connection_limits import uvicorn_options
from server.domain import hierarchy
from server.domain.access import Scope
from server.domain.installers import create_installer
from server.domain.instances import create_group, create_instance
from server.events import InProcessEventBus
from server.models import Account, Company, Computer, Installer, Instance, StaticGroup, User
from server.models.db import fetch
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


@pytest.fixture
async def database(app: object) -> None:
    """The suite's database, migrated and open (the `app` fixture of tests/conftest.py)."""


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
    instance: Instance, name: str, kind: GroupKind, parent: StaticGroup | None
) -> StaticGroup:
    return await create_group(instance.id, name, kind, parent)


async def make_company(
    instance: Instance, name: str, kind: CompanyType, parent: Company | None
) -> tuple[Company, StaticGroup]:
    """A company with its group (and Shared Objects group, for the types that have one)."""
    company = await hierarchy.add_company(instance.id, uuid.uuid4().hex, name, kind, parent)
    return company, await StaticGroup.get(company_id=company.id, kind=GroupKind.COMPANY)


async def build_tree() -> Tree:
    """An instance as `create_instance` makes one (All, Companies, the owner), an MSP with two
    customers, and a custom group in the first customer's group."""
    email = f"owner-{uuid.uuid4().hex[:12]}@msp.example"
    # the account row itself: `accounts.create_account` would spend an argon2 hash per test
    account = await Account.create(email=email, password_hash="x", services=Service.EMA2.value)
    instance = await create_instance(account.id, Service.EMA2, f"Console of {email}")
    owner = await User.get(instance_id=instance.id, account_id=account.id)
    all_group = await StaticGroup.get(instance_id=instance.id, kind=GroupKind.ALL)
    companies_group = await StaticGroup.get(instance_id=instance.id, kind=GroupKind.COMPANIES)
    msp, msp_group = await make_company(instance, "Acme MSP", CompanyType.MSP, None)
    customer, customer_group = await make_company(instance, "Globex", CompanyType.CUSTOMER, msp)
    custom_group = await make_group(instance, "Laptops", GroupKind.CUSTOM, customer_group)
    other, other_group = await make_company(instance, "Initech", CompanyType.CUSTOMER, msp)
    return Tree(
        instance, owner, all_group, companies_group, msp, msp_group, customer, customer_group,
        custom_group, other, other_group,
    )  # fmt: skip


@pytest.fixture
async def tree(database: None) -> Tree:
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
        **uvicorn_options(settings),  # as `serve` runs it
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
async def agent_server(app: object) -> AsyncIterator[AgentServer]:
    server = await start_agent_server()
    yield server
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

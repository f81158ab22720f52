"""`msp-console serve --demo`: the console with a demo account, synced from the built-in MSP
Administrator simulator (started in-process at every start, so syncing works after a restart),
customers in all three statuses, licenses in every state (some overused, some expiring soon)
with a few days of usage snapshots, and computers whose agents keep checking in.

The demo goes through the same paths as real use: a real sync over HTTP, the customer setup,
installers and agent enrolment, and check-ins written by the agents' batched writer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from starlette.applications import Starlette

from server.app import create_app
from server.domain import agents, customers, secrets, sync_runs, upstream_connection, usage
from server.domain.access import Scope, load_scope
from server.domain.instances import create_instance
from server.models import Account, Company, Computer, Instance, User, db
from server.models.enums import CompanyType, Service
from server.settings import Settings
from server.upstream.simulator import Simulator, UpstreamTree

log = logging.getLogger(__name__)

DEMO_EMAIL = "demo@msp.example"
DEMO_PASSWORD = "demo"  # noqa: S105 - the documented demo login
DEMO_COMPANIES = 420  # an MSP Manager, MSPs, a Managed MSP and a few hundred customers
DEMO_SEED = 7
SIMULATOR_HOST = "127.0.0.1"  # the demo allows this host (its own simulator) as an upstream
COMPUTERS_PER_CUSTOMER = (4, 30)
ONLINE_SHARE = 0.8  # of demo computers whose agents keep checking in
USAGE_HISTORY_DAYS = 6  # days of usage snapshots the demo starts with, before today's
OS_NAMES = ("Windows 11 Pro", "Windows 10 Pro", "Windows Server 2022", "Ubuntu 24.04", "macOS 15")


def demo_app() -> Starlette:
    """The app `serve --demo` runs: the console plus the simulator and the demo agents."""
    settings = demo_settings(Settings.from_env(demo=True))
    app = create_app(settings)
    console_lifespan = app.router.lifespan_context

    @contextlib.asynccontextmanager
    async def lifespan(application: Starlette) -> AsyncIterator[None]:
        async with console_lifespan(application):
            tree = UpstreamTree.generate(DEMO_COMPANIES, DEMO_SEED)
            async with Simulator(tree, host=SIMULATOR_HOST) as simulator:
                instance_id = await prepare_demo(settings, simulator.url)
                ticker = asyncio.create_task(keep_agents_checking_in(instance_id, settings))
                try:
                    yield
                finally:
                    ticker.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await ticker

    app.router.lifespan_context = lifespan
    return app


def demo_settings(settings: Settings) -> Settings:
    """The settings with the demo's own simulator allowed as an MSP Administrator."""
    allowed = (*settings.upstream_allowed_hosts, SIMULATOR_HOST)
    return replace(settings, demo=True, upstream_allowed_hosts=allowed)


async def prepare_demo(settings: Settings, upstream_url: str) -> int:
    """Seed the demo on an empty database, or point it at this start's simulator."""
    account = await Account.get_or_none(email=DEMO_EMAIL)
    if account is None:
        account = await Account.create(
            email=DEMO_EMAIL,
            password_hash=await secrets.hash_password(DEMO_PASSWORD),
            services=f"{Service.EBA.value},{Service.EMA2.value}",
        )
    instance = await Instance.get_or_none(owner_id=account.id)
    if instance is None:
        instance = await create_instance(account.id, Service.EBA, "Demo MSP console")
    owner = await User.get(account_id=account.id).prefetch_related("home_group")
    scope = await load_scope(instance.id, owner.id, True, owner.home_group.path)
    await upstream_connection.connect_msp_administrator(
        scope, instance.id, upstream_url, DEMO_EMAIL, DEMO_PASSWORD, settings
    )
    if not await Company.filter(instance_id=instance.id).exists():
        print("demo: syncing from the built-in MSP Administrator simulator...", flush=True)
        await sync_runs.sync_now(instance.id, settings, trigger="demo")
        await _seed_customers(scope, owner.id, settings)
        await seed_usage_history(instance.id)
    print(
        f"\n  msp-console demo: sign in as {DEMO_EMAIL} / {DEMO_PASSWORD} "
        f"(via EBA or EMA2) at /graphql\n",
        flush=True,
    )
    return instance.id


async def _seed_customers(scope: Scope, owner_id: int, settings: Settings) -> None:
    """Customers in all three statuses, and computers enrolled by installers of set-up ones."""
    rng = random.Random(DEMO_SEED)
    found = await Company.filter(instance_id=scope.instance_id, type=CompanyType.CUSTOMER).order_by(
        "sort_name"
    )
    computers = 0
    for index, customer in enumerate(found):
        share = index % 10
        if share < 4:  # set up, with an installer whose agents enrol
            result = await customers.setup_customer(
                scope, owner_id, customer.id, None, True,
                installer_ttl_days=settings.installer_ttl_days,
            )  # fmt: skip
            if result.installer_token:
                computers += await _enrol(result.installer_token, customer, rng, settings)
        elif share < 6:
            await customers.skip_customer_setup(scope, owner_id, customer.id)
        elif share == 6 and index % 20 == 6:
            await customers.skip_customer_setup(scope, owner_id, customer.id)
            await customers.unlink_customer(scope, owner_id, customer.id)
    print(f"demo: {len(found)} customers, {computers} computers enrolled", flush=True)


async def seed_usage_history(instance_id: int, days: int = USAGE_HISTORY_DAYS) -> None:
    """Snapshots of the days before the first sync's, seats growing towards today's, so the
    usage report has history from the start (real consoles only ever record what they saw)."""
    today = datetime.now(UTC)
    for back in range(days, 0, -1):
        moment = today - timedelta(days=back)
        async with db.transaction():
            await usage.record_snapshot(instance_id, moment)
            await db.execute(  # fewer seats further back: some customers grew since
                "UPDATE usage_line SET seats = seats - (company_id + ?) % 3 "
                "WHERE instance_id = ? AND day = ? AND seats > 2",
                [back, instance_id, moment.date()],
            )
    print(f"demo: {days} days of usage snapshots before today's", flush=True)


async def _enrol(token: str, customer: Company, rng: random.Random, settings: Settings) -> int:
    count = rng.randint(*COMPUTERS_PER_CUSTOMER)
    stem = "".join(ch for ch in customer.name.lower() if ch.isalnum())[:12] or "pc"
    for n in range(count):
        await agents.enroll(
            token,
            {
                "hardwareId": f"demo-{customer.public_id}-{n}",
                "hostname": f"{stem}-{n:03d}",
                "os": rng.choice(OS_NAMES),
                "agentVersion": "11.1.2039.0",
            },
            settings=settings,
        )
    return count


async def keep_agents_checking_in(instance_id: int, settings: Settings) -> None:
    """Most demo agents check in every interval; the rest drift to delayed and not connected."""
    interval = settings.checkin_interval
    while True:
        hashes = [
            h
            for h, computer_id in await Computer.filter(
                instance_id=instance_id, agent_token_hash__not_isnull=True
            ).values_list("agent_token_hash", "id")
            if computer_id % 10 < ONLINE_SHARE * 10
        ]
        now = datetime.now(UTC)
        records = [
            agents.CheckinRecord(h, now - timedelta(seconds=random.uniform(0, 5))) for h in hashes
        ]
        try:
            await agents.write_checkins(records)
        except Exception:
            log.exception("demo agents could not check in")
        await asyncio.sleep(interval / 2)

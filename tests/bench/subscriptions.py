"""Subscription fan-out benchmark: N `customerStatusChanged` subscribers over W real uvicorn
workers on PostgreSQL, events caused through the API.

    python -m tests.bench.subscriptions --subscribers 1000 --workers 2 \\
        --database postgres://root@127.0.0.1:5432/test [--events 20] [--pause 1.2] [--burst 0]

Makes a database of its own on that server (dropped at the end), migrated; one instance with
an MSP and its customers, sessions for the owner and for a user whose permission set covers the
MSP (half the subscribers each, so the in-memory scope check has work to do). Serves it with
`msp-console serve --workers W`, opens N websockets (one subscription each), then sends each
event as a `skipCustomerSetup` mutation over HTTP and measures, per event, the time from the
mutation's send to every subscriber's receipt: p50, p99 and max over all receipts, and the
receipts missing after `--timeout` seconds. `--pause` (default 1.2 s) lies between events, so
every event also pays the subscribers' periodic re-read of their rights; `--burst K` then sends
K mutations at once to show that nothing is dropped. It also prints the renders per event
(`msp_subscription_renders_total` over all workers, read from `/metrics`): how well the
subscribers share them; and on Linux the console's CPU time per event (all its processes),
a figure a loaded machine distorts less than latencies.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import os
import re
import sys
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import aiohttp
import orjson
import websockets

from server.domain import accounts, global_ids, hierarchy, secrets
from server.domain.instances import create_instance
from server.models import Session, StaticGroup, User, db
from server.models.enums import CompanyType, GroupKind, Service
from server.settings import Settings
from tests.bench.harness import console, percentile
from tests.conftest import _postgres_database

SUBSCRIPTION = "subscription { customerStatusChanged { id name customerStatus } }"
SKIP = """mutation($input: SkipCustomerSetupInput!) { skipCustomerSetup(input: $input) {
  errors { code message } } }"""
PROTOCOL = "graphql-transport-ws"
METRICS_TOKEN = "bench-metrics-token"


@dataclass
class World:
    owner_token: str
    tokens: list[str]  # one per subscriber
    customers: list[str]  # global ids, each the subject of one event


async def build(database_url: str, subscribers: int, customers: int) -> World:
    """The instance, its customers and one session per subscriber (sessions are made directly:
    signing in 1,000 times would only measure argon2)."""
    from tortoise import Tortoise
    from tortoise.migrations.api import migrate

    await migrate(config=db.tortoise_config(database_url))
    await Tortoise.close_connections()
    await Tortoise.init(config=db.tortoise_config(database_url))
    try:
        email = f"bench-{uuid.uuid4().hex[:8]}@example.test"
        account = await accounts.create_account(email, "bench password 1", [Service.EBA])
        instance = await create_instance(account.id, Service.EBA, "Bench")
        manager = await hierarchy.add_company(
            instance.id, uuid.uuid4().hex, "Manager", CompanyType.MSP_MANAGER, None
        )
        msp = await hierarchy.add_company(
            instance.id, uuid.uuid4().hex, "MSP", CompanyType.MSP, manager
        )
        ids = []
        for n in range(customers):
            customer = await hierarchy.add_company(
                instance.id, uuid.uuid4().hex, f"Customer {n:04d}", CompanyType.CUSTOMER, msp
            )
            ids.append(global_ids.encode("Company", customer.id))
        from server.models import PermissionSet

        rights = await PermissionSet.create(
            instance_id=instance.id, name="MSP readers", levels={"COMPANIES": "READ"}
        )
        await rights.groups.add(await StaticGroup.get(company_id=msp.id, kind=GroupKind.COMPANY))
        all_group = await StaticGroup.get(instance_id=instance.id, kind=GroupKind.ALL)
        user = await User.create(
            instance_id=instance.id,
            email=f"reader-{uuid.uuid4().hex[:8]}@example.test",
            password_hash="unused",
            home_group=all_group,
        )
        await user.permission_sets.add(rights)
        now = dt.datetime.now(dt.UTC)
        expires = now + dt.timedelta(hours=12)
        tokens, sessions = [], []
        for n in range(subscribers + 1):
            token = secrets.new_token(accounts.TOKEN_PREFIX)
            tokens.append(token)
            owner = n % 2 == 0
            sessions.append(
                Session(
                    token_hash=secrets.token_hash(token),
                    account_id=account.id if owner else None,
                    user_id=None if owner else user.id,
                    via=Service.EBA if owner else None,
                    expires_at=expires,
                    last_seen_at=now,
                )
            )
        await Session.bulk_create(sessions, batch_size=500)
        return World(tokens[0], tokens[1:], ids)
    finally:
        await Tortoise.close_connections()


@dataclass
class Subscriber:
    socket: websockets.ClientConnection
    receipts: dict[str, float] = field(default_factory=dict)  # customer id -> when received
    closed: str | None = None


async def subscribe(url: str, token: str) -> Subscriber:
    socket = await websockets.connect(
        url.replace("http://", "ws://") + "/graphql",
        subprotocols=[PROTOCOL],  # type: ignore[list-item]
        max_queue=None,
        open_timeout=60,
    )
    init = {"type": "connection_init", "payload": {"authorization": f"Bearer {token}"}}
    await socket.send(orjson.dumps(init).decode())
    ack = orjson.loads(await asyncio.wait_for(socket.recv(), 60))
    if ack.get("type") != "connection_ack":
        raise RuntimeError(f"not acknowledged: {ack}")
    message = {"id": "1", "type": "subscribe", "payload": {"query": SUBSCRIPTION}}
    await socket.send(orjson.dumps(message).decode())
    return Subscriber(socket)


async def receive(subscriber: Subscriber) -> None:
    try:
        async for raw in subscriber.socket:
            at = time.perf_counter()
            message = orjson.loads(raw)
            if message.get("type") == "next":
                node = (message["payload"].get("data") or {}).get("customerStatusChanged")
                if node:
                    subscriber.receipts.setdefault(node["id"], at)
            elif message.get("type") in ("error", "complete"):
                subscriber.closed = str(message)
                return
    except websockets.ConnectionClosed as closed:
        subscriber.closed = f"closed {closed.rcvd.code if closed.rcvd else '?'}"


@contextlib.asynccontextmanager
async def subscribers(url: str, tokens: list[str]) -> AsyncIterator[list[Subscriber]]:
    gate = asyncio.Semaphore(50)  # connect 50 at a time: a connection storm measures accept()

    async def one(token: str) -> Subscriber:
        async with gate:
            return await subscribe(url, token)

    opened = await asyncio.gather(*(one(t) for t in tokens))
    tasks = [asyncio.create_task(receive(s)) for s in opened]
    try:
        yield list(opened)
    finally:
        for s in opened:
            await s.socket.close()
        for task in tasks:
            task.cancel()


async def wait_for(subs: list[Subscriber], ids: list[str], within: float) -> None:
    deadline = time.perf_counter() + within
    while time.perf_counter() < deadline:
        if all(i in s.receipts for s in subs for i in ids):
            return
        await asyncio.sleep(0.01)


async def send(http: aiohttp.ClientSession, url: str, token: str, customer: str) -> float:
    """Send the mutation; returns when it was sent."""
    sent = time.perf_counter()
    async with http.post(
        f"{url}/graphql",
        json={"query": SKIP, "variables": {"input": {"customerId": customer}}},
        headers={"authorization": f"Bearer {token}"},
    ) as response:
        body = await response.json()
    errors = body.get("errors") or body["data"]["skipCustomerSetup"]["errors"]
    if errors:
        raise RuntimeError(f"the mutation failed: {errors}")
    return sent


async def renders(http: aiohttp.ClientSession, url: str) -> float:
    """Subscription renders so far, all workers together."""
    headers = {"authorization": f"Bearer {METRICS_TOKEN}"}
    async with http.get(f"{url}/metrics", headers=headers) as response:
        text = await response.text()
    found = re.search(r"^msp_subscription_renders_total (\S+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def console_cpu_seconds() -> float:
    """CPU time the console's processes (this one's descendants) have spent; 0 off Linux."""
    ticks = os.sysconf("SC_CLK_TCK")
    total, pending, me = 0.0, [os.getpid()], os.getpid()
    while pending:
        pid = pending.pop()
        try:
            for task in os.listdir(f"/proc/{pid}/task"):
                with open(f"/proc/{pid}/task/{task}/children") as children:
                    pending += [int(child) for child in children.read().split()]
            if pid != me:
                with open(f"/proc/{pid}/stat") as stat:  # utime and stime follow the name
                    fields = stat.read().rsplit(")", 1)[1].split()
                total += (int(fields[11]) + int(fields[12])) / ticks
        except OSError:  # not Linux, or the process ended meanwhile
            continue
    return total


async def measure(url: str, world: World, args: argparse.Namespace) -> int:
    async with aiohttp.ClientSession() as http, subscribers(url, world.tokens) as subs:
        print(f"{len(subs)} subscribers connected; warming up")
        customers = iter(world.customers)
        await asyncio.sleep(1.0)  # every subscription registered with its worker
        warm = next(customers)
        await send(http, url, world.owner_token, warm)
        await wait_for(subs, [warm], args.timeout)
        latencies: list[float] = []
        missing = 0
        rendered = await renders(http, url)
        cpu = console_cpu_seconds()
        for n in range(args.events):
            await asyncio.sleep(args.pause)
            customer = next(customers)
            sent = await send(http, url, world.owner_token, customer)
            await wait_for(subs, [customer], args.timeout)
            got = [s.receipts[customer] - sent for s in subs if customer in s.receipts]
            latencies += got
            missing += len(subs) - len(got)
            print(
                f"event {n + 1:3d}: {len(got)}/{len(subs)} received, "
                f"first {min(got, default=0) * 1000:.0f} ms, "
                f"slowest {max(got, default=0) * 1000:.0f} ms"
            )
        cpu = console_cpu_seconds() - cpu
        rendered = await renders(http, url) - rendered
        burst_missing = 0
        if args.burst:
            await asyncio.sleep(args.pause)
            batch = [next(customers) for _ in range(args.burst)]
            started = time.perf_counter()
            await asyncio.gather(*(send(http, url, world.owner_token, c) for c in batch))
            await wait_for(subs, batch, args.timeout)
            burst_missing = sum(1 for s in subs for c in batch if c not in s.receipts)
            print(
                f"burst of {args.burst} mutations at once: {burst_missing} receipts missing, "
                f"all in {(time.perf_counter() - started) * 1000:.0f} ms"
            )
        closed = sum(1 for s in subs if s.closed)
    ms = [v * 1000 for v in latencies]
    print(
        f"RESULT {len(subs)} subscribers, {args.workers} workers, {args.events} events: "
        f"p50 {percentile(ms, 50):.0f} ms, p99 {percentile(ms, 99):.0f} ms, "
        f"max {max(ms, default=0):.0f} ms, missing {missing}"
        + (f", burst missing {burst_missing}" if args.burst else "")
        + f", subscriptions ended early {closed}"
    )
    events = max(args.events, 1)
    print(
        f"renders per event {rendered / events:.1f}, console CPU per event "
        f"{cpu / events * 1000:.0f} ms (all workers, pauses included)"
    )
    return 0 if missing == 0 and burst_missing == 0 else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.subscriptions")
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--database", default="postgres://root@127.0.0.1:5432/test")
    parser.add_argument("--events", type=int, default=20)
    parser.add_argument("--pause", type=float, default=1.2, help="seconds between events")
    parser.add_argument("--burst", type=int, default=0, help="then K mutations at once")
    parser.add_argument("--timeout", type=float, default=15.0, help="per event, seconds")
    args = parser.parse_args(argv)
    server = db.normalize_url(args.database)
    if not server.startswith("postgres://"):
        parser.error("--database must be a PostgreSQL URL (the fan-out crosses workers)")
    databases = _postgres_database(server)
    database_url = next(databases)
    try:
        world = asyncio.run(build(database_url, args.subscribers, args.events + args.burst + 1))
        Settings(database_url=database_url)  # refuses a malformed URL before serving
        os.environ["MSP_CONSOLE_METRICS_TOKEN"] = METRICS_TOKEN  # the console's, for renders
        with console(database_url, workers=args.workers) as url:
            return asyncio.run(measure(url, world, args))
    finally:
        databases.close()


if __name__ == "__main__":
    sys.exit(main())

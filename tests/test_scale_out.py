"""Scale-out: two real console processes (`python -m server serve`) on one PostgreSQL database.

A subscriber on process A receives sync progress, customer status changes and computer
connection changes caused through process B (its GraphQL API and its agent API), the scheduled
sync runs exactly once across both, and an agent token that dies through B (its computer
removed, or superseded by a re-enrolment) is refused by A, which had it cached. Everything goes
through HTTP and websockets: this process never opens the ORM on the shared database (the
session's `app` may hold another one).

Always PostgreSQL: a fresh database on the server of MSP_TEST_DATABASE_URL when that is
PostgreSQL, else on postgres://root@127.0.0.1:5432/test; created for this module, dropped after.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import itertools
import json
import os
import re
import socket
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import httpx
import pytest
import websockets

from server.models.locks import SYNC_SCHEDULER
from server.upstream.simulator import DEFAULT_PASSWORD, DEFAULT_USERNAME, Simulator, UpstreamTree
from tests.conftest import LOCAL_UPSTREAM, _postgres_database, postgres_server
from tests.graphql_client import GraphQLClient

pytestmark = [pytest.mark.needs_postgres]

ROOT = Path(__file__).resolve().parent.parent
SECRET = "scale-out-test-secret-key-0123456789-abcdef"
METRICS_TOKEN = "scale-out-metrics-token"
METRICS = {"authorization": f"Bearer {METRICS_TOKEN}"}  # /metrics is not public
SYNC_INTERVAL = 4  # seconds: MSP_CONSOLE_SYNC_INTERVAL of both processes
# Check-ins are written (and a dead token found dead by the write) only this often, so that
# within the tests only the event bus can tell A that a token died.
CHECKIN_FLUSH_INTERVAL = 60
SCHEDULE_WINDOW = 13  # seconds after the connection by which the timeline is read
COMPANIES = 60
EMAIL = "scale-out-owner@example.test"
PASSWORD = "correct horse battery staple"
PROTOCOL = "graphql-transport-ws"
FINISHED = ("SUCCEEDED", "FAILED")

LOGIN = (
    """mutation($input: LoginInput!) { login(input: $input) { token errors { code message } } }"""
)
CREATE_INSTANCE = """mutation($input: CreateInstanceInput!) {
  createInstance(input: $input) { instance { id } errors { code message } } }"""
CONNECT = """mutation($input: ConnectMspAdministratorInput!) {
  connectMspAdministrator(input: $input) { instance { id mspStatus } errors { code message } } }"""
LAST_SYNC = """{ instance { mspStatus lastSync { id state trigger error } } }"""
START_SYNC = (
    """mutation { startSync(input: {}) { run { id state trigger } errors { code message } } }"""
)
NOT_SET_UP = """{ managedCustomers(first: 5, status: [NOT_SET_UP]) {
  edges { node { id name customerStatus } } } }"""
SKIP = """mutation($input: SkipCustomerSetupInput!) { skipCustomerSetup(input: $input) {
  customer { id customerStatus } errors { code message } } }"""
CREATE_INSTALLER = """mutation($input: CreateInstallerInput!) { createInstaller(input: $input) {
  token installer { id } errors { code message } } }"""
REMOVE_COMPUTER = """mutation($input: RemoveComputerInput!) { removeComputer(input: $input) {
  removedComputerId errors { code message } } }"""
SYNC_RUNS = """{ syncRuns(first: 100) { totalCount
  edges { node { id state trigger phase createdAt startedAt finishedAt error } } } }"""

SUBSCRIPTIONS = {
    "sync": "subscription { syncStatus { id state trigger phase companiesSeen error } }",
    "status": "subscription { customerStatusChanged { id name customerStatus } }",
    "connection": "subscription { computerConnectionChanged { id name connectionStatus "
    "company { id } } }",
}


# -- the database -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def scale_out_database() -> Iterator[str]:
    yield from _postgres_database(postgres_server())


# -- processes ------------------------------------------------------------------------------


def free_port() -> int:
    with contextlib.closing(socket.socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return f"({path} unreadable)"
    return "\n".join(text.splitlines()[-lines:])


@dataclass
class Console:
    name: str
    port: int
    log: Path
    process: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/graphql"

    def tail(self, lines: int = 40) -> str:
        return (
            f"--- {self.name} ({self.url}), last lines of {self.log} ---\n{tail(self.log, lines)}"
        )


def console_env(database_url: str, agent_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MSP_CONSOLE_")}
    env.update(
        {
            "PYTHONPATH": str(ROOT),
            "DATABASE_URL": database_url,
            "MSP_CONSOLE_SECRET_KEY": SECRET,
            "MSP_CONSOLE_SYNC_INTERVAL": str(SYNC_INTERVAL),
            "MSP_CONSOLE_PUBLIC_AGENT_URL": agent_url,
            "MSP_CONSOLE_UPSTREAM_ALLOWED_HOSTS": ",".join(LOCAL_UPSTREAM),
            "MSP_CONSOLE_METRICS_TOKEN": METRICS_TOKEN,
            "MSP_CONSOLE_CHECKIN_FLUSH_INTERVAL": str(CHECKIN_FLUSH_INTERVAL),
        }
    )
    return env


async def run_command(env: dict[str, str], log: Path, *args: str) -> None:
    """`python -m server ARGS` to completion (60 s at most), its output appended to `log`."""
    with log.open("ab") as out:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "server", *args, cwd=ROOT, env=env, stdout=out, stderr=out
        )
        try:
            code = await asyncio.wait_for(process.wait(), 60)
        except TimeoutError:
            process.kill()
            await process.wait()
            raise AssertionError(f"`{' '.join(args)}` hung\n{tail(log)}") from None
    assert code == 0, f"`{' '.join(args)}` exited with {code}\n{tail(log)}"


async def start_console(console: Console, env: dict[str, str], *options: str) -> None:
    with console.log.open("ab") as out:  # the child keeps its own descriptor
        console.process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "server",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(console.port),
            *options,
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=out,
        )


async def wait_ready(consoles: list[Console], within: float = 40) -> None:
    deadline = time.monotonic() + within
    async with httpx.AsyncClient(timeout=2) as http:
        for console in consoles:
            while True:
                assert console.process is not None
                if console.process.returncode is not None:
                    raise AssertionError(
                        f"{console.name} exited with {console.process.returncode}\n"
                        + console.tail()
                    )
                with contextlib.suppress(httpx.HTTPError):
                    if (await http.get(console.url + "/readyz")).status_code == 200:
                        break
                if time.monotonic() > deadline:
                    raise AssertionError(
                        f"{console.name} not ready in {within} s\n{console.tail()}"
                    )
                await asyncio.sleep(0.1)


async def stop_console(console: Console) -> None:
    process = console.process
    if process is None or process.returncode is not None:
        return
    process.terminate()
    try:
        await asyncio.wait_for(process.wait(), 10)
    except TimeoutError:
        process.kill()
        await process.wait()


async def eventually(
    what: str, probe: Callable[[], Awaitable[Any]], within: float, context: str = ""
) -> Any:
    """The first truthy result of `probe`, polled every 0.1 s for `within` seconds."""
    deadline = time.monotonic() + within
    last: Any = None
    while time.monotonic() < deadline:
        last = await probe()
        if last:
            return last
        await asyncio.sleep(0.1)
    raise AssertionError(f"{what}: not within {within} s (last: {last!r})\n{context}")


# -- the cluster ------------------------------------------------------------------------------


@dataclass
class Cluster:
    a: Console
    b: Console
    via_a: GraphQLClient
    via_b: GraphQLClient
    sim: Simulator
    token: str
    database_url: str
    connected: float  # time.monotonic() at the successful connectMspAdministrator

    @property
    def consoles(self) -> list[Console]:
        return [self.a, self.b]

    def tails(self, lines: int = 40) -> str:
        return "\n".join(console.tail(lines) for console in self.consoles)

    async def query(
        self, client: GraphQLClient, query: str, variables: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        body = await client.execute(query, variables, self.token)
        assert not body.get("errors"), f"{body}\n{self.tails(20)}"
        return body["data"]


@pytest.fixture(scope="module")
async def cluster(
    scale_out_database: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Cluster]:
    folder = tmp_path_factory.mktemp("scale_out")
    a = Console("A", free_port(), folder / "console-a.log")
    b = Console("B", free_port(), folder / "console-b.log")
    env = console_env(scale_out_database, f"{b.url}/agent/v1")
    setup_log = folder / "setup.log"
    try:
        await run_command(env, setup_log, "migrate")
        await run_command(
            env,
            setup_log,
            "create-account",
            "--email",
            EMAIL,
            "--password",
            PASSWORD,
            "--service",
            "EBA",
            "--service",
            "EMA2",
        )
        async with (
            Simulator(UpstreamTree.generate(COMPANIES, seed=5)) as sim,
            httpx.AsyncClient(base_url=a.url, timeout=20) as http_a,
            httpx.AsyncClient(base_url=b.url, timeout=20) as http_b,
        ):
            await start_console(a, env)
            await start_console(b, env)
            await wait_ready([a, b])
            via_a, via_b = GraphQLClient(http_a), GraphQLClient(http_b)

            login = await via_b.query(
                LOGIN, {"input": {"email": EMAIL, "password": PASSWORD, "via": "EBA"}}
            )
            assert login["login"]["errors"] == [], login
            token = login["login"]["token"]
            made = await via_b.query(CREATE_INSTANCE, {"input": {"name": "Scale-out"}}, token)
            assert made["createInstance"]["errors"] == [], made
            connect = {"url": sim.url, "username": DEFAULT_USERNAME, "password": DEFAULT_PASSWORD}
            connected = await via_b.query(CONNECT, {"input": connect}, token)
            assert connected["connectMspAdministrator"]["errors"] == [], connected
            cluster = Cluster(a, b, via_a, via_b, sim, token, scale_out_database, time.monotonic())

            async def first_sync_done() -> dict[str, Any] | None:  # read through A
                last = (await cluster.query(via_a, LAST_SYNC))["instance"]["lastSync"]
                return last if last and last["state"] in FINISHED else None

            first = await eventually("the first sync", first_sync_done, 20, cluster.tails())
            assert first["state"] == "SUCCEEDED", f"{first}\n{cluster.tails()}"
            yield cluster
    except BaseException as exc:
        if isinstance(exc, AssertionError) and "last lines of" not in str(exc):
            raise AssertionError(
                f"{exc}\n{a.tail()}\n{b.tail()}\n--- setup ---\n{tail(setup_log)}"
            ) from exc
        raise
    finally:
        await asyncio.gather(stop_console(a), stop_console(b))


@pytest.fixture(autouse=True)
def _tails_on_failure(request: pytest.FixtureRequest, cluster: Cluster) -> Iterator[None]:
    """After a failed test, the last lines each console logged (its stdout and stderr)."""
    failed_before = request.session.testsfailed
    yield
    if request.session.testsfailed > failed_before:
        text = f"\n{request.node.nodeid} failed; the consoles said:\n{cluster.tails(60)}\n"
        reporter = request.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(text)
        else:
            sys.__stderr__.write(text)


# -- subscriptions on A -----------------------------------------------------------------------


@dataclass
class Subscriptions:
    """One graphql-transport-ws socket with several subscriptions; messages per subscription id."""

    socket: Any
    queues: dict[str, asyncio.Queue[dict[str, Any]]] = field(default_factory=dict)
    reader: asyncio.Task[None] | None = None

    async def read(self) -> None:
        try:
            async for raw in self.socket:
                message = json.loads(raw)
                if message.get("type") == "ping":
                    await self.socket.send(json.dumps({"type": "pong"}))
                elif message.get("id") in self.queues:
                    self.queues[message["id"]].put_nowait(message)
        except websockets.ConnectionClosed:
            pass
        finally:
            for queue in self.queues.values():
                queue.put_nowait({"type": "closed"})

    async def expect(
        self,
        name: str,
        wanted: Callable[[dict[str, Any]], bool],
        within: float,
        cluster: Cluster,
        seen: list[dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        """The next event of subscription `name` that is `wanted` (the others go to `seen`)."""
        deadline = time.monotonic() + within
        skipped = seen if seen is not None else []
        while True:
            left = deadline - time.monotonic()
            try:
                message = await asyncio.wait_for(self.queues[name].get(), max(left, 0.01))
            except TimeoutError:
                raise AssertionError(
                    f"A's {name} subscription: nothing wanted within {within} s; "
                    f"got {skipped[-10:]}\n{cluster.tails()}"
                ) from None
            if message["type"] != "next":
                raise AssertionError(f"A's {name} subscription ended: {message}\n{cluster.tails()}")
            assert "errors" not in message["payload"], message
            event = next(iter(message["payload"]["data"].values()))
            if wanted(event):
                return event
            skipped.append(event)


async def subscriptions_open(console: Console) -> int:
    async with httpx.AsyncClient(timeout=5) as http:
        text = (await http.get(console.url + "/metrics", headers=METRICS)).text
    found = re.search(r"^msp_subscriptions_open (\S+)$", text, re.MULTILINE)
    return int(float(found.group(1))) if found else 0


@pytest.fixture(scope="module")
async def on_a(cluster: Cluster) -> AsyncIterator[Subscriptions]:
    """syncStatus, customerStatusChanged and computerConnectionChanged, listening on A."""
    async with websockets.connect(cluster.a.ws_url, subprotocols=[PROTOCOL], open_timeout=10) as ws:
        init = {"type": "connection_init", "payload": {"authorization": f"Bearer {cluster.token}"}}
        await ws.send(json.dumps(init))
        ack = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert ack["type"] == "connection_ack", ack
        subscriptions = Subscriptions(ws, {name: asyncio.Queue() for name in SUBSCRIPTIONS})
        for name, query in SUBSCRIPTIONS.items():
            await ws.send(
                json.dumps({"id": name, "type": "subscribe", "payload": {"query": query}})
            )
        subscriptions.reader = asyncio.create_task(subscriptions.read())

        async def listening() -> bool:  # each subscriber has joined A's event bus
            return await subscriptions_open(cluster.a) >= len(SUBSCRIPTIONS)

        await eventually("A's subscriptions open", listening, 10, cluster.tails())
        try:
            yield subscriptions
        finally:
            subscriptions.reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await subscriptions.reader


# -- the tests ----------------------------------------------------------------------------------


async def test_sockets_are_served_without_per_message_compression(cluster: Cluster) -> None:
    # the client offers permessage-deflate (websockets' default); `serve` declines it
    async with websockets.connect(cluster.a.ws_url, subprotocols=[PROTOCOL], open_timeout=10) as ws:
        assert "permessage-deflate" in ws.request.headers["Sec-WebSocket-Extensions"]
        assert "Sec-WebSocket-Extensions" not in ws.response.headers


async def test_a_subscriber_on_a_follows_a_sync_started_through_b(
    cluster: Cluster, on_a: Subscriptions
) -> None:
    cluster.sim.faults.delay = 0.1  # a fetch long enough to report progress
    try:
        for _ in range(5):  # a scheduled run may be in progress: startSync then returns it
            payload = (await cluster.query(cluster.via_b, START_SYNC))["startSync"]
            assert payload["errors"] == [], payload
            run = payload["run"]
            if run["trigger"] == "manual":
                break
            await on_a.expect(
                "sync", lambda e, r=run: e["id"] == r["id"] and e["state"] in FINISHED, 20, cluster
            )
        else:
            raise AssertionError("startSync through B kept answering a scheduled run")
        events: list[dict[str, Any]] = []
        others: list[dict[str, Any]] = []
        while not events or events[-1]["state"] not in FINISHED:
            events.append(
                await on_a.expect("sync", lambda e: e["id"] == run["id"], 20, cluster, others)
            )
    finally:
        cluster.sim.faults.delay = 0.0
    print(f"A saw run {run['id']} as {events}")
    states = [(e["state"], e["phase"]) for e in events]
    assert ("RUNNING", "fetch") in states and ("RUNNING", "apply") in states, events
    assert states.index(("RUNNING", "fetch")) < states.index(("RUNNING", "apply")), events
    last = events[-1]
    assert (last["state"], last["phase"], last["error"], last["trigger"]) == (
        "SUCCEEDED",
        "done",
        None,
        "manual",
    ), events
    seen = [e["companiesSeen"] for e in events]
    assert seen == sorted(seen) and seen[-1] == COMPANIES, events


async def test_a_subscriber_on_a_sees_a_customer_set_up_skipped_through_b(
    cluster: Cluster, on_a: Subscriptions
) -> None:
    edges = (await cluster.query(cluster.via_b, NOT_SET_UP))["managedCustomers"]["edges"]
    assert edges, "the synced tree has no customer left to set up"
    customer = edges[0]["node"]
    skipped = await cluster.query(cluster.via_b, SKIP, {"input": {"customerId": customer["id"]}})
    payload = skipped["skipCustomerSetup"]
    assert payload["errors"] == [] and payload["customer"]["customerStatus"] == "NORMAL", payload

    event = await on_a.expect("status", lambda e: e["id"] == customer["id"], 10, cluster)
    assert event == {"id": customer["id"], "name": customer["name"], "customerStatus": "NORMAL"}


async def test_a_subscriber_on_a_sees_a_computer_enrolled_on_bs_agent_api(
    cluster: Cluster, on_a: Subscriptions
) -> None:
    edges = (await cluster.query(cluster.via_b, NOT_SET_UP))["managedCustomers"]["edges"]
    customer = edges[-1]["node"]
    made = await cluster.query(
        cluster.via_b,
        CREATE_INSTALLER,
        {"input": {"companyId": customer["id"], "name": "Scale-out office"}},
    )
    payload = made["createInstaller"]
    assert payload["errors"] == [] and payload["token"], payload
    async with httpx.AsyncClient(base_url=cluster.b.url, timeout=10) as http:
        enrolled = await http.post(
            "/agent/v1/enroll",
            json={
                "hardwareId": "scale-out-hw-1",
                "hostname": "scale-out-desk",
                "os": "Windows 11",
                "agentVersion": "11.1",
            },
            headers={"authorization": f"Bearer {payload['token']}"},
        )
    assert enrolled.status_code == 201, enrolled.text
    computer_id = enrolled.json()["computerId"]

    event = await on_a.expect("connection", lambda e: e["id"] == computer_id, 15, cluster)
    assert event == {
        "id": computer_id,
        "name": "scale-out-desk",
        "connectionStatus": "CONNECTED",
        "company": {"id": customer["id"]},
    }


async def test_a_token_dying_through_b_is_refused_at_once_by_a(cluster: Cluster) -> None:
    edges = (await cluster.query(cluster.via_b, NOT_SET_UP))["managedCustomers"]["edges"]
    made = await cluster.query(
        cluster.via_b,
        CREATE_INSTALLER,
        {"input": {"companyId": edges[0]["node"]["id"], "name": "Token deaths"}},
    )
    installer_token = made["createInstaller"]["token"]
    body = {"hardwareId": "scale-out-hw-2", "hostname": "desk-2", "os": "Linux",
            "agentVersion": "1"}  # fmt: skip

    async def enrol(http: httpx.AsyncClient, **extra: str) -> dict[str, Any]:
        answer = await http.post(
            "/agent/v1/enroll",
            json={**body, **extra},
            headers={"authorization": f"Bearer {installer_token}"},
        )
        assert answer.status_code == 201, answer.text
        return dict(answer.json())

    async def checkin_on_a(http: httpx.AsyncClient, token: str) -> int:
        answer = await http.post(
            cluster.a.url + "/agent/v1/checkin",
            json={},
            headers={"authorization": f"Bearer {token}"},
        )
        return answer.status_code

    async def refused_by_a(http: httpx.AsyncClient, token: str, what: str) -> None:
        first = await checkin_on_a(http, token)
        print(f"{what}: A's first answer {first}")

        async def refused() -> bool:
            return await checkin_on_a(http, token) == 401

        if first != 401:
            await eventually(what, refused, 5, cluster.tails())

    async with httpx.AsyncClient(base_url=cluster.b.url, timeout=10) as http:
        enrolled = await enrol(http)
        assert await checkin_on_a(http, enrolled["agentToken"]) == 200  # A caches it
        again = await enrol(http, agentToken=enrolled["agentToken"])  # through B
        assert again["computerId"] == enrolled["computerId"]
        await refused_by_a(http, enrolled["agentToken"], "the token superseded through B")
        assert await checkin_on_a(http, again["agentToken"]) == 200  # A caches the new one

        removed = await cluster.query(
            cluster.via_b, REMOVE_COMPUTER, {"input": {"computerId": again["computerId"]}}
        )
        assert removed["removeComputer"]["errors"] == [], removed
        await refused_by_a(http, again["agentToken"], "the token of the computer removed via B")


def parse_time(value: str | None) -> dt.datetime | None:
    return dt.datetime.fromisoformat(value) if value else None


async def scheduler_lock_holders(cluster: Cluster) -> list[int]:
    """Client ports of the sessions holding a scheduler advisory lock (any key) on the database."""
    parts = urlsplit(cluster.database_url)
    connection = await asyncpg.connect(f"postgresql://{parts.netloc}{parts.path}")
    try:
        rows = await connection.fetch(
            "SELECT a.client_port FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
            "WHERE l.locktype = 'advisory' AND l.granted AND l.classid = $1 "
            "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())",
            SYNC_SCHEDULER,
        )
    finally:
        await connection.close()
    return [row["client_port"] for row in rows]


def owner_of_local_port(port: int, pids: dict[str, int]) -> list[str]:
    """Which of the processes `pids` (by name) has a TCP socket bound to local `port`."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), open(table) as lines:
            for line in list(lines)[1:]:
                columns = line.split()
                if int(columns[1].rsplit(":", 1)[1], 16) == port:
                    inodes.add(columns[9])
    owners = []
    for name, pid in pids.items():
        with contextlib.suppress(OSError):
            fds = os.listdir(f"/proc/{pid}/fd")
            links = {os.readlink(f"/proc/{pid}/fd/{fd}") for fd in fds}
            if any(f"socket:[{inode}]" in links for inode in inodes):
                owners.append(name)
    return owners


def sync_runs_counted(metrics_text: str) -> float:
    return sum(
        float(value)
        for value in re.findall(r"^msp_sync_runs_total\{[^}]*\} (\S+)$", metrics_text, re.M)
    )


async def test_the_scheduled_sync_runs_once_across_both_processes(cluster: Cluster) -> None:
    left = cluster.connected + SCHEDULE_WINDOW - time.monotonic()
    if left > 0:
        await asyncio.sleep(left)

    async def settled() -> list[dict[str, Any]] | None:  # no run half-way
        runs = (await cluster.query(cluster.via_a, SYNC_RUNS))["syncRuns"]["edges"]
        nodes = [edge["node"] for edge in runs]
        return nodes if all(n["state"] in FINISHED for n in nodes) else None

    runs = await eventually("every run finished", settled, 10, cluster.tails())
    through_b = [
        e["node"] for e in (await cluster.query(cluster.via_b, SYNC_RUNS))["syncRuns"]["edges"]
    ]
    assert {r["id"] for r in through_b} >= {r["id"] for r in runs}  # one database, one timeline
    timeline = sorted(runs, key=lambda r: r["createdAt"])
    described = "\n".join(
        f"{r['createdAt']} {r['trigger']:9} {r['state']:9} {r['startedAt']} -> {r['finishedAt']}"
        f" {r['error'] or ''}"
        for r in timeline
    )
    print(f"sync runs of the instance:\n{described}")
    scheduled = [r for r in timeline if r["trigger"] == "schedule"]
    assert scheduled, f"no scheduled run within {SCHEDULE_WINDOW} s:\n{described}"
    assert all(r["state"] == "SUCCEEDED" for r in timeline), described
    created = [parse_time(r["createdAt"]) for r in scheduled]
    gaps = [(later - earlier).total_seconds() for earlier, later in itertools.pairwise(created)]
    assert all(gap >= 2 for gap in gaps), f"scheduled twice (gaps {gaps}):\n{described}"
    spans = [(parse_time(r["startedAt"]), parse_time(r["finishedAt"])) for r in timeline]
    for (_, ended), (began, _) in itertools.pairwise(spans):
        assert ended is not None and began is not None and ended <= began, (
            f"runs overlap:\n{described}"
        )

    # Exactly one process holds the scheduler's lock: its session belongs to A or to B.
    holders = await scheduler_lock_holders(cluster)
    assert len(holders) == 1, f"scheduler lock held by sessions on ports {holders}"
    pids = {c.name: c.process.pid for c in cluster.consoles if c.process is not None}
    owners = owner_of_local_port(holders[0], pids)
    print(f"the scheduler lock is held by {owners} (session port {holders[0]}, pids {pids})")
    if sys.platform == "linux":
        assert len(owners) == 1, f"the scheduler lock's session is owned by {owners or 'nobody'}"

    # Where sync runs are counted, the two processes together count each finished run once.
    async with httpx.AsyncClient(timeout=5) as http:
        counted = [
            sync_runs_counted((await http.get(c.url + "/metrics", headers=METRICS)).text)
            for c in cluster.consoles
        ]
    print(f"msp_sync_runs_total on A and B: {counted}")
    if any(counted):
        assert sum(counted) == len(timeline), (counted, described)


async def test_metrics_sum_every_worker(scale_out_database, tmp_path):
    """`serve --workers 2`: /metrics counts what every worker served, whichever one answers."""
    env = console_env(scale_out_database, "http://127.0.0.1:1")
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    env["TMPDIR"] = str(tmp_path)  # where serve makes the workers' metrics folder
    console = Console("two workers", free_port(), tmp_path / "workers.log")
    await start_console(console, env, "--workers", "2")
    try:
        await wait_ready([console])
        requests = 60
        for _ in range(requests):  # a connection each, so that both workers take some
            async with httpx.AsyncClient() as http:
                response = await http.post(
                    console.url + "/graphql", json={"query": "query Probe { __typename }"}
                )
                assert response.status_code == 200
        counted_by = {path.name for path in tmp_path.glob("msp-console-metrics-*/counter_*.db")}
        assert len(counted_by) >= 2, f"one worker served everything: {counted_by}"
        expected = f'msp_graphql_requests_total{{operation="Probe",outcome="ok"}} {requests}.0'
        for _ in range(6):
            async with httpx.AsyncClient() as http:
                assert expected in (await http.get(console.url + "/metrics", headers=METRICS)).text
    finally:
        await stop_console(console)

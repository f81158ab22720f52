"""What the benchmarks share: a database to fill, a console served by a real uvicorn in a
subprocess, a closed-loop load generator, and percentiles."""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

BENCH_SECRET = "bench-secret-key-0123456789-abcdefghijklmnop"


def free_port() -> int:
    with contextlib.closing(socket.socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def database(url: str | None) -> Iterator[str]:
    """The given database URL, or a temporary SQLite file."""
    if url:
        yield url
        return
    with tempfile.TemporaryDirectory() as folder:
        yield f"sqlite://{Path(folder) / 'bench.db'}"


@contextlib.contextmanager
def console(database_url: str, workers: int = 1, factory: str | None = None) -> Iterator[str]:
    """The console in a subprocess (`msp-console serve`, or uvicorn serving an app `factory`
    such as "tests.bench.graphql_overhead:bench_app"); yields its base URL once it listens."""
    port = free_port()
    environ = {
        **os.environ,
        "DATABASE_URL": database_url,
        "MSP_CONSOLE_SECRET_KEY": BENCH_SECRET,
        "MSP_CONSOLE_SYNC_INTERVAL": "100000000",
    }
    served = ["server", "serve"] if factory is None else ["uvicorn", factory, "--factory"]
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            *served,
            "--port",
            str(port),
            "--workers",
            str(workers),
            "--log-level",
            "warning",
        ],
        env=environ,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", port), timeout=0.2),
            ):
                break
            if process.poll() is not None:
                raise RuntimeError("the console exited during start")
            time.sleep(0.1)
        yield url
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()


def machine_speed() -> str:
    """How fast this machine runs plain Python, the best of three runs of a fixed loop: printed
    beside a benchmark's figures so that figures taken on different machines can be compared
    (one twice as slow doubles every CPU-bound figure)."""
    best = math.inf
    for _ in range(3):
        started, total = time.perf_counter(), 0
        for number in range(10_000_000):
            total += number
        best = min(best, time.perf_counter() - started)
    load = ", ".join(f"{n:.1f}" for n in os.getloadavg())
    return (
        f"machine: {best:.2f} s for 10,000,000 additions in Python; load average {load} "
        f"on {os.cpu_count()} cores"
    )


class LoopStalls:
    """How long the event loop went without running other tasks while something ran on it:
    a ticker sleeps `tick` seconds again and again and records how late it woke. A request
    served by the same worker waits that long (`longest`: the worst wait, in seconds)."""

    def __init__(self, tick: float = 0.005) -> None:
        self.tick = tick
        self.longest = 0.0
        self._task: asyncio.Task[None] | None = None

    async def _watch(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            due = loop.time() + self.tick
            await asyncio.sleep(self.tick)
            self.longest = max(self.longest, loop.time() - due)

    def __enter__(self) -> LoopStalls:
        self._task = asyncio.create_task(self._watch())
        return self

    def __exit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()


def percentile(values: list[float], p: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


@dataclass
class Load:
    name: str
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    errors: int = 0

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.seconds if self.seconds else 0.0

    def add(self, other: Load) -> None:
        self.seconds += other.seconds
        self.latencies += other.latencies
        self.errors += other.errors

    def line(self, extra: str = "") -> str:
        p50 = percentile(self.latencies, 50) * 1000
        p99 = percentile(self.latencies, 99) * 1000
        return (
            f"{self.name:<44} {self.rate:8.1f} req/s   p50 {p50:7.1f} ms   p99 {p99:7.1f} ms"
            f"   errors {self.errors}{extra}"
        )


async def closed_loop(
    name: str,
    request: Callable[[aiohttp.ClientSession, int], Awaitable[bool]],
    *,
    concurrency: int,
    seconds: float,
    warmup: float = 1.0,
) -> Load:
    """`concurrency` clients each sending the next request as soon as the last one answered;
    the first `warmup` seconds are not counted (caches, connection pools)."""
    load = Load(name)
    measuring = time.perf_counter() + warmup
    deadline = measuring + seconds
    # a connection per request: with several workers the kernel spreads connections, and a
    # handful of keep-alive ones could all land on one worker
    connector = aiohttp.TCPConnector(limit=concurrency, force_close=True)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def client(worker: int) -> None:
            n = 0
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                ok = await request(session, worker * 1_000_000 + n)
                n += 1
                if started < measuring:
                    continue
                if ok:
                    load.latencies.append(time.perf_counter() - started)
                else:
                    load.errors += 1

        await asyncio.gather(*(client(w) for w in range(concurrency)))
        load.seconds = time.perf_counter() - measuring
    return load


async def graphql(
    session: aiohttp.ClientSession, url: str, token: str | None, query: str, variables: dict
) -> dict:
    headers = {"authorization": f"Bearer {token}"} if token else {}
    async with session.post(
        f"{url}/graphql", json={"query": query, "variables": variables}, headers=headers
    ) as response:
        return await response.json()


async def login(session: aiohttp.ClientSession, url: str, email: str, password: str) -> str:
    """A session token of an account's owner, signed in through EBA."""
    body = await graphql(
        session,
        url,
        None,
        "mutation($i: LoginInput!) { login(input: $i) { token } }",
        {"i": {"email": email, "password": password, "via": "EBA"}},
    )
    return str(body["data"]["login"]["token"])

"""Agent API benchmark: one console agent process under many simulated agents.

    python -m tests.bench.agents [--agents 50000] [--interval 60] [--duration 300]
                                 [--enrol-concurrency 64] [--database-url postgres://...]

Prepares a database (a temporary SQLite file, or a new database on the PostgreSQL server of
`--database-url`, dropped at the end), built by the migrations like every test database, with
one instance, customer and installer (the test suite's own tree); starts uvicorn serving the
agent app in a subprocess; enrols the agents with `simulate_agents` (`--enrol-concurrency` at
once) and keeps them checking in; prints the enrolment rate, the sustained check-in rate,
latency percentiles, the server's CPU use in each phase, and checks that the check-ins reached
the database. Check-in capacity: a short `--interval` (5,000 agents every second asks for
5,000/s) shows the most one process sustains.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from tortoise import Tortoise
from tortoise.migrations.api import migrate

from server.agents.simulate import Report, run_loop, simulate_agents
from server.domain.installers import create_installer
from server.models.db import fetch_value, normalize_url, tortoise_config
from server.settings import Settings
from tests.conftest import _postgres_database

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


async def prepare(database_url: str) -> str:
    """Schema, one instance with a customer, and an installer for it; returns its token."""
    from tests.agents.conftest import build_tree

    await migrate(config=tortoise_config(database_url))
    await Tortoise.close_connections()
    await Tortoise.init(config=tortoise_config(database_url), _enable_global_fallback=True)
    try:
        tree = await build_tree()
        _, token = await create_installer(tree.scope, company_id=tree.customer.id)
        return token
    finally:
        await Tortoise.close_connections()


async def stored_since(database_url: str, since: datetime) -> tuple[int, int]:
    """(computers, computers with a check-in stored after `since`)."""
    await Tortoise.init(config=tortoise_config(database_url), _enable_global_fallback=True)
    try:
        total = await fetch_value("SELECT COUNT(*) FROM computer")
        fresh = await fetch_value(
            "SELECT COUNT(*) FROM computer WHERE last_connected_at >= ?", [since]
        )
        return int(total), int(fresh)
    finally:
        await Tortoise.close_connections()


def serve(args: argparse.Namespace) -> None:
    """The server side: uvicorn serving only the agent API (run in the subprocess)."""
    import uvicorn

    from server.agents import create_agent_app
    from server.connection_limits import uvicorn_options

    settings = Settings(
        database_url=args.database_url,
        checkin_interval=int(args.interval),
        agent_requests_per_minute=args.requests_per_minute,
        # every simulated agent enrols at once, from one address, with one installer
        enrolment_burst=max(args.agents, Settings().enrolment_burst),
        public_agent_url=f"http://127.0.0.1:{args.port}/agent/v1",
    )
    uvicorn.run(
        create_agent_app(settings),
        host="127.0.0.1",
        port=args.port,
        log_level="warning",
        access_log=False,
        loop="uvloop",
        backlog=4096,
        timeout_graceful_shutdown=20,
        **uvicorn_options(settings),  # the protocol and limits `serve` runs with
    )


def wait_for_port(port: int, process: subprocess.Popen[bytes], limit: float = 30.0) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("the server did not start listening")


@contextlib.contextmanager
def bench_database(url: str | None, keep: bool) -> Iterator[str]:
    """A new database on the PostgreSQL server of `url` (dropped after, as the suite's are),
    or a temporary SQLite file."""
    if url and normalize_url(url).startswith("postgres://"):
        databases = _postgres_database(normalize_url(url))
        try:
            yield next(databases)
        finally:
            databases.close()
        return
    folder = tempfile.mkdtemp(prefix="msp-bench-")
    try:
        yield url or f"sqlite://{folder}/bench.db"
    finally:
        if not keep:
            shutil.rmtree(folder, ignore_errors=True)


def bench(args: argparse.Namespace) -> Report:
    with bench_database(args.database_url or os.environ.get("DATABASE_URL"), args.keep) as url:
        return _bench(args, url)


def _bench(args: argparse.Namespace, database_url: str) -> Report:
    token = run_loop(prepare(database_url))
    port = args.port or free_port()
    command = [
        sys.executable, "-m", "tests.bench.agents", "--serve", "--port", str(port),
        "--database-url", database_url, "--interval", str(args.interval),
        "--requests-per-minute", str(args.requests_per_minute), "--agents", str(args.agents),
    ]  # fmt: skip
    server = subprocess.Popen(command, cwd=Path(__file__).resolve().parents[2])
    try:
        wait_for_port(port, server)
        print(f"server pid {server.pid} on port {port}, database {database_url}")
        marks: dict[str, tuple[float, float]] = {"enrolment": (cpu_seconds(server.pid), 0.0)}

        def mark() -> None:
            marks["checkins"] = (cpu_seconds(server.pid), time.monotonic())

        report = run_loop(
            simulate_agents(
                f"http://127.0.0.1:{port}/agent/v1",
                token,
                args.agents,
                args.interval,
                args.duration,
                concurrency=args.concurrency,
                enrol_concurrency=args.enrol_concurrency,
                progress_every=args.progress_every,
                on_checkins=mark,
            )
        )
        enrol_cpu = marks["checkins"][0] - marks["enrolment"][0]
        cpu = cpu_seconds(server.pid) - marks["checkins"][0]
        wall = time.monotonic() - marks["checkins"][1]
        checkin_phase_start = datetime.now(UTC).timestamp() - report.duration
    finally:
        server.send_signal(signal.SIGTERM)  # a clean shutdown writes every buffered check-in
        server.wait(30)
    print()
    print(report.summary())
    print(f"server CPU, enrolment phase: {enrol_cpu:.1f} s in {report.enrol_seconds:.1f} s")
    print(f"server CPU, check-in phase: {cpu:.1f} s in {wall:.1f} s = {cpu / wall:.2f} cores")
    since = datetime.fromtimestamp(checkin_phase_start, UTC)
    total, fresh = run_loop(stored_since(database_url, since))
    print(f"stored: {total} computers, {fresh} with a check-in stored during the check-in phase")
    enrol_rate = report.enrolled / report.enrol_seconds if report.enrol_seconds else 0.0
    print(
        f"ENROLMENT {enrol_rate:.0f}/s with {args.enrol_concurrency} clients, "
        f"{enrol_cpu * 1000 / max(1, report.enrolled):.2f} ms of server CPU each"
    )
    print(f"SUSTAINED {report.rate:.1f} check-ins/s, p99 {report.latency_ms(99):.1f} ms")
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.agents", description=__doc__)
    parser.add_argument("--agents", type=int, default=50_000)
    parser.add_argument("--interval", type=float, default=60.0)
    parser.add_argument("--duration", type=float, default=300.0)
    parser.add_argument("--concurrency", type=int, default=256, help="check-ins in flight")
    parser.add_argument("--enrol-concurrency", type=int, default=64, help="enrolments in flight")
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--progress-every", type=float, default=10.0)
    parser.add_argument("--requests-per-minute", type=int, default=30)
    parser.add_argument("--keep", action="store_true", help="keep the temporary SQLite database")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        serve(args)
        return 0
    report = bench(args)
    return 0 if report.checkins and not report.errors else 1


if __name__ == "__main__":
    sys.exit(main())

"""`msp-console simulate-agents`: enrol N simulated agents, then keep them checking in.

Each agent checks in every `interval` seconds (with jitter, first check-ins spread over one
interval), for `duration` seconds; at the end it reports the achieved rate, latency percentiles
and errors by kind. One aiohttp session, at most `concurrency` requests in flight. Like a real
agent, each one presents the agent token it holds when it enrols again (`--state-file` keeps
them between runs), so a second run continues the same computers instead of duplicating them.
"""

from __future__ import annotations

import argparse
import asyncio
import heapq
import math
import os
import random
import sys
import time
from collections import Counter
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson

OPERATING_SYSTEMS = ("Windows 11 Pro", "Windows 10 Pro", "Windows Server 2022", "Ubuntu 24.04",
                     "macOS 15")  # fmt: skip
AGENT_VERSION = "11.1.2039.0"


def percentile(sorted_values: list[float], p: float) -> float:
    """The nearest-rank percentile of already sorted values (0 for none)."""
    if not sorted_values:
        return 0.0
    rank = max(1, math.ceil(p / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


@dataclass
class Report:
    agents: int
    interval: float
    duration: float = 0.0  # seconds of the check-in phase
    enrolled: int = 0
    enrol_seconds: float = 0.0
    checkins: int = 0  # answered 200
    late: int = 0  # sent more than a second after they were due (the simulator fell behind)
    latencies: list[float] = field(default_factory=list, repr=False)  # seconds, successful ones
    enrol_latencies: list[float] = field(default_factory=list, repr=False)
    errors: Counter[str] = field(default_factory=Counter)

    @property
    def target_rate(self) -> float:
        return self.enrolled / self.interval if self.interval else 0.0

    @property
    def rate(self) -> float:
        return self.checkins / self.duration if self.duration else 0.0

    def latency_ms(self, p: float) -> float:
        return percentile(sorted(self.latencies), p) * 1000

    def summary(self) -> str:
        ordered = sorted(self.latencies)
        enrol = sorted(self.enrol_latencies)
        lines = [
            f"enrolled {self.enrolled}/{self.agents} agents in {self.enrol_seconds:.1f} s "
            f"({self.enrolled / self.enrol_seconds if self.enrol_seconds else 0:.0f}/s, "
            f"p99 {percentile(enrol, 99) * 1000:.1f} ms)",
            f"check-ins: {self.checkins} in {self.duration:.1f} s = {self.rate:.1f}/s "
            f"(target {self.target_rate:.1f}/s), {self.late} sent late",
            "latency ms: "
            + "  ".join(f"p{p:g} {percentile(ordered, p) * 1000:.1f}" for p in (50, 95, 99, 99.9))
            + f"  max {(ordered[-1] if ordered else 0) * 1000:.1f}",
            "errors: "
            + (", ".join(f"{kind} {n}" for kind, n in self.errors.most_common()) or "none"),
        ]
        return "\n".join(lines)


def _error_kind(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timeout"
    if isinstance(exc, aiohttp.ClientConnectionError):
        return "connection"
    return f"error:{type(exc).__name__}"


async def simulate_agents(
    url: str,
    installer_token: str,
    agents: int = 100,
    interval: float = 60.0,
    duration: float = 60.0,
    *,
    concurrency: int = 256,
    enrol_concurrency: int | None = None,
    jitter: float = 0.1,
    prefix: str = "sim",
    change_rate: float = 0.01,
    request_timeout: float = 10.0,
    progress: Callable[[str], None] | None = print,
    progress_every: float = 5.0,
    seed: int | None = None,
    on_checkins: Callable[[], None] | None = None,
    held_tokens: MutableMapping[str, str] | None = None,
) -> Report:
    """Enrol `agents` agents at `url` (the agent API base, ".../agent/v1") with one installer
    token, then keep them checking in every `interval` s for `duration` s; returns the figures.

    Hardware ids are `<prefix>-<n>`. `held_tokens` (hardware id -> agent token) holds what the
    agents hold: a token found there is presented at enrolment, so running again with the same
    prefix and tokens re-enrols the same computers (without them, the console makes
    duplicates); the new tokens are put back. `change_rate` is the share of check-ins that
    report a changed protection status. `on_checkins` is called when the check-in phase
    starts (after enrolment). `enrol_concurrency` enrolments are in flight at once
    (`concurrency`, the check-ins in flight, when None).
    """
    rng = random.Random(seed)
    base = url.rstrip("/")
    report = Report(agents=agents, interval=interval)
    tokens: list[str | None] = [None] * agents
    say = progress or (lambda _: None)
    connector = aiohttp.TCPConnector(limit=concurrency, limit_per_host=concurrency)
    client_timeout = aiohttp.ClientTimeout(total=request_timeout)
    loop = asyncio.get_running_loop()

    async with aiohttp.ClientSession(connector=connector, timeout=client_timeout) as session:
        # enrolment
        next_index = iter(range(agents))
        enrol_headers = {"Authorization": f"Bearer {installer_token}",
                         "Content-Type": "application/json"}  # fmt: skip
        started = loop.time()

        held = held_tokens if held_tokens is not None else {}

        async def enrol_worker() -> None:
            for i in next_index:
                hardware_id = f"{prefix}-{i:07d}"
                fields = {
                    "hardwareId": hardware_id,
                    "hostname": f"{prefix}-pc-{i:07d}",
                    "os": OPERATING_SYSTEMS[i % len(OPERATING_SYSTEMS)],
                    "agentVersion": AGENT_VERSION,
                }
                if hardware_id in held:
                    fields["agentToken"] = held[hardware_id]
                body = orjson.dumps(fields)
                t0 = time.perf_counter()
                try:
                    async with session.post(
                        f"{base}/enroll", data=body, headers=enrol_headers
                    ) as response:
                        raw = await response.read()
                        if response.status != 201:
                            report.errors[f"enroll:http_{response.status}"] += 1
                            continue
                        tokens[i] = held[hardware_id] = orjson.loads(raw)["agentToken"]
                        report.enrolled += 1
                        report.enrol_latencies.append(time.perf_counter() - t0)
                except Exception as exc:
                    report.errors[f"enroll:{_error_kind(exc)}"] += 1

        async def enrol_progress() -> None:
            while True:
                await asyncio.sleep(progress_every)
                elapsed = loop.time() - started
                say(f"enrolling: {report.enrolled}/{agents} "
                    f"({report.enrolled / elapsed:.0f}/s)")  # fmt: skip

        ticker = asyncio.create_task(enrol_progress())
        try:
            enrolling = min(enrol_concurrency or concurrency, agents) or 1
            await asyncio.gather(*(enrol_worker() for _ in range(enrolling)))
        finally:
            ticker.cancel()
        report.enrol_seconds = loop.time() - started
        say(f"enrolled {report.enrolled}/{agents} in {report.enrol_seconds:.1f} s")

        # check-ins
        if on_checkins is not None:
            on_checkins()
        start = loop.time()
        end = start + duration
        schedule = [(start + rng.uniform(0, interval), i) for i, t in enumerate(tokens) if t]
        heapq.heapify(schedule)
        queue: asyncio.Queue[tuple[float, int] | None] = asyncio.Queue(concurrency * 2)
        headers = [
            {"Authorization": f"Bearer {t}", "Content-Type": "application/json"} if t else {}
            for t in tokens
        ]
        steady = {
            i: orjson.dumps({
                "hostname": f"{prefix}-pc-{i:07d}",
                "os": OPERATING_SYSTEMS[i % len(OPERATING_SYSTEMS)],
                "agentVersion": AGENT_VERSION,
                "protectionStatus": "OK",
            })
            for i, t in enumerate(tokens) if t
        }  # fmt: skip
        changed = orjson.dumps({"protectionStatus": "WARNING"})

        async def dispatch() -> None:
            while schedule:
                due, i = schedule[0]
                if due >= end:
                    break
                now = loop.time()
                if due > now:
                    await asyncio.sleep(due - now)
                    continue
                heapq.heappop(schedule)
                await queue.put((due, i))
            for _ in range(concurrency):
                await queue.put(None)

        async def checkin_worker() -> None:
            while (item := await queue.get()) is not None:
                due, i = item
                if loop.time() - due > 1.0:
                    report.late += 1
                body = changed if rng.random() < change_rate else steady[i]
                t0 = time.perf_counter()
                try:
                    async with session.post(
                        f"{base}/checkin", data=body, headers=headers[i]
                    ) as response:
                        await response.read()
                        if response.status == 200:
                            report.checkins += 1
                            report.latencies.append(time.perf_counter() - t0)
                        else:
                            report.errors[f"checkin:http_{response.status}"] += 1
                except Exception as exc:
                    report.errors[f"checkin:{_error_kind(exc)}"] += 1
                spread = rng.uniform(1 - jitter, 1 + jitter) if jitter else 1.0
                heapq.heappush(schedule, (due + interval * spread, i))

        async def checkin_progress() -> None:
            seen, window_start = 0, start
            while True:
                await asyncio.sleep(progress_every)
                now = loop.time()
                recent = sorted(report.latencies[seen:])
                window = len(recent)
                say(
                    f"[{now - start:5.0f} s] check-ins {report.checkins} "
                    f"({window / (now - window_start):.0f}/s now), "
                    f"p99 {percentile(recent, 99) * 1000:.1f} ms, "
                    f"errors {sum(report.errors.values())}, late {report.late}"
                )
                seen, window_start = len(report.latencies), now

        ticker = asyncio.create_task(checkin_progress())
        try:
            await asyncio.gather(dispatch(), *(checkin_worker() for _ in range(concurrency)))
        finally:
            ticker.cancel()
        report.duration = loop.time() - start
    return report


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--installer-token", required=True, help="an installer's token")
    parser.add_argument("--agents", type=int, default=100, help="agents to simulate (100)")
    parser.add_argument("--interval", type=float, default=60.0, help="check-in interval, s (60)")
    parser.add_argument(
        "--url", default=None, help="agent API base URL (MSP_CONSOLE_PUBLIC_AGENT_URL)"
    )
    parser.add_argument("--duration", type=float, default=60.0, help="check-in phase, s (60)")
    parser.add_argument("--concurrency", type=int, default=256, help="requests in flight (256)")
    parser.add_argument("--jitter", type=float, default=0.1, help="interval jitter share (0.1)")
    parser.add_argument("--prefix", default="sim", help="hardware id prefix (sim)")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument(
        "--state-file",
        type=Path,
        default=None,
        help="where the agents keep their tokens between runs (JSON), so that running again "
        "re-enrols the same computers",
    )


def run(args: argparse.Namespace) -> int:
    """Run the simulation the parsed arguments describe; prints progress and the report."""
    url = args.url
    if url is None:
        from server.settings import Settings

        url = Settings.from_env().public_agent_url
    held = load_tokens(args.state_file)
    report = run_loop(
        simulate_agents(
            url,
            args.installer_token,
            args.agents,
            args.interval,
            args.duration,
            concurrency=args.concurrency,
            jitter=args.jitter,
            prefix=args.prefix,
            seed=args.seed,
            held_tokens=held,
        )
    )
    save_tokens(args.state_file, held)
    print(report.summary())
    return 0 if report.enrolled else 1


def load_tokens(path: Path | None) -> dict[str, str]:
    """The agent tokens a previous run kept (none without a file)."""
    if path is None or not path.exists():
        return {}
    data = orjson.loads(path.read_bytes())
    if not isinstance(data, dict):
        raise SystemExit(f"{path}: expected a JSON object of hardware id -> agent token")
    return {str(k): str(v) for k, v in data.items()}


def save_tokens(path: Path | None, held: dict[str, str]) -> None:
    """Keep the agents' tokens for the next run, readable by this user only (they are
    credentials)."""
    if path is None:
        return
    partial = path.with_name(path.name + ".new")
    descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as out:
        out.write(orjson.dumps(held))
    partial.replace(path)


def run_loop(coroutine: Any) -> Any:
    """Run a coroutine on uvloop when it is installed."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover
        return asyncio.run(coroutine)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coroutine)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="msp-console simulate-agents", description=__doc__)
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())

"""`simulate-agents` against a real server: it enrols, checks in and reports."""

from __future__ import annotations

import argparse
from typing import Any

from tortoise.context import TortoiseContext

from server.agents.simulate import add_arguments, percentile, simulate_agents
from server.models import Computer

from .conftest import Tree, start_agent_server


async def test_simulated_agents_enrol_check_in_and_are_reported(
    database: TortoiseContext, tree: Tree, installer: Any
) -> None:
    server = await start_agent_server(agent_requests_per_minute=1000)
    lines: list[str] = []
    try:
        report = await simulate_agents(
            server.url, installer[1], agents=20, interval=0.5, duration=1.6,
            concurrency=8, progress=lines.append, progress_every=0.5, seed=1,
        )  # fmt: skip
    finally:
        await server.stop()
    assert report.enrolled == 20 and not report.errors
    assert 40 <= report.checkins <= 80
    assert report.rate > 20 and report.latency_ms(99) > 0
    assert any(line.startswith("[") for line in lines)
    assert "check-ins:" in report.summary() and "errors: none" in report.summary()
    assert await Computer.filter(instance_id=tree.instance.id).count() == 20


async def test_errors_are_reported_by_kind(database: TortoiseContext) -> None:
    server = await start_agent_server()
    try:
        report = await simulate_agents(
            server.url, "inst_wrong", agents=3, interval=1, duration=0.1, progress=None
        )
    finally:
        await server.stop()
    assert report.enrolled == 0 and report.errors == {"enroll:http_401": 3}


def test_the_command_line_arguments() -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["--installer-token", "T", "--agents", "5", "--interval", "2"])
    assert (args.installer_token, args.agents, args.interval, args.url) == ("T", 5, 2.0, None)
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.0 and percentile([], 99) == 0.0

"""`simulate-agents` against a real server: it enrols, checks in and reports."""

from __future__ import annotations

import argparse
import stat
from pathlib import Path
from typing import Any

from server.agents.simulate import (
    add_arguments,
    load_tokens,
    percentile,
    save_tokens,
    simulate_agents,
)
from server.models import Computer

from .conftest import Tree, start_agent_server


async def test_simulated_agents_enrol_check_in_and_are_reported(
    database: None, tree: Tree, installer: Any
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
    # every agent's first check-in falls in the first interval; how many follow depends on the
    # machine's speed (a benchmark's business), at most one per agent and interval
    assert 20 <= report.checkins <= 80
    assert report.rate > 0 and report.latency_ms(99) > 0
    assert any(line.startswith("[") for line in lines)
    assert "check-ins:" in report.summary() and "errors: none" in report.summary()
    assert await Computer.filter(instance_id=tree.instance.id).count() == 20


async def test_errors_are_reported_by_kind(database: None) -> None:
    server = await start_agent_server()
    try:
        report = await simulate_agents(
            server.url, "inst_wrong", agents=3, interval=1, duration=0.1, progress=None
        )
    finally:
        await server.stop()
    assert report.enrolled == 0 and report.errors == {"enroll:http_401": 3}


async def test_simulated_agents_run_again_continue_the_same_computers(
    database: None, tree: Tree, installer: Any, tmp_path: Path
) -> None:
    server = await start_agent_server(agent_requests_per_minute=1000)
    state = tmp_path / "tokens.json"
    try:
        for run in range(2):
            held = load_tokens(state)
            report = await simulate_agents(
                server.url, installer[1], agents=5, interval=1, duration=0.1, progress=None,
                held_tokens=held,
            )  # fmt: skip
            assert report.enrolled == 5 and not report.errors, (run, report.errors)
            save_tokens(state, held)
    finally:
        await server.stop()
    computers = await Computer.filter(instance_id=tree.instance.id)
    assert len(computers) == 5 and all(c.duplicate_of_id is None for c in computers)  # type: ignore[attr-defined]
    assert stat.S_IMODE(state.stat().st_mode) == 0o600
    assert sorted(load_tokens(state)) == [f"sim-{i:07d}" for i in range(5)]


def test_the_command_line_arguments() -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["--installer-token", "T", "--agents", "5", "--interval", "2"])
    assert (args.installer_token, args.agents, args.interval, args.url) == ("T", 5, 2.0, None)
    assert args.state_file is None
    args = parser.parse_args(["--installer-token", "T", "--state-file", "agents.json"])
    assert args.state_file == Path("agents.json")
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.0 and percentile([], 99) == 0.0

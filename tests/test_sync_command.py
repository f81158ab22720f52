"""`msp-console sync`, run as the command it is, against the test database and a simulator."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from server.models import SyncRun
from server.models.enums import SyncState
from server.settings import Settings
from server.upstream.simulator import Simulator, UpstreamTree
from tests.conftest import LOCAL_UPSTREAM, TEST_SECRET
from tests.sync_support import connected_tenant, console_tree

ROOT = Path(__file__).resolve().parents[1]


async def msp_console(settings: Settings, *args: str) -> tuple[int, str]:
    env = {
        **os.environ,
        "DATABASE_URL": settings.database_url,
        "MSP_CONSOLE_SECRET_KEY": TEST_SECRET,
        "MSP_CONSOLE_UPSTREAM_ALLOWED_HOSTS": ",".join(LOCAL_UPSTREAM),
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "server",
        *args,
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode is not None
    return process.returncode, output.decode()


async def test_the_sync_command_syncs_an_instance_and_prints_its_counters(
    app: object, settings: Settings
) -> None:
    async with Simulator(UpstreamTree.generate(30, seed=4)) as sim:
        owner = await connected_tenant(None, sim)
        code, output = await msp_console(settings, "sync", "--instance", str(owner.instance_id))
    assert code == 0, output
    assert f"instance {owner.instance_id} run" in output and "SUCCEEDED" in output, output
    assert "30 seen" in output and "created" in output
    run = await SyncRun.get(instance_id=owner.instance_id)
    assert (run.state, run.trigger) == (SyncState.SUCCEEDED, "cli")
    assert (await console_tree(owner.instance_id or 0))[0] == sim.tree.snapshot()


async def test_the_sync_command_fails_for_an_instance_that_does_not_exist(
    app: object, settings: Settings
) -> None:
    code, output = await msp_console(settings, "sync", "--instance", "999999999")
    assert code == 1
    assert "no such instance" in output

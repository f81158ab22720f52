"""The console against the GraphQL ecosystem's own tools (npm packages in tests/conformance,
installed by `npm ci --prefix tests/conformance`): the GraphQL-over-HTTP audit of graphql-http,
and a subscription through the graphql-ws client."""

import asyncio
import json
import shutil
from pathlib import Path

import pytest

from server.events import SYNC_RUN
from server.models import SyncRun
from tests import factories
from tests.waiting import eventually, subscriptions_open

pytestmark = [pytest.mark.needs_node]
CONFORMANCE = Path(__file__).resolve().parent.parent / "conformance"


async def node(*args: str, seconds: float = 60) -> tuple[int, str, str]:
    executable = shutil.which("node")
    if executable is None or not (CONFORMANCE / "node_modules").exists():
        pytest.fail("node and `npm ci --prefix tests/conformance` are needed for these checks")
    process = await asyncio.create_subprocess_exec(
        executable,
        *args,
        cwd=CONFORMANCE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), seconds)
    return process.returncode or 0, out.decode(), err.decode()


async def test_the_graphql_over_http_audit_finds_no_error_and_no_warning(server_url):
    code, out, _ = await node("audit.mjs", f"{server_url}/graphql")
    summary = json.loads(out)
    assert summary["error"] == [], summary
    assert summary["warn"] == [], summary
    assert code == 0 and summary["ok"] > 20


async def test_the_graphql_ws_client_receives_a_subscription(app, client, server_url):
    owner = await factories.owner(client)
    url = server_url.replace("http://", "ws://") + "/graphql"
    query = "subscription { syncStatus { id state } }"
    run = await SyncRun.create(instance_id=owner.instance_id, trigger="manual")
    before = subscriptions_open()
    process = asyncio.create_task(node("subscribe.mjs", url, owner.token, query, "1", seconds=20))
    listening = await eventually(
        lambda: process.done() or subscriptions_open() > before,
        within=20,  # node, however slow to start
        what="the graphql-ws client subscribed",
    )
    assert listening and not process.done(), process.result() if process.done() else None
    await app.state.bus.publish(SYNC_RUN, {"instance_id": owner.instance_id, "run_id": run.id})
    code, out, err = await process
    assert code == 0, err
    event = json.loads(out.splitlines()[0])
    assert event["data"]["syncStatus"]["state"] == "QUEUED"

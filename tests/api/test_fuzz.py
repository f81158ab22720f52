"""Schemathesis fuzzes the GraphQL endpoint as a signed-in owner for a bounded number of
generated queries and mutations: no 5xx, and no unexpected (masked) internal error."""

import asyncio
import logging
import shutil
import sys
from pathlib import Path

import pytest

from tests import factories


class Collector(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


async def test_generated_operations_never_cause_a_server_error(client, server_url):
    owner = await factories.owner(client)
    await factories.company_tree(owner.instance_id, msps=2, customers_per_msp=2)
    st = shutil.which("st", path=str(Path(sys.executable).parent))
    if st is None:
        pytest.fail("schemathesis (`st`) is needed: pip install -e '.[test]'")
    collector = Collector()
    logging.getLogger("server").addHandler(collector)
    try:
        process = await asyncio.create_subprocess_exec(
            st,
            "run",
            f"{server_url}/graphql",
            "--header",
            f"Authorization: Bearer {owner.token}",
            "--checks",
            "not_a_server_error",
            # signing out would leave the rest of the run unauthenticated
            "--exclude-name",
            "Mutation.logout",
            "--max-examples",
            "15",
            "--generation-deterministic",
            "--no-color",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        out, _ = await asyncio.wait_for(process.communicate(), 400)
    finally:
        logging.getLogger("server").removeHandler(collector)
    report = out.decode()
    assert process.returncode == 0, report[-3000:]
    unexpected = [r.getMessage() for r in collector.records]
    assert unexpected == [], (unexpected, report[-2000:])

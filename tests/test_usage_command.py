"""`msp-console usage-report`, run as the command it is, against the test database."""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import io
import os
import sys
from pathlib import Path

from server.domain import usage
from server.settings import Settings
from tests import factories
from tests.conftest import TEST_SECRET
from tests.sync_support import tenant

ROOT = Path(__file__).resolve().parents[1]


async def usage_report(settings: Settings, *args: str) -> tuple[int, str, str]:
    env = {
        **os.environ,
        "DATABASE_URL": settings.database_url,
        "MSP_CONSOLE_SECRET_KEY": TEST_SECRET,
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "server", "usage-report", *args, cwd=ROOT, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_the_command_writes_the_months_csv(app, settings, tmp_path):
    owner = await tenant()
    tree = await factories.company_tree(owner.instance_id, msps=1, customers_per_msp=2)
    first, second = tree.all_customers
    await factories.license(owner.instance_id, first, seats=4)
    await factories.license(owner.instance_id, second, seats=6, product_code=300)
    for day in (1, 2):
        await usage.record_snapshot(owner.instance_id, dt.datetime(2030, 5, day, tzinfo=dt.UTC))
    code, out, err = await usage_report(
        settings, "--month", "2030-05", "--instance", str(owner.instance_id)
    )
    assert code == 0, err
    rows = list(csv.reader(io.StringIO(out)))  # stdout holds the CSV and nothing else
    assert rows[0] == list(usage.CSV_HEADER)
    assert [(r[1], r[3], r[5], r[6], r[7]) for r in rows[1:]] == [
        (first.name, "101", "8", "4.00", "4"),
        (second.name, "300", "12", "6.00", "6"),
    ]
    target = tmp_path / "usage.csv"
    code, out, err = await usage_report(
        settings, "--month", "2030-05", "--instance", str(owner.instance_id),
        "--output", str(target),
    )  # fmt: skip
    assert code == 0, err
    assert list(csv.reader(io.StringIO(target.read_text()))) == rows


async def test_the_command_refuses_a_bad_month_or_instance(app, settings):
    code, _, err = await usage_report(settings, "--month", "2030-5", "--instance", "1")
    assert code == 2 and "YYYY-MM" in err
    code, _, err = await usage_report(settings, "--month", "2030-05", "--instance", "999999999")
    assert code == 2 and "no instance 999999999" in err

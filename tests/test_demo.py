"""`serve --demo`: its settings allow its own simulator as the MSP Administrator, and what it
syncs from it shows licenses in every state with days of usage."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace

import pytest

from server.demo import (
    DEMO_SEED,
    SIMULATOR_HOST,
    USAGE_HISTORY_DAYS,
    demo_settings,
    seed_usage_history,
)
from server.domain import sync_runs, upstream_connection, usage
from server.domain.access import Scope
from server.domain.errors import InvalidInput
from server.models import License, UsageDay
from server.models.enums import LicenseState
from server.settings import Settings
from server.upstream.simulator import DEFAULT_PASSWORD, DEFAULT_USERNAME, Simulator, UpstreamTree
from tests.sync_support import FAST_CLIENT, tenant


async def test_the_demo_connects_to_its_own_simulator_which_plain_settings_refuse(
    app: object, settings: Settings
) -> None:
    plain = replace(settings, upstream_allowed_hosts=Settings().upstream_allowed_hosts)
    demo = demo_settings(plain)
    assert demo.demo and demo.upstream_allowed_hosts == ("mspapi.eset.com", SIMULATOR_HOST)
    owner = await tenant()
    instance_id = owner.instance_id or 0
    async with Simulator(UpstreamTree.generate(10, seed=1), host=SIMULATOR_HOST) as simulator:
        credentials = (simulator.url, DEFAULT_USERNAME, DEFAULT_PASSWORD)
        with pytest.raises(InvalidInput, match="not allowed"):
            await upstream_connection.connect_msp_administrator(
                None, instance_id, *credentials, plain
            )
        instance = await upstream_connection.connect_msp_administrator(
            None, instance_id, *credentials, demo
        )
        assert instance.upstream_url == simulator.url


async def test_the_demo_shows_licenses_in_every_state_and_days_of_usage(
    app: object, settings: Settings
) -> None:
    owner = await tenant()
    instance_id = owner.instance_id or 0
    async with Simulator(UpstreamTree.generate(150, seed=DEMO_SEED)) as simulator:
        await upstream_connection.connect_msp_administrator(
            None, instance_id, simulator.url, DEFAULT_USERNAME, DEFAULT_PASSWORD, settings
        )
        run = await sync_runs.sync_now(
            instance_id, settings, trigger="demo", make_client=FAST_CLIENT
        )
    assert run.error is None
    await seed_usage_history(instance_id)
    licenses = await License.filter(instance_id=instance_id)
    assert {lic.state for lic in licenses} == set(LicenseState)
    assert any(lic.activated > lic.seats for lic in licenses)
    now = dt.datetime.now(dt.UTC)
    assert any(
        lic.expires_at and now <= lic.expires_at <= now + dt.timedelta(days=30) for lic in licenses
    )
    assert await UsageDay.filter(instance_id=instance_id).count() == USAGE_HISTORY_DAYS + 1
    scope = Scope.for_owner(instance_id, 0, "/")
    rows = [row async for row in usage.report_rows(scope, now.strftime("%Y-%m"))]
    assert rows and all(row.seat_days > 0 for row in rows)

"""`serve --demo`: its settings allow its own simulator as the MSP Administrator."""

from __future__ import annotations

from dataclasses import replace

import pytest

from server.demo import SIMULATOR_HOST, demo_settings
from server.domain import upstream_connection
from server.domain.errors import InvalidInput
from server.settings import Settings
from server.upstream.simulator import DEFAULT_PASSWORD, DEFAULT_USERNAME, Simulator, UpstreamTree
from tests.sync_support import tenant


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

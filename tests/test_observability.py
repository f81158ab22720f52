"""/metrics is not handed to strangers: a bearer token when one is set, 404 without one,
open only when the operator says it is public. A warning a flood repeats is logged once a
minute, with how many more came."""

from __future__ import annotations

import logging
from dataclasses import replace

import httpx
import pytest

from server.app import create_app
from server.observability import ThrottledWarning
from server.settings import Settings

TOKEN = "metrics-scraper-token-0123456789"


def console(settings: Settings, **changes: object) -> httpx.AsyncClient:
    app = create_app(replace(settings, **changes))  # type: ignore[arg-type]
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")


async def test_without_a_token_metrics_are_not_there(app, settings):
    async with console(settings, metrics_token="", metrics_public=False) as http:
        for headers in ({}, {"authorization": "Bearer "}, {"authorization": f"Bearer {TOKEN}"}):
            response = await http.get("/metrics", headers=headers)
            assert response.status_code == 404
            assert "msp_" not in response.text


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "",
        "Bearer",
        "Bearer wrong-token",
        f"Bearer {TOKEN}x",
        f"Bearer {TOKEN[:-1]}",
        f"Basic {TOKEN}",
        f"Bearer {'x' * 100_000}",
        b"Bearer \xe9t\xe9\xff",
    ],
)
async def test_with_a_token_only_its_bearer_reads_metrics(app, settings, authorization):
    async with console(settings, metrics_token=TOKEN) as http:
        headers = {} if authorization is None else {"authorization": authorization}
        refused = await http.get("/metrics", headers=headers)
        assert refused.status_code == 401 and refused.headers["www-authenticate"] == "Bearer"
        assert "msp_" not in refused.text
        allowed = await http.get("/metrics", headers={"authorization": f"Bearer {TOKEN}"})
        assert allowed.status_code == 200 and "msp_graphql_requests_total" in allowed.text


async def test_public_metrics_need_no_token(app, settings):
    for token in ("", TOKEN):
        async with console(settings, metrics_token=token, metrics_public=True) as http:
            response = await http.get("/metrics")
            assert response.status_code == 200 and "msp_graphql_requests_total" in response.text


def test_the_metrics_settings_come_from_the_environment():
    settings = Settings.from_env(
        {"MSP_CONSOLE_METRICS_TOKEN": TOKEN, "MSP_CONSOLE_METRICS_PUBLIC": "on"}
    )
    assert settings.metrics_token == TOKEN and settings.metrics_public is True
    assert Settings().metrics_token == "" and Settings().metrics_public is False


def test_a_repeated_warning_is_logged_once_a_minute_saying_how_many_more_came(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [1000.0]
    warning = ThrottledWarning(logging.getLogger("tests.flood"), "refused", clock=lambda: now[0])
    caplog.set_level(logging.WARNING, logger="tests.flood")

    def lines_after(*times: float) -> list[str]:
        caplog.clear()
        for at in times:
            now[0] = at
            warning.warn()
        return [record.getMessage() for record in caplog.records]

    assert lines_after(1000.0, 1000.0, 1030.0, 1059.9) == ["refused"]
    assert lines_after(1060.0) == ["refused (and 3 more in the 60 s since the previous such line)"]
    assert lines_after(1100.0, 1119.0) == []
    # quiet for long: the next one comes at once, with the ones the quiet hid
    assert lines_after(5000.0) == [
        "refused (and 2 more in the 3940 s since the previous such line)"
    ]
    assert lines_after(5060.0, 5120.0) == ["refused", "refused"]  # none between: a plain line

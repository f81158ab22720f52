"""Settings: read from the environment once, malformed values refused, unsafe defaults refused
outside the demo, and the switches really switch."""

import subprocess
import sys
from dataclasses import replace

import httpx
import pytest

from server.app import create_app
from server.domain.tree_paths import COMPANY_LEVELS_THAT_FIT
from server.settings import DEFAULT_SECRET_KEY, Settings, SettingsError


def test_settings_come_from_the_environment():
    settings = Settings.from_env(
        {
            "DATABASE_URL": "postgres://u@h/db",
            "MSP_CONSOLE_SYNC_INTERVAL": "3600",
            "MSP_CONSOLE_GRAPHIQL": "off",
            "MSP_CONSOLE_CORS_ORIGINS": "https://a.example, https://b.example",
        }
    )
    assert settings.database_url == "postgres://u@h/db" and settings.is_postgres
    assert settings.sync_interval == 3600 and settings.graphiql is False
    assert settings.cors_origins == ("https://a.example", "https://b.example")


@pytest.mark.parametrize("name,value", [("SYNC_INTERVAL", "soon"), ("GRAPHIQL", "maybe")])
def test_a_malformed_setting_is_refused_with_its_name(name, value):
    with pytest.raises(SettingsError, match=f"MSP_CONSOLE_{name}"):
        Settings.from_env({f"MSP_CONSOLE_{name}": value})


def test_only_the_public_msp_administrator_api_is_allowed_by_default():
    defaults = Settings()
    assert defaults.upstream_allowed_hosts == ("mspapi.eset.com",)
    assert defaults.upstream_max_depth == COMPANY_LEVELS_THAT_FIT == 16
    allowed = Settings.from_env({"MSP_CONSOLE_UPSTREAM_ALLOWED_HOSTS": "mspapi.eset.com, [::1]"})
    assert allowed.upstream_allowed_hosts == ("mspapi.eset.com", "[::1]")
    assert (
        Settings.from_env({"MSP_CONSOLE_UPSTREAM_ALLOWED_HOSTS": ""}).upstream_allowed_hosts == ()
    )


@pytest.mark.parametrize(
    ("name", "value", "problem"),
    [
        ("UPSTREAM_ALLOWED_HOSTS", "https://mspapi.eset.com", "without scheme or port"),
        ("UPSTREAM_ALLOWED_HOSTS", "mspapi.eset.com:443", "without scheme or port"),
        ("UPSTREAM_ALLOWED_HOSTS", "mspapi.eset.com,*.eset.com", "not a host name or address"),
        ("UPSTREAM_MAX_BODY_BYTES", "0", "at least 1"),
        ("UPSTREAM_MAX_COMPANIES", "-5", "at least 1"),
        ("UPSTREAM_MAX_DEPTH", "17", "at most 16"),
        ("UPSTREAM_MAX_DEPTH", "0", "at least 1"),
        ("UPSTREAM_MAX_FETCH_SECONDS", "0", "must be positive"),
        ("UPSTREAM_MAX_FETCH_SECONDS", "nan", "must be positive"),
    ],
)
def test_a_wrong_upstream_setting_is_refused_saying_why(name, value, problem):
    with pytest.raises(SettingsError, match=f"MSP_CONSOLE_{name}") as caught:
        Settings.from_env({f"MSP_CONSOLE_{name}": value})
    assert problem in str(caught.value)


@pytest.mark.parametrize(
    "name",
    [
        "LOGIN_ATTEMPTS_PER_MINUTE",
        "LOGIN_ATTEMPTS_PER_ADDRESS_PER_MINUTE",
        "PASSWORD_HASHING_THREADS",
    ],
)
@pytest.mark.parametrize("value", ["0", "-3"])
def test_a_limit_below_one_is_refused_with_its_name(name, value):
    with pytest.raises(SettingsError, match=f"MSP_CONSOLE_{name}"):
        Settings.from_env({f"MSP_CONSOLE_{name}": value})


def test_enrolment_limits_and_installer_lifetime_come_from_the_environment():
    defaults = Settings()
    assert (defaults.enrolment_burst, defaults.enrolments_per_minute) == (5000, 10)
    assert defaults.installer_ttl_days == 30
    settings = Settings.from_env(
        {
            "MSP_CONSOLE_ENROLMENT_BURST": "20000",
            "MSP_CONSOLE_ENROLMENTS_PER_MINUTE": "60",
            "MSP_CONSOLE_INSTALLER_TTL_DAYS": "7",
        }
    )
    assert (settings.enrolment_burst, settings.enrolments_per_minute) == (20000, 60)
    assert settings.installer_ttl_days == 7


def test_connection_limits_come_from_the_environment():
    defaults = Settings()
    assert (defaults.request_header_timeout, defaults.request_body_timeout) == (10.0, 60.0)
    assert (defaults.keep_alive_timeout, defaults.max_header_bytes) == (5, 16_384)
    assert (defaults.max_connections, defaults.websocket_init_timeout) == (1_000, 10.0)
    settings = Settings.from_env(
        {
            "MSP_CONSOLE_REQUEST_HEADER_TIMEOUT": "2.5",
            "MSP_CONSOLE_REQUEST_BODY_TIMEOUT": "30",
            "MSP_CONSOLE_KEEP_ALIVE_TIMEOUT": "15",
            "MSP_CONSOLE_MAX_HEADER_BYTES": "8192",
            "MSP_CONSOLE_MAX_CONNECTIONS": "5000",
            "MSP_CONSOLE_WEBSOCKET_INIT_TIMEOUT": "2.5",
        }
    )
    assert (settings.request_header_timeout, settings.request_body_timeout) == (2.5, 30.0)
    assert (settings.keep_alive_timeout, settings.max_header_bytes) == (15, 8192)
    assert (settings.max_connections, settings.websocket_init_timeout) == (5000, 2.5)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("REQUEST_HEADER_TIMEOUT", "0"),
        ("REQUEST_HEADER_TIMEOUT", "nan"),
        ("REQUEST_HEADER_TIMEOUT", "inf"),
        ("REQUEST_BODY_TIMEOUT", "-1"),
        ("WEBSOCKET_INIT_TIMEOUT", "0"),
        ("WEBSOCKET_INIT_TIMEOUT", "inf"),
        ("WEBSOCKET_INIT_TIMEOUT", "soon"),
        ("KEEP_ALIVE_TIMEOUT", "0"),
        ("MAX_HEADER_BYTES", "0"),
        ("MAX_CONNECTIONS", "-5"),
        ("MAX_CONNECTIONS", "many"),
    ],
)
def test_a_connection_limit_that_would_not_limit_is_refused_with_its_name(name, value):
    with pytest.raises(SettingsError, match=f"MSP_CONSOLE_{name}"):
        Settings.from_env({f"MSP_CONSOLE_{name}": value})


@pytest.mark.parametrize("days", ["0", "-1", "3651", "soon"])
def test_an_installer_lifetime_out_of_range_is_refused(days):
    with pytest.raises(SettingsError, match="MSP_CONSOLE_INSTALLER_TTL_DAYS"):
        Settings.from_env({"MSP_CONSOLE_INSTALLER_TTL_DAYS": days})


def test_the_accounts_hourly_sign_in_limit_and_known_site_days_come_from_the_environment():
    defaults = Settings()
    assert (defaults.login_attempts_per_account_per_hour, defaults.login_known_site_days) == (
        100,
        90,
    )
    settings = Settings.from_env(
        {
            "MSP_CONSOLE_LOGIN_ATTEMPTS_PER_ACCOUNT_PER_HOUR": "50",
            "MSP_CONSOLE_LOGIN_KNOWN_SITE_DAYS": "30",
        }
    )
    assert (settings.login_attempts_per_account_per_hour, settings.login_known_site_days) == (
        50,
        30,
    )


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("LOGIN_ATTEMPTS_PER_ACCOUNT_PER_HOUR", "0"),
        ("LOGIN_KNOWN_SITE_DAYS", "0"),
        ("LOGIN_KNOWN_SITE_DAYS", "3651"),
        ("LOGIN_KNOWN_SITE_DAYS", "forever"),
    ],
)
def test_an_accounts_sign_in_limit_or_known_site_days_out_of_range_is_refused(name, value):
    with pytest.raises(SettingsError, match=f"MSP_CONSOLE_{name}"):
        Settings.from_env({f"MSP_CONSOLE_{name}": value})


def test_the_default_secret_is_refused_outside_the_demo():
    with pytest.raises(SettingsError, match="SECRET_KEY"):
        Settings(secret_key=DEFAULT_SECRET_KEY).check_secure()
    with pytest.raises(SettingsError, match="32 characters"):
        Settings(secret_key="short").check_secure()
    Settings(secret_key=DEFAULT_SECRET_KEY, demo=True).check_secure()


def test_serve_refuses_to_start_with_the_default_secret(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "server", "serve", "--port", "1"],
        env={"DATABASE_URL": f"sqlite://{tmp_path / 'x.db'}", "PATH": ""},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "MSP_CONSOLE_SECRET_KEY" in result.stderr


async def client_for(settings: Settings):
    app = create_app(settings)
    return app, httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")


async def test_introspection_and_graphiql_can_be_turned_off(app, settings):
    closed = replace(settings, introspection=False, graphiql=False)
    _, http = await client_for(closed)
    async with http:
        body = (
            await http.post("/graphql", json={"query": "{ __schema { types { name } } }"})
        ).json()
        assert body["errors"] and "introspection" in body["errors"][0]["message"].lower()
        page = await http.get("/graphql", headers={"accept": "text/html"})
        assert page.status_code == 404

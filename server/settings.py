"""One Settings object, read from the environment once (`DATABASE_URL`, `MSP_CONSOLE_*`)."""

from __future__ import annotations

import datetime as dt
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from server.domain.tree_paths import COMPANY_LEVELS_THAT_FIT

DEFAULT_SECRET_KEY = "insecure-demo-secret-change-me"  # noqa: S105 - refused outside --demo
DEFAULT_INSTALLER_TTL_DAYS = 30
MAX_INSTALLER_TTL_DAYS = 3650
MAX_KNOWN_SITE_DAYS = 3650
_HH_MM = re.compile(r"([01][0-9]|2[0-3]):([0-5][0-9])")


class SettingsError(ValueError):
    """A setting is missing, malformed or unsafe."""


def _parse_bool(raw: str) -> bool:
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    raise SettingsError(f"expected on/off, got {raw!r}")


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything configurable; each field maps to `MSP_CONSOLE_<FIELD>` except `database_url`."""

    database_url: str = field(default_factory=lambda: f"sqlite://{Path.cwd() / 'msp-console.db'}")
    secret_key: str = DEFAULT_SECRET_KEY
    public_agent_url: str = "http://localhost:8000/agent/v1"
    agent_port: int = 0  # 0: the agent API is served only on the main port
    agent_host: str = "0.0.0.0"  # noqa: S104 - agents come from the internet
    sync_interval: int = 86_400
    cors_origins: tuple[str, ...] = ()
    graphiql: bool = True
    introspection: bool = True
    session_ttl: int = 12 * 3600
    checkin_interval: int = 60
    connection_grace: int = 60
    not_connected_after: int = 86_400
    checkin_flush_interval: float = 1.0
    max_query_depth: int = 12
    max_aliases: int = 30
    max_query_tokens: int = 2_000
    max_query_cost: int = 500_000
    max_request_bytes: int = 1_048_576
    max_subscriptions_per_socket: int = 50
    # Connection limits (server.connection_limits), per worker process.
    request_header_timeout: float = 10.0  # request line and headers, from connect or last response
    request_body_timeout: float = 60.0  # the whole body, from the end of the headers
    keep_alive_timeout: int = 5  # an idle connection between requests
    max_header_bytes: int = 16_384  # request line and headers together
    max_connections: int = 1_000  # open connections, websockets included; past it: 503
    websocket_init_timeout: float = 10.0  # from a websocket's acceptance to its connection_init
    persisted_query_bytes: int = 4 * 1_048_576  # per worker, for automatic persisted queries
    login_attempts_per_minute: int = 10  # failed sign-ins of one account from one address
    login_attempts_per_address_per_minute: int = 60  # failed sign-ins from one address, any account
    # Failed sign-ins of one account from the sites it has not signed in from, all together (a
    # botnet's), in a sliding hour; then only its known sites may try (server.domain.throttle).
    login_attempts_per_account_per_hour: int = 100
    login_known_site_days: int = 90  # a site stays known this long after a success from it
    password_hashing_threads: int = 2  # argon2 calls at once per process, 64 MiB each
    trusted_proxies: tuple[
        str, ...
    ] = ()  # whose X-Forwarded-For is believed (server.client_address)
    agent_requests_per_minute: int = 30
    # What the console may ask of an MSP Administrator, and how much of its answers it takes.
    upstream_allowed_hosts: tuple[str, ...] = ("mspapi.eset.com",)
    upstream_max_body_bytes: int = 4_194_304
    upstream_max_companies: int = 100_000
    upstream_max_depth: int = COMPANY_LEVELS_THAT_FIT  # levels, read-only ancestors included
    upstream_max_fetch_seconds: float = 3_600.0
    upstream_max_licenses: int = 1_000_000  # licenses a sync takes, over all companies
    usage_snapshot_at: str = "00:30"  # HH:MM UTC of the daily usage snapshot
    metrics_token: str = ""  # /metrics answers only with this bearer token; 404 when empty
    metrics_public: bool = False  # /metrics answers anyone (behind a private network only)
    # Enrolments per installer token and per client address (each, per process): a burst
    # that lets a deployment tool push an agent to thousands of machines at once (many behind
    # one customer's NAT address), refilling slowly enough that a leaked token cannot mint
    # duplicates without end.
    enrolment_burst: int = 5_000
    enrolments_per_minute: int = 10
    installer_ttl_days: int = DEFAULT_INSTALLER_TTL_DAYS  # for installers created without expiry
    execution_shortcuts: bool = True  # off: Strawberry and graphql-core execute every field
    demo: bool = False

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Read settings from the environment; unknown or malformed values are an error."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        if env.get("DATABASE_URL"):
            values["database_url"] = env["DATABASE_URL"]
        for f in fields(cls):
            raw = env.get(f"MSP_CONSOLE_{f.name.upper()}")
            if raw is None or f.name == "database_url":
                continue
            try:
                values[f.name] = _coerce(f.type, raw)
            except (SettingsError, ValueError) as exc:
                raise SettingsError(f"MSP_CONSOLE_{f.name.upper()}: {exc}") from None
        settings = cls(**values)
        return replace(settings, **overrides) if overrides else settings

    @property
    def usage_snapshot_time(self) -> dt.time:
        """`usage_snapshot_at` as a time of day (UTC); ValueError when it is not HH:MM."""
        found = _HH_MM.fullmatch(self.usage_snapshot_at)
        if found is None:
            raise ValueError(f"not HH:MM: {self.usage_snapshot_at!r}")
        return dt.time(int(found.group(1)), int(found.group(2)))

    @property
    def is_postgres(self) -> bool:
        return self.database_url.startswith(("postgres://", "postgresql://", "asyncpg://"))

    def check_secure(self) -> None:
        """Refuse to serve for real with a secret left at its default."""
        if not self.demo and self.secret_key == DEFAULT_SECRET_KEY:
            raise SettingsError(
                "MSP_CONSOLE_SECRET_KEY is left at its default; set a long random value "
                "(only `serve --demo` may run with the default)"
            )
        if not self.demo and len(self.secret_key) < 32:
            raise SettingsError("MSP_CONSOLE_SECRET_KEY must be at least 32 characters")

    def __post_init__(self) -> None:
        from server.client_address import trusted_networks
        from server.upstream.hosts import normalize_host

        for name in (
            "login_attempts_per_minute",
            "login_attempts_per_address_per_minute",
            "login_attempts_per_account_per_hour",
            "login_known_site_days",
            "password_hashing_threads",
            "upstream_max_body_bytes",
            "upstream_max_companies",
            "upstream_max_depth",
            "upstream_max_licenses",
            "keep_alive_timeout",
            "max_header_bytes",
            "max_connections",
        ):
            if getattr(self, name) < 1:
                raise SettingsError(f"MSP_CONSOLE_{name.upper()} must be at least 1")
        try:
            trusted_networks(self.trusted_proxies)
        except ValueError as exc:
            raise SettingsError(f"MSP_CONSOLE_TRUSTED_PROXIES: {exc}") from None
        for host in self.upstream_allowed_hosts:
            try:
                normalize_host(host)
            except ValueError as exc:
                raise SettingsError(
                    f"MSP_CONSOLE_UPSTREAM_ALLOWED_HOSTS: {exc} (host names or addresses, "
                    "without scheme or port)"
                ) from None
        if self.upstream_max_depth > COMPANY_LEVELS_THAT_FIT:
            raise SettingsError(
                f"MSP_CONSOLE_UPSTREAM_MAX_DEPTH must be at most {COMPANY_LEVELS_THAT_FIT}: "
                "deeper company trees do not fit the database's path columns"
            )
        for name in (
            "upstream_max_fetch_seconds",
            "request_header_timeout",
            "request_body_timeout",
            "websocket_init_timeout",
        ):
            if not 0 < getattr(self, name) < math.inf:  # nan and inf too: no limit at all
                raise SettingsError(f"MSP_CONSOLE_{name.upper()} must be positive and finite")
        try:
            self.usage_snapshot_time  # noqa: B018 - parsed to refuse a malformed value early
        except ValueError:
            raise SettingsError(
                "MSP_CONSOLE_USAGE_SNAPSHOT_AT: expected HH:MM (UTC), got "
                f"{self.usage_snapshot_at!r}"
            ) from None
        if self.login_known_site_days > MAX_KNOWN_SITE_DAYS:
            raise SettingsError(
                f"MSP_CONSOLE_LOGIN_KNOWN_SITE_DAYS: at most {MAX_KNOWN_SITE_DAYS} days"
            )
        if not 1 <= self.installer_ttl_days <= MAX_INSTALLER_TTL_DAYS:
            raise SettingsError(
                f"MSP_CONSOLE_INSTALLER_TTL_DAYS: between 1 and {MAX_INSTALLER_TTL_DAYS} days"
            )


def _coerce(kind: Any, raw: str) -> Any:
    kind = kind if isinstance(kind, str) else getattr(kind, "__name__", str(kind))
    if kind == "bool":
        return _parse_bool(raw)
    if kind == "int":
        return int(raw)
    if kind == "float":
        return float(raw)
    if kind.startswith("tuple"):
        return tuple(part.strip() for part in raw.split(",") if part.strip())
    return raw

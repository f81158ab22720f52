"""Connecting an instance to its MSP Administrator: checking the credentials against it, storing
them (the password encrypted), and opening clients on them within the operator's limits.

Who makes the clients is the caller's choice (`ClientFactory`): `MspAdministratorClient` in
production; tests pass one with short timeouts, benchmarks one that keeps what it made.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from typing import Any

from server.domain.access import Scope
from server.domain.errors import (
    ImportNotAllowed,
    InvalidCredentials,
    InvalidInput,
    NotFound,
    UpstreamFailed,
    UpstreamNotConnected,
)
from server.domain.groups import all_group_path
from server.domain.instances import ALL_GROUP
from server.domain.secrets import decrypt, encrypt
from server.models import Instance
from server.models.enums import Area, Level
from server.settings import Settings
from server.upstream import hosts
from server.upstream.client import (
    MspAdministratorClient,
    UpstreamAuthError,
    UpstreamError,
    UpstreamLimitExceeded,
    UpstreamUnavailable,
    UpstreamUnreachable,
    UpstreamUser,
)
from server.upstream.codes import IMPORTABLE, TYPE_NAMES

log = logging.getLogger(__name__)

ClientFactory = Callable[..., MspAdministratorClient]
"""Makes a client: called as `MspAdministratorClient(url, username, password, **options)` is."""

_LIMIT_SETTINGS = {
    "max_body_bytes": "MSP_CONSOLE_UPSTREAM_MAX_BODY_BYTES",
    "max_companies": "MSP_CONSOLE_UPSTREAM_MAX_COMPANIES",
    "max_depth": "MSP_CONSOLE_UPSTREAM_MAX_DEPTH",
    "max_seconds": "MSP_CONSOLE_UPSTREAM_MAX_FETCH_SECONDS",
    "max_licenses": "MSP_CONSOLE_UPSTREAM_MAX_LICENSES",
}
_CONNECTING = {"timeout": 15.0, "max_retries": 2, "max_backoff_total": 20.0}
"""A person waits on a connect: give up sooner than a run does."""


async def require_sync_write(scope: Scope | None, instance_id: int) -> None:
    """SYNC WRITE on the instance's `All` group (the sync changes the whole tree)."""
    if scope is None:  # the system itself: the command line, the demo
        return
    if scope.instance_id != instance_id:
        raise NotFound("no such instance")
    path = await all_group_path(instance_id)
    scope.require(path or f"/{ALL_GROUP}/", Area.SYNC, Level.WRITE)


def allowed_url(url: str, settings: Settings) -> tuple[str, str]:
    """(the URL to call, its host) when its host is one of `MSP_CONSOLE_UPSTREAM_ALLOWED_HOSTS`;
    checked before any request, at connecting and at every run (the setting may have changed)."""
    try:
        url, host = hosts.base_url(url)
    except ValueError as exc:
        raise InvalidInput(str(exc), "url") from None
    if len(url) > _longest("upstream_url"):
        raise InvalidInput(
            f"the MSP Administrator URL has at most {_longest('upstream_url')} characters", "url"
        )
    if not hosts.is_allowed(host, settings.upstream_allowed_hosts):
        raise InvalidInput(
            f"the MSP Administrator host {host} is not allowed; an operator can allow it in "
            "MSP_CONSOLE_UPSTREAM_ALLOWED_HOSTS",
            "url",
        )
    return url, host


def _longest(field: str) -> int:
    """How many characters an instance's column holds."""
    return int(Instance._meta.fields_map[field].constraints["max_length"])


def limits(settings: Settings) -> dict[str, Any]:
    """The client's limits, from the settings named in `_LIMIT_SETTINGS`."""
    return {
        "max_body_bytes": settings.upstream_max_body_bytes,
        "max_companies": settings.upstream_max_companies,
        "max_depth": settings.upstream_max_depth,
        "max_seconds": settings.upstream_max_fetch_seconds,
    }


def explain(error: UpstreamError) -> str:
    """A client error as a run reports it: a limit names the setting that sets it."""
    if isinstance(error, UpstreamLimitExceeded):
        return f"{error} ({_LIMIT_SETTINGS[error.limit]})"
    return str(error)


def check_importable(user: UpstreamUser) -> None:
    if user.company.type not in IMPORTABLE:
        kind = TYPE_NAMES.get(user.company.type, f"type {user.company.type}")
        raise ImportNotAllowed(
            f"{user.email} belongs to {user.company.name!r} ({kind}); only MSP, Managed MSP "
            "and MSP Manager accounts can be imported"
        )


async def connect_msp_administrator(
    scope: Scope | None,
    instance_id: int,
    url: str,
    username: str,
    password: str,
    settings: Settings,
    *,
    make_client: ClientFactory = MspAdministratorClient,
) -> Instance:
    """Check the credentials against the upstream and store them (the password encrypted with
    the secret key). `scope` None acts as the system (no permission check).

    Failures say what a user can act on and no more: the URL chooses the host, so nothing may
    tell a closed port from a silent one, or quote what some other server answered."""
    await require_sync_write(scope, instance_id)
    url, host = allowed_url(url, settings)
    if not username or not username.strip():
        raise InvalidInput("the username must not be empty", "username")
    if len(username.strip()) > _longest("upstream_username"):
        raise InvalidInput(
            f"the username has at most {_longest('upstream_username')} characters", "username"
        )
    if not password:
        raise InvalidInput("the password must not be empty", "password")
    instance = await Instance.get_or_none(id=instance_id)
    if instance is None:
        raise NotFound("no such instance")
    options = {**_CONNECTING, **limits(settings)}
    try:
        async with make_client(url, username.strip(), password, **options) as client:
            user = await client.current_user()
    except UpstreamAuthError:
        raise InvalidCredentials(
            "the MSP Administrator refused this username and password", "password"
        ) from None
    except UpstreamUnreachable:
        raise UpstreamFailed(f"could not reach the MSP Administrator at {host}", "url") from None
    except UpstreamLimitExceeded as exc:
        raise UpstreamFailed(explain(exc), "url") from None
    except UpstreamUnavailable:
        raise UpstreamFailed(
            f"the MSP Administrator at {host} is unavailable; try again later", "url"
        ) from None
    except UpstreamError as exc:
        log.warning("instance %s: %s is not an MSP Administrator: %s", instance_id, host, exc)
        raise UpstreamFailed(
            f"the server at {host} does not answer like the MSP Administrator API; check the URL",
            "url",
        ) from None
    except ValueError as exc:  # aiohttp refuses some URLs this way
        raise InvalidInput(f"the MSP Administrator URL is not usable: {exc}", "url") from None
    check_importable(user)
    instance.upstream_url = url
    instance.upstream_username = username.strip()
    instance.upstream_password_encrypted = encrypt(settings.secret_key, password)
    instance.upstream_company_id = user.company.public_id
    instance.connected_at = dt.datetime.now(dt.UTC)
    await instance.save(
        update_fields=[
            "upstream_url",
            "upstream_username",
            "upstream_password_encrypted",
            "upstream_company_id",
            "connected_at",
        ]
    )
    log.info(
        "instance %s connected to the MSP Administrator at %s as %s", instance_id, url, username
    )
    return instance


async def connected(instance_id: int) -> Instance:
    """The instance, refused when no MSP Administrator is connected to it."""
    instance = await Instance.get_or_none(id=instance_id)
    if instance is None:
        raise NotFound("no such instance")
    if not (
        instance.upstream_url
        and instance.upstream_username
        and instance.upstream_password_encrypted
    ):
        raise UpstreamNotConnected("no MSP Administrator is connected to this instance")
    return instance


def open_client(
    instance: Instance, settings: Settings, make_client: ClientFactory
) -> MspAdministratorClient:
    """A client on the instance's stored credentials, within the settings' limits; refused
    when its host is no longer allowed or the secret key cannot decrypt the password."""
    url, _ = allowed_url(instance.upstream_url or "", settings)
    try:
        password = decrypt(settings.secret_key, instance.upstream_password_encrypted or "")
    except ValueError as exc:  # the secret key changed since the credentials were stored
        raise UpstreamNotConnected(f"{exc}; connect the MSP Administrator again") from None
    return make_client(url, instance.upstream_username or "", password, **limits(settings))

"""Agent installers: enrolment tokens for a company's group, shown once and stored as a hash."""

from __future__ import annotations

import shlex
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from server.domain import global_ids
from server.domain.access import Scope
from server.domain.errors import InvalidInput, InvalidTransition, NotFound
from server.domain.listing import Listing, sql_in
from server.domain.secrets import hashes_match, new_token, token_hash
from server.domain.tree_paths import path_ids
from server.models import db
from server.models.companies import Company, StaticGroup
from server.models.computers import Installer
from server.models.enums import Area, GroupKind, Level
from server.settings import DEFAULT_INSTALLER_TTL_DAYS, Settings

TOKEN_PREFIX = "inst"  # noqa: S105 - a prefix, not a secret
NAME_MAX = 255
MAX_ENROLMENTS = 1_000_000


def default_name(company: Company) -> str:
    return f"Agent installer for {company.name}"[:NAME_MAX]


async def _target_group(scope: Scope, company: Company, group_id: int | None) -> StaticGroup:
    """The company's own group, or a custom group under it that no other company's group holds."""
    if group_id is None:
        group = await StaticGroup.get_or_none(
            instance_id=scope.instance_id, company_id=company.id, kind=GroupKind.COMPANY
        )
        if group is None:
            raise NotFound("the company has no static group", "companyId")
        return group
    group = await StaticGroup.get_or_none(id=group_id, instance_id=scope.instance_id)
    if group is None or not scope.allows(group.path):
        raise NotFound("no such group", "groupId")
    if group.kind is GroupKind.COMPANY and group.company_id == company.id:
        return group
    if group.kind is not GroupKind.CUSTOM or not group.path.startswith(company.path):
        raise InvalidInput(
            "the group must be the company's group or a custom group in it", "groupId"
        )
    between = path_ids(group.path)[len(path_ids(company.path)) :]
    if await StaticGroup.filter(id__in=between, kind=GroupKind.COMPANY).exists():
        raise InvalidInput("the group belongs to another company", "groupId")
    return group


async def create_installer(
    scope: Scope,
    *,
    company_id: int,
    group_id: int | None = None,
    name: str | None = None,
    expires_at: datetime | None = None,
    max_enrolments: int | None = None,
    ttl_days: int = DEFAULT_INSTALLER_TTL_DAYS,
    created_by_id: int | None = None,
    now: datetime | None = None,
) -> tuple[Installer, str]:
    """Create an installer for a company's group; returns it with its token (shown once).

    Its token travels in scripts and e-mails, so it expires (in `ttl_days` unless `expires_at`
    says otherwise) and may be capped at `max_enrolments` enrolments."""
    now = now or datetime.now(UTC)
    company = await Company.get_or_none(id=company_id, instance_id=scope.instance_id)
    if company is None or not scope.allows(company.path):
        raise NotFound("no such company", "companyId")
    if company.unlinked_at is not None:
        raise InvalidTransition("the company is unlinked", "companyId")
    if company.read_only:
        raise InvalidInput("the company is outside the imported account", "companyId")
    group = await _target_group(scope, company, group_id)
    scope.require(group.path, Area.INSTALLERS, Level.WRITE)
    if name is not None:
        name = name.strip()
        if not name:
            raise InvalidInput("the name must not be blank", "name")
        if len(name) > NAME_MAX:
            raise InvalidInput(f"the name is longer than {NAME_MAX} characters", "name")
    if expires_at is not None:
        if expires_at.tzinfo is None:
            raise InvalidInput("the expiry needs a UTC offset", "expiresAt")
        expires_at = expires_at.astimezone(UTC)
        if expires_at <= now:
            raise InvalidInput("the expiry is in the past", "expiresAt")
    else:
        expires_at = now.astimezone(UTC) + timedelta(days=ttl_days)
    if max_enrolments is not None and not 1 <= max_enrolments <= MAX_ENROLMENTS:
        raise InvalidInput(f"maxEnrolments must be between 1 and {MAX_ENROLMENTS}", "maxEnrolments")
    token = new_token(TOKEN_PREFIX)
    installer = await Installer.create(
        instance_id=scope.instance_id,
        company_id=company.id,
        group_id=group.id,
        name=name or default_name(company),
        token_hash=token_hash(token),
        created_by_id=created_by_id,
        expires_at=expires_at,
        max_enrolments=max_enrolments,
    )
    return installer, token


async def revoke_installer(
    scope: Scope, installer_id: int, now: datetime | None = None
) -> Installer:
    """Revoke an installer: it enrols nothing more (agents it enrolled keep checking in)."""
    installer = await by_id(scope, installer_id)
    if installer is None:
        raise NotFound("no such installer", "installerId")
    await installer.fetch_related("group")
    scope.require(installer.group.path, Area.INSTALLERS, Level.WRITE)
    if installer.revoked_at is None:
        installer.revoked_at = now or datetime.now(UTC)
        await installer.save(update_fields=["revoked_at"])
    return installer


async def revoke_company_installers(company_id: int, now: datetime | None = None) -> int:
    """Revoke every live installer of a company (unlink); runs in the caller's transaction."""
    return await db.execute(
        "UPDATE installer SET revoked_at = ? WHERE company_id = ? AND revoked_at IS NULL",
        [now or datetime.now(UTC), company_id],
    )


def is_usable(installer: Installer, now: datetime | None = None) -> bool:
    now = now or datetime.now(UTC)
    return (
        installer.revoked_at is None
        and (installer.expires_at is None or installer.expires_at > now)
        and (installer.max_enrolments is None or installer.enrolments < installer.max_enrolments)
    )


def agent_endpoint(settings: Settings) -> str:
    """The public URL agents call (`Installer.agentEndpoint`)."""
    return settings.public_agent_url.rstrip("/")


def installer_config(installer: Installer, token: str, settings: Settings) -> dict[str, Any]:
    """What an agent needs to enrol: where, with which token, into which group."""
    endpoint = agent_endpoint(settings)
    return {
        "agentUrl": endpoint,
        "enrollUrl": f"{endpoint}/enroll",
        "checkinUrl": f"{endpoint}/checkin",
        "installerToken": token,
        "installerId": global_ids.encode("Installer", installer.id),
        "companyId": global_ids.encode("Company", installer.company_id),
        "groupId": global_ids.encode("StaticGroup", installer.group_id),
        "expiresAt": installer.expires_at.isoformat() if installer.expires_at else None,
    }


STATE_DIR_VARIABLE = "MSP_AGENT_STATE_DIR"
DEFAULT_STATE_DIR = "/var/lib/msp-console-agent"
# POSIX sh, one command a line, run as `sh -c SCRIPT msp-console-agent ENROLL_URL TOKEN`: the
# URL and the token are arguments, never spliced into code. The hardware id is random, made
# once and kept beside the agent token (mode 600, in a folder of mode 700): nothing outside
# the machine can guess it, and a re-run presents the token it holds to stay the same computer.
_ENROL_SCRIPT = r"""
set -eu
umask 077
d="${MSP_AGENT_STATE_DIR:-/var/lib/msp-console-agent}"
mkdir -p "$d"
chmod 700 "$d"
hw=""
if [ -s "$d/hardware-id" ]; then hw=$(tr -dc 0-9a-f < "$d/hardware-id"); fi
if [ -z "$hw" ]; then hw=$(od -An -N16 -tx1 /dev/urandom | tr -dc 0-9a-f); printf %s "$hw" > "$d/hardware-id.new"; mv "$d/hardware-id.new" "$d/hardware-id"; fi
tok=""
if [ -s "$d/agent-token" ]; then tok=$(tr -dc A-Za-z0-9_- < "$d/agent-token"); fi
esc() { printf %s "$1" | tr -d '\000-\037' | sed 's/[\\"]/\\&/g'; }
body=$(printf '{"hardwareId":"%s","hostname":"%s","os":"%s","agentVersion":"shell-1"' "$hw" "$(esc "$(uname -n)")" "$(esc "$(uname -sr)")")
if [ -n "$tok" ]; then body="$body,\"agentToken\":\"$tok\""; fi
answer=$(printf '%s}' "$body" | curl -fsS "$1" -H "Authorization: Bearer $2" -H 'Content-Type: application/json' --data-binary @-)
new=$(printf %s "$answer" | sed -n 's/.*"agentToken":"\([A-Za-z0-9_-]*\)".*/\1/p')
if [ -z "$new" ]; then echo "enrolment failed: $answer" >&2; exit 1; fi
printf %s "$new" > "$d/agent-token.new"
mv "$d/agent-token.new" "$d/agent-token"
printf %s "$answer" | sed -n 's/.*"computerId":"\([^"]*\)".*/enrolled: computer \1/p'
"""  # noqa: E501


def installer_command(installer: Installer, token: str, settings: Settings) -> str:
    """A POSIX shell command (curl) that enrols the machine it runs on, or re-enrols it as the
    same computer when run again; `MSP_AGENT_STATE_DIR` says where it keeps its state."""
    config = installer_config(installer, token, settings)
    script = "; ".join(line for line in _ENROL_SCRIPT.splitlines() if line)
    arguments = ["sh", "-c", script, "msp-console-agent", config["enrollUrl"], token]
    return " ".join(shlex.quote(argument) for argument in arguments)


def visible(scope: Scope) -> Listing[Installer]:
    """Installers the viewer may read (INSTALLERS on their target group) of companies it may
    see, newest first: an installer shows its company, so one whose company is out of sight
    stays out of sight too."""
    listing = Listing(
        Installer,
        "installer i JOIN static_group g ON g.id = i.group_id "
        "JOIN company c ON c.id = i.company_id",
        "i",
        ("i.id",),
        ("id",),
        descending=True,
    )
    condition, params = scope.sql("g.path", Area.INSTALLERS, Level.READ)
    company_visible, company_params = scope.sql("c.path")
    return (
        listing.filter("i.instance_id = ?", scope.instance_id)
        .filter(condition, *params)
        .filter(company_visible, *company_params)
    )


async def by_id(scope: Scope, installer_id: int) -> Installer | None:
    found = await visible(scope).filter("i.id = ?", installer_id).rows(limit=1)
    return found[0] if found else None


async def by_ids(scope: Scope, ids: Iterable[int]) -> dict[int, Installer]:
    values: list[Any] = list(set(ids))
    found = await visible(scope).filter(*sql_in("i.id", values)).rows() if values else []
    return {i.id: i for i in found}


def of_company(scope: Scope, company_id: int, include_revoked: bool) -> Listing[Installer]:
    listing = visible(scope).filter("i.company_id = ?", company_id)
    return listing if include_revoked else listing.filter("i.revoked_at IS NULL")


async def matching_token(scope: Scope, installer_id: int, token: str) -> Installer:
    """The installer if the viewer may read it and `token` is its token (constant time)."""
    found = await by_id(scope, installer_id)
    if found is None or not hashes_match(found.token_hash, token):
        raise NotFound("no such installer, or not its token", "installerId")
    return found


async def group_path_of(installer: Installer) -> str:
    return str(
        await db.fetch_value(
            "SELECT path FROM static_group WHERE id = ?",
            [installer.group_id],
        )
    )

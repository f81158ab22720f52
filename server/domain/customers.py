"""Customers: their status, the Managed Customers list with the counts of its status tabs, and
the lifecycle: setup (ESET's wizard), skip, unlink and relink. One module for the one concept;
longer than most because the setup creates a user, permission sets and an installer at once.

Status is derived (`customer_status`): NOT_SET_UP while `setup_state` is pending,
NORMAL once set up or skipped, UNLINKED while `unlinked_at` is set. Every transition is a
conditional UPDATE whose row count is checked inside the transaction, so of two concurrent
requests (setup and skip, unlink and unlink...) exactly one wins and the other changes nothing.
Everything is validated before the first write; a transition and all it creates commit together.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field

from server import events
from server.domain import (
    companies,
    counters,
    installers,
    permission_sets,
    secrets,
    tree_paths,
    users,
    validation,
)
from server.domain import search as name_search
from server.domain.access import Scope
from server.domain.accounts import email_taken, end_user_sessions
from server.domain.counters import COUNT_CAP, STATUS_COLUMNS
from server.domain.errors import (
    AlreadyExists,
    InvalidTransition,
    NotACustomer,
    NotFound,
    PermissionDenied,
)
from server.domain.listing import Listing
from server.domain.tree_paths import path_ids
from server.events import EventBus
from server.models import Company, Installer, PermissionSet, StaticGroup, User, db
from server.models.enums import Area, CompanyType, GroupKind, Level, SetupState, UnlinkReason
from server.models.enums import CustomerStatus as Status
from server.settings import DEFAULT_INSTALLER_TTL_DAYS

SETUP_USER_DESCRIPTION = "created by customer setup"
SETUP_SESSION_TIMEOUT = 15 * 60  # seconds
# What the setup's user gets on its customer's group: runs its own computers, groups,
# installers and users; sees (but does not change) its company and its audit log.
CUSTOMER_LEVELS = {
    Area.COMPANIES: Level.READ,
    Area.COMPUTERS: Level.WRITE,
    Area.GROUPS: Level.WRITE,
    Area.INSTALLERS: Level.WRITE,
    Area.USERS: Level.WRITE,
    Area.AUDIT: Level.READ,
}
# ... and on the Shared Objects groups above it: read and use what the MSP shares.
SHARED_OBJECTS_LEVELS = {Area.GROUPS: Level.USE, Area.INSTALLERS: Level.USE}


STATUS_SQL = {
    Status.UNLINKED: "c.unlinked_at IS NOT NULL",
    Status.NOT_SET_UP: "(c.unlinked_at IS NULL AND c.setup_state = 'pending')",
    Status.NORMAL: "(c.unlinked_at IS NULL AND c.setup_state <> 'pending')",
}


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def customer_status(company: Company) -> Status | None:
    if company.type != CompanyType.CUSTOMER:
        return None
    return counters.status_of(company.setup_state, company.unlinked_at is not None)


def status_sql(statuses: Sequence[Status]) -> str:
    """A condition on `company c`: a customer in one of `statuses` (none: nothing)."""
    if not statuses:
        return "1=0"
    either = " OR ".join(STATUS_SQL[s] for s in dict.fromkeys(statuses))
    return f"(c.type = '{CompanyType.CUSTOMER.value}' AND ({either}))"


def managed_customers(
    scope: Scope, statuses: Sequence[Status] | None, search: str | None
) -> Listing[Company]:
    """The Managed Customers list: the customers the viewer may see, by name."""
    listing = companies.visible(scope, by_name=True).filter(
        "c.type = ?", CompanyType.CUSTOMER.value
    )
    return companies.narrow(listing, statuses=statuses, search=search)


async def count(
    scope: Scope, listing: Listing[Company], statuses: Sequence[Status] | None, search: str | None
) -> tuple[int, bool]:
    """How many the Managed Customers `listing` holds, and whether exactly."""
    if name_search.contains("c.sort_name", search) is None:
        counts = await counters.visible_counts(scope)
        return counts.matching([CompanyType.CUSTOMER], statuses), True
    return await listing.count_capped(COUNT_CAP)


async def status_counts(scope: Scope, search: str | None) -> tuple[dict[Status, int], bool]:
    """Customers the viewer may see matching `search`, per status, and whether the counts are
    exact: from the counters without a search; under one, each status counted up to COUNT_CAP
    (then reported as not exact), in one statement."""
    if name_search.contains("c.sort_name", search) is None:
        return (await counters.visible_counts(scope)).statuses(), True
    listing = managed_customers(scope, None, search)
    parts, params = [], []
    for status, sql in STATUS_SQL.items():
        parts.append(
            f"(SELECT COUNT(*) FROM (SELECT 1 FROM {listing.source} WHERE {listing._where_sql()} "
            f"AND {sql} LIMIT {COUNT_CAP + 1}) t) AS {status.value.lower()}"
        )
        params += listing.params
    row = (await db.fetch(f"SELECT {', '.join(parts)}", params))[0]
    found = {status: int(row[status.value.lower()] or 0) for status in Status}
    exact = all(n <= COUNT_CAP for n in found.values())
    return {status: min(n, COUNT_CAP) for status, n in found.items()}, exact


@dataclass(frozen=True, slots=True)
class NewCustomerUser:
    email: str
    password: str


@dataclass(slots=True)
class SetupResult:
    customer: Company
    user: User | None = None
    permission_sets: list[PermissionSet] = field(default_factory=list)
    installer: Installer | None = None
    installer_token: str | None = None  # shown once


@dataclass(slots=True)
class UnlinkResult:
    customer: Company
    disabled_user_ids: list[int] = field(default_factory=list)
    revoked_installers: int = 0


@dataclass(slots=True)
class RelinkResult:
    customer: Company
    enabled_user_ids: list[int] = field(default_factory=list)


async def _customer(scope: Scope, customer_id: int) -> Company:
    """A customer the viewer may see, WRITE on COMPANIES there; else the typed error."""
    company = await Company.get_or_none(id=customer_id, instance_id=scope.instance_id)
    if company is None or not scope.allows(company.path):
        raise NotFound("no such customer", "customerId")
    if company.type != CompanyType.CUSTOMER:
        raise NotACustomer(f"{company.name} is not a customer", "customerId")
    scope.require(company.path, Area.COMPANIES, Level.WRITE)
    return company


def _highest(scope: Scope, path: str, area: Area) -> Level | None:
    for level in (Level.WRITE, Level.USE, Level.READ):
        if scope.allows(path, area, level):
            return level
    return None


def capped_levels(
    scope: Scope, template: dict[Area, Level], paths: Sequence[str]
) -> dict[Area, Level]:
    """The template, each level lowered to what the viewer holds on every one of `paths`
    (areas it does not hold left out): the setup never hands out more than its user has."""
    result: dict[Area, Level] = {}
    for area, level in template.items():
        held = [_highest(scope, path, area) for path in paths]
        if paths and all(h is not None for h in held):
            result[area] = min(level, *(h for h in held if h is not None))
    return result


async def shared_objects_above(scope: Scope, company: Company) -> list[StaticGroup]:
    """The Shared Objects groups of the companies above, those the viewer can see; USE on each
    is needed (and there must be one if any exists)."""
    above = path_ids(company.path)[:-1]
    groups = await StaticGroup.filter(
        instance_id=scope.instance_id, kind=GroupKind.SHARED_OBJECTS, parent_id__in=above
    ).order_by("depth")
    seen = [g for g in groups if scope.allows(g.path)]
    if groups and not seen:
        raise PermissionDenied("USE on the Shared Objects groups above the customer is needed")
    for group in seen:
        if not scope.allows(group.path, None, Level.USE):
            raise PermissionDenied("USE on the Shared Objects groups above the customer is needed")
    return seen


async def setup_customer(
    scope: Scope,
    actor_user_id: int | None,
    customer_id: int,
    user: NewCustomerUser | None,
    create_installer: bool = True,
    *,
    installer_ttl_days: int = DEFAULT_INSTALLER_TTL_DAYS,
    now: dt.datetime | None = None,
) -> SetupResult:
    """Run the customer setup: optionally a native user with two permission sets (its
    customer's group; READ+USE on the Shared Objects groups above), an installer, and the
    customer marked set up. All of it or nothing."""
    now = now or utcnow()
    company = await _customer(scope, customer_id)
    if company.unlinked_at is not None or company.setup_state != SetupState.PENDING:
        raise InvalidTransition("only a customer that is not set up can be set up", "customerId")
    shared = await shared_objects_above(scope, company)
    if create_installer:
        scope.require(company.path, Area.INSTALLERS, Level.WRITE)
    email = password_hash = None
    if user is not None:
        email = validation.email(user.email, "user.email")
        validation.password(user.password, "user.password")
        if await email_taken(email):
            raise AlreadyExists("an account or user with this email exists", "user.email")
        password_hash = await secrets.hash_password(user.password)
    group = await StaticGroup.get(
        instance_id=scope.instance_id, company_id=company.id, kind=GroupKind.COMPANY
    )
    customer_levels = capped_levels(scope, CUSTOMER_LEVELS, [group.path])
    shared_levels = capped_levels(scope, SHARED_OBJECTS_LEVELS, [g.path for g in shared])
    result = SetupResult(company)
    async with db.transaction():
        rows = await db.fetch(
            "UPDATE company SET setup_state = ?, setup_at = ?, updated_at = ? "
            "WHERE id = ? AND setup_state = ? AND unlinked_at IS NULL RETURNING path",
            [SetupState.DONE.value, now, now, company.id, SetupState.PENDING.value],
        )
        if len(rows) != 1:
            raise InvalidTransition("the customer was set up, skipped or unlinked meanwhile")
        await _handled(scope.instance_id, [rows[0]["path"]])
        if email is not None and password_hash is not None:
            result.user, result.permission_sets = await _create_customer_user(
                scope,
                actor_user_id,
                company,
                group,
                shared,
                email,
                password_hash,
                customer_levels,
                shared_levels,
            )
        if create_installer:
            result.installer, result.installer_token = await installers.create_installer(
                scope,
                company_id=company.id,
                created_by_id=actor_user_id,
                ttl_days=installer_ttl_days,
                now=now,
            )
        result.customer = await Company.get(id=company.id)
    return result


async def _create_customer_user(
    scope: Scope,
    actor_user_id: int | None,
    company: Company,
    group: StaticGroup,
    shared: list[StaticGroup],
    email: str,
    password_hash: str,
    customer_levels: dict[Area, Level],
    shared_levels: dict[Area, Level],
) -> tuple[User, list[PermissionSet]]:
    user = await users.insert(  # the email checked again, inside the transaction
        scope.instance_id,
        email,
        "user.email",
        password_hash=password_hash,
        home_group=group,
        session_timeout=SETUP_SESSION_TIMEOUT,
        description=SETUP_USER_DESCRIPTION,
        tag=company.name,
        created_by_id=actor_user_id,
    )
    sets = [
        await permission_sets.create_unchecked(
            scope.instance_id,
            await permission_sets.free_name_like(scope.instance_id, f"{company.name}: customer"),
            f"{SETUP_USER_DESCRIPTION}: the customer's group",
            customer_levels,
            [group],
        )
    ]
    if shared:
        sets.append(
            await permission_sets.create_unchecked(
                scope.instance_id,
                await permission_sets.free_name_like(
                    scope.instance_id, f"{company.name}: shared objects"
                ),
                f"{SETUP_USER_DESCRIPTION}: the Shared Objects groups above the customer",
                shared_levels,
                shared,
            )
        )
    await user.permission_sets.add(*sets)
    return user, sets


async def _mark_handled(scope: Scope, company_id: int, state: SetupState, now: dt.datetime) -> None:
    rows = await db.fetch(
        "UPDATE company SET setup_state = ?, setup_at = ?, updated_at = ? "
        "WHERE id = ? AND instance_id = ? AND setup_state = ? AND unlinked_at IS NULL "
        "RETURNING path",
        [state.value, now, now, company_id, scope.instance_id, SetupState.PENDING.value],
    )
    if len(rows) != 1:
        raise InvalidTransition("only a customer that is not set up can skip its setup")
    await _handled(scope.instance_id, [rows[0]["path"]])


async def _handled(instance_id: int, paths: list[str]) -> None:
    """NOT_SET_UP to NORMAL in the counters of these customers' paths."""
    left, entered = STATUS_COLUMNS[Status.NOT_SET_UP], STATUS_COLUMNS[Status.NORMAL]
    await counters.shift(instance_id, [(path, left, entered) for path in paths])


async def skip_customer_setup(
    scope: Scope, actor_user_id: int | None, customer_id: int, *, now: dt.datetime | None = None
) -> Company:
    """Mark a NOT_SET_UP customer NORMAL without creating anything."""
    company = await _customer(scope, customer_id)
    if company.unlinked_at is not None or company.setup_state != SetupState.PENDING:
        raise InvalidTransition("only a customer that is not set up can skip its setup")
    async with db.transaction():
        await _mark_handled(scope, company.id, SetupState.SKIPPED, now or utcnow())
        return await Company.get(id=company.id)


async def skip_setup_for_all_new_customers(
    scope: Scope, actor_user_id: int | None, *, now: dt.datetime | None = None
) -> list[Company]:
    """Skip the setup of every NOT_SET_UP customer the viewer may write, in one statement."""
    now = now or utcnow()
    writable, params = scope.sql("path", Area.COMPANIES, Level.WRITE)
    async with db.transaction():
        rows = await db.fetch(
            "UPDATE company SET setup_state = ?, setup_at = ?, updated_at = ? "
            "WHERE instance_id = ? AND type = ? AND setup_state = ? AND unlinked_at IS NULL "
            f"AND {writable} RETURNING id, path",
            [
                SetupState.SKIPPED.value,
                now,
                now,
                scope.instance_id,
                CompanyType.CUSTOMER.value,
                SetupState.PENDING.value,
                *params,
            ],
        )
        ids = [row["id"] for row in rows]
        if not ids:
            return []
        await _handled(scope.instance_id, [row["path"] for row in rows])
        return await Company.filter(id__in=ids).order_by("sort_name", "id")


async def unlink_customer(
    scope: Scope, actor_user_id: int | None, customer_id: int, *, now: dt.datetime | None = None
) -> UnlinkResult:
    """Stop managing a customer: UNLINKED (by a user), its installers revoked, its native users
    disabled and signed out. Its group and computers stay."""
    now = now or utcnow()
    company = await _customer(scope, customer_id)
    if company.unlinked_at is not None:
        raise InvalidTransition("the customer is already unlinked", "customerId")
    async with db.transaction():
        rows = await db.fetch(
            "UPDATE company SET unlinked_at = ?, unlink_reason = ?, updated_at = ? "
            "WHERE id = ? AND unlinked_at IS NULL RETURNING path, setup_state",
            [now, UnlinkReason.USER.value, now, company.id],
        )
        if len(rows) != 1:
            raise InvalidTransition("the customer was unlinked meanwhile", "customerId")
        row = rows[0]
        # the installers locked before the counters, as an enrolment does (else a deadlock)
        revoked = await installers.revoke_company_installers(company.id, now)
        before = STATUS_COLUMNS[counters.status_of(row["setup_state"], unlinked=False)]
        await counters.shift(
            scope.instance_id, [(row["path"], before, STATUS_COLUMNS[Status.UNLINKED])]
        )
        disabled = await disable_users_of(company)
        return UnlinkResult(await Company.get(id=company.id), disabled, revoked)


async def relink_customer(
    scope: Scope, actor_user_id: int | None, customer_id: int, *, now: dt.datetime | None = None
) -> RelinkResult:
    """Manage a customer a user unlinked again: back to the status it had, its users enabled
    again; its revoked installers stay revoked. One unlinked upstream is the sync's to relink."""
    now = now or utcnow()
    company = await _customer(scope, customer_id)
    if company.unlinked_at is None:
        raise InvalidTransition("the customer is not unlinked", "customerId")
    if company.unlink_reason != UnlinkReason.USER:
        raise InvalidTransition(
            "the customer is missing in the MSP Administrator; a sync relinks it when it reappears",
            "customerId",
        )
    async with db.transaction():
        rows = await db.fetch(
            "UPDATE company SET unlinked_at = NULL, unlink_reason = NULL, updated_at = ? "
            "WHERE id = ? AND unlinked_at IS NOT NULL AND unlink_reason = ? "
            "RETURNING path, setup_state",
            [now, company.id, UnlinkReason.USER.value],
        )
        if len(rows) != 1:
            raise InvalidTransition("the customer was relinked meanwhile", "customerId")
        row = rows[0]
        after = STATUS_COLUMNS[counters.status_of(row["setup_state"], unlinked=False)]
        await counters.shift(
            scope.instance_id, [(row["path"], STATUS_COLUMNS[Status.UNLINKED], after)]
        )
        enabled = await enable_users_of(company.id)
        return RelinkResult(await Company.get(id=company.id), enabled)


async def disable_users_of(company: Company) -> list[int]:
    """Disable the enabled native users living in the company's subtree, remembering that the
    unlink did it, and end their sessions. For the unlink here and the sync's; runs in the
    caller's transaction."""
    rows = await db.fetch(
        "UPDATE console_user SET enabled = ?, disabled_by_unlink_id = ? "
        "WHERE instance_id = ? AND account_id IS NULL AND enabled = ? AND home_group_id IN "
        "(SELECT id FROM static_group WHERE instance_id = ? AND path >= ? AND path < ?) "
        "RETURNING id",
        [
            False,
            company.id,
            company.instance_id,
            True,
            company.instance_id,
            *tree_paths.subtree_bounds(company.path),
        ],
    )
    ids = [row["id"] for row in rows]
    await end_user_sessions(ids)
    return ids


async def enable_users_of(company_id: int) -> list[int]:
    """Enable again the users the company's unlink disabled (and only those)."""
    rows = await db.fetch(
        "UPDATE console_user SET enabled = ?, disabled_by_unlink_id = NULL "
        "WHERE disabled_by_unlink_id = ? RETURNING id",
        [True, company_id],
    )
    return [row["id"] for row in rows]


async def publish_status_changes(
    bus: EventBus, instance_id: int, company_ids: Sequence[int]
) -> None:
    """Tell subscribers (after commit) which customers changed status."""
    if company_ids:
        await bus.publish(
            events.CUSTOMER_STATUS, {"instance_id": instance_id, "company_ids": list(company_ids)}
        )

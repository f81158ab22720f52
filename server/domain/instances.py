"""Instances: created by an account through one service, reached through every service the
account is registered with, removed or suspended only through the service that created it."""

from __future__ import annotations

from server.domain import tree_paths, validation
from server.domain.access import Scope
from server.domain.errors import (
    AlreadyExists,
    InstanceRemoved,
    NotFound,
    PermissionDenied,
    RemovalReservedToCreatingService,
)
from server.models import Account, Instance, StaticGroup, SyncRun, User, db
from server.models.enums import GroupKind, Service, SyncState

ALL_GROUP = "All"
COMPANIES_GROUP = "Companies"


async def create_group(
    instance_id: int,
    name: str,
    kind: GroupKind,
    parent: StaticGroup | None,
    company_id: int | None = None,
) -> StaticGroup:
    """Insert a group and fill in its path and sort key (they need its id)."""
    group = await StaticGroup.create(
        instance_id=instance_id,
        name=name,
        kind=kind,
        parent=parent,
        company_id=company_id,
        path="",
        sort_key="",
        depth=0 if parent is None else parent.depth + 1,
    )
    group.path = tree_paths.child_path(parent.path if parent else None, group.id)
    group.sort_key = tree_paths.child_sort_key(parent.sort_key if parent else None, name, group.id)
    await group.save(update_fields=["path", "sort_key"])
    return group


async def create_instance(account_id: int, via: Service | None, name: str | None) -> Instance:
    """Create the account's instance through `via`, with its `All` and `Companies` groups and
    the owner as its first console user."""
    if via is None:
        raise PermissionDenied("an instance is created through a portal, not by a console user")
    account = await Account.get(id=account_id)
    if via not in account.service_list:
        raise PermissionDenied(f"this account is not registered with {via.value}")
    name = validation.name(name or f"{account.email} console", "name")
    async with db.transaction():
        if await Instance.filter(owner_id=account_id).exists():
            raise AlreadyExists("this account already has an instance", "name")
        instance = await Instance.create(name=name, owner_id=account_id, created_via=via)
        root = await create_group(instance.id, ALL_GROUP, GroupKind.ALL, None)
        await create_group(instance.id, COMPANIES_GROUP, GroupKind.COMPANIES, root)
        await User.create(
            instance=instance, account_id=account_id, email=account.email, home_group=root
        )
    return instance


async def instance_of(account_id: int) -> Instance | None:
    return await Instance.get_or_none(owner_id=account_id)


async def own_instance(scope: Scope) -> Instance | None:
    """The viewer's instance, with the owner's account (which says how it is reached)."""
    return await Instance.get_or_none(id=scope.instance_id).prefetch_related("owner")


async def owner_user_id(instance: Instance) -> int:
    """The console user the owning account acts as inside its instance."""
    owner = await User.get(instance_id=instance.id, account_id__isnull=False)
    return owner.id


# Children before parents: every table that holds rows of an instance (a test reads the
# database's catalog for any table with an `instance_id` this misses).
_INSTANCE_TABLES = (
    "audit_entry",
    "session",
    "usage_line",
    "usage_day",
    "license",
    "computer",
    "installer",
    "subtree_count",  # after the computers: a writer the removal waited for has shifted them
    "user_permission_set",
    "permission_set_group",
    "console_user",
    "permission_set",
    "sync_run",
    "static_group",
    "company",
)


async def remove_instance(account_id: int, via: Service | None, instance_id: int) -> None:
    """Remove the account's instance, only through the service that created it.

    On PostgreSQL its row is locked first (FOR UPDATE), the lock writers in the instance hold
    from their start (KEY SHARE: `keep_from_removal`, the enrolment's lookup, the watcher's
    claim): a writer under way ends first and its rows go with the rest, a later one waits, then
    finds the instance gone. Check-ins, which hold no such lock, take computers in id order, as
    the removal does."""
    if via is None:
        raise PermissionDenied("an instance is removed through a portal, not by a console user")
    instance = await Instance.get_or_none(id=instance_id, owner_id=account_id)
    if instance is None:
        raise NotFound("no such instance", "instanceId")
    if instance.created_via != via:
        raise RemovalReservedToCreatingService(
            f"this instance was created through {instance.created_via.value}; "
            f"it can only be removed through {instance.created_via.value}",
            "instanceId",
        )
    lock = " FOR UPDATE" if db.is_postgres() else ""
    async with db.transaction():
        if not await db.fetch(f"SELECT id FROM instance WHERE id = ?{lock}", [instance_id]):
            raise NotFound("no such instance", "instanceId")  # removed meanwhile
        await db.execute(
            "UPDATE static_group SET parent_id = NULL, company_id = NULL WHERE instance_id = ?",
            [instance_id],
        )
        await db.execute("UPDATE company SET parent_id = NULL WHERE instance_id = ?", [instance_id])
        deletes = _POSTGRES_DELETE_SQL if db.is_postgres() else _DELETE_SQL
        for table in _INSTANCE_TABLES:
            await db.execute(deletes[table], [instance_id])
        await db.execute("DELETE FROM instance WHERE id = ?", [instance_id])


_DELETE_SQL = {
    "session": "DELETE FROM session WHERE user_id IN "
    "(SELECT id FROM console_user WHERE instance_id = ?)",
    "user_permission_set": "DELETE FROM user_permission_set WHERE console_user_id IN "
    "(SELECT id FROM console_user WHERE instance_id = ?)",
    "permission_set_group": "DELETE FROM permission_set_group WHERE permission_set_id IN "
    "(SELECT id FROM permission_set WHERE instance_id = ?)",
    **{
        table: f"DELETE FROM {table} WHERE instance_id = ?"
        for table in _INSTANCE_TABLES
        if table not in {"session", "user_permission_set", "permission_set_group"}
    },
}


_POSTGRES_DELETE_SQL = {
    **_DELETE_SQL,
    "computer": "DELETE FROM computer WHERE id IN "
    "(SELECT id FROM computer WHERE instance_id = ? ORDER BY id FOR UPDATE)",
}


async def keep_from_removal(instance_id: int) -> None:
    """Hold off the instance's removal until the transaction ends, before a writer locks rows
    the removal deletes (PostgreSQL: KEY SHARE on its row, which the foreign keys of the rows it
    writes would take, but only then; the company, group and counter rows have none: 0020);
    InstanceRemoved once the removal is done."""
    lock = " FOR KEY SHARE" if db.is_postgres() else ""
    if not await db.fetch(f"SELECT id FROM instance WHERE id = ?{lock}", [instance_id]):
        raise InstanceRemoved("the instance was removed")


async def msp_status(instance: Instance) -> str:
    """Like ESET's MSP tile: DISCONNECTED, SYNCHRONIZING while a run is on, else SYNCHRONIZED."""
    if not instance.upstream_url:
        return "DISCONNECTED"
    running = await SyncRun.filter(
        instance_id=instance.id, state__in=[SyncState.QUEUED, SyncState.RUNNING]
    ).exists()
    return "SYNCHRONIZING" if running else "SYNCHRONIZED"


def accessible_via(instance: Instance, account: Account) -> list[Service]:
    """Every service the owner's account is registered with reaches the instance."""
    return account.service_list

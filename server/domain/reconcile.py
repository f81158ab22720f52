"""Applying an upstream snapshot to an instance's company and group trees, in one transaction.

The difference is computed in memory and written with a fixed set of batched statements (the
count does not grow with the number of companies): new companies and their groups are inserted,
then the layout of both trees (parent, path, sort key, depth, name) is recomputed from the top and
every row whose layout or details changed is rewritten by one UPDATE per table. That covers
renames and moves of whole subtrees, custom groups and unlinked companies inside them included;
computers and installers follow their groups by reference. Companies missing upstream are
unlinked, never deleted; those that come back are relinked unless a user unlinked them.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from tortoise.transactions import in_transaction

from server.domain import counters, tree_paths
from server.domain.hierarchy import SHARED_OBJECTS_GROUP, SHARES_OBJECTS
from server.models import Company, db
from server.models.bulk import (
    encode_ids,
    encode_rows,
    ids_source,
    reserve_ids,
    rows_source,
    typed_param,
)
from server.models.enums import CompanyType, GroupKind, UnlinkReason
from server.upstream.client import UpstreamProtocolError, UpstreamSnapshot

COMPANY_TYPES = {
    1002: CompanyType.DISTRIBUTOR,
    1003: CompanyType.DIVISION,
    1004: CompanyType.MSP_MANAGER,
    1005: CompanyType.MSP,
    1006: CompanyType.MANAGED_MSP,
    1007: CompanyType.CUSTOMER,
}
IMPORTABLE = frozenset({1004, 1005, 1006})

Hook = Callable[[], Awaitable[None]]


@dataclass(slots=True)
class Changes:
    """What an apply changed; `status_changed` lists customers whose derived status changed,
    `disabled_users` the users an unlink disabled (and signed out)."""

    created: int = 0
    updated: int = 0
    moved: int = 0
    unlinked: int = 0
    relinked: int = 0
    status_changed: list[int] = field(default_factory=list)
    disabled_users: list[int] = field(default_factory=list)  # their sessions ended

    @property
    def any(self) -> bool:
        return bool(self.created or self.updated or self.moved or self.unlinked or self.relinked)


@dataclass(slots=True)
class _Wanted:
    """A company as the snapshot wants it; ancestors carry no status or details (kept)."""

    public_id: str
    name: str
    type: CompanyType
    parent: str | None
    read_only: bool
    status: int | None = None
    email: str | None = None
    custom_identifier: str | None = None
    details: bool = False


@dataclass(slots=True)
class _Company:
    id: int
    public_id: str
    name: str
    type: CompanyType
    parent_id: int | None
    path: str
    sort_key: str
    depth: int
    status: int
    email: str | None
    custom_identifier: str | None
    read_only: bool
    unlinked: bool
    unlink_reason: str | None
    group_id: int = 0
    new: bool = False

    @classmethod
    def of(cls, row: dict[str, Any]) -> _Company:
        path = row["path"]
        return cls(
            id=row["id"],
            public_id=row["public_id"],
            name=row["name"],
            type=CompanyType(row["type"]),
            parent_id=row["parent_id"],
            path=path,
            sort_key=row["sort_key"],
            depth=row["depth"],
            status=row["upstream_status"],
            email=row["email"],
            custom_identifier=row["custom_identifier"],
            read_only=bool(row["read_only"]),
            unlinked=row["unlinked_at"] is not None,
            unlink_reason=row["unlink_reason"],
            group_id=_last_id(path),
        )


@dataclass(slots=True)
class _Group:
    id: int
    name: str
    kind: str
    parent_id: int | None
    path: str = ""
    sort_key: str = ""
    depth: int = 0


_STORED_TEXT = {
    "public_id": "publicId",
    "name": "name",
    "email": "email",
    "custom_identifier": "customIdentifier",
}


def check_fits(snapshot: UpstreamSnapshot) -> None:
    """Refuse, before any write, a company with a value longer than its column holds (SQLite
    would keep it whole, PostgreSQL would fail mid-apply)."""
    fields = Company._meta.fields_map
    longest = {name: int(fields[name].max_length) for name in _STORED_TEXT}  # type: ignore[attr-defined]
    for company in (*snapshot.ancestors, *snapshot.companies):
        for name, limit in longest.items():
            value = getattr(company, name, None)
            if value is not None and len(value) > limit:
                raise UpstreamProtocolError(
                    f"MSP Administrator company {company.public_id[:64]} has a "
                    f"{_STORED_TEXT[name]} of {len(value)} characters; the console holds at "
                    f"most {limit}"
                )


def wanted_companies(snapshot: UpstreamSnapshot) -> dict[str, _Wanted]:
    """The companies a snapshot asks for, top first: ancestors (read-only), the account's own
    company, then its descendants, each parent before its children."""
    check_fits(snapshot)
    wanted: dict[str, _Wanted] = {}
    parent: str | None = None
    for ref in snapshot.ancestors:
        wanted[ref.public_id] = _Wanted(
            ref.public_id, ref.name, COMPANY_TYPES[ref.type], parent, True
        )
        parent = ref.public_id
    for company in snapshot.companies:
        wanted[company.public_id] = _Wanted(
            company.public_id,
            company.name,
            COMPANY_TYPES[company.type],
            parent if company is snapshot.root else company.parent_id,
            False,
            company.status,
            company.email,
            company.custom_identifier,
            True,
        )
    return wanted


_COMPANY_COLUMNS = (
    "id, public_id, name, type, parent_id, path, sort_key, depth, upstream_status, email, "
    "custom_identifier, read_only, unlinked_at, unlink_reason"
)
_COMPANY_ROW = {
    "id": "int",
    "name": "text",
    "sort_name": "text",
    "type": "text",
    "parent_id": "int",
    "path": "text",
    "sort_key": "text",
    "depth": "int",
    "upstream_status": "int",
    "email": "text",
    "custom_identifier": "text",
    "read_only": "bool",
}
_NEW_COMPANY = {**_COMPANY_ROW, "public_id": "text"}
_GROUP_ROW = {
    "id": "int",
    "name": "text",
    "parent_id": "int",
    "path": "text",
    "sort_key": "text",
    "depth": "int",
}
_NEW_GROUP = {**_GROUP_ROW, "kind": "text", "company_id": "int"}
_USER_UNLINK = {"id": "int", "company_id": "int"}
_SEGMENT = tree_paths.SEGMENT_LENGTH


def _last_id(path: str) -> int:
    return int(path[path.rindex("/", 0, len(path) - 1) + 1 : -1]) if path else 0


class _Apply:
    """One apply: load, diff, write. Statements run on the transaction's connection."""

    def __init__(self, instance_id: int, wanted: dict[str, _Wanted], now: dt.datetime) -> None:
        self.instance_id = instance_id
        self.wanted = wanted
        self.now = now
        self.changes = Changes()
        self.companies: dict[str, _Company] = {}
        self.by_id: dict[int, _Company] = {}
        self.groups: dict[int, _Group] = {}
        self.new_groups: dict[int, int] = {}  # new Shared Objects group id -> its company id
        self.shares: set[int] = set()  # companies that have a Shared Objects group
        self.after_first_write: Hook | None = None

    async def write(self, sql: str, params: list[Any]) -> list[dict[str, Any]]:
        rows = await db.fetch(sql, params)
        if self.after_first_write is not None:
            hook, self.after_first_write = self.after_first_write, None
            await hook()
        return rows

    async def load(self) -> None:
        rows = await db.fetch(
            f"SELECT {_COMPANY_COLUMNS} FROM company WHERE instance_id = ?", [self.instance_id]
        )
        for row in rows:
            company = _Company.of(row)
            self.companies[company.public_id] = company
            self.by_id[company.id] = company
        groups = await db.fetch(
            "SELECT id, name, kind, parent_id, company_id, path, sort_key, depth "
            "FROM static_group WHERE instance_id = ? AND kind <> ?",
            [self.instance_id, GroupKind.COMPANY.value],
        )
        for row in groups:
            self.groups[row["id"]] = _Group(
                row["id"],
                row["name"],
                row["kind"],
                row["parent_id"],
                row["path"],
                row["sort_key"],
                row["depth"],
            )
            if row["kind"] == GroupKind.SHARED_OBJECTS.value and row["company_id"] is not None:
                self.shares.add(row["company_id"])

    async def run(self) -> Changes:
        await self.load()
        await self.add_new()
        await self.rewrite_layout()
        await self.unlink_missing()
        await self.relink_returning()
        return self.changes

    # -- creates ------------------------------------------------------------------------------

    async def add_new(self) -> None:
        """Give every new company its ids (company, group) and every company of a type that
        shares objects a Shared Objects group; `rewrite_layout` inserts them."""
        new = [w for w in self.wanted.values() if w.public_id not in self.companies]
        sharing = [
            w.public_id
            for w in self.wanted.values()
            if w.type in SHARES_OBJECTS
            and (
                w.public_id not in self.companies
                or self.companies[w.public_id].id not in self.shares
            )
        ]
        if not new and not sharing:
            return
        ids = await reserve_ids({"company": len(new), "static_group": len(new) + len(sharing)})
        company_ids, group_ids = iter(ids["company"]), iter(ids["static_group"])
        for w in new:
            company = _Company(
                id=next(company_ids),
                public_id=w.public_id,
                name=w.name,
                type=w.type,
                parent_id=None,
                path="",
                sort_key="",
                depth=0,
                status=w.status or 1,
                email=w.email,
                custom_identifier=w.custom_identifier,
                read_only=w.read_only,
                unlinked=False,
                unlink_reason=None,
                group_id=next(group_ids),
                new=True,
            )
            self.companies[w.public_id] = company
            self.by_id[company.id] = company
            self.changes.created += 1
            if w.type == CompanyType.CUSTOMER:
                self.changes.status_changed.append(company.id)
        for public_id in sharing:
            company = self.companies[public_id]
            group = _Group(next(group_ids), SHARED_OBJECTS_GROUP, "new", company.group_id, depth=-1)
            self.groups[group.id] = group
            self.new_groups[group.id] = company.id
            self.shares.add(company.id)

    # -- layout -------------------------------------------------------------------------------

    def final_parent(self, company: _Company) -> int | None:
        wanted = self.wanted.get(company.public_id)
        if wanted is None:  # missing upstream: stays where it is
            return company.parent_id
        return self.companies[wanted.parent].id if wanted.parent else None

    async def rewrite_layout(self) -> None:
        """Recompute both trees from the top: insert the new rows with their final layout and
        rewrite every existing row whose layout or details differ, one statement each."""
        companies_group = next(
            g.id for g in self.groups.values() if g.kind == GroupKind.COMPANIES.value
        )
        # The group forest as it must be: company groups follow their companies.
        parent_of: dict[int, int | None] = {g.id: g.parent_id for g in self.groups.values()}
        name_of: dict[int, str] = {g.id: g.name for g in self.groups.values()}
        company_of_group: dict[int, _Company] = {}
        for company in self.companies.values():
            parent = self.final_parent(company)
            wanted = self.wanted.get(company.public_id)
            parent_of[company.group_id] = (
                self.by_id[parent].group_id if parent is not None else companies_group
            )
            name_of[company.group_id] = wanted.name if wanted else company.name
            company_of_group[company.group_id] = company
        children: dict[int | None, list[int]] = {}
        for group_id, parent in parent_of.items():
            children.setdefault(parent, []).append(group_id)

        new_companies: list[dict[str, Any]] = []
        changed_companies: list[dict[str, Any]] = []
        new_groups: list[dict[str, Any]] = []
        changed_groups: list[dict[str, Any]] = []
        stack: list[tuple[int, str, str, int]] = [
            (group_id, "/", "", 0) for group_id in children.get(None, ())
        ]
        while stack:
            group_id, parent_path, parent_key, depth = stack.pop()
            name = name_of[group_id]
            parent = parent_of[group_id]
            path = f"{parent_path}{group_id}/"
            company = company_of_group.get(group_id)
            if company is not None:
                same_segment = not company.new and company.name == name
                segment = company.sort_key[-_SEGMENT:] if same_segment else None
                sort_key = parent_key + (segment or tree_paths.sort_segment(name, group_id))
                row = self.company_row(company, path, sort_key, depth - 2)
                if company.new:
                    new_companies.append({**row, "public_id": company.public_id})
                elif row is not None:
                    changed_companies.append(row)
                current_parent = (
                    self.by_id[company.parent_id].group_id
                    if company.parent_id is not None
                    else companies_group
                )
                before = (company.name, current_parent, company.path, company.sort_key)
                stale = company.new or before != (name, parent, path, sort_key)
                stale = stale or company.depth + 2 != depth
                kind, owner = GroupKind.COMPANY.value, company.id
            else:
                group = self.groups[group_id]
                same_segment = group.name == name and group.sort_key
                segment = group.sort_key[-_SEGMENT:] if same_segment else None
                sort_key = parent_key + (segment or tree_paths.sort_segment(name, group_id))
                before = (group.name, group.parent_id, group.path, group.sort_key)
                stale = before != (name, parent, path, sort_key) or group.depth != depth
                kind, owner = GroupKind.SHARED_OBJECTS.value, self.new_groups.get(group_id)
            if stale:
                row = {
                    "id": group_id,
                    "name": name,
                    "parent_id": parent,
                    "path": path,
                    "sort_key": sort_key,
                    "depth": depth,
                }
                if (company is not None and company.new) or group_id in self.new_groups:
                    new_groups.append({**row, "kind": kind, "company_id": owner})
                else:
                    changed_groups.append(row)
            stack.extend((child, path, sort_key, depth + 1) for child in children.get(group_id, ()))

        if new_companies:
            await self.write(
                "INSERT INTO company (id, instance_id, public_id, name, sort_name, type, "
                "parent_id, path, sort_key, depth, upstream_status, email, custom_identifier, "
                "read_only, setup_state, created_at, updated_at) "
                f"SELECT x.id, {typed_param('int')}, x.public_id, x.name, x.sort_name, x.type, "
                "x.parent_id, x.path, x.sort_key, x.depth, x.upstream_status, x.email, "
                "x.custom_identifier, x.read_only, 'pending', "
                f"{typed_param('timestamp')}, {typed_param('timestamp')} "
                f"FROM {rows_source(_NEW_COMPANY)}",
                [self.instance_id, self.now, self.now, encode_rows(new_companies)],
            )
        if changed_companies:
            await self.write(
                "UPDATE company SET name = x.name, sort_name = x.sort_name, type = x.type, "
                "parent_id = x.parent_id, path = x.path, sort_key = x.sort_key, depth = x.depth, "
                "upstream_status = x.upstream_status, email = x.email, "
                "custom_identifier = x.custom_identifier, read_only = x.read_only, "
                f"updated_at = ? FROM {rows_source(_COMPANY_ROW)} WHERE company.id = x.id",
                [self.now, encode_rows(changed_companies)],
            )
        if new_groups:
            await self.write(
                "INSERT INTO static_group (id, instance_id, name, kind, parent_id, company_id, "
                "path, sort_key, depth, description, created_at) "
                f"SELECT x.id, {typed_param('int')}, x.name, x.kind, x.parent_id, x.company_id, "
                f"x.path, x.sort_key, x.depth, '', {typed_param('timestamp')} "
                f"FROM {rows_source(_NEW_GROUP)}",
                [self.instance_id, self.now, encode_rows(new_groups)],
            )
        if changed_groups:
            await self.write(
                "UPDATE static_group SET name = x.name, parent_id = x.parent_id, path = x.path, "
                "sort_key = x.sort_key, depth = x.depth "
                f"FROM {rows_source(_GROUP_ROW)} WHERE static_group.id = x.id",
                [encode_rows(changed_groups)],
            )

    def company_row(
        self, company: _Company, path: str, sort_key: str, depth: int
    ) -> dict[str, Any] | None:
        """The company's row as it must be; None when it already is."""
        wanted = self.wanted.get(company.public_id)
        parent_id = self.final_parent(company)
        name, type_, read_only = company.name, company.type, company.read_only
        status, email, custom = company.status, company.email, company.custom_identifier
        if wanted is not None:
            name, type_, read_only = wanted.name, wanted.type, wanted.read_only
            if wanted.details:
                status, email = wanted.status or company.status, wanted.email
                custom = wanted.custom_identifier
            if not company.new:
                before = (company.name, company.type, company.read_only, company.status)
                details_before = (company.email, company.custom_identifier)
                if before != (name, type_, read_only, status) or details_before != (email, custom):
                    self.changes.updated += 1
                if company.parent_id != parent_id:
                    self.changes.moved += 1
                if (company.type == CompanyType.CUSTOMER) != (type_ == CompanyType.CUSTOMER):
                    self.changes.status_changed.append(company.id)
        current = (
            company.name,
            company.type,
            company.parent_id,
            company.path,
            company.sort_key,
            company.depth,
            company.status,
            company.email,
            company.custom_identifier,
            company.read_only,
        )
        final = (name, type_, parent_id, path, sort_key, depth, status, email, custom, read_only)
        if not company.new and current == final:
            return None
        return {
            "id": company.id,
            "name": name,
            "sort_name": tree_paths.sort_name(name),
            "type": type_.value,
            "parent_id": parent_id,
            "path": path,
            "sort_key": sort_key,
            "depth": depth,
            "upstream_status": status,
            "email": email,
            "custom_identifier": custom,
            "read_only": read_only,
        }

    # -- unlink and relink --------------------------------------------------------------------

    async def unlink_missing(self) -> None:
        """Companies gone upstream: unlinked (kept with their groups and computers), their
        installers revoked and the native users living in their groups disabled."""
        gone = [
            c for c in self.companies.values() if c.public_id not in self.wanted and not c.unlinked
        ]
        if not gone:
            return
        ids = encode_ids(c.id for c in gone)
        await self.write(
            "UPDATE company SET unlinked_at = ?, unlink_reason = ?, updated_at = ? "
            f"WHERE instance_id = ? AND unlinked_at IS NULL AND id IN ({ids_source()})",
            [self.now, UnlinkReason.UPSTREAM.value, self.now, self.instance_id, ids],
        )
        await self.write(
            "UPDATE installer SET revoked_at = ? "
            f"WHERE instance_id = ? AND revoked_at IS NULL AND company_id IN ({ids_source()})",
            [self.now, self.instance_id, ids],
        )
        await self.disable_users(gone)
        self.changes.unlinked += len(gone)
        self.changes.status_changed += [c.id for c in gone if c.type == CompanyType.CUSTOMER]

    async def disable_users(self, gone: list[_Company]) -> None:
        users = await db.fetch(
            "SELECT u.id AS id, g.path AS path FROM console_user u "
            "JOIN static_group g ON g.id = u.home_group_id "
            "WHERE u.instance_id = ? AND u.account_id IS NULL AND u.enabled = ?",
            [self.instance_id, True],
        )
        # A user belongs to the deepest unlinked company its home group lies in.
        by_group = {c.group_id: c.id for c in gone}
        rows = []
        for user in users:
            for group_id in reversed(tree_paths.path_ids(user["path"])):
                if group_id in by_group:
                    rows.append({"id": user["id"], "company_id": by_group[group_id]})
                    break
        if rows:
            await self.write(
                "UPDATE console_user SET enabled = ?, disabled_by_unlink_id = x.company_id "
                f"FROM {rows_source(_USER_UNLINK)} WHERE console_user.id = x.id",
                [False, encode_rows(rows)],
            )
            # ended, not merely refused while disabled: a relink must not revive old tokens
            ids = [row["id"] for row in rows]
            await self.write(
                f"DELETE FROM session WHERE user_id IN ({ids_source()})", [encode_ids(ids)]
            )
            self.changes.disabled_users += ids

    async def relink_returning(self) -> None:
        """Companies back upstream after vanishing get their status back; one a user unlinked
        stays unlinked until a user relinks it."""
        back = [
            c
            for c in self.companies.values()
            if c.public_id in self.wanted
            and c.unlinked
            and c.unlink_reason == UnlinkReason.UPSTREAM.value
        ]
        if not back:
            return
        ids = encode_ids(c.id for c in back)
        await self.write(
            "UPDATE company SET unlinked_at = NULL, unlink_reason = NULL, updated_at = ? "
            f"WHERE instance_id = ? AND unlink_reason = ? AND id IN ({ids_source()})",
            [self.now, self.instance_id, UnlinkReason.UPSTREAM.value, ids],
        )
        await self.write(
            "UPDATE console_user SET enabled = ?, disabled_by_unlink_id = NULL "
            f"WHERE instance_id = ? AND disabled_by_unlink_id IN ({ids_source()})",
            [True, self.instance_id, ids],
        )
        self.changes.relinked += len(back)
        self.changes.status_changed += [
            c.id for c in back if self.wanted[c.public_id].type == CompanyType.CUSTOMER
        ]


async def apply_snapshot(
    instance_id: int,
    snapshot: UpstreamSnapshot,
    *,
    now: dt.datetime | None = None,
    after_first_write: Hook | None = None,
) -> Changes:
    """Make the instance's trees match the snapshot, all or nothing."""
    apply = _Apply(instance_id, wanted_companies(snapshot), now or dt.datetime.now(dt.UTC))
    apply.after_first_write = after_first_write
    async with in_transaction():
        changes = await apply.run()
        if changes.any:  # the one call that keeps the subtree counters right
            await counters.recount(instance_id)
        return changes

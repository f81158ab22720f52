"""What a sync must change, computed without a database: the plan of an apply.

Input: the companies an upstream snapshot asks for (`wanted_companies`) and the instance's
current company and group rows (`Current`); output: a `Plan` of rows to insert and rewrite,
companies to unlink and relink, and the `Changes` to report. The layout of both trees (parent,
path, sort key, depth, name) is recomputed from the top, and a row is in the plan only when its
layout or details differ, which covers renames and moves of whole subtrees, custom groups and
unlinked companies inside them included. `reconcile.apply_snapshot` writes a plan.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from server.domain import tree
from server.domain.hierarchy import SHARED_OBJECTS_GROUP, SHARES_OBJECTS
from server.domain.license_reconcile import LicenseChanges
from server.models import Company
from server.models.enums import CompanyType, GroupKind, UnlinkReason
from server.upstream.codes import COMPANY_TYPE
from server.upstream.errors import UpstreamProtocolError
from server.upstream.records import UpstreamSnapshot


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
    licenses: LicenseChanges = field(default_factory=LicenseChanges)

    @property
    def any(self) -> bool:
        return bool(self.created or self.updated or self.moved or self.unlinked or self.relinked)


@dataclass(slots=True)
class Wanted:
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
class CompanyRow:
    """A company as stored (or, `new`, as it will be inserted)."""

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
    def of(cls, row: Mapping[str, Any]) -> CompanyRow:
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
class GroupRow:
    """A static group that is not a company's own group (those follow their companies)."""

    id: int
    name: str
    kind: str
    parent_id: int | None
    path: str = ""
    sort_key: str = ""
    depth: int = 0
    company_id: int | None = None

    @classmethod
    def of(cls, row: Mapping[str, Any]) -> GroupRow:
        return cls(
            row["id"],
            row["name"],
            row["kind"],
            row["parent_id"],
            row["path"],
            row["sort_key"],
            row["depth"],
            row["company_id"],
        )


COMPANY_COLUMNS = (
    "id, public_id, name, type, parent_id, path, sort_key, depth, upstream_status, email, "
    "custom_identifier, read_only, unlinked_at, unlink_reason"
)
"""What `CompanyRow.of` reads of a company row."""
GROUP_COLUMNS = "id, name, kind, parent_id, company_id, path, sort_key, depth"
"""What `GroupRow.of` reads of a group row (every group but the companies' own)."""

_STORED_TEXT = {
    "public_id": "publicId",
    "name": "name",
    "email": "email",
    "custom_identifier": "customIdentifier",
}
_SEGMENT = tree.SEGMENT_LENGTH


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


def wanted_companies(snapshot: UpstreamSnapshot) -> dict[str, Wanted]:
    """The companies a snapshot asks for, top first: ancestors (read-only), the account's own
    company, then its descendants, each parent before its children."""
    check_fits(snapshot)
    wanted: dict[str, Wanted] = {}
    parent: str | None = None
    for ref in snapshot.ancestors:
        wanted[ref.public_id] = Wanted(
            ref.public_id, ref.name, COMPANY_TYPE[ref.type], parent, True
        )
        parent = ref.public_id
    for company in snapshot.companies:
        wanted[company.public_id] = Wanted(
            company.public_id,
            company.name,
            COMPANY_TYPE[company.type],
            parent if company is snapshot.root else company.parent_id,
            False,
            company.status,
            company.email,
            company.custom_identifier,
            True,
        )
    return wanted


def _last_id(path: str) -> int:
    return int(path[path.rindex("/", 0, len(path) - 1) + 1 : -1]) if path else 0


@dataclass(slots=True)
class Plan:
    """Every write of an apply, as rows (columns named as in the tables)."""

    changes: Changes = field(default_factory=Changes)
    new_companies: list[dict[str, Any]] = field(default_factory=list)
    changed_companies: list[dict[str, Any]] = field(default_factory=list)
    new_groups: list[dict[str, Any]] = field(default_factory=list)
    changed_groups: list[dict[str, Any]] = field(default_factory=list)
    unlink: list[CompanyRow] = field(default_factory=list)
    """Companies gone upstream: unlinked, their installers revoked, their users disabled."""
    relink: list[CompanyRow] = field(default_factory=list)
    """Companies back upstream after the sync unlinked them."""


class Planner:
    """One apply's plan: `ids_needed()` says how many fresh ids to reserve, `plan(ids)` the
    rest. Plans from the rows as loaded; nothing here reads or writes the database."""

    def __init__(
        self,
        wanted: dict[str, Wanted],
        companies: Iterable[CompanyRow],
        groups: Iterable[GroupRow],
    ) -> None:
        self.wanted = wanted
        self.companies: dict[str, CompanyRow] = {c.public_id: c for c in companies}
        self.by_id: dict[int, CompanyRow] = {c.id: c for c in self.companies.values()}
        self.groups: dict[int, GroupRow] = {g.id: g for g in groups}
        self.shares: set[int] = {
            g.company_id
            for g in self.groups.values()
            if g.kind == GroupKind.SHARED_OBJECTS.value and g.company_id is not None
        }
        self.new_groups: dict[int, int] = {}  # new Shared Objects group id -> its company id
        self.result = Plan()

    # -- creates ------------------------------------------------------------------------------

    def _new(self) -> list[Wanted]:
        return [w for w in self.wanted.values() if w.public_id not in self.companies]

    def _sharing(self) -> list[str]:
        """Companies of a type that shares objects and have no Shared Objects group yet."""
        return [
            w.public_id
            for w in self.wanted.values()
            if w.type in SHARES_OBJECTS
            and (
                w.public_id not in self.companies
                or self.companies[w.public_id].id not in self.shares
            )
        ]

    def ids_needed(self) -> dict[str, int]:
        """Fresh primary keys per table the plan will use."""
        new = len(self._new())
        return {"company": new, "static_group": new + len(self._sharing())}

    def plan(self, ids: Mapping[str, Iterable[int]]) -> Plan:
        """The plan, using the reserved `ids` (as many as `ids_needed` asked for)."""
        self._add_new(iter(ids.get("company", ())), iter(ids.get("static_group", ())))
        self._layout()
        self._unlink_missing()
        self._relink_returning()
        return self.result

    def _add_new(self, company_ids: Iterator[int], group_ids: Iterator[int]) -> None:
        """Give every new company its ids (company, group) and every company of a type that
        shares objects a Shared Objects group; `_layout` lays them out."""
        new, sharing = self._new(), self._sharing()
        changes = self.result.changes
        for w in new:
            company = CompanyRow(
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
            changes.created += 1
            if w.type == CompanyType.CUSTOMER:
                changes.status_changed.append(company.id)
        for public_id in sharing:
            company = self.companies[public_id]
            group = GroupRow(
                next(group_ids), SHARED_OBJECTS_GROUP, "new", company.group_id, depth=-1
            )
            self.groups[group.id] = group
            self.new_groups[group.id] = company.id
            self.shares.add(company.id)

    # -- layout -------------------------------------------------------------------------------

    def final_parent(self, company: CompanyRow) -> int | None:
        wanted = self.wanted.get(company.public_id)
        if wanted is None:  # missing upstream: stays where it is
            return company.parent_id
        return self.companies[wanted.parent].id if wanted.parent else None

    def _layout(self) -> None:
        """Recompute both trees from the top: the new rows with their final layout, and every
        existing row whose layout or details differ."""
        plan = self.result
        companies_group = next(
            g.id for g in self.groups.values() if g.kind == GroupKind.COMPANIES.value
        )
        # The group forest as it must be: company groups follow their companies.
        parent_of: dict[int, int | None] = {g.id: g.parent_id for g in self.groups.values()}
        name_of: dict[int, str] = {g.id: g.name for g in self.groups.values()}
        company_of_group: dict[int, CompanyRow] = {}
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
                sort_key = parent_key + (segment or tree.sort_segment(name, group_id))
                row = self._company_row(company, path, sort_key, depth - 2)
                if company.new:
                    plan.new_companies.append({**row, "public_id": company.public_id})  # type: ignore[dict-item]
                elif row is not None:
                    plan.changed_companies.append(row)
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
                same_segment = group.name == name and bool(group.sort_key)
                segment = group.sort_key[-_SEGMENT:] if same_segment else None
                sort_key = parent_key + (segment or tree.sort_segment(name, group_id))
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
                    plan.new_groups.append({**row, "kind": kind, "company_id": owner})
                else:
                    plan.changed_groups.append(row)
            stack.extend((child, path, sort_key, depth + 1) for child in children.get(group_id, ()))

    def _company_row(
        self, company: CompanyRow, path: str, sort_key: str, depth: int
    ) -> dict[str, Any] | None:
        """The company's row as it must be; None when it already is."""
        changes = self.result.changes
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
                    changes.updated += 1
                if company.parent_id != parent_id:
                    changes.moved += 1
                if (company.type == CompanyType.CUSTOMER) != (type_ == CompanyType.CUSTOMER):
                    changes.status_changed.append(company.id)
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
            "sort_name": tree.sort_name(name),
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

    def _unlink_missing(self) -> None:
        """Companies gone upstream are unlinked (kept with their groups and computers)."""
        gone = [
            c for c in self.companies.values() if c.public_id not in self.wanted and not c.unlinked
        ]
        self.result.unlink = gone
        self.result.changes.unlinked += len(gone)
        self.result.changes.status_changed += [c.id for c in gone if c.type == CompanyType.CUSTOMER]

    def _relink_returning(self) -> None:
        """Companies back upstream after vanishing get their status back; one a user unlinked
        stays unlinked until a user relinks it."""
        back = [
            c
            for c in self.companies.values()
            if c.public_id in self.wanted
            and c.unlinked
            and c.unlink_reason == UnlinkReason.UPSTREAM.value
        ]
        self.result.relink = back
        self.result.changes.relinked += len(back)
        self.result.changes.status_changed += [
            c.id for c in back if self.wanted[c.public_id].type == CompanyType.CUSTOMER
        ]


def users_to_disable(
    users: Iterable[Mapping[str, Any]], gone: Iterable[CompanyRow]
) -> list[dict[str, int]]:
    """The native users (`id`, home group `path`) living in unlinked companies' groups, each
    with the deepest of those companies (`company_id`) its home group lies in."""
    by_group = {c.group_id: c.id for c in gone}
    rows = []
    for user in users:
        for group_id in reversed(tree.path_ids(user["path"])):
            if group_id in by_group:
                rows.append({"id": user["id"], "company_id": by_group[group_id]})
                break
    return rows

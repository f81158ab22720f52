"""What a sync must change, computed without a database: the plan of an apply.

Input (`reconcile_input`): the companies an upstream snapshot asks for and the instance's
current rows as loaded (the values the upstream decides, not the layout): the whole instance,
or any part of it that holds every ancestor of its rows and the whole subtree of every group
whose layout changes, with the wanted companies of that part and the new ones
(`reconcile_scope`). Output: a `Plan` of rows to insert and rewrite, companies to unlink and
relink, and the `Changes` to report. Cost is linear in the rows given and, when little changed,
little more than one comparison per company:

- A group's layout (path, sort key, depth) follows from its parent's and its own id and name
  (`server.domain.tree_paths`), an invariant every writer of both trees keeps. So a row is rewritten
  only when it is new, its parent or name changed, or an ancestor's layout did, and only those
  rows' layouts are computed (each from its parent's, once): a rename or move rewrites the
  subtree it heads, nothing else. The stored layouts are never read.
- A company's row is rewritten too when its details or its stored fingerprint (`Wanted.digest`,
  NULL until first written) differ from what the snapshot wants.
- New rows are handed over in sort-key order, so that the databases append to their indexes.

`reconcile.apply_snapshot` loads the rows (`reconcile_scope`) and writes the plan.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from server.domain import tree_paths
from server.domain.hierarchy import SHARED_OBJECTS_GROUP, SHARES_OBJECTS
from server.domain.license_reconcile import LicenseChanges
from server.domain.reconcile_input import CompanyRow, GroupRow, Wanted
from server.models.enums import CompanyType, GroupKind, UnlinkReason


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
        self._new_companies: list[Wanted] | None = None
        self._sharing_companies: list[str] | None = None

    # -- creates ------------------------------------------------------------------------------

    def _new(self) -> list[Wanted]:
        """The companies to create (before `_add_new` adds them)."""
        if self._new_companies is None:
            self._new_companies = [
                w for w in self.wanted.values() if w.public_id not in self.companies
            ]
        return self._new_companies

    def _sharing(self) -> list[str]:
        """Companies of a type that shares objects and have no Shared Objects group yet."""
        if self._sharing_companies is None:
            self._sharing_companies = [
                w.public_id
                for w in self.wanted.values()
                if w.type in SHARES_OBJECTS
                and (
                    w.public_id not in self.companies
                    or self.companies[w.public_id].id not in self.shares
                )
            ]
        return self._sharing_companies

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
            group = GroupRow(next(group_ids), SHARED_OBJECTS_GROUP, "new", company.group_id)
            self.groups[group.id] = group
            self.new_groups[group.id] = company.id
            self.shares.add(company.id)

    # -- layout -------------------------------------------------------------------------------

    def _layout(self) -> None:
        """Walk both trees from the top as they must be; rewrite what moved, was renamed or
        lies below something that was, insert what is new. One pass over the companies; the
        rest only over what changed."""
        plan, changes = self.result, self.result.changes
        companies_group = next(
            g.id for g in self.groups.values() if g.kind == GroupKind.COMPANIES.value
        )
        # The group forest as it must be (company groups follow their companies), the groups
        # whose own place or name changes, and the companies whose details change.
        parent_of: dict[int, int | None] = {}
        name_of: dict[int, str] = {}
        moved_here: set[int] = set()
        for g in self.groups.values():
            parent_of[g.id], name_of[g.id] = g.parent_id, g.name
            if g.id in self.new_groups:
                moved_here.add(g.id)
        company_of_group: dict[int, CompanyRow] = {}
        # company id -> parent, details, upstream digest
        final: dict[int, tuple[int | None, tuple[Any, ...], str | None]] = {}
        touched: dict[int, CompanyRow] = {}  # by id: what to insert or rewrite
        wanted_of, by_id = self.wanted.get, self.by_id
        for company in self.companies.values():
            wanted = wanted_of(company.public_id)
            current = (
                company.name,
                company.type,
                company.read_only,
                company.status,
                company.email,
                company.custom_identifier,
            )
            if wanted is None:  # missing upstream: stays where and as it is
                parent, details, digest = company.parent_id, current, company.upstream_digest
            else:
                digest = wanted.digest
                parent = self.companies[wanted.parent].id if wanted.parent else None
                if wanted.details:
                    details = (
                        wanted.name,
                        wanted.type,
                        wanted.read_only,
                        wanted.status or company.status,
                        wanted.email,
                        wanted.custom_identifier,
                    )
                else:
                    details = (wanted.name, wanted.type, wanted.read_only, *current[3:])
            group = company.group_id
            parent_of[group] = by_id[parent].group_id if parent is not None else companies_group
            name_of[group] = details[0]
            company_of_group[group] = company
            final[company.id] = (parent, details, digest)
            if company.new or parent != company.parent_id or details[0] != company.name:
                moved_here.add(group)
            elif details != current or digest != company.upstream_digest:
                touched[company.id] = company

        # Groups whose layout changes: those that moved or were renamed, and their subtrees.
        stale: set[int] = set()
        if moved_here:
            children: dict[int | None, list[int]] = {}
            for group_id, parent in parent_of.items():
                children.setdefault(parent, []).append(group_id)
            stack = list(moved_here)
            while stack:
                group_id = stack.pop()
                if group_id not in stale:
                    stale.add(group_id)
                    stack.extend(children.get(group_id, ()))

        layout: dict[int, tuple[str, str, int]] = {}

        def layout_of(group_id: int) -> tuple[str, str, int]:
            """(path, sort key, depth) of a group as it must be, from its parent's."""
            known = layout.get(group_id)
            if known is not None:
                return known
            parent = parent_of[group_id]
            segment = tree_paths.sort_segment(name_of[group_id], group_id)
            if parent is None:
                known = (f"/{group_id}/", segment, 0)
            else:
                path, key, depth = layout_of(parent)
                known = (f"{path}{group_id}/", key + segment, depth + 1)
            layout[group_id] = known
            return known

        for group_id in stale:
            path, sort_key, depth = layout_of(group_id)
            of_group = company_of_group.get(group_id)
            row = {
                "id": group_id,
                "name": name_of[group_id],
                "parent_id": parent_of[group_id],
                "path": path,
                "sort_key": sort_key,
                "depth": depth,
            }
            if of_group is not None:
                touched[of_group.id] = of_group
                if of_group.new:
                    plan.new_groups.append(
                        {**row, "kind": GroupKind.COMPANY.value, "company_id": of_group.id}
                    )
                else:
                    plan.changed_groups.append(row)
            elif group_id in self.new_groups:
                owner = self.new_groups[group_id]
                plan.new_groups.append(
                    {**row, "kind": GroupKind.SHARED_OBJECTS.value, "company_id": owner}
                )
            else:
                plan.changed_groups.append(row)

        for company in touched.values():
            parent_id, details, digest = final[company.id]
            name, type_, read_only, status, email, custom = details
            if not company.new:
                changes.updated += details != (
                    company.name,
                    company.type,
                    company.read_only,
                    company.status,
                    company.email,
                    company.custom_identifier,
                )
                changes.moved += company.parent_id != parent_id
                if (company.type == CompanyType.CUSTOMER) != (type_ == CompanyType.CUSTOMER):
                    changes.status_changed.append(company.id)
            path, sort_key, depth = layout_of(company.group_id)
            row = {
                "id": company.id,
                "name": name,
                "sort_name": tree_paths.sort_name(name),
                "type": type_.value,
                "parent_id": parent_id,
                "path": path,
                "sort_key": sort_key,
                "depth": depth - 2,
                "upstream_status": status,
                "email": email,
                "custom_identifier": custom,
                "read_only": read_only,
                "upstream_digest": digest,
            }
            if company.new:
                plan.new_companies.append({**row, "public_id": company.public_id})
            else:
                plan.changed_companies.append(row)
        # In tree order: the databases append to their sort-key indexes.
        plan.new_companies.sort(key=_by_sort_key)
        plan.new_groups.sort(key=_by_sort_key)

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


def _by_sort_key(row: dict[str, Any]) -> str:
    return str(row["sort_key"])


def users_to_disable(
    users: Iterable[Mapping[str, Any]], gone: Iterable[CompanyRow]
) -> list[dict[str, int]]:
    """The native users (`id`, home group `path`) living in unlinked companies' groups, each
    with the deepest of those companies (`company_id`) its home group lies in."""
    by_group = {c.group_id: c.id for c in gone}
    rows = []
    for user in users:
        for group_id in reversed(tree_paths.path_ids(user["path"])):
            if group_id in by_group:
                rows.append({"id": user["id"], "company_id": by_group[group_id]})
                break
    return rows

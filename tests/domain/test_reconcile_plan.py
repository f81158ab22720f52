"""The reconcile plan without a database: what a sync must write, worked out from a snapshot
and the rows as loaded. Each test stores a plan's rows in a dict the way the writer would, so
that a second plan starts from what the first one wrote."""

from __future__ import annotations

from itertools import count
from typing import Any

import pytest

from server.domain import tree_paths
from server.domain.hierarchy import SHARED_OBJECTS_GROUP
from server.domain.reconcile_input import CompanyRow, GroupRow, wanted_companies
from server.domain.reconcile_plan import Plan, Planner, users_to_disable
from server.models.enums import CompanyType, GroupKind, UnlinkReason
from server.upstream.codes import CUSTOMER, DISTRIBUTOR, MSP, MSP_MANAGER, SUSPENDED
from server.upstream.errors import UpstreamProtocolError
from server.upstream.records import UpstreamCompany, UpstreamCompanyRef, UpstreamSnapshot

ALL, COMPANIES = 1, 2


def company(public_id: str, type: int, parent: str, name: str = "", status: int = 1) -> Any:
    return UpstreamCompany(public_id, name or public_id.title(), type, status, parent, None, None)


def snapshot(*descendants: UpstreamCompany) -> UpstreamSnapshot:
    """The account's company `acct` (an MSP Manager under the distributor `dist`) and these."""
    root = UpstreamCompany("acct", "Acct", MSP_MANAGER, 1, "dist", None, None)
    return UpstreamSnapshot(
        root, (UpstreamCompanyRef("dist", "Dist", DISTRIBUTOR),), tuple(descendants)
    )


class Stored:
    """The rows of one instance as the writer leaves them, and fresh ids as the database hands
    them out."""

    def __init__(self) -> None:
        self.companies: dict[int, dict[str, Any]] = {}
        all_key = tree_paths.sort_segment("All", ALL)
        companies_key = all_key + tree_paths.sort_segment("Companies", COMPANIES)
        top = {"company_id": None, "kind": GroupKind.ALL.value, "parent_id": None, "depth": 0}
        self.groups: dict[int, dict[str, Any]] = {
            ALL: {**top, "id": ALL, "name": "All", "path": "/1/", "sort_key": all_key},
            COMPANIES: {
                **top,
                "id": COMPANIES,
                "name": "Companies",
                "kind": GroupKind.COMPANIES.value,
                "parent_id": ALL,
                "path": "/1/2/",
                "sort_key": companies_key,
                "depth": 1,
            },
        }
        self.ids = count(100)

    def plan(self, shot: UpstreamSnapshot) -> Plan:
        planner = Planner(
            wanted_companies(shot),
            [loaded(row) for row in self.companies.values()],
            [
                GroupRow.of([row[c] for c in ("id", "name", "kind", "parent_id", "company_id")])
                for row in self.groups.values()
                if row["kind"] != GroupKind.COMPANY.value
            ],
        )
        needed = planner.ids_needed()
        return planner.plan(
            {table: [next(self.ids) for _ in range(n)] for table, n in needed.items()}
        )

    def write(self, plan: Plan) -> None:
        for row in plan.new_companies:
            self.companies[row["id"]] = {**row, "unlinked_at": None, "unlink_reason": None}
        for row in plan.changed_companies:
            self.companies[row["id"]].update(row)
        for row in plan.new_groups:
            self.groups[row["id"]] = dict(row)
        for row in plan.changed_groups:
            self.groups[row["id"]].update(row)
        for gone in plan.unlink:
            self.companies[gone.id].update(unlinked_at="now", unlink_reason="upstream")
        for back in plan.relink:
            self.companies[back.id].update(unlinked_at=None, unlink_reason=None)

    def sync(self, shot: UpstreamSnapshot) -> Plan:
        plan = self.plan(shot)
        self.write(plan)
        return plan

    def by_public_id(self, public_id: str) -> dict[str, Any]:
        return next(c for c in self.companies.values() if c["public_id"] == public_id)


def loaded(row: dict[str, Any]) -> CompanyRow:
    """A stored company as the writer loads it."""
    columns = ("id", "public_id", "name", "type", "parent_id", "upstream_status", "email")
    more = ("custom_identifier", "read_only")
    return CompanyRow.of(
        [
            *(row[c] for c in (*columns, *more)),
            row["unlinked_at"] is not None,
            row["unlink_reason"],
            tree_paths.path_ids(row["path"])[-1],
            row.get("upstream_digest"),
            row.get("license_digest"),
        ]
    )


def writes(plan: Plan) -> int:
    return sum(
        map(
            len,
            (
                plan.new_companies,
                plan.changed_companies,
                plan.new_groups,
                plan.changed_groups,
                plan.unlink,
                plan.relink,
            ),
        )
    )


TREE = (
    company("msp1", MSP, "acct"),
    company("msp2", MSP, "acct"),
    company("c1", CUSTOMER, "msp1", "Bakery"),
    company("c2", CUSTOMER, "msp1", "Dentist"),
    company("c3", CUSTOMER, "msp2", "Florist", status=SUSPENDED),
)


def test_a_first_plan_inserts_every_company_with_its_group_and_shared_objects_groups() -> None:
    stored = Stored()
    plan = stored.sync(snapshot(*TREE))
    assert plan.changes.created == 7  # the distributor, the account, 2 MSPs, 3 customers
    assert sorted(plan.changes.status_changed) == sorted(
        row["id"] for row in plan.new_companies if row["type"] == CompanyType.CUSTOMER.value
    )
    assert (plan.changed_companies, plan.changed_groups, plan.unlink, plan.relink) == (
        [],
        [],
        [],
        [],
    )
    groups = {row["id"]: row for row in plan.new_groups}
    shared = [g for g in groups.values() if g["kind"] == GroupKind.SHARED_OBJECTS.value]
    assert len(shared) == 3 and {g["name"] for g in shared} == {SHARED_OBJECTS_GROUP}
    for row in plan.new_companies:
        group = groups[tree_paths.path_ids(row["path"])[-1]]
        assert (group["path"], group["sort_key"], group["name"]) == (
            row["path"],
            row["sort_key"],
            row["name"],
        )
        assert group["depth"] == row["depth"] + 2
        parent = stored.companies.get(row["parent_id"])
        parent_path = parent["path"] if parent else "/1/2/"
        assert row["path"] == tree_paths.child_path(parent_path, group["id"])
    distributor = stored.by_public_id("dist")
    assert (distributor["read_only"], distributor["parent_id"], distributor["depth"]) == (
        True,
        None,
        0,
    )
    assert stored.by_public_id("c3")["upstream_status"] == SUSPENDED


def test_a_plan_of_an_unchanged_snapshot_writes_nothing() -> None:
    stored = Stored()
    stored.sync(snapshot(*TREE))
    plan = stored.plan(snapshot(*TREE))
    assert writes(plan) == 0 and not plan.changes.any and plan.changes.status_changed == []


def test_a_rename_rewrites_the_company_and_the_sort_keys_of_its_subtree() -> None:
    stored = Stored()
    stored.sync(snapshot(*TREE))
    renamed = (company("msp1", MSP, "acct", "Zebra IT"), *TREE[1:])
    plan = stored.sync(snapshot(*renamed))
    assert plan.changes.updated == 1 and plan.changes.moved == 0
    msp1 = stored.by_public_id("msp1")
    changed = {row["id"] for row in plan.changed_companies}
    under = {c["id"] for c in stored.companies.values() if c["path"].startswith(msp1["path"])}
    assert changed == under  # msp1, c1, c2: their sort keys start with msp1's
    assert all(
        c["sort_key"].startswith(msp1["sort_key"])
        for c in stored.companies.values()
        if c["id"] in under
    )
    assert writes(stored.plan(snapshot(*renamed))) == 0


def test_a_move_takes_the_subtree_along_and_counts_once() -> None:
    stored = Stored()
    stored.sync(snapshot(*TREE))
    moved = (*TREE[:2], company("c1", CUSTOMER, "msp2", "Bakery"), *TREE[3:])
    plan = stored.sync(snapshot(*moved))
    assert (plan.changes.moved, plan.changes.updated) == (1, 0)
    c1, msp2 = stored.by_public_id("c1"), stored.by_public_id("msp2")
    assert c1["parent_id"] == msp2["id"] and c1["path"].startswith(msp2["path"])
    assert c1["depth"] == msp2["depth"] + 1


def test_missing_companies_are_unlinked_and_relinked_only_when_the_sync_unlinked_them() -> None:
    stored = Stored()
    stored.sync(snapshot(*TREE))
    plan = stored.sync(snapshot(*TREE[:3]))
    gone = {c.public_id for c in plan.unlink}
    assert gone == {"c2", "c3"} and plan.changes.unlinked == 2
    assert sorted(plan.changes.status_changed) == sorted(c.id for c in plan.unlink)
    stored.by_public_id("c3")["unlink_reason"] = UnlinkReason.USER.value
    plan = stored.sync(snapshot(*TREE))
    assert [c.public_id for c in plan.relink] == ["c2"] and plan.changes.relinked == 1


def test_users_are_disabled_by_the_deepest_unlinked_company_they_live_in() -> None:
    stored = Stored()
    stored.sync(snapshot(*TREE))
    rows = {row["public_id"]: loaded(row) for row in stored.companies.values()}
    msp1, c1 = rows["msp1"], rows["c1"]
    path = {key: stored.by_public_id(key)["path"] for key in ("msp1", "c1", "msp2")}
    users = [
        {"id": 1, "path": path["c1"]},
        {"id": 2, "path": path["msp1"]},
        {"id": 3, "path": path["msp2"]},
        {"id": 4, "path": f"{path['c1']}999/"},  # a custom group inside the customer
    ]
    assert users_to_disable(users, [msp1, c1]) == [
        {"id": 1, "company_id": c1.id},
        {"id": 2, "company_id": msp1.id},
        {"id": 4, "company_id": c1.id},
    ]


def test_a_value_longer_than_its_column_is_refused_before_any_plan() -> None:
    with pytest.raises(UpstreamProtocolError, match="name of 1000 characters"):
        wanted_companies(snapshot(company("long", CUSTOMER, "acct", "x" * 1000)))


def test_a_new_customer_is_inserted_without_rewriting_anything_else() -> None:
    stored = Stored()
    stored.sync(snapshot(*TREE))
    plan = stored.sync(snapshot(*TREE, company("c4", CUSTOMER, "msp2", "Aaa First")))
    assert [row["public_id"] for row in plan.new_companies] == ["c4"]
    assert [row["kind"] for row in plan.new_groups] == [GroupKind.COMPANY.value]
    assert (plan.changed_companies, plan.changed_groups) == ([], [])
    c4, msp2 = stored.by_public_id("c4"), stored.by_public_id("msp2")
    assert c4["sort_key"].startswith(msp2["sort_key"]) and c4["depth"] == msp2["depth"] + 1


def test_a_status_change_rewrites_that_row_alone_and_a_type_change_adds_shared_objects() -> None:
    stored = Stored()
    stored.sync(snapshot(*TREE))
    suspended = (*TREE[:2], company("c1", CUSTOMER, "msp1", "Bakery", SUSPENDED), *TREE[3:])
    plan = stored.sync(snapshot(*suspended))
    assert [row["id"] for row in plan.changed_companies] == [stored.by_public_id("c1")["id"]]
    assert (plan.changes.updated, plan.new_groups, plan.changed_groups) == (1, [], [])
    promoted = (*TREE[:2], company("c1", MSP, "msp1", "Bakery"), *TREE[3:])
    plan = stored.sync(snapshot(*promoted))
    assert [row["kind"] for row in plan.new_groups] == [GroupKind.SHARED_OBJECTS.value]
    assert plan.changes.status_changed == [stored.by_public_id("c1")["id"]]
    assert [row["id"] for row in plan.changed_companies] == [stored.by_public_id("c1")["id"]]


def test_the_new_rows_of_a_plan_come_in_sort_key_order() -> None:
    plan = Stored().plan(snapshot(*TREE))
    for rows in (plan.new_companies, plan.new_groups):
        keys = [row["sort_key"] for row in rows]
        assert keys == sorted(keys)

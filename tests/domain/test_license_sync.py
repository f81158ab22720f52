"""Licenses in the sync, through real HTTP against the simulator: read with the tree and
applied in its transaction, counted on the run, announced to subscribers, a malformed listing
failing the run with nothing changed, and a fixed number of statements whatever the count."""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from typing import Any

import pytest

from server import events
from server.domain import reconcile, usage
from server.domain.reconcile_input import wanted_companies
from server.events import InProcessEventBus
from server.models import Company, UsageDay, db
from server.models.enums import SyncState
from server.settings import Settings
from server.upstream.client import MspAdministratorClient
from server.upstream.codes import CUSTOMER
from server.upstream.licenses import fetch_licenses
from server.upstream.simulator import DEFAULT_PASSWORD, DEFAULT_USERNAME, Simulator, UpstreamTree
from server.upstream.simulator.license_book import CANCELED, EXPIRED, SUSPENDED, LicenseBook
from tests.sync_support import connected_tenant, synced, synced_tenant

STATES = {1: "ACTIVE", 2: "SUSPENDED", 3: "EXPIRED", 4: "CANCELED"}


pytestmark = pytest.mark.upstream_tree(60, 21)


async def console_licenses(instance_id: int) -> dict[str, tuple[Any, ...]]:
    """The console's licenses as the upstream spells them."""
    rows = await db.fetch(
        "SELECT l.*, c.public_id AS company FROM license l JOIN company c ON c.id = l.company_id "
        "WHERE l.instance_id = ?",
        [instance_id],
    )
    return {
        row["public_license_key"]: (
            row["company"], row["product_code"], row["product_name"], row["seats"],
            row["activated"], row["state"], bool(row["trial"]),
            str(row["expires_at"])[:10] if row["expires_at"] else None,
        )
        for row in rows
    }  # fmt: skip


def upstream_licenses(tree: UpstreamTree) -> dict[str, tuple[Any, ...]]:
    return {
        key: (lic["companyId"], lic["productCode"], lic["productName"], lic["quantity"],
              lic["usage"], STATES[lic["state"]], lic["isTrial"], lic["expirationDate"])
        for key, lic in tree.licenses.licenses.items()
    }  # fmt: skip


async def dump(instance_id: int) -> list[list[dict[str, Any]]]:
    return [
        await db.fetch(f"SELECT * FROM {table} WHERE instance_id = ? ORDER BY id", [instance_id])
        for table in ("license", "company", "usage_line", "usage_day")
    ]


async def test_a_sync_brings_every_license_and_a_usage_snapshot(
    app: object, sim: Simulator, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="server.domain.sync")
    owner = await connected_tenant(None, sim)
    run = await synced(owner, settings)
    assert run.state == SyncState.SUCCEEDED, run.error
    assert await console_licenses(owner.instance_id or 0) == upstream_licenses(sim.tree)
    total = len(sim.tree.licenses)
    assert (run.licenses_seen, run.licenses_created, run.licenses_updated) == (total, total, 0)
    assert f"sync run {run.id} " in caplog.text  # the run's log line counts them too
    assert f"; {total} licenses, +{total} ~0 -0" in caplog.text
    day = await UsageDay.get(instance_id=owner.instance_id)
    assert (day.day, day.trigger) == (dt.datetime.now(dt.UTC).date(), "sync")
    billable = sum(
        lic["quantity"]
        for lic in sim.tree.licenses.licenses.values()
        if lic["state"] == 1 and not lic["isTrial"]
    )
    seats = await db.fetch_value(
        "SELECT SUM(seats) FROM usage_line WHERE instance_id = ?", [owner.instance_id]
    )
    assert seats == billable
    assert sim.calls["Search/Licenses"] >= len(sim.tree.snapshot())


async def test_a_resync_applies_every_kind_of_edit_and_announces_the_changed(
    app: object, sim: Simulator, settings: Settings
) -> None:
    owner = await synced_tenant(sim, settings)
    instance_id = owner.instance_id or 0
    book = sim.tree.licenses
    customers = [c["publicId"] for c in sim.tree.of_type(CUSTOMER)]
    # a customer gone upstream keeps its licenses, like itself
    gone = next(c for c in customers[1:] if book.of_company(c))
    kept = {lic["publicLicenseKey"] for lic in book.of_company(gone)}
    keys = sorted(key for key in book.licenses if key not in kept)
    book.set_quantity(keys[0], 999)
    book.set_usage(keys[1], book.licenses[keys[1]]["quantity"] + 7)  # overused
    book.set_state(keys[2], SUSPENDED)
    book.expire(keys[3])
    book.set_state(keys[4], CANCELED)
    book.remove(keys[5])
    movable = [c for c in customers if c not in (gone, book.licenses[keys[6]]["companyId"])]
    book.move(keys[6], movable[0])
    new_key = book.add(customers[0], 130, "ESET Server Security", 3, 1)
    sim.tree.remove(gone)
    bus = InProcessEventBus()
    announced: list[int] = []
    bus.add_handler(events.LICENSE_CHANGED, lambda p: announced.extend(p["license_ids"]))
    run = await synced(owner, settings, bus=bus)
    assert run.state == SyncState.SUCCEEDED, run.error
    stored = await console_licenses(instance_id)
    wanted = upstream_licenses(sim.tree)
    assert {k: v for k, v in stored.items() if k not in kept} == {
        k: v for k, v in wanted.items() if k not in kept
    }
    assert kept <= set(stored)
    assert keys[5] not in stored
    assert stored[keys[3]][5] == STATES[EXPIRED]
    assert (run.licenses_created, run.licenses_updated, run.licenses_removed) == (1, 6, 1)
    ids = dict(
        (row["public_license_key"], row["id"])
        for row in await db.fetch(
            "SELECT id, public_license_key FROM license WHERE instance_id = ?", [instance_id]
        )
    )
    assert sorted(announced) == sorted(ids[k] for k in [*keys[:5], keys[6], new_key])
    unlinked = await Company.get(instance_id=instance_id, public_id=gone)
    assert unlinked.unlinked_at is not None
    # nothing changed: nothing announced, nothing rewritten
    announced.clear()
    lines = await db.fetch("SELECT * FROM usage_line WHERE instance_id = ?", [instance_id])
    run = await synced(owner, settings, bus=bus)
    assert (run.licenses_created, run.licenses_updated, run.licenses_removed) == (0, 0, 0)
    assert announced == []
    assert await db.fetch("SELECT * FROM usage_line WHERE instance_id = ?", [instance_id]) == lines


async def usage_lines(instance_id: int) -> dict[tuple[str, int], tuple[Any, ...]]:
    """The day's lines by (company public id, product): (row id, seats, activated, licenses)."""
    rows = await db.fetch(
        "SELECT u.id, c.public_id, u.product_code, u.seats, u.activated, u.licenses "
        "FROM usage_line u JOIN company c ON c.id = u.company_id WHERE u.instance_id = ?",
        [instance_id],
    )
    return {
        (row["public_id"], row["product_code"]): (
            row["id"],
            row["seats"],
            row["activated"],
            row["licenses"],
        )
        for row in rows
    }


async def test_a_resync_rewrites_the_usage_lines_of_the_companies_whose_licenses_changed_alone(
    app: object, sim: Simulator, settings: Settings
) -> None:
    owner = await synced_tenant(sim, settings)
    instance_id = owner.instance_id or 0
    book = sim.tree.licenses
    before = await usage_lines(instance_id)
    billable = sorted(
        key for key, lic in book.licenses.items() if lic["state"] == 1 and not lic["isTrial"]
    )
    raised = billable[0]
    moved = next(
        k for k in billable if book.licenses[k]["companyId"] != book.licenses[raised]["companyId"]
    )
    source = book.licenses[moved]["companyId"]
    customers = [c["publicId"] for c in sim.tree.of_type(CUSTOMER)]
    target = next(c for c in customers if c not in (source, book.licenses[raised]["companyId"]))
    touched = {book.licenses[raised]["companyId"], source, target}
    book.set_quantity(raised, book.licenses[raised]["quantity"] + 50)
    book.move(moved, target)
    run = await synced(owner, settings)
    assert (run.licenses_created, run.licenses_updated, run.licenses_removed) == (0, 2, 0)
    after = await usage_lines(instance_id)
    untouched = {key: line for key, line in before.items() if key[0] not in touched}
    assert untouched and {key: after.get(key) for key in untouched} == untouched  # same rows
    # and the day holds what a whole snapshot writes
    await usage.record_snapshot(instance_id, dt.datetime.now(dt.UTC))
    whole = await usage_lines(instance_id)
    assert {k: v[1:] for k, v in after.items()} == {k: v[1:] for k, v in whole.items()}
    assert {k: v[1:] for k, v in after.items()} != {k: v[1:] for k, v in before.items()}


async def test_a_first_sync_after_the_days_scheduled_snapshot_writes_the_whole_day(
    app: object, sim: Simulator, settings: Settings
) -> None:
    # every connected instance has its day's snapshot taken within a minute, so a large first
    # sync finds the day taken: it writes the day whole, never the lines of a list of every
    # company it touched (a plan made without statistics of the licenses it just wrote)
    owner = await connected_tenant(None, sim)
    instance_id = owner.instance_id or 0
    assert await usage.take_scheduled_snapshot(instance_id, dt.datetime.now(dt.UTC))
    with db.count_statements() as counter:
        run = await synced(owner, settings)
    assert run.state == SyncState.SUCCEEDED, run.error
    writes = [s for s in counter.statements if s.startswith("INSERT INTO usage_line")]
    assert writes and not [s for s in writes if "company_id IN" in s]
    assert (await UsageDay.get(instance_id=instance_id)).trigger == "sync"
    lines = await usage_lines(instance_id)
    await usage.record_snapshot(instance_id, dt.datetime.now(dt.UTC))
    whole = await usage_lines(instance_id)
    assert lines and {k: v[1:] for k, v in lines.items()} == {k: v[1:] for k, v in whole.items()}


MALFORMED = {
    "negative usage": lambda body: body["licenses"][0].update(usage=-3),
    "a quantity that is text": lambda body: body["licenses"][0].update(quantity="5"),
    "another company's license": lambda body: body["licenses"][0].update(companyId="elsewhere"),
}


@pytest.mark.parametrize("case", [*sorted(MALFORMED), "a key under two companies"])
async def test_a_malformed_listing_fails_the_run_and_changes_nothing(
    app: object, sim: Simulator, settings: Settings, case: str
) -> None:
    owner = await synced_tenant(sim, settings)
    instance_id = owner.instance_id or 0
    before = await dump(instance_id)
    sim.tree.rename(sim.tree.of_type(CUSTOMER)[0]["publicId"], "Renamed meanwhile")
    key = sorted(sim.tree.licenses.licenses)[0]
    sim.tree.licenses.set_quantity(key, 4321)
    if case in MALFORMED:
        edit = MALFORMED[case]

        def body(payload: dict[str, Any]) -> dict[str, Any]:
            if payload["licenses"]:
                edit(payload)
            return payload

        owner_of = sim.tree.licenses.licenses[key]["companyId"]
        sim.faults.malformed_body(body=body, endpoint="Search/Licenses", times=10**6)
        sim.tree.licenses.add(owner_of)  # every company of the key's has one to spoil
    else:
        other = next(
            c["publicId"]
            for c in sim.tree.of_type(CUSTOMER)
            if c["publicId"] != sim.tree.licenses.licenses[key]["companyId"]
        )
        sim.tree.licenses.list_twice(key, under=other)
    run = await synced(owner, settings)
    assert run.state == SyncState.FAILED
    assert "Search/Licenses" in (run.error or "")
    assert await dump(instance_id) == before


async def test_more_licenses_than_allowed_fail_the_run_naming_the_setting(
    app: object, sim: Simulator, settings: Settings
) -> None:
    owner = await connected_tenant(None, sim)
    limited = dataclasses.replace(settings, upstream_max_licenses=len(sim.tree.licenses) - 1)
    run = await synced(owner, limited)
    assert run.state == SyncState.FAILED
    assert "MSP_CONSOLE_UPSTREAM_MAX_LICENSES" in (run.error or "")
    assert not await db.fetch("SELECT id FROM license WHERE instance_id = ?", [owner.instance_id])


async def apply_statements(instance_id: int, snapshot: Any, licenses: Any) -> int:
    with db.count_statements() as counter:
        await reconcile.apply_snapshot(instance_id, wanted_companies(snapshot), licenses=licenses)
    return counter.count


async def test_applying_licenses_costs_as_many_statements_for_2000_as_for_50(
    app: object,
) -> None:
    counts = []
    for size, per_company in ((25, 2.0), (250, 8.0)):
        tree = UpstreamTree.generate(size, seed=size)
        account = [c["publicId"] for c in tree.subtree(tree.account_id)]
        tree.licenses = LicenseBook.generate(account, size, per_company)
        async with Simulator(tree) as sim:
            owner = await connected_tenant(None, sim)
            instance_id = owner.instance_id or 0
            async with MspAdministratorClient(sim.url, DEFAULT_USERNAME, DEFAULT_PASSWORD) as api:

                async def read(tree: UpstreamTree = tree) -> tuple[Any, Any]:
                    snapshot = await api.fetch_tree(tree.account_id)
                    ids = [c.public_id for c in snapshot.companies]
                    return snapshot, await fetch_licenses(api, ids)

                first = await apply_statements(instance_id, *await read())
                book = tree.licenses
                keys = sorted(book.licenses)
                book.set_quantity(keys[0], 1)
                book.suspend(keys[1])
                book.remove(keys[2])
                book.add(tree.of_type(CUSTOMER)[0]["publicId"])
                second = await apply_statements(instance_id, *await read())
                third = await apply_statements(instance_id, *await read())
            counts.append((first, second, third))
    assert counts[0] == counts[1], counts


async def test_a_sync_after_one_that_changed_nothing_finds_a_changed_quantity_alone(
    app: object, sim: Simulator, settings: Settings
) -> None:
    owner = await synced_tenant(sim, settings)
    instance_id = owner.instance_id or 0
    unchanged = await synced(owner, settings)
    assert (unchanged.licenses_created, unchanged.licenses_updated) == (0, 0)
    key = sorted(sim.tree.licenses.licenses)[0]
    sim.tree.licenses.set_quantity(key, sim.tree.licenses.licenses[key]["quantity"] + 1)
    run = await synced(owner, settings)
    assert (run.licenses_created, run.licenses_updated, run.licenses_removed) == (0, 1, 0)
    assert await console_licenses(instance_id) == upstream_licenses(sim.tree)


async def test_a_license_that_left_a_company_gone_upstream_comes_back_with_it(
    app: object, sim: Simulator, settings: Settings
) -> None:
    """The company it left no longer holds the listing it last had: when the company and the
    license come back as they were, the license is moved back, not lost."""
    owner = await synced_tenant(sim, settings)
    instance_id = owner.instance_id or 0
    book = sim.tree.licenses
    customers = [c["publicId"] for c in sim.tree.of_type(CUSTOMER)]
    gone = next(c for c in customers[1:] if book.of_company(c))
    other = next(c for c in customers[1:] if c != gone)
    key = book.of_company(gone)[0]["publicLicenseKey"]
    sim.tree.remove(gone)
    book.move(key, other)
    run = await synced(owner, settings)
    assert (run.unlinked, run.licenses_updated) == (1, 1)
    sim.tree.readd(gone)
    book.move(key, gone)
    run = await synced(owner, settings)
    assert (run.relinked, run.licenses_updated, run.licenses_removed) == (1, 1, 0)
    assert await console_licenses(instance_id) == upstream_licenses(sim.tree)

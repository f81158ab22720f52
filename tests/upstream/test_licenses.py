"""Reading licenses from the MSP Administrator (`Search/Licenses`) against the simulator, over
real HTTP: paging, concurrency over companies, retries, and every malformed listing refused."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import pytest

from server.upstream.client import (
    MspAdministratorClient,
    UpstreamLimitExceeded,
    UpstreamNotFound,
    UpstreamProtocolError,
)
from server.upstream.licenses import fetch_licenses
from server.upstream.simulator import Simulator, UpstreamTree
from server.upstream.simulator.license_book import EXPIRED, SUSPENDED

FAST = {"timeout": 2.0, "max_retries": 3, "max_backoff_total": 2.0, "backoff_base": 0.002,
        "backoff_max": 0.02}  # fmt: skip


def connect(sim: Simulator, **overrides: Any) -> MspAdministratorClient:
    return MspAdministratorClient(sim.url, "demo@msp.example", "demo", **{**FAST, **overrides})


def account(tree: UpstreamTree) -> list[str]:
    return [c["publicId"] for c in tree.subtree(tree.account_id)]


def as_book(listing) -> dict[str, tuple[Any, ...]]:
    return {
        lic.public_license_key: (
            lic.company_id, lic.product_code, lic.quantity, lic.usage, lic.state, lic.is_trial,
            lic.expiration_date.isoformat() if lic.expiration_date else None,
        )
        for licenses in listing.values()
        for lic in licenses
    }  # fmt: skip


def book_of(tree: UpstreamTree) -> dict[str, tuple[Any, ...]]:
    return {
        key: (lic["companyId"], lic["productCode"], lic["quantity"], lic["usage"], lic["state"],
              lic["isTrial"], lic["expirationDate"])
        for key, lic in tree.licenses.licenses.items()
    }  # fmt: skip


async def test_every_license_of_every_company_is_read_page_by_page():
    tree = UpstreamTree.generate(60, seed=3)
    customer = tree.of_type(1007)[0]["publicId"]
    for n in range(7):
        tree.licenses.add(customer, quantity=n + 1, usage=n * 2)
    async with Simulator(tree) as sim, connect(sim, page_size=3) as client:
        listing = await fetch_licenses(client, account(tree))
        assert set(listing) == set(account(tree))
        assert as_book(listing) == book_of(tree)
        assert len(listing[customer]) >= 7
        pages = sim.calls["Search/Licenses"]
    # each company at least one page; the customer with 7+ at least three
    assert pages >= len(account(tree)) + 2


async def test_companies_are_asked_concurrently_within_the_bound():
    tree = UpstreamTree.generate(40, seed=4)
    most = 0
    async with Simulator(tree) as sim:
        sim.faults.delay = 0.02
        async with connect(sim, concurrency=4) as client:
            task = asyncio.create_task(fetch_licenses(client, account(tree)))
            while not task.done():  # requests in flight, as the client counts them
                most = max(most, client._transport._in_flight)
                await asyncio.sleep(0.002)
            await task
    assert 1 < most <= 4


async def test_throttling_and_failures_are_retried():
    tree = UpstreamTree.generate(20, seed=5)
    async with Simulator(tree) as sim, connect(sim) as client:
        sim.faults.maintenance(2, endpoint="Search/Licenses")
        sim.faults.server_error(1, endpoint="Search/Licenses", after=3)
        sim.faults.drop_connection(1, endpoint="Search/Licenses", after=5)
        listing = await fetch_licenses(client, account(tree))
    assert as_book(listing) == book_of(tree)
    assert sim.faults.fired["maintenance"] == 2


async def test_tokens_expiring_while_companies_are_read_at_once_are_renewed():
    tree = UpstreamTree.generate(40, seed=5)
    async with Simulator(tree) as sim, connect(sim, concurrency=4) as client:
        sim.faults.expire_tokens_after(3)
        listing = await fetch_licenses(client, account(tree))
    assert as_book(listing) == book_of(tree)
    # each token answers three listings; the calls it refused at once renew it once
    assert (client.stats.logins, client.stats.renewals) == (1, (len(listing) - 1) // 3)


async def test_an_unknown_company_is_not_found():
    tree = UpstreamTree.generate(20, seed=6)
    async with Simulator(tree) as sim, connect(sim) as client:
        with pytest.raises(UpstreamNotFound):
            await client.company_licenses("no-such-company")
        with pytest.raises(UpstreamNotFound):  # outside the account: as if it did not exist
            await client.company_licenses(tree.distributor_id)


def _first_license(body: dict[str, Any]) -> dict[str, Any]:
    return body["licenses"][0]


MALFORMED = {
    "a quantity that is text": (lambda b: _first_license(b).update(quantity="10"), "quantity"),
    "a negative usage": (lambda b: _first_license(b).update(usage=-1), "usage"),
    "a negative quantity": (lambda b: _first_license(b).update(quantity=-5), "quantity"),
    "a number too large to store": (lambda b: _first_license(b).update(quantity=2**40), "quantity"),
    "an unknown state": (lambda b: _first_license(b).update(state=9), "state"),
    "a boolean state": (lambda b: _first_license(b).update(state=True), "state"),
    "a trial flag that is a number": (lambda b: _first_license(b).update(isTrial=1), "isTrial"),
    "a date that is no date": (
        lambda b: _first_license(b).update(expirationDate="2026-13-40"), "expirationDate"),
    "a date with a time": (
        lambda b: _first_license(b).update(expirationDate="2026-12-01T00:00:00"),
        "expirationDate"),
    "an empty key": (lambda b: _first_license(b).update(publicLicenseKey=""), "publicLicenseKey"),
    "a key too long": (
        lambda b: _first_license(b).update(publicLicenseKey="K" * 65), "publicLicenseKey"),
    "a product name too long": (
        lambda b: _first_license(b).update(productName="P" * 256), "productName"),
    "a missing product code": (lambda b: _first_license(b).pop("productCode"), "productCode"),
    "a license that is a list": (lambda b: b["licenses"].__setitem__(0, []), "licenses[0]"),
    "a negative totalCount": (lambda b: b.update(totalCount=-1), "totalCount"),
    "licenses that are an object": (lambda b: b.update(licenses={}), "licenses"),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(MALFORMED))
async def test_a_malformed_listing_fails_naming_the_field(case):
    edit, field = MALFORMED[case]
    tree = UpstreamTree.generate(20, seed=7)
    company = tree.of_type(1007)[0]["publicId"]
    tree.licenses.add(company, quantity=3)

    def body(payload: dict[str, Any]) -> dict[str, Any]:
        edit(payload)
        return payload

    async with Simulator(tree) as sim, connect(sim) as client:
        sim.faults.malformed_body(body=body, endpoint="Search/Licenses")
        with pytest.raises(UpstreamProtocolError) as failure:
            await client.company_licenses(company)
    assert "Search/Licenses" in str(failure.value)
    assert field in str(failure.value)


async def test_a_key_under_two_companies_fails_naming_both():
    tree = UpstreamTree.generate(30, seed=8)
    first, second = (c["publicId"] for c in tree.of_type(1007)[:2])
    key = tree.licenses.add(first)
    tree.licenses.list_twice(key, under=second)
    async with Simulator(tree) as sim, connect(sim) as client:
        with pytest.raises(UpstreamProtocolError) as failure:
            await fetch_licenses(client, account(tree))
    assert key in str(failure.value)
    assert first in str(failure.value) and second in str(failure.value)


async def test_a_key_twice_under_one_company_fails():
    tree = UpstreamTree.generate(30, seed=8)
    first = tree.of_type(1007)[0]["publicId"]
    key = tree.licenses.add(first)
    tree.licenses.list_twice(key, under=first)
    async with Simulator(tree) as sim, connect(sim) as client:
        with pytest.raises(UpstreamProtocolError, match="listed twice"):
            await client.company_licenses(first)


async def test_a_license_naming_another_company_fails():
    tree = UpstreamTree.generate(30, seed=9)
    first, second = (c["publicId"] for c in tree.of_type(1007)[:2])
    key = tree.licenses.add(first)
    tree.licenses.report_company(key, second)
    async with Simulator(tree) as sim, connect(sim) as client:
        with pytest.raises(UpstreamProtocolError, match="companyId"):
            await client.company_licenses(first)


async def test_a_listing_that_changes_while_paging_fails():
    tree = UpstreamTree.generate(30, seed=10)
    company = tree.of_type(1007)[0]["publicId"]
    for _ in range(5):
        tree.licenses.add(company)

    def grown(payload: dict[str, Any]) -> dict[str, Any]:
        payload["totalCount"] += 1
        return payload

    async with Simulator(tree) as sim, connect(sim, page_size=2) as client:
        sim.faults.malformed_body(body=grown, endpoint="Search/Licenses", after=1)
        with pytest.raises(UpstreamProtocolError, match="changed while paging"):
            await client.company_licenses(company)


async def test_more_licenses_than_the_limit_fail_the_read():
    tree = UpstreamTree.generate(30, seed=11)
    async with Simulator(tree) as sim, connect(sim) as client:
        with pytest.raises(UpstreamLimitExceeded) as failure:
            await fetch_licenses(client, account(tree), max_licenses=len(tree.licenses) - 1)
    assert failure.value.limit == "max_licenses"


async def test_the_book_serves_every_state_and_edit():
    tree = UpstreamTree.generate(200, seed=12)
    states = {lic["state"] for lic in tree.licenses.licenses.values()}
    assert states == {1, 2, 3, 4}
    assert any(lic["usage"] > lic["quantity"] for lic in tree.licenses.licenses.values())
    soon = dt.date.today() + dt.timedelta(days=30)
    assert any(
        lic["expirationDate"] and dt.date.today() <= dt.date.fromisoformat(lic["expirationDate"])
        <= soon for lic in tree.licenses.licenses.values()
    )  # fmt: skip
    key = next(iter(tree.licenses.licenses))
    tree.licenses.suspend(key)
    tree.licenses.set_quantity(key, 77)
    async with Simulator(tree) as sim, connect(sim) as client:
        company = tree.licenses.licenses[key]["companyId"]
        found = {lic.public_license_key: lic for lic in await client.company_licenses(company)}
    assert (found[key].state, found[key].quantity) == (SUSPENDED, 77)
    tree.licenses.expire(key)
    assert tree.licenses.licenses[key]["state"] == EXPIRED

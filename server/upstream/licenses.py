"""Reading the licenses of synced companies from the MSP Administrator (`Search/Licenses`).

Same rules as the tree: through the client's authenticated, retrying transport; every body
validated, naming the endpoint and field; a listing that is off (wrong types, negative numbers,
a key under two companies, a `companyId` that is not the company asked for) fails the whole
read. Companies are asked `concurrency` at a time, so a large account costs the upstream's
latency divided by that, not one company after another.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import orjson

from server.upstream.bodies import Body
from server.upstream.errors import UpstreamLimitExceeded, UpstreamTreeError
from server.upstream.paging import paged_items
from server.upstream.tree_walk import ProgressCallback, _first, _Progress

if TYPE_CHECKING:
    from server.upstream.client import MspAdministratorClient

Call = Callable[..., Awaitable[Any]]
"""An authenticated call: `(endpoint, payload, subject=...)` -> the answer's JSON."""

ENDPOINT: Final = "Search/Licenses"
STATES: Final = frozenset({1, 2, 3, 4})  # active, suspended, expired, canceled
KEY_LENGTH: Final = 64
PRODUCT_NAME_LENGTH: Final = 255
LARGEST: Final = 2**31 - 1  # what the database's integer columns hold


@dataclass(frozen=True, slots=True)
class UpstreamLicense:
    """A license as the MSP Administrator describes it."""

    public_license_key: str
    company_id: str
    product_code: int
    product_name: str
    quantity: int
    usage: int
    state: int
    is_trial: bool
    expiration_date: dt.date | None


def listing_digest(licenses: Sequence[UpstreamLicense]) -> str:
    """A company's license listing fingerprinted as the upstream sent it (another order only
    makes it differ); a `CompanyLicenses`' is taken once, when it is read."""
    if isinstance(licenses, CompanyLicenses):
        return licenses.digest
    return hashlib.blake2b(orjson.dumps(licenses), digest_size=8).hexdigest()


class CompanyLicenses(list[UpstreamLicense]):
    """A company's licenses as read, with their `listing_digest`, taken as they arrive: while
    the other companies' requests are in flight, not after the last one. Read, not changed."""

    __slots__ = ("digest",)

    def __init__(self, licenses: Iterable[UpstreamLicense]) -> None:
        super().__init__(licenses)
        self.digest = hashlib.blake2b(orjson.dumps(self), digest_size=8).hexdigest()


class _LicenseBody(Body):
    def count(self, obj: dict[str, Any], key: str, where: str) -> int:
        value = self.integer(obj, key, where)
        if not 0 <= value <= LARGEST:
            raise self.fail(f"{where}{key}", f"must be from 0 to {LARGEST}, got {value}")
        return value

    def bounded_string(self, obj: dict[str, Any], key: str, where: str, longest: int) -> str:
        value = self.string(obj, key, where)
        if len(value) > longest:
            raise self.fail(f"{where}{key}", f"is longer than {longest} characters")
        return value

    def license(self, value: Any, where: str, company_id: str) -> UpstreamLicense:
        obj = self.object(value, where)
        prefix = f"{where}."
        found = self.string(obj, "companyId", prefix)
        if found != company_id:
            raise self.fail(f"{prefix}companyId", f"is {found[:64]}, not {company_id}")
        trial = self.member(obj, "isTrial", prefix)
        if not isinstance(trial, bool):
            raise self.fail(f"{prefix}isTrial", "must be a boolean")
        return UpstreamLicense(
            public_license_key=self.bounded_string(obj, "publicLicenseKey", prefix, KEY_LENGTH),
            company_id=found,
            product_code=self.count(obj, "productCode", prefix),
            product_name=self.bounded_string(obj, "productName", prefix, PRODUCT_NAME_LENGTH),
            quantity=self.count(obj, "quantity", prefix),
            usage=self.count(obj, "usage", prefix),
            state=self.integer(obj, "state", prefix, allowed=STATES),
            is_trial=trial,
            expiration_date=self.date(obj, "expirationDate", prefix),
        )

    def date(self, obj: dict[str, Any], key: str, where: str) -> dt.date | None:
        value = self.optional_string(obj, key, where)
        if value is None:
            return None
        try:
            if len(value) != 10:
                raise ValueError
            return dt.date.fromisoformat(value)
        except ValueError:
            raise self.fail(f"{where}{key}", "must be a date as YYYY-MM-DD or null") from None


async def company_licenses(
    call: Call, page_size: int, company_id: str, *, at_most: int | None = None
) -> CompanyLicenses:
    """Every license a company owns, page by page through `call` (the client's), checked to be
    its own and to appear once; a `totalCount` above `at_most` fails at the first page.
    `MspAdministratorClient.company_licenses` is how callers ask."""
    body = _LicenseBody(ENDPOINT)
    found: list[UpstreamLicense] = []
    keys: set[str] = set()

    def check_total(total: int) -> None:
        if at_most is not None and total > at_most:
            raise _too_many(at_most, f"{company_id} counts {total}")

    async for index, item in paged_items(
        call,
        body,
        company_id,
        key="licenses",
        what="licenses",
        page_size=page_size,
        count=lambda obj: body.count(obj, "totalCount", ""),
        check_total=check_total,
    ):
        license = body.license(item, f"licenses[{index}]", company_id)
        if license.public_license_key in keys:
            raise UpstreamTreeError(
                f"MSP Administrator {ENDPOINT}: license {license.public_license_key} is "
                f"listed twice under {company_id}"
            )
        keys.add(license.public_license_key)
        found.append(license)
    return CompanyLicenses(found)


def _too_many(limit: int, where: str) -> UpstreamLimitExceeded:
    return UpstreamLimitExceeded(
        f"MSP Administrator licenses are more than {limit}, the limit of a sync ({where})",
        "max_licenses",
    )


async def fetch_licenses(
    client: MspAdministratorClient,
    company_ids: Sequence[str],
    *,
    max_licenses: int | None = None,
    concurrency: int | None = None,
    on_progress: ProgressCallback | None = None,
) -> dict[str, CompanyLicenses]:
    """The licenses of every company asked for, `concurrency` companies at a time (the
    client's by default). A key under two companies fails the read, naming both.
    `on_progress` hears how many licenses are read, as the tree walk reports companies."""
    progress = _Progress(on_progress, client.progress_interval)
    queue: asyncio.Queue[str] = asyncio.Queue()
    for company_id in dict.fromkeys(company_ids):
        queue.put_nowait(company_id)
    listing: dict[str, CompanyLicenses] = {}
    owner_of: dict[str, str] = {}

    async def work() -> None:
        while not queue.empty():
            company_id = queue.get_nowait()
            room = None if max_licenses is None else max_licenses - len(owner_of)
            found = await client.company_licenses(company_id, at_most=room)
            for license in found:
                other = owner_of.setdefault(license.public_license_key, company_id)
                if other != company_id:
                    raise UpstreamTreeError(
                        f"MSP Administrator {ENDPOINT}: license {license.public_license_key} "
                        f"is listed under {other} and under {company_id}"
                    )
            if max_licenses is not None and len(owner_of) > max_licenses:
                raise _too_many(max_licenses, f"at {company_id}")
            listing[company_id] = found
            await progress.report(len(owner_of))

    workers = max(1, min(concurrency or client.concurrency, queue.qsize()))
    try:
        async with asyncio.TaskGroup() as group:
            for _ in range(workers):
                group.create_task(work())
    except BaseExceptionGroup as failures:
        raise _first(failures) from None
    await progress.report(len(owner_of), final=True)
    return listing

"""Licenses as the API shows them: `License`, a company's licenses and seat usage, the root
`licenses` list. Every read goes through the viewer's LICENSES scope (`domain.licenses`)."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Annotated

import strawberry
from strawberry.types import Info

from server.api.authentication import query
from server.api.context import Context
from server.api.enums import LicenseState
from server.api.node import Node, refetchable
from server.api.pagination import Connection, distinct, page_request, paginate
from server.domain import global_ids, licenses
from server.models import Company as CompanyModel
from server.models import License as LicenseModel

if TYPE_CHECKING:
    from server.api.companies import Company


@strawberry.type
class License(Node):
    id: strawberry.ID
    public_license_key: str
    product_code: int
    product_name: str
    seats: int = strawberry.field(description="Ordered (the upstream quantity).")
    activated: int = strawberry.field(
        description="Units activated, as the MSP Administrator counts them."
    )
    state: LicenseState
    trial: bool
    expires_at: dt.datetime | None = strawberry.field(
        description="00:00 UTC of the upstream expiration date (the license's last day)."
    )
    over_used: bool = strawberry.field(description="activated > seats")
    model: strawberry.Private[LicenseModel]

    @classmethod
    def of(cls, model: LicenseModel) -> License:
        return cls(
            id=strawberry.ID(global_ids.encode("License", model.id)),
            public_license_key=model.public_license_key,
            product_code=model.product_code,
            product_name=model.product_name,
            seats=model.seats,
            activated=model.activated,
            state=model.state,
            trial=model.trial,
            expires_at=model.expires_at,
            over_used=model.activated > model.seats,
            model=model,
        )

    @strawberry.field
    async def company(
        self, info: Info[Context, None]
    ) -> Annotated[Company, strawberry.lazy("server.api.companies")]:
        from server.api.companies import owning_company

        return await owning_company(info, self.model.company_id, f"license {self.model.id}")


refetchable("License", lambda loaders: loaders.license_by_id, License.of)


@strawberry.type
class SeatUsage:
    seats: int = strawberry.field(description="Ordered by the licenses in force (ACTIVE).")
    activated: int = strawberry.field(description="Activated on those licenses.")
    computers: int = strawberry.field(
        description="Computers this console holds for the company (its subtree when recursive)."
    )
    protected: int = strawberry.field(description="Of those, CONNECTED or DELAYED.")
    over_used: bool = strawberry.field(description="activated > seats")

    @classmethod
    def of(cls, usage: licenses.SeatUsage) -> SeatUsage:
        return cls(
            seats=usage.seats,
            activated=usage.activated,
            computers=usage.computers,
            protected=usage.protected,
            over_used=usage.over_used,
        )


async def company_licenses(
    info: Info[Context, None], company: CompanyModel, first: int | None, after: str | None
) -> Connection[License]:
    """One statement for the pages of every company of the response (and one for their
    counts, when asked)."""
    request = page_request(first, after)
    loaders = info.context.loaders
    page = await loaders.company_licenses_page.load((company.id, request))
    loaders.prime_licenses(page.items)
    return Connection.of(
        page, License.of, lambda: loaders.company_licenses_count.load((company.id, None))
    )


async def company_seat_usage(
    info: Info[Context, None], company: CompanyModel, recursive: bool
) -> SeatUsage:
    usage = await info.context.loaders.seat_usage.load((company.id, recursive))
    return SeatUsage.of(usage)


@strawberry.type
class LicenseQueries:
    @query("Licenses the viewer may see (LICENSES READ on their company), by key.")
    async def licenses(
        self,
        info: Info[Context, None],
        first: int | None = None,
        after: str | None = None,
        states: list[LicenseState] | None = None,
        expiring_within_days: int | None = None,
        over_used: bool | None = None,
        search: str | None = None,
        last: int | None = None,
        before: str | None = None,
    ) -> Connection[License]:
        request = page_request(first, after, last, before)
        listing = licenses.narrow(  # a domain error here is BAD_USER_INPUT (ErrorPolicy)
            licenses.visible(info.context.require_scope()),
            distinct(states),
            expiring_within_days,
            over_used,
            search,
        )
        prime = info.context.loaders.prime_licenses
        return await paginate(listing, request, License.of, prime=prime)

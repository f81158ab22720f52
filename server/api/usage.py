"""The usage report: seat-days per company and product over a month, from the daily snapshots
(`domain.usage`); the CSV export of the same rows is `server.api.reports`."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TYPE_CHECKING, Annotated

import strawberry
from strawberry.types import Info

from server.api.authentication import query
from server.api.context import Context
from server.api.execution import direct
from server.api.loaders import required
from server.api.pagination import Connection, node_fields, page_request
from server.domain import usage
from server.domain.listing import Page

if TYPE_CHECKING:
    from server.api.companies import Company


@strawberry.type
class UsageRow:
    product_code: int
    product_name: str
    seat_days: int = strawberry.field(
        description="Sum over the month's days of the seats ordered in each day's last snapshot."
    )
    average_seats: float = strawberry.field(
        description="seatDays over the days of the month that have a snapshot."
    )
    peak_seats: int = strawberry.field(description="The most seats of any one day.")
    row: strawberry.Private[usage.UsageRow]

    @classmethod
    def of(cls, row: usage.UsageRow) -> UsageRow:
        return cls(
            product_code=row.product_code,
            product_name=row.product_name,
            seat_days=row.seat_days,
            average_seats=round(row.average_seats, 4),
            peak_seats=row.peak_seats,
            row=row,
        )

    @strawberry.field(
        graphql_type=Annotated["Company", strawberry.lazy("server.api.companies")]
    )  # the schema type; graphql-core awaits an awaitable
    @direct
    def company(self, info: Info[Context, None]) -> Company | Awaitable[Company]:
        from server.api.companies import Company

        return required(  # a row is visible only with its company: a miss is a broken invariant
            info.context.loaders.company_by_id,
            self.row.company_id,
            Company.of,
            "usage of company {} without the company",
        )


@strawberry.type
class UsageQueries:
    @query(
        'Seat-days per company and product over a month ("YYYY-MM", UTC days) from the '
        "daily snapshots, for the companies the viewer may see licenses of; in tree order."
    )
    async def usage_report(
        self,
        info: Info[Context, None],
        month: str,
        first: int | None = None,
        after: str | None = None,
    ) -> Connection[UsageRow]:
        scope = info.context.require_scope()
        request = page_request(first, after, key_length=3)
        usage.parse_month(month)  # a bad month is BAD_USER_INPUT, before any statement
        page: Page[usage.UsageRow] = await usage.report_page(scope, month, request)
        if "company" in node_fields(info):  # one statement, then every row answers at once
            await info.context.loaders.company_by_id.load_many(
                list(dict.fromkeys(row.company_id for row in page.items))
            )
        return Connection.of(page, UsageRow.of, lambda: usage.report_count(scope, month))

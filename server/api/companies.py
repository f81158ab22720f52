"""Companies: the synced tree (`rootCompanies`, a company's children and descendants) and what
each company shows (customer status, group, computers, installers)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Annotated

import strawberry
from strawberry.types import Info

from server.api.authentication import query
from server.api.computers import computers_field
from server.api.context import Context
from server.api.enums import CompanyType, CustomerStatus
from server.api.execution import direct
from server.api.loaders import MISSING, Loaders, cached, required
from server.api.node import Node, refetchable
from server.api.pagination import (
    Connection,
    Counter,
    distinct,
    node_fields,
    page_request,
    paginate,
)
from server.domain import companies, customers, global_ids, tree_paths
from server.domain.listing import Listing, PageRequest
from server.models import Company as CompanyModel

if TYPE_CHECKING:
    from server.api.groups import StaticGroup
    from server.api.installers import Installer
    from server.api.licenses import License, SeatUsage


@strawberry.type
class Company(Node):
    id: strawberry.ID
    public_id: str
    name: str
    type: CompanyType
    depth: int
    customer_status: CustomerStatus | None
    unlinked_at: dt.datetime | None
    read_only: bool = strawberry.field(
        description="An ancestor above the imported account's company, kept for context."
    )
    suspended: bool = strawberry.field(description="Suspended in the MSP Administrator.")
    email: str | None
    custom_identifier: str | None
    model: strawberry.Private[CompanyModel]

    @classmethod
    def of(cls, model: CompanyModel) -> Company:
        return cls(
            id=strawberry.ID(global_ids.encode("Company", model.id)),
            public_id=model.public_id,
            name=model.name,
            type=model.type,
            depth=model.depth,
            customer_status=customers.customer_status(model),
            unlinked_at=model.unlinked_at,
            read_only=model.read_only,
            suspended=model.upstream_status == 2,
            email=model.email,
            custom_identifier=model.custom_identifier,
            model=model,
        )

    @strawberry.field(
        description="Null at the top of what the viewer may see.",
        graphql_type=Annotated["Company", strawberry.lazy("server.api.companies")] | None,
    )  # the schema type; graphql-core awaits an awaitable
    @direct
    def parent(self, info: Info[Context, None]) -> Company | Awaitable[Company | None] | None:
        parent_id = self.model.parent_id
        if parent_id is None:
            return None
        loader = info.context.loaders.company_by_id
        found = cached(loader, parent_id)
        if found is MISSING:
            return _company_of(loader.load(parent_id))
        return Company.of(found) if found else None

    @strawberry.field(description="Top first, only what the viewer may see.")
    async def ancestors(self, info: Info[Context, None]) -> list[Company]:
        paths = tree_paths.ancestor_paths(self.model.path)
        found = await info.context.loaders.company_by_path.load_many(paths)
        return [Company.of(c) for c in found if c is not None]

    @strawberry.field
    async def children(
        self,
        info: Info[Context, None],
        first: int | None = None,
        after: str | None = None,
        types: list[CompanyType] | None = None,
    ) -> Connection[Company]:
        request = page_request(first, after)
        kinds = distinct(types)
        loaders = info.context.loaders
        page = await loaders.company_children_page.load((self.model.id, (kinds, request)))
        loaders.prime_companies(page.items)
        return Connection.of(
            page,
            Company.of,
            lambda: loaders.company_children_count.load((self.model.id, kinds)),
        )

    @strawberry.field(description="The whole subtree below this company, in tree order.")
    async def descendants(
        self,
        info: Info[Context, None],
        first: int | None = None,
        after: str | None = None,
        types: list[CompanyType] | None = None,
        status: list[CustomerStatus] | None = None,
        search: str | None = None,
        last: int | None = None,
        before: str | None = None,
    ) -> Connection[Company]:
        request = page_request(first, after, last, before)
        scope = info.context.require_scope()
        kinds, statuses = distinct(types), distinct(status)
        listing = companies.descendants(scope, self.model, kinds, statuses, search)
        return await company_page(
            info,
            listing,
            request,
            lambda: companies.descendant_count(scope, self.model, kinds, statuses, search),
        )

    @strawberry.field(
        graphql_type=Annotated["StaticGroup", strawberry.lazy("server.api.groups")]
    )  # the schema type; graphql-core awaits an awaitable
    @direct
    def static_group(self, info: Info[Context, None]) -> StaticGroup | Awaitable[StaticGroup]:
        from server.api.groups import StaticGroup

        return required(  # the company is visible, so is its group: a miss is a broken tree
            info.context.loaders.group_by_company_id,
            self.model.id,
            StaticGroup.of,
            "company {} has no static group",
        )

    @strawberry.field(graphql_type=int)  # the schema type; graphql-core awaits an awaitable
    @direct
    def computer_count(
        self, info: Info[Context, None], recursive: bool = True
    ) -> int | Awaitable[int]:
        loaders = info.context.loaders
        group = cached(loaders.group_by_company_id, self.model.id)
        if group is not MISSING and group is not None:
            count = cached(loaders.computer_count, (group.id, recursive))
            if count is not MISSING:
                return int(count)
        return self._computer_count(loaders, recursive)

    async def _computer_count(self, loaders: Loaders, recursive: bool) -> int:
        group = await loaders.group_by_company_id.load(self.model.id)
        return 0 if group is None else await loaders.computer_count.load((group.id, recursive))

    computers = computers_field(
        lambda company, loaders: loaders.group_by_company_id.load(company.model.id)
    )

    @strawberry.field(description="The company's agent installers, newest first.")
    async def installers(
        self,
        info: Info[Context, None],
        first: int | None = None,
        after: str | None = None,
        include_revoked: bool = False,
    ) -> Connection[Annotated[Installer, strawberry.lazy("server.api.installers")]]:
        from server.api.installers import company_installers

        return await company_installers(info, self.model.id, first, after, include_revoked)

    @strawberry.field(description="The company's own licenses (LICENSES READ), by key.")
    async def licenses(
        self, info: Info[Context, None], first: int | None = None, after: str | None = None
    ) -> Connection[Annotated[License, strawberry.lazy("server.api.licenses")]]:
        from server.api.licenses import company_licenses

        return await company_licenses(info, self.model, first, after)

    @strawberry.field(
        description="Seats and activations of the licenses in force against the computers "
        "this console holds, for the company (and its subtree when recursive)."
    )
    async def seat_usage(
        self, info: Info[Context, None], recursive: bool = True
    ) -> Annotated[SeatUsage, strawberry.lazy("server.api.licenses")]:
        from server.api.licenses import company_seat_usage

        return await company_seat_usage(info, self.model, recursive)


refetchable("Company", lambda loaders: loaders.company_by_id, Company.of)


async def owning_company(info: Info[Context, None], company_id: int, owned: str) -> Company:
    """The company that `owned` (an installer, a license...) belongs to: visible whenever the
    owned object is, so a miss is a broken invariant, not a user error."""
    found = await info.context.loaders.company_by_id.load(company_id)
    if found is None:
        raise RuntimeError(f"{owned} has no visible company")
    return Company.of(found)


async def company_page(
    info: Info[Context, None],
    listing: Listing[CompanyModel],
    request: PageRequest,
    count: Counter | None = None,
) -> Connection[Company]:
    """A page of companies, with what the selection asks of each loaded in one batch."""
    return await paginate(
        listing,
        request,
        Company.of,
        prime=lambda items: info.context.loaders.prefetch_for_companies(items, node_fields(info)),
        count=count,
    )


async def _company_of(pending: Awaitable[CompanyModel | None]) -> Company | None:
    found = await pending
    return Company.of(found) if found else None


@strawberry.type
class CompanyQueries:
    @query("The tops of the company tree the viewer may see.")
    async def root_companies(self, info: Info[Context, None]) -> list[Company]:
        found = await companies.roots(info.context.require_scope())
        info.context.loaders.prime_companies(found)
        return [Company.of(c) for c in found]

"""The Managed Customers page: the list (`managedCustomers`, with the counts of its status
tabs) and the customer actions: setup (the wizard), skip, skip for all new customers, unlink
and relink. Each action is audited and tells subscribers after it commits."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Annotated

import strawberry
from strawberry.types import Info

from server.api.authentication import query
from server.api.companies import Company, company_page
from server.api.context import Context
from server.api.enums import CustomerStatus
from server.api.mutations import audited, mutation, mutation_input, payload
from server.api.node import decode_id
from server.api.pagination import Connection, distinct, page_request
from server.api.users import User
from server.domain import accounts, customers
from server.models.enums import CustomerStatus as Status

if TYPE_CHECKING:
    from server.api.installers import Installer

StatusCounter = Callable[[], Awaitable[tuple[dict[Status, int], bool]]]


@strawberry.type
class CustomerStatusCounts:
    not_set_up: int
    normal: int
    unlinked: int
    exact: bool = strawberry.field(
        description="False when a search stopped counting a status at 1,000 (a lower bound)."
    )


@strawberry.type
class ManagedCustomerConnection(Connection[Company]):
    """A page of customers (its edges are CompanyEdges), with the counts of the status tabs."""

    _status_counts: strawberry.Private[StatusCounter]

    @strawberry.field(
        description="What the viewer may see matching `search`, whatever `status` and paging."
    )
    async def status_counts(self) -> CustomerStatusCounts:
        counts, exact = await self._status_counts()
        return CustomerStatusCounts(
            not_set_up=counts[Status.NOT_SET_UP],
            normal=counts[Status.NORMAL],
            unlinked=counts[Status.UNLINKED],
            exact=exact,
        )


@strawberry.type
class CustomerQueries:
    @query()
    async def managed_customers(
        self,
        info: Info[Context, None],
        first: int | None = None,
        after: str | None = None,
        status: list[CustomerStatus] | None = None,
        search: str | None = None,
        last: int | None = None,
        before: str | None = None,
    ) -> ManagedCustomerConnection:
        request = page_request(first, after, last, before)
        scope = info.context.require_scope()
        statuses = distinct(status)
        listing = customers.managed_customers(scope, statuses, search)
        page = await company_page(
            info, listing, request, lambda: customers.count(scope, listing, statuses, search)
        )
        return ManagedCustomerConnection(
            edges=page.edges,
            page_info=page.page_info,
            _count=page._count,
            _status_counts=lambda: customers.status_counts(scope, search),
        )


@strawberry.input
class NewCustomerUserInput:
    email: str
    password: str


@mutation_input
class SetupCustomerInput:
    customer_id: strawberry.ID
    user: NewCustomerUserInput | None = None
    create_installer: bool = True


@payload
class SetupCustomerPayload:
    customer: Company | None = None
    user: User | None = None
    installer: Annotated[Installer, strawberry.lazy("server.api.installers")] | None = None
    installer_token: str | None = strawberry.field(
        default=None, description="The installer's token; shown this once only."
    )


@mutation_input
class SkipCustomerSetupInput:
    customer_id: strawberry.ID


@payload
class SkipCustomerSetupPayload:
    customer: Company | None = None


@mutation_input
class SkipSetupForAllNewCustomersInput:
    """Nothing but clientMutationId."""


@payload
class SkipSetupForAllNewCustomersPayload:
    customers: list[Company] = strawberry.field(default_factory=list)
    count: int = 0


@mutation_input
class UnlinkCustomerInput:
    customer_id: strawberry.ID


@payload
class UnlinkCustomerPayload:
    customer: Company | None = None


@mutation_input
class RelinkCustomerInput:
    customer_id: strawberry.ID


@payload
class RelinkCustomerPayload:
    customer: Company | None = None


def _actor(context: Context) -> int | None:
    return context.require_session().user_id


async def _announce(
    context: Context, company_ids: Sequence[int], user_ids: Sequence[int] = ()
) -> None:
    scope = context.require_scope()
    await customers.publish_status_changes(context.bus, scope.instance_id, company_ids)
    await accounts.publish_sessions_ended(context.bus, scope.instance_id, user_ids=user_ids)


@strawberry.type
class CustomerMutations:
    @mutation(
        "Set a NOT_SET_UP customer up: optionally its native user (with two permission "
        "sets), an installer (token shown once); then NORMAL. All or nothing."
    )
    async def setup_customer(
        self, info: Info[Context, None], input: SetupCustomerInput
    ) -> SetupCustomerPayload:
        from server.api.installers import Installer

        context = info.context
        key = decode_id(input.customer_id, "Company", "customerId")
        new_user = (
            customers.NewCustomerUser(input.user.email, input.user.password) if input.user else None
        )
        detail = {
            "createInstaller": input.create_installer,
            "userEmail": input.user.email[:254] if input.user else None,
        }
        async with audited(context, "setupCustomer", "Company", key, detail) as entry:
            result = await customers.setup_customer(
                context.require_scope(),
                _actor(context),
                key,
                new_user,
                input.create_installer,
                installer_ttl_days=context.settings.installer_ttl_days,
            )
            entry.group_path = result.customer.path
            if result.user is not None:
                entry.detail["userId"] = User.of(result.user).id
        await _announce(context, [result.customer.id])
        return SetupCustomerPayload(
            customer=Company.of(result.customer),
            user=User.of(result.user) if result.user else None,
            installer=Installer.of(result.installer) if result.installer else None,
            installer_token=result.installer_token,
        )

    @mutation("Mark a NOT_SET_UP customer NORMAL without creating anything.")
    async def skip_customer_setup(
        self, info: Info[Context, None], input: SkipCustomerSetupInput
    ) -> SkipCustomerSetupPayload:
        context = info.context
        key = decode_id(input.customer_id, "Company", "customerId")
        async with audited(context, "skipCustomerSetup", "Company", key) as entry:
            company = await customers.skip_customer_setup(
                context.require_scope(), _actor(context), key
            )
            entry.group_path = company.path
        await _announce(context, [company.id])
        return SkipCustomerSetupPayload(customer=Company.of(company))

    @mutation("Skip the setup of every NOT_SET_UP customer the viewer may write.")
    async def skip_setup_for_all_new_customers(
        self, info: Info[Context, None], input: SkipSetupForAllNewCustomersInput | None = None
    ) -> SkipSetupForAllNewCustomersPayload:
        context = info.context
        async with audited(context, "skipSetupForAllNewCustomers") as entry:
            skipped = await customers.skip_setup_for_all_new_customers(
                context.require_scope(), _actor(context)
            )
            entry.detail["count"] = len(skipped)
            entry.detail["customerIds"] = [Company.of(c).id for c in skipped[:100]]
            entry.group_path = context.require_session().home_group_path or ""
        await _announce(context, [c.id for c in skipped])
        return SkipSetupForAllNewCustomersPayload(
            customers=[Company.of(c) for c in skipped], count=len(skipped)
        )

    @mutation(
        "Stop managing a customer: UNLINKED, its installers revoked, its native users "
        "disabled; its group and computers stay."
    )
    async def unlink_customer(
        self, info: Info[Context, None], input: UnlinkCustomerInput
    ) -> UnlinkCustomerPayload:
        context = info.context
        key = decode_id(input.customer_id, "Company", "customerId")
        async with audited(context, "unlinkCustomer", "Company", key) as entry:
            result = await customers.unlink_customer(context.require_scope(), _actor(context), key)
            entry.group_path = result.customer.path
            entry.detail["disabledUsers"] = len(result.disabled_user_ids)
            entry.detail["revokedInstallers"] = result.revoked_installers
        await _announce(context, [result.customer.id], result.disabled_user_ids)
        return UnlinkCustomerPayload(customer=Company.of(result.customer))

    @mutation("Manage again a customer a user unlinked: back to its previous status.")
    async def relink_customer(
        self, info: Info[Context, None], input: RelinkCustomerInput
    ) -> RelinkCustomerPayload:
        context = info.context
        key = decode_id(input.customer_id, "Company", "customerId")
        async with audited(context, "relinkCustomer", "Company", key) as entry:
            result = await customers.relink_customer(context.require_scope(), _actor(context), key)
            entry.group_path = result.customer.path
            entry.detail["enabledUsers"] = len(result.enabled_user_ids)
        await _announce(context, [result.customer.id])
        return RelinkCustomerPayload(customer=Company.of(result.customer))

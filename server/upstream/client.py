"""The MSP Administrator client: authenticated, patient with a failing upstream, strict on bodies.

Speaks the API of `upstream-api.md`. Every body is validated (`bodies.py`); anything off the
documented shape fails with an `UpstreamProtocolError` that names the endpoint and the field.
Secrets (the password, access and refresh tokens) never reach a log line or an error message,
and neither does what the upstream wrote in a body. A hostile upstream is bounded: redirects are
never followed, and limits on the size of an answer, the companies and depth of the tree and the
time spent fail the call with an `UpstreamLimitExceeded` instead of letting it grow without end.

The parts: `transport.py` (requests, retries, limits), `tokens.py` (login and renewal),
`tree_walk.py` (a whole tree), `errors.py` and `records.py` (what a caller catches and gets).
"""

from __future__ import annotations

from types import TracebackType
from typing import Any

from server.upstream import licenses, tree_walk
from server.upstream.bodies import Body
from server.upstream.codes import HQ
from server.upstream.errors import (
    UpstreamAuthError,
    UpstreamError,
    UpstreamLimitExceeded,
    UpstreamNotFound,
    UpstreamProtocolError,
    UpstreamTreeError,
    UpstreamUnavailable,
    UpstreamUnreachable,
)
from server.upstream.licenses import CompanyLicenses
from server.upstream.paging import paged_items
from server.upstream.records import (
    UpstreamCompany,
    UpstreamCompanyRef,
    UpstreamSnapshot,
    UpstreamStats,
    UpstreamUser,
)
from server.upstream.tokens import Authenticated
from server.upstream.transport import Transport
from server.upstream.tree_walk import ProgressCallback, too_many_companies

__all__ = [
    "MspAdministratorClient",
    "ProgressCallback",
    "UpstreamAuthError",
    "UpstreamCompany",
    "UpstreamCompanyRef",
    "UpstreamError",
    "UpstreamLimitExceeded",
    "UpstreamNotFound",
    "UpstreamProtocolError",
    "UpstreamSnapshot",
    "UpstreamStats",
    "UpstreamTreeError",
    "UpstreamUnavailable",
    "UpstreamUnreachable",
    "UpstreamUser",
]


class MspAdministratorClient:
    """A client of one MSP Administrator account: `async with MspAdministratorClient(...) as c`.

    Logs in on first use, renews expiring tokens (proactively, and on 401 code 2), backs off on
    503/429 within `max_backoff_total` seconds and retries other failures `max_retries` times.
    The limits (None: none) bound what a hostile upstream can make it do: `max_body_bytes` per
    answer, `max_companies` in a tree (the root and its descendants), `max_depth` levels of it
    (its ancestors included), and `max_seconds` from when the client opens to its last call.
    """

    def __init__(
        self,
        base_url: str,
        username: str,
        password: str,
        *,
        timeout: float = 30.0,
        max_retries: int = 4,
        max_backoff_total: float = 300.0,
        backoff_base: float = 0.5,
        backoff_max: float = 30.0,
        page_size: int = 100,
        concurrency: int = 8,
        progress_interval: float = 0.25,
        max_body_bytes: int | None = None,
        max_companies: int | None = None,
        max_depth: int | None = None,
        max_seconds: float | None = None,
    ) -> None:
        if not 1 <= page_size <= 100:
            raise ValueError("page_size must be from 1 to 100")
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self.username = username
        self.page_size = page_size
        self.concurrency = concurrency
        self.progress_interval = progress_interval
        self.max_companies = max_companies
        self.max_depth = max_depth
        self._transport = Transport(
            base_url,
            timeout=timeout,
            max_retries=max_retries,
            max_backoff_total=max_backoff_total,
            backoff_base=backoff_base,
            backoff_max=backoff_max,
            max_body_bytes=max_body_bytes,
            max_seconds=max_seconds,
        )
        self._auth = Authenticated(self._transport, username, password)

    @property
    def base_url(self) -> str:
        return self._transport.base_url

    @property
    def host(self) -> str:
        """The host the client calls, as error messages name it."""
        return self._transport.host

    @property
    def stats(self) -> UpstreamStats:
        """What the client has done so far."""
        return self._transport.stats

    def __repr__(self) -> str:
        return f"MspAdministratorClient({self.base_url!r}, {self.username!r})"

    # -- lifecycle ----------------------------------------------------------------------------

    async def __aenter__(self) -> MspAdministratorClient:
        self._transport.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Closes the HTTP session and forgets the tokens (a later call starts afresh)."""
        await self._transport.close()
        self._auth.forget()

    # -- the API ------------------------------------------------------------------------------

    async def current_user(self) -> UpstreamUser:
        """The logged-in user and its company (the root of a sync)."""
        endpoint = "User/Current"
        data = await self._auth.call(endpoint, method="GET")
        body = Body(endpoint)
        obj = body.object(data, "the body")
        return UpstreamUser(
            id=body.string(obj, "id", ""),
            email=body.string(obj, "email", ""),
            company=body.company_ref(body.member(obj, "company", ""), "company", "companyId"),
        )

    async def company_detail(
        self, company_id: str
    ) -> tuple[UpstreamCompany, list[UpstreamCompanyRef]]:
        """A company and its ancestors, top first, HQ excluded."""
        endpoint = "Company/Detail"
        data = await self._auth.call(endpoint, {"companyId": company_id}, subject=company_id)
        body = Body(endpoint)
        obj = body.object(data, "the body")
        company = body.company(body.member(obj, "company", ""), "company")
        if company.public_id != company_id:
            raise body.fail("company.publicId", f"is {company.public_id}, not {company_id}")
        ancestors = [
            body.company_ref(item, f"ancestors[{index}]")
            for index, item in enumerate(body.array(obj, "ancestors", ""))
        ]
        return company, [ref for ref in ancestors if ref.type != HQ]

    async def children(
        self, company_id: str, *, at_most: int | None = None
    ) -> list[UpstreamCompany]:
        """Every child of a company, page by page, checked to belong to it and appear once;
        a `totalCount` above `at_most` fails at its first page."""
        endpoint = "Company/Children"
        body = Body(endpoint)
        companies: list[UpstreamCompany] = []
        seen: set[str] = set()

        def count(obj: dict[str, Any]) -> int:
            total = body.integer(obj, "totalCount", "")
            if total < 0:
                raise body.fail("totalCount", f"is negative ({total})")
            return total

        def check_total(total: int) -> None:
            if at_most is not None and total > at_most:
                raise too_many_companies(
                    self.max_companies,
                    f"{company_id} counts {total} children, with room for {at_most} more",
                )

        async for index, item in paged_items(
            self._auth.call,
            body,
            company_id,
            key="companies",
            what="children",
            page_size=self.page_size,
            count=count,
            check_total=check_total,
        ):
            child = body.company(item, f"companies[{index}]")
            if child.parent_id != company_id:
                raise UpstreamTreeError(
                    f"MSP Administrator {endpoint}: company {child.public_id} is listed under "
                    f"{company_id} but names {child.parent_id} as its parent"
                )
            if child.public_id in seen:
                raise UpstreamTreeError(
                    f"MSP Administrator {endpoint}: company {child.public_id} is listed twice "
                    f"under {company_id}"
                )
            seen.add(child.public_id)
            companies.append(child)
        return companies

    async def fetch_tree(
        self, root_id: str, on_progress: ProgressCallback | None = None
    ) -> UpstreamSnapshot:
        """Reads the whole tree under `root_id`, `concurrency` walks at a time, and checks it.

        Customers' children are never asked. Fails with `UpstreamTreeError` naming the company
        when one appears twice, forms a cycle or names another parent, and with
        `UpstreamLimitExceeded` as soon as the tree is larger or deeper than the limits.
        """
        return await tree_walk.fetch_tree(self, root_id, on_progress)

    async def company_licenses(
        self, company_id: str, *, at_most: int | None = None
    ) -> CompanyLicenses:
        """Every license a company owns (`Search/Licenses`), checked; see `licenses`."""
        return await licenses.company_licenses(
            self._auth.call, self.page_size, company_id, at_most=at_most
        )

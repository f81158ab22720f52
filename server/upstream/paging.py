"""The skip/take/totalCount paging of the MSP Administrator's listings of one company, checked
the same way for every endpoint: the total may not change while paging, a page may not hold
more than was asked nor be empty before the total is reached, and the pages may not hold more
than the total. Used by the children of the tree walk and by the licenses."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from server.upstream.bodies import Body
from server.upstream.errors import UpstreamTreeError


async def paged_items(
    call: Callable[..., Awaitable[Any]],
    body: Body,
    company_id: str,
    *,
    key: str,
    what: str,
    page_size: int,
    count: Callable[[dict[str, Any]], int],
    check_total: Callable[[int], None],
) -> AsyncIterator[tuple[int, Any]]:
    """Yields (index in its page, item) of the array `key` of every page of `body.endpoint` for
    `company_id`; `count` reads a page's totalCount, `check_total` may refuse it (a limit).
    The caller keeps every item it is given, or raises."""
    read = 0
    total: int | None = None
    while total is None or read < total:
        payload = {"companyId": company_id, "skip": read, "take": page_size}
        data = await call(body.endpoint, payload, subject=company_id)
        obj = body.object(data, "the body")
        items = body.array(obj, key, "")
        new_total = count(obj)
        if total is not None and new_total != total:
            raise UpstreamTreeError(
                f"MSP Administrator {body.endpoint}: the {what} of {company_id} changed while "
                f"paging (totalCount {total}, then {new_total})"
            )
        total = new_total
        check_total(total)
        if len(items) > page_size:
            raise body.fail(key, f"holds {len(items)}, more than take={page_size}")
        if not items and read < total:
            raise body.fail(key, f"is empty at skip={read} of totalCount={total}")
        for index, item in enumerate(items):
            yield index, item
        read += len(items)
        if read > total:
            raise body.fail(key, f"hold more than totalCount={total}")

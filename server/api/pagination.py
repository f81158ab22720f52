"""Relay connections over `server.domain.listing`: one generic `Connection[T]` and `Edge[T]`
(Strawberry names them after the node: `Connection[Company]` is `CompanyConnection`), PageInfo,
and a lazy `totalCount`."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Generic, TypeVar

import strawberry
from strawberry.types import Info

from graphql import FieldNode, FragmentSpreadNode, InlineFragmentNode, SelectionSetNode
from server.api.authentication import Authenticated
from server.api.context import Context
from server.api.errors import BadUserInput
from server.domain.access import Scope
from server.domain.errors import InvalidInput
from server.domain.listing import Listing, Page, PageRequest

T = TypeVar("T")
V = TypeVar("V")

Counter = Callable[[], Awaitable["int | tuple[int, bool]"]]


@strawberry.type
class PageInfo:
    has_next_page: bool
    has_previous_page: bool
    start_cursor: str | None
    end_cursor: str | None

    @classmethod
    def of(cls, page: Page[Any]) -> PageInfo:
        return cls(
            has_next_page=page.has_next,
            has_previous_page=page.has_previous,
            start_cursor=page.cursors[0] if page.cursors else None,
            end_cursor=page.cursors[-1] if page.cursors else None,
        )


@strawberry.type
class Edge(Generic[T]):
    cursor: str
    node: T


async def _counted(root: Connection[Any]) -> tuple[int, bool]:
    """Counted only when asked for (most pages never show it), once for both count fields."""
    if root._counting is None:
        root._counting = asyncio.ensure_future(root._count())
    counting = root._counting
    value = await counting
    return value if isinstance(value, tuple) else (value, True)


async def _total_count(root: Connection[Any]) -> int:
    return (await _counted(root))[0]


async def _total_count_is_exact(root: Connection[Any]) -> bool:
    return (await _counted(root))[1]


@strawberry.type
class Connection(Generic[T]):
    """A page of a listing. Declared in the order clients see: totalCount, edges, pageInfo."""

    _count: strawberry.Private[Counter]
    total_count: int = strawberry.field(resolver=_total_count)
    total_count_is_exact: bool = strawberry.field(
        resolver=_total_count_is_exact,
        description="False when a search, a filter no counter holds (a computer's "
        "connection status, duplicates) or a listing no counter holds (the usage report) "
        "stopped counting at 1,000: totalCount is then a lower bound. Other counts are exact.",
    )
    edges: list[Edge[T]]
    page_info: PageInfo
    _counting: strawberry.Private[asyncio.Future[Any] | None] = None

    @staticmethod
    def of(page: Page[Any], wrap: Callable[[Any], V], count: Counter) -> Connection[V]:
        edges = [
            Edge(cursor=c, node=wrap(item))
            for c, item in zip(page.cursors, page.items, strict=True)
        ]
        return Connection(edges=edges, page_info=PageInfo.of(page), _count=count)


def page_request(
    first: int | None,
    after: str | None,
    last: int | None = None,
    before: str | None = None,
    *,
    key_length: int = 2,
) -> PageRequest:
    try:
        return PageRequest.parse(first, after, last, before, key_length=key_length)
    except InvalidInput as exc:
        raise BadUserInput(exc.message, field=exc.field) from None


async def paginate(
    listing: Listing[Any],
    request: PageRequest,
    wrap: Callable[[Any], T],
    prime: Callable[[list[Any]], object] | None = None,
    count: Counter | None = None,
) -> Connection[T]:
    """One page of a listing as a connection; `prime` hands its rows to the loaders first;
    `count` counts otherwise than the listing (from counters, or capped)."""
    page = await listing.page(request)
    if prime is not None and inspect.isawaitable(primed := prime(page.items)):
        await primed
    return Connection.of(page, wrap, count or listing.count)


def connection_query(
    listing: Callable[[Scope], Listing[Any]],
    wrap: Callable[[Any], Any],
    description: str,
    *,
    key_length: int = 2,
) -> Any:
    """A root query field paging through what `listing` shows the viewer, forwards or
    backwards; the connection type is the attribute's annotation:
    `sync_runs: Connection[SyncRun] = connection_query(sync_runs.visible, SyncRun.of, ...)`."""

    async def page(
        info: Info[Context, None],
        first: int | None = None,
        after: str | None = None,
        last: int | None = None,
        before: str | None = None,
    ) -> Connection[Any]:
        request = page_request(first, after, last, before, key_length=key_length)
        return await paginate(listing(info.context.require_scope()), request, wrap)

    return strawberry.field(
        resolver=page, permission_classes=[Authenticated], description=description
    )


def distinct(values: Sequence[V] | None) -> tuple[V, ...] | None:
    return None if values is None else tuple(dict.fromkeys(values))


def node_fields(info: Info[Any, Any]) -> set[str]:
    """What the query selects on each node of the connection being resolved: field names,
    and `parent.child` one level below ("staticGroup.computerCount"). Read from the document
    itself: Strawberry's `selected_fields` rebuilds the whole selection on every call."""
    raw = info._raw_info
    names: set[str] = set()

    def fields(selection_set: SelectionSetNode | None) -> list[FieldNode]:
        found: list[FieldNode] = []
        for selection in selection_set.selections if selection_set else ():
            if isinstance(selection, FieldNode):
                found.append(selection)
            elif isinstance(selection, InlineFragmentNode):
                found += fields(selection.selection_set)
            elif isinstance(selection, FragmentSpreadNode):
                fragment = raw.fragments.get(selection.name.value)
                found += fields(fragment.selection_set if fragment else None)
        return found

    def named(selection_set: SelectionSetNode | None, name: str) -> list[FieldNode]:
        return [f for f in fields(selection_set) if f.name.value == name]

    for connection in raw.field_nodes:
        for edges in named(connection.selection_set, "edges"):
            for node in named(edges.selection_set, "node"):
                for field in fields(node.selection_set):
                    names.add(field.name.value)
                    names.update(
                        f"{field.name.value}.{child.name.value}"
                        for child in fields(field.selection_set)
                    )
    return names

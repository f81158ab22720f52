"""Relay connections over `server.domain.listing`: PageInfo, edges and lazy totalCount."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import strawberry

from graphql import FieldNode, FragmentSpreadNode, InlineFragmentNode, SelectionSetNode
from server.api.errors import BadUserInput
from server.domain.errors import InvalidInput
from server.domain.listing import Listing, Page, PageRequest

T = TypeVar("T")
C = TypeVar("C")


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


Counter = Callable[[], Awaitable[int]]


@strawberry.type
class CountedConnection:
    """Base of the connections: `totalCount` runs its query only when asked for."""

    _count: strawberry.Private[Counter]

    @strawberry.field
    async def total_count(self) -> int:
        return await self._count()


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
    connection: type[C],
    edge: type,
    wrap: Callable[[Any], Any],
    listing: Listing[Any],
    request: PageRequest,
    prime: Callable[[list[Any]], Any] | None = None,
    **extra: Any,
) -> C:
    """One page of a listing as a Relay connection; totalCount stays lazy."""
    page = await listing.page(request)
    if prime is not None and inspect.isawaitable(primed := prime(page.items)):
        await primed
    return connection(  # type: ignore[call-arg]
        edges=build_edges(page, wrap, edge),
        page_info=PageInfo.of(page),
        _count=listing.count,
        **extra,
    )


def build_edges(page: Page[Any], wrap: Callable[[Any], T], edge: type) -> list[Any]:
    return [
        edge(cursor=c, node=wrap(item)) for c, item in zip(page.cursors, page.items, strict=True)
    ]


def distinct(values: Sequence[T] | None) -> tuple[T, ...] | None:
    return None if values is None else tuple(dict.fromkeys(values))


def node_fields(info: Any) -> set[str]:
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

"""The Node interface and global-id refetching (`node`, `nodes`)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import strawberry
from strawberry.dataloader import DataLoader
from strawberry.types import Info

from server.api.authentication import query
from server.api.context import Context
from server.api.errors import BadUserInput
from server.domain import global_ids

if TYPE_CHECKING:
    from server.api.loaders import Loaders

M = TypeVar("M")

MAX_NODES = 100
MAX_IDS = 100  # in one argument of a mutation


@strawberry.interface
class Node:
    id: strawberry.ID


def decode_id(value: str, expected: str | None = None, field: str = "id") -> int:
    """The key of a global id, or a top-level BAD_USER_INPUT error."""
    try:
        return global_ids.decode(value, expected)[1]
    except global_ids.InvalidGlobalId as exc:
        raise BadUserInput(str(exc), field=field) from None


def decode_ids(values: Sequence[str], expected: str, field: str) -> list[int]:
    """The keys of at most MAX_IDS global ids, all or nothing."""
    if len(values) > MAX_IDS:
        raise BadUserInput(f"at most {MAX_IDS} ids", field=field)
    return [decode_id(value, expected, field) for value in values]


def decode_optional_id(value: str | None, expected: str, field: str) -> int | None:
    """An optional id argument: None when not given; anything given must be an id."""
    return None if value is None else decode_id(value, expected, field)


def decode_optional_ids(
    values: Sequence[str] | None, expected: str, field: str
) -> list[int] | None:
    """An optional id list argument: None when not given (an empty list is a value)."""
    return None if values is None else decode_ids(values, expected, field)


# type name -> async (info, key) -> Node | None; filled by the modules that define the types
Resolver = Callable[[Info[Context, None], int], Awaitable[Any]]
NODE_RESOLVERS: dict[str, Resolver] = {}


def resolves(type_name: str) -> Callable[[Resolver], Resolver]:
    """Registers how `node(id)` finds a type that no loader holds."""

    def register(resolver: Resolver) -> Resolver:
        NODE_RESOLVERS[type_name] = resolver
        return resolver

    return register


def refetchable(
    type_name: str,
    loader: Callable[[Loaders], DataLoader[int, M | None]],
    wrap: Callable[[M], Node],
) -> None:
    """`node(id)` finds `type_name` through one of the request's loaders, which read through
    the viewer's scope (and batch the ids of one `nodes` call)."""

    async def refetch(info: Info[Context, None], key: int) -> Node | None:
        found = await loader(info.context.loaders).load(key)
        return wrap(found) if found is not None else None

    NODE_RESOLVERS[type_name] = refetch


async def resolve_node(info: Info[Context, None], value: str) -> Any:
    try:
        type_name, key = global_ids.decode(value)
    except global_ids.InvalidGlobalId as exc:
        raise BadUserInput(str(exc), field="id") from None
    resolver = NODE_RESOLVERS.get(type_name)
    return await resolver(info, key) if resolver else None


@strawberry.type
class NodeQueries:
    @query("Any object by its global id; null when missing or out of scope.")
    async def node(self, info: Info[Context, None], id: strawberry.ID) -> Node | None:
        return await resolve_node(info, id)

    @query("At most 100 ids.")
    async def nodes(self, info: Info[Context, None], ids: list[strawberry.ID]) -> list[Node | None]:
        if len(ids) > MAX_NODES:
            raise BadUserInput(f"at most {MAX_NODES} ids", field="ids")
        for value in ids:  # all or nothing: one malformed id fails the field
            decode_id(value)
        return list(await asyncio.gather(*(resolve_node(info, value) for value in ids)))

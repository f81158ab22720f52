"""Mutations, the Relay way: each is declared with `mutation()`, takes a `@mutation_input` and
returns a `@payload`; it decodes its ids, runs its change through the domain inside `audited`,
and returns what it changed. What every mutation shares happens here: a DomainError becomes
the payload's `errors` (the change rolled back, the failure audited), and the input's
`clientMutationId` comes back in the payload."""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar, cast, dataclass_transform

import strawberry
from strawberry.extensions import FieldExtension
from strawberry.types import Info
from strawberry.types.field import StrawberryField

from server.api.authentication import Authenticated
from server.api.context import Context
from server.api.errors import UserError
from server.domain import audit
from server.domain.errors import DomainError

T = TypeVar("T", bound=type)


def _with_fields(cls: T, **fields: tuple[object, object]) -> T:
    """`cls` with these fields (annotation, default) declared after its own."""
    annotations = inspect.get_annotations(cls)
    for name, (annotation, default) in fields.items():
        annotations[name] = annotation
        setattr(cls, name, default)
    cls.__annotations__ = annotations
    return cls


@dataclass_transform(kw_only_default=True, field_specifiers=(strawberry.field, StrawberryField))
def payload(cls: T) -> T:
    """A mutation's payload type: its own fields, then `errors` and `clientMutationId`."""
    return strawberry.type(
        _with_fields(
            cls,
            errors=(list[UserError], strawberry.field(default_factory=list)),
            client_mutation_id=(str | None, None),
        )
    )


@dataclass_transform(kw_only_default=True, field_specifiers=(strawberry.field, StrawberryField))
def mutation_input(cls: T) -> T:
    """A mutation's input type: its own fields, then `clientMutationId`."""
    return strawberry.input(_with_fields(cls, client_mutation_id=(str | None, None)))


class PayloadErrors(FieldExtension):
    """An expected failure answers a payload with `errors` (and nothing else); every payload
    echoes the input's `clientMutationId`."""

    def apply(self, field: StrawberryField) -> None:
        self.field = field

    async def resolve_async(
        self,
        next_: Callable[..., Awaitable[Any]],
        source: Any,
        info: Info[Context, None],
        **kwargs: Any,
    ) -> Any:
        try:
            payload = await next_(source, info, **kwargs)
        except DomainError as exc:
            payload_type = cast(Callable[..., Any], self.field.type)  # resolved by now
            payload = payload_type(errors=[UserError.of(exc)])
        payload.client_mutation_id = getattr(kwargs.get("input"), "client_mutation_id", None)
        return payload


def mutation(description: str | None = None, *, signed_in: bool = True) -> Any:
    """A mutation field: for signed-in viewers (all but `login`), with `PayloadErrors`."""
    return strawberry.mutation(
        description=description,
        permission_classes=[Authenticated] if signed_in else [],
        extensions=[PayloadErrors()],
    )


@contextlib.asynccontextmanager
async def audited(
    context: Context,
    action: str,
    object_type: str = "",
    object_id: int | str | None = None,
    detail: dict[str, Any] | None = None,
) -> AsyncIterator[audit.Pending]:
    """Run a mutation's change in one transaction ending with its audit entry; a failure is
    recorded after the rollback, filed under the actor's home group unless the change named
    the object's group."""
    session = context.require_session()
    async with audit.recorded(
        context.scope,
        session.user_id,
        action,
        object_type,
        object_id,
        failure_group_path=session.home_group_path or "",
        detail=detail,
    ) as entry:
        yield entry

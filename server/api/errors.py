"""Errors as the API shows them: `UserError`s in payloads for expected failures, top-level
errors with `extensions.code` for authentication and malformed input, everything else masked."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from enum import Enum
from typing import Any

import strawberry
from strawberry.extensions import SchemaExtension

from graphql import GraphQLError
from server.domain.errors import DomainError

log = logging.getLogger("server.api")


@strawberry.enum
class ErrorCode(Enum):
    NOT_FOUND = "NOT_FOUND"
    INVALID_INPUT = "INVALID_INPUT"
    INVALID_TRANSITION = "INVALID_TRANSITION"
    NOT_A_CUSTOMER = "NOT_A_CUSTOMER"
    FORBIDDEN = "FORBIDDEN"
    INVALID_CREDENTIALS = "INVALID_CREDENTIALS"
    REMOVAL_RESERVED_TO_CREATING_SERVICE = "REMOVAL_RESERVED_TO_CREATING_SERVICE"
    ALREADY_EXISTS = "ALREADY_EXISTS"
    UPSTREAM_NOT_CONNECTED = "UPSTREAM_NOT_CONNECTED"
    IMPORT_NOT_ALLOWED = "IMPORT_NOT_ALLOWED"
    UPSTREAM_ERROR = "UPSTREAM_ERROR"
    RATE_LIMITED = "RATE_LIMITED"


@strawberry.type
class UserError:
    code: ErrorCode
    message: str
    field: str | None = None

    @classmethod
    def of(cls, error: DomainError) -> UserError:
        return cls(code=ErrorCode(error.code), message=error.message, field=error.field)


class CodedError(GraphQLError):
    """A top-level error a client should act on; never masked."""

    code = "INTERNAL"

    def __init__(self, message: str, **extensions: Any) -> None:
        super().__init__(message, extensions={"code": self.code, **extensions})


class Unauthenticated(CodedError):
    code = "UNAUTHENTICATED"


class BadUserInput(CodedError):
    code = "BAD_USER_INPUT"


class ForbiddenError(CodedError):
    code = "FORBIDDEN"


class TooManySubscriptions(CodedError):
    code = "TOO_MANY_SUBSCRIPTIONS"


class SubscriberTooSlow(CodedError):
    """A subscription fell too far behind its events: ended rather than skipping any."""

    code = "SUBSCRIBER_TOO_SLOW"


class WebsocketRequired(CodedError):
    code = "WEBSOCKET_REQUIRED"


class ErrorPolicy(SchemaExtension):
    """Expected errors keep their code (a domain error raised by a query becomes a coded
    top-level error: BAD_USER_INPUT for bad input); unexpected ones are logged and masked."""

    def on_operation(self) -> Iterator[None]:
        yield
        _mask(self.execution_context.result)

    def on_stream_result(self, result: Any) -> Iterator[None]:
        """Each event of a subscription is sent before its operation ends: shown the same."""
        _mask(result)
        yield


def _mask(result: Any) -> None:
    errors = getattr(result, "errors", None)
    if result is not None and errors:
        result.errors = [shown(error) for error in errors]


def shown(error: GraphQLError) -> GraphQLError:
    original = error.original_error
    if original is None or isinstance(original, GraphQLError):
        return error
    if isinstance(original, DomainError):
        code = "BAD_USER_INPUT" if original.code == "INVALID_INPUT" else original.code
        extensions = {"code": code, **({"field": original.field} if original.field else {})}
        return GraphQLError(
            original.message,
            error.nodes,
            error.source,
            error.positions,
            error.path,
            extensions=extensions,
        )
    log.error("unexpected error at %s", error.path, exc_info=original)
    return GraphQLError(
        "Unexpected error.",
        error.nodes,
        error.source,
        error.positions,
        error.path,
        extensions={"code": "INTERNAL_SERVER_ERROR"},
    )

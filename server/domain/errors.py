"""Expected failures of the domain: each carries the API's `ErrorCode` and, where it helps, the
input field at fault. The API turns them into `UserError`s in mutation payloads."""

from __future__ import annotations


class DomainError(Exception):
    code = "INVALID_INPUT"

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class NotFound(DomainError):
    code = "NOT_FOUND"


class InstanceRemoved(NotFound):
    """The instance was removed while a change waited for it (`instances.keep_from_removal`)."""


class InvalidInput(DomainError):
    code = "INVALID_INPUT"


class InvalidTransition(DomainError):
    code = "INVALID_TRANSITION"


class NotACustomer(DomainError):
    code = "NOT_A_CUSTOMER"


class PermissionDenied(DomainError):
    code = "FORBIDDEN"


class InvalidCredentials(DomainError):
    code = "INVALID_CREDENTIALS"


class RemovalReservedToCreatingService(DomainError):
    code = "REMOVAL_RESERVED_TO_CREATING_SERVICE"


class AlreadyExists(DomainError):
    code = "ALREADY_EXISTS"


class UpstreamNotConnected(DomainError):
    code = "UPSTREAM_NOT_CONNECTED"


class ImportNotAllowed(DomainError):
    code = "IMPORT_NOT_ALLOWED"


class UpstreamFailed(DomainError):
    code = "UPSTREAM_ERROR"


class RateLimited(DomainError):
    code = "RATE_LIMITED"

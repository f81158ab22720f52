"""Opaque global ids: base64url of `Type:key`, decoded strictly (wrong input is the client's)."""

from __future__ import annotations

import base64
import binascii

NODE_TYPES = frozenset(
    {
        "Company",
        "StaticGroup",
        "Computer",
        "Installer",
        "SyncRun",
        "Instance",
        "User",
        "Account",
        "PermissionSet",
        "AuditEntry",
        "License",
    }
)
MAX_ID_LENGTH = 200


class InvalidGlobalId(ValueError):
    """The id does not decode to a type and key of this API."""


def encode(type_name: str, key: int) -> str:
    return base64.urlsafe_b64encode(f"{type_name}:{key}".encode()).decode().rstrip("=")


def decode(global_id: str, expected: str | None = None) -> tuple[str, int]:
    """Return (type, key); raise InvalidGlobalId for anything else or another type."""
    if not isinstance(global_id, str) or not 0 < len(global_id) <= MAX_ID_LENGTH:
        raise InvalidGlobalId("malformed id")
    try:
        raw = base64.urlsafe_b64decode(global_id + "=" * (-len(global_id) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise InvalidGlobalId(f"malformed id {global_id[:40]!r}") from None
    type_name, _, key = raw.partition(":")
    if type_name not in NODE_TYPES or not key.isascii() or not key.isdigit() or len(key) > 18:
        raise InvalidGlobalId(f"malformed id {global_id[:40]!r}")
    if expected is not None and type_name != expected:
        raise InvalidGlobalId(f"id {global_id[:40]!r} is not a {expected}")
    return type_name, int(key)

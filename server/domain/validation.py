"""Input checks shared by every mutation: trimmed, bounded, well-formed, or a clear error."""

from __future__ import annotations

import re

from server.domain.errors import InvalidInput

EMAIL = re.compile(r"^[^@\s\x00-\x1f]{1,64}@[^@\s\x00-\x1f]{1,189}\.[^@\s\x00-\x1f.]{1,63}$")
MIN_PASSWORD = 8
MAX_PASSWORD = 256


def storable(value: str) -> bool:
    """Text the databases and argon2 take: no NUL (PostgreSQL refuses it) and valid Unicode
    (JSON can carry a lone surrogate, which no UTF-8 encoder takes)."""
    if "\x00" in value:
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def email(value: str, field: str = "email") -> str:
    value = (value or "").strip()
    if len(value) > 254 or not EMAIL.match(value) or not storable(value):
        raise InvalidInput("not a valid email address", field)
    return value.lower()


def password(value: str, field: str = "password", *, minimum: int = MIN_PASSWORD) -> str:
    if not isinstance(value, str) or not minimum <= len(value) <= MAX_PASSWORD:
        raise InvalidInput(f"a password has {minimum} to {MAX_PASSWORD} characters", field)
    if not storable(value):
        raise InvalidInput("a password is text without NUL or broken characters", field)
    return value


def name(value: str | None, field: str = "name", *, max_length: int = 255) -> str:
    value = (value or "").strip()
    if not value:
        raise InvalidInput("must not be empty", field)
    if len(value) > max_length:
        raise InvalidInput(f"at most {max_length} characters", field)
    if any(ord(ch) < 32 for ch in value):
        raise InvalidInput("must not contain control characters", field)
    return value


def optional_text(value: str | None, field: str, *, max_length: int = 255) -> str | None:
    if value is None:
        return None
    if len(value) > max_length:
        raise InvalidInput(f"at most {max_length} characters", field)
    return value

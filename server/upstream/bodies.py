"""Reading an MSP Administrator answer: every field checked against the documented shape.

A complaint names the endpoint and the field path, never the value (it is the upstream's text).
"""

from __future__ import annotations

from typing import Any

from server.upstream.codes import COMPANY_TYPES, HQ, STATUSES
from server.upstream.errors import UpstreamProtocolError
from server.upstream.records import UpstreamCompany, UpstreamCompanyRef


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object" if isinstance(value, dict) else type(value).__name__


class Body:
    """Reads one JSON body, naming the endpoint and the field path in every complaint."""

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint

    def fail(self, where: str, problem: str) -> UpstreamProtocolError:
        return UpstreamProtocolError(
            f"MSP Administrator {self.endpoint} answered an invalid body: {where} {problem}"
        )

    def object(self, value: Any, where: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(where, f"must be an object, got {_kind(value)}")
        return value

    def array(self, obj: dict[str, Any], key: str, where: str) -> list[Any]:
        value = self.member(obj, key, where)
        if not isinstance(value, list):
            raise self.fail(f"{where}{key}", f"must be an array, got {_kind(value)}")
        return value

    def string(self, obj: dict[str, Any], key: str, where: str, *, empty: bool = False) -> str:
        value = self.member(obj, key, where)
        if not isinstance(value, str):
            raise self.fail(f"{where}{key}", f"must be a string, got {_kind(value)}")
        if not empty and not value:
            raise self.fail(f"{where}{key}", "must not be empty")
        return value

    def optional_string(self, obj: dict[str, Any], key: str, where: str) -> str | None:
        value = obj.get(key)
        if value is not None and not isinstance(value, str):
            raise self.fail(f"{where}{key}", f"must be a string or null, got {_kind(value)}")
        return value

    def integer(
        self, obj: dict[str, Any], key: str, where: str, *, allowed: frozenset[int] | None = None
    ) -> int:
        value = self.member(obj, key, where)
        if not isinstance(value, int) or isinstance(value, bool):
            raise self.fail(f"{where}{key}", f"must be an integer, got {_kind(value)}")
        if allowed is not None and value not in allowed:
            raise self.fail(f"{where}{key}", f"has an unknown value {value}")
        return value

    def member(self, obj: dict[str, Any], key: str, where: str) -> Any:
        if key not in obj:
            raise self.fail(f"{where}{key}", "is missing")
        return obj[key]

    def company(self, value: Any, where: str) -> UpstreamCompany:
        obj = self.object(value, where or "the body")
        prefix = f"{where}." if where else ""
        return UpstreamCompany(
            public_id=self.string(obj, "publicId", prefix),
            name=self.string(obj, "name", prefix),
            type=self.integer(obj, "type", prefix, allowed=COMPANY_TYPES),
            status=self.integer(obj, "status", prefix, allowed=STATUSES),
            parent_id=self.string(obj, "parentId", prefix),
            email=self.optional_string(obj, "email", prefix),
            custom_identifier=self.optional_string(obj, "customIdentifier", prefix),
        )

    def company_ref(self, value: Any, where: str, id_key: str = "publicId") -> UpstreamCompanyRef:
        obj = self.object(value, where)
        prefix = f"{where}."
        return UpstreamCompanyRef(
            public_id=self.string(obj, id_key, prefix),
            name=self.string(obj, "name", prefix),
            type=self.integer(obj, "type", prefix, allowed=COMPANY_TYPES | {HQ}),
        )

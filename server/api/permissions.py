"""Field permissions: every root field but `login` needs a signed-in viewer."""

from __future__ import annotations

from typing import Any

from strawberry.permission import BasePermission
from strawberry.types import Info


class Authenticated(BasePermission):
    message = "sign in first: no valid bearer token"
    error_extensions = {"code": "UNAUTHENTICATED"}

    def has_permission(self, source: Any, info: Info, **kwargs: Any) -> bool:
        return info.context.session is not None

"""A small GraphQL client for tests, over any httpx client (in-process or real HTTP)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx

OPERATIONS = Path(__file__).resolve().parent.parent / "graphql" / "operations"


class GraphQLError(AssertionError):
    pass


class GraphQLClient:
    def __init__(self, http: httpx.AsyncClient, path: str = "/graphql") -> None:
        self.http = http
        self.path = path

    async def execute(
        self, query: str, variables: dict[str, Any] | None = None, token: str | None = None
    ) -> dict[str, Any]:
        """The whole response body (data and errors)."""
        headers = {"authorization": f"Bearer {token}"} if token else {}
        response = await self.http.post(
            self.path, json={"query": query, "variables": variables or {}}, headers=headers
        )
        return response.json()

    async def execute_escaped(
        self, query: str, variables: dict[str, Any] | None = None, token: str | None = None
    ) -> dict[str, Any]:
        """Like `execute`, with the JSON escaped to ASCII: the variables may then carry what a
        hostile client's may and no UTF-8 encoder takes (a lone surrogate, "\\ud800")."""
        headers = {"content-type": "application/json"}
        if token:
            headers["authorization"] = f"Bearer {token}"
        body = json.dumps({"query": query, "variables": variables or {}})
        response = await self.http.post(self.path, content=body, headers=headers)
        return response.json()

    async def query(
        self, query: str, variables: dict[str, Any] | None = None, token: str | None = None
    ) -> dict[str, Any]:
        """`data`, failing the test on any top-level error."""
        body = await self.execute(query, variables, token)
        if body.get("errors"):
            raise GraphQLError(body["errors"])
        return body["data"]

    async def operation(
        self, name: str, variables: dict[str, Any] | None = None, token: str | None = None
    ) -> dict[str, Any]:
        """Run a document of graphql/operations/, the way a front end would."""
        return await self.query((OPERATIONS / f"{name}.graphql").read_text(), variables, token)


def error_codes(body: dict[str, Any]) -> list[str]:
    return [e.get("extensions", {}).get("code") for e in body.get("errors", [])]

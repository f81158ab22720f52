"""Automatic persisted queries (Apollo's protocol): a client sends
`extensions.persistedQuery.sha256Hash` without the document; the server answers
PERSISTED_QUERY_NOT_FOUND until the client sends the document once with its hash."""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from typing import Any

MAX_ENTRIES = 10_000
MAX_QUERY_LENGTH = 100_000


class PersistedQueryNotFound(Exception):
    pass


class PersistedQueryMismatch(ValueError):
    pass


class PersistedQueries:
    """An in-process LRU of documents by SHA-256 (each worker learns a document once)."""

    def __init__(self, max_entries: int = MAX_ENTRIES) -> None:
        self.max_entries = max_entries
        self._documents: OrderedDict[str, str] = OrderedDict()

    def resolve(self, query: str | None, extensions: dict[str, Any] | None) -> str | None:
        """The document to run: the one sent, or the one stored under the hash sent."""
        persisted = (extensions or {}).get("persistedQuery")
        if not isinstance(persisted, dict):
            return query
        digest = persisted.get("sha256Hash")
        if persisted.get("version") != 1 or not isinstance(digest, str) or len(digest) != 64:
            raise PersistedQueryMismatch("unsupported persistedQuery extension")
        if query is None:
            document = self._documents.get(digest)
            if document is None:
                raise PersistedQueryNotFound(digest)
            self._documents.move_to_end(digest)
            return document
        if hashlib.sha256(query.encode()).hexdigest() != digest:
            raise PersistedQueryMismatch("provided sha256Hash does not match the query")
        if len(query) <= MAX_QUERY_LENGTH:
            self._documents[digest] = query
            if len(self._documents) > self.max_entries:
                self._documents.popitem(last=False)
        return query

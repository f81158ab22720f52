"""Automatic persisted queries (Apollo's protocol): a client sends
`extensions.persistedQuery.sha256Hash` without the document; the server answers
PERSISTED_QUERY_NOT_FOUND until the client sends the document once with its hash.

A document is remembered only once it has run for a signed-in viewer (so it parsed, validated
and passed the query limits), in an LRU bounded by entries and by bytes: nobody can fill a
worker's memory with documents that never run."""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

MAX_ENTRIES = 10_000
MAX_DOCUMENT_BYTES = 100_000  # larger documents run, but are not worth a place in the store


class PersistedQueryNotFound(Exception):
    pass


class PersistedQueryMismatch(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Registration:
    """A document sent with its hash, to remember if it runs."""

    digest: str
    document: str


class PersistedQueries:
    """An in-process LRU of documents by SHA-256 (each worker learns a document once)."""

    def __init__(self, max_bytes: int, max_entries: int = MAX_ENTRIES) -> None:
        self.max_bytes = max_bytes
        self.max_entries = max_entries
        self.stored_bytes = 0
        self._documents: OrderedDict[str, str] = OrderedDict()

    def resolve(
        self, query: str | None, extensions: dict[str, Any] | None
    ) -> tuple[str | None, Registration | None]:
        """The document to run (the one sent, or the one stored under the hash sent), and
        the registration to remember if the document was sent with its hash."""
        persisted = (extensions or {}).get("persistedQuery")
        if not isinstance(persisted, dict):
            return query, None
        digest = persisted.get("sha256Hash")
        if persisted.get("version") != 1 or not isinstance(digest, str) or len(digest) != 64:
            raise PersistedQueryMismatch("unsupported persistedQuery extension")
        if query is None:
            document = self._documents.get(digest)
            if document is None:
                raise PersistedQueryNotFound(digest)
            self._documents.move_to_end(digest)
            return document, None
        if hashlib.sha256(query.encode()).hexdigest() != digest:
            raise PersistedQueryMismatch("provided sha256Hash does not match the query")
        return query, Registration(digest, query)

    def remember(self, registration: Registration) -> None:
        """Store a document that ran, evicting the least recently used beyond the bounds."""
        if registration.digest in self._documents:
            self._documents.move_to_end(registration.digest)
            return
        size = len(registration.document.encode())
        if size > min(self.max_bytes, MAX_DOCUMENT_BYTES):
            return
        self._documents[registration.digest] = registration.document
        self.stored_bytes += size
        while self.stored_bytes > self.max_bytes or len(self._documents) > self.max_entries:
            _, evicted = self._documents.popitem(last=False)
            self.stored_bytes -= len(evicted.encode())

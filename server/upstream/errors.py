"""What can go wrong talking to the MSP Administrator, as exceptions the sync tells apart.

No message ever quotes what the upstream wrote in a body or a secret (password, tokens).
"""

from __future__ import annotations


class UpstreamError(Exception):
    """Something went wrong talking to the MSP Administrator."""


class UpstreamAuthError(UpstreamError):
    """The MSP Administrator refused the credentials (or every token it handed out)."""


class UpstreamProtocolError(UpstreamError):
    """An answer was not what the API documents: status, body shape or field types."""


class UpstreamTreeError(UpstreamProtocolError):
    """The company tree is inconsistent: a company twice, a cycle, a child with another parent."""


class UpstreamNotFound(UpstreamError):
    """The MSP Administrator does not know (or does not show us) the company asked for."""


class UpstreamUnavailable(UpstreamError):
    """The MSP Administrator stayed unreachable, throttled or failing beyond the retry budget."""


class UpstreamUnreachable(UpstreamUnavailable):
    """No answer at all: refused, reset, timed out or not resolved, which the message never tells
    apart (telling them apart would map ports and hosts for whoever chooses the URL)."""


class UpstreamLimitExceeded(UpstreamError):
    """An answer or the tree went beyond a limit of the client; `limit` is the argument's name."""

    def __init__(self, message: str, limit: str) -> None:
        super().__init__(message)
        self.limit = limit

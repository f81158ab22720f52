"""What the MSP Administrator client answers: companies, the account, a whole tree, and the
client's own counters."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class UpstreamCompanyRef:
    """A company named in passing: a user's company, an ancestor."""

    public_id: str
    name: str
    type: int


@dataclass(frozen=True, slots=True)
class UpstreamCompany:
    """A company as the MSP Administrator describes it."""

    public_id: str
    name: str
    type: int
    status: int
    parent_id: str
    email: str | None
    custom_identifier: str | None


@dataclass(frozen=True, slots=True)
class UpstreamUser:
    """The account the client is logged in as; its company is the root of a sync."""

    id: str
    email: str
    company: UpstreamCompanyRef


@dataclass(frozen=True, slots=True)
class UpstreamSnapshot:
    """The whole tree under an account's company, as one consistent read."""

    root: UpstreamCompany
    ancestors: tuple[UpstreamCompanyRef, ...]
    """The companies above the root, top first, HQ excluded."""
    descendants: tuple[UpstreamCompany, ...]
    """Everything below the root, depth first, parents before children, siblings in the
    upstream's order."""

    @property
    def companies(self) -> tuple[UpstreamCompany, ...]:
        """The root followed by its descendants."""
        return (self.root, *self.descendants)


@dataclass(slots=True)
class UpstreamStats:
    """What a client has done so far.

    `wait_seconds` is the sum of request latencies (parallel requests add up); `busy_seconds`
    is the wall-clock time during which at least one request was in flight.
    """

    calls: int = 0
    calls_by_endpoint: Counter[str] = field(default_factory=Counter)
    logins: int = 0
    renewals: int = 0
    retries: int = 0
    wait_seconds: float = 0.0
    busy_seconds: float = 0.0
    backoff_seconds: float = 0.0

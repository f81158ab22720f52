"""What goes wrong in the simulator, and when: one-shot faults aimed by a `Target`, and standing
faults (slow answers, short-lived tokens, a malformed tree)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, TypedDict, Unpack

ENDPOINTS = (
    "Token/Get",
    "Token/Renew",
    "User/Current",
    "Company/Detail",
    "Company/Children",
    "Search/Licenses",
)
INVALID_JSON = '{"companies": [{"publicId": '
"""The default malformed body: JSON cut short."""


@dataclass(frozen=True, slots=True)
class Call:
    """A call as faults are aimed at it."""

    endpoint: str
    parent_id: str | None = None
    """For Company/Children: the company whose children it asks."""
    last_page: bool = False
    completes_walk: bool = False


@dataclass(frozen=True, slots=True)
class Target:
    """Which calls a fault fires on, after letting `after` matching calls through.

    A call matches when it goes to `endpoint` (any when None), and, for Company/Children, when it
    asks the last page of `last_page_of`, or, with `end_of_walk`, the page that completes a walk of
    the caller's whole subtree (every non-customer company's last page asked).
    """

    endpoint: str | None = None
    after: int = 0
    last_page_of: str | None = None
    end_of_walk: bool = False

    def __post_init__(self) -> None:
        if self.after < 0:
            raise ValueError("a fault fires after zero or more calls")
        if self.endpoint is not None and self.endpoint not in ENDPOINTS:
            raise ValueError(f"unknown endpoint {self.endpoint!r}; one of {ENDPOINTS}")

    def matches(self, call: Call) -> bool:
        if self.endpoint is not None and self.endpoint != call.endpoint:
            return False
        if self.last_page_of is not None and not (
            call.parent_id == self.last_page_of and call.last_page
        ):
            return False
        return not self.end_of_walk or call.completes_walk


class Aim(TypedDict, total=False):
    """A `Target` as keyword arguments of the fault methods: `maintenance(2, endpoint=...)`."""

    endpoint: str | None
    after: int
    last_page_of: str | None
    end_of_walk: bool


@dataclass(slots=True)
class FaultRule:
    """One armed fault: fires on the next `times` calls its target matches, after letting
    `target.after` through. Calls a rule answers do not count as served, so a retried page keeps
    matching until `times` runs out."""

    kind: str
    times: int
    target: Target
    skip: int = 0
    """Matching calls still to let through."""
    retry_after: float | None = None
    status: int = 500
    seconds: float = 0.0
    body: Any = None
    size: int = 0
    location: str = ""

    def take(self, call: Call) -> bool:
        """Whether the rule fires on this call (counting it down when it does)."""
        if not self.target.matches(call):
            return False
        if self.skip > 0:
            self.skip -= 1
            return False
        self.times -= 1
        return True


class Faults:
    """What goes wrong in the simulator. Every one-shot fault is counted in `fired` by kind."""

    def __init__(self) -> None:
        self.fired: Counter[str] = Counter()
        self._reset()

    def _reset(self) -> None:
        self.delay = 0.0
        """Seconds every call waits before it is answered."""
        self.token_lifetime = 3600
        """Seconds an access token lives (the `expiresIn` answered)."""
        self.token_calls: int | None = None
        """Calls an access token answers before it expires (None: unlimited)."""
        self.rules: list[FaultRule] = []
        self.renewals_to_reject = 0
        self.duplicates: list[tuple[str, str | None]] = []
        self.cycles: list[tuple[str, str]] = []
        self.wrong_parents: dict[str, str] = {}
        self.endless: dict[str, int] = {}
        self.chains: dict[str, int] = {}

    def _arm(self, kind: str, times: int, aim: Aim, **details: Any) -> FaultRule:
        if times < 1:
            raise ValueError("a fault fires at least once")
        target = Target(**aim)
        if target.last_page_of is not None or target.end_of_walk:
            target = replace(target, endpoint="Company/Children")
        rule = FaultRule(kind, times, target, target.after, **details)
        self.rules.append(rule)
        return rule

    def take(self, call: Call, kinds: frozenset[str]) -> FaultRule | None:
        """The first armed rule of one of `kinds` that fires on this call, if any."""
        for rule in self.rules:
            if rule.kind in kinds and rule.take(call):
                if rule.times == 0:
                    self.rules.remove(rule)
                self.fired[rule.kind] += 1
                return rule
        return None

    def maintenance(self, times: int = 1, **aim: Unpack[Aim]) -> FaultRule:
        """503 {"code": 99, "subCode": 2} on the next `times` matching calls."""
        return self._arm("maintenance", times, aim)

    def rate_limit(
        self, times: int = 1, *, retry_after: float | None = 0, **aim: Unpack[Aim]
    ) -> FaultRule:
        """429 with `Retry-After: retry_after` (no header when None) on the next matching calls."""
        return self._arm("rate_limit", times, aim, retry_after=retry_after)

    def server_error(self, times: int = 1, *, status: int = 500, **aim: Unpack[Aim]) -> FaultRule:
        """A generic 5xx on the next `times` matching calls."""
        return self._arm("server_error", times, aim, status=status)

    def drop_connection(self, times: int = 1, **aim: Unpack[Aim]) -> FaultRule:
        """Closes the connection without an answer; `after=n-1` aims at the n-th call."""
        return self._arm("drop", times, aim)

    def slow(self, seconds: float, times: int = 1, **aim: Unpack[Aim]) -> FaultRule:
        """Waits `seconds` before answering the next matching calls (to trip client timeouts)."""
        return self._arm("slow", times, aim, seconds=seconds)

    def malformed_body(
        self,
        times: int = 1,
        *,
        body: str | bytes | Callable[[Any], Any] | dict[str, Any] | list[Any] = INVALID_JSON,
        **aim: Unpack[Aim],
    ) -> FaultRule:
        """Answers 200 with a wrong body instead of the right one.

        `body` is sent as is when text or bytes, JSON-encoded when a dict or list, or, when
        callable, applied to the right answer (a fresh copy) to produce the JSON to send.
        """
        return self._arm("malformed", times, aim, body=body)

    def huge_body(self, size: int, times: int = 1, **aim: Unpack[Aim]) -> FaultRule:
        """Answers 200 with a JSON object of `size` bytes, streamed without a Content-Length;
        `SimulatorState.bytes_streamed` counts what got out before the caller hung up."""
        return self._arm("huge", times, aim, size=size)

    def redirect(
        self, location: str, times: int = 1, *, status: int = 307, **aim: Unpack[Aim]
    ) -> FaultRule:
        """Answers `status` with `Location: <location><the path asked>` (307 keeps the method
        and the body, credentials included, for whoever follows it)."""
        return self._arm("redirect", times, aim, status=status, location=location.rstrip("/"))

    def endless_children(self, company_id: str, total: int = 10**12) -> None:
        """The company's children never end: `totalCount` is `total` and every page is full of
        made-up customers."""
        self.endless[company_id] = total

    def deep_chain(self, company_id: str, levels: int) -> None:
        """Hangs a chain of `levels` made-up MSPs below the company, each the only child of
        the one above."""
        self.chains[company_id] = levels

    def expire_tokens_after(self, calls: int | None) -> None:
        """Access tokens expire after answering `calls` calls (401 code 2), forcing renewals."""
        self.token_calls = calls

    def reject_renewals(self, times: int = 1) -> None:
        """The next `times` Token/Renew calls answer 401, forcing a new login."""
        self.renewals_to_reject += times

    def duplicate_company(self, company_id: str, *, under: str | None = None) -> None:
        """Lists a company a second time, at the end of `under`'s children (its own parent's
        when None), with `parentId` set to match the listing."""
        self.duplicates.append((company_id, under))

    def cycle(self, parent_id: str, ancestor_id: str) -> None:
        """Lists `ancestor_id` as a child of `parent_id`, at the end of its children."""
        self.cycles.append((parent_id, ancestor_id))

    def wrong_parent(self, company_id: str, reported_parent_id: str) -> None:
        """The company says `reported_parent_id` is its parent when listed under its real one."""
        self.wrong_parents[company_id] = reported_parent_id

    @property
    def pending(self) -> int:
        """Calls the armed one-shot faults still have to fire on."""
        return sum(rule.times for rule in self.rules)

    def clear(self) -> None:
        """Removes every fault and restores the defaults; keeps `fired`."""
        self._reset()

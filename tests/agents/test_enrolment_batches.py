"""Enrolments written in batches: a fixed number of statements however many arrive together,
the rules of one-at-a-time enrolment applied in arrival order within a batch, and concurrent
HTTP enrolments sharing transactions."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp

from server.domain.enrolment import AgentUnauthorized, Enrolment, EnrolmentRequest, Pending
from server.domain.enrolment import enroll_batch as write_batch
from server.domain.installers import create_installer, revoke_installer
from server.models import AuditEntry, Computer
from server.models.db import count_statements, fetch_value

from .conftest import SETTINGS, AgentServer, Tree, enrol


def request(hardware_id: str, agent_token: str | None = None) -> EnrolmentRequest:
    return EnrolmentRequest(hardware_id, f"host-{hardware_id}", "Linux", "11.1", agent_token)


async def enroll_batch(batch: list[Pending]) -> list[Enrolment | AgentUnauthorized]:
    return await write_batch(batch, settings=SETTINGS)


async def mixed_batch(token: str, size: int, tag: str) -> list[Pending]:
    """`size` new computers, `size` duplicates of enrolled ones and `size` re-enrolments."""
    enrolled = await enroll_batch([Pending(token, request(f"{tag}-old-{n}")) for n in range(size)])
    agents = [e for e in enrolled if isinstance(e, Enrolment)]
    return (
        [Pending(token, request(f"{tag}-new-{n}")) for n in range(size)]
        + [Pending(token, request(f"{tag}-old-{n}")) for n in range(size)]
        + [Pending(token, request(f"{tag}-old-{n}", e.agent_token)) for n, e in enumerate(agents)]
    )


async def test_a_batch_costs_the_same_statements_however_many_enrolments_it_holds(
    tree: Tree, installer: Any
) -> None:
    counts = []
    for size in (1, 40):
        batch = await mixed_batch(installer[1], size, f"fixed-{size}")
        with count_statements() as counter:
            results = await enroll_batch(batch)
        assert all(isinstance(r, Enrolment) for r in results), results
        counts.append(counter.count)
    # lookup, originals, duplicates, re-enrolments, installer count, the shift of the subtree
    # counters of the new computers' groups (one upsert for the batch) and the check that no
    # sync moved those groups meanwhile, audit entries
    assert counts[0] == counts[1] <= 8, counts


async def test_the_same_hardware_twice_in_one_batch_makes_an_original_and_its_duplicate(
    tree: Tree, installer: Any
) -> None:
    first, second = await enroll_batch(
        [Pending(installer[1], request("hw-twin")), Pending(installer[1], request("hw-twin"))]
    )
    assert isinstance(first, Enrolment) and isinstance(second, Enrolment)
    assert first.computer.duplicate_of_id is None  # type: ignore[attr-defined]
    assert second.computer.duplicate_of_id == first.computer.id  # type: ignore[attr-defined]
    entry = await AuditEntry.get(instance_id=tree.instance.id, action="enrollDuplicate")
    assert entry.group_path == tree.customer_group.path  # where the original lives


async def test_only_the_first_of_two_requests_with_one_agent_token_continues_the_computer(
    tree: Tree, installer: Any
) -> None:
    (enrolled,) = await enroll_batch([Pending(installer[1], request("hw-held"))])
    assert isinstance(enrolled, Enrolment)
    again, copy = await enroll_batch(
        [
            Pending(installer[1], request("hw-held", enrolled.agent_token)),
            Pending(installer[1], request("hw-held", enrolled.agent_token)),
        ]
    )
    assert isinstance(again, Enrolment) and isinstance(copy, Enrolment)
    assert again.computer.id == enrolled.computer.id
    assert again.superseded_token_hash is not None
    assert copy.computer.duplicate_of_id == enrolled.computer.id  # type: ignore[attr-defined]
    assert copy.superseded_token_hash is None


async def test_a_batch_refuses_beyond_the_cap_and_what_it_cannot_enrol_only(tree: Tree) -> None:
    capped, capped_token = await create_installer(
        tree.scope, company_id=tree.customer.id, max_enrolments=3
    )
    revoked, revoked_token = await create_installer(tree.scope, company_id=tree.customer.id)
    await revoke_installer(tree.scope, revoked.id)
    batch = [Pending(capped_token, request(f"hw-capped-{n}")) for n in range(5)]
    batch.insert(1, Pending(revoked_token, request("hw-revoked")))
    batch.insert(2, Pending("ins_" + "x" * 40, request("hw-unknown")))
    results = await enroll_batch(batch)
    kinds = [type(r).__name__ for r in results]
    assert (
        kinds
        == ["Enrolment", "AgentUnauthorized", "AgentUnauthorized"]
        + ["Enrolment"] * 2
        + ["AgentUnauthorized"] * 2
    )
    assert "all the enrolments" in str(results[-1])
    stored = await Computer.filter(instance_id=tree.instance.id).values_list(
        "hardware_id", flat=True
    )
    assert sorted(stored) == ["hw-capped-0", "hw-capped-1", "hw-capped-2"]
    assert await fetch_value("SELECT enrolments FROM installer WHERE id = ?", [capped.id]) == 3
    assert await fetch_value("SELECT enrolments FROM installer WHERE id = ?", [revoked.id]) == 0


async def test_concurrent_enrolments_over_http_share_transactions(
    agent_server: AgentServer, http: aiohttp.ClientSession, tree: Tree, installer: Any
) -> None:
    writer = agent_server.runtime.enrolments
    before = writer.batches
    bodies = await asyncio.gather(
        *(enrol(http, agent_server, installer[1], f"hw-crowd-{n}") for n in range(64))
    )
    assert len({b["computerId"] for b in bodies}) == 64
    assert await Computer.filter(instance_id=tree.instance.id).count() == 64
    assert writer.batches - before < 64 / 4  # several per transaction

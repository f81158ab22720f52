"""Installers: creation rules, scope, revocation, and what an agent is given."""

from __future__ import annotations

import json
import os
import stat
import subprocess
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from tortoise.transactions import in_transaction

from server.domain import global_ids
from server.domain.access import Scope
from server.domain.errors import InvalidInput, InvalidTransition, NotFound, PermissionDenied
from server.domain.installers import (
    create_installer,
    installer_command,
    installer_config,
    is_usable,
    revoke_company_installers,
    revoke_installer,
)
from server.domain.secrets import token_hash
from server.models import Company, Installer, StaticGroup
from server.models.db import fetch_value
from server.models.enums import Area, GroupKind, Level
from tests.agents.conftest import SETTINGS, Tree, build_tree, database, make_company, tree

__all__ = ["database", "tree"]  # fixtures


async def installer_count(tree: Tree) -> int:
    return int(
        await fetch_value(
            "SELECT COUNT(*) FROM installer WHERE instance_id = ?", [tree.instance.id]
        )
    )


def scope_with(tree: Tree, path: str, **levels: Level) -> Scope:
    grants = {Area[area]: ((path, level),) for area, level in levels.items()}
    return Scope(tree.instance.id, tree.owner.id, False, grants)


async def test_an_installer_defaults_to_the_companys_group_and_name(tree: Tree) -> None:
    installer, _ = await create_installer(
        tree.scope, company_id=tree.customer.id, created_by_id=tree.owner.id
    )
    assert installer.group_id == tree.customer_group.id
    assert installer.company_id == tree.customer.id
    assert installer.name == "Agent installer for Globex"
    assert installer.created_by_id == tree.owner.id
    assert installer.revoked_at is None and installer.max_enrolments is None
    assert installer.enrolments == 0
    assert is_usable(installer)


async def test_an_installer_expires_after_the_default_lifetime_unless_told(tree: Tree) -> None:
    now = datetime(2030, 1, 1, tzinfo=UTC)
    default, _ = await create_installer(tree.scope, company_id=tree.customer.id, now=now)
    assert default.expires_at == now + timedelta(days=30)
    short, _ = await create_installer(tree.scope, company_id=tree.customer.id, ttl_days=2, now=now)
    assert short.expires_at == now + timedelta(days=2)
    told, _ = await create_installer(
        tree.scope,
        company_id=tree.customer.id,
        expires_at=now + timedelta(days=400),
        ttl_days=2,
        now=now,
    )
    assert told.expires_at == now + timedelta(days=400)
    stored = await Installer.get(id=default.id)
    assert stored.expires_at == now + timedelta(days=30)
    assert not is_usable(stored, now + timedelta(days=30))


async def test_an_installer_may_be_capped_and_is_used_up_at_its_cap(tree: Tree) -> None:
    installer, _ = await create_installer(tree.scope, company_id=tree.customer.id, max_enrolments=2)
    stored = await Installer.get(id=installer.id)
    assert (stored.max_enrolments, stored.enrolments) == (2, 0) and is_usable(stored)
    stored.enrolments = 2
    assert not is_usable(stored)


@pytest.mark.parametrize("cap", [0, -1, 1_000_001, 2**40])
async def test_a_cap_out_of_range_is_refused(tree: Tree, cap: int) -> None:
    with pytest.raises(InvalidInput) as refused:
        await create_installer(tree.scope, company_id=tree.customer.id, max_enrolments=cap)
    assert refused.value.field == "maxEnrolments"
    assert await installer_count(tree) == 0


async def test_only_the_hash_of_a_256_bit_token_is_stored(tree: Tree) -> None:
    installer, token = await create_installer(tree.scope, company_id=tree.customer.id)
    prefix, _, secret = token.partition("_")
    assert prefix == "inst" and len(secret) == 43  # 32 random bytes, base64url
    stored = await Installer.get(id=installer.id)
    assert stored.token_hash == token_hash(token)
    assert token not in json.dumps(await Installer.filter(id=installer.id).values(), default=str)
    _, other = await create_installer(tree.scope, company_id=tree.customer.id)
    assert other != token


async def test_a_custom_group_under_the_company_can_be_the_target(tree: Tree) -> None:
    installer, _ = await create_installer(
        tree.scope, company_id=tree.customer.id, group_id=tree.custom_group.id, name="  Laptops "
    )
    assert installer.group_id == tree.custom_group.id
    assert installer.name == "Laptops"


async def test_a_group_of_another_company_is_refused(tree: Tree) -> None:
    with pytest.raises(InvalidInput) as refused:
        await create_installer(
            tree.scope, company_id=tree.customer.id, group_id=tree.other_group.id
        )
    assert refused.value.field == "groupId"
    assert await installer_count(tree) == 0


async def test_a_custom_group_inside_a_child_companys_group_is_refused(tree: Tree) -> None:
    with pytest.raises(InvalidInput, match="another company"):
        await create_installer(tree.scope, company_id=tree.msp.id, group_id=tree.custom_group.id)
    with pytest.raises(InvalidInput):
        await create_installer(tree.scope, company_id=tree.msp.id, group_id=tree.customer_group.id)
    assert await installer_count(tree) == 0


async def test_shared_objects_and_top_groups_are_refused(tree: Tree) -> None:
    shared = await StaticGroup.get(company_id=tree.msp.id, kind=GroupKind.SHARED_OBJECTS)
    for group in (shared, tree.all_group, tree.companies_group):
        with pytest.raises(InvalidInput):
            await create_installer(tree.scope, company_id=tree.msp.id, group_id=group.id)


async def test_a_group_or_company_of_another_instance_does_not_exist(tree: Tree) -> None:
    elsewhere = await build_tree()
    with pytest.raises(NotFound) as refused:
        await create_installer(
            tree.scope, company_id=tree.customer.id, group_id=elsewhere.customer_group.id
        )
    assert refused.value.field == "groupId"
    with pytest.raises(NotFound) as refused:
        await create_installer(tree.scope, company_id=elsewhere.customer.id)
    assert refused.value.field == "companyId"
    with pytest.raises(NotFound):
        await create_installer(tree.scope, company_id=10**9)


async def test_an_expiry_in_the_past_is_refused(tree: Tree) -> None:
    past = datetime.now(UTC) - timedelta(seconds=1)
    with pytest.raises(InvalidInput) as refused:
        await create_installer(tree.scope, company_id=tree.customer.id, expires_at=past)
    assert refused.value.field == "expiresAt"
    with pytest.raises(InvalidInput):
        await create_installer(
            tree.scope, company_id=tree.customer.id, expires_at=datetime(2100, 1, 1)
        )
    assert await installer_count(tree) == 0


async def test_a_future_expiry_is_kept_in_utc(tree: Tree) -> None:
    later = datetime.now(UTC) + timedelta(days=7)
    installer, _ = await create_installer(
        tree.scope, company_id=tree.customer.id, expires_at=later.astimezone()
    )
    stored = await Installer.get(id=installer.id)
    assert stored.expires_at == later
    assert not is_usable(stored, later + timedelta(seconds=1))


@pytest.mark.parametrize("name", ["", "   ", "x" * 256])
async def test_a_blank_or_overlong_name_is_refused(tree: Tree, name: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        await create_installer(tree.scope, company_id=tree.customer.id, name=name)
    assert refused.value.field == "name"
    assert await installer_count(tree) == 0


async def test_installers_need_write_on_installers_in_the_target_group(tree: Tree) -> None:
    reader = scope_with(tree, tree.customer_group.path, INSTALLERS=Level.USE, COMPANIES=Level.WRITE)
    with pytest.raises(PermissionDenied):
        await create_installer(reader, company_id=tree.customer.id)
    writer = scope_with(tree, tree.customer_group.path, INSTALLERS=Level.WRITE)
    installer, _ = await create_installer(writer, company_id=tree.customer.id)
    assert installer.id
    custom_only = scope_with(tree, tree.custom_group.path, INSTALLERS=Level.WRITE)
    with pytest.raises(NotFound):  # the company itself is out of sight
        await create_installer(custom_only, company_id=tree.customer.id)
    assert await installer_count(tree) == 1


async def test_a_company_out_of_scope_does_not_exist(tree: Tree) -> None:
    other_only = scope_with(tree, tree.other_group.path, INSTALLERS=Level.WRITE)
    with pytest.raises(NotFound):
        await create_installer(other_only, company_id=tree.customer.id)


async def test_an_unlinked_or_read_only_company_gets_no_installer(tree: Tree) -> None:
    await Company.filter(id=tree.customer.id).update(unlinked_at=datetime.now(UTC))
    with pytest.raises(InvalidTransition):
        await create_installer(tree.scope, company_id=tree.customer.id)
    distributor, _ = await make_company(tree.instance, "Dist", tree.msp.type, None)
    await Company.filter(id=distributor.id).update(read_only=True)
    with pytest.raises(InvalidInput):
        await create_installer(tree.scope, company_id=distributor.id)
    assert await installer_count(tree) == 0


async def test_revoking_an_installer_is_idempotent_and_scoped(tree: Tree) -> None:
    installer, _ = await create_installer(tree.scope, company_id=tree.customer.id)
    other_only = scope_with(tree, tree.other_group.path, INSTALLERS=Level.WRITE)
    with pytest.raises(NotFound):
        await revoke_installer(other_only, installer.id)
    reader = scope_with(tree, tree.customer_group.path, INSTALLERS=Level.READ)
    with pytest.raises(PermissionDenied):
        await revoke_installer(reader, installer.id)
    assert (await Installer.get(id=installer.id)).revoked_at is None

    revoked = await revoke_installer(tree.scope, installer.id)
    assert revoked.revoked_at is not None and not is_usable(revoked)
    again = await revoke_installer(tree.scope, installer.id)
    assert again.revoked_at == revoked.revoked_at
    with pytest.raises(NotFound):
        await revoke_installer(tree.scope, 10**9)


async def test_revoking_a_companys_installers_keeps_earlier_revocations(tree: Tree) -> None:
    first, _ = await create_installer(tree.scope, company_id=tree.customer.id)
    second, _ = await create_installer(
        tree.scope, company_id=tree.customer.id, group_id=tree.custom_group.id
    )
    other, _ = await create_installer(tree.scope, company_id=tree.other.id)
    earlier = await revoke_installer(tree.scope, first.id)

    async with in_transaction():
        assert await revoke_company_installers(tree.customer.id) == 1
    stored = {i.id: i.revoked_at for i in await Installer.filter(instance_id=tree.instance.id)}
    assert stored[first.id] == earlier.revoked_at
    assert stored[second.id] is not None
    assert stored[other.id] is None


async def test_revoking_a_companys_installers_rolls_back_with_its_transaction(tree: Tree) -> None:
    installer, _ = await create_installer(tree.scope, company_id=tree.customer.id)
    with pytest.raises(RuntimeError):
        async with in_transaction():
            await revoke_company_installers(tree.customer.id)
            raise RuntimeError("the unlink failed")
    assert (await Installer.get(id=installer.id)).revoked_at is None


async def test_the_installer_config_tells_an_agent_where_and_how_to_enrol(tree: Tree) -> None:
    installer, token = await create_installer(
        tree.scope, company_id=tree.customer.id, group_id=tree.custom_group.id
    )
    config = installer_config(installer, token, SETTINGS)
    assert config["enrollUrl"] == "http://agents.example:2222/agent/v1/enroll"
    assert config["agentUrl"] == "http://agents.example:2222/agent/v1"
    assert config["installerToken"] == token
    assert global_ids.decode(config["groupId"]) == ("StaticGroup", tree.custom_group.id)
    assert global_ids.decode(config["companyId"]) == ("Company", tree.customer.id)
    assert config["expiresAt"] == installer.expires_at.isoformat()


def fake_curl(folder: Path, answer: str) -> None:
    """A `curl` that records its arguments and the body it is given, and answers `answer`."""
    script = folder / "curl"
    script.write_text(
        "#!/bin/sh\n"
        f'for a in "$@"; do printf "%s\\n" "$a"; done > "{folder}/curl-args"\n'
        f'cat > "{folder}/curl-body"\n'
        f"printf '%s' '{answer}'\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IEXEC)


def run_command(command: str, folder: Path, state: Path) -> subprocess.CompletedProcess[str]:
    env: dict[str, Any] = {
        **os.environ,
        "PATH": f"{folder}:{os.environ['PATH']}",
        "MSP_AGENT_STATE_DIR": str(state),
    }
    return subprocess.run(
        ["/bin/sh", "-c", command], env=env, capture_output=True, text=True, cwd=folder
    )


async def test_the_shell_command_posts_a_random_hardware_id_and_keeps_its_state(
    tree: Tree, tmp_path: Path
) -> None:
    installer, token = await create_installer(tree.scope, company_id=tree.customer.id)
    command = installer_command(installer, token, SETTINGS)
    fake_curl(tmp_path, '{"computerId":"Q29tcHV0ZXI6MQ","agentToken":"agt_first-1"}')
    state = tmp_path / "state"
    result = run_command(command, tmp_path, state)
    assert result.returncode == 0, result.stderr
    assert "enrolled: computer Q29tcHV0ZXI6MQ" in result.stdout
    args = (tmp_path / "curl-args").read_text().splitlines()
    assert "http://agents.example:2222/agent/v1/enroll" in args
    assert f"Authorization: Bearer {token}" in args
    body = json.loads((tmp_path / "curl-body").read_text())
    assert set(body) == {"hardwareId", "hostname", "os", "agentVersion"}
    hardware_id = body["hardwareId"]
    assert len(hardware_id) == 32 and int(hardware_id, 16) >= 0  # 128 random bits, in hex
    assert (state / "hardware-id").read_text() == hardware_id
    assert (state / "agent-token").read_text() == "agt_first-1"
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    for name in ("hardware-id", "agent-token"):
        assert stat.S_IMODE((state / name).stat().st_mode) == 0o600

    fake_curl(tmp_path, '{"computerId":"Q29tcHV0ZXI6MQ","agentToken":"agt_second-2"}')
    assert run_command(command, tmp_path, state).returncode == 0
    again = json.loads((tmp_path / "curl-body").read_text())
    assert again["hardwareId"] == hardware_id and again["agentToken"] == "agt_first-1"
    assert (state / "agent-token").read_text() == "agt_second-2"
    # Another state folder on the same machine: another id, nothing to guess from outside.
    assert run_command(command, tmp_path, tmp_path / "other").returncode == 0
    assert json.loads((tmp_path / "curl-body").read_text())["hardwareId"] != hardware_id


async def test_a_refused_enrolment_keeps_the_token_the_agent_holds(
    tree: Tree, tmp_path: Path
) -> None:
    installer, token = await create_installer(tree.scope, company_id=tree.customer.id)
    state = tmp_path / "state"
    state.mkdir()
    (state / "agent-token").write_text("agt_kept")
    fake_curl(tmp_path, '{"error":"the installer has expired"}')
    result = run_command(installer_command(installer, token, SETTINGS), tmp_path, state)
    assert result.returncode != 0 and "enrolment failed" in result.stderr
    assert (state / "agent-token").read_text() == "agt_kept"


HOSTILE_URLS = [
    "http://agents.example/a'b/v1",
    "http://agents.example/$(touch pwned)/`touch pwned`/v1",
    "http://agents.example/x; touch pwned; echo /v1",
    'http://agents.example/"$HOME"\\n/v1',
    "http://agents.example/\ntouch pwned\n/v1",
]


@pytest.mark.parametrize("url", HOSTILE_URLS)
async def test_the_shell_command_passes_any_url_verbatim_and_runs_nothing_of_it(
    tree: Tree, tmp_path: Path, url: str
) -> None:
    installer, token = await create_installer(tree.scope, company_id=tree.customer.id)
    settings = replace(SETTINGS, public_agent_url=url)
    fake_curl(tmp_path, '{"computerId":"x","agentToken":"agt_ok"}')
    result = run_command(installer_command(installer, token, settings), tmp_path, tmp_path / "s")
    assert result.returncode == 0, result.stderr
    assert not (tmp_path / "pwned").exists()
    args = (tmp_path / "curl-args").read_text()
    assert f"{url}/enroll\n" in args


async def test_hostile_machine_names_are_sent_as_json_strings(tree: Tree, tmp_path: Path) -> None:
    installer, token = await create_installer(tree.scope, company_id=tree.customer.id)
    uname = tmp_path / "uname"
    uname.write_text("#!/bin/sh\nprintf '%s' 'a\"b\\c\ttab $(x) '\"'\"'q'\n")
    uname.chmod(uname.stat().st_mode | stat.S_IEXEC)
    fake_curl(tmp_path, '{"computerId":"x","agentToken":"agt_ok"}')
    result = run_command(installer_command(installer, token, SETTINGS), tmp_path, tmp_path / "s")
    assert result.returncode == 0, result.stderr
    body = json.loads((tmp_path / "curl-body").read_text())
    assert body["hostname"] == body["os"] == "a\"b\\ctab $(x) 'q"

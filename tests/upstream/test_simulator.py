"""The MSP Administrator simulator: its generated trees, its knobs and its strict API."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from server.upstream.codes import (
    CUSTOMER,
    DISTRIBUTOR,
    DIVISION,
    HQ,
    MANAGED_MSP,
    MSP,
    MSP_MANAGER,
    SUSPENDED,
)
from server.upstream.simulator import Simulator, UpstreamTree

UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


class Api:
    """Raw calls to a running simulator, to check its answers without the client's help."""

    def __init__(self, sim: Simulator, session: aiohttp.ClientSession) -> None:
        self.sim = sim
        self.session = session
        self.token = ""

    async def post(self, endpoint: str, body: Any, token: str | None = None) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {token if token is not None else self.token}"}
        url = f"{self.sim.url}/api/{endpoint}"
        async with self.session.post(url, json=body, headers=headers) as answer:
            return answer.status, await answer.json()

    async def login(self, username: str = "demo@msp.example", password: str = "demo") -> Any:
        status, body = await self.post("Token/Get", {"username": username, "password": password})
        assert status == 200, body
        self.token = body["accessToken"]
        return body

    async def children(self, company_id: str, skip: int = 0, take: Any = 100) -> tuple[int, Any]:
        return await self.post(
            "Company/Children", {"companyId": company_id, "skip": skip, "take": take}
        )


@pytest.fixture
async def api() -> AsyncIterator[Api]:
    async with Simulator(UpstreamTree.generate(400, seed=11)) as sim, aiohttp.ClientSession() as s:
        api = Api(sim, s)
        await api.login()
        yield api


# -- generated trees ----------------------------------------------------------------------------


def test_the_same_seed_generates_the_same_tree_and_another_seed_another() -> None:
    first, again = UpstreamTree.generate(500, seed=5), UpstreamTree.generate(500, seed=5)
    assert first.companies == again.companies
    assert first.account_id == again.account_id
    assert UpstreamTree.generate(500, seed=6).companies != first.companies


@pytest.mark.parametrize("size", [10, 57, 5_000, 100_000])
def test_a_generated_account_holds_exactly_the_companies_asked(size: int) -> None:
    assert len(UpstreamTree.generate(size, seed=1).snapshot()) == size


def test_a_generated_tree_has_the_shape_of_an_msp_account() -> None:
    tree = UpstreamTree.generate(2_000, seed=2)
    hq = tree.get(tree.hq_id)
    assert hq["type"] == HQ and hq["parentId"] is None
    assert tree.get(tree.distributor_id)["type"] == DISTRIBUTOR
    assert tree.get(tree.distributor_id)["parentId"] == tree.hq_id
    account = tree.get(tree.account_id)
    assert account["type"] == MSP_MANAGER
    expected_parent = tree.division_id or tree.distributor_id
    assert account["parentId"] == expected_parent
    if tree.division_id:
        assert tree.get(tree.division_id)["type"] == DIVISION
    below = tree.children_of(tree.account_id)
    assert sum(c["type"] == MANAGED_MSP for c in below) == 1
    assert sum(c["type"] == MSP for c in below) >= 2
    assert any(c["type"] == CUSTOMER for c in below), "the MSP Manager has direct customers"
    customers = tree.of_type(CUSTOMER)
    homes = {tree.get(c["parentId"])["type"] for c in customers}
    assert homes == {MSP_MANAGER, MSP, MANAGED_MSP}
    assert all(UUID.match(public_id) for public_id in tree.companies)
    assert max(len(tree.children_of(c["publicId"])) for c in below) > 100, "some parent pages"


def test_some_trees_have_a_division_and_some_do_not() -> None:
    divisions = {UpstreamTree.generate(10, seed=seed).division_id is None for seed in range(10)}
    assert divisions == {True, False}


def test_customers_never_have_children() -> None:
    tree = UpstreamTree.generate(3_000, seed=3)
    assert all(not tree.children_of(c["publicId"]) for c in tree.of_type(CUSTOMER))
    with pytest.raises(ValueError, match="customers never have children"):
        tree.add(tree.of_type(CUSTOMER)[0]["publicId"], "Nope", CUSTOMER)


def test_generated_names_include_unicode_commas_and_double_quotes() -> None:
    for seed in range(5):
        names = [c["name"] for c in UpstreamTree.generate(10, seed=seed).of_type(CUSTOMER)]
        assert any(not name.isascii() for name in names)
        assert any("," in name for name in names)
        assert any('"' in name for name in names)


def test_too_small_a_tree_is_refused() -> None:
    with pytest.raises(ValueError):
        UpstreamTree.generate(3, seed=1)


# -- knobs --------------------------------------------------------------------------------------


def test_the_knobs_change_what_the_snapshot_shows() -> None:
    tree = UpstreamTree.generate(60, seed=4)
    msp, other_msp = (c["publicId"] for c in tree.of_type(MSP)[:2])
    before = tree.snapshot()

    new = tree.add(msp, 'Nový "zákazník", s.r.o.', CUSTOMER)
    assert tree.snapshot()[new] == ('Nový "zákazník", s.r.o.', CUSTOMER, 1, msp)
    tree.rename(new, "Renamed")
    tree.suspend(new)
    assert tree.snapshot()[new] == ("Renamed", CUSTOMER, SUSPENDED, msp)
    tree.activate(new)
    tree.move(new, other_msp)
    assert tree.snapshot()[new] == ("Renamed", CUSTOMER, 1, other_msp)

    subtree = {c["publicId"] for c in tree.subtree(msp)}
    tree.remove(msp)
    assert not subtree & tree.snapshot().keys()
    tree.readd(msp)
    tree.remove(new)
    assert tree.snapshot() == before


def test_a_removed_subtree_cannot_come_back_once_its_parent_is_gone() -> None:
    tree = UpstreamTree.generate(60, seed=4)
    msp = tree.of_type(MSP)[0]["publicId"]
    customer = tree.children_of(msp)[0]["publicId"]
    tree.remove(customer)
    tree.remove(msp)
    with pytest.raises(KeyError):
        tree.readd(customer)


def test_a_company_cannot_move_under_itself() -> None:
    tree = UpstreamTree.generate(60, seed=4)
    msp = tree.of_type(MSP)[0]["publicId"]
    with pytest.raises(ValueError):
        tree.move(tree.account_id, msp)


# -- the API ------------------------------------------------------------------------------------


@pytest.mark.parametrize("take", [0, 101, -1, "10", True, None])
async def test_a_take_outside_one_to_a_hundred_is_refused_with_400(api: Api, take: Any) -> None:
    status, body = await api.children(api.sim.tree.account_id, take=take)
    assert status == 400
    assert "take" in body["message"]


async def test_a_negative_skip_is_refused_with_400(api: Api) -> None:
    status, _ = await api.children(api.sim.tree.account_id, skip=-1)
    assert status == 400


async def test_an_unknown_company_is_404(api: Api) -> None:
    assert (await api.children("00000000-0000-4000-8000-000000000000"))[0] == 404
    status, _ = await api.post("Company/Detail", {"companyId": "nope"})
    assert status == 404


async def test_companies_outside_the_account_are_not_shown(api: Api) -> None:
    tree = api.sim.tree
    sibling = next(
        c["publicId"] for c in tree.children_of(tree.distributor_id) if c["type"] == MSP_MANAGER
    )
    assert sibling != tree.account_id
    assert (await api.post("Company/Detail", {"companyId": sibling}))[0] == 404
    assert (await api.children(sibling))[0] == 404
    assert (await api.post("Company/Detail", {"companyId": tree.hq_id}))[0] == 404
    assert (await api.children(tree.distributor_id))[0] == 404, "above the account"
    assert (await api.post("Company/Detail", {"companyId": tree.distributor_id}))[0] == 200


async def test_the_account_detail_lists_its_ancestors_top_first_without_hq(api: Api) -> None:
    tree = api.sim.tree
    status, body = await api.post("Company/Detail", {"companyId": tree.account_id})
    assert status == 200
    assert body["company"] == tree.get(tree.account_id)
    expected = [tree.distributor_id] + ([tree.division_id] if tree.division_id else [])
    assert [a["publicId"] for a in body["ancestors"]] == expected
    assert set(body["ancestors"][0]) == {"publicId", "name", "type"}


async def test_children_pages_are_stable_and_sorted_by_name_then_id(api: Api) -> None:
    parent = api.sim.tree.account_id
    _, first = await api.children(parent, 0, 7)
    _, second = await api.children(parent, 7, 7)
    _, whole = await api.children(parent, 0, 14)
    assert first["companies"] + second["companies"] == whole["companies"]
    keys = [(c["name"], c["publicId"]) for c in whole["companies"]]
    assert keys == sorted(keys)
    assert first["totalCount"] == len(api.sim.tree.children_of(parent))


async def test_wrong_credentials_are_401_code_1(api: Api) -> None:
    status, body = await api.post("Token/Get", {"username": "demo@msp.example", "password": "x"})
    assert (status, body["code"], body["subCode"]) == (401, 1, 1)


async def test_a_missing_or_invalid_bearer_is_401_code_1(api: Api) -> None:
    for token in ("", "forged"):
        status, body = await api.post("Company/Detail", {"companyId": "x"}, token=token)
        assert (status, body["code"], body["subCode"]) == (401, 1, 2)


async def test_an_access_token_expires_after_its_calls_and_renews(api: Api) -> None:
    api.sim.faults.expire_tokens_after(2)
    tokens = await api.login()
    root = api.sim.tree.account_id
    assert [(await api.children(root))[0] for _ in range(2)] == [200, 200]
    status, body = await api.children(root)
    assert (status, body["code"], body["subCode"]) == (401, 2, 1)
    status, renewed = await api.post("Token/Renew", {"refreshToken": tokens["refreshToken"]})
    assert status == 200 and renewed["accessToken"] != tokens["accessToken"]
    status, _ = await api.post("Token/Renew", {"refreshToken": tokens["refreshToken"]})
    assert status == 401, "a refresh token is used once"
    assert (await api.children(root, take=1))[0] == 401, "the old token stays expired"
    api.token = renewed["accessToken"]
    assert (await api.children(root))[0] == 200


async def test_calls_and_faults_are_counted(api: Api) -> None:
    root = api.sim.tree.account_id
    api.sim.faults.maintenance(2, endpoint="Company/Children")
    statuses = [(await api.children(root))[0] for _ in range(3)]
    assert statuses == [503, 503, 200]
    assert api.sim.calls["Company/Children"] == 3
    assert api.sim.calls["Token/Get"] == 1
    assert api.sim.faults.fired["maintenance"] == 2
    assert api.sim.faults.pending == 0
    assert api.sim.children_asked[root] == 1, "only answered calls count as asked"


async def test_a_fault_can_wait_for_the_nth_call(api: Api) -> None:
    root = api.sim.tree.account_id
    api.sim.faults.server_error(1, status=502, after=2)
    statuses = [(await api.children(root))[0] for _ in range(4)]
    assert statuses == [200, 200, 502, 200]


async def test_rate_limiting_answers_429_with_retry_after(api: Api) -> None:
    api.sim.faults.rate_limit(1, retry_after=3)
    url = f"{api.sim.url}/api/User/Current"
    async with api.session.get(url, headers={"Authorization": f"Bearer {api.token}"}) as answer:
        assert answer.status == 429
        assert answer.headers["Retry-After"] == "3"
    async with api.session.get(url, headers={"Authorization": f"Bearer {api.token}"}) as answer:
        assert answer.status == 200
        assert (await answer.json())["company"]["companyId"] == api.sim.tree.account_id


async def test_a_user_can_sit_on_the_distributor(api: Api) -> None:
    tree = api.sim.tree
    api.sim.add_user("dist@msp.example", "secret", tree.distributor_id)
    await api.login("dist@msp.example", "secret")
    url = f"{api.sim.url}/api/User/Current"
    async with api.session.get(url, headers={"Authorization": f"Bearer {api.token}"}) as answer:
        body = await answer.json()
    assert body["company"]["type"] == DISTRIBUTOR
    assert body["email"] == "dist@msp.example"
    assert (await api.children(tree.distributor_id))[0] == 200


async def test_the_structural_faults_change_the_listing(api: Api) -> None:
    tree, faults = api.sim.tree, api.sim.faults
    msp = tree.of_type(MSP)[0]["publicId"]
    other = tree.of_type(MSP)[1]["publicId"]
    child = tree.children_of(msp)[0]["publicId"]
    faults.duplicate_company(child, under=other)
    faults.cycle(msp, tree.account_id)
    faults.wrong_parent(tree.children_of(other)[0]["publicId"], msp)
    _, msp_page = await api.children(msp)
    assert msp_page["companies"][-1]["publicId"] == tree.account_id
    assert msp_page["totalCount"] == len(tree.children_of(msp)) + 1
    _, other_page = await api.children(other)
    assert other_page["companies"][0]["parentId"] == msp
    assert other_page["companies"][-1] == {**tree.get(child), "parentId": other}
    faults.clear()
    _, clean = await api.children(msp)
    assert clean["companies"] == tree.children_of(msp)


async def test_a_huge_body_is_streamed_whole_to_whoever_reads_it(api: Api) -> None:
    api.sim.faults.huge_body(3 * 2**20 + 5, endpoint="Company/Children")
    url = f"{api.sim.url}/api/Company/Children"
    body = {"companyId": api.sim.tree.account_id, "skip": 0, "take": 10}
    headers = {"Authorization": f"Bearer {api.token}"}
    async with api.session.post(url, json=body, headers=headers) as answer:
        assert answer.status == 200 and "Content-Length" not in answer.headers
        assert answer.headers["Transfer-Encoding"] == "chunked"
        raw = await answer.read()
    assert len(raw) == api.sim.state.bytes_streamed == 3 * 2**20 + 5
    assert set(json.loads(raw)) == {"padding"}
    assert (await api.children(api.sim.tree.account_id))[0] == 200, "it fired once"


async def test_endless_children_page_made_up_customers_without_end(api: Api) -> None:
    msp = api.sim.tree.of_type(MSP)[0]["publicId"]
    api.sim.faults.endless_children(msp)
    _, first = await api.children(msp, skip=0, take=100)
    _, far = await api.children(msp, skip=10**9, take=3)
    assert first["totalCount"] == far["totalCount"] == 10**12
    assert len(first["companies"]) == 100 and len(far["companies"]) == 3
    made_up = first["companies"] + far["companies"]
    assert {(c["type"], c["parentId"]) for c in made_up} == {(CUSTOMER, msp)}
    assert len({c["publicId"] for c in made_up}) == 103
    assert (await api.children(msp, skip=0, take=100))[1] == first, "pages are stable"


async def test_a_deep_chain_hangs_one_made_up_msp_under_another(api: Api) -> None:
    tree = api.sim.tree
    msp = tree.of_type(MSP)[0]["publicId"]
    api.sim.faults.deep_chain(msp, 3)
    _, page = await api.children(msp)
    assert page["totalCount"] == len(tree.children_of(msp)) + 1
    parent, chain = msp, []
    link = page["companies"][-1]
    while True:
        assert (link["type"], link["parentId"]) == (MSP, parent)
        chain.append(link["name"])
        status, below = await api.children(link["publicId"])
        assert status == 200
        if not below["companies"]:
            break
        parent, (link,) = link["publicId"], below["companies"]
    assert chain == ["Chain MSP 1", "Chain MSP 2", "Chain MSP 3"]


async def test_a_redirect_points_to_the_same_path_elsewhere(api: Api) -> None:
    api.sim.faults.redirect("http://elsewhere.example/", status=302, endpoint="User/Current")
    url = f"{api.sim.url}/api/User/Current"
    headers = {"Authorization": f"Bearer {api.token}"}
    async with api.session.get(url, headers=headers, allow_redirects=False) as answer:
        assert answer.status == 302
        assert answer.headers["Location"] == "http://elsewhere.example/api/User/Current"

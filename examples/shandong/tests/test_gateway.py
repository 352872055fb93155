"""End to end: the gateway with Shandong installed (its in-process sandbox, seeded with
Shandong's people) answers for a Shandong employee and binds one of their relatives."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from gateway.common.auth import mint_token
from gateway.edge.app import create_app
from gateway.ops.config import Settings

from gongji_shandong.adapter import ShandongAdapter
from gongji_shandong.people import roster

PEOPLE = {p["key"]: p for p in roster()["people"]}
ZHANG_WEI, ZHANG_SHAN = PEOPLE["sd_zhang_wei"], PEOPLE["sd_zhang_shan"]


class Gateway:
    def __init__(self, client: httpx.AsyncClient, settings: Settings) -> None:
        self.client, self.settings = client, settings

    async def __call__(
        self, query: str, variables: dict[str, Any] | None = None, *, as_: str | None = None
    ) -> dict[str, Any]:
        headers = {}
        if as_ is not None:
            headers["Authorization"] = f"Bearer {mint_token(as_, self.settings.auth)}"
        response = await self.client.post(
            "/graphql", json={"query": query, "variables": variables or {}}, headers=headers
        )
        assert response.status_code == 200, response.text
        answer: dict[str, Any] = response.json()
        assert "errors" not in answer, answer
        data: dict[str, Any] = answer["data"]
        return data


@pytest.fixture
async def gateway() -> AsyncIterator[Gateway]:
    settings = Settings(data_dir=None)
    app = create_app(settings)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as client,
    ):
        yield Gateway(client, settings)


async def test_shandong_is_among_the_provinces(gateway: Gateway) -> None:
    data = await gateway("{ provinces { code name policy { maxRelatives crossCity } } }")
    shandong = [p for p in data["provinces"] if p["code"] == ShandongAdapter.code]
    assert shandong == [
        {"code": "37", "name": "山东省", "policy": {"maxRelatives": 4, "crossCity": True}}
    ]


def masked(cert_no: str) -> str:
    """An ID number as the gateway shows someone else's: the middle eight digits hidden."""
    return f"{cert_no[:6]}{'*' * 8}{cert_no[-4:]}"


async def test_a_shandong_employee_sees_their_family(gateway: Gateway) -> None:
    data = await gateway(
        "{ me { name province { code } family { relative { name certNo } relation } } }",
        as_=ZHANG_WEI["certNo"],
    )
    me = data["me"]
    assert (me["name"], me["province"]["code"]) == ("张伟", "37")
    family = {m["relative"]["certNo"]: m["relation"] for m in me["family"]}
    assert family == {
        masked(PEOPLE[key]["certNo"]): relation
        for key, relation in [
            ("sd_liu_fang", "SPOUSE"),
            ("sd_zhang_shan", "PARENT"),
            ("sd_wang_xiulan", "PARENT"),
            ("sd_zhang_xiaoyu", "CHILD"),
            ("sd_zhang_xiaolei", "CHILD"),
            ("sd_zhang_min", "SIBLING"),
            ("sd_zhang_feng", "SIBLING"),  # insured in Hebei: on the civil record all the same
            ("sd_liu_changhai", "PARENT_IN_LAW"),
        ]
    }
    names = {m["relative"]["certNo"]: m["relative"]["name"] for m in me["family"]}
    assert names[masked(ZHANG_SHAN["certNo"])] == "张*"  # others' names are masked too


BIND = """mutation($i: BindMutualAidInput!) { bindMutualAid(input: $i) {
    binding { id status relation beneficiary { certNo } } errors { code field } } }"""


async def test_a_shandong_employee_binds_their_father(gateway: Gateway) -> None:
    given = {
        "beneficiaryCertNo": ZHANG_SHAN["certNo"],
        "beneficiaryName": ZHANG_SHAN["name"],
        "relation": "PARENT",
        "commitmentSigned": True,
    }
    payload = (await gateway(BIND, {"i": given}, as_=ZHANG_WEI["certNo"]))["bindMutualAid"]
    assert payload["errors"] == []
    binding = payload["binding"]
    assert binding["id"]
    assert (binding["status"], binding["relation"]) == ("ACTIVE", "PARENT")
    assert binding["beneficiary"]["certNo"] == masked(ZHANG_SHAN["certNo"])

    again = (await gateway(BIND, {"i": given}, as_=ZHANG_WEI["certNo"]))["bindMutualAid"]
    assert again["binding"] is None
    assert [e["code"] for e in again["errors"]] == ["DUPLICATE_BINDING"]


async def test_shandong_requires_the_commitment_letter(gateway: Gateway) -> None:
    sister = PEOPLE["sd_zhang_min"]
    given = {
        "beneficiaryCertNo": sister["certNo"],
        "beneficiaryName": sister["name"],
        "relation": "SIBLING",
        "commitmentSigned": False,
    }
    payload = (await gateway(BIND, {"i": given}, as_=ZHANG_WEI["certNo"]))["bindMutualAid"]
    assert payload["binding"] is None
    assert [e["code"] for e in payload["errors"]] == ["COMMITMENT_REQUIRED"]

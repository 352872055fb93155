"""Policy over time: every province's rules are dated versions; the graph shows the
timeline; the sandbox can be started on another date (`gongji serve --policy-date`), so
that an era can be shown and tested, and production always applies today's."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest

from adapters.base import AdapterSettings, Policy
from gateway.edge.cli import build_parser
from gateway.ops.config import Settings
from sandbox.engine import ProvinceSystem, SandboxRefusal
from sandbox.hebei import SEED as RULES
from tests.conftest import WANG_EIGHT, GraphQL, gateway, person

VERSION = "{ effectiveFrom maxRelatives }"
PROVINCES = f"{{ provinces {{ code policy {VERSION} policies {VERSION} }} }}"
# Hebei announces a tighter cap (illustrative): two relatives from 2030 on.
ANNOUNCED = Policy(effective_from=dt.date(2030, 1, 1), max_relatives=2, cross_city=True)


def hebei_announcing(policy_date: dt.date | None) -> Settings:
    hebei = AdapterSettings(base_url="", extra_policies=(ANNOUNCED,))
    return Settings(data_dir=None, provinces={"hebei": hebei}, policy_date=policy_date)


@pytest.fixture
async def today() -> AsyncIterator[GraphQL]:
    async with gateway({}, hebei_announcing(None)) as gql:
        yield gql


@pytest.fixture
async def in_2030() -> AsyncIterator[GraphQL]:
    async with gateway({}, hebei_announcing(dt.date(2030, 6, 1))) as gql:
        yield gql


def hebei(result: dict[str, object]) -> dict[str, object]:
    provinces = result["data"]["provinces"]  # type: ignore[index]
    (found,) = [p for p in provinces if p["code"] == "13"]  # type: ignore[union-attr]
    return found  # type: ignore[no-any-return]


async def test_the_timeline_lists_past_and_announced_versions_oldest_first(
    today: GraphQL,
) -> None:
    province = hebei(await today(PROVINCES))
    assert province["policies"] == [
        {"effectiveFrom": "2023-01-01", "maxRelatives": 8},
        {"effectiveFrom": "2024-10-01", "maxRelatives": 8},
        {"effectiveFrom": "2026-02-01", "maxRelatives": 8},
        {"effectiveFrom": "2030-01-01", "maxRelatives": 2},
    ]
    assert province["policy"] == {"effectiveFrom": "2026-02-01", "maxRelatives": 8}


async def test_on_a_later_policy_date_the_announced_version_is_in_force(in_2030: GraphQL) -> None:
    province = hebei(await in_2030(PROVINCES))
    assert province["policy"] == {"effectiveFrom": "2030-01-01", "maxRelatives": 2}
    assert len(province["policies"]) == 4  # type: ignore[arg-type]


async def test_the_gateway_judges_by_the_rules_of_the_policy_date(
    today: GraphQL, in_2030: GraphQL
) -> None:
    """A third relative: within today's cap of eight; over the cap of two in 2030, which
    the gateway refuses itself (Hebei's own system, still at eight, is never asked)."""
    for gql in (today, in_2030):
        for relative, relation in WANG_EIGHT[:2]:
            assert (await gql.bind("hb_wang_jianguo", relative, relation))["errors"] == []
    third = WANG_EIGHT[2]
    assert (await today.bind("hb_wang_jianguo", *third))["errors"] == []
    refused = await in_2030.bind("hb_wang_jianguo", *third)
    assert refused["binding"] is None
    assert refused["errors"] == [{"code": "BINDING_LIMIT_REACHED", "field": None}]


def test_production_applies_todays_rules_only() -> None:
    with pytest.raises(ValueError, match="policy_date is for the sandbox"):
        Settings(mode="production", data_dir=None, policy_date=dt.date(2025, 6, 1))


def test_the_policy_date_comes_from_the_command_line_or_the_configuration(
    tmp_path: Path,
) -> None:
    args = build_parser().parse_args(["serve", "--policy-date", "2025-06-01"])
    assert args.policy_date == dt.date(2025, 6, 1)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["serve", "--policy-date", "June 2025"])
    config = tmp_path / "gongji.toml"
    config.write_text("policy_date = 2024-09-01\n", encoding="utf-8")
    assert Settings.load(config, environ={}).policy_date == dt.date(2024, 9, 1)
    assert Settings.load(config, policy_date=dt.date(2026, 2, 1), environ={}).policy_date == (
        dt.date(2026, 2, 1)
    )
    config.write_text('policy_date = "soon"\n', encoding="utf-8")
    with pytest.raises(ValueError, match="YYYY-MM-DD"):
        Settings.load(config, environ={})


async def test_a_sandbox_applies_the_version_of_its_rules_in_force_on_its_policy_date() -> None:
    """A province's own system changes its rules on a date too: siblings from 2030 in this
    made-up version of Hebei's; the sandbox started on a date applies that date's."""
    siblings = replace(
        RULES,
        effective_from=dt.date(2030, 1, 1),
        allowed_relations=RULES.allowed_relations | {"SIBLING"},
    )
    lei, jing = person("hb_wang_lei"), person("hb_wang_jing")
    asked = {
        "authorizer": lei["certNo"],
        "beneficiary": jing["certNo"],
        "beneficiary_name": jing["name"],
        "relation": "SIBLING",
        "commitment_signed": True,
    }
    before = await ProvinceSystem.open((RULES, siblings), policy_date=dt.date(2029, 12, 31))
    try:
        assert before.rules is RULES
        with pytest.raises(SandboxRefusal) as refused:
            await before.bind(**asked)
        assert refused.value.reason == "relation_not_allowed"
    finally:
        await before.close()
    after = await ProvinceSystem.open((RULES, siblings), policy_date=dt.date(2030, 1, 1))
    try:
        assert after.rules is siblings
        bound = await after.bind(**asked)
        assert bound["status"] == "ACTIVE"
    finally:
        await after.close()

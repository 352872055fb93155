"""Near relatives (2024): siblings, grandparents and grandchildren join the relations
mutual aid may cover, in each province from its own (illustrative) date. Before it the
seed-era rules refuse them; the gateway judges by the rules of its policy date, and so
does each province's own system."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator

import pytest

from gateway.ops.config import Settings
from gateway.provinces.federated import sandbox_factory
from tests.conftest import GraphQL, Recording, Sandboxes, gateway, person
from tests.test_family import aid, family

# A sibling each province's roster family can bind, and the day its near-relatives
# version takes effect (the adapters' and the sandboxes' declared dates agree).
SIBLINGS = {
    "hebei": ("hb_wang_lei", "hb_wang_jing", dt.date(2024, 10, 1)),
    "jiangsu": ("js_chen_zhiqiang", "js_chen_zhihong", dt.date(2024, 9, 1)),
    "henan": ("hn_zhao_lei", "hn_zhao_xin", dt.date(2025, 1, 1)),
}
SEED_ERA = dt.date(2024, 6, 1)  # before every province's date
NEAR_ERA = dt.date(2025, 6, 1)  # after every province's date


def on(day: dt.date) -> Settings:
    return Settings(data_dir=None, policy_date=day)


@pytest.fixture
async def seed_era() -> AsyncIterator[GraphQL]:
    async with gateway({}, on(SEED_ERA)) as gql:
        yield gql


@pytest.fixture
async def near_era() -> AsyncIterator[GraphQL]:
    async with gateway({}, on(NEAR_ERA)) as gql:
        yield gql


@pytest.mark.parametrize("province", sorted(SIBLINGS))
async def test_a_sibling_is_refused_the_day_before_the_provinces_date_and_bound_on_it(
    province: str,
) -> None:
    authorizer, sibling, effective = SIBLINGS[province]
    async with gateway({}, on(effective - dt.timedelta(days=1))) as before:
        refused = await before.bind(authorizer, sibling, "SIBLING")
    assert refused == {
        "binding": None,
        "errors": [{"code": "RELATION_NOT_ALLOWED", "field": "relation"}],
        "dryRun": False,
        "expectedStatus": None,
    }
    async with gateway({}, on(effective)) as after:
        bound = await after.bind(authorizer, sibling, "SIBLING")
    assert bound["errors"] == []
    assert bound["binding"]["status"] == "ACTIVE"


async def test_the_timeline_shows_each_provinces_near_relatives_version(
    seed_era: GraphQL,
) -> None:
    result = await seed_era(
        "{ provinces { code policy { effectiveFrom allowedRelations }"
        " policies { effectiveFrom allowedRelations } } }"
    )
    by_code = {p["code"]: p for p in result["data"]["provinces"]}
    codes = {"hebei": "13", "jiangsu": "32", "henan": "41"}
    for name, (_, _, effective) in SIBLINGS.items():
        province = by_code[codes[name]]
        assert province["policy"]["allowedRelations"] == ["SPOUSE", "PARENT", "CHILD"]
        near = [p for p in province["policies"] if p["effectiveFrom"] == effective.isoformat()]
        assert [p["allowedRelations"] for p in near] == [
            ["SPOUSE", "PARENT", "CHILD", "SIBLING", "GRANDPARENT", "GRANDCHILD"]
        ]


async def test_a_grandparent_in_another_city_is_bound_and_verified_against_the_civil_record(
    seed_era: GraphQL, near_era: GraphQL
) -> None:
    """王磊's grandfather 王德明 is insured in Baoding: cross-city is fine in Hebei."""
    old = await seed_era.bind("hb_wang_lei", "hb_wang_deming", "GRANDPARENT")
    assert old["errors"] == [{"code": "RELATION_NOT_ALLOWED", "field": "relation"}]
    wrong = await near_era.bind("hb_wang_lei", "hb_wang_deming", "PARENT")
    assert wrong["errors"] == [{"code": "RELATION_NOT_VERIFIED", "field": "relation"}]
    bound = await near_era.bind("hb_wang_lei", "hb_wang_deming", "GRANDPARENT")
    assert bound["errors"] == []
    assert bound["binding"]["status"] == "ACTIVE"


async def test_the_gateway_refuses_a_sibling_by_its_own_dates_rules() -> None:
    """The provinces' own systems are in the near-relatives era (today); the gateway,
    started on a seed-era date, refuses before asking any of them."""
    async with Sandboxes() as boxes:
        await boxes.start()
        async with gateway(dict(boxes.transports), on(SEED_ERA)) as gql:
            for authorizer, sibling, _ in SIBLINGS.values():
                refused = await gql.bind(authorizer, sibling, "SIBLING")
                assert refused["errors"] == [{"code": "RELATION_NOT_ALLOWED", "field": "relation"}]
        for name, (authorizer, sibling, _) in SIBLINGS.items():
            system = boxes.transports[name].inner.app.state.system  # type: ignore[attr-defined]
            assert (
                await system.count_bindings(person(authorizer)["certNo"], person(sibling)["certNo"])
                == 0
            )


@pytest.mark.parametrize("province", sorted(SIBLINGS))
async def test_each_provinces_own_system_refuses_a_sibling_before_its_date(province: str) -> None:
    """The gateway in the near-relatives era; the province's system still on the seed
    era's rules: its refusal, in its dialect, comes back as the same code."""
    authorizer, sibling, _ = SIBLINGS[province]
    app = sandbox_factory(province)(data_dir=None, policy_date=SEED_ERA)
    async with app.router.lifespan_context(app):
        transport = Recording(app)
        async with gateway({province: transport}, on(NEAR_ERA)) as gql:
            refused = await gql.bind(authorizer, sibling, "SIBLING")
        assert (
            await app.state.system.count_bindings(
                person(authorizer)["certNo"], person(sibling)["certNo"]
            )
            == 0
        )
    assert refused["binding"] is None
    assert refused["errors"] == [{"code": "RELATION_NOT_ALLOWED", "field": "relation"}]


async def test_the_family_screen_knows_siblings_and_grandparents(
    seed_era: GraphQL, near_era: GraphQL
) -> None:
    old = await family(seed_era, "hb_wang_lei")
    new = await family(near_era, "hb_wang_lei")
    near = {
        "hb_wang_jing": "SIBLING",
        "hb_wang_deming": "GRANDPARENT",  # his father's father
        "hb_li_fu": "GRANDPARENT",  # his mother's father: grandparents on both sides
    }
    for relative, relation in near.items():
        assert old[relative]["relation"] == new[relative]["relation"] == relation
        assert aid(old[relative]) == ("NOT_POSSIBLE", "RELATION_NOT_ALLOWED")
        assert aid(new[relative]) == ("CAN_BIND", None)
    father = await family(near_era, "hb_wang_jianguo")  # 李福 is his father-in-law
    assert aid(father["hb_li_fu"]) == ("NOT_POSSIBLE", "RELATION_NOT_ALLOWED")

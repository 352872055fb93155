"""A binding across provinces ends by itself when either person's registration moves
to another province or ends: the province's back office moves it, its change feed says
so, and the gateway, following every feed, ends the binding, returns the quota and
records why."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from decimal import Decimal

import httpx
import pytest

from gateway.edge.app import create_app
from gateway.ops.config import Resilience, Settings
from tests.conftest import GraphQL, Provinces, person
from tests.test_across_settlement import MOTHER, SON, World, world  # noqa: F401
from tests.test_kill import until

RECORDS = """{ me { authorizationRecords(first: 10) { edges { node { event } } } } }"""
BINDINGS = """{ me { mutualAidBindings { asAuthorizer { status quota { remaining } } } } }"""


async def events(world: World, who: str) -> list[str]:  # noqa: F811
    result = await world.gql(RECORDS, as_=who)
    return [e["node"]["event"] for e in result["data"]["me"]["authorizationRecords"]["edges"]]


async def test_the_relative_moving_away_ends_the_binding_and_the_quota_returns(
    world: World,  # noqa: F811
) -> None:
    await world.bind(SON, MOTHER, "PARENT", "1000.00")
    bill = await world.settle("jiangsu", MOTHER, "400.00", "100.00", "js-bill-1")
    assert bill["settlement"]["mutualAidPaid"] == "300.00"
    assert await world.balance("hebei", SON) == Decimal("1500.00")

    # Jiangsu's back office moves her registration to Henan
    await world.system("jiangsu").move_registration(person(MOTHER)["certNo"], to_province="41")
    registrations = world.app.state.registrations
    assert await registrations.follow_once() == 1
    [row] = await world.system("hebei").bindings_of([person(SON)["certNo"]])
    assert (row["status"], row["quota_remaining"]) == ("UNBOUND", "0.00")
    assert await world.balance("hebei", SON) == Decimal("2200.00")  # the 700.00 left came back
    assert await events(world, SON) == ["ENDED", "CREATED"]  # newest first: why it ended

    assert await registrations.follow_once() == 0  # read once: nothing ends twice
    assert await world.balance("hebei", SON) == Decimal("2200.00")
    # both are told it ended (neither ended it: a subscription's event), once each
    told = world.app.state.services.events
    for who in (SON, MOTHER):
        heard = await told.after(person(who)["certNo"], 0)
        [ended] = [e for e in heard if e.kind.value == "BINDING_ENDED"]
        assert ended.body["status"] == "UNBOUND"
    [paid] = [
        e for e in await told.after(person(SON)["certNo"], 0) if e.kind.value != "BINDING_ENDED"
    ]
    assert (paid.kind.value, paid.body["amount"]) == ("PAID_FOR_RELATIVE", "300.00")


async def test_the_authorizers_registration_ending_ends_it_too(world: World) -> None:  # noqa: F811
    await world.bind("js_huang_wei", "hn_huang_jianhua", "PARENT", "500.00")
    await world.bind("hn_huang_li", "hn_huang_jianhua", "PARENT", None)  # inside Henan
    await world.system("jiangsu").move_registration(
        person("js_huang_wei")["certNo"], to_province=None
    )
    assert await world.app.state.registrations.follow_once() == 1
    [row] = await world.system("jiangsu").bindings_of([person("js_huang_wei")["certNo"]])
    assert row["status"] == "UNBOUND"
    assert await world.balance("jiangsu", "js_huang_wei") == Decimal("2000.00")
    # a binding inside a province is that province's own business: it stays
    [kept] = await world.system("henan").bindings_of([person("hn_huang_li")["certNo"]])
    assert kept["status"] == "ACTIVE"


@pytest.fixture
async def following(provinces: Provinces) -> AsyncIterator[World]:
    """The gateway with its feeds followed every 50 ms (the configured interval)."""
    settings = Settings(data_dir=None, resilience=Resilience(registration_interval=0.05))
    app = create_app(settings, transports=dict(provinces.switches))
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as client,
    ):
        yield World(app, GraphQL(client, settings.auth), provinces)


async def test_the_gateway_notices_within_its_interval(following: World) -> None:
    await following.bind(SON, MOTHER, "PARENT", "1000.00")
    await following.system("jiangsu").move_registration(person(MOTHER)["certNo"], to_province=None)

    async def ended() -> bool:
        found = (await following.gql(BINDINGS, as_=SON))["data"]["me"]["mutualAidBindings"]
        return bool(found["asAuthorizer"][0]["status"] == "UNBOUND")

    await until(ended, "the binding ended by the follower", within=5, every=0.05)
    assert await following.balance("hebei", SON) == Decimal("2500.00")


async def test_a_feed_that_cannot_be_read_is_read_next_time(world: World) -> None:  # noqa: F811
    await world.bind(SON, MOTHER, "PARENT", "1000.00")
    await world.system("jiangsu").move_registration(person(MOTHER)["certNo"], to_province=None)
    jiangsu = world.provinces.switches["jiangsu"]
    jiangsu.mode = "down"
    registrations = world.app.state.registrations
    assert await registrations.follow_once() == 0  # the others are read all the same
    jiangsu.mode = "ok"
    assert await registrations.follow_once() == 1
    assert await world.balance("hebei", SON) == Decimal("2500.00")


async def test_a_binding_the_holder_cannot_be_reached_for_is_ended_once_it_can(
    world: World,  # noqa: F811
) -> None:
    await world.bind(SON, MOTHER, "PARENT", "1000.00")
    await world.system("jiangsu").move_registration(person(MOTHER)["certNo"], to_province=None)
    hebei = world.provinces.switches["hebei"]
    hebei.only = lambda request: json.loads(request.content or b"{}").get("infno") == "2704"
    hebei.mode = "lose"  # the unbind is done; its answer is lost
    assert await world.app.state.registrations.follow_once() == 1  # submitted: recorded
    hebei.mode = "ok"
    assert await world.app.state.registrations.follow_once() == 0
    [row] = await world.system("hebei").bindings_of([person(SON)["certNo"]])
    assert row["status"] == "UNBOUND"
    assert await world.balance("hebei", SON) == Decimal("2500.00")

"""The gateway around the provinces: faults, caching, fan-out, auth, schema."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette

from adapters.base import AdapterSettings, china_date, policy_in_force
from gateway.common.auth import mint_token
from gateway.edge.app import create_app
from gateway.graph.schema import schema
from gateway.ops.config import AuthSettings, Settings
from gateway.provinces.federated import adapter_classes
from tests.conftest import (
    NOWHERE,
    ROOT,
    GraphQL,
    Recording,
    Sandboxes,
    gateway,
    person,
    province_codes,
)
from tests.stores import opened_store

ME = "{ me { name insuredArea { code } account { balance } } }"


def failing(make: Callable[[httpx.Request], httpx.Response]) -> httpx.MockTransport:
    return httpx.MockTransport(make)


def raising(exc: Exception) -> httpx.MockTransport:
    def handler(request: httpx.Request) -> httpx.Response:
        raise exc

    return httpx.MockTransport(handler)


@pytest.mark.parametrize(
    ("transport", "code"),
    [
        (
            failing(lambda r: httpx.Response(500, text="Traceback: SELECT * FROM x")),
            "UPSTREAM_UNAVAILABLE",
        ),
        (raising(httpx.ConnectError("refused 10.0.0.7:8443")), "UPSTREAM_UNAVAILABLE"),
        (raising(httpx.ReadTimeout("read timed out")), "UPSTREAM_TIMEOUT"),
        (
            failing(lambda r: httpx.Response(200, text="<html>proxy login</html>")),
            "UPSTREAM_CONTRACT_ERROR",
        ),
    ],
)
async def test_a_failing_province_is_a_coded_error_that_leaks_nothing(
    transport: httpx.AsyncBaseTransport, code: str
) -> None:
    transports = dict.fromkeys(adapter_classes(), transport)
    async with gateway(transports) as gql:
        result = await gql(ME, as_="hn_zhao_lei")
    (error,) = result["errors"]
    assert error["extensions"]["code"] == code
    assert error["extensions"]["province"] in province_codes()
    assert error["path"] == ["me"]
    text = str(result)
    for leak in ("Traceback", "SELECT", "10.0.0.7", "http", "html", "proxy"):
        assert leak not in text


async def test_a_province_that_is_down_does_not_stop_the_others() -> None:
    boxes = Sandboxes()
    async with boxes:
        await boxes.start()
        transports: dict[str, httpx.AsyncBaseTransport] = dict(boxes.transports)
        transports["henan"] = failing(lambda r: httpx.Response(503))
        async with gateway(transports) as gql:
            hebei = await gql(ME, as_="hb_wang_jianguo")
            henan = await gql(ME, as_="hn_zhao_lei")
            provinces = await gql("{ provinces { code } }")
    assert hebei == {
        "data": {
            "me": {
                "name": "王建国",
                "insuredArea": {"code": "130100"},
                "account": {"balance": "3200.00"},
            }
        }
    }
    assert henan["errors"][0]["extensions"] == {
        "code": "UPSTREAM_UNAVAILABLE",
        "province": "41",
        "requestId": henan["errors"][0]["extensions"]["requestId"],
    }
    assert [p["code"] for p in provinces["data"]["provinces"]] == sorted(province_codes())


async def test_an_internal_fault_is_masked_with_a_request_id(
    caplog: pytest.LogCaptureFixture,
) -> None:
    transports = {
        name: raising(RuntimeError("no such table: person_secret")) for name in adapter_classes()
    }
    async with gateway(transports) as gql:
        result = await gql(ME, as_="hb_wang_jianguo", lang="en")
    (error,) = result["errors"]
    assert error["message"] == "Something went wrong on our side."
    assert error["extensions"]["code"] == "INTERNAL_ERROR"
    assert "person_secret" not in str(result)
    assert error["extensions"]["requestId"] in caplog.text
    assert "130102197603150016" not in caplog.text


async def test_the_province_of_a_person_is_asked_of_all_then_remembered() -> None:
    boxes = Sandboxes()
    async with boxes:
        await boxes.start()
        async with gateway(dict(boxes.transports)) as gql:
            await gql(ME, as_="js_chen_zhiqiang")
            first = boxes.calls
            await gql(ME, as_="js_chen_zhiqiang")
            second = boxes.calls - first
    assert set(boxes.transports) >= {"hebei", "jiangsu", "henan"}
    assert first == len(adapter_classes())  # one question to each province
    assert second == 1  # the second time only Jiangsu is asked
    assert boxes.transports["jiangsu"].calls == 2


async def test_provinces_are_asked_concurrently_not_one_after_another() -> None:
    boxes = Sandboxes()
    overlap = 0

    class Overlap(httpx.AsyncBaseTransport):
        def __init__(self, inner: Recording) -> None:
            self.inner = inner

        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            nonlocal overlap
            overlap = max(overlap, sum(t.in_flight for t in boxes.transports.values()) + 1)
            return await self.inner.handle_async_request(request)

    async with boxes:
        await boxes.start(delay=0.02)
        transports = {n: Overlap(t) for n, t in boxes.transports.items()}
        async with gateway(dict(transports)) as gql:
            await gql(ME, as_="hb_wang_jianguo")
    assert len(boxes.transports) >= 3  # hebei, jiangsu, henan, and any other installed
    assert overlap == len(boxes.transports)


@pytest.mark.parametrize(
    "stale",
    ["41", "99"],
    ids=["they-moved-to-another-province", "their-province-was-left-out"],
)
async def test_a_wrongly_remembered_province_is_corrected_by_looking_again(
    tmp_path: Path, stale: str
) -> None:
    boxes = Sandboxes()
    async with boxes:
        await boxes.start()
        settings = Settings(data_dir=tmp_path)
        async with gateway(dict(boxes.transports), settings) as gql:
            await gql(ME, as_="hb_wang_jianguo")
        async with opened_store(settings) as store, store.transaction() as db:
            await db.execute("UPDATE person_location SET province = ?", (stale,))
        async with gateway(dict(boxes.transports), settings) as gql:
            result = await gql(ME, as_="hb_wang_jianguo")
    assert result["data"]["me"]["name"] == "王建国"


@pytest.mark.parametrize(
    "token",
    [
        None,
        "not-a-jwt",
        mint_token("130102197603150016", AuthSettings(secret="x" * 40)),
        mint_token("130102197603150016", AuthSettings(), now=0),
        mint_token("130102197603150016", AuthSettings(audience="someone-else")),
    ],
    ids=["none", "garbage", "other-secret", "expired", "other-audience"],
)
async def test_without_a_valid_token_nothing_personal_is_answered(
    gql: GraphQL, token: str | None
) -> None:
    result = await gql(ME, token=token)
    assert result["data"] == {"me": None}
    assert result["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"


def test_the_person_insured_nowhere_is_in_no_installed_province_s_areas() -> None:
    from gateway.provinces.federated import adapter_classes

    area = person(NOWHERE)["insuredArea"]
    assert not any(area.startswith(cls.code) for cls in adapter_classes().values())


async def test_the_caller_insured_nowhere_federated_has_no_me(gql: GraphQL) -> None:
    assert await gql(ME, as_=NOWHERE) == {"data": {"me": None}}


async def test_the_health_check_and_the_playground_answer(app: Starlette) -> None:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as c:
        assert (await c.get("/healthz")).json() == {"status": "ok"}
        page = await c.get("/graphql", headers={"Accept": "text/html"})
        assert page.status_code == 200
        assert "graphiql" in page.text.lower()


def test_schema_graphql_is_exported_from_the_code() -> None:
    exported = (ROOT / "schema.graphql").read_text(encoding="utf-8")
    assert exported == schema.as_str() + "\n", (
        "run: .venv/bin/gongji export-schema --output schema.graphql"
    )


async def test_the_caller_sees_themself_unmasked_and_others_masked(gql: GraphQL) -> None:
    wife = person("hb_li_xiuying")
    result = await gql(
        """mutation($i: BindMutualAidInput!) { bindMutualAid(input: $i) {
             binding { authorizer { name certNo } beneficiary { name certNo } } } }""",
        {
            "i": {
                "beneficiaryCertNo": wife["certNo"],
                "beneficiaryName": wife["name"],
                "relation": "SPOUSE",
            }
        },
        as_="hb_wang_jianguo",
    )
    binding = result["data"]["bindMutualAid"]["binding"]
    assert binding["authorizer"] == {"name": "王建国", "certNo": "130102197603150016"}
    assert binding["beneficiary"] == {"name": "李*英", "certNo": "130102********0029"}


async def test_a_persons_page_asks_their_province_once_per_kind_of_fact() -> None:
    boxes = Sandboxes()
    async with boxes:
        await boxes.start()
        async with gateway(dict(boxes.transports)) as gql:
            await gql(ME, as_="hb_wang_jianguo")  # the province is now remembered
            before = {name: t.calls for name, t in boxes.transports.items()}
            result = await gql(
                "{ me { name account { balance } mutualAidBindings { asAuthorizer { id } } } }",
                as_="hb_wang_jianguo",
            )
    assert "errors" not in result
    asked = {name: t.calls - before[name] for name, t in boxes.transports.items()}
    # Hebei: who they are, and their bindings; every other province that binds across
    # provinces (all, today) once, for the bindings its employees hold with them
    assert {name: asked[name] for name in ("hebei", "jiangsu", "henan")} == {
        "hebei": 2,
        "jiangsu": 1,
        "henan": 1,
    }
    across = {
        name
        for name, cls in adapter_classes().items()
        if policy_in_force(cls.policies, china_date()).cross_province
    }
    assert asked == {
        name: 2 if name == "hebei" else int(name in across) for name in adapter_classes()
    }


async def test_configuration_can_leave_an_installed_province_out(tmp_path: Path) -> None:
    config = tmp_path / "gongji.toml"
    config.write_text("[provinces.jiangsu]\nenabled = false\n", encoding="utf-8")
    settings = dataclasses.replace(Settings.load(config, environ={}), data_dir=None)
    async with gateway({}, settings) as gql:
        provinces = await gql("{ provinces { code } }")
        jiangsu_person = await gql(ME, as_="js_chen_zhiqiang")
    assert [p["code"] for p in provinces["data"]["provinces"]] == sorted(province_codes() - {"32"})
    assert {"13", "41"} <= province_codes()
    assert jiangsu_person == {"data": {"me": None}}


async def test_a_province_that_trickles_its_answer_hits_the_whole_request_deadline() -> None:
    async def trickle(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(5)
        return httpx.Response(200)

    slow = httpx.MockTransport(trickle)
    settings = Settings(
        data_dir=None, provinces={"hebei": AdapterSettings(base_url="http://hb", timeout=0.05)}
    )
    boxes = Sandboxes()
    async with boxes:
        await boxes.start()
        transports: dict[str, httpx.AsyncBaseTransport] = {**boxes.transports, "hebei": slow}
        async with gateway(transports, settings) as gql:
            result = await gql(ME, as_="hb_wang_jianguo")
    assert result["errors"][0]["extensions"]["code"] == "UPSTREAM_TIMEOUT"
    assert result["errors"][0]["extensions"]["province"] == "13"


async def test_an_outage_does_not_make_the_gateway_forget_where_people_are(tmp_path: Path) -> None:
    boxes = Sandboxes()
    async with boxes:
        await boxes.start()
        settings = Settings(data_dir=tmp_path)
        async with gateway(dict(boxes.transports), settings) as gql:
            await gql(ME, as_="hb_wang_jianguo")
        down: dict[str, httpx.AsyncBaseTransport] = {
            **boxes.transports,
            "hebei": failing(lambda r: httpx.Response(503)),
        }
        async with gateway(down, settings) as gql:
            during = await gql(ME, as_="hb_wang_jianguo")
        async with gateway(dict(boxes.transports), settings) as gql:
            before = boxes.calls
            after = await gql(ME, as_="hb_wang_jianguo")
    assert during["errors"][0]["extensions"]["code"] == "UPSTREAM_UNAVAILABLE"
    assert after["data"]["me"]["name"] == "王建国"
    assert boxes.calls - before == 1  # still remembered: only Hebei is asked


@pytest.mark.parametrize(
    ("overrides", "complaint"),
    [
        ({"effective_from": "2099-01-01"}, "no policy in force"),
        ({"spouse_confirmation": True}, "does not implement respond"),
    ],
)
async def test_the_gateway_refuses_to_start_with_rules_that_cannot_work(
    overrides: dict[str, object], complaint: str
) -> None:
    settings = Settings(
        data_dir=None,
        provinces={"hebei": AdapterSettings(base_url="", policy_overrides=overrides)},
    )
    app = create_app(settings)
    with pytest.raises(ValueError, match=complaint):
        async with app.router.lifespan_context(app):
            pass


@pytest.mark.sqlite
async def test_a_store_that_is_not_a_database_fails_at_once(tmp_path: Path) -> None:
    (tmp_path / "gateway.sqlite3").write_bytes(b"this is not sqlite" * 100)
    app = create_app(Settings(data_dir=tmp_path))
    with pytest.raises(Exception, match="not a database"):
        async with app.router.lifespan_context(app):
            pass


async def test_metrics_count_operations_and_each_provinces_requests(
    gql: GraphQL,
) -> None:
    assert "errors" not in await gql(ME, as_="hb_wang_jianguo")
    assert (await gql("{ me { name } }"))["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    text = (await gql.client.get("/metrics")).text
    assert 'gongji_graphql_requests_total{operation="query",outcome="ok"} 1.0' in text
    assert 'gongji_graphql_requests_total{operation="query",outcome="UNAUTHENTICATED"} 1.0' in text
    assert 'gongji_upstream_requests_total{outcome="2xx",province="13"}' in text
    assert "gongji_upstream_request_seconds_bucket" in text
    assert "130102" not in text  # no personal data in any label

"""Resilience through the ASGI app: partial answers, the breaker, and writes that are
never lost or doubled (the outbox and its reconciler), with roster people.

Each province's sandbox runs in memory behind a `Switch` (the `provinces` fixture of
tests/conftest.py), a transport the test turns to refuse connections, answer 503,
hang, garble, or lose the answer of a request the province did carry out.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import json
from collections.abc import AsyncIterator, Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from adapters.base import AdapterSettings, Guard
from adapters.henan import HenanAdapter
from bench.dashboard import QUERY as DASHBOARD
from gateway.edge.app import create_app
from gateway.graph.context import Services
from gateway.ops.config import Caching, Resilience, Settings
from gateway.state.outbox import Reconciler
from tests.conftest import GraphQL, Provinces, person

NAMES = {"13": "hebei", "32": "jiangsu", "41": "henan"}

FAMILY = """{ me { family {
  relative { name } relation insuredArea { code } province { code }
  insurance { status } mutualAid { verdict { state } } kinship { verdict { state } }
} } }"""

BIND = """mutation($i: BindMutualAidInput!) { bindMutualAid(input: $i) {
  binding { id status } errors { code field } status idempotencyKey } }"""


# Hebei's writes, by their transaction number (the tests that lose answers use Hebei)
HEBEI_WRITES = ("2703", "2704", "2207", "2208")


def hebei_write(request: httpx.Request) -> bool:
    return json.loads(request.content).get("infno") in HEBEI_WRITES


def fast(data_dir: Path | None = None, **province: Any) -> Settings:
    """Settings with quick retries and a quick breaker, and no reconciler passes
    unless a test asks for one."""
    conf = {
        "base_url": "",
        "retries": 1,
        "retry_wait": 0.01,
        "retry_wait_max": 0.02,
        "timeout": 2.0,
        **province,
    }
    return Settings(
        data_dir=data_dir,
        provinces={name: AdapterSettings(**conf) for name in NAMES.values()},
        resilience=Resilience(reconcile_interval=3600, pending_after=3600),
    )


@contextlib.asynccontextmanager
async def running(
    provinces: Provinces, settings: Settings
) -> AsyncIterator[tuple[GraphQL, Starlette]]:
    app = create_app(settings, transports=dict(provinces.switches))
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as client,
    ):
        yield GraphQL(client, settings.auth), app


def services(app: Starlette) -> Services:
    found: Services = app.state.services
    return found


def bind_input(relative: str, relation: str, **extra: Any) -> dict[str, Any]:
    return {
        "beneficiaryCertNo": person(relative)["certNo"],
        "beneficiaryName": person(relative)["name"],
        "relation": relation,
        "commitmentSigned": True,
        **extra,
    }


@contextlib.asynccontextmanager
async def henan_behind(
    province: Callable[[httpx.Request], Any], guard: Guard
) -> AsyncIterator[HenanAdapter]:
    """The Henan adapter with ``guard``, talking to ``province`` (a mock handler)."""
    async with httpx.AsyncClient(
        transport=httpx.MockTransport(province), base_url="http://henan"
    ) as client:
        yield HenanAdapter(client, guard=guard)


def errors_by_path(result: dict[str, Any]) -> dict[tuple[Any, ...], dict[str, Any]]:
    return {tuple(e["path"]): e["extensions"] for e in result.get("errors", [])}


# -- reads: partial answers ------------------------------------------------------------------


async def test_a_down_province_takes_only_its_part_of_the_family_screen(
    provinces: Provinces,
) -> None:
    """刘洋 (Hebei) has his daughter in Hebei and his mother insured in Nanjing: with
    Jiangsu down, the daughter is answered whole; the mother keeps her name and relation,
    and each field that needed Jiangsu is an error on exactly its path."""
    provinces.switches["jiangsu"].mode = "refuse"
    async with running(provinces, fast()) as (gql, _):
        result = await gql(FAMILY, as_="hb_liu_yang")
    members = result["data"]["me"]["family"]
    by_name = {m["relative"]["name"][:1]: (i, m) for i, m in enumerate(members)}
    i, mother = by_name["张"]
    _, daughter = by_name["刘"]
    assert daughter["insurance"] == {"status": "ACTIVE"}
    assert daughter["province"] == {"code": "13"}
    assert daughter["mutualAid"]["verdict"]["state"] is not None
    assert mother["relation"] == "PARENT"
    for name in ("insuredArea", "province", "insurance", "mutualAid", "kinship"):
        assert mother[name] is None
    failed = errors_by_path(result)
    assert set(failed) == {
        ("me", "family", i, name)
        for name in ("insuredArea", "province", "insurance", "mutualAid", "kinship")
    }
    assert {(e["code"], e["province"]) for e in failed.values()} == {("UPSTREAM_UNAVAILABLE", "32")}
    assert all("connection" not in e.get("message", "") for e in result["errors"])


async def test_a_hanging_province_does_not_hold_up_answers_that_do_not_need_it(
    provinces: Provinces,
) -> None:
    """Someone not yet remembered is looked for in every province at once; once their
    own answers, a province that hangs is not waited for (its request is cancelled)."""
    provinces.switches["jiangsu"].mode = "hang"
    async with running(provinces, fast(timeout=30.0)) as (gql, _):
        async with asyncio.timeout(10):  # far below the province's 30 s timeout
            result = await gql("{ me { name insurance { status } } }", as_="hb_wang_jianguo")
        assert result == {"data": {"me": {"name": "王建国", "insurance": {"status": "ACTIVE"}}}}
        assert provinces.switches["jiangsu"].calls == 1
        scraped = (await gql.client.get("/metrics")).text
    assert 'gongji_upstream_requests_total{outcome="cancelled",province="32"} 1.0' in scraped


async def test_a_garbled_answer_is_a_contract_error_for_that_province_only(
    provinces: Provinces,
) -> None:
    provinces.switches["henan"].mode = "garble"
    async with running(provinces, fast()) as (gql, _):
        henan = await gql("{ me { name } }", as_="hn_zhao_lei")
        hebei = await gql("{ me { name } }", as_="hb_wang_jianguo")
    assert henan["data"] == {"me": None}
    assert [
        (e["path"], e["extensions"]["code"], e["extensions"]["province"]) for e in henan["errors"]
    ] == [(["me"], "UPSTREAM_CONTRACT_ERROR", "41")]
    assert hebei == {"data": {"me": {"name": "王建国"}}}


async def test_reads_are_retried_and_the_breaker_opens_then_probes_and_closes(
    provinces: Provinces,
) -> None:
    switch = provinces.switches["henan"]
    settings = fast(breaker_threshold=2, breaker_reset=0.3)
    async with running(provinces, settings) as (gql, app):
        adapter = services(app).provinces["41"]
        switch.mode = "down"
        first = await gql("{ me { name } }", as_="hn_zhao_lei")
        assert first["errors"][0]["extensions"]["code"] == "UPSTREAM_UNAVAILABLE"
        assert switch.calls == 2  # the read was tried again once, then the breaker opened
        assert adapter.breaker_state.value == "OPEN"

        held = await gql("{ me { name } }", as_="hn_zhao_lei")
        assert held["errors"][0]["extensions"] == {
            "code": "CIRCUIT_OPEN",
            "province": "41",
            "requestId": held["errors"][0]["extensions"]["requestId"],
        }
        assert switch.calls == 2  # nothing was sent
        ready = (await gql.client.get("/readyz")).json()
        assert ready["status"] == "ready"  # the other provinces are still served
        assert ready["provinces"]["41"]["breaker"] == "OPEN"
        assert ready["provinces"]["13"]["breaker"] == "CLOSED"
        scraped = (await gql.client.get("/metrics")).text
        assert 'gongji_upstream_breaker_state{province="41",state="OPEN"} 1.0' in scraped

        await asyncio.sleep(0.35)
        assert adapter.breaker_state.value == "HALF_OPEN"
        switch.mode = "ok"
        probe = await gql("{ me { name } }", as_="hn_zhao_lei")
        assert probe == {"data": {"me": {"name": "赵磊"}}}
        assert adapter.breaker_state.value == "CLOSED"


async def test_readiness_reports_the_store_and_every_breaker(provinces: Provinces) -> None:
    async with running(provinces, fast()) as (gql, _):
        alive = await gql.client.get("/healthz")
        ready = await gql.client.get("/readyz")
    assert alive.json() == {"status": "ok"}
    assert ready.status_code == 200
    from gateway.provinces.federated import adapter_classes

    assert ready.json() == {
        "status": "ready",
        "store": "ok",
        "provinces": {  # every installed province, by its code
            cls.code: {"name": cls.name, "breaker": "CLOSED"} for cls in adapter_classes().values()
        },
    }
    assert ready.json()["provinces"]["13"] == {"name": "河北省", "breaker": "CLOSED"}


async def test_readiness_fails_when_the_store_takes_no_writes(provinces: Provinces) -> None:
    async with running(provinces, fast()) as (gql, app):
        store = services(app).store

        async def broken() -> None:
            raise OSError("disk full")

        store.check_writable = broken  # type: ignore[method-assign]
        ready = await gql.client.get("/readyz")
    assert ready.status_code == 503
    assert ready.json()["store"] == "failing"


# -- writes: idempotency keys ----------------------------------------------------------------


async def test_a_repeated_key_returns_the_first_outcome_and_binds_once(
    provinces: Provinces,
) -> None:
    async with running(provinces, fast()) as (gql, _):
        given = bind_input("hb_li_xiuying", "SPOUSE", idempotencyKey="bind-li-1")
        first = (await gql(BIND, {"i": given}, as_="hb_wang_jianguo"))["data"]["bindMutualAid"]
        again = (await gql(BIND, {"i": given}, as_="hb_wang_jianguo"))["data"]["bindMutualAid"]
        other = (
            await gql(
                BIND,
                {"i": bind_input("hb_wang_lei", "CHILD", idempotencyKey="bind-li-1")},
                as_="hb_wang_jianguo",
            )
        )["data"]["bindMutualAid"]
        fresh = (await gql(BIND, {"i": bind_input("hb_wang_lei", "CHILD")}, as_="hb_wang_jianguo"))[
            "data"
        ]["bindMutualAid"]
    assert first["status"] == "DONE"
    assert first["binding"]["status"] == "ACTIVE"
    assert again == first  # not DUPLICATE_BINDING: the same request, answered the same
    assert other["errors"] == [{"code": "IDEMPOTENCY_KEY_REUSED", "field": "idempotencyKey"}]
    assert fresh["status"] == "DONE"
    assert len(fresh["idempotencyKey"]) == 32  # made for it
    bound = await provinces.bindings("hebei", "hb_li_xiuying")
    assert len(bound) == 1


async def test_keys_are_checked_and_scoped_to_the_caller(provinces: Provinces) -> None:
    async with running(provinces, fast()) as (gql, _):
        bad = await gql(
            BIND,
            {"i": bind_input("hb_li_xiuying", "SPOUSE", idempotencyKey="has space")},
            as_="hb_wang_jianguo",
        )
        mine = await gql(
            BIND,
            {"i": bind_input("hb_li_xiuying", "SPOUSE", idempotencyKey="k1")},
            as_="hb_wang_jianguo",
        )
        # another caller's same key is their own: here, 刘洋 binds his daughter
        theirs = await gql(
            BIND,
            {"i": bind_input("hb_liu_yinuo", "CHILD", idempotencyKey="k1")},
            as_="hb_liu_yang",
        )
    assert bad["data"]["bindMutualAid"]["errors"] == [
        {"code": "INVALID_IDEMPOTENCY_KEY", "field": "idempotencyKey"}
    ]
    assert mine["data"]["bindMutualAid"]["binding"]["status"] == "ACTIVE"
    assert theirs["data"]["bindMutualAid"]["binding"]["status"] == "ACTIVE"


async def test_a_write_refused_by_the_network_fails_and_can_be_sent_again(
    provinces: Provinces,
) -> None:
    """Connection refused: the province certainly did not get it. The caller gets the
    fault, and the same key works once the province is back."""
    switch = provinces.switches["hebei"]
    async with running(provinces, fast()) as (gql, app):
        given = {"i": bind_input("hb_li_xiuying", "SPOUSE", idempotencyKey="retry-me")}
        await gql("{ me { name } }", as_="hb_wang_jianguo")  # located while it was up
        switch.mode, switch.only = "refuse", hebei_write
        failed = await gql(BIND, given, as_="hb_wang_jianguo")
        assert failed["errors"][0]["extensions"]["code"] == "UPSTREAM_UNAVAILABLE"
        assert (await services(app).outbox.counts())["FAILED"] == 1
        switch.mode = "ok"
        done = (await gql(BIND, given, as_="hb_wang_jianguo"))["data"]["bindMutualAid"]
        assert done["status"] == "DONE"
        assert done["binding"]["status"] == "ACTIVE"
        assert (await services(app).outbox.counts())["DONE"] == 1
    assert len(await provinces.bindings("hebei", "hb_li_xiuying")) == 1


async def test_a_lost_answer_is_submitted_then_reconciled_to_the_truth(
    provinces: Provinces,
) -> None:
    """The province bound them but the answer was lost: SUBMITTED. The reconciler asks
    again with the same request id, the province answers as the first time, and the
    repeated mutation gets the binding. One binding, one journal entry."""
    switch = provinces.switches["hebei"]
    async with running(provinces, fast()) as (gql, app):
        given = {"i": bind_input("hb_li_xiuying", "SPOUSE", idempotencyKey="lost-1")}
        await gql("{ me { name } }", as_="hb_wang_jianguo")
        switch.mode, switch.only = "lose", hebei_write
        sent = (await gql(BIND, given, as_="hb_wang_jianguo"))["data"]["bindMutualAid"]
        assert sent == {
            "binding": None,
            "errors": [],
            "status": "SUBMITTED",
            "idempotencyKey": "lost-1",
        }
        assert len(await provinces.bindings("hebei", "hb_li_xiuying")) == 1  # it was done
        outbox = services(app).outbox
        assert (await outbox.counts())["UNKNOWN"] == 1

        switch.mode = "ok"
        settled = await Reconciler(outbox).run_once(now=True)
        assert settled == 1
        assert (await outbox.counts())["UNKNOWN"] == 0
        later = (await gql(BIND, given, as_="hb_wang_jianguo"))["data"]["bindMutualAid"]
        records = await gql(
            "{ me { authorizationRecords { edges { node { event } } } } }", as_="hb_wang_jianguo"
        )
        assert await Reconciler(outbox).run_once(now=True) == 0  # nothing left to settle
        # he was told SUBMITTED: he hears once that it is done (a subscription's event)
        told = await services(app).events.after(person("hb_wang_jianguo")["certNo"], 0)
    assert [
        (e.kind.value, e.body["idempotencyKey"], e.body["binding"]["status"]) for e in told
    ] == [("WRITE_RESOLVED", "lost-1", "ACTIVE")]
    assert later["status"] == "DONE"
    assert later["binding"]["status"] == "ACTIVE"
    assert len(await provinces.bindings("hebei", "hb_li_xiuying")) == 1
    events = [e["node"]["event"] for e in records["data"]["me"]["authorizationRecords"]["edges"]]
    assert events == ["CREATED"]


async def test_a_repeat_while_unknown_asks_the_province_itself(provinces: Provinces) -> None:
    switch = provinces.switches["hebei"]
    async with running(provinces, fast()) as (gql, _):
        given = {"i": bind_input("hb_li_xiuying", "SPOUSE", idempotencyKey="lost-2")}
        await gql("{ me { name } }", as_="hb_wang_jianguo")
        switch.mode, switch.only = "lose", hebei_write
        assert (await gql(BIND, given, as_="hb_wang_jianguo"))["data"]["bindMutualAid"][
            "status"
        ] == "SUBMITTED"
        switch.mode = "ok"
        again = (await gql(BIND, given, as_="hb_wang_jianguo"))["data"]["bindMutualAid"]
    assert again["status"] == "DONE"
    assert again["binding"]["status"] == "ACTIVE"
    assert len(await provinces.bindings("hebei", "hb_li_xiuying")) == 1


async def test_a_lost_settlement_is_charged_once(provinces: Provinces) -> None:
    from gateway.common.auth import Institution, mint_token

    switch = provinces.switches["hebei"]
    settle = """mutation($i: SettleInput!) { settle(input: $i) {
      settlement { id ownAccountPaid } errors { code } status idempotencyKey } }"""
    bill = {
        "patientCertNo": person("hb_wang_lei")["certNo"],
        "medicalType": "OUTPATIENT",
        "totalAmount": "300.00",
        "fundPaid": "100.00",
        "idempotencyKey": "HOSP-0001",
    }
    async with running(provinces, fast()) as (gql, app):
        token = mint_token(
            "130102196001010011",
            gql.auth,
            roles=frozenset({"INSTITUTION"}),
            institution=Institution("H13010001", "HOSPITAL"),
        )
        before = await balance(gql, "hb_wang_lei")
        switch.mode, switch.only = "lose", hebei_write
        lost = (await gql(settle, {"i": bill}, token=token))["data"]["settle"]
        assert lost["status"] == "SUBMITTED"
        assert lost["settlement"] is None
        switch.mode = "ok"
        assert await Reconciler(services(app).outbox).run_once(now=True) == 1
        again = (await gql(settle, {"i": bill}, token=token))["data"]["settle"]
        assert again["status"] == "DONE"
        assert again["settlement"]["ownAccountPaid"] == "200.00"
        assert before - await balance(gql, "hb_wang_lei") == Decimal("200.00")


async def balance(gql: GraphQL, key: str) -> Decimal:
    result = await gql("{ me { account { balance } } }", as_=key)
    return Decimal(result["data"]["me"]["account"]["balance"])


async def test_a_write_in_flight_when_the_gateway_stops_is_resumed_at_start(
    provinces: Provinces, tmp_path: Path
) -> None:
    """The province carried out the bind, the gateway stopped before it heard back:
    the write is still PENDING in the store. The next gateway's reconciler resends
    it at start and the province answers as the first time: one binding."""
    switch = provinces.switches["hebei"]
    settings = fast(tmp_path)
    given = {"i": bind_input("hb_li_xiuying", "SPOUSE", idempotencyKey="in-flight")}
    async with running(provinces, settings) as (gql, app):
        await gql("{ me { name } }", as_="hb_wang_jianguo")
        switch.mode, switch.only = "lose-and-hang", hebei_write
        switch.reached.clear()
        request = asyncio.create_task(gql(BIND, given, as_="hb_wang_jianguo"))
        await switch.reached.wait()
        await asyncio.sleep(0.05)  # the province has done it by now
        request.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await request
        assert (await services(app).outbox.counts())["PENDING"] == 1
    assert len(await provinces.bindings("hebei", "hb_li_xiuying")) == 1

    switch.mode = "ok"
    restarted = dataclasses_replace(settings, reconcile_interval=0.05)
    async with running(provinces, restarted) as (gql, app):
        outbox = services(app).outbox
        for _ in range(250):  # the reconciler's first pass, at start
            if (await outbox.counts())["DONE"] == 1:
                break
            await asyncio.sleep(0.02)
        else:
            pytest.fail("the write left in flight was not resumed")
        repeat = (await gql(BIND, given, as_="hb_wang_jianguo"))["data"]["bindMutualAid"]
    assert repeat["status"] == "DONE"
    assert repeat["binding"]["status"] == "ACTIVE"
    assert len(await provinces.bindings("hebei", "hb_li_xiuying")) == 1


def dataclasses_replace(settings: Settings, **resilience: float) -> Settings:
    import dataclasses

    return dataclasses.replace(
        settings, resilience=dataclasses.replace(settings.resilience, **resilience)
    )


async def test_unbind_and_respond_take_keys_too(provinces: Provinces) -> None:
    unbind = """mutation($id: ID!, $k: String) { unbindMutualAid(bindingId: $id,
      idempotencyKey: $k) { binding { status } errors { code } status idempotencyKey } }"""
    respond = """mutation($id: ID!, $k: String) { respondToMutualAidBinding(bindingId: $id,
      accept: true, idempotencyKey: $k) { binding { status } errors { code } status } }"""
    async with running(provinces, fast()) as (gql, _):
        made = await gql.bind("hb_wang_jianguo", "hb_li_xiuying", "SPOUSE")
        bid = made["binding"]["id"]
        first = (await gql(unbind, {"id": bid, "k": "u1"}, as_="hb_wang_jianguo"))["data"]
        again = (await gql(unbind, {"id": bid, "k": "u1"}, as_="hb_wang_jianguo"))["data"]
        spouse = await gql.bind("js_chen_zhiqiang", "js_liu_fang", "SPOUSE")
        yes = await gql(respond, {"id": spouse["binding"]["id"], "k": "r1"}, as_="js_liu_fang")
        yes_again = await gql(
            respond, {"id": spouse["binding"]["id"], "k": "r1"}, as_="js_liu_fang"
        )
    assert first["unbindMutualAid"]["binding"]["status"] == "UNBOUND"
    assert again == first  # not INVALID_BINDING_STATE: the first outcome
    assert yes["data"]["respondToMutualAidBinding"]["binding"]["status"] == "ACTIVE"
    assert yes_again == yes


def test_resilience_settings_are_read_and_checked(tmp_path: Path) -> None:
    config = tmp_path / "gongji.toml"
    config.write_text(
        "[resilience]\nreconcile_interval = 0.5\npending_after = 10\n"
        "[provinces.hebei]\nretries = 0\nbreaker_threshold = 3\nbreaker_reset = 5\n",
        encoding="utf-8",
    )
    settings = Settings.load(config, environ={})
    assert settings.resilience.reconcile_interval == 0.5
    hebei = settings.provinces["hebei"]
    assert (hebei.retries, hebei.breaker_threshold, hebei.breaker_reset) == (0, 3, 5.0)
    config.write_text("[provinces.hebei]\nbreaker_threshold = 0\n", encoding="utf-8")
    with pytest.raises(ValueError, match="positive"):
        Settings.load(config, environ={})
    config.write_text("[resilience]\nreconcile_interval = 0\n", encoding="utf-8")
    with pytest.raises(ValueError, match="positive"):
        Settings.load(config, environ={})


def test_answers_round_trip_through_the_store() -> None:
    from adapters.base import (
        Binding,
        BindingStatus,
        MedicalType,
        Party,
        RefusalCode,
        Relation,
        Settlement,
    )
    from gateway.common.refusals import GatewayCode, Refused
    from gateway.state.outbox import _decode_answer, _encode_answer

    binding = Binding(
        id="B1",
        authorizer=Party("130102197603150016", "王建国"),
        beneficiary=Party("130102197807020029", "李秀英"),
        relation=Relation.SPOUSE,
        status=BindingStatus.ACTIVE,
        created_at=dt.datetime(2026, 11, 23, 8, 0, tzinfo=dt.UTC),
    )
    assert _decode_answer(_encode_answer(binding)) == binding
    # a province's refusal and the gateway's own (its checks' answer is kept too)
    for refusal in (
        Refused(RefusalCode.BINDING_LIMIT_REACHED),
        Refused(GatewayCode.SELF_BINDING_NOT_ALLOWED, "beneficiaryCertNo"),
    ):
        assert _decode_answer(_encode_answer(refusal)) == refusal
    settled = Settlement(
        id="S1",
        institution_code="H13010001",
        patient=Party("130102197807020029", "李秀英"),
        medical_type=MedicalType.OUTPATIENT,
        total=Decimal("300.00"),
        fund_paid=Decimal("100.00"),
        self_pay=Decimal("200.00"),
        own_account_paid=Decimal("50.00"),
        mutual_aid_paid=Decimal("150.00"),
        mutual_aid_payer=Party("130102197603150016", "王建国"),
        cash_due=Decimal("0.00"),
        patient_balance_after=Decimal("0.00"),
        payer_balance_after=None,
        settled_at=dt.datetime(2026, 11, 23, 16, 0, tzinfo=dt.UTC),
    )
    back = _decode_answer(_encode_answer(settled))
    assert back == settled
    assert isinstance(back.total, Decimal)


async def test_a_cancelled_request_does_not_move_the_breaker() -> None:
    """Only answers (successes) and unavailability or timeouts (failures) count: a
    caller that stops waiting neither opens it nor closes it while it probes."""
    from adapters.base import BreakerState, Guard, UpstreamUnavailable

    mode = {"now": "down"}
    started = asyncio.Event()

    async def province(request: httpx.Request) -> httpx.Response:
        if mode["now"] == "down":
            return httpx.Response(503)
        started.set()
        await asyncio.Event().wait()  # hangs: the caller gives up
        raise AssertionError("unreachable")

    guard = Guard(retries=0, breaker_threshold=2, breaker_reset=0.1)
    async with henan_behind(province, guard) as adapter:
        wanted = [person("hn_zhao_lei")["certNo"]]
        with pytest.raises(UpstreamUnavailable):
            await adapter.find_persons(wanted)
        mode["now"] = "hang"
        started.clear()
        waiting = asyncio.create_task(adapter.find_persons(wanted))
        await started.wait()
        waiting.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await waiting
        mode["now"] = "down"
        with pytest.raises(UpstreamUnavailable):  # still the second failure in a row
            await adapter.find_persons(wanted)
        assert adapter.breaker_state is BreakerState.OPEN

        await asyncio.sleep(0.15)
        mode["now"] = "hang"
        started.clear()
        probe = asyncio.create_task(adapter.find_persons(wanted))
        await started.wait()
        probe.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await probe
        assert adapter.breaker_state is BreakerState.HALF_OPEN  # still waiting for a probe


# -- what the review of the outbox found ------------------------------------------------------


async def test_a_write_that_may_have_reached_the_province_is_never_given_up(
    provinces: Provinces,
) -> None:
    """Lost answer, then the province unreachable for a while: the write stays UNKNOWN
    (never FAILED: it may be done), a repeat hears SUBMITTED, and once the province is
    back the reconciler settles it and journals it."""
    switch = provinces.switches["hebei"]
    async with running(provinces, fast(breaker_threshold=100)) as (gql, app):
        outbox = services(app).outbox
        given = {"i": bind_input("hb_li_xiuying", "SPOUSE", idempotencyKey="stay-unknown")}
        await gql("{ me { name } }", as_="hb_wang_jianguo")
        switch.mode, switch.only = "lose", hebei_write
        await gql(BIND, given, as_="hb_wang_jianguo")
        switch.mode = "refuse"
        assert await Reconciler(outbox).run_once(now=True) == 0
        repeat = (await gql(BIND, given, as_="hb_wang_jianguo"))["data"]["bindMutualAid"]
        assert repeat["status"] == "SUBMITTED"
        assert (await outbox.counts())["UNKNOWN"] == 1
        assert (await outbox.counts())["FAILED"] == 0
        switch.mode = "ok"
        assert await Reconciler(outbox).run_once(now=True) == 1
        done = (await gql(BIND, given, as_="hb_wang_jianguo"))["data"]["bindMutualAid"]
        records = await gql(
            "{ me { authorizationRecords { edges { node { event } } } } }", as_="hb_wang_jianguo"
        )
    assert done["binding"]["status"] == "ACTIVE"
    edges = records["data"]["me"]["authorizationRecords"]["edges"]
    assert [e["node"]["event"] for e in edges] == ["CREATED"]


async def test_the_gateways_own_refusal_is_the_keys_first_outcome(provinces: Provinces) -> None:
    unbind = """mutation($id: ID!) { unbindMutualAid(bindingId: $id) { errors { code } } }"""
    async with running(provinces, fast()) as (gql, _):
        made = await gql.bind("hb_wang_jianguo", "hb_li_xiuying", "SPOUSE")
        given = {"i": bind_input("hb_li_xiuying", "SPOUSE", idempotencyKey="dup-1")}
        first = (await gql(BIND, given, as_="hb_wang_jianguo"))["data"]["bindMutualAid"]
        await gql(unbind, {"id": made["binding"]["id"]}, as_="hb_wang_jianguo")
        again = (await gql(BIND, given, as_="hb_wang_jianguo"))["data"]["bindMutualAid"]
    assert first["errors"] == [{"code": "DUPLICATE_BINDING", "field": "beneficiaryCertNo"}]
    assert again == first  # not a new binding: the key's outcome was the refusal


async def test_a_repeat_for_a_province_since_left_out_is_a_coded_fault(
    provinces: Provinces, tmp_path: Path
) -> None:
    given = {"i": bind_input("hb_li_xiuying", "SPOUSE", idempotencyKey="gone-1")}
    async with running(provinces, fast(tmp_path)) as (gql, _):
        first = (await gql(BIND, given, as_="hb_wang_jianguo"))["data"]["bindMutualAid"]
    assert first["binding"]["status"] == "ACTIVE"
    import dataclasses

    without = dataclasses.replace(fast(tmp_path), disabled=frozenset({"hebei"}))
    async with running(provinces, without) as (gql, _):
        repeat = await gql(BIND, given, as_="hb_wang_jianguo")
    assert repeat["errors"][0]["extensions"]["code"] == "UPSTREAM_UNAVAILABLE"
    assert repeat["errors"][0]["extensions"]["province"] == "13"


async def test_a_half_open_breaker_lets_one_probe_through() -> None:
    from adapters.base import BreakerState, CircuitOpen, Guard, UpstreamUnavailable

    sent = 0
    release = asyncio.Event()

    async def province(request: httpx.Request) -> httpx.Response:
        nonlocal sent
        sent += 1
        if sent == 1:
            return httpx.Response(503)
        await release.wait()
        return httpx.Response(503)

    guard = Guard(retries=0, breaker_threshold=1, breaker_reset=0.05)
    async with henan_behind(province, guard) as adapter:
        wanted = [person("hn_zhao_lei")["certNo"]]
        with pytest.raises(UpstreamUnavailable):
            await adapter.find_persons(wanted)
        await asyncio.sleep(0.08)
        assert adapter.breaker_state is BreakerState.HALF_OPEN
        # five different reads (identical ones would share the probe's request)
        asked = [asyncio.create_task(adapter.find_persons(wanted * n)) for n in range(1, 6)]
        await asyncio.sleep(0.05)
        release.set()
        outcomes = await asyncio.gather(*asked, return_exceptions=True)
    assert sent == 2  # the first failure, then one probe
    assert sum(isinstance(o, CircuitOpen) for o in outcomes) == 4
    assert adapter.breaker_state is BreakerState.OPEN  # the probe failed


async def test_a_request_cut_off_by_the_deadline_counts_as_a_timeout(
    provinces: Provinces,
) -> None:
    provinces.switches["henan"].mode = "hang"
    async with running(provinces, fast(timeout=0.2, retries=0)) as (gql, _):
        result = await gql("{ me { name } }", as_="hn_zhao_lei")
        scraped = (await gql.client.get("/metrics")).text
    assert result["errors"][0]["extensions"]["code"] == "UPSTREAM_TIMEOUT"
    assert 'gongji_upstream_requests_total{outcome="timeout",province="41"}' in scraped


async def test_the_same_key_at_once_runs_a_registry_write_once() -> None:
    from gateway.state.leases import Locks

    locks = Locks()
    order: list[str] = []

    async def user(name: str) -> None:
        async with locks.hold("k"):
            order.append(f"{name}+")
            await asyncio.sleep(0.01)
            order.append(f"{name}-")

    await asyncio.gather(user("a"), user("b"), user("c"))
    assert order == ["a+", "a-", "b+", "b-", "c+", "c-"]  # never two inside at once
    assert "k" not in locks  # forgotten once nobody holds or waits


def test_province_settings_must_be_sensible(tmp_path: Path) -> None:
    config = tmp_path / "gongji.toml"
    for bad in (
        "timeout = 0",
        "max_connections = 0",
        "retries = 1.5",
        "retries = -1",
        'timeout = "5"',
    ):
        config.write_text(f"[provinces.hebei]\n{bad}\n", encoding="utf-8")
        with pytest.raises(ValueError, match=r"provinces\.hebei"):
            Settings.load(config, environ={})
    config.write_text("[provinces.hebei]\nretries = 0\n", encoding="utf-8")
    assert Settings.load(config, environ={}).provinces["hebei"].retries == 0


async def test_dashboards_recover_after_an_outage(provinces: Provinces) -> None:
    """Work started ahead of locating the caller never takes a half-open breaker's one
    probe (and cancels it): after the province is back, the dashboard works again."""
    query = "{ me { name mutualAidBindings { asAuthorizer { id } } family { relative { name } } } }"
    settings = fast(breaker_threshold=2, breaker_reset=0.3)
    async with running(provinces, settings) as (gql, app):
        assert "errors" not in await gql(query, as_="hb_wang_jianguo")  # remembered
        switch = provinces.switches["hebei"]
        switch.mode = "down"
        for _ in range(3):
            await gql(query, as_="hb_wang_jianguo")
        switch.mode = "ok"
        await asyncio.sleep(0.35)
        outcomes = ["errors" not in await gql(query, as_="hb_wang_jianguo") for _ in range(3)]
        state = services(app).provinces["13"].breaker_state
    assert outcomes == [True, True, True]
    assert state.value == "CLOSED"


@pytest.mark.parametrize("civil_record_seconds", [300.0, 0.0], ids=["civil-kept", "civil-asked"])
async def test_the_callers_province_failing_is_answered_without_waiting_for_others(
    provinces: Provinces, civil_record_seconds: float
) -> None:
    """黄伟 (Jiangsu) has a relative insured in Henan. With Jiangsu down and Henan
    hanging, the dashboard's `me` is Jiangsu's error at once: finding the caller
    never waits on a relative's province, nor on the civil record."""
    query = "{ me { name family { relative { name } province { code } } } }"
    settings = dataclasses.replace(
        fast(timeout=30.0, breaker_threshold=100),
        cache=Caching(civil_record_seconds=civil_record_seconds),
    )
    async with running(provinces, settings) as (gql, _):
        assert "errors" not in await gql(query, as_="js_huang_wei")  # remembered
        provinces.switches["jiangsu"].mode = "down"
        provinces.switches["henan"].mode = "hang"
        async with asyncio.timeout(10):  # far below Henan's 30 s
            result = await gql(query, as_="js_huang_wei")
    assert result["data"] == {"me": None}
    assert [
        (e["path"], e["extensions"]["code"], e["extensions"]["province"]) for e in result["errors"]
    ] == [(["me"], "UPSTREAM_UNAVAILABLE", "32")]


@pytest.mark.parametrize("civil_record_seconds", [300.0, 0.0], ids=["civil-kept", "civil-asked"])
async def test_a_hanging_home_province_costs_one_timeout_not_two(
    provinces: Provinces, civil_record_seconds: float
) -> None:
    """王建国's Hebei hangs. His dashboard is Hebei's timeout after one deadline: finding
    him and reading his family wait on the same request (or on requests sent at once),
    never one after the other."""
    deadline = 1.0
    settings = dataclasses.replace(
        fast(timeout=deadline, retries=0, breaker_threshold=100),
        cache=Caching(civil_record_seconds=civil_record_seconds),
    )
    async with running(provinces, settings) as (gql, _):
        for _ in range(2):  # remembered, and his civil record kept where it may be
            assert "errors" not in await gql(DASHBOARD, as_="hb_wang_jianguo")
        provinces.switches["hebei"].mode = "hang"
        started = asyncio.get_running_loop().time()
        result = await gql(DASHBOARD, as_="hb_wang_jianguo")
        took = asyncio.get_running_loop().time() - started
    assert result["data"] == {"me": None}
    assert [(e["path"], e["extensions"]["code"]) for e in result["errors"]] == [
        (["me"], "UPSTREAM_TIMEOUT")
    ]
    assert deadline <= took < 1.8 * deadline  # one deadline, not two in a row

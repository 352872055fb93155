"""A write's answer tells the truth, and every write to a province ends somewhere.

docs/frontend.md promises that a GraphQL error on a write means the province certainly
did not get it. So a write the province may have carried out is answered with its
outcome or ``SUBMITTED``, whatever fails in the gateway meanwhile: the store's disk
filling up after the province answered, or the request cancelled (what uvicorn does to
requests still running when a SIGTERM outlives the shutdown grace). And a write the
province answers it cannot read (malformed) ends ``FAILED``, with a coded fault, instead
of being sent again forever.

The provinces are the in-memory sandboxes behind `tests.conftest.Switch`.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import re
import sqlite3
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from adapters.base import UpstreamContractError
from gateway.common.auth import INSTITUTION, Institution, mint_token
from gateway.edge.app import create_app
from gateway.ops.config import Settings
from gateway.state.outbox import Reconciler
from gateway.state.sqlite import SqliteStore
from sandbox.serve import serving
from tests.conftest import GraphQL, Provinces, person
from tests.test_resilience import (
    BIND,
    bind_input,
    fast,
    hebei_write,
    running,
    services,
)

CASHIER = "130102196001010011"
SETTLE = """mutation($i: SettleInput!) { settle(input: $i) {
  settlement { id ownAccountPaid } errors { code } status idempotencyKey } }"""
REVERSE = """mutation($id: ID!, $k: String) { reverseSettlement(settlementId: $id,
  reason: "entered twice", idempotencyKey: $k) { settlement { status } errors { code } status } }"""
NOW = dt.timedelta(0)  # pending_after: every pending write is due
RECORDS = "{ me { authorizationRecords { edges { node { event } } } } }"


_WRITES = re.compile(r"\s*(INSERT|UPDATE|DELETE|REPLACE)\b", re.IGNORECASE)


class Disk:
    """The store's disk. Once ``full``, every statement that writes fails as SQLite does
    on a full disk; reads still work."""

    def __init__(self) -> None:
        self.full = False

    def under(self, store: SqliteStore, monkeypatch: pytest.MonkeyPatch) -> None:
        db = store._db
        for name in ("execute", "executemany"):
            real = getattr(db, name)

            def statement(sql: str, *args: Any, _real: Any = real, **kwargs: Any) -> Any:
                if self.full and _WRITES.match(sql):
                    raise sqlite3.OperationalError("database or disk is full")
                return _real(sql, *args, **kwargs)

            monkeypatch.setattr(db, name, statement)


class FullOnceAnswered(httpx.AsyncBaseTransport):
    """Hebei, whose writes are carried out as they come; their answers are held until
    ``count`` have been carried out. Then the gateway's disk fills up, and the answers
    go back."""

    def __init__(self, inner: httpx.AsyncBaseTransport, disk: Disk, count: int) -> None:
        self.inner = inner
        self.disk = disk
        self.count = count
        self.done = 0
        self.answered = asyncio.Event()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        if hebei_write(request):
            await response.aread()
            self.done += 1
            if self.done == self.count:
                self.disk.full = True
                self.answered.set()
            await self.answered.wait()
        return response


@contextlib.asynccontextmanager
async def gateway(
    provinces: Provinces, settings: Settings, **transports: httpx.AsyncBaseTransport
) -> AsyncIterator[tuple[GraphQL, Starlette]]:
    app = create_app(settings, transports={**provinces.switches, **transports})
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as client,
    ):
        yield GraphQL(client, settings.auth), app


def cashier(gql: GraphQL, institution: str = "H13010001") -> str:
    return mint_token(
        CASHIER,
        gql.auth,
        roles=frozenset({INSTITUTION}),
        institution=Institution(institution, "HOSPITAL"),
    )


def bill(patient: str, key: str, total: str = "100.00") -> dict[str, Any]:
    return {
        "i": {
            "patientCertNo": person(patient)["certNo"],
            "medicalType": "OUTPATIENT",
            "totalAmount": total,
            "fundPaid": "0.00",
            "idempotencyKey": key,
        }
    }


async def balance(gql: GraphQL, key: str) -> Decimal:
    result = await gql("{ me { account { balance } } }", as_=key)
    return Decimal(result["data"]["me"]["account"]["balance"])


# -- the disk fills up after the province answered ------------------------------------------


@pytest.mark.sqlite
async def test_settlements_the_province_made_are_answered_though_the_disk_is_full(
    provinces: Provinces, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Five bills are settled at Hebei at once; by the time the answers come back the
    gateway's disk is full, so none can be recorded. Each is answered with the settlement
    the province made (never INTERNAL_ERROR: that reads as "not charged"); once there is
    room again the reconciler records them, and the same keys get the same settlements,
    charged once."""
    disk = Disk()
    hebei = FullOnceAnswered(provinces.switches["hebei"], disk, count=5)
    async with gateway(provinces, fast(), hebei=hebei) as (gql, app):
        token = cashier(gql)
        before = await balance(gql, "hb_wang_lei")
        disk.under(services(app).store, monkeypatch)
        keys = [f"FULL-{n}" for n in range(5)]
        answers = await asyncio.gather(
            *(gql(SETTLE, bill("hb_wang_lei", key), token=token) for key in keys)
        )
        for answer in answers:
            assert "errors" not in answer, answer
        payloads = [a["data"]["settle"] for a in answers]
        assert [p["status"] for p in payloads] == ["DONE"] * 5
        assert all(p["settlement"]["ownAccountPaid"] == "100.00" for p in payloads)
        assert before - await balance(gql, "hb_wang_lei") == Decimal("500.00")

        disk.full = False
        outbox = services(app).outbox
        assert (await outbox.counts())["PENDING"] == 5  # answered, not recorded
        await Reconciler(outbox).run_once(pending_after=NOW)
        assert (await outbox.counts())["DONE"] == 5
        again = [
            (await gql(SETTLE, bill("hb_wang_lei", key), token=token))["data"]["settle"]
            for key in keys
        ]
        assert [a["settlement"]["id"] for a in again] == [p["settlement"]["id"] for p in payloads]
        assert before - await balance(gql, "hb_wang_lei") == Decimal("500.00")


@pytest.mark.sqlite
async def test_a_binding_made_while_the_disk_is_full_is_journaled_once_there_is_room(
    provinces: Provinces, monkeypatch: pytest.MonkeyPatch
) -> None:
    disk = Disk()
    hebei = FullOnceAnswered(provinces.switches["hebei"], disk, count=1)
    async with gateway(provinces, fast(), hebei=hebei) as (gql, app):
        await gql("{ me { name } }", as_="hb_wang_jianguo")
        disk.under(services(app).store, monkeypatch)
        given = {"i": bind_input("hb_li_xiuying", "SPOUSE", idempotencyKey="full-bind")}
        answer = await gql(BIND, given, as_="hb_wang_jianguo")
        assert "errors" not in answer, answer
        assert answer["data"]["bindMutualAid"]["binding"]["status"] == "ACTIVE"
        disk.full = False
        await Reconciler(services(app).outbox).run_once(pending_after=NOW)
        records = await gql(RECORDS, as_="hb_wang_jianguo")
    edges = records["data"]["me"]["authorizationRecords"]["edges"]
    assert [e["node"]["event"] for e in edges] == ["CREATED"]
    assert len(await provinces.bindings("hebei", "hb_li_xiuying")) == 1


@pytest.mark.parametrize("mode", ["lose", "refuse"])
@pytest.mark.sqlite
async def test_a_write_whose_fate_cannot_be_recorded_is_submitted(
    provinces: Provinces, monkeypatch: pytest.MonkeyPatch, mode: str
) -> None:
    """The province's answer is lost (``lose``: it bound them), or the province cannot
    be reached (``refuse``: it certainly did not), and the disk is full, so the store
    cannot record that either: the write stays PENDING, which the reconciler sends until
    it is answered. So the truth is SUBMITTED, even for the write that was not sent
    (a fault would say "not done" of a write that will be done)."""
    switch = provinces.switches["hebei"]
    disk = Disk()
    async with running(provinces, fast()) as (gql, app):
        await gql("{ me { name } }", as_="hb_wang_jianguo")
        disk.under(services(app).store, monkeypatch)
        outbox = services(app).outbox
        real_failed = outbox._failed

        async def full_then_failed(*args: Any, **kwargs: Any) -> None:
            disk.full = True  # the province has had its chance: now the disk is full
            await real_failed(*args, **kwargs)

        monkeypatch.setattr(outbox, "_failed", full_then_failed)
        switch.mode, switch.only = mode, hebei_write
        given = {"i": bind_input("hb_li_xiuying", "SPOUSE", idempotencyKey=f"full-{mode}")}
        answer = await gql(BIND, given, as_="hb_wang_jianguo")
        assert "errors" not in answer, answer
        assert answer["data"]["bindMutualAid"]["status"] == "SUBMITTED"

        disk.full = False
        monkeypatch.setattr(outbox, "_failed", real_failed)
        switch.mode = "ok"
        assert (await outbox.counts())["PENDING"] == 1
        assert await Reconciler(outbox).run_once(pending_after=NOW) == 1
        done = (await gql(BIND, given, as_="hb_wang_jianguo"))["data"]["bindMutualAid"]
    assert done["status"] == "DONE"
    assert done["binding"]["status"] == "ACTIVE"
    assert len(await provinces.bindings("hebei", "hb_li_xiuying")) == 1


# -- the request cancelled (the shutdown grace is over) ---------------------------------------


async def test_a_write_cancelled_after_the_province_carried_it_out_is_submitted(
    provinces: Provinces,
) -> None:
    """The province bound them, its answer has not come back, and the request is
    cancelled: the caller hears SUBMITTED (not a cancelled request, which uvicorn turns
    into a plain-text 500), and the key later gets the binding."""
    switch = provinces.switches["hebei"]
    async with running(provinces, fast(timeout=0.5)) as (gql, app):
        given = {"i": bind_input("hb_li_xiuying", "SPOUSE", idempotencyKey="cut-1")}
        await gql("{ me { name } }", as_="hb_wang_jianguo")
        switch.mode, switch.only = "lose-and-hang", hebei_write
        switch.reached.clear()
        request = asyncio.create_task(gql(BIND, given, as_="hb_wang_jianguo"))
        await switch.reached.wait()
        await asyncio.sleep(0.05)  # the province has done it by now
        request.cancel()
        answer = await request
        assert "errors" not in answer, answer
        assert answer["data"]["bindMutualAid"]["status"] == "SUBMITTED"
        assert len(await provinces.bindings("hebei", "hb_li_xiuying")) == 1

        switch.mode = "ok"
        outbox = services(app).outbox
        for _ in range(100):  # the send goes on without the request: it times out
            if (await outbox.counts())["UNKNOWN"] == 1:
                break
            await asyncio.sleep(0.02)
        await Reconciler(outbox).run_once(now=True)
        done = (await gql(BIND, given, as_="hb_wang_jianguo"))["data"]["bindMutualAid"]
        records = await gql(RECORDS, as_="hb_wang_jianguo")
    assert done["status"] == "DONE"
    assert done["binding"]["status"] == "ACTIVE"
    edges = records["data"]["me"]["authorizationRecords"]["edges"]
    assert [e["node"]["event"] for e in edges] == ["CREATED"]


async def test_an_answer_that_comes_as_the_request_is_cancelled_is_recorded(
    provinces: Provinces, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The province answered and the gateway is recording it when the request is
    cancelled: the recording is not cut off, so the binding is DONE and journaled
    without waiting for the reconciler."""
    release = asyncio.Event()
    recording = asyncio.Event()
    async with running(provinces, fast()) as (gql, app):
        await gql("{ me { name } }", as_="hb_wang_jianguo")
        outbox = services(app).outbox
        real_done = outbox._done

        async def slow_done(*args: Any, **kwargs: Any) -> None:
            recording.set()
            await release.wait()
            await real_done(*args, **kwargs)

        monkeypatch.setattr(outbox, "_done", slow_done)
        given = {"i": bind_input("hb_li_xiuying", "SPOUSE", idempotencyKey="cut-2")}
        request = asyncio.create_task(gql(BIND, given, as_="hb_wang_jianguo"))
        await recording.wait()
        request.cancel()
        answer = await request
        assert "errors" not in answer, answer
        assert answer["data"]["bindMutualAid"]["status"] in ("SUBMITTED", "DONE")
        release.set()
        for _ in range(100):
            if (await outbox.counts())["DONE"] == 1:
                break
            await asyncio.sleep(0.01)
        assert (await outbox.counts())["DONE"] == 1
        records = await gql(RECORDS, as_="hb_wang_jianguo")
    edges = records["data"]["me"]["authorizationRecords"]["edges"]
    assert [e["node"]["event"] for e in edges] == ["CREATED"]


async def test_a_grace_timeout_answers_submitted_not_a_plain_500(provinces: Provinces) -> None:
    """Under uvicorn: a write is in flight (the province carried it out, its answer
    hangs) when the server stops, and outlives the shutdown grace. uvicorn cancels the
    request; the caller gets SUBMITTED, as JSON, not uvicorn's plain-text 500."""
    switch = provinces.switches["hebei"]
    settings = fast(timeout=1.0)
    app = create_app(settings, transports=dict(provinces.switches))
    token = mint_token(person("hb_wang_jianguo")["certNo"], settings.auth)
    headers = {"Authorization": f"Bearer {token}"}
    given = {"i": bind_input("hb_li_xiuying", "SPOUSE", idempotencyKey="grace-1")}
    async with httpx.AsyncClient(headers=headers, timeout=10) as client:
        async with serving(app, shutdown_timeout=0.3) as url:
            me = await client.post(f"{url}/graphql", json={"query": "{ me { name } }"})
            assert me.is_success
            switch.mode, switch.only = "lose-and-hang", hebei_write
            switch.reached.clear()
            sent = asyncio.create_task(
                client.post(f"{url}/graphql", json={"query": BIND, "variables": given})
            )
            await switch.reached.wait()
            await asyncio.sleep(0.05)
        # the server has stopped: its grace was over before the province's answer came
        answer = await sent
    assert answer.status_code == 200, answer.text
    payload = answer.json()
    assert "errors" not in payload, payload
    assert payload["data"]["bindMutualAid"]["status"] == "SUBMITTED"
    assert len(await provinces.bindings("hebei", "hb_li_xiuying")) == 1


# -- a write the province cannot read ends FAILED ----------------------------------------------


def henan_write(request: httpx.Request) -> bool:
    return any(
        f"<service>{name}</service>".encode() in request.content
        for name in ("Bind", "Unbind", "Settle", "ReverseSettle")
    )


def unreadable(*args: Any, **kwargs: Any) -> Any:
    """The Henan adapter's reverse, when Henan answers 9999 报文格式错误 (it could not
    parse the request: nothing done): a contract error that did not take effect."""
    raise UpstreamContractError(
        "service ReverseSettle: retcode 9999 报文格式错误", province="41", reached=False
    )


async def settled_in_henan(gql: GraphQL) -> str:
    token = cashier(gql, "H41010001")
    made = (await gql(SETTLE, bill("hn_zhao_lei", "HN-1", "50.00"), token=token))["data"]
    settlement_id: str = made["settle"]["settlement"]["id"]
    return settlement_id


async def test_a_write_the_province_cannot_read_fails_for_good(
    provinces: Provinces, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Henan answers that it cannot read the reversal (nothing done): the write ends
    FAILED, the caller gets a coded fault (not SUBMITTED), the metrics count it, and the
    reconciler never sends it again."""
    async with running(provinces, fast()) as (gql, app):
        settlement_id = await settled_in_henan(gql)
        adapter = services(app).provinces["41"]
        monkeypatch.setattr(adapter, "reverse", unreadable)
        token = cashier(gql, "H41010001")
        answer = await gql(REVERSE, {"id": settlement_id, "k": "rev-1"}, token=token)
        assert answer["data"] is None or answer["data"]["reverseSettlement"] is None
        assert [
            (e["extensions"]["code"], e["extensions"]["province"]) for e in answer["errors"]
        ] == [("UPSTREAM_CONTRACT_ERROR", "41")]
        outbox = services(app).outbox
        counts = await outbox.counts()
        assert (counts["FAILED"], counts["UNKNOWN"], counts["PENDING"]) == (1, 0, 0)
        assert await outbox.due(pending_after=NOW, now=True) == []
        scraped = (await gql.client.get("/metrics")).text
    assert 'gongji_outbox_writes{state="FAILED"} 1.0' in scraped
    assert 'gongji_outbox_writes{state="UNKNOWN"} 0.0' in scraped


async def test_a_lost_write_the_province_then_cannot_read_fails_for_good(
    provinces: Provinces, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write whose answer was lost (UNKNOWN) is sent again, and Henan answers that it
    cannot read it: the same request every time, so it never could; FAILED, not resent."""
    switch = provinces.switches["henan"]
    async with running(provinces, fast()) as (gql, app):
        settlement_id = await settled_in_henan(gql)
        token = cashier(gql, "H41010001")
        switch.mode, switch.only = "garble", henan_write  # an answer we cannot read
        lost = await gql(REVERSE, {"id": settlement_id, "k": "rev-2"}, token=token)
        assert lost["data"]["reverseSettlement"]["status"] == "SUBMITTED"
        outbox = services(app).outbox
        assert (await outbox.counts())["UNKNOWN"] == 1  # it may have been done: kept
        switch.mode = "ok"
        monkeypatch.setattr(services(app).provinces["41"], "reverse", unreadable)
        assert await Reconciler(outbox).run_once(now=True) == 1  # settled: for good
        counts = await outbox.counts()
        assert (counts["FAILED"], counts["UNKNOWN"]) == (1, 0)
        assert await Reconciler(outbox).run_once(now=True) == 0  # nothing left to send
        again = await gql(REVERSE, {"id": settlement_id, "k": "rev-2"}, token=token)
    assert again["errors"][0]["extensions"]["code"] == "UPSTREAM_CONTRACT_ERROR"


@pytest.mark.sqlite
async def test_a_commit_the_full_disk_refuses_is_rolled_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """SQLite writes the WAL at commit, so a full disk can refuse the commit itself:
    the transaction is rolled back then, not left open for the next caller's
    statements to join (and be committed with them, or lost with them)."""
    store = await SqliteStore.open(None)
    try:
        db = store._db
        real_commit = db.commit

        async def full() -> None:
            raise sqlite3.OperationalError("database or disk is full")

        monkeypatch.setattr(db, "commit", full)
        with pytest.raises(sqlite3.OperationalError):
            await store.check_writable()
        assert not db.in_transaction
        monkeypatch.setattr(db, "commit", real_commit)
        async with store.transaction() as reading:
            found = await reading.fetch("SELECT COUNT(*) FROM heartbeat")
        assert list(found) == [(0,)]
    finally:
        await store.close()

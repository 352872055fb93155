"""A write the province answers it cannot read ends FAILED with a coded fault, for good.

The gateway's edge refuses text with a control character (no province's XML can carry
one), so these tests send such a reversal from behind the edge, through the outbox as
the gateway does (`gateway.rules.settlement.Settlements.reverse`), to the real adapter and the
province's sandbox. Each province answers in its own words that it could not read the
request (Henan ``9999 报文格式错误``: the request is no XML; Hebei ``-1 入参校验失败``;
Jiangsu HTTP 400 with ``40000``) and does nothing: the adapter says the request did
not reach it, and the outbox records the write FAILED instead of UNKNOWN (which the
reconciler would send again for ever, refused each time).
"""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx
import pytest

from adapters.base import UpstreamContractError
from gateway.common.auth import INSTITUTION, Caller, Institution
from gateway.common.ids import decode_id
from gateway.rules.settlement import SETTLEMENT_KIND
from gateway.state.outbox import Outbox, Reconciler
from tests.conftest import GraphQL, Provinces
from tests.test_resilience import fast, running, services
from tests.test_write_truth import CASHIER, NOW, REVERSE, SETTLE, bill, cashier

UNREADABLE = "entered\x01twice"  # U+0001: no XML can carry it


def henan_write(request: httpx.Request) -> bool:
    return b"<service>ReverseSettle</service>" in request.content


def hebei_write(request: httpx.Request) -> bool:
    return bool(json.loads(request.content).get("infno") == "2208")


def jiangsu_write(request: httpx.Request) -> bool:
    return request.method == "POST" and request.url.path.endswith("/reversal")


# name: (the patient, the institution settling, how its reversal request looks)
PROVINCES: dict[str, tuple[str, str, Callable[[httpx.Request], bool]]] = {
    "henan": ("hn_zhao_lei", "H41010001", henan_write),
    "hebei": ("hb_wang_lei", "H13010001", hebei_write),
    "jiangsu": ("js_chen_zhiqiang", "H32010001", jiangsu_write),
}


async def settled(gql: GraphQL, name: str) -> str:
    patient, institution, _ = PROVINCES[name]
    made = await gql(SETTLE, bill(patient, f"{name}-1", "50.00"), token=cashier(gql, institution))
    settlement_id: str = made["data"]["settle"]["settlement"]["id"]
    return settlement_id


def teller(name: str) -> Caller:
    """The institution's cashier, as the gateway knows them once past the edge."""
    institution = Institution(PROVINCES[name][1], "HOSPITAL")
    return Caller(CASHIER, frozenset({INSTITUTION}), institution)


async def unreversed(provinces: Provinces, name: str, settlement_id: str) -> bool:
    decoded = decode_id(settlement_id, SETTLEMENT_KIND)
    assert decoded is not None
    kept = await provinces.system(name).settlement(decoded[1])
    assert kept is not None
    return kept["reversed_at"] is None


async def failed_for_good(outbox: Outbox) -> None:
    counts = await outbox.counts()
    assert (counts["FAILED"], counts["UNKNOWN"], counts["PENDING"]) == (1, 0, 0)
    assert await outbox.due(pending_after=NOW, now=True) == []
    assert await Reconciler(outbox).run_once(now=True) == 0  # nothing left to send


@pytest.mark.parametrize("name", PROVINCES)
async def test_a_reversal_the_province_cannot_read_fails_with_a_coded_fault(
    provinces: Provinces, name: str
) -> None:
    """Sent once, refused unread: the caller gets UPSTREAM_CONTRACT_ERROR (not
    SUBMITTED), the write is FAILED, never sent again, and nothing was reversed."""
    code = {"henan": "41", "hebei": "13", "jiangsu": "32"}[name]
    async with running(provinces, fast()) as (gql, app):
        settlement_id = await settled(gql, name)
        settlements, outbox = services(app).settlements, services(app).outbox
        for _ in range(2):  # the same key again: sent again, refused again, still FAILED
            with pytest.raises(UpstreamContractError) as caught:
                await settlements.reverse(teller(name), settlement_id, UNREADABLE, key="bad")
            assert caught.value.code == "UPSTREAM_CONTRACT_ERROR"
            assert caught.value.province == code
            assert caught.value.reached is False
            await failed_for_good(outbox)
        assert await unreversed(provinces, name, settlement_id)
        token = cashier(gql, PROVINCES[name][1])
        fine = await gql(REVERSE, {"id": settlement_id, "k": "good"}, token=token)
    assert fine["data"]["reverseSettlement"]["status"] == "DONE"
    assert fine["data"]["reverseSettlement"]["settlement"]["status"] == "REVERSED"


@pytest.mark.parametrize("name", PROVINCES)
async def test_a_lost_reversal_the_province_then_cannot_read_fails_for_good(
    provinces: Provinces, name: str
) -> None:
    """The first answer is lost (UNKNOWN: it may have been done); sent again by the
    reconciler, the province answers it cannot read it: FAILED, not UNKNOWN for ever."""
    switch = provinces.switches[name]
    async with running(provinces, fast()) as (gql, app):
        settlement_id = await settled(gql, name)
        settlements, outbox = services(app).settlements, services(app).outbox
        switch.mode, switch.only = "garble", PROVINCES[name][2]  # an answer we cannot read
        lost = await settlements.reverse(teller(name), settlement_id, UNREADABLE, key="lost")
        assert lost.submitted
        assert (await outbox.counts())["UNKNOWN"] == 1
        switch.mode = "ok"
        assert await Reconciler(outbox).run_once(now=True) == 1  # settled: for good
        await failed_for_good(outbox)
        with pytest.raises(UpstreamContractError) as caught:  # the key's outcome: a fault
            await settlements.reverse(teller(name), settlement_id, UNREADABLE, key="lost")
        assert caught.value.reached is False
        assert await unreversed(provinces, name, settlement_id)

"""A bill paid from a quota held in another province (the 2026 rules), end to end with
roster people, checked against both provinces' own records.

刘涛 (Hebei) set aside a quota for his mother 张淑珍, insured in Jiangsu; a Jiangsu
hospital settles her bill. The gateway holds the amount in Hebei, settles in Jiangsu
with it, then confirms in Hebei what was used (or releases it): both provinces record
the payment, each naming the other.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from gateway.common.auth import INSTITUTION, Institution, mint_token
from gateway.edge.app import create_app
from gateway.ops.config import Settings
from sandbox.engine import ProvinceSystem, SandboxRefusal
from tests.conftest import GraphQL, Provinces, person

BIND = """mutation($input: BindMutualAidInput!) {
  bindMutualAid(input: $input) { binding { id quota { remaining } } errors { code } } }"""
UNBIND = """mutation($id: ID!) {
  unbindMutualAid(bindingId: $id) { binding { status quota { remaining } } errors { code } } }"""
SETTLE = """mutation($i: SettleInput!) { settle(input: $i) {
  settlement { id status selfPay ownAccountPaid mutualAidPaid cashDue
               mutualAidPayer { name } province { code } mutualAidProvince { code } }
  errors { code field } status } }"""
RECORDS = """query($role: RecordRole!) { me { spendingRecords(role: $role, first: 5) {
  edges { node { settlementId amount province { code } payerProvince { code } } } } } }"""
CASHIER = "130102196001010011"
HOSPITALS = {"hebei": "H13010001", "jiangsu": "H32010001", "henan": "H41010001"}
SON, MOTHER = "hb_liu_tao", "js_zhang_shuzhen"


class World:
    def __init__(self, app: Starlette, gql: GraphQL, provinces: Provinces) -> None:
        self.app = app
        self.gql = gql
        self.provinces = provinces

    def system(self, name: str) -> ProvinceSystem:
        return self.provinces.system(name)

    async def bind(self, who: str, relative: str, relation: str, quota: str | None) -> str:
        given: dict[str, Any] = {
            "beneficiaryCertNo": person(relative)["certNo"],
            "beneficiaryName": person(relative)["name"],
            "relation": relation,
            "commitmentSigned": True,
        }
        if quota is not None:
            given["quota"] = quota
        result = await self.gql(BIND, {"input": given}, as_=who)
        payload = result["data"]["bindMutualAid"]
        assert payload["errors"] == [], payload
        binding_id: str = payload["binding"]["id"]
        return binding_id

    async def settle(
        self, province: str, patient: str, total: str, fund: str, key: str
    ) -> dict[str, Any]:
        token = self.cashier(province)
        given = {
            "patientCertNo": person(patient)["certNo"],
            "medicalType": "OUTPATIENT",
            "totalAmount": total,
            "fundPaid": fund,
            "idempotencyKey": key,
        }
        result = await self.gql(SETTLE, {"i": given}, token=token)
        assert "errors" not in result, result
        payload: dict[str, Any] = result["data"]["settle"]
        return payload

    def cashier(self, province: str) -> str:
        """A token of the cashier at the province's hospital."""
        return mint_token(
            CASHIER,
            self.gql.auth,
            roles=frozenset({INSTITUTION}),
            institution=Institution(HOSPITALS[province], "HOSPITAL"),
        )

    async def balance(self, name: str, who: str) -> Decimal:
        [found] = await self.system(name).persons([person(who)["certNo"]])
        return Decimal(found["balance"])

    async def holds(self, name: str, who: str) -> list[dict[str, Any]]:
        return await self.system(name).holds_of([person(who)["certNo"]])

    async def quota_left(self, name: str, who: str) -> Decimal:
        rows = await self.system(name).bindings_of([person(who)["certNo"]])
        [row] = [r for r in rows if r["quota_remaining"] is not None and r["status"] == "ACTIVE"]
        return Decimal(row["quota_remaining"])

    async def settlements(self, name: str, who: str) -> list[dict[str, Any]]:
        return await self.system(name).settlements_of([person(who)["certNo"]])


@pytest.fixture
async def world(provinces: Provinces) -> AsyncIterator[World]:
    settings = Settings(data_dir=None)
    app = create_app(settings, transports=dict(provinces.switches))
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as client,
    ):
        yield World(app, GraphQL(client, settings.auth), provinces)


def paid(payload: dict[str, Any]) -> tuple[str, str, str, str | None, str | None]:
    assert payload["errors"] == [], payload
    s = payload["settlement"]
    payer = s["mutualAidPayer"]["name"] if s["mutualAidPayer"] else None
    province = s["mutualAidProvince"]["code"] if s["mutualAidProvince"] else None
    return s["ownAccountPaid"], s["mutualAidPaid"], s["cashDue"], payer, province


async def test_a_jiangsu_hospital_is_paid_from_a_hebei_quota_and_both_provinces_record_it(
    world: World,
) -> None:
    """The issue's case: a quota of 1000.00, a self-pay part of 1500.00."""
    await world.bind(SON, MOTHER, "PARENT", "1000.00")
    assert await world.balance("hebei", SON) == Decimal("1500.00")
    bill = await world.settle("jiangsu", MOTHER, "1600.00", "100.00", "js-bill-1")
    assert bill["settlement"]["selfPay"] == "1500.00"
    assert paid(bill) == ("0.00", "1000.00", "500.00", "刘*", "13")
    assert bill["settlement"]["province"] == {"code": "32"}

    # Hebei's own record: the hold, confirmed with what was used; the quota spent
    [hold] = await world.holds("hebei", SON)
    jiangsu_id = bill["settlement"]["id"]
    assert (hold["status"], hold["amount"], hold["used"]) == ("CONFIRMED", "1000.00", "1000.00")
    assert hold["payment_ref"].startswith("32:")
    assert await world.quota_left("hebei", SON) == Decimal("0.00")
    assert await world.balance("hebei", SON) == Decimal("1500.00")  # set aside already
    # Jiangsu's own record: paid from Hebei, naming the hold there
    [settled] = await world.settlements("jiangsu", MOTHER)
    assert (settled["mutual_aid_paid"], settled["payer"], settled["payer_province"]) == (
        "1000.00",
        person(SON)["certNo"],
        "13",
    )
    assert settled["funding_hold"] == hold["id"]
    assert hold["payment_ref"] == f"32:{settled['id']}"

    # the records on both sides name both provinces
    for who, role in ((SON, "AUTHORIZER"), (MOTHER, "BENEFICIARY")):
        result = await world.gql(RECORDS, {"role": role}, as_=who)
        [edge] = result["data"]["me"]["spendingRecords"]["edges"]
        assert edge["node"] == {
            "settlementId": jiangsu_id,
            "amount": "1000.00",
            "province": {"code": "32"},
            "payerProvince": {"code": "13"},
        }


async def test_what_a_bill_does_not_use_stays_and_returns_when_the_binding_ends(
    world: World,
) -> None:
    binding = await world.bind(SON, MOTHER, "PARENT", "1000.00")
    bill = await world.settle("jiangsu", MOTHER, "700.00", "100.00", "js-bill-1")
    assert paid(bill) == ("0.00", "600.00", "0.00", "刘*", "13")
    assert await world.quota_left("hebei", SON) == Decimal("400.00")
    again = await world.settle("jiangsu", MOTHER, "700.00", "100.00", "js-bill-1")  # a retry
    assert again["settlement"]["id"] == bill["settlement"]["id"]
    assert len(await world.holds("hebei", SON)) == 1  # held and paid once
    assert await world.quota_left("hebei", SON) == Decimal("400.00")

    result = await world.gql(UNBIND, {"id": binding}, as_=MOTHER)  # she ends it
    assert result["data"]["unbindMutualAid"]["binding"]["status"] == "UNBOUND"
    assert await world.balance("hebei", SON) == Decimal("1900.00")  # 1500.00 + the 400.00 left


async def test_a_larger_authorizer_in_the_patients_province_pays_instead_of_a_quota(
    world: World,
) -> None:
    """黄建华 (Henan): his daughter 黄丽 binds him in Henan (1200.00), his son 黄伟 from
    Jiangsu with a quota of 1000.00: the larger pays, and nothing is held in Jiangsu."""
    await world.bind("hn_huang_li", "hn_huang_jianhua", "PARENT", None)
    await world.bind("js_huang_wei", "hn_huang_jianhua", "PARENT", "1000.00")
    bill = await world.settle("henan", "hn_huang_jianhua", "1600.00", "100.00", "hn-bill-1")
    assert paid(bill) == ("0.00", "1200.00", "300.00", "黄*", "41")
    assert await world.holds("jiangsu", "js_huang_wei") == []
    assert await world.quota_left("jiangsu", "js_huang_wei") == Decimal("1000.00")


async def test_a_larger_quota_pays_instead_of_an_authorizer_in_the_patients_province(
    world: World,
) -> None:
    await world.bind("hn_huang_li", "hn_huang_jianhua", "PARENT", None)
    await world.bind("js_huang_wei", "hn_huang_jianhua", "PARENT", "1500.00")
    bill = await world.settle("henan", "hn_huang_jianhua", "1600.00", "100.00", "hn-bill-1")
    assert paid(bill) == ("0.00", "1500.00", "0.00", "黄*", "32")
    assert await world.balance("henan", "hn_huang_li") == Decimal("1200.00")  # untouched
    assert await world.quota_left("jiangsu", "js_huang_wei") == Decimal("0.00")


async def test_a_bill_the_patients_province_refuses_releases_the_hold(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    await world.bind(SON, MOTHER, "PARENT", "1000.00")

    async def refusing(**kwargs: Any) -> dict[str, Any]:
        raise SandboxRefusal("patient_not_insured")

    monkeypatch.setattr(world.system("jiangsu"), "settle", refusing)
    bill = await world.settle("jiangsu", MOTHER, "700.00", "100.00", "js-bill-1")
    assert bill["settlement"] is None
    assert bill["errors"] == [{"code": "PATIENT_NOT_INSURED", "field": "patientCertNo"}]
    [hold] = await world.holds("hebei", SON)
    assert (hold["status"], hold["used"]) == ("RELEASED", "0.00")
    assert await world.quota_left("hebei", SON) == Decimal("1000.00")


async def test_a_lost_answer_is_finished_by_the_reconciler_once(world: World) -> None:
    """Jiangsu settles but its answer is lost: the institution hears SUBMITTED, and the
    reconciler later learns the settlement and confirms the hold in Hebei."""
    await world.bind(SON, MOTHER, "PARENT", "1000.00")
    jiangsu = world.provinces.switches["jiangsu"]
    jiangsu.only = lambda request: request.method == "POST" and "settlements" in request.url.path
    jiangsu.mode = "lose"
    bill = await world.settle("jiangsu", MOTHER, "700.00", "100.00", "js-bill-1")
    assert bill["status"] == "SUBMITTED"
    assert bill["settlement"] is None
    [hold] = await world.holds("hebei", SON)
    assert hold["status"] == "HELD"  # not confirmed before Jiangsu's answer is known
    world.provinces.switches["jiangsu"].mode = "ok"

    settlements = world.app.state.crossing
    assert await settlements.resume() == 1
    [hold] = await world.holds("hebei", SON)
    assert (hold["status"], hold["used"]) == ("CONFIRMED", "600.00")
    assert len(await world.settlements("jiangsu", MOTHER)) == 1  # settled once
    retried = await world.settle("jiangsu", MOTHER, "700.00", "100.00", "js-bill-1")
    assert paid(retried) == ("0.00", "600.00", "0.00", "刘*", "13")
    assert await settlements.resume() == 0
    assert await world.quota_left("hebei", SON) == Decimal("400.00")


REVERSE = """mutation($id: ID!) { reverseSettlement(settlementId: $id, reason: "entered twice") {
  settlement { status mutualAidPaid } errors { code } } }"""


async def test_a_reversal_returns_the_money_to_the_quota_once(world: World) -> None:
    await world.bind(SON, MOTHER, "PARENT", "1000.00")
    bill = await world.settle("jiangsu", MOTHER, "700.00", "100.00", "js-bill-1")
    assert await world.quota_left("hebei", SON) == Decimal("400.00")
    token = world.cashier("jiangsu")
    undone = await world.gql(REVERSE, {"id": bill["settlement"]["id"]}, token=token)
    assert undone["data"]["reverseSettlement"]["settlement"]["status"] == "REVERSED"
    [hold] = await world.holds("hebei", SON)
    assert hold["status"] == "REFUNDED"
    assert await world.quota_left("hebei", SON) == Decimal("1000.00")
    [settled] = await world.settlements("jiangsu", MOTHER)
    assert settled["reversed_at"] is not None

    again = await world.gql(REVERSE, {"id": bill["settlement"]["id"]}, token=token)
    assert again["data"]["reverseSettlement"]["errors"] == [{"code": "SETTLEMENT_ALREADY_REVERSED"}]
    assert await world.quota_left("hebei", SON) == Decimal("1000.00")  # once
    assert await world.app.state.crossing.resume() == 0


def hebei_infno(infno: str) -> Any:
    """Picks Hebei's requests of one transaction (its envelope names it)."""
    return lambda request: json.loads(request.content or b"{}").get("infno") == infno


async def test_a_hold_refused_leaves_the_bill_to_the_patients_province_alone(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Between the choice and the hold, the quota shrank (another bill took it): the
    bill is settled without it, as if nobody paid by mutual aid."""
    await world.bind(SON, MOTHER, "PARENT", "1000.00")

    async def spent(*args: Any, **kwargs: Any) -> dict[str, Any]:
        raise SandboxRefusal("quota_insufficient")

    monkeypatch.setattr(world.system("hebei"), "hold", spent)
    bill = await world.settle("jiangsu", MOTHER, "700.00", "100.00", "js-bill-1")
    assert paid(bill) == ("0.00", "0.00", "600.00", None, None)
    assert await world.holds("hebei", SON) == []
    assert await world.quota_left("hebei", SON) == Decimal("1000.00")
    assert await world.app.state.crossing.resume() == 0


async def test_a_lost_hold_and_a_lost_confirmation_are_finished_by_the_reconciler(
    world: World,
) -> None:
    await world.bind(SON, MOTHER, "PARENT", "1000.00")
    hebei = world.provinces.switches["hebei"]
    hebei.only, hebei.mode = hebei_infno("2711"), "lose"  # the hold is made; its answer lost
    bill = await world.settle("jiangsu", MOTHER, "700.00", "100.00", "js-bill-1")
    assert bill["status"] == "SUBMITTED"
    assert len(await world.settlements("jiangsu", MOTHER)) == 0  # not settled before the hold
    hebei.only = hebei_infno("2712")  # now the confirmation's answer is lost
    settlements = world.app.state.crossing
    await settlements.resume()
    [hold] = await world.holds("hebei", SON)
    assert hold["status"] == "CONFIRMED"  # made, though its answer was lost
    assert len(await world.settlements("jiangsu", MOTHER)) == 1
    hebei.mode = "ok"
    assert await settlements.resume() == 1
    assert await settlements.resume() == 0
    again = await world.settle("jiangsu", MOTHER, "700.00", "100.00", "js-bill-1")
    assert paid(again) == ("0.00", "600.00", "0.00", "刘*", "13")
    [hold] = await world.holds("hebei", SON)
    assert (hold["status"], hold["used"]) == ("CONFIRMED", "600.00")


async def test_a_key_used_again_for_another_bill_is_refused(world: World) -> None:
    await world.bind(SON, MOTHER, "PARENT", "1000.00")
    await world.settle("jiangsu", MOTHER, "700.00", "100.00", "js-bill-1")
    other = await world.settle("jiangsu", MOTHER, "900.00", "100.00", "js-bill-1")
    assert other["errors"] == [{"code": "IDEMPOTENCY_KEY_REUSED", "field": "idempotencyKey"}]
    assert len(await world.holds("hebei", SON)) == 1


async def test_a_lost_refund_is_finished_by_the_reconciler_once(world: World) -> None:
    await world.bind(SON, MOTHER, "PARENT", "1000.00")
    bill = await world.settle("jiangsu", MOTHER, "700.00", "100.00", "js-bill-1")
    hebei = world.provinces.switches["hebei"]
    hebei.only, hebei.mode = hebei_infno("2714"), "lose"
    token = world.cashier("jiangsu")
    undone = await world.gql(REVERSE, {"id": bill["settlement"]["id"]}, token=token)
    assert undone["data"]["reverseSettlement"]["settlement"]["status"] == "REVERSED"
    [hold] = await world.holds("hebei", SON)
    assert hold["status"] == "REFUNDED"  # done, its answer lost
    hebei.mode = "ok"
    settlements = world.app.state.crossing
    assert await settlements.resume() == 1
    assert await world.quota_left("hebei", SON) == Decimal("1000.00")
    assert await settlements.resume() == 0


async def test_a_transfer_that_fails_to_move_on_is_tried_again_next_pass(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    await world.bind(SON, MOTHER, "PARENT", "1000.00")
    hebei = world.provinces.switches["hebei"]
    hebei.only, hebei.mode = hebei_infno("2711"), "lose"
    bill = await world.settle("jiangsu", MOTHER, "700.00", "100.00", "js-bill-1")
    assert bill["status"] == "SUBMITTED"
    hebei.mode = "ok"
    crossing = world.app.state.crossing
    real = crossing.drive

    async def broken(transfer: Any) -> Any:
        raise RuntimeError("a bug of the moment")

    monkeypatch.setattr(crossing, "drive", broken)
    assert await crossing.resume() == 0  # logged; the transfer is kept
    monkeypatch.setattr(crossing, "drive", real)
    assert await crossing.resume() == 1
    [hold] = await world.holds("hebei", SON)
    assert hold["status"] == "CONFIRMED"

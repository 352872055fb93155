"""The gateway's own rules, each seen refusing on its own.

The sandbox provinces repeat the gateway's checks, so an end-to-end refusal does not
say whose it was: a rule dropped from the gateway goes unnoticed while the province
refuses in its place. Here each province's writes are spied on (`Asked`): a rule the
gateway keeps refuses before the province is asked anything, and what the gateway lets
through (a bill paid wholly by the fund) reaches the province and is carried out.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest

from gateway.common.auth import INSTITUTION, Institution, mint_token
from gateway.common.ids import encode_id
from sandbox.engine import ProvinceSystem
from tests.conftest import WANG_EIGHT, GraphQL, Provinces, gateway, person

PAYLOAD = "{ binding { id status } errors { code field } }"
RESPOND = f"""mutation($id: ID!, $accept: Boolean!) {{
  respondToMutualAidBinding(bindingId: $id, accept: $accept) {PAYLOAD} }}"""
UNBIND = f"mutation($id: ID!) {{ unbindMutualAid(bindingId: $id) {PAYLOAD} }}"
SETTLEMENT = """settlement { status totalAmount fundPaid selfPay ownAccountPaid mutualAidPaid
  cashDue patientBalanceAfter }"""
SETTLE = f"""mutation($i: SettleInput!) {{ settle(input: $i) {{
  {SETTLEMENT} errors {{ code field }} }} }}"""
REVERSE = f"""mutation($id: ID!, $k: String) {{
  reverseSettlement(settlementId: $id, reason: "entered twice", idempotencyKey: $k) {{
    {SETTLEMENT} errors {{ code field }} }} }}"""
WRITES = ("bind", "respond", "unbind", "settle", "reverse")
CASHIER = "130102196001010011"
HOSPITALS = {"hebei": "H13010001", "jiangsu": "H32010001", "henan": "H41010001"}
CODES = {"hebei": "13", "jiangsu": "32", "henan": "41"}

Payload = dict[str, Any]


class Asked:
    """A province's writes as its system is asked for them (it still carries them out)."""

    def __init__(self, system: ProvinceSystem, monkeypatch: pytest.MonkeyPatch) -> None:
        self.writes: list[tuple[str, dict[str, Any]]] = []
        self.unseen: dict[str, Any] = {}  # the writes themselves, to stage a test's world
        for name in WRITES:
            real = self.unseen[name] = getattr(system, name)

            async def spy(*args: Any, _name: str = name, _real: Any = real, **kwargs: Any) -> Any:
                self.writes.append((_name, kwargs))
                return await _real(*args, **kwargs)

            monkeypatch.setattr(system, name, spy)

    def of(self, operation: str) -> list[dict[str, Any]]:
        return [given for name, given in self.writes if name == operation]


class Held:
    """A province's reads of persons, each held until the test lets it go (by the ID
    numbers it asks for): so that two requests are where the test wants them at once."""

    def __init__(self, system: ProvinceSystem, monkeypatch: pytest.MonkeyPatch) -> None:
        self.waiting: dict[str, list[asyncio.Event]] = {}
        self._arrived = asyncio.Condition()
        real = system.persons

        async def held(cert_nos: Sequence[str]) -> list[dict[str, Any]]:
            go = asyncio.Event()
            async with self._arrived:
                for cert_no in cert_nos:
                    self.waiting.setdefault(cert_no, []).append(go)
                self._arrived.notify_all()
            await go.wait()
            return await real(cert_nos)

        monkeypatch.setattr(system, "persons", held)

    async def arrived(self, *keys: str, reads: int = 1) -> None:
        """Wait until the persons of these roster keys are being read (``reads`` times)."""
        wanted = [person(k)["certNo"] for k in keys]
        async with asyncio.timeout(10), self._arrived:
            await self._arrived.wait_for(
                lambda: all(len(self.waiting.get(c, ())) >= reads for c in wanted)
            )

    def release(self, key: str) -> None:
        for go in self.waiting[person(key)["certNo"]]:
            go.set()


class World:
    """The gateway over the three sandboxes, each with its writes spied on."""

    def __init__(self, gql: GraphQL, provinces: Provinces, asked: dict[str, Asked]) -> None:
        self.gql = gql
        self.provinces = provinces
        self.asked = asked

    def system(self, name: str) -> ProvinceSystem:
        return self.provinces.system(name)

    async def bound(self, name: str, authorizer: str, relative: str, relation: str) -> str:
        """A binding made at the province directly (no gateway, not spied on): its global id."""
        row = await self.asked[name].unseen["bind"](
            authorizer=person(authorizer)["certNo"],
            beneficiary=person(relative)["certNo"],
            beneficiary_name=person(relative)["name"],
            relation=relation,
            commitment_signed=True,
        )
        return encode_id("MutualAidBinding", CODES[name], row["id"])

    async def respond(self, actor: str, binding: str, *, accept: bool = True) -> Payload:
        result = await self.gql(RESPOND, {"id": binding, "accept": accept}, as_=actor)
        payload: Payload = result["data"]["respondToMutualAidBinding"]
        return payload

    async def unbind(self, actor: str, binding: str) -> Payload:
        result = await self.gql(UNBIND, {"id": binding}, as_=actor)
        payload: Payload = result["data"]["unbindMutualAid"]
        return payload

    def hospital(self, code: str) -> str:
        """A cashier's token at the hospital of that code."""
        at = Institution(code, "HOSPITAL")
        return mint_token(CASHIER, self.gql.auth, roles=frozenset({INSTITUTION}), institution=at)

    async def settle(
        self,
        province: str,
        patient: str,
        total: str,
        fund: str,
        key: str,
        *,
        hospital: str | None = None,
    ) -> Payload:
        token = self.hospital(hospital or HOSPITALS[province])
        given = {
            "patientCertNo": person(patient)["certNo"],
            "medicalType": "OUTPATIENT",
            "totalAmount": total,
            "fundPaid": fund,
            "idempotencyKey": key,
        }
        result = await self.gql(SETTLE, {"i": given}, token=token)
        assert "errors" not in result, result
        payload: Payload = result["data"]["settle"]
        return payload

    async def settled(self, patient: str, key: str, hospital: str = HOSPITALS["hebei"]) -> str:
        """A bill of 100.00 settled for ``patient`` at a Hebei hospital (not spied on):
        its global id."""
        row = await self.asked["hebei"].unseen["settle"](
            institution=hospital,
            idempotency_key=key,
            patient=person(patient)["certNo"],
            medical_type="OUTPATIENT",
            total="100.00",
            fund_paid="40.00",
        )
        return encode_id("Settlement", "13", row["id"])

    async def reverse(self, settlement: str, token: str, key: str | None = None) -> Payload:
        result = await self.gql(REVERSE, {"id": settlement, "k": key}, token=token)
        assert "errors" not in result, result
        payload: Payload = result["data"]["reverseSettlement"]
        return payload


@pytest.fixture
async def world(provinces: Provinces, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[World]:
    asked = {name: Asked(provinces.system(name), monkeypatch) for name in provinces.apps}
    async with gateway(dict(provinces.switches)) as gql:
        yield World(gql, provinces, asked)


def refused(payload: Payload) -> tuple[str, str | None]:
    assert payload["binding"] is None, payload
    [error] = payload["errors"]
    return error["code"], error["field"]


# -- who may answer a pending binding, and when ------------------------------------------


async def test_nobody_but_the_invited_relative_answers_and_jiangsu_is_never_asked(
    world: World,
) -> None:
    pending = await world.bound("jiangsu", "js_chen_zhiqiang", "js_liu_fang", "SPOUSE")
    for other in ("js_chen_zhiqiang", "js_chen_chen", "js_huang_wei"):
        assert refused(await world.respond(other, pending)) == ("FORBIDDEN", "bindingId")
    assert world.asked["jiangsu"].writes == []

    accepted = await world.respond("js_liu_fang", pending)
    assert accepted["binding"]["status"] == "ACTIVE"
    assert [given["actor"] for given in world.asked["jiangsu"].of("respond")] == [
        person("js_liu_fang")["certNo"]
    ]


@pytest.mark.parametrize("accept", [True, False])
async def test_a_binding_that_is_not_pending_is_not_answered_and_jiangsu_is_never_asked(
    world: World, accept: bool
) -> None:
    son = await world.bound("jiangsu", "js_chen_zhiqiang", "js_chen_chen", "CHILD")  # ACTIVE
    assert refused(await world.respond("js_chen_chen", son, accept=accept)) == (
        "INVALID_BINDING_STATE",
        "bindingId",
    )
    spouse = await world.bound("jiangsu", "js_chen_zhiqiang", "js_liu_fang", "SPOUSE")
    assert (await world.respond("js_liu_fang", spouse))["binding"]["status"] == "ACTIVE"
    asked_before = len(world.asked["jiangsu"].writes)
    assert refused(await world.respond("js_liu_fang", spouse, accept=accept)) == (
        "INVALID_BINDING_STATE",
        "bindingId",
    )
    assert len(world.asked["jiangsu"].writes) == asked_before


# -- who may unbind, and what --------------------------------------------------------------


async def test_nobody_but_the_authorizer_unbinds_and_hebei_is_never_asked(world: World) -> None:
    binding = await world.bound("hebei", "hb_wang_jianguo", "hb_wang_deming", "PARENT")
    for other in ("hb_wang_deming", "hb_li_xiuying", "hb_liu_yang"):
        assert refused(await world.unbind(other, binding)) == ("FORBIDDEN", "bindingId")
    assert world.asked["hebei"].writes == []

    assert (await world.unbind("hb_wang_jianguo", binding))["binding"]["status"] == "UNBOUND"
    assert [given["actor"] for given in world.asked["hebei"].of("unbind")] == [
        person("hb_wang_jianguo")["certNo"]
    ]


async def test_a_binding_already_ended_is_not_unbound_again_and_hebei_is_never_asked(
    world: World,
) -> None:
    binding = await world.bound("hebei", "hb_wang_jianguo", "hb_wang_deming", "PARENT")
    assert (await world.unbind("hb_wang_jianguo", binding))["binding"]["status"] == "UNBOUND"
    assert refused(await world.unbind("hb_wang_jianguo", binding)) == (
        "INVALID_BINDING_STATE",
        "bindingId",
    )
    assert len(world.asked["hebei"].of("unbind")) == 1


async def test_a_declined_binding_is_not_unbound_and_jiangsu_is_never_asked(world: World) -> None:
    spouse = await world.bound("jiangsu", "js_huang_wei", "js_wu_ting", "SPOUSE")
    assert (await world.respond("js_wu_ting", spouse, accept=False))["binding"]["status"] == (
        "DECLINED"
    )
    assert refused(await world.unbind("js_huang_wei", spouse)) == (
        "INVALID_BINDING_STATE",
        "bindingId",
    )
    assert world.asked["jiangsu"].of("unbind") == []


# -- the cap ---------------------------------------------------------------------------------


async def test_hebeis_ninth_relative_is_refused_by_the_gateway_before_hebei_is_asked(
    world: World,
) -> None:
    for relative, relation in WANG_EIGHT:
        await world.bound("hebei", "hb_wang_jianguo", relative, relation)
    payload = await world.gql.bind("hb_wang_jianguo", "hb_wang_yue", "CHILD")
    assert refused(payload) == ("BINDING_LIMIT_REACHED", None)
    assert world.asked["hebei"].writes == []


async def test_hebeis_eighth_relative_is_bound(world: World) -> None:
    for relative, relation in WANG_EIGHT[:7]:
        await world.bound("hebei", "hb_wang_jianguo", relative, relation)
    payload = await world.gql.bind("hb_wang_jianguo", "hb_wang_yue", "CHILD")
    assert payload["errors"] == []
    assert payload["binding"]["status"] == "ACTIVE"
    assert len(world.asked["hebei"].of("bind")) == 1


# -- settlement: the bill's amounts ------------------------------------------------------------


@pytest.mark.parametrize("province", sorted(HOSPITALS))
async def test_a_bill_paid_wholly_by_the_fund_is_settled_with_nothing_to_pay(
    world: World, province: str
) -> None:
    patient = {"hebei": "hb_wang_jianguo", "jiangsu": "js_huang_wei", "henan": "hn_zhao_lei"}[
        province
    ]
    balance = person(patient)["accountBalance"]
    payload = await world.settle(province, patient, "100.00", "100.00", f"whole-{province}")
    assert payload["errors"] == []
    assert payload["settlement"] == {
        "status": "SETTLED",
        "totalAmount": "100.00",
        "fundPaid": "100.00",
        "selfPay": "0.00",
        "ownAccountPaid": "0.00",
        "mutualAidPaid": "0.00",
        "cashDue": "0.00",
        "patientBalanceAfter": balance,
    }
    assert len(world.asked[province].of("settle")) == 1


@pytest.mark.parametrize(
    ("total", "fund", "code", "field"),
    [
        ("100.00", "100.01", "FUND_PAID_EXCEEDS_TOTAL", "fundPaid"),
        ("100.00", "-0.01", "AMOUNT_NEGATIVE", "fundPaid"),
        ("0.00", "0.00", "AMOUNT_NOT_POSITIVE", "totalAmount"),
        ("99999999.99", "99999999.99", None, None),
        ("100000000.00", "0.00", "AMOUNT_TOO_LARGE", "totalAmount"),
    ],
)
async def test_a_bills_amounts_are_checked_by_the_gateway_before_the_province_is_asked(
    world: World, total: str, fund: str, code: str | None, field: str | None
) -> None:
    payload = await world.settle("hebei", "hb_wang_jianguo", total, fund, "amounts")
    if code is None:  # the largest bill, paid wholly by the fund: settled
        assert payload["errors"] == []
        assert payload["settlement"]["selfPay"] == "0.00"
        assert len(world.asked["hebei"].of("settle")) == 1
        return
    assert payload == {"settlement": None, "errors": [{"code": code, "field": field}]}
    assert world.asked["hebei"].writes == []


# -- settlement: who undoes what -----------------------------------------------------------------


async def test_only_an_institution_reverses_and_hebei_is_never_asked(world: World) -> None:
    bill = await world.settled("hb_wang_jianguo", "bill-1")
    person_token = world.gql.token("hb_wang_jianguo")  # the patient: no INSTITUTION role
    payload = await world.reverse(bill, person_token)
    assert payload == {"settlement": None, "errors": [{"code": "FORBIDDEN", "field": None}]}
    assert world.asked["hebei"].writes == []


@pytest.mark.parametrize("key", ["has space", "", "k" * 65, "é"])
async def test_a_reversal_key_that_is_no_key_is_refused_before_hebei_is_asked(
    world: World, key: str
) -> None:
    bill = await world.settled("hb_wang_jianguo", "bill-1")
    payload = await world.reverse(bill, world.hospital(HOSPITALS["hebei"]), key)
    assert payload == {
        "settlement": None,
        "errors": [{"code": "INVALID_IDEMPOTENCY_KEY", "field": "idempotencyKey"}],
    }
    assert world.asked["hebei"].writes == []


@pytest.mark.parametrize(
    "settlement",
    [
        pytest.param("garbage", id="garbage"),
        pytest.param(encode_id("Settlement", "99", "HBS00000001"), id="an unknown province"),
        pytest.param(encode_id("MutualAidBinding", "13", "HBS00000001"), id="another kind"),
    ],
)
async def test_an_id_naming_no_settlement_is_forbidden_before_any_province_is_asked(
    world: World, settlement: str
) -> None:
    payload = await world.reverse(settlement, world.hospital(HOSPITALS["hebei"]))
    assert payload == {
        "settlement": None,
        "errors": [{"code": "FORBIDDEN", "field": "settlementId"}],
    }
    assert all(asked.writes == [] for asked in world.asked.values())


async def test_two_institutions_reversal_keys_are_their_own(world: World) -> None:
    mine = await world.settled("hb_wang_jianguo", "bill-1", hospital="H13010001")
    theirs = await world.settled("hb_li_xiuying", "bill-1", hospital="H13010002")
    for bill, hospital in ((mine, "H13010001"), (theirs, "H13010002")):
        payload = await world.reverse(bill, world.hospital(hospital), "undo-1")
        assert payload["errors"] == []
        assert payload["settlement"]["status"] == "REVERSED"
    assert len(world.asked["hebei"].of("reverse")) == 2


# -- settlement: the institution's key -------------------------------------------------------------


async def test_a_bill_sent_again_is_answered_from_the_record_asking_no_province(
    world: World,
) -> None:
    def asked() -> int:
        return sum(switch.calls for switch in world.provinces.switches.values())

    first = await world.settle("hebei", "hb_wang_jianguo", "100.00", "40.00", "again-1")
    refused = await world.settle("hebei", "hb_zhou_laotai", "100.00", "40.00", "again-2")
    assert refused["errors"] == [{"code": "PATIENT_NOT_INSURED", "field": "patientCertNo"}]
    before = asked()
    assert await world.settle("hebei", "hb_wang_jianguo", "100.00", "40.00", "again-1") == first
    assert await world.settle("hebei", "hb_zhou_laotai", "100.00", "40.00", "again-2") == refused
    assert asked() == before


@pytest.mark.parametrize("cert_no", ["13010219760315001", "130102197603150017", "x" * 18])
async def test_a_patient_id_number_that_is_none_is_refused_before_any_province_is_asked(
    world: World, cert_no: str
) -> None:
    token = world.hospital(HOSPITALS["hebei"])
    given = {
        "patientCertNo": cert_no,
        "medicalType": "OUTPATIENT",
        "totalAmount": "10.00",
        "fundPaid": "0.00",
        "idempotencyKey": "bad-id",
    }
    result = await world.gql(SETTLE, {"i": given}, token=token)
    assert result["data"]["settle"] == {
        "settlement": None,
        "errors": [{"code": "INVALID_CERT_NO", "field": "patientCertNo"}],
    }
    assert sum(switch.calls for switch in world.provinces.switches.values()) == 0


async def test_two_bills_checked_at_once_under_one_key_settle_one_and_refuse_the_other(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both pass the key's check before either is recorded; the first recorded is sent."""
    held = Held(world.system("hebei"), monkeypatch)
    bills = [
        asyncio.create_task(world.settle("hebei", "hb_wang_jianguo", total, "0.00", "one-key"))
        for total in ("100.00", "200.00")
    ]
    await held.arrived("hb_wang_jianguo", reads=2)  # both past the key's check
    held.release("hb_wang_jianguo")
    payloads = await asyncio.gather(*bills)
    settled = [p for p in payloads if p["settlement"] is not None]
    refused = [p["errors"] for p in payloads if p["settlement"] is None]
    assert len(settled) == 1
    assert refused == [[{"code": "IDEMPOTENCY_KEY_REUSED", "field": "idempotencyKey"}]]
    assert len(world.asked["hebei"].of("settle")) == 1


async def test_a_bill_refused_here_after_another_took_its_key_is_told_the_key_is_reused(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    held = Held(world.system("hebei"), monkeypatch)
    good = asyncio.create_task(world.settle("hebei", "hb_wang_jianguo", "10.00", "0.00", "k"))
    lapsed = asyncio.create_task(world.settle("hebei", "hb_zhou_laotai", "10.00", "0.00", "k"))
    await held.arrived("hb_wang_jianguo", "hb_zhou_laotai")  # both past the key's check
    held.release("hb_wang_jianguo")
    assert (await good)["errors"] == []
    held.release("hb_zhou_laotai")  # not insured: refused here, but the key is taken
    assert (await lapsed) == {
        "settlement": None,
        "errors": [{"code": "IDEMPOTENCY_KEY_REUSED", "field": "idempotencyKey"}],
    }


async def test_an_unsigned_commitment_is_refused_by_the_gateway_before_jiangsu_is_asked(
    world: World,
) -> None:
    """Jiangsu asks for the commitment letter (承诺书); the gateway knows it from the
    policy and refuses an unsigned binding itself, after it has read the civil record."""
    payload = await world.gql.bind(
        "js_chen_zhiqiang", "js_chen_chen", "CHILD", commitmentSigned=False
    )
    assert refused(payload) == ("COMMITMENT_REQUIRED", "commitmentSigned")
    assert world.asked["jiangsu"].writes == []

"""Settlement at designated institutions, end to end through the ASGI app, every province."""

from __future__ import annotations

import asyncio
import json
from decimal import Decimal
from typing import Any

import httpx
import pytest

from gateway.common.auth import ADMIN, INSTITUTION, Institution, mint_token
from gateway.common.certno import check_character
from tests.conftest import NOWHERE, GraphQL, Sandboxes, gateway, person

STAFF = "11010119900101001" + check_character("11010119900101001")  # the cashier
HOSPITAL = Institution("H13010001", "HOSPITAL")
PHARMACY = Institution("P13010001", "PHARMACY")

SETTLEMENT = """settlement { id status medicalType institutionCode patient { name certNo }
  totalAmount fundPaid selfPay ownAccountPaid mutualAidPaid mutualAidPayer { name certNo }
  cashDue patientBalanceAfter mutualAidPayerBalanceAfter province { code } settledAt
  reversedAt reversalReason }"""
SETTLE = f"""mutation Settle($input: SettleInput!) {{
  settle(input: $input) {{ {SETTLEMENT} errors {{ code message field }} }}
}}"""
REVERSE = f"""mutation Reverse($id: ID!, $reason: String!) {{
  reverseSettlement(settlementId: $id, reason: $reason) {{ {SETTLEMENT} errors {{ code field }} }}
}}"""
ME = "{ me { account { balance } } }"


def token(gql: GraphQL, institution: Institution = HOSPITAL) -> str:
    return mint_token(STAFF, gql.auth, roles=frozenset({INSTITUTION}), institution=institution)


async def settle(
    gql: GraphQL,
    patient: str,
    total: str,
    fund: str,
    *,
    key: str = "bill-1",
    medical_type: str = "OUTPATIENT",
    institution: Institution = HOSPITAL,
    as_token: str | None = None,
) -> dict[str, Any]:
    given = {
        "patientCertNo": person(patient)["certNo"],
        "medicalType": medical_type,
        "totalAmount": total,
        "fundPaid": fund,
        "idempotencyKey": key,
    }
    result = await gql(SETTLE, {"input": given}, token=as_token or token(gql, institution))
    assert "errors" not in result, result
    payload: dict[str, Any] = result["data"]["settle"]
    return payload


async def bind(gql: GraphQL, authorizer: str, relative: str, relation: str = "CHILD") -> None:
    payload = await gql.bind(authorizer, relative, relation)
    assert payload["binding"]["status"] == "ACTIVE", payload


async def balance(gql: GraphQL, key: str) -> Decimal:
    result = await gql(ME, as_=key)
    return Decimal(result["data"]["me"]["account"]["balance"])


def refusal(payload: dict[str, Any]) -> tuple[str, str | None]:
    assert payload["settlement"] is None
    error = payload["errors"][0]
    return error["code"], error["field"]


async def test_the_daughter_of_two_is_paid_from_the_larger_balance_only(gql: GraphQL) -> None:
    for parent in ("hb_wang_jianguo", "hb_li_xiuying"):  # 3200.00 and 1200.00
        await bind(gql, parent, "hb_wang_yue")
    paid = await settle(gql, "hb_wang_yue", "5000.00", "600.00")
    done = paid["settlement"]

    assert paid["errors"] == []
    assert done["status"] == "SETTLED"
    assert done["selfPay"] == "4400.00"
    assert done["ownAccountPaid"] == "0.00"  # resident insurance: no account
    assert done["mutualAidPaid"] == "3200.00"
    assert done["mutualAidPayer"] == {"name": "王*国", "certNo": "130102********0016"}
    assert done["cashDue"] == "1200.00"  # never a second authorizer
    assert done["mutualAidPayerBalanceAfter"] == "0.00"
    assert done["patientBalanceAfter"] is None
    assert done["province"] == {"code": "13"}
    assert done["patient"] == {"name": "王*", "certNo": "130102********002X"}
    assert await balance(gql, "hb_wang_jianguo") == Decimal("0.00")
    assert await balance(gql, "hb_li_xiuying") == Decimal("1200.00")


async def test_the_zero_balance_authorizer_pays_nothing(gql: GraphQL) -> None:
    await bind(gql, "hb_liu_yang", "hb_liu_yinuo")
    done = (await settle(gql, "hb_liu_yinuo", "300.00", "100.00"))["settlement"]
    assert done["mutualAidPaid"] == "0.00"
    assert done["mutualAidPayer"] is None
    assert done["cashDue"] == "200.00"
    why = await gql(
        "query($c: String!) { mutualAidDiagnosis(relativeCertNo: $c) { reasons { code } } }",
        {"c": person("hb_liu_yinuo")["certNo"]},
        as_="hb_liu_yang",
    )
    assert why["data"]["mutualAidDiagnosis"]["reasons"] == [{"code": "BALANCE_ZERO"}]


async def test_an_employee_beneficiarys_own_account_pays_first(gql: GraphQL) -> None:
    await bind(gql, "hb_wang_jianguo", "hb_wang_lei")  # 王磊 has 600.00 of his own
    done = (await settle(gql, "hb_wang_lei", "1000.00", "200.00"))["settlement"]
    assert done["ownAccountPaid"] == "600.00"
    assert done["mutualAidPaid"] == "200.00"
    assert done["cashDue"] == "0.00"
    assert done["patientBalanceAfter"] == "0.00"
    assert done["mutualAidPayerBalanceAfter"] == "3000.00"


@pytest.mark.parametrize(
    ("authorizers", "patient", "payer"),
    [
        # Jiangsu: the adapter tells the province who pays (the larger balance)
        (["js_chen_zhiqiang", "js_liu_fang"], "js_chen_chen", "320102********0010"),
        # Henan: one authorizer only
        (["hn_zhao_lei"], "hn_zhao_zihan", "410102********0011"),
    ],
)
async def test_every_province_settles_the_same_way(
    gql: GraphQL, authorizers: list[str], patient: str, payer: str
) -> None:
    for authorizer in authorizers:
        await bind(gql, authorizer, patient)
    done = (await settle(gql, patient, "1000.00", "300.00"))["settlement"]
    assert done["mutualAidPayer"]["certNo"] == payer
    assert done["mutualAidPaid"] == "700.00"
    assert done["cashDue"] == "0.00"


async def test_a_replayed_key_charges_once(gql: GraphQL) -> None:
    await bind(gql, "hb_wang_jianguo", "hb_wang_jing")
    first = (await settle(gql, "hb_wang_jing", "500.00", "100.00", key="k-7"))["settlement"]
    again = (await settle(gql, "hb_wang_jing", "500.00", "100.00", key="k-7"))["settlement"]
    assert again == first
    assert await balance(gql, "hb_wang_jianguo") == Decimal("2800.00")
    other = await settle(gql, "hb_wang_jing", "900.00", "100.00", key="k-7")
    assert refusal(other) == ("IDEMPOTENCY_KEY_REUSED", "idempotencyKey")
    # the key is the institution's own: another institution's k-7 is another bill
    elsewhere = await settle(
        gql,
        "hb_wang_jing",
        "500.00",
        "100.00",
        key="k-7",
        institution=Institution("H2", "HOSPITAL"),
    )
    assert elsewhere["settlement"]["id"] != first["id"]
    assert await balance(gql, "hb_wang_jianguo") == Decimal("2400.00")


async def test_fifty_concurrent_settlements_never_overdraw(gql: GraphQL) -> None:
    await bind(gql, "hb_wang_jianguo", "hb_wang_jing")  # 3200.00 to share
    bills = [
        settle(gql, "hb_wang_jing", "100.00", "10.00", key=f"concurrent-{i}") for i in range(50)
    ]
    done = [p["settlement"] for p in await asyncio.gather(*bills)]

    paid = sum(Decimal(s["mutualAidPaid"]) for s in done)
    cash = sum(Decimal(s["cashDue"]) for s in done)
    after = await balance(gql, "hb_wang_jianguo")
    assert after >= 0
    assert paid == Decimal("3200.00") - after  # exactly what left the account
    assert paid + cash == Decimal("4500.00")  # 50 × 90.00 self-pay
    assert after == Decimal("0.00")  # 4500 > 3200: all of it
    assert len({s["id"] for s in done}) == 50
    assert sorted(Decimal(s["mutualAidPayerBalanceAfter"] or "0") for s in done)[0] == 0


async def test_a_reversal_restores_balances_once(gql: GraphQL) -> None:
    await bind(gql, "hb_wang_jianguo", "hb_wang_lei")
    done = (await settle(gql, "hb_wang_lei", "1000.00", "200.00"))["settlement"]
    assert await balance(gql, "hb_wang_lei") == Decimal("0.00")

    mine = token(gql)
    other = token(gql, Institution("H9", "HOSPITAL"))
    assert (await gql(REVERSE, {"id": done["id"], "reason": "x"}, token=other))["data"][
        "reverseSettlement"
    ]["errors"] == [{"code": "FORBIDDEN", "field": "settlementId"}]
    blank = await gql(REVERSE, {"id": done["id"], "reason": "  "}, token=mine)
    assert blank["data"]["reverseSettlement"]["errors"] == [
        {"code": "REASON_REQUIRED", "field": "reason"}
    ]
    undone = (await gql(REVERSE, {"id": done["id"], "reason": "录入错误"}, token=mine))["data"][
        "reverseSettlement"
    ]
    assert undone["settlement"]["status"] == "REVERSED"
    assert undone["settlement"]["reversalReason"] == "录入错误"
    assert await balance(gql, "hb_wang_lei") == Decimal("600.00")
    assert await balance(gql, "hb_wang_jianguo") == Decimal("3200.00")

    twice = (await gql(REVERSE, {"id": done["id"], "reason": "again"}, token=mine))["data"][
        "reverseSettlement"
    ]
    assert twice["errors"] == [{"code": "SETTLEMENT_ALREADY_REVERSED", "field": "settlementId"}]
    assert await balance(gql, "hb_wang_jianguo") == Decimal("3200.00")
    # the key still names that settlement: a replay returns its first outcome (the
    # settlement as it was made), charging nothing
    replay = (await settle(gql, "hb_wang_lei", "1000.00", "200.00"))["settlement"]
    assert (replay["id"], replay["status"]) == (done["id"], "SETTLED")
    assert await balance(gql, "hb_wang_lei") == Decimal("600.00")


@pytest.mark.parametrize(
    ("total", "fund", "code", "field"),
    [
        ("0", "0", "AMOUNT_NOT_POSITIVE", "totalAmount"),
        ("-10.00", "0", "AMOUNT_NOT_POSITIVE", "totalAmount"),
        ("100.00", "-1.00", "AMOUNT_NEGATIVE", "fundPaid"),
        ("100.00", "100.01", "FUND_PAID_EXCEEDS_TOTAL", "fundPaid"),
        ("100000000.00", "0", "AMOUNT_TOO_LARGE", "totalAmount"),
    ],
)
async def test_amounts_are_checked(
    gql: GraphQL, total: str, fund: str, code: str, field: str
) -> None:
    assert refusal(await settle(gql, "hb_wang_jianguo", total, fund)) == (code, field)


async def test_the_institution_and_its_bill_are_checked(gql: GraphQL) -> None:
    at_pharmacy = await settle(gql, "hb_wang_jianguo", "10.00", "0", key="p1", institution=PHARMACY)
    assert refusal(at_pharmacy) == ("MEDICAL_TYPE_NOT_ALLOWED", "medicalType")
    sold = await settle(
        gql,
        "hb_wang_jianguo",
        "10.00",
        "0",
        key="p2",
        institution=PHARMACY,
        medical_type="PHARMACY",
    )
    assert sold["settlement"]["ownAccountPaid"] == "10.00"
    assert refusal(await settle(gql, "hb_wang_jianguo", "10.00", "0", key="has space")) == (
        "INVALID_IDEMPOTENCY_KEY",
        "idempotencyKey",
    )
    a_person = gql.token("hb_wang_jianguo")  # no INSTITUTION role
    assert refusal(
        await settle(gql, "hb_wang_jing", "10.00", "0", key="x1", as_token=a_person)
    ) == (
        "FORBIDDEN",
        None,
    )
    lapsed = await settle(gql, "hb_zhou_laotai", "10.00", "0", key="x2")
    assert refusal(lapsed) == ("PATIENT_NOT_INSURED", "patientCertNo")
    nowhere = await settle(gql, NOWHERE, "10.00", "0", key="x3")
    assert refusal(nowhere) == ("PERSON_NOT_FOUND", "patientCertNo")


@pytest.mark.parametrize("amount", ["12.345", 12.5, "abc", "NaN", "1e40"])
async def test_money_is_two_decimal_strings_never_floats(gql: GraphQL, amount: object) -> None:
    given = {
        "patientCertNo": person("hb_wang_jianguo")["certNo"],
        "medicalType": "OUTPATIENT",
        "totalAmount": amount,
        "fundPaid": "0",
        "idempotencyKey": "k",
    }
    result = await gql(SETTLE, {"input": given}, token=token(gql))
    assert result["data"] is None
    assert "Money" in result["errors"][0]["message"]
    assert result["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    assert await balance(gql, "hb_wang_jianguo") == Decimal("3200.00")


async def test_a_told_province_names_the_largest_balance_even_under_concurrency(
    gql: GraphQL,
) -> None:
    # 陈志强 (5000.00) pays for his mother and his son; 刘芳 (800.00) for the son too
    await bind(gql, "js_chen_zhiqiang", "js_ma_xiulan", "PARENT")
    await bind(gql, "js_chen_zhiqiang", "js_chen_chen")
    await bind(gql, "js_liu_fang", "js_chen_chen")
    mother, son = await asyncio.gather(
        settle(gql, "js_ma_xiulan", "5000.00", "0.00", key="mother"),
        settle(gql, "js_chen_chen", "500.00", "0.00", key="son"),
    )
    # whichever ran first, the son's bill found a funded authorizer: never cash while 刘芳 has 800
    assert son["settlement"]["mutualAidPaid"] == "500.00"
    assert son["settlement"]["cashDue"] == "0.00"
    # and the mother's was paid from 陈志强's balance as it stood: all of it if hers ran
    # first, what the son's left (4500.00, the rest in cash) if his took 陈志强 first
    paid = Decimal(mother["settlement"]["mutualAidPaid"])
    assert paid in (Decimal("5000.00"), Decimal("4500.00"))
    assert paid + Decimal(mother["settlement"]["cashDue"]) == Decimal("5000.00")


async def test_a_key_holds_across_provinces(gql: GraphQL) -> None:
    hebei = await settle(gql, "hb_wang_jianguo", "100.00", "0.00", key="one-key")
    assert hebei["errors"] == []
    jiangsu = await settle(gql, "js_chen_zhiqiang", "100.00", "0.00", key="one-key")
    assert refusal(jiangsu) == ("IDEMPOTENCY_KEY_REUSED", "idempotencyKey")
    assert await balance(gql, "js_chen_zhiqiang") == Decimal("5000.00")


# -- a settlement shows the institution balances: each one is an audited read ---------------

AUDIT = "{ auditLog(first: 10) { actor roles operation fields targets outcome } }"


async def audited(gql: GraphQL) -> list[dict[str, Any]]:
    admin = "11010119850101001" + check_character("11010119850101001")
    result = await gql(AUDIT, token=mint_token(admin, gql.auth, roles=frozenset({ADMIN})))
    entries: list[dict[str, Any]] = result["data"]["auditLog"]
    return entries


@pytest.mark.parametrize(
    "selection", ["settlement { patientBalanceAfter }", "status", "settlement { id }"]
)
async def test_a_settlement_is_logged_as_a_read_of_the_balances_it_shows(
    gql: GraphQL, selection: str
) -> None:
    # a bill the fund pays in full moves no money, and still shows the balance
    given = {
        "patientCertNo": person("hb_wang_jianguo")["certNo"],
        "medicalType": "OUTPATIENT",
        "totalAmount": "0.01",
        "fundPaid": "0.01",
        "idempotencyKey": "probe",
    }
    probe = "mutation($i: SettleInput!) { settle(input: $i) { " + selection + " } }"
    answer = await gql(probe, {"i": given}, token=token(gql))
    assert "errors" not in answer, answer
    shown = await settle(gql, "hb_wang_jianguo", "0.01", "0.01", key="probe")
    assert shown["settlement"]["patientBalanceAfter"] == "3200.00"

    entries = await audited(gql)
    for entry in entries[:2]:  # the probe, whatever it selected, and its replay
        assert entry["fields"] == ["settle", "Settlement.patientBalanceAfter"]
        assert entry["targets"] == ["130102********0016"]
        assert (entry["roles"], entry["outcome"]) == (["INSTITUTION"], "OK")


async def test_a_reversal_is_logged_against_the_people_whose_balances_it_shows(
    gql: GraphQL,
) -> None:
    await bind(gql, "hb_wang_jianguo", "hb_wang_lei")
    done = (await settle(gql, "hb_wang_lei", "1000.00", "200.00"))["settlement"]
    undone = await gql(
        'mutation($id: ID!) { reverseSettlement(settlementId: $id, reason: "录入错误")'
        " { status } }",
        {"id": done["id"]},
        token=token(gql),
    )
    assert "errors" not in undone, undone
    reversal, settlement, *_ = await audited(gql)
    both = ["Settlement.patientBalanceAfter", "Settlement.mutualAidPayerBalanceAfter"]
    assert settlement["fields"] == ["settle", *both]
    assert reversal["fields"] == ["reverseSettlement", *both]
    # the patient, then the authorizer who paid: named by the answer, not by the arguments
    for entry in (settlement, reversal):
        assert entry["targets"] == ["130102********0017", "130102********0016"]


KEYED = """mutation Settle($input: SettleInput!) {
  settle(input: $input) { settlement { id } errors { code field } idempotencyKey } }"""


def bill(patient: str, total: str, key: str, medical_type: str = "OUTPATIENT") -> dict[str, Any]:
    return {
        "patientCertNo": person(patient)["certNo"],
        "medicalType": medical_type,
        "totalAmount": total,
        "fundPaid": "0",
        "idempotencyKey": key,
    }


async def test_every_refusal_answers_under_the_key_the_institution_sent(gql: GraphQL) -> None:
    """The institution matches answers to bills by its key: a refusal judged from the
    bill, one of a caller who may not settle, and one of the gateway's check, each
    comes back under the key sent."""
    cases = [
        (bill("hb_wang_jianguo", "0.00", "judged"), token(gql), "AMOUNT_NOT_POSITIVE"),
        (bill("hb_wang_jing", "10.00", "anyone"), gql.token("hb_wang_jianguo"), "FORBIDDEN"),
        (bill(NOWHERE, "10.00", "nowhere"), token(gql), "PERSON_NOT_FOUND"),
    ]
    for given, as_token, code in cases:
        result = await gql(KEYED, {"input": given}, token=as_token)
        payload = result["data"]["settle"]
        assert payload["errors"][0]["code"] == code
        assert payload["idempotencyKey"] == given["idempotencyKey"]


async def test_a_provinces_own_refusal_reaches_the_institution_at_its_field() -> None:
    """Hebei refuses the bill itself (its patient is insured as far as the gateway can
    tell): the refusal is the institution's answer, pointed at the patient."""
    boxes = Sandboxes()
    async with boxes:
        await boxes.start()
        sandbox = boxes.transports["hebei"]

        async def refusing(request: httpx.Request) -> httpx.Response:
            if json.loads(request.content).get("infno") == "2207":  # settle
                return httpx.Response(
                    200, json={"infcode": 2014, "err_msg": "未参保", "output": {}}
                )
            return await sandbox.handle_async_request(request)

        transports: dict[str, httpx.AsyncBaseTransport] = dict(boxes.transports)
        transports["hebei"] = httpx.MockTransport(refusing)
        async with gateway(transports) as gql:
            result = await gql(
                KEYED, {"input": bill("hb_wang_jianguo", "10.00", "h1")}, token=token(gql)
            )
    payload = result["data"]["settle"]
    assert payload["settlement"] is None
    assert payload["errors"] == [{"code": "PATIENT_NOT_INSURED", "field": "patientCertNo"}]
    assert payload["idempotencyKey"] == "h1"


KEYED_REVERSE = """mutation($id: ID!, $reason: String!, $k: String) {
  reverseSettlement(settlementId: $id, reason: $reason, idempotencyKey: $k) {
    settlement { id status } errors { code field } idempotencyKey } }"""


async def test_a_reversal_answers_under_its_key_and_a_repeat_gets_the_first_answer(
    gql: GraphQL,
) -> None:
    done = (await settle(gql, "hb_wang_jianguo", "100.00", "0.00"))["settlement"]
    mine = token(gql)

    async def reverse(reason: str, key: str, as_token: str = mine) -> dict[str, Any]:
        variables = {"id": done["id"], "reason": reason, "k": key}
        payload: dict[str, Any] = (await gql(KEYED_REVERSE, variables, token=as_token))["data"][
            "reverseSettlement"
        ]
        assert payload["idempotencyKey"] == key
        return payload

    person_token = gql.token("hb_wang_jianguo")
    assert (await reverse("x", "r0", person_token))["errors"][0]["code"] == "FORBIDDEN"
    assert (await reverse("x", "bad key"))["errors"] == [
        {"code": "INVALID_IDEMPOTENCY_KEY", "field": "idempotencyKey"}
    ]
    assert (await reverse(" ", "r1"))["errors"] == [{"code": "REASON_REQUIRED", "field": "reason"}]
    first = await reverse("录入错误", "r2")
    assert first["settlement"]["status"] == "REVERSED"
    assert await reverse("录入错误", "r2") == first  # the first answer, not ALREADY_REVERSED
    again = await reverse("录入错误", "r3")
    assert again["errors"] == [{"code": "SETTLEMENT_ALREADY_REVERSED", "field": "settlementId"}]

"""The national payer rule (`ProvinceAdapter.funded_authorizer`) at each boundary, and
what the provinces that must be told the payer (Jiangsu, Henan) are sent.

The rule: the patient's own account pays first; only what it cannot cover falls to
one authorizer actively bound to the patient, the one with the largest balance above
zero (the earliest binding on a tie). The sandboxes pay the same way whoever is named,
so a payer named when none should be is seen only here.
"""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from xml.etree import ElementTree as ET

import httpx
import pytest
from starlette.applications import Starlette

from adapters.base import (
    Binding,
    BindingStatus,
    MedicalType,
    Party,
    Relation,
    Settlement,
    SettleRequest,
)
from adapters.henan import HenanAdapter
from adapters.jiangsu import JiangsuAdapter
from tests.conftest import Provinces, person
from tests.doubles import Ledger
from tests.test_payer import OWN_ACCOUNT_FIRST

PATIENT = "P"
T0 = dt.datetime(2024, 3, 1, 9, 0, tzinfo=dt.UTC)
ACTIVE, PENDING = BindingStatus.ACTIVE, BindingStatus.PENDING_CONFIRMATION
CENT = Decimal("0.01")


def bound(
    authorizer: str,
    beneficiary: str = PATIENT,
    status: BindingStatus = ACTIVE,
    minutes: int = 0,
) -> Binding:
    """``authorizer`` bound to ``beneficiary``, ``minutes`` after T0."""
    return Binding(
        id=f"{authorizer}>{beneficiary}",
        authorizer=Party(authorizer, f"name of {authorizer}"),
        beneficiary=Party(beneficiary, f"name of {beneficiary}"),
        relation=Relation.CHILD,
        status=status,
        created_at=T0 + dt.timedelta(minutes=minutes),
    )


def money(value: str | None) -> Decimal | None:
    return None if value is None else Decimal(value)


async def payer(ledger: Ledger, owed: str | None = None) -> str | None:
    chosen = await ledger.funded_authorizer(PATIENT, owed=money(owed))
    return None if chosen is None else chosen.cert_no


# -- which authorizer ------------------------------------------------------------------------


async def test_nobody_bound_is_nobody_paying_after_one_read() -> None:
    ledger = Ledger({PATIENT: Decimal("10.00"), "A": Decimal("500.00")}, [bound("A", "X")])
    assert await payer(ledger) is None
    assert await payer(ledger, "100.00") is None
    assert ledger.reads == [("bindings_of", [PATIENT])] * 2


async def test_the_authorizer_with_the_largest_balance_pays() -> None:
    balances = {"A": Decimal("100.00"), "B": Decimal("300.00"), "C": Decimal("299.99")}
    ledger = Ledger(balances, [bound("A", minutes=0), bound("B", minutes=1), bound("C")])
    assert await payer(ledger) == "B"


async def test_on_a_tie_the_earliest_binding_pays_whatever_the_listing_order() -> None:
    balances = {"A": Decimal("300.00"), "B": Decimal("300.00"), "C": Decimal("299.99")}
    listed = [bound("C", minutes=0), bound("A", minutes=5), bound("B", minutes=2)]
    assert await payer(Ledger(balances, listed)) == "B"
    assert await payer(Ledger(balances, listed[::-1])) == "B"


@pytest.mark.parametrize(
    ("balance", "pays"),
    [
        pytest.param("0.00", False, id="an empty account"),
        pytest.param(None, False, id="no account (resident insurance)"),
        pytest.param("0.01", True, id="one cent"),
    ],
)
async def test_only_an_authorizer_with_money_pays(balance: str | None, pays: bool) -> None:
    ledger = Ledger({"A": money(balance)}, [bound("A")])
    assert await payer(ledger) == ("A" if pays else None)


async def test_an_authorizer_the_province_no_longer_knows_is_passed_over() -> None:
    ledger = Ledger({"B": Decimal("1.00")}, [bound("A", minutes=0), bound("B", minutes=1)])
    assert await payer(ledger) == "B"
    assert await payer(Ledger({}, [bound("A")])) is None


@pytest.mark.parametrize(
    "status", [PENDING, BindingStatus.DECLINED, BindingStatus.UNBOUND], ids=lambda s: s.value
)
async def test_only_an_active_binding_pays(status: BindingStatus) -> None:
    balances = {"A": Decimal("9000.00"), "B": Decimal("1.00")}
    ledger = Ledger(balances, [bound("A", status=status), bound("B")])
    assert await payer(ledger) == "B"
    assert await payer(Ledger(balances, [bound("A", status=status)])) is None


async def test_the_patients_own_beneficiaries_never_pay_for_the_patient() -> None:
    """The patient is an authorizer too: those bound *to* the patient are not the
    patient's payers, nor is the patient."""
    balances = {PATIENT: Decimal("800.00"), "Q": Decimal("900.00"), "A": Decimal("5.00")}
    ledger = Ledger(balances, [bound(PATIENT, "Q")])
    assert await payer(ledger) is None
    ledger.bindings.append(bound("A"))
    assert await payer(ledger) == "A"


# -- the patient's own account first ------------------------------------------------------------


@pytest.mark.parametrize(("own", "owed", "pays"), OWN_ACCOUNT_FIRST)
async def test_an_authorizer_pays_only_what_the_patients_own_account_cannot(
    own: str | None, owed: str, pays: bool
) -> None:
    ledger = Ledger({PATIENT: money(own), "A": Decimal("50.00")}, [bound("A")])
    assert await payer(ledger, owed) == ("A" if pays else None)
    assert await payer(ledger) == "A"  # without the bill: who would pay


async def test_a_patient_the_province_does_not_know_gets_no_payer() -> None:
    ledger = Ledger({"A": Decimal("50.00")}, [bound("A")])  # the province refuses the bill
    assert await payer(ledger, "10.00") is None


async def test_two_reads_at_most_and_the_patient_is_read_only_for_a_bill() -> None:
    balances = {PATIENT: Decimal("1.00"), "A": Decimal("5.00"), "B": Decimal("6.00")}
    ledger = Ledger(balances, [bound("A", minutes=0), bound("B", minutes=1), bound("A", "X")])
    assert await payer(ledger, "10.00") == "B"
    assert ledger.reads == [("bindings_of", [PATIENT]), ("find_persons", [PATIENT, "A", "B"])]
    ledger.reads.clear()
    assert await payer(ledger) == "B"
    assert ledger.reads == [("bindings_of", [PATIENT]), ("find_persons", ["A", "B"])]


# -- what a province that must be told is sent ----------------------------------------------------


class Tap(httpx.AsyncBaseTransport):
    """A province's sandbox, every request kept."""

    def __init__(self, app: Starlette) -> None:
        self.inner = httpx.ASGITransport(app=app)
        self.sent: list[httpx.Request] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.sent.append(request)
        return await self.inner.handle_async_request(request)


def jiangsu_payer(request: httpx.Request) -> str | None:
    if request.url.path != "/api/v1/settlements":
        return "(not a settlement)"
    named: str | None = json.loads(request.content)["payerCertNo"]
    return named


def henan_payer(request: httpx.Request) -> str | None:
    root = ET.fromstring(request.content)  # noqa: S314 (our own adapter's request)
    if root.findtext("head/service") != "Settle":
        return "(not a settlement)"
    return root.findtext("body/sqrsfzh") or None


TOLD = {
    # the spouses (authorizer, beneficiary) and how a settlement names its payer
    "jiangsu": (JiangsuAdapter, "js_chen_zhiqiang", "js_liu_fang", jiangsu_payer),
    "henan": (HenanAdapter, "hn_zhao_lei", "hn_sun_li", henan_payer),
}


@pytest.mark.parametrize(
    ("short", "named"),
    [
        pytest.param(Decimal(0), False, id="own account covers the self-pay part exactly"),
        pytest.param(CENT, True, id="own account short by a cent"),
    ],
)
@pytest.mark.parametrize("name", sorted(TOLD))
async def test_a_told_province_is_sent_a_payer_only_when_the_patients_account_falls_short(
    provinces: Provinces, name: str, short: Decimal, named: bool
) -> None:
    cls, authorizer, spouse, named_in = TOLD[name]
    system = provinces.system(name)
    row = await system.bind(
        authorizer=person(authorizer)["certNo"],
        beneficiary=person(spouse)["certNo"],
        beneficiary_name=person(spouse)["name"],
        relation="SPOUSE",
        commitment_signed=True,
    )
    if row["status"] == "PENDING_CONFIRMATION":
        await system.respond(row["id"], actor=person(spouse)["certNo"], accept=True)
    tap = Tap(provinces.apps[name])
    own = Decimal(person(spouse)["accountBalance"])
    async with httpx.AsyncClient(base_url="http://province.test", transport=tap) as client:
        done = await cls(client).settle(
            SettleRequest(
                institution_code="H00000001",
                idempotency_key=f"{name}-{short}",
                patient_cert_no=person(spouse)["certNo"],
                medical_type=MedicalType.OUTPATIENT,
                total=Decimal("100.00") + own + short,
                fund_paid=Decimal("100.00"),
            )
        )
    sent = [named_in(r) for r in tap.sent if named_in(r) != "(not a settlement)"]
    assert sent == [person(authorizer)["certNo"] if named else None]
    assert isinstance(done, Settlement), done
    assert (done.own_account_paid, done.mutual_aid_paid, done.cash_due) == (own, short, 0)

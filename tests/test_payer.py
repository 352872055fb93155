"""`adapters.payer`: the national rule of who pays by mutual aid, pure, at each boundary;
and that `ProvinceAdapter.funded_authorizer` (the province's reads) chooses as it does."""

from __future__ import annotations

import asyncio
import datetime as dt
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.base import (
    Binding,
    BindingStatus,
    Party,
    Relation,
)
from adapters.payer import bound_authorizers, choose_payer
from tests.doubles import Ledger

A, B, C = Party("A", "甲"), Party("B", "乙"), Party("C", "丙")
PATIENT = "P"
T0 = dt.datetime(2026, 3, 1, 9, 0, tzinfo=dt.UTC)

# The own account's boundaries, as the pure rule and the adapters' reads both meet them:
# (own balance, owed, whether an authorizer pays).
OWN_ACCOUNT_FIRST = [
    pytest.param("200.00", "199.99", False, id="own account covers more than the bill"),
    pytest.param("200.00", "200.00", False, id="own account covers the bill exactly"),
    pytest.param("199.99", "200.00", True, id="own account short by a cent"),
    pytest.param("0.00", "200.00", True, id="own account empty"),
    pytest.param(None, "200.00", True, id="no own account (resident insurance)"),
    pytest.param(None, "0.01", True, id="no own account, one cent owed"),
]


def d(value: str | None) -> Decimal | None:
    return None if value is None else Decimal(value)


# -- choose_payer --------------------------------------------------------------------------------


def test_nobody_bound_is_nobody_paying() -> None:
    assert choose_payer(None, None, []) is None
    assert choose_payer(Decimal("10.00"), None, []) is None


def test_the_largest_balance_pays_wherever_it_is_listed() -> None:
    listed = [(A, d("100.00")), (B, d("300.00")), (C, d("299.99"))]
    assert choose_payer(None, None, listed) == B
    assert choose_payer(None, None, listed[::-1]) == B


def test_on_a_tie_the_earliest_pays() -> None:
    assert choose_payer(None, None, [(A, d("300.00")), (B, d("300.00"))]) == A
    assert choose_payer(None, None, [(B, d("300.00")), (A, d("300.00"))]) == B
    assert choose_payer(None, None, [(C, d("1.00")), (A, d("5.00")), (B, d("5.00"))]) == A


@pytest.mark.parametrize(
    ("balance", "pays"),
    [
        pytest.param("0.00", False, id="an empty account"),
        pytest.param(None, False, id="no account, or not known"),
        pytest.param("-1.00", False, id="below zero"),
        pytest.param("0.01", True, id="one cent"),
    ],
)
def test_only_money_above_zero_pays(balance: str | None, pays: bool) -> None:
    assert choose_payer(None, None, [(A, d(balance))]) == (A if pays else None)
    # and it never outweighs one who has money
    assert choose_payer(None, None, [(A, d(balance)), (B, d("0.01"))]) == (A if pays else B)


@pytest.mark.parametrize(
    ("own", "owed", "pays"),
    [*OWN_ACCOUNT_FIRST, pytest.param(None, "0.00", False, id="nothing owed")],
)
def test_the_patients_own_account_pays_first(own: str | None, owed: str, pays: bool) -> None:
    candidates = [(A, d("50.00"))]
    assert choose_payer(d(owed), d(own), candidates) == (A if pays else None)


def test_without_a_bill_the_own_account_is_not_weighed() -> None:
    """Who would pay, asked before any bill: whatever the patient has of their own."""
    assert choose_payer(None, d("99999.00"), [(A, d("50.00"))]) == A


def test_exactly_one_payer_even_when_short() -> None:
    """The largest pays up to what it has; a second authorizer is never asked."""
    chosen = choose_payer(d("1000.00"), d("0.00"), [(A, d("600.00")), (B, d("500.00"))])
    assert chosen == A


# -- bound_authorizers -------------------------------------------------------------------------


def bound(
    who: Party,
    beneficiary: str = PATIENT,
    status: BindingStatus = BindingStatus.ACTIVE,
    minutes: int = 0,
) -> Binding:
    return Binding(
        id=f"{who.cert_no}>{beneficiary}",
        authorizer=who,
        beneficiary=Party(beneficiary, beneficiary),
        relation=Relation.CHILD,
        status=status,
        created_at=T0 + dt.timedelta(minutes=minutes),
    )


def test_the_candidates_are_the_active_authorizers_of_the_patient_earliest_first() -> None:
    bindings = [
        bound(C, minutes=5),
        bound(A, minutes=1),
        bound(B, status=BindingStatus.PENDING_CONFIRMATION),
        bound(B, status=BindingStatus.UNBOUND),
        bound(Party(PATIENT, PATIENT), beneficiary="Q"),  # the patient's own beneficiary
        bound(B, beneficiary="Q"),
    ]
    assert bound_authorizers(bindings, PATIENT) == [A, C]


def test_among_bindings_made_at_once_the_listing_order_holds_and_each_is_once() -> None:
    bindings = [bound(B), bound(A), bound(B, minutes=3)]
    assert bound_authorizers(bindings, PATIENT) == [B, A]


# -- the same rule as the province adapter's reads --------------------------------------------


MONEY = st.sampled_from([None, "0.00", "0.01", "5.00", "5.00", "300.00"]).map(d)
PEOPLE = [A, B, C]


@st.composite
def ledgers(draw: st.DrawFn) -> tuple[dict[str, Decimal | None], list[Binding], Decimal | None]:
    balances = {p.cert_no: draw(MONEY) for p in PEOPLE if draw(st.booleans()) or p is A}
    if draw(st.booleans()):
        balances[PATIENT] = draw(MONEY)
    bindings = [
        bound(
            draw(st.sampled_from(PEOPLE)),
            beneficiary=draw(st.sampled_from([PATIENT, PATIENT, "Q"])),
            status=draw(st.sampled_from(list(BindingStatus))),
            minutes=draw(st.integers(0, 3)),
        )
        for _ in range(draw(st.integers(0, 5)))
    ]
    owed = draw(st.sampled_from([None, "0.00", "0.01", "5.00", "300.00"]).map(d))
    return balances, bindings, owed


@settings(max_examples=300, deadline=None)
@given(ledgers())
def test_the_rule_is_the_one_funded_authorizer_applies(
    case: tuple[dict[str, Decimal | None], list[Binding], Decimal | None],
) -> None:
    balances, bindings, owed = case
    ledger = Ledger(balances, bindings)
    expected = asyncio.run(ledger.funded_authorizer(PATIENT, owed=owed))
    authorizers = bound_authorizers(bindings, PATIENT)
    if not authorizers or (owed is not None and PATIENT not in balances):
        # the reads' own answers: nobody bound; a patient the province does not know
        assert expected is None
        return
    candidates = [(p, balances.get(p.cert_no)) for p in authorizers]
    own = balances.get(PATIENT)
    assert choose_payer(owed, own, candidates) == expected

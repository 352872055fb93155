"""Who pays a patient's self-pay part by mutual aid: the national rule, in one place.

The patient's own personal account pays first; what it cannot cover falls to exactly
one authorizer actively bound to the patient, the one with the most available above
zero (the earliest binding on a tie), up to what they have; the rest is cash. The
system never collects from a second authorizer.

Pure: the callers read the bindings and balances (a province adapter for a bill, the
gateway for its answers: the voucher, the family screen, the diagnosis) and ask here.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from decimal import Decimal

from adapters.vocabulary import Binding, BindingStatus, Party

__all__ = ["bound_authorizers", "choose_payer"]


def bound_authorizers(bindings: Iterable[Binding], beneficiary: str) -> list[Party]:
    """The authorizers actively bound to ``beneficiary``, earliest binding first (each
    once; listing order among bindings made at the same moment): the candidates, in
    the order `choose_payer` breaks ties by."""
    bound = sorted(
        (
            b
            for b in bindings
            if b.status is BindingStatus.ACTIVE and b.beneficiary.cert_no == beneficiary
        ),
        key=lambda b: b.created_at,  # stable
    )
    return list({b.authorizer.cert_no: b.authorizer for b in bound}.values())


def choose_payer(
    owed: Decimal | None,
    own_balance: Decimal | None,
    candidates: Sequence[tuple[Party, Decimal | None]],
) -> Party | None:
    """The one authorizer who pays, or None.

    ``owed``: the self-pay part of a bill; None when there is no bill yet (who would
    pay), and then the patient's own account is not weighed. ``own_balance``: the
    patient's own account (None: they have none, as with resident insurance); when it
    covers ``owed`` nobody else pays. ``candidates``: the authorizers actively bound to
    the patient with what each has available (None: no account, or unknown), earliest
    binding first (`bound_authorizers`). The one with the most above zero pays; on a
    tie, the earliest.
    """
    if owed is not None and (own_balance or Decimal(0)) >= owed:
        return None
    best: tuple[Decimal, Party] | None = None
    for party, available in candidates:
        if available is not None and available > 0 and (best is None or available > best[0]):
            best = (available, party)
    return None if best is None else best[1]

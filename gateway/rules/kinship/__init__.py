"""Kinship accounts (亲情账户): the national registry the gateway keeps itself.

One concept a module::

    links       a link and its states (the state diagram), what adding takes
    workdays    the working-day calendar a review is promised in
    rules       judge_kinship: the rules of adding, pure (shared with the family screen)
    passwords   the e-voucher's payment password (scrypt)
    registry    the registry's SQL, in the gateway's store
    vouchers    the member's code as the adder shows it: signing, QR, notes
    service     Kinship: the operations, tying the others to the provinces

What the package may use: the vocabulary of the provinces (`adapters.base`) and the
national payer rule (`adapters.payer`); of the gateway, its configuration, the store,
the directory (where people are insured), mutual aid's bindings (who pays), and the
small shared modules (ID numbers, dates, documents, channels, auth roles, outcomes);
PyJWT and segno for the codes.
Never a province's adapter module, nor the graph (`*_schema`): the graph uses this.
"""

from __future__ import annotations

from gateway.rules.kinship.links import LINK_KIND, AddInput, DocumentInfo, KinshipLink, LinkStatus
from gateway.rules.kinship.passwords import hash_password, password_ok, verify_password
from gateway.rules.kinship.rules import Taken, age_on, documents_needed, judge_kinship
from gateway.rules.kinship.service import Kinship, LinkOutcome
from gateway.rules.kinship.vouchers import VOUCHER_AUDIENCE, Use, Voucher, VoucherOutcome
from gateway.rules.kinship.workdays import add_working_days

__all__ = [
    "LINK_KIND",
    "VOUCHER_AUDIENCE",
    "AddInput",
    "DocumentInfo",
    "Kinship",
    "KinshipLink",
    "LinkOutcome",
    "LinkStatus",
    "Taken",
    "Use",
    "Voucher",
    "VoucherOutcome",
    "add_working_days",
    "age_on",
    "documents_needed",
    "hash_password",
    "judge_kinship",
    "password_ok",
    "verify_password",
]

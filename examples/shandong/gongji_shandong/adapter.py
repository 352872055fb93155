"""Shandong (山东): JSON-RPC 2.0 over HTTP POST to one endpoint (illustrative).

Every request is ``POST /jsonrpc`` with ``{"jsonrpc": "2.0", "id", "method", "params"}``
(the methods and their shapes: `gongji_shandong.sandbox`). The answer must be a JSON
object with ``"jsonrpc": "2.0"``, the request's own ``id`` and exactly one of
``result`` and ``error``; anything else (another ``id`` above all: the answer to another
request) is an `UpstreamContractError`.

Errors:

* -32700 (parse error), -32600 (invalid request) and -32602 (invalid params), or HTTP 400
  or 413 whatever the body: Shandong could not read the request and did nothing with it,
  a contract error with ``reached`` False (the same request would be refused again).
  A -32700 or -32600 may come with ``id`` null (JSON-RPC's rule when the id could not be
  read); -32602 names the request's id.
* Any other negative code (-32601 no such method, -32009 a ``requestId`` already used
  for another request, other server errors): a contract error, its outcome unknown.
* A business code of `_REFUSALS`: the `Refusal` it means; any other code (one Shandong
  never documented) is a contract error, never a guessed refusal. Reads are refused
  for nothing (but `premium_of`, for whom it names).

Writes (``binding.create``, ``binding.cancel``, ``settlement.create``,
``settlement.reverse``, ``quota.*`` but ``quota.list``, ``premium.pay``) carry their
request id as ``params.requestId`` (`BindRequest.request_id`, `SettleRequest.request_id`,
the others' ``request_id`` keyword; a new one when None) and are sent once; Shandong
answers the same ``requestId`` again as the first time. Reads carry none and are
retried (``read=True``). The JSON-RPC ``id`` is new for every request.

Shandong's system picks the paying authorizer itself (the bound one with the largest
balance), so `settle` passes the bill on, with the institution's idempotency key as
``institutionSettlementId``. A family screen is one ``family.read``.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from typing import Any, TypeVar

from adapters.base import (
    NEAR_RELATIVES,
    Area,
    Binding,
    BindingStatus,
    BindRequest,
    ChangeKind,
    CivilRelative,
    FamilyRead,
    Funding,
    HoldStatus,
    InsuranceStatus,
    InsuranceType,
    MedicalType,
    Party,
    Person,
    Policy,
    Premium,
    PremiumPayment,
    PremiumRequest,
    ProvinceAdapter,
    Quota,
    QuotaHold,
    Refusal,
    RefusalCode,
    RegistrationChange,
    Relation,
    Settlement,
    SettleRequest,
    new_request_id,
    parse_money,
    text,
)

T = TypeVar("T")

_PATH = "/jsonrpc"
# JSON-RPC's codes for a request that could not be read: nothing was done with it.
_UNREAD = frozenset({-32700, -32600, -32602})
_ID_UNKNOWN = frozenset({-32700, -32600})  # answered with id null when it could not be read

_REFUSALS: dict[int, RefusalCode] = {
    1001: RefusalCode.PERSON_NOT_FOUND,
    1002: RefusalCode.PERSON_INFO_MISMATCH,
    1003: RefusalCode.NOT_EMPLOYEE_INSURED,
    1004: RefusalCode.BENEFICIARY_NOT_INSURED,
    1005: RefusalCode.PATIENT_NOT_INSURED,
    1006: RefusalCode.NOT_RESIDENT_INSURED,
    2001: RefusalCode.RELATION_NOT_ALLOWED,
    2002: RefusalCode.RELATION_NOT_VERIFIED,
    2003: RefusalCode.CROSS_AREA_NOT_ALLOWED,
    2004: RefusalCode.CROSS_PROVINCE_NOT_ALLOWED,
    2005: RefusalCode.BINDING_LIMIT_REACHED,
    2006: RefusalCode.ALREADY_BOUND,
    2007: RefusalCode.DUPLICATE_BINDING,
    2008: RefusalCode.COMMITMENT_REQUIRED,
    2009: RefusalCode.FORBIDDEN,
    2010: RefusalCode.INVALID_BINDING_STATE,
    3001: RefusalCode.AMOUNT_NOT_POSITIVE,
    3002: RefusalCode.IDEMPOTENCY_KEY_REUSED,
    3003: RefusalCode.NOT_BOUND,
    3004: RefusalCode.SETTLEMENT_ALREADY_REVERSED,
    3005: RefusalCode.REVERSAL_WINDOW_CLOSED,
    3006: RefusalCode.BALANCE_INSUFFICIENT,
    4001: RefusalCode.QUOTA_NOT_ALLOWED,
    4002: RefusalCode.QUOTA_ABOVE_BALANCE,
    4003: RefusalCode.QUOTA_INSUFFICIENT,
    4004: RefusalCode.INVALID_HOLD_STATE,
    5001: RefusalCode.PREMIUM_NOT_DECLARED,
    5002: RefusalCode.PREMIUM_ALREADY_PAID,
    5003: RefusalCode.PREMIUM_PAYMENT_NOT_ALLOWED,
}
# A premium's read is refused only for whom it names.
_PREMIUM_READ_REFUSALS = {c: _REFUSALS[c] for c in (1001, 1006)}

_INSURANCE_TYPE = {"employee": InsuranceType.EMPLOYEE, "resident": InsuranceType.RESIDENT}
_INSURANCE_STATUS = {
    "normal": InsuranceStatus.ACTIVE,
    "suspended": InsuranceStatus.SUSPENDED,
    "terminated": InsuranceStatus.TERMINATED,
    "pending": InsuranceStatus.PENDING,
}
_RELATION_WORD = {
    Relation.SPOUSE: "spouse",
    Relation.PARENT: "parent",
    Relation.CHILD: "child",
    Relation.PARENT_IN_LAW: "spouse_parent",
    Relation.CHILD_IN_LAW: "child_spouse",
    Relation.SIBLING: "sibling",
    Relation.GRANDPARENT: "grandparent",
    Relation.GRANDCHILD: "grandchild",
}
_RELATION = {v: k for k, v in _RELATION_WORD.items()}
_STATE = {
    "pending": BindingStatus.PENDING_CONFIRMATION,
    "active": BindingStatus.ACTIVE,
    "declined": BindingStatus.DECLINED,
    "cancelled": BindingStatus.UNBOUND,
}
_HOLD_STATE = {
    "held": HoldStatus.HELD,
    "paid": HoldStatus.CONFIRMED,
    "released": HoldStatus.RELEASED,
    "refunded": HoldStatus.REFUNDED,
}
_MEDICAL_WORD = {
    MedicalType.OUTPATIENT: "outpatient",
    MedicalType.INPATIENT: "inpatient",
    MedicalType.PHARMACY: "pharmacy",
}
_MEDICAL = {v: k for k, v in _MEDICAL_WORD.items()}
_KIND = {"moved": ChangeKind.MOVED, "ended": ChangeKind.ENDED}
_CENT = Decimal("0.01")

# Shandong's rules (illustrative dates): at most 4 relatives, across cities, a signed
# commitment letter, nobody confirms; near relatives from 2024, across provinces from
# 2026-04-01 (with a quota). `gongji_shandong.sandbox` models the same versions.
_SEED = Policy(
    effective_from=dt.date(2023, 1, 1),
    max_relatives=4,
    cross_city=True,
    commitment_required=True,
)
_NEAR = _SEED.with_changes(
    effective_from=dt.date(2024, 1, 1), allowed_relations=NEAR_RELATIVES, premium_payment=True
)
_ACROSS = _NEAR.with_changes(effective_from=dt.date(2026, 4, 1), cross_province=True)


class ShandongAdapter(ProvinceAdapter):
    code = "37"
    name = "山东省"
    policies = (_SEED, _NEAR, _ACROSS)

    # -- the envelope -----------------------------------------------------------------

    async def _rpc(
        self, method: str, params: dict[str, Any], *, write: bool, request_id: str | None = None
    ) -> tuple[int | None, Any]:
        """Send one call; returns ``(None, result)`` or ``(code, None)`` for a business
        error. A write goes once under ``request_id`` (a new one when None); a read is
        retried."""
        if write:
            params = {**params, "requestId": request_id or new_request_id()}
        rpc_id = uuid.uuid4().hex
        body = {"jsonrpc": "2.0", "id": rpc_id, "method": method, "params": params}
        response = await self._call("POST", _PATH, read=not write, json=body)
        what = f"jsonrpc {method}"
        with self._reading(what):
            self._refuse_unread(what, response)
            if response.status_code != 200:
                raise ValueError(f"HTTP {response.status_code}")
            answer = response.json()
            if not isinstance(answer, dict):
                raise TypeError("the answer is not a JSON-RPC object")
            if answer.get("jsonrpc") != "2.0":
                raise ValueError(f"jsonrpc {answer.get('jsonrpc')!r}")
            if ("result" in answer) == ("error" in answer):
                raise ValueError("not exactly one of result and error")
            answered = answer["id"]
            if "result" in answer:
                if answered != rpc_id:
                    raise self._contract_error(f"{what}: the answer to another id {answered!r}")
                return None, answer["result"]
            error = answer["error"]
            if not isinstance(error, dict):
                raise TypeError(f"error is not an object: {error!r}")
            code = error["code"]
            if not isinstance(code, int) or isinstance(code, bool):
                raise TypeError(f"error code is not an integer: {code!r}")
            fault = f"{what}: error {code} {error.get('message')!r}"
            if code in _UNREAD and (
                answered == rpc_id or (answered is None and code in _ID_UNKNOWN)
            ):
                raise self._unread(fault)
            if answered != rpc_id:
                raise self._contract_error(f"{what}: the answer to another id {answered!r}")
            if code < 0:  # a fault of JSON-RPC's or the server's, not a business answer
                raise self._contract_error(fault)
            return code, None

    async def _read(self, method: str, params: dict[str, Any]) -> Any:
        """A read: changes nothing, so it is retried; no business error is expected."""
        code, result = await self._rpc(method, params, write=False)
        if code is not None:
            raise self._contract_error(f"jsonrpc {method}: unexpected error {code}")
        return result

    async def _write(
        self,
        method: str,
        params: dict[str, Any],
        parse: Callable[[Any], T],
        request_id: str | None,
    ) -> T | Refusal:
        """A write, sent once: its result ``parse``d, or the refusal its code means."""
        code, result = await self._rpc(method, params, write=True, request_id=request_id)
        if code is not None:
            return self._refusal(method, code, _REFUSALS)
        with self._reading(f"jsonrpc {method}"):
            return parse(result)

    def _refusal(self, method: str, code: int, known: Mapping[int, RefusalCode]) -> Refusal:
        refused = known.get(code)
        if refused is None:
            raise self._contract_error(f"jsonrpc {method}: unknown error code {code}")
        return Refusal(refused)

    # -- reads ------------------------------------------------------------------------

    async def find_persons(self, cert_nos: Sequence[str]) -> Mapping[str, Person]:
        if not cert_nos:
            return {}
        result = await self._read("person.find", {"certNos": list(cert_nos)})
        with self._reading("jsonrpc person.find"):
            return _persons(result)

    async def relatives(self, cert_no: str) -> Sequence[CivilRelative]:
        result = await self._read("person.relatives", {"certNo": cert_no})
        with self._reading("jsonrpc person.relatives"):
            return [
                CivilRelative(text(r["certNo"]), text(r["name"]), _RELATION[r["relation"]])
                for r in _list(result)
            ]

    async def bindings_of(self, cert_nos: Sequence[str]) -> Sequence[Binding]:
        if not cert_nos:
            return []
        result = await self._read("binding.list", {"certNos": list(cert_nos)})
        with self._reading("jsonrpc binding.list"):
            return [_binding(b) for b in _list(result)]

    async def read_family(self, cert_nos: Sequence[str], bound: Sequence[str]) -> FamilyRead:
        """One ``family.read`` for the persons ``cert_nos`` and the bindings of ``bound``."""
        if not cert_nos or not bound:  # one read at most (none for two empty lists)
            return FamilyRead(await self.find_persons(cert_nos), await self.bindings_of(bound))
        params = {"certNos": list(cert_nos), "bindingsOf": list(bound)}
        result = await self._read("family.read", params)
        with self._reading("jsonrpc family.read"):
            if not isinstance(result, dict):
                raise TypeError("family.read's result is not an object")
            return FamilyRead(
                _persons(result["persons"]), [_binding(b) for b in _list(result["bindings"])]
            )

    async def settlements_of(self, cert_nos: Sequence[str]) -> Sequence[Settlement]:
        if not cert_nos:
            return []
        result = await self._read("settlement.list", {"certNos": list(cert_nos)})
        with self._reading("jsonrpc settlement.list"):
            return [_settlement(s) for s in _list(result)]

    async def holds_of(self, cert_nos: Sequence[str]) -> Sequence[QuotaHold]:
        if not cert_nos:
            return []
        result = await self._read("quota.list", {"certNos": list(cert_nos)})
        with self._reading("jsonrpc quota.list"):
            return [_hold(h) for h in _list(result)]

    async def premium_of(self, cert_no: str, year: int) -> Premium | Refusal:
        _check_year(year)
        code, result = await self._rpc(
            "premium.get", {"certNo": cert_no, "year": year}, write=False
        )
        if code is not None:
            return self._refusal("premium.get", code, _PREMIUM_READ_REFUSALS)
        with self._reading("jsonrpc premium.get"):
            raw_amount, raw_payment = result["amount"], result["payment"]
            found = Premium(
                cert_no=text(result["certNo"]),
                year=_int(result["year"]),
                amount=None if raw_amount is None else parse_money(raw_amount),
                payment=None if raw_payment is None else _payment(raw_payment),
            )
            paid = found.payment
            if (found.cert_no, found.year) != (cert_no, year) or (
                paid is not None and (paid.beneficiary.cert_no, paid.year) != (cert_no, year)
            ):
                raise ValueError(f"another premium: {found.cert_no!r} for {found.year}")
            return found

    async def registration_changes(self, after: int) -> Sequence[RegistrationChange]:
        if isinstance(after, bool) or after < 0:
            raise ValueError(f"not a change's number: {after!r}")
        result = await self._read("registration.changes", {"after": after})
        with self._reading("jsonrpc registration.changes"):
            changes = [self._change(c) for c in _list(result)]
            last = after
            for change in changes:
                if change.seq <= last:
                    raise ValueError(f"change {change.seq} after {last}")
                last = change.seq
            return changes

    def _change(self, raw: Any) -> RegistrationChange:
        kind = _KIND[raw["kind"]]
        to = _province(raw["toProvince"])
        if (kind is ChangeKind.MOVED) != (to is not None) or to == self.code:
            raise ValueError(f"{raw['kind']} to {to!r}")
        return RegistrationChange(
            seq=_int(raw["seq"]),
            cert_no=text(raw["certNo"]),
            kind=kind,
            to_province=to,
            at=_time(raw["at"]),
        )

    # -- writes -----------------------------------------------------------------------

    async def bind(self, request: BindRequest) -> Binding | Refusal:
        params: dict[str, Any] = {
            "authorizerCertNo": request.authorizer_cert_no,
            "beneficiaryCertNo": request.beneficiary_cert_no,
            "beneficiaryName": request.beneficiary_name,
            "relation": _RELATION_WORD[request.relation],
            "commitmentSigned": request.commitment_signed,
        }
        if request.beneficiary_province is not None:  # across provinces, with a quota
            params["beneficiaryProvince"] = request.beneficiary_province
        if request.quota is not None:
            params["quota"] = _money(request.quota)
        return await self._write("binding.create", params, _binding, request.request_id)

    async def unbind(
        self, binding_id: str, *, actor: str, request_id: str | None = None
    ) -> Binding | Refusal:
        params = {"bindingId": binding_id, "actorCertNo": actor}
        done = await self._write("binding.cancel", params, _binding, request_id)
        if isinstance(done, Binding) and done.id != binding_id:
            raise self._contract_error(f"binding.cancel: another binding {done.id!r}")
        return done

    async def settle(self, request: SettleRequest) -> Settlement | Refusal:
        params: dict[str, Any] = {
            "institutionCode": request.institution_code,
            "institutionSettlementId": request.idempotency_key,
            "certNo": request.patient_cert_no,
            "medicalType": _MEDICAL_WORD[request.medical_type],
            "total": _money(request.total),
            "fundPaid": _money(request.fund_paid),
        }
        if request.funding is not None:  # from a quota another province holds
            params["funding"] = _funding(request.funding)
        done = await self._write("settlement.create", params, _settlement, request.request_id)
        if isinstance(done, Settlement) and (
            done.patient.cert_no != request.patient_cert_no
            or done.institution_code != request.institution_code
        ):
            raise self._contract_error("settlement.create: another bill's settlement")
        if (
            isinstance(done, Settlement)
            and done.funding_hold is not None
            and (request.funding is None or done.funding_hold != request.funding.hold_id)
        ):
            raise self._contract_error("settlement.create: paid from another hold")
        return done

    async def reverse(
        self,
        settlement_id: str,
        *,
        institution_code: str,
        reason: str,
        request_id: str | None = None,
    ) -> Settlement | Refusal:
        params = {
            "settlementId": settlement_id,
            "institutionCode": institution_code,
            "reason": reason,
        }
        done = await self._write("settlement.reverse", params, _settlement, request_id)
        if isinstance(done, Settlement) and done.id != settlement_id:
            raise self._contract_error(f"settlement.reverse: another settlement {done.id!r}")
        return done

    async def hold_quota(
        self, binding_id: str, *, amount: Decimal, reference: str, request_id: str | None = None
    ) -> QuotaHold | Refusal:
        params = {"bindingId": binding_id, "amount": _money(amount), "reference": reference}
        done = await self._write("quota.hold", params, _hold, request_id)
        if isinstance(done, QuotaHold) and done.binding_id != binding_id:
            raise self._contract_error(f"quota.hold: a hold on {done.binding_id!r}")
        return done

    async def confirm_hold(
        self, hold_id: str, *, used: Decimal, payment_ref: str, request_id: str | None = None
    ) -> QuotaHold | Refusal:
        params = {"holdId": hold_id, "used": _money(used), "paymentRef": payment_ref}
        return await self._hold_write("quota.confirm", hold_id, params, request_id)

    async def release_hold(
        self, hold_id: str, *, request_id: str | None = None
    ) -> QuotaHold | Refusal:
        return await self._hold_write("quota.release", hold_id, {"holdId": hold_id}, request_id)

    async def refund_hold(
        self, hold_id: str, *, request_id: str | None = None
    ) -> QuotaHold | Refusal:
        return await self._hold_write("quota.refund", hold_id, {"holdId": hold_id}, request_id)

    async def _hold_write(
        self, method: str, hold_id: str, params: dict[str, Any], request_id: str | None
    ) -> QuotaHold | Refusal:
        done = await self._write(method, params, _hold, request_id)
        if isinstance(done, QuotaHold) and done.id != hold_id:
            raise self._contract_error(f"{method}: another hold {done.id!r}")
        return done

    async def pay_premium(self, request: PremiumRequest) -> PremiumPayment | Refusal:
        _check_year(request.year)
        params: dict[str, Any] = {
            "certNo": request.beneficiary_cert_no,
            "year": request.year,
            "payerCertNo": request.payer_cert_no,
        }
        funding = request.funding
        if funding is not None:  # from a quota another province holds
            params["funding"] = _funding(funding)
        done = await self._write("premium.pay", params, _payment, request.request_id)
        if isinstance(done, PremiumPayment) and (
            (done.beneficiary.cert_no, done.year) != (request.beneficiary_cert_no, request.year)
            or done.payer.cert_no != request.payer_cert_no
            or (done.payer_province, done.funding_hold)
            != ((None, None) if funding is None else (funding.province, funding.hold_id))
        ):
            raise self._contract_error(f"premium.pay: another payment {done.id!r}")
        return done


# -- parsing (inside `_reading`) --------------------------------------------------------


def _list(value: object) -> list[Any]:
    if not isinstance(value, list):
        raise TypeError(f"not a list: {value!r}")
    return value


def _int(value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"not an integer: {value!r}")
    return value


def _check_year(year: int) -> None:
    """A premium's year (2000-2100): else the caller's bug (`ValueError`, no request)."""
    if isinstance(year, bool) or not 2000 <= year <= 2100:
        raise ValueError(f"not a premium's year: {year!r}")


def _time(value: object) -> dt.datetime:
    """An ISO 8601 time, which must carry its offset."""
    moment = dt.datetime.fromisoformat(text(value))
    if moment.tzinfo is None:
        raise ValueError(f"time without offset: {value!r}")
    return moment


def _optional_money(value: object) -> Decimal | None:
    return None if value is None else parse_money(value)


def _province(value: object) -> str | None:
    """A province's two-digit code (``"41"``); None when null."""
    if value is None:
        return None
    code = text(value)
    if len(code) != 2 or not code.isascii() or not code.isdigit() or code[0] == "0":
        raise ValueError(f"not a province's code: {code!r}")
    return code


def _party(raw: Any) -> Party:
    return Party(text(raw["certNo"]), text(raw["name"]))


def _persons(value: object) -> dict[str, Person]:
    found: dict[str, Person] = {}
    for raw in _list(value):
        area = raw["insuredArea"]
        person = Person(
            cert_no=text(raw["certNo"]),
            name=text(raw["name"]),
            area=Area(text(area["code"]), text(area["name"])),
            insurance_type=_INSURANCE_TYPE[raw["insuranceType"]],
            insurance_status=_INSURANCE_STATUS[raw["insuranceStatus"]],
            balance=_optional_money(raw["accountBalance"]),
            phone=None if raw["phone"] is None else text(raw["phone"]),
        )
        found[person.cert_no] = person
    return found


def _binding(raw: Any) -> Binding:
    quota = raw["quota"]
    if quota is not None and not isinstance(quota, dict):
        raise TypeError(f"quota is not an object: {quota!r}")
    return Binding(
        id=text(raw["bindingId"]),
        authorizer=_party(raw["authorizer"]),
        beneficiary=_party(raw["beneficiary"]),
        relation=_RELATION[raw["relation"]],
        status=_STATE[raw["state"]],
        created_at=_time(raw["createdAt"]),
        beneficiary_province=_province(raw["beneficiaryProvince"]),
        quota=None
        if quota is None
        else Quota(parse_money(quota["granted"]), parse_money(quota["remaining"])),
    )


def _settlement(raw: Any) -> Settlement:
    mutual_aid, reversal = raw["mutualAid"], raw["reversal"]
    paid = parse_money(raw["mutualAidPaid"])
    payer: Party | None = None
    payer_balance: Decimal | None = None
    province: str | None = None
    hold: str | None = None
    if mutual_aid is not None:
        payer = _party(mutual_aid["payer"])
        payer_balance = _optional_money(mutual_aid["balance"])
        province = _province(mutual_aid["province"])
        hold = None if mutual_aid["holdId"] is None else text(mutual_aid["holdId"])
        if (province is None) != (hold is None):
            raise ValueError("a payer's province and hold come together")
        if province is not None:
            payer_balance = None  # an account elsewhere: Shandong does not know it
    return Settlement(
        id=text(raw["settlementId"]),
        institution_code=text(raw["institutionCode"]),
        patient=_party(raw["patient"]),
        medical_type=_MEDICAL[raw["medicalType"]],
        total=parse_money(raw["total"]),
        fund_paid=parse_money(raw["fundPaid"]),
        self_pay=parse_money(raw["selfPay"]),
        own_account_paid=parse_money(raw["accountPaid"]),
        mutual_aid_paid=paid,
        mutual_aid_payer=payer,
        cash_due=parse_money(raw["cashDue"]),
        patient_balance_after=_optional_money(raw["patientBalance"]),
        payer_balance_after=payer_balance,
        mutual_aid_province=province,
        funding_hold=hold,
        settled_at=_time(raw["settledAt"]),
        reversed_at=None if reversal is None else _time(reversal["at"]),
        reversal_reason=None if reversal is None else text(reversal["reason"]),
    )


def _hold(raw: Any) -> QuotaHold:
    province = _province(raw["beneficiaryProvince"])
    if province is None:
        raise ValueError("a hold names the relative's province")
    payment_ref = raw["paymentRef"]
    return QuotaHold(
        id=text(raw["holdId"]),
        binding_id=text(raw["bindingId"]),
        authorizer=_party(raw["authorizer"]),
        beneficiary=_party(raw["beneficiary"]),
        beneficiary_province=province,
        amount=parse_money(raw["amount"]),
        used=parse_money(raw["used"]),
        status=_HOLD_STATE[raw["state"]],
        reference=text(raw["reference"]),
        payment_ref=None if payment_ref is None else text(payment_ref),
        created_at=_time(raw["createdAt"]),
    )


def _payment(raw: Any) -> PremiumPayment:
    province = _province(raw["payerProvince"])
    hold = None if raw["holdId"] is None else text(raw["holdId"])
    if (province is None) != (hold is None):
        raise ValueError("a payer's province and hold come together")
    return PremiumPayment(
        id=text(raw["paymentId"]),
        beneficiary=_party(raw["beneficiary"]),
        year=_int(raw["year"]),
        amount=parse_money(raw["amount"]),
        payer=_party(raw["payer"]),
        payer_province=province,
        funding_hold=hold,
        paid_at=_time(raw["paidAt"]),
    )


# -- writing ----------------------------------------------------------------------------


def _money(amount: Decimal) -> str:
    return str(amount.quantize(_CENT))


def _funding(funding: Funding) -> dict[str, str]:
    return {
        "province": funding.province,
        "payerCertNo": funding.payer,
        "amount": _money(funding.amount),
        "holdId": funding.hold_id,
    }

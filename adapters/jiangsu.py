"""Jiangsu (江苏): REST resources in a ``{code, msg, data}`` wrapper, camelCase fields.

``code`` 0 is success; business refusals come with HTTP 200 and codes 40001-40029
(`_REFUSALS` for bindings, `_SETTLEMENT_REFUSALS` for settlement, `_HOLD_REFUSALS` for
holds on a quota, `_PREMIUM_REFUSALS` for resident premiums); any other code (40400,
40500, 40900, ...) is a contract fault. Code 40000 (a malformed request: not JSON, a
missing or mistyped field, text with a control character), or HTTP 400 or 413 whatever
the body (from Jiangsu or a proxy in front of it), says Jiangsu could not read the
request and did nothing with it: a contract fault with ``reached`` False (sent again,
the same request is refused again, so the gateway does not keep sending it). A spouse
binding waits for the spouse's confirmation (`respond`).

==================================================== ==== ==========================
endpoint                                             verb used by
==================================================== ==== ==========================
/api/v1/persons?certNos=a,b                          GET  `find_persons`
/api/v1/persons?certNos=a,b&authorizationsOf=c,d     GET  `read_family`
/api/v1/persons/{certNo}/relatives                   GET  `relatives`
/api/v1/mutual-aid/authorizations?certNos=a,b        GET  `bindings_of`
/api/v1/mutual-aid/authorizations                    POST `bind`
/api/v1/mutual-aid/authorizations/{id}/confirmation  POST `respond`
/api/v1/mutual-aid/authorizations/{id}/cancellation  POST `unbind`
/api/v1/settlements?certNos=a,b                      GET  `settlements_of`
/api/v1/settlements                                  POST `settle`
/api/v1/settlements/{settlementId}/reversal          POST `reverse`
/api/v1/mutual-aid/authorizations/{id}/holds         POST `hold_quota`
/api/v1/mutual-aid/holds/{holdId}/confirmation       POST `confirm_hold`
/api/v1/mutual-aid/holds/{holdId}/release            POST `release_hold`
/api/v1/mutual-aid/holds/{holdId}/refund             POST `refund_hold`
/api/v1/mutual-aid/holds?certNos=a,b                 GET  `holds_of`
/api/v1/registrations/changes?after=N                GET  `registration_changes`
/api/v1/premiums/{certNo}/{year}                     GET  `premium_of`
/api/v1/premiums/{certNo}/{year}/payments            POST `pay_premium`
==================================================== ==== ==========================

A family screen (`read_family`) is one GET of the persons with ``authorizationsOf``
(the people whose authorizations to include): it answers ``{"persons": [...],
"authorizations": [...]}``, each list read as `find_persons` and `bindings_of` read
theirs (data that is not such an object, or either list missing or not a list, is an
`UpstreamContractError`). With only one of the two lists, `read_family` sends that read
alone; with neither, nothing.

Across provinces (跨省共济, Jiangsu's rules from 2026-01-09: `_ACROSS`): `bind` sends
the relative's insured province as ``beneficiaryProvince`` (its two-digit code,
``"41"``) and the quota set aside as ``quota`` (a two-decimal string), each only when
the request has it; an authorization answers both back, the quota as ``{"granted",
"remaining"}`` (`Binding.beneficiary_province`, `Binding.quota`; absent or null inside
Jiangsu). Refusals: 40020 `CROSS_PROVINCE_NOT_ALLOWED`, 40021 `QUOTA_NOT_ALLOWED`,
40022 `QUOTA_ABOVE_BALANCE`, and 40015 (a quota missing or not above zero)
`AMOUNT_NOT_POSITIVE`. Either side may cancel such an authorization (`unbind`).

Holds on such a quota (共济额度冻结), for a payment in the relative's province:
`hold_quota` posts ``{"amount", "reference"}`` to the authorization's ``holds``,
`confirm_hold` ``{"used", "paymentRef"}`` to the hold's ``confirmation``, `release_hold`
and `refund_hold` ``{}`` to its ``release`` and ``refund`` (amounts two-decimal
strings); each answers a hold, ``{"holdId", "authId", "authorizer": {"certNo",
"name"}, "beneficiary": {"certNo", "name"}, "beneficiaryProvince", "amount", "used",
"state", "reference", "paymentRef"|null, "createdAt"}`` (`QuotaHold`; ``state``
HELD, PAID `HoldStatus.CONFIRMED`, RELEASED, REFUNDED), and `holds_of` reads them in a
batch as `bindings_of` reads authorizations. An answer for another hold (or, to
`hold_quota`, on another authorization) is an `UpstreamContractError`. Refusals
(`_HOLD_REFUSALS`): 40023 `QUOTA_INSUFFICIENT` (more than the quota has left), 40024
`INVALID_HOLD_STATE`, 40012 `FORBIDDEN` (no such hold, or an authorization without a
quota), 40013 `INVALID_BINDING_STATE` (the authorization no longer EFFECTIVE), 40015
`AMOUNT_NOT_POSITIVE`.

A bill paid from a quota held in another province (`SettleRequest.funding`) carries
``crossProvinceFunding``: ``{"province", "payerCertNo", "amount", "holdId"}``, and no
``payerCertNo`` of its own: Jiangsu pays nothing from an authorizer here, so `settle`
chooses nobody (none of the reads below) and sends it in its turn (below: it moves the
patient's own balance, which the others' choices read) under its request id. The
settlement answers ``payerProvince`` and ``fundingHoldId`` (null otherwise:
`Settlement.mutual_aid_province`, `Settlement.funding_hold`), and the payer's ``balc``
is null (`Settlement.payer_balance_after` None: an account elsewhere).

Otherwise Jiangsu's settlement must be told which authorizer pays (``payerCertNo``), so
`settle` chooses, in at most two requests before the settlement itself:
`bindings_of` the patient (the EFFECTIVE authorizations in which the patient is
the beneficiary), then one `find_persons` for the patient and those authorizers
together. Only if the patient's own balance cannot cover the self-pay part
(total - fund paid - own balance > 0) is a payer named: the authorizer with the
largest balance above zero, the earliest authorization on a tie; with none
funded, nobody (``null``). If Jiangsu answers that the named payer is no longer
bound (40017: unbound in the meantime), `settle` chooses again once and
retries; a second 40017 is an `UpstreamContractError`. Choosing and settling
take turns within the adapter, so a concurrent settlement cannot empty the
chosen account in between (across several gateway processes it could: Jiangsu
would then pay what is left and report the rest as cash). The payer named under a
request id is kept (`Chosen`): `settle` sent again under the same id (the gateway's
outbox, after a lost answer) names the same payer in each of its requests, never
one chosen again from balances that have moved since (the lost send itself may have
moved them). A retried bill is answered with its original settlement.

Writes (every POST) carry their request id in an ``X-Request-Id`` header
(`BindRequest.request_id`, `SettleRequest.request_id`, the others' ``request_id``
keyword; a new one when None): Jiangsu keeps it with its answer and answers it again,
unchanged, when the same write is sent again. The settlement sent again after a
40017 goes under an id derived from the first (`_second_try`), so that the whole
of `settle`, sent again under the same id, is answered as it was the first time.
GETs carry no id and are retried (``read=True``).

The change feed (参保关系变更, `registration_changes`): ``GET
/api/v1/registrations/changes?after=N`` answers the changes after the change ``N``,
oldest first, each ``{"seq", "certNo", "type": "MOVED_OUT"|"ENDED", "toProvince":
"41"|null, "changedAt"}`` (`RegistrationChange`; ``type`` MOVED_OUT `ChangeKind.MOVED`,
with the two-digit code of another province than Jiangsu, ENDED `ChangeKind.ENDED`,
with null; ``changedAt`` ISO 8601 with its offset). Anything else (a ``seq`` that is
not an integer above ``N`` and above the one before it, an unknown ``type``, a province
that does not go with it) is an `UpstreamContractError`. A negative ``N`` is the
caller's bug (`ValueError`, no request).

Resident premiums (城乡居民医保个人缴费, paid from an account from the 2024 rules:
`_NEAR`): `premium_of` reads ``GET /api/v1/premiums/{certNo}/{year}``, ``{"certNo",
"year", "amount"|null (not declared yet), "payment"|null}`` (`Premium`), a read retried
like the others; `pay_premium` posts ``{"payerCertNo"}`` to its ``payments``, with
``"crossProvinceFunding": {"province", "payerCertNo", "amount", "holdId"}`` when paid
from a quota held in another province (`PremiumRequest.funding`), a write under its
request id. A payment is ``{"paymentId", "beneficiary": {"certNo", "name"}, "year",
"amount", "payer": {"certNo", "name"}, "payerProvince"|null, "fundingHoldId"|null,
"paidAt"}`` (`PremiumPayment`; the province and hold together, or neither). An answer
for another resident or year, or a payment by another payer or from another hold than
asked, is an `UpstreamContractError`; a year outside 2000-2100 is the caller's bug
(`ValueError`, no request). Refusals (`_PREMIUM_REFUSALS`): 40001 `PERSON_NOT_FOUND`,
40025 `NOT_RESIDENT_INSURED` (the only two a read may answer), 40026
`PREMIUM_NOT_DECLARED`, 40027 `PREMIUM_ALREADY_PAID`, 40028
`PREMIUM_PAYMENT_NOT_ALLOWED`, 40029 `BALANCE_INSUFFICIENT`, 40017 (here: the payer not
bound to the resident) `NOT_BOUND`, 40015 (the quota held elsewhere not covering it)
`AMOUNT_NOT_POSITIVE`.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from typing import Any, TypeVar
from urllib.parse import quote

import httpx

from adapters.base import (
    NEAR_RELATIVES,
    Area,
    Binding,
    BindingStatus,
    BindRequest,
    ChangeKind,
    Chosen,
    CivilRelative,
    FamilyRead,
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

_BASE = "/api/v1"
_PERSONS = f"{_BASE}/persons"
_AUTHORIZATIONS = f"{_BASE}/mutual-aid/authorizations"
_HOLDS = f"{_BASE}/mutual-aid/holds"
_SETTLEMENTS = f"{_BASE}/settlements"
_CHANGES = f"{_BASE}/registrations/changes"
_PREMIUMS = f"{_BASE}/premiums"
_CENT = Decimal("0.01")

_INSURANCE_TYPE = {"EMPLOYEE": InsuranceType.EMPLOYEE, "RESIDENT": InsuranceType.RESIDENT}
_INSURANCE_STATUS = {
    "NORMAL": InsuranceStatus.ACTIVE,
    "SUSPENDED": InsuranceStatus.SUSPENDED,
    "TERMINATED": InsuranceStatus.TERMINATED,
    "NOT_EFFECTIVE": InsuranceStatus.PENDING,
}
_RELATION_WORD = {
    Relation.SPOUSE: "SPOUSE",
    Relation.PARENT: "FATHER_OR_MOTHER",
    Relation.CHILD: "SON_OR_DAUGHTER",
    Relation.PARENT_IN_LAW: "SPOUSE_PARENT",
    Relation.CHILD_IN_LAW: "CHILD_SPOUSE",
    Relation.SIBLING: "SIBLING",
    Relation.GRANDPARENT: "GRANDPARENT",
    Relation.GRANDCHILD: "GRANDCHILD",
}
_RELATION = {v: k for k, v in _RELATION_WORD.items()}
_STATE = {
    "WAIT_CONFIRM": BindingStatus.PENDING_CONFIRMATION,
    "EFFECTIVE": BindingStatus.ACTIVE,
    "REJECTED": BindingStatus.DECLINED,
    "CANCELLED": BindingStatus.UNBOUND,
}
_HOLD_STATE = {
    "HELD": HoldStatus.HELD,
    "PAID": HoldStatus.CONFIRMED,
    "RELEASED": HoldStatus.RELEASED,
    "REFUNDED": HoldStatus.REFUNDED,
}
_REFUSALS: dict[int, RefusalCode] = {
    40001: RefusalCode.PERSON_NOT_FOUND,
    40002: RefusalCode.PERSON_INFO_MISMATCH,
    40003: RefusalCode.NOT_EMPLOYEE_INSURED,
    40004: RefusalCode.BENEFICIARY_NOT_INSURED,
    40005: RefusalCode.RELATION_NOT_ALLOWED,
    40006: RefusalCode.RELATION_NOT_VERIFIED,
    40007: RefusalCode.CROSS_AREA_NOT_ALLOWED,
    40008: RefusalCode.BINDING_LIMIT_REACHED,
    40009: RefusalCode.ALREADY_BOUND,
    40010: RefusalCode.DUPLICATE_BINDING,
    40011: RefusalCode.COMMITMENT_REQUIRED,
    40012: RefusalCode.FORBIDDEN,
    40013: RefusalCode.INVALID_BINDING_STATE,
    40015: RefusalCode.AMOUNT_NOT_POSITIVE,  # a binding's quota (across provinces)
    40020: RefusalCode.CROSS_PROVINCE_NOT_ALLOWED,
    40021: RefusalCode.QUOTA_NOT_ALLOWED,
    40022: RefusalCode.QUOTA_ABOVE_BALANCE,
}
_SETTLEMENT_REFUSALS: dict[int, RefusalCode] = {
    40001: RefusalCode.PERSON_NOT_FOUND,
    40012: RefusalCode.FORBIDDEN,
    40014: RefusalCode.PATIENT_NOT_INSURED,
    40015: RefusalCode.AMOUNT_NOT_POSITIVE,
    40016: RefusalCode.IDEMPOTENCY_KEY_REUSED,
    40018: RefusalCode.SETTLEMENT_ALREADY_REVERSED,
    40019: RefusalCode.REVERSAL_WINDOW_CLOSED,
}
_HOLD_REFUSALS: dict[int, RefusalCode] = {
    40012: RefusalCode.FORBIDDEN,  # no such hold, or an authorization without a quota
    40013: RefusalCode.INVALID_BINDING_STATE,
    40015: RefusalCode.AMOUNT_NOT_POSITIVE,
    40023: RefusalCode.QUOTA_INSUFFICIENT,
    40024: RefusalCode.INVALID_HOLD_STATE,
}
_PREMIUM_REFUSALS: dict[int, RefusalCode] = {
    40001: RefusalCode.PERSON_NOT_FOUND,
    40025: RefusalCode.NOT_RESIDENT_INSURED,
    40026: RefusalCode.PREMIUM_NOT_DECLARED,
    40027: RefusalCode.PREMIUM_ALREADY_PAID,
    40028: RefusalCode.PREMIUM_PAYMENT_NOT_ALLOWED,
    40029: RefusalCode.BALANCE_INSUFFICIENT,
    40017: RefusalCode.NOT_BOUND,  # the payer (no EFFECTIVE authorization for the resident)
    40015: RefusalCode.AMOUNT_NOT_POSITIVE,  # a quota held elsewhere not covering it
}
# A premium's read is refused only for whom it names.
_PREMIUM_READ_REFUSALS = {c: _PREMIUM_REFUSALS[c] for c in (40001, 40025)}
_PAYER_NOT_BOUND = 40017
_MALFORMED = 40000  # the request could not be read: nothing was done
_MEDICAL_TYPE_WORD = {
    MedicalType.OUTPATIENT: "OUTPATIENT",
    MedicalType.INPATIENT: "INPATIENT",
    MedicalType.PHARMACY: "PHARMACY",
}
_MEDICAL_TYPE = {v: k for k, v in _MEDICAL_TYPE_WORD.items()}
_CHANGE_TYPE = {"MOVED_OUT": ChangeKind.MOVED, "ENDED": ChangeKind.ENDED}

_T = TypeVar("_T")

# The seed era's rules, then each change on its (illustrative) date: near relatives
# (2024), then relatives insured in other provinces, with a quota (2026).
_SEED = Policy(
    effective_from=dt.date(2023, 1, 1),
    max_relatives=5,
    cross_city=True,
    spouse_confirmation=True,
    commitment_required=True,
)
_NEAR = _SEED.with_changes(
    effective_from=dt.date(2024, 9, 1), allowed_relations=NEAR_RELATIVES, premium_payment=True
)
_ACROSS = _NEAR.with_changes(effective_from=dt.date(2026, 1, 9), cross_province=True)


class JiangsuAdapter(ProvinceAdapter):
    code = "32"
    name = "江苏省"
    policies = (_SEED, _NEAR, _ACROSS)

    def __init__(self, client: httpx.AsyncClient, **kwargs: Any) -> None:
        super().__init__(client, **kwargs)
        self._settling = asyncio.Lock()
        self._named = Chosen()  # the payer named under each request id

    async def _request(
        self, method: str, url: str, *, request_id: str | None = None, **kwargs: Any
    ) -> tuple[int, Any]:
        """Send one request; returns ``(code, data)`` from the wrapper.

        A GET is a read (retried); a POST is a write, sent once under ``request_id``.
        """
        what = f"{method} {url}"
        read = method == "GET"
        if not read:
            kwargs["headers"] = {"X-Request-Id": request_id or new_request_id()}
        response = await self._call(method, url, read=read, **kwargs)
        with self._reading(what):
            self._refuse_unread(what, response)
            answer = response.json()
            if not isinstance(answer, dict):
                raise TypeError("answer is not an object")
            code = answer["code"]
            if not isinstance(code, int) or isinstance(code, bool):
                raise TypeError(f"code is not an integer: {code!r}")
            if code == _MALFORMED:
                raise self._unread(f"{what}: code {code} {answer.get('msg')}")
            data = answer["data"]
        if code == 0 and not response.is_success:
            raise self._contract_error(f"{what}: code 0 with HTTP {response.status_code}")
        return code, data

    async def _ok(self, method: str, url: str, **kwargs: Any) -> list[Any]:
        code, data = await self._request(method, url, **kwargs)
        if code != 0:
            raise self._contract_error(f"{method} {url}: unexpected code {code}")
        if not isinstance(data, list):
            raise self._contract_error(f"{method} {url}: data is not a list")
        return data

    async def _write(
        self, url: str, body: dict[str, Any], request_id: str | None
    ) -> Binding | Refusal:
        return await self._post(url, body, request_id, _REFUSALS, _binding)

    async def _post(
        self,
        url: str,
        body: dict[str, Any],
        request_id: str | None,
        refusals: Mapping[int, RefusalCode],
        parse: Callable[[Any], _T],
    ) -> _T | Refusal:
        """A write sent once under ``request_id``: its answer ``parse``d, or a refusal
        from ``refusals`` (any other code is a contract fault)."""
        code, data = await self._request("POST", url, request_id=request_id, json=body)
        if code != 0:
            refused = refusals.get(code)
            if refused is None:
                raise self._contract_error(f"POST {url}: unknown code {code}")
            return Refusal(refused)
        with self._reading(f"POST {url}"):
            return parse(data)

    async def find_persons(self, cert_nos: Sequence[str]) -> Mapping[str, Person]:
        if not cert_nos:
            return {}
        data = await self._ok("GET", _PERSONS, params={"certNos": ",".join(cert_nos)})
        with self._reading(f"GET {_PERSONS}"):
            return _persons(data)

    async def relatives(self, cert_no: str) -> Sequence[CivilRelative]:
        url = f"{_BASE}/persons/{quote(cert_no, safe='')}/relatives"
        data = await self._ok("GET", url)
        with self._reading(f"GET {url}"):
            return [
                CivilRelative(text(r["certNo"]), text(r["name"]), _RELATION[r["relation"]])
                for r in data
            ]

    async def bindings_of(self, cert_nos: Sequence[str]) -> Sequence[Binding]:
        if not cert_nos:
            return []
        data = await self._ok("GET", _AUTHORIZATIONS, params={"certNos": ",".join(cert_nos)})
        with self._reading(f"GET {_AUTHORIZATIONS}"):
            return _authorizations(data)

    async def read_family(self, cert_nos: Sequence[str], bound: Sequence[str]) -> FamilyRead:
        """One GET of the persons ``cert_nos`` with the authorizations of ``bound``."""
        if not cert_nos or not bound:  # one read at most (none for two empty lists)
            return FamilyRead(await self.find_persons(cert_nos), await self.bindings_of(bound))
        params = {"certNos": ",".join(cert_nos), "authorizationsOf": ",".join(bound)}
        code, data = await self._request("GET", _PERSONS, params=params)
        if code != 0:
            raise self._contract_error(f"GET {_PERSONS}: unexpected code {code}")
        with self._reading(f"GET {_PERSONS}"):
            if not isinstance(data, dict):
                raise TypeError("data is not an object")
            return FamilyRead(
                _persons(_list(data["persons"])), _authorizations(_list(data["authorizations"]))
            )

    async def bind(self, request: BindRequest) -> Binding | Refusal:
        body: dict[str, Any] = {
            "authorizerCertNo": request.authorizer_cert_no,
            "beneficiaryCertNo": request.beneficiary_cert_no,
            "beneficiaryName": request.beneficiary_name,
            "relation": _RELATION_WORD[request.relation],
            "commitmentSigned": request.commitment_signed,
        }
        if request.beneficiary_province is not None:  # across provinces, with a quota
            body["beneficiaryProvince"] = request.beneficiary_province
        if request.quota is not None:
            body["quota"] = _money_text(request.quota)
        return await self._write(_AUTHORIZATIONS, body, request.request_id)

    async def unbind(
        self, binding_id: str, *, actor: str, request_id: str | None = None
    ) -> Binding | Refusal:
        url = f"{_AUTHORIZATIONS}/{quote(binding_id, safe='')}/cancellation"
        return await self._write(url, {"certNo": actor}, request_id)

    async def respond(
        self, binding_id: str, *, actor: str, accept: bool, request_id: str | None = None
    ) -> Binding | Refusal:
        url = f"{_AUTHORIZATIONS}/{quote(binding_id, safe='')}/confirmation"
        return await self._write(url, {"certNo": actor, "accept": accept}, request_id)

    # -- settlement ----------------------------------------------------------------

    async def settle(self, request: SettleRequest) -> Settlement | Refusal:
        """Settle a bill, naming the paying authorizer (see the module's docstring).

        Choosing and settling take turns (one settlement at a time through this
        adapter), so the balances read are still the balances when the province
        pays: another settlement cannot empty the chosen account in between.
        """
        request_id = request.request_id or new_request_id()
        funding = request.funding
        async with self._settling:
            if funding is not None:  # paid from a quota held elsewhere: nobody to choose
                payer = None
                code, data = await self._settle_naming(request, None, request_id)
            else:
                # the payer named under each id before, if it was sent: the same request
                payer = await self._named.once(request_id, lambda: self.payer_to_name(request))
                code, data = await self._settle_naming(request, payer, request_id)
                if code == _PAYER_NOT_BOUND:  # unbound since we looked (or a first send)
                    second = _second_try(request_id)
                    payer = await self._named.once(second, lambda: self.payer_to_name(request))
                    code, data = await self._settle_naming(request, payer, second)
        if code == _PAYER_NOT_BOUND:
            raise self._contract_error(f"POST {_SETTLEMENTS}: payer {payer!r} not bound")
        done = self._settled(f"POST {_SETTLEMENTS}", code, data)
        if isinstance(done, Settlement) and (
            done.patient.cert_no != request.patient_cert_no
            or done.institution_code != request.institution_code
        ):
            raise self._contract_error(f"POST {_SETTLEMENTS}: another bill's settlement")
        if (
            isinstance(done, Settlement)
            and done.funding_hold is not None
            and (funding is None or done.funding_hold != funding.hold_id)
        ):
            raise self._contract_error(f"POST {_SETTLEMENTS}: paid from another hold")
        return done

    async def reverse(
        self,
        settlement_id: str,
        *,
        institution_code: str,
        reason: str,
        request_id: str | None = None,
    ) -> Settlement | Refusal:
        url = f"{_SETTLEMENTS}/{quote(settlement_id, safe='')}/reversal"
        code, data = await self._request(
            "POST",
            url,
            request_id=request_id,
            json={"institutionCode": institution_code, "reason": reason},
        )
        done = self._settled(f"POST {url}", code, data)
        if isinstance(done, Settlement) and done.id != settlement_id:
            raise self._contract_error(f"POST {url}: another settlement {done.id!r}")
        return done

    async def settlements_of(self, cert_nos: Sequence[str]) -> Sequence[Settlement]:
        if not cert_nos:
            return []
        data = await self._ok("GET", _SETTLEMENTS, params={"certNos": ",".join(cert_nos)})
        with self._reading(f"GET {_SETTLEMENTS}"):
            return [_settlement(s) for s in data]

    async def _settle_naming(
        self, request: SettleRequest, payer: str | None, request_id: str
    ) -> tuple[int, Any]:
        """The settlement request, naming ``payer``; with `SettleRequest.funding`, the
        quota held in another province instead (and no ``payerCertNo``)."""
        body: dict[str, Any] = {
            "institutionCode": request.institution_code,
            "idempotencyKey": request.idempotency_key,
            "certNo": request.patient_cert_no,
            "medicalType": _MEDICAL_TYPE_WORD[request.medical_type],
            "totalAmount": _money_text(request.total),
            "fundPaid": _money_text(request.fund_paid),
        }
        funding = request.funding
        if funding is None:
            body["payerCertNo"] = payer
        else:
            body["crossProvinceFunding"] = {
                "province": funding.province,
                "payerCertNo": funding.payer,
                "amount": _money_text(funding.amount),
                "holdId": funding.hold_id,
            }
        return await self._request("POST", _SETTLEMENTS, request_id=request_id, json=body)

    # -- holds on a quota (across provinces) ---------------------------------------

    async def hold_quota(
        self, binding_id: str, *, amount: Decimal, reference: str, request_id: str | None = None
    ) -> QuotaHold | Refusal:
        url = f"{_AUTHORIZATIONS}/{quote(binding_id, safe='')}/holds"
        body = {"amount": _money_text(amount), "reference": reference}
        done = await self._post(url, body, request_id, _HOLD_REFUSALS, _hold)
        if isinstance(done, QuotaHold) and done.binding_id != binding_id:
            raise self._contract_error(f"POST {url}: a hold on {done.binding_id!r}")
        return done

    async def confirm_hold(
        self, hold_id: str, *, used: Decimal, payment_ref: str, request_id: str | None = None
    ) -> QuotaHold | Refusal:
        body = {"used": _money_text(used), "paymentRef": payment_ref}
        return await self._hold_write(hold_id, "confirmation", body, request_id)

    async def release_hold(
        self, hold_id: str, *, request_id: str | None = None
    ) -> QuotaHold | Refusal:
        return await self._hold_write(hold_id, "release", {}, request_id)

    async def refund_hold(
        self, hold_id: str, *, request_id: str | None = None
    ) -> QuotaHold | Refusal:
        return await self._hold_write(hold_id, "refund", {}, request_id)

    async def holds_of(self, cert_nos: Sequence[str]) -> Sequence[QuotaHold]:
        if not cert_nos:
            return []
        data = await self._ok("GET", _HOLDS, params={"certNos": ",".join(cert_nos)})
        with self._reading(f"GET {_HOLDS}"):
            return [_hold(h) for h in data]

    # -- resident premiums (城乡居民医保个人缴费) ------------------------------------------

    async def premium_of(self, cert_no: str, year: int) -> Premium | Refusal:
        url = _premium_url(cert_no, year)
        code, data = await self._request("GET", url)
        if code != 0:
            refused = _PREMIUM_READ_REFUSALS.get(code)
            if refused is None:
                raise self._contract_error(f"GET {url}: unknown code {code}")
            return Refusal(refused)
        with self._reading(f"GET {url}"):
            raw_amount, raw_payment = data["amount"], data["payment"]
            found = Premium(
                cert_no=text(data["certNo"]),
                year=_year(data["year"]),
                amount=None if raw_amount is None else parse_money(raw_amount),
                payment=None if raw_payment is None else _premium_payment(raw_payment),
            )
            paid = found.payment
            if (found.cert_no, found.year) != (cert_no, year) or (
                paid is not None and ((paid.beneficiary.cert_no, paid.year) != (cert_no, year))
            ):
                raise ValueError(f"another premium: {found.cert_no!r} for {found.year}")
            return found

    async def pay_premium(self, request: PremiumRequest) -> PremiumPayment | Refusal:
        url = f"{_premium_url(request.beneficiary_cert_no, request.year)}/payments"
        body: dict[str, Any] = {"payerCertNo": request.payer_cert_no}
        funding = request.funding
        if funding is not None:  # from a quota held in another province
            body["crossProvinceFunding"] = {
                "province": funding.province,
                "payerCertNo": funding.payer,
                "amount": _money_text(funding.amount),
                "holdId": funding.hold_id,
            }
        done = await self._post(url, body, request.request_id, _PREMIUM_REFUSALS, _premium_payment)
        if isinstance(done, PremiumPayment) and (
            (done.beneficiary.cert_no, done.year) != (request.beneficiary_cert_no, request.year)
            or done.payer.cert_no != request.payer_cert_no
            or (done.payer_province, done.funding_hold)
            != ((None, None) if funding is None else (funding.province, funding.hold_id))
        ):
            raise self._contract_error(f"POST {url}: another payment {done.id!r}")
        return done

    # -- registrations: the change feed ------------------------------------------------

    async def registration_changes(self, after: int) -> Sequence[RegistrationChange]:
        if after < 0:
            raise ValueError(f"not a change's number: {after!r}")
        data = await self._ok("GET", _CHANGES, params={"after": str(after)})
        with self._reading(f"GET {_CHANGES}"):
            changes = [self._change(c) for c in data]
            _check_feed(after, changes)
            return changes

    def _change(self, raw: Any) -> RegistrationChange:
        seq = raw["seq"]
        if not isinstance(seq, int) or isinstance(seq, bool):
            raise TypeError(f"seq is not an integer: {seq!r}")
        kind = _CHANGE_TYPE[raw["type"]]
        to = _province(raw["toProvince"])
        if (kind is ChangeKind.MOVED) != (to is not None) or to == self.code:
            raise ValueError(f"{raw['type']} to {to!r}")
        return RegistrationChange(
            seq=seq,
            cert_no=text(raw["certNo"]),
            kind=kind,
            to_province=to,
            at=_time(raw["changedAt"]),
        )

    async def _hold_write(
        self, hold_id: str, action: str, body: dict[str, Any], request_id: str | None
    ) -> QuotaHold | Refusal:
        url = f"{_HOLDS}/{quote(hold_id, safe='')}/{action}"
        done = await self._post(url, body, request_id, _HOLD_REFUSALS, _hold)
        if isinstance(done, QuotaHold) and done.id != hold_id:
            raise self._contract_error(f"POST {url}: another hold {done.id!r}")
        return done

    def _settled(self, what: str, code: int, data: Any) -> Settlement | Refusal:
        if code != 0:
            refused = _SETTLEMENT_REFUSALS.get(code)
            if refused is None:
                raise self._contract_error(f"{what}: unknown code {code}")
            return Refusal(refused)
        with self._reading(what):
            return _settlement(data)


def _second_try(request_id: str) -> str:
    """The request id of the settlement sent again after 40017: derived from the first
    (the same length for a `new_request_id`: its time, then 10 hex digits of a hash), so
    that `settle` sent again under the first id sends the same two requests."""
    digest = hashlib.sha256(f"{request_id}/2".encode()).hexdigest()[:10]
    return f"{request_id[:16]}{digest}"


def _check_feed(after: int, changes: Sequence[RegistrationChange]) -> None:
    """A feed read after the change ``after`` holds only later ones, oldest first."""
    last = after
    for change in changes:
        if change.seq <= last:
            raise ValueError(f"change {change.seq} after {last}")
        last = change.seq


def _time(value: object) -> dt.datetime:
    """An ISO 8601 time, which must carry its offset."""
    moment = dt.datetime.fromisoformat(text(value))
    if moment.tzinfo is None:
        raise ValueError(f"time without offset: {value!r}")
    return moment


def _premium_url(cert_no: str, year: int) -> str:
    """A resident's premium for ``year`` (four digits, 2000-2100: else the caller's bug,
    `ValueError`, no request)."""
    if isinstance(year, bool) or not 2000 <= year <= 2100:
        raise ValueError(f"not a premium's year: {year!r}")
    return f"{_PREMIUMS}/{quote(cert_no, safe='')}/{year}"


def _year(value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"year is not an integer: {value!r}")
    return value


def _premium_payment(raw: Any) -> PremiumPayment:
    province = _province(raw["payerProvince"])
    raw_hold = raw["fundingHoldId"]
    hold = None if raw_hold is None else text(raw_hold)
    if (province is None) != (hold is None):
        raise ValueError("a payer's province and hold come together")
    return PremiumPayment(
        id=text(raw["paymentId"]),
        beneficiary=_party(raw["beneficiary"]),
        year=_year(raw["year"]),
        amount=parse_money(raw["amount"]),
        payer=_party(raw["payer"]),
        payer_province=province,
        funding_hold=hold,
        paid_at=_time(raw["paidAt"]),
    )


def _persons(data: list[Any]) -> dict[str, Person]:
    """The persons GET's ``[person]``: those Jiangsu insures among the asked, by ID number."""
    found: dict[str, Person] = {}
    for item in data:
        area, balance = item["insuredArea"], item["accountBalance"]
        person = Person(
            cert_no=text(item["certNo"]),
            name=text(item["name"]),
            area=Area(text(area["code"]), text(area["name"])),
            insurance_type=_INSURANCE_TYPE[item["insuranceType"]],
            insurance_status=_INSURANCE_STATUS[item["insuranceStatus"]],
            balance=None if balance is None else parse_money(balance),
            phone=item.get("phone"),
        )
        found[person.cert_no] = person
    return found


def _authorizations(data: list[Any]) -> list[Binding]:
    return [_binding(b) for b in data]


def _list(value: object) -> list[Any]:
    if not isinstance(value, list):
        raise TypeError(f"not a list: {value!r}")
    return value


def _party(raw: Any) -> Party:
    return Party(text(raw["certNo"]), text(raw["name"]))


def _binding(raw: Any) -> Binding:
    return Binding(
        id=text(raw["authId"]),
        authorizer=_party(raw["authorizer"]),
        beneficiary=_party(raw["beneficiary"]),
        relation=_RELATION[raw["relation"]],
        status=_STATE[raw["state"]],
        created_at=_time(raw["createdAt"]),
        beneficiary_province=_province(raw.get("beneficiaryProvince")),
        quota=_quota(raw.get("quota")),
    )


def _province(value: object) -> str | None:
    """A province's two-digit code (``"41"``); None when absent or null."""
    if value is None:
        return None
    code = text(value)
    if len(code) != 2 or not code.isascii() or not code.isdigit() or code[0] == "0":
        raise ValueError(f"not a province's code: {code!r}")
    return code


def _quota(raw: object) -> Quota | None:
    """A quota ``{"granted", "remaining"}``; None when absent or null."""
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise TypeError(f"quota is not an object: {raw!r}")
    return Quota(parse_money(raw["granted"]), parse_money(raw["remaining"]))


def _settlement(raw: Any) -> Settlement:
    total, fund_paid = parse_money(raw["totalAmount"]), parse_money(raw["fundPaid"])
    self_pay, own = parse_money(raw["psnPartAmt"]), parse_money(raw["acctPay"])
    mutual, cash = parse_money(raw["acctMulaidPay"]), parse_money(raw["psnCashPay"])
    raw_payer, balance = raw["payer"], raw["balc"]
    payer: Party | None = None
    payer_balance: Decimal | None = None
    if raw_payer is not None:
        payer = _party(raw_payer)
        payer_balance = None if raw_payer["balc"] is None else parse_money(raw_payer["balc"])
    elif mutual > 0:
        raise ValueError("mutual aid paid without a payer")
    if mutual == 0:  # nobody paid for the patient
        payer, payer_balance = None, None
    # across provinces: the payer's province and the hold there (absent before 2026)
    province = _province(raw.get("payerProvince"))
    raw_hold = raw.get("fundingHoldId")
    hold = None if raw_hold is None else text(raw_hold)
    if (province is None) != (hold is None) or (province is not None and payer is None):
        raise ValueError("a payer's province and hold come together, with a payer")
    if province is not None:
        payer_balance = None  # an account elsewhere: Jiangsu does not know it
    reversed_at, reason = raw["reversedAt"], raw["reversalReason"]
    return Settlement(
        id=text(raw["settlementId"]),
        institution_code=text(raw["institutionCode"]),
        patient=_party(raw["patient"]),
        medical_type=_MEDICAL_TYPE[raw["medicalType"]],
        total=total,
        fund_paid=fund_paid,
        self_pay=self_pay,
        own_account_paid=own,
        mutual_aid_paid=mutual,
        mutual_aid_payer=payer,
        cash_due=cash,
        patient_balance_after=None if balance is None else parse_money(balance),
        payer_balance_after=payer_balance,
        settled_at=_time(raw["settledAt"]),
        reversed_at=None if reversed_at is None else _time(reversed_at),
        reversal_reason=None if reason is None else text(reason),
        mutual_aid_province=province,
        funding_hold=hold,
    )


def _hold(raw: Any) -> QuotaHold:
    province = _province(raw["beneficiaryProvince"])
    if province is None:
        raise ValueError("a hold names the relative's province")
    payment_ref = raw["paymentRef"]
    return QuotaHold(
        id=text(raw["holdId"]),
        binding_id=text(raw["authId"]),
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


def _money_text(amount: Decimal) -> str:
    return str(amount.quantize(_CENT))

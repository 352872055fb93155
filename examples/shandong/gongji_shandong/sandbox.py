"""Shandong (山东) as we model it: JSON-RPC 2.0 over HTTP (illustrative).

Every call is ``POST /jsonrpc`` with ``{"jsonrpc": "2.0", "id", "method", "params"}``
(``params`` an object; one call a request, no batches, no notifications); every answer
is HTTP 200 with ``{"jsonrpc": "2.0", "id", "result"}`` or ``{"jsonrpc": "2.0", "id",
"error": {"code", "message", "data"}}``, ``id`` the request's.

Errors:

* JSON-RPC's own: -32700 (not JSON; ``id`` null), -32600 (not a JSON-RPC request; ``id``
  null when it has none), -32601 (no such method), -32602 (params Shandong cannot read:
  a field missing or mistyped, an amount that is not one, empty text where text is
  needed, text with a control character). Shandong did nothing with any of them.
* -32009: ``requestId`` already kept with the answer to another request (nothing done).
* Business refusals: the codes of `ERRORS` (1xxx a person, 2xxx a binding, 3xxx
  settlement and money, 4xxx a quota across provinces, 5xxx a resident's premium),
  ``data`` ``{"reason", "field"}``.

Writes carry ``params.requestId``: Shandong keeps it with its answer and answers the
same ``requestId`` again exactly as the first time (a refusal too), doing nothing
twice; reads carry none. `DIALECT` tells them apart by ``method`` alone.

============================ ===== ==============================================
method                       kind  params -> result
============================ ===== ==============================================
person.find                  read  {certNos} -> [person]
person.relatives             read  {certNo} -> [{certNo, name, relation}]
binding.list                 read  {certNos} -> [binding]
family.read                  read  {certNos, bindingsOf} -> {persons, bindings}
binding.create               write {authorizerCertNo, beneficiaryCertNo,
                                   beneficiaryName, relation, commitmentSigned
                                   [, beneficiaryProvince, quota]} -> binding
binding.cancel               write {bindingId, actorCertNo} -> binding
settlement.create            write {institutionCode, institutionSettlementId, certNo,
                                   medicalType, total, fundPaid[, funding]} -> settlement
settlement.reverse           write {settlementId, institutionCode, reason} -> settlement
settlement.list              read  {certNos} -> [settlement] (newest first)
quota.hold                   write {bindingId, amount, reference} -> hold
quota.confirm                write {holdId, used, paymentRef} -> hold
quota.release                write {holdId} -> hold
quota.refund                 write {holdId} -> hold
quota.list                   read  {certNos} -> [hold]
premium.get                  read  {certNo, year} -> premium
premium.pay                  write {certNo, year, payerCertNo[, funding]} -> payment
registration.changes         read  {after} -> [change] (oldest first, at most 100)
============================ ===== ==============================================

A person is ``{certNo, name, gender, birthDate, phone, insuredArea: {code, name},
insuranceType: employee|resident, insuranceStatus: normal|suspended|terminated|pending,
accountBalance}``; a binding ``{bindingId, authorizer: {certNo, name}, beneficiary,
relation, state: active|pending|declined|cancelled, createdAt, beneficiaryProvince,
quota: {granted, remaining}|null}``; relations ``spouse, parent, child, spouse_parent,
child_spouse, sibling, grandparent, grandchild``. Amounts are strings of at most two
decimals; times ISO 8601 in Beijing time (+08:00). ``funding`` (a bill or a premium paid
from a quota held in another province) is ``{province, payerCertNo, amount, holdId}``.

Shandong's system picks the paying authorizer itself (the bound one with the largest
balance): a bill names none.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
from sandbox.app import sandbox_app, system_of, unreadable_text
from sandbox.dialect import Dialect, UnknownCall, classified
from sandbox.engine import (
    CHINA,
    NEAR_RELATIVES,
    Funding,
    ProvinceRules,
    ProvinceSystem,
    RequestIdReused,
    SandboxRefusal,
    load_roster,
    money_text,
    with_people,
)
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from gongji_shandong.people import roster as _people

# Shandong's rules (illustrative): at most 4 relatives, across cities, a commitment
# letter, no confirmation; near relatives from 2024-01-01, across provinces from 2026-04-01.
PREMIUMS = ((2024, "350.00"), (2025, "380.00"), (2026, "400.00"), (2027, "410.00"))
SEED = ProvinceRules(
    prefix="37",
    id_prefix="SD",
    effective_from=dt.date(2023, 1, 1),
    max_relatives=4,
    cross_city=True,
    commitment_required=True,
    premiums=PREMIUMS,
)
NEAR = replace(
    SEED,
    effective_from=dt.date(2024, 1, 1),
    allowed_relations=NEAR_RELATIVES,
    premium_payment=True,
)
ACROSS = replace(NEAR, effective_from=dt.date(2026, 4, 1), cross_province=True)
VERSIONS = (SEED, NEAR, ACROSS)

PATH = "/jsonrpc"

# The business code and message of each reason the province refuses for.
ERRORS: dict[str, tuple[int, str]] = {
    "person_not_found": (1001, "未查询到参保信息"),
    "info_mismatch": (1002, "姓名与身份证号不一致"),
    "not_employee": (1003, "非职工医保参保人员"),
    "beneficiary_not_insured": (1004, "被共济人参保状态异常"),
    "patient_not_insured": (1005, "参保人待遇暂停,不能结算"),
    "not_resident": (1006, "非城乡居民医保参保人员"),
    "relation_not_allowed": (2001, "该亲属关系不在共济范围"),
    "relation_not_verified": (2002, "亲属关系核验未通过"),
    "cross_area": (2003, "不在同一统筹区"),
    "cross_province": (2004, "暂未开通跨省共济"),
    "limit": (2005, "共济人数已达上限"),
    "already_bound": (2006, "已存在共济关系"),
    "duplicate": (2007, "重复绑定"),
    "commitment": (2008, "未签署共济承诺书"),
    "forbidden": (2009, "无权操作"),
    "bad_state": (2010, "共济关系状态不允许此操作"),
    "bad_amount": (3001, "金额不合法"),
    "idempotency_conflict": (3002, "医药机构结算ID已用于其他结算"),
    "payer_not_bound": (3003, "共济人未与参保人建立共济关系"),
    "already_reversed": (3004, "该结算已撤销"),
    "reversal_window": (3005, "仅可撤销当日结算"),
    "balance_insufficient": (3006, "个人账户余额不足"),
    "quota_not_allowed": (4001, "省内共济不设共济额度"),
    "quota_above_balance": (4002, "共济额度超过个人账户余额"),
    "quota_insufficient": (4003, "共济额度余额不足"),
    "bad_hold_state": (4004, "冻结状态不允许此操作"),
    "premium_not_declared": (5001, "该年度缴费标准未公布"),
    "premium_paid": (5002, "该年度已缴费"),
    "premium_not_allowed": (5003, "暂不支持个人账户为家庭成员缴费"),
}
PARSE_ERROR, INVALID_REQUEST, NO_METHOD, INVALID_PARAMS = -32700, -32600, -32601, -32602
REQUEST_ID_REUSED = -32009

AMOUNT = re.compile(r"-?[0-9]{1,16}(\.[0-9]{1,2})?")
MAX_ID = 64  # characters of a requestId, an institution's settlement id, a hold's reference

TYPE = {"EMPLOYEE": "employee", "RESIDENT": "resident"}
STATUS = {
    "ACTIVE": "normal",
    "SUSPENDED": "suspended",
    "TERMINATED": "terminated",
    "PENDING": "pending",
}
RELATION = {
    "SPOUSE": "spouse",
    "PARENT": "parent",
    "CHILD": "child",
    "PARENT_IN_LAW": "spouse_parent",
    "CHILD_IN_LAW": "child_spouse",
    "SIBLING": "sibling",
    "GRANDPARENT": "grandparent",
    "GRANDCHILD": "grandchild",
}
RELATION_FROM = {v: k for k, v in RELATION.items()}
STATE = {
    "PENDING_CONFIRMATION": "pending",
    "ACTIVE": "active",
    "DECLINED": "declined",
    "UNBOUND": "cancelled",
}
HOLD_STATE = {"HELD": "held", "CONFIRMED": "paid", "RELEASED": "released", "REFUNDED": "refunded"}
MEDICAL = {"OUTPATIENT": "outpatient", "INPATIENT": "inpatient", "PHARMACY": "pharmacy"}
MEDICAL_FROM = {v: k for k, v in MEDICAL.items()}
KIND = {"MOVED": "moved", "ENDED": "ended"}


def roster() -> dict[str, Any]:
    """The people Shandong's sandbox is seeded with: Shandong's own
    (`gongji_shandong.people`, every scenario of the kit for province 37), on the
    national civil record the other sandboxes share (`sandbox.engine.load_roster`: a
    relative or a payer insured in another province is someone this province's civil
    record knows, as theirs does). Only those insured in Shandong are its insured."""
    return _roster()


def _roster() -> dict[str, Any]:
    return with_people(load_roster(), _people())


def create_app(
    *,
    data_dir: Path | None = None,
    roster: dict[str, Any] | None = None,
    policy_date: dt.date | None = None,
) -> Starlette:
    return sandbox_app(
        "shandong",
        VERSIONS,
        [Route(PATH, call, methods=["POST"])],
        data_dir=data_dir,
        roster=roster if roster is not None else _roster(),
        policy_date=policy_date,
    )


async def call(request: Request) -> JSONResponse:
    try:
        message = json.loads(await request.body())
    except ValueError:
        return _error(None, PARSE_ERROR, "Parse error")
    rpc_id = message.get("id") if isinstance(message, dict) else None
    if not isinstance(rpc_id, str | int) or isinstance(rpc_id, bool):
        rpc_id = None
    method = message.get("method") if isinstance(message, dict) else None
    if rpc_id is None or message.get("jsonrpc") != "2.0" or not isinstance(method, str):
        return _error(rpc_id, INVALID_REQUEST, "Invalid Request")
    handler = _HANDLERS.get(method)
    if handler is None:
        return _error(rpc_id, NO_METHOD, f"Method not found: {method}")
    params = message.get("params")
    if not isinstance(params, dict) or unreadable_text(params):
        return _error(rpc_id, INVALID_PARAMS, "Invalid params")
    request_id = params.get("requestId")
    if request_id is not None and (not isinstance(request_id, str) or len(request_id) > MAX_ID):
        return _error(rpc_id, INVALID_PARAMS, "Invalid params: requestId")
    try:
        result = await handler(system_of(request), params, request_id)
    except SandboxRefusal as refusal:
        code, text = ERRORS[refusal.reason]
        data = {"reason": refusal.reason, "field": refusal.field}
        return _error(rpc_id, code, text, data)
    except RequestIdReused:
        return _error(rpc_id, REQUEST_ID_REUSED, "requestId already used for another request")
    except (KeyError, TypeError, ValueError) as exc:
        return _error(rpc_id, INVALID_PARAMS, f"Invalid params: {exc}")
    return JSONResponse({"jsonrpc": "2.0", "id": rpc_id, "result": result})


def _error(rpc_id: str | int | None, code: int, message: str, data: Any = None) -> JSONResponse:
    error: dict[str, Any] = {"code": code, "message": message}
    if data is not None:
        error["data"] = data
    return JSONResponse({"jsonrpc": "2.0", "id": rpc_id, "error": error})


# -- reading params ---------------------------------------------------------------------


def _text(params: Any, key: str, *, limit: int | None = None) -> str:
    """A required, non-empty text; anything else is invalid params."""
    value = params[key]
    if not isinstance(value, str) or not value or (limit is not None and len(value) > limit):
        raise ValueError(f"{key}: {value!r}")
    return value


def _texts(params: Any, key: str) -> list[str]:
    value = params[key]
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ValueError(f"{key}: {value!r}")
    return value


def _amount(params: Any, key: str) -> str:
    value = params[key]
    if not isinstance(value, str) or AMOUNT.fullmatch(value) is None:
        raise ValueError(f"{key}: {value!r}")
    return value


def _province(value: object) -> str:
    if not isinstance(value, str) or re.fullmatch(r"[1-9][0-9]", value) is None:
        raise ValueError(f"province: {value!r}")
    return value


def _year(params: Any) -> int:
    year = params["year"]
    if not isinstance(year, int) or isinstance(year, bool) or not 2000 <= year <= 2100:
        raise ValueError(f"year: {year!r}")
    return year


def _funding(params: Any) -> Funding | None:
    raw = params.get("funding")
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise TypeError(f"funding: {raw!r}")
    return {
        "province": _province(raw["province"]),
        "payer": _text(raw, "payerCertNo"),
        "amount": _amount(raw, "amount"),
        "hold": _text(raw, "holdId", limit=MAX_ID),
    }


# -- writing results --------------------------------------------------------------------


def _time(stamp: str | None) -> str | None:
    if stamp is None:
        return None
    return dt.datetime.fromisoformat(stamp).astimezone(CHINA).isoformat()


def _party(cert_no: str, name: str) -> dict[str, str]:
    return {"certNo": cert_no, "name": name}


def _person(p: dict[str, Any]) -> dict[str, Any]:
    return {
        "certNo": p["cert_no"],
        "name": p["name"],
        "gender": p["gender"],
        "birthDate": p["birth_date"],
        "phone": p["phone"],
        "insuredArea": {"code": p["area_code"], "name": p["area_name"]},
        "insuranceType": TYPE[p["insurance_type"]],
        "insuranceStatus": STATUS[p["insurance_status"]],
        "accountBalance": money_text(p["balance"]),
    }


def _binding(row: dict[str, Any]) -> dict[str, Any]:
    granted = row["quota_granted"]
    return {
        "bindingId": row["id"],
        "authorizer": _party(row["authorizer"], row["authorizer_name"]),
        "beneficiary": _party(row["beneficiary"], row["beneficiary_name"]),
        "relation": RELATION[row["relation"]],
        "state": STATE[row["status"]],
        "createdAt": _time(row["created_at"]),
        "beneficiaryProvince": row["beneficiary_province"],
        "quota": None
        if granted is None
        else {"granted": money_text(granted), "remaining": money_text(row["quota_remaining"])},
    }


def _settlement(row: dict[str, Any]) -> dict[str, Any]:
    payer = row["payer"]
    return {
        "settlementId": row["id"],
        "institutionCode": row["institution"],
        "institutionSettlementId": row["idempotency_key"],
        "patient": _party(row["patient"], row["patient_name"]),
        "medicalType": MEDICAL[row["medical_type"]],
        "total": money_text(row["total"]),
        "fundPaid": money_text(row["fund_paid"]),
        "selfPay": money_text(row["self_pay"]),
        "accountPaid": money_text(row["own_account_paid"]),
        "mutualAidPaid": money_text(row["mutual_aid_paid"]),
        "cashDue": money_text(row["cash_due"]),
        "patientBalance": money_text(row["patient_balance"]),
        "mutualAid": None
        if payer is None
        else {
            "payer": _party(payer, row["payer_name"]),
            "balance": money_text(row["payer_balance"]),
            "province": row["payer_province"],
            "holdId": row["funding_hold"],
        },
        "settledAt": _time(row["settled_at"]),
        "reversal": None
        if row["reversed_at"] is None
        else {"at": _time(row["reversed_at"]), "reason": row["reversal_reason"]},
    }


def _hold(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "holdId": row["id"],
        "bindingId": row["binding_id"],
        "authorizer": _party(row["authorizer"], row["authorizer_name"]),
        "beneficiary": _party(row["beneficiary"], row["beneficiary_name"]),
        "beneficiaryProvince": row["beneficiary_province"],
        "amount": money_text(row["amount"]),
        "used": money_text(row["used"]),
        "state": HOLD_STATE[row["status"]],
        "reference": row["reference"],
        "paymentRef": row["payment_ref"],
        "createdAt": _time(row["created_at"]),
    }


def _payment(row: dict[str, Any] | None) -> dict[str, Any] | None:
    if row is None:
        return None
    return {
        "paymentId": row["id"],
        "beneficiary": _party(row["beneficiary"], row["beneficiary_name"]),
        "year": row["year"],
        "amount": money_text(row["amount"]),
        "payer": _party(row["payer"], row["payer_name"]),
        "payerProvince": row["payer_province"],
        "holdId": row["funding_hold"],
        "paidAt": _time(row["paid_at"]),
    }


# -- the methods ------------------------------------------------------------------------


async def _find(system: ProvinceSystem, params: Any, rid: str | None) -> list[Any]:
    cert_nos = _texts(params, "certNos")
    return [_person(p) for p in await system.persons(cert_nos)] if cert_nos else []


async def _relatives(system: ProvinceSystem, params: Any, rid: str | None) -> list[Any]:
    rows = await system.relatives(_text(params, "certNo"))
    return [
        {"certNo": r["cert_no"], "name": r["name"], "relation": RELATION[r["relation"]]}
        for r in rows
    ]


async def _bindings(system: ProvinceSystem, params: Any, rid: str | None) -> list[Any]:
    cert_nos = _texts(params, "certNos")
    return [_binding(r) for r in await system.bindings_of(cert_nos)] if cert_nos else []


async def _family(system: ProvinceSystem, params: Any, rid: str | None) -> dict[str, Any]:
    persons = await _find(system, params, rid)
    bindings = await _bindings(system, {"certNos": params["bindingsOf"]}, rid)
    return {"persons": persons, "bindings": bindings}


async def _bind(system: ProvinceSystem, params: Any, rid: str | None) -> dict[str, Any]:
    relation = RELATION_FROM.get(params["relation"])
    if relation is None:
        raise SandboxRefusal("relation_not_allowed", "relation")
    signed = params["commitmentSigned"]
    if not isinstance(signed, bool):
        raise TypeError(f"commitmentSigned: {signed!r}")
    province = params.get("beneficiaryProvince")
    row = await system.bind(
        authorizer=_text(params, "authorizerCertNo"),
        beneficiary=_text(params, "beneficiaryCertNo"),
        beneficiary_name=_text(params, "beneficiaryName"),
        relation=relation,
        commitment_signed=signed,
        beneficiary_province=None if province is None else _province(province),
        quota=None if params.get("quota") is None else _amount(params, "quota"),
        request_id=rid,
    )
    return _binding(row)


async def _cancel(system: ProvinceSystem, params: Any, rid: str | None) -> dict[str, Any]:
    row = await system.unbind(
        _text(params, "bindingId"), actor=_text(params, "actorCertNo"), request_id=rid
    )
    return _binding(row)


async def _settle(system: ProvinceSystem, params: Any, rid: str | None) -> dict[str, Any]:
    row = await system.settle(
        institution=_text(params, "institutionCode"),
        idempotency_key=_text(params, "institutionSettlementId", limit=MAX_ID),
        patient=_text(params, "certNo"),
        medical_type=MEDICAL_FROM[params["medicalType"]],
        total=_amount(params, "total"),
        fund_paid=_amount(params, "fundPaid"),
        request_id=rid,
        funding=_funding(params),
    )
    return _settlement(row)


async def _reverse(system: ProvinceSystem, params: Any, rid: str | None) -> dict[str, Any]:
    row = await system.reverse(
        _text(params, "settlementId"),
        institution=_text(params, "institutionCode"),
        reason=_text(params, "reason"),
        request_id=rid,
    )
    return _settlement(row)


async def _settlements(system: ProvinceSystem, params: Any, rid: str | None) -> list[Any]:
    cert_nos = _texts(params, "certNos")
    return [_settlement(r) for r in await system.settlements_of(cert_nos)] if cert_nos else []


async def _quota_hold(system: ProvinceSystem, params: Any, rid: str | None) -> dict[str, Any]:
    row = await system.hold(
        _text(params, "bindingId"),
        amount=_amount(params, "amount"),
        reference=_text(params, "reference", limit=MAX_ID * 2),
        request_id=rid,
    )
    return _hold(row)


async def _quota_confirm(system: ProvinceSystem, params: Any, rid: str | None) -> dict[str, Any]:
    row = await system.confirm_hold(
        _text(params, "holdId"),
        used=_amount(params, "used"),
        payment_ref=_text(params, "paymentRef", limit=MAX_ID * 2),
        request_id=rid,
    )
    return _hold(row)


async def _quota_release(system: ProvinceSystem, params: Any, rid: str | None) -> dict[str, Any]:
    return _hold(await system.release_hold(_text(params, "holdId"), request_id=rid))


async def _quota_refund(system: ProvinceSystem, params: Any, rid: str | None) -> dict[str, Any]:
    return _hold(await system.refund_hold(_text(params, "holdId"), request_id=rid))


async def _holds(system: ProvinceSystem, params: Any, rid: str | None) -> list[Any]:
    cert_nos = _texts(params, "certNos")
    return [_hold(r) for r in await system.holds_of(cert_nos)] if cert_nos else []


async def _premium(system: ProvinceSystem, params: Any, rid: str | None) -> dict[str, Any]:
    found = await system.premium(_text(params, "certNo"), _year(params))
    return {
        "certNo": found["cert_no"],
        "year": found["year"],
        "amount": money_text(found["amount"]),
        "payment": _payment(found["payment"]),
    }


async def _pay_premium(system: ProvinceSystem, params: Any, rid: str | None) -> dict[str, Any]:
    row = await system.pay_premium(
        beneficiary=_text(params, "certNo"),
        year=_year(params),
        payer=_text(params, "payerCertNo"),
        funding=_funding(params),
        request_id=rid,
    )
    return _payment(row) or {}


async def _changes(system: ProvinceSystem, params: Any, rid: str | None) -> list[Any]:
    after = params["after"]
    if not isinstance(after, int) or isinstance(after, bool) or after < 0:
        raise ValueError(f"after: {after!r}")
    return [
        {
            "seq": r["seq"],
            "certNo": r["cert_no"],
            "kind": KIND[r["kind"]],
            "toProvince": r["to_province"],
            "at": _time(r["at"]),
        }
        for r in await system.changes(after)
    ]


_HANDLERS = {
    "person.find": _find,
    "person.relatives": _relatives,
    "binding.list": _bindings,
    "family.read": _family,
    "binding.create": _bind,
    "binding.cancel": _cancel,
    "settlement.create": _settle,
    "settlement.reverse": _reverse,
    "settlement.list": _settlements,
    "quota.hold": _quota_hold,
    "quota.confirm": _quota_confirm,
    "quota.release": _quota_release,
    "quota.refund": _quota_refund,
    "quota.list": _holds,
    "premium.get": _premium,
    "premium.pay": _pay_premium,
    "registration.changes": _changes,
}

# Which methods write (kept under their requestId) and which read: `DIALECT`.
READ_CALLS = frozenset(
    {
        "person.find",
        "person.relatives",
        "binding.list",
        "family.read",
        "settlement.list",
        "quota.list",
        "premium.get",
        "registration.changes",
    }
)
WRITE_CALLS = frozenset(
    {
        "binding.create",
        "binding.cancel",
        "settlement.create",
        "settlement.reverse",
        "quota.hold",
        "quota.confirm",
        "quota.release",
        "quota.refund",
        "premium.pay",
    }
)


def _message(request: httpx.Request) -> dict[str, Any]:
    if request.method != "POST" or request.url.path != PATH:
        raise UnknownCall(f"Shandong: {request.method} {request.url.path} is no call of Shandong's")
    try:
        message = json.loads(request.content)
    except ValueError as exc:
        raise UnknownCall(f"Shandong: a call that is not JSON ({exc})") from None
    if not isinstance(message, dict):
        raise UnknownCall("Shandong: a call that is not a JSON-RPC request object")
    return message


def _is_write(request: httpx.Request) -> bool:
    return classified(str(_message(request).get("method")), READ_CALLS, WRITE_CALLS, "Shandong")


def _request_id(request: httpx.Request) -> str | None:
    params = _message(request).get("params")
    found = params.get("requestId") if isinstance(params, dict) else None
    return None if found is None else str(found)


DIALECT = Dialect(is_write=_is_write, request_id=_request_id)

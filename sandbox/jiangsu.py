"""Jiangsu (江苏) as we model it: REST resources in a ``{code, msg, data}`` wrapper.

Every answer is ``{"code": 0, "msg": "success", "data": ...}`` with camelCase
fields. ``code`` 0 is success. Business refusals are answered with HTTP 200 and
a code from `ERRORS` (40001-40029) and ``data: null``; a malformed request
(bad JSON, a missing or mistyped field, an amount that is not a decimal string
of at most two places, text with a control character, more than `MAX_CERT_NOS`
ID numbers) is HTTP 400 with code 40000, and nothing is done; an unknown path
is HTTP 404 with 40400 and a wrong method HTTP 405 with 40500. Inside Jiangsu,
spouse bindings wait for the spouse's confirmation, and every binding needs the
commitment letter (承诺书) signed (across provinces, see below).

Writes (every POST) may carry an ``X-Request-Id`` header (at most `MAX_REQUEST_ID`
characters): Jiangsu keeps it with its answer, and the same id again is answered
as the first time (the refusal too), with nothing done twice. An id already
answered for another request is HTTP 409 with code 40900, and nothing is done.
Without the header a write is done as it comes; GETs ignore it.

Settlement must be told which authorizer pays (``payerCertNo``): the named one
must hold an EFFECTIVE authorization for the patient (else 40017); ``null``
means nobody but the patient and cash. The same ``idempotencyKey`` from the
same institution is the same settlement (a different bill under it is 40016).

================================================== ==== ======================================
endpoint                                           verb request -> data
================================================== ==== ======================================
/api/v1/persons?certNos=a,b                        GET  -> [person]
/api/v1/persons?certNos=a,b&authorizationsOf=c,d   GET  -> {"persons": [person],
                                                         "authorizations": [authorization]}
                                                         (a family screen in one request)
/api/v1/persons/{certNo}/relatives                 GET  -> [{"certNo", "name", "relation"}]
/api/v1/mutual-aid/authorizations?certNos=a,b      GET  -> [authorization] (either side)
/api/v1/mutual-aid/authorizations                  POST {"authorizerCertNo",
                                                         "beneficiaryCertNo", "beneficiaryName",
                                                         "relation", "commitmentSigned": bool
                                                         [, "beneficiaryProvince": "41",
                                                         "quota": "1000.00"]}
                                                         -> authorization
/api/v1/mutual-aid/authorizations/{id}/confirmation POST {"certNo", "accept": bool}
                                                         -> authorization (the spouse answers)
/api/v1/mutual-aid/authorizations/{id}/cancellation POST {"certNo"} -> authorization
/api/v1/settlements?certNos=a,b                    GET  -> [settlement] (patient or payer,
                                                         newest first)
/api/v1/settlements                                POST {"institutionCode", "idempotencyKey",
                                                         "certNo", "medicalType",
                                                         "totalAmount", "fundPaid",
                                                         "payerCertNo": str|null}
                                                         or, paid from a quota held in
                                                         another province, {...,
                                                         "crossProvinceFunding":
                                                         {"province", "payerCertNo",
                                                         "amount", "holdId"}} (no
                                                         "payerCertNo") -> settlement
/api/v1/settlements/{settlementId}/reversal        POST {"institutionCode", "reason"}
                                                         -> settlement (same day, once)
/api/v1/mutual-aid/authorizations/{id}/holds       POST {"amount", "reference"} -> hold
/api/v1/mutual-aid/holds/{holdId}/confirmation     POST {"used", "paymentRef"} -> hold
/api/v1/mutual-aid/holds/{holdId}/release          POST {} -> hold
/api/v1/mutual-aid/holds/{holdId}/refund           POST {} -> hold
/api/v1/mutual-aid/holds?certNos=a,b               GET  -> [hold] (either side of the
                                                         authorization, oldest first)
/api/v1/registrations/changes?after=N              GET  -> [change] (the change feed: those
                                                         after the change N, oldest first, at
                                                         most 100)
/api/v1/premiums/{certNo}/{year}                   GET  -> premium (a resident's, for a year)
/api/v1/premiums/{certNo}/{year}/payments          POST {"payerCertNo"
                                                         [, "crossProvinceFunding":
                                                         {"province", "payerCertNo",
                                                         "amount", "holdId"}]}
                                                         -> payment (once a year)
================================================== ==== ======================================

With ``authorizationsOf`` the persons GET answers, in one request, a family screen:
``persons`` as it answers without it, and ``authorizations`` as
``GET /api/v1/mutual-aid/authorizations?certNos=`` answers those ``authorizationsOf``
names (either list may be empty, as in ``certNos=&authorizationsOf=c``; each holds at
most `MAX_CERT_NOS`).

person: ``{"certNo", "name", "gender": "MALE"|"FEMALE"|null, "birthDate",
"phone", "insuredArea": {"code", "name"}, "insuranceType": "EMPLOYEE"|"RESIDENT",
"insuranceStatus": "NORMAL"|"SUSPENDED"|"TERMINATED"|"NOT_EFFECTIVE",
"accountBalance": "3200.00"|null}``.

authorization: ``{"authId", "authorizer": {"certNo", "name"}, "beneficiary":
{"certNo", "name"}, "relation", "state": "WAIT_CONFIRM"|"EFFECTIVE"|"REJECTED"|
"CANCELLED", "createdAt": "2025-03-01T10:00:00+08:00", "beneficiaryProvince":
"41"|null, "quota": {"granted": "1000.00", "remaining": "1000.00"}|null}``;
``relation`` is the beneficiary's relation to the authorizer, in the words of
`RELATION`.

Across provinces (跨省共济, allowed from the 2026 rules' date, 2026-01-09): an
authorization may name a near relative insured in another province,
``beneficiaryProvince`` (that province's two-digit code: ``"41"``), with the quota set
aside for them (共济额度, ``quota``: a decimal string of at most two places), which
leaves the authorizer's ``accountBalance`` at once. Both fields are optional (absent or
null: an authorization inside Jiangsu); a province that is not two digits, or a quota
that is not such a string (a JSON number, say), is malformed (40000). The answer
carries the same ``beneficiaryProvince`` and a ``quota`` of ``{"granted",
"remaining"}`` (what is left of it); both are null inside Jiangsu. Refusals: 40020
across provinces before the date; 40021 a quota for a relative insured in Jiangsu
(or without another province named); 40022 a quota above the authorizer's balance;
40015 another province named without a quota, or a quota not above zero. Such an
authorization needs no spouse's confirmation and no commitment letter; either of the
two (``certNo`` of the authorizer or of the relative) may cancel it, and what is left
of the quota then returns to the authorizer's account (``remaining`` becomes
``"0.00"``).

settlement (modelled on the national platform's outputs): ``{"settlementId",
"institutionCode", "patient": {"certNo", "name"}, "medicalType":
"OUTPATIENT"|"INPATIENT"|"PHARMACY", "totalAmount", "fundPaid", "psnPartAmt"
(self-pay part), "acctPay" (from the patient's own account), "acctMulaidPay"
(from the payer's account), "psnCashPay" (cash due), "balc" (the patient's
balance after, null without an account), "payer": {"certNo", "name", "balc"}|null
(null when mutual aid paid nothing), "settledAt", "reversedAt"|null,
"reversalReason"|null, "payerProvince": "13"|null, "fundingHoldId": str|null}``;
amounts are two-decimal strings, times ISO 8601 with +08:00.

Holds on a quota (共济额度冻结, across provinces): a payment in the relative's province
is made from the quota of an EFFECTIVE authorization held here. The relative's province
holds part of the quota first (``POST .../authorizations/{id}/holds``: ``amount``, a
decimal string of at most two places, and ``reference``, the caller's name for the
payment; the quota's ``remaining`` shrinks by it), then confirms what the payment used
(``.../holds/{holdId}/confirmation``: ``used``, at most ``amount`` and possibly
``"0.00"``, and ``paymentRef``, the paying province's settlement; the rest goes back to
the quota) or releases it (``.../release``: all of it goes back); a confirmed hold is
refunded when the payment is reversed (``.../refund``: what it used goes back, once).
Money goes back to the quota while the authorization is EFFECTIVE, else to the
authorizer's ``accountBalance``. Each is a write, kept under its ``X-Request-Id`` like
the others; release and refund take an empty object. hold: ``{"holdId", "authId",
"authorizer": {"certNo", "name"}, "beneficiary": {"certNo", "name"},
"beneficiaryProvince": "41", "amount", "used", "state": "HELD"|"PAID"|"RELEASED"|
"REFUNDED", "reference", "paymentRef"|null, "createdAt"}``. Refusals: 40012 an
authorization without a quota (inside Jiangsu) or unknown, or an unknown hold; 40013
an authorization no longer EFFECTIVE; 40015 an ``amount`` not above zero, or a
``used`` below zero or above the hold's ``amount``; 40023 a hold of more than the quota
has left (共济额度余额不足); 40024 a hold not in a state for this (confirmed or released
twice, a refund of a hold not confirmed: 冻结状态不允许此操作).

The other way, a bill of a Jiangsu patient paid from a quota another province holds:
the settlement takes ``crossProvinceFunding``, ``{"province"`` (that province's
two-digit code), ``"payerCertNo"`` (the authorizer there), ``"amount"`` (what is held
there: at most this much is paid, after the patient's own account), ``"holdId"`` (the
hold there)``}``, and then no ``payerCertNo`` of its own (absent or null; one named too
is malformed): Jiangsu pays nothing from an authorizer of its own and moves no balance
but the patient's. The settlement names that authorizer as ``payer`` (its ``balc``
null: an account elsewhere), and ``payerProvince`` and ``fundingHoldId`` say where the
money was held (both null otherwise, and when mutual aid paid nothing). A reversal
gives back the patient's own account only: the quota's province refunds the hold.

The change feed (参保关系变更): when a person's registration here moves to another
province or ends (the back office's doing, not the gateway's), Jiangsu records a change,
numbered in order; ``GET /api/v1/registrations/changes?after=N`` answers those after the
change ``N`` (``0``: from the start), oldest first, at most 100 at once. ``after`` is
required, once, as a number of ASCII digits (at most 18); anything else is malformed
(40000). change: ``{"seq": 7, "certNo", "type": "MOVED_OUT"|"ENDED", "toProvince":
"41"|null (the province moved to, its two-digit code; null when it ended), "changedAt":
"2026-03-02T10:00:00+08:00"}``.

Resident premiums (城乡居民医保个人缴费): Jiangsu declares the premium of its resident
insurance for each year (`PREMIUMS`). ``GET /api/v1/premiums/{certNo}/{year}`` answers a
resident insured here: premium: ``{"certNo", "year": 2026, "amount": "440.00"|null (not
declared yet), "payment": payment|null (not paid yet)}``. ``POST .../payments`` pays it,
once: from the account of ``payerCertNo``, an authorizer with an EFFECTIVE authorization
for the resident inside Jiangsu (from the 2024 rules' date, 2024-09-01), or, with
``crossProvinceFunding`` (as a settlement takes it, its ``payerCertNo`` the body's),
from a quota held in another province, ``amount`` there covering the premium; no
account here moves then. It is a write, kept under its ``X-Request-Id`` like the
others. payment: ``{"paymentId", "beneficiary": {"certNo", "name"}, "year", "amount",
"payer": {"certNo", "name"}, "payerProvince": "13"|null, "fundingHoldId": str|null
(both null when paid from an account here), "paidAt"}``. ``year`` in the path is four
ASCII digits, 2000 to 2100, else the request is malformed (40000), as is a ``certNo``
with a control character.
Refusals: 40001 nobody insured here by that ``certNo`` (or insurance TERMINATED); 40025
not resident insurance (非城乡居民医保参保人员); 40026 no premium declared for the year;
40027 paid already; 40028 an account paying for a relative before the 2024 rules;
40017 the payer without an EFFECTIVE authorization for the resident inside Jiangsu
(in a payment's words: 缴费人与参保人无有效共济授权); 40029 the payer's
``accountBalance`` below the premium; 40015 ``crossProvinceFunding`` whose ``amount``
is not above zero or does not cover the premium, or whose ``payerCertNo`` is not the
body's (in a payment's words: 跨省共济冻结金额不足以缴纳该年度保费).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sandbox.app import sandbox_app, system_of, unreadable_text
from sandbox.dialect import Dialect, UnknownCall
from sandbox.engine import (
    NEAR_RELATIVES,
    Funding,
    ProvinceRules,
    ProvinceSystem,
    RequestIdReused,
    SandboxRefusal,
    load_roster,
    money_text,
    scenario_family,
    with_people,
)

# The seed era's rules, then each change on its (illustrative) date.
# The resident premium (城乡居民医保个人缴费) Jiangsu declares for each year (illustrative).
PREMIUMS = ((2024, "420.00"), (2025, "430.00"), (2026, "440.00"), (2027, "450.00"))
SEED = ProvinceRules(
    prefix="32",
    id_prefix="JS",
    max_relatives=5,
    cross_city=True,
    spouse_confirmation=True,
    commitment_required=True,
    payer_named=True,
    premiums=PREMIUMS,
)
NEAR = replace(
    SEED,
    effective_from=dt.date(2024, 9, 1),
    allowed_relations=NEAR_RELATIVES,
    premium_payment=True,
)
VERSIONS = (SEED, NEAR, replace(NEAR, effective_from=dt.date(2026, 1, 9), cross_province=True))

BASE = "/api/v1"
MAX_CERT_NOS = 100
MAX_REQUEST_ID = 64
CST = dt.timezone(dt.timedelta(hours=8))

GENDER = {"M": "MALE", "F": "FEMALE"}
INSURANCE_STATUS = {
    "ACTIVE": "NORMAL",
    "SUSPENDED": "SUSPENDED",
    "TERMINATED": "TERMINATED",
    "PENDING": "NOT_EFFECTIVE",
}
RELATION = {
    "SPOUSE": "SPOUSE",
    "PARENT": "FATHER_OR_MOTHER",
    "CHILD": "SON_OR_DAUGHTER",
    "PARENT_IN_LAW": "SPOUSE_PARENT",
    "CHILD_IN_LAW": "CHILD_SPOUSE",
    "SIBLING": "SIBLING",
    "GRANDPARENT": "GRANDPARENT",
    "GRANDCHILD": "GRANDCHILD",
}
RELATION_FROM = {v: k for k, v in RELATION.items()}
STATE = {
    "PENDING_CONFIRMATION": "WAIT_CONFIRM",
    "ACTIVE": "EFFECTIVE",
    "DECLINED": "REJECTED",
    "UNBOUND": "CANCELLED",
}
HOLD_STATE = {"HELD": "HELD", "CONFIRMED": "PAID", "RELEASED": "RELEASED", "REFUNDED": "REFUNDED"}


def _is_write(request: httpx.Request) -> bool:
    """Jiangsu's REST: every GET reads, every POST writes (kept under its X-Request-Id)."""
    if not request.url.path.startswith(BASE + "/"):
        raise UnknownCall(f"Jiangsu: {request.url.path} is no path of Jiangsu's")
    if request.method in ("GET", "POST"):
        return request.method == "POST"
    raise UnknownCall(f"Jiangsu: {request.method} is neither a read nor a write")


def _carried_request_id(request: httpx.Request) -> str | None:
    """The ``X-Request-Id`` a request carries, as whoever watches the wire reads it."""
    # httpx types Headers.get as Any; the header's value, if there is one, is a str
    value: str | None = request.headers.get("x-request-id")
    return value


DIALECT = Dialect(is_write=_is_write, request_id=_carried_request_id)

MALFORMED = 40000
REQUEST_ID_REUSED = 40900
# code for each refusal reason, with the message Jiangsu's system sends (HTTP 200).
ERRORS: dict[str, tuple[int, str]] = {
    "person_not_found": (40001, "未查询到参保人员信息"),
    "info_mismatch": (40002, "被授权人姓名与身份证号不一致"),
    "not_employee": (40003, "授权人非职工医保参保人员"),
    "beneficiary_not_insured": (40004, "被授权人未参保或参保状态非正常"),
    "relation_not_allowed": (40005, "该亲属关系不在共济范围内"),
    "relation_not_verified": (40006, "亲属关系校验不通过"),
    "cross_area": (40007, "授权人与被授权人不在同一统筹区"),
    "limit": (40008, "授权共济人数已达上限"),
    "already_bound": (40009, "被授权人已存在共济授权"),
    "duplicate": (40010, "已存在相同的共济授权"),
    "commitment": (40011, "请先阅读并签署共济承诺书"),
    "forbidden": (40012, "无权操作该授权记录"),
    "bad_state": (40013, "授权记录当前状态不允许此操作"),
    "patient_not_insured": (40014, "患者参保状态非正常，不予结算"),
    "bad_amount": (40015, "结算金额不合法"),
    "idempotency_conflict": (40016, "结算流水号已使用且结算信息不一致"),
    "payer_not_bound": (40017, "指定的共济支付人与患者无有效共济授权"),
    "already_reversed": (40018, "该结算已冲正"),
    "reversal_window": (40019, "仅可冲正当日结算"),
    "cross_province": (40020, "暂不支持跨省共济授权"),
    "quota_not_allowed": (40021, "省内共济授权不设共济额度"),
    "quota_above_balance": (40022, "共济额度超过授权人个人账户余额"),
    "quota_insufficient": (40023, "共济额度余额不足"),
    "bad_hold_state": (40024, "冻结状态不允许此操作"),
    "not_resident": (40025, "非城乡居民医保参保人员"),
    "premium_not_declared": (40026, "该年度缴费标准未公布"),
    "premium_paid": (40027, "该年度已缴费"),
    "premium_not_allowed": (40028, "暂不支持个人账户为家庭成员缴费"),
    "balance_insufficient": (40029, "个人账户余额不足"),
}
# The same code, in the words of a particular field (the refusal's ``field``).
MESSAGES: dict[tuple[str, str], str] = {
    ("bad_amount", "quota"): "跨省共济须设定大于零的共济额度",
}
# The same code, in the words of a premium's payment (whatever the field).
PREMIUM_MESSAGES: dict[str, str] = {
    "payer_not_bound": "缴费人与参保人无有效共济授权",
    "bad_amount": "跨省共济冻结金额不足以缴纳该年度保费",
}
MEDICAL_TYPE = {"OUTPATIENT": "OUTPATIENT", "INPATIENT": "INPATIENT", "PHARMACY": "PHARMACY"}
MEDICAL_TYPE_FROM = {v: k for k, v in MEDICAL_TYPE.items()}
AMOUNT = re.compile(r"-?[0-9]{1,15}(\.[0-9]{1,2})?")
PROVINCE = re.compile(r"[1-9][0-9]")
CHANGE_TYPE = {"MOVED": "MOVED_OUT", "ENDED": "ENDED"}
SEQ = re.compile(r"[0-9]{1,18}")  # a change's number in a query (``after``)
YEAR = re.compile(r"[0-9]{4}")  # a premium's year in a path
FIRST_YEAR, LAST_YEAR = 2000, 2100


class _Malformed(Exception):
    """The request does not follow the dialect (answered with 40000, HTTP 400)."""


def roster() -> dict[str, Any]:
    """The people this province is seeded with (and the conformance scenarios staged
    with, `conformance.people`): the shared roster, and a family beyond the cap of 5 and
    a lapsed patient it lacks here."""
    family = scenario_family("js_scenario", "320100", "江苏省南京市", relatives=6)
    return with_people(load_roster(), family)


_people = roster  # (create_app's argument of that name hides it there)


def create_app(
    *,
    data_dir: Path | None = None,
    roster: dict[str, Any] | None = None,
    policy_date: dt.date | None = None,
) -> Starlette:
    auth = f"{BASE}/mutual-aid/authorizations"
    holds = f"{BASE}/mutual-aid/holds"
    settlements = f"{BASE}/settlements"
    premium = f"{BASE}/premiums/{{certNo}}/{{year}}"
    app = sandbox_app(
        "jiangsu",
        VERSIONS,
        [
            Route(f"{BASE}/persons", _endpoint(_persons), methods=["GET"]),
            Route(f"{BASE}/persons/{{certNo}}/relatives", _endpoint(_relatives), methods=["GET"]),
            Route(auth, _endpoint(_authorizations), methods=["GET"]),
            Route(auth, _endpoint(_authorize), methods=["POST"]),
            Route(f"{auth}/{{authId}}/confirmation", _endpoint(_confirm), methods=["POST"]),
            Route(f"{auth}/{{authId}}/cancellation", _endpoint(_cancel), methods=["POST"]),
            Route(f"{auth}/{{authId}}/holds", _endpoint(_hold), methods=["POST"]),
            Route(holds, _endpoint(_holds), methods=["GET"]),
            Route(f"{holds}/{{holdId}}/confirmation", _endpoint(_confirm_hold), methods=["POST"]),
            Route(f"{holds}/{{holdId}}/release", _endpoint(_release_hold), methods=["POST"]),
            Route(f"{holds}/{{holdId}}/refund", _endpoint(_refund_hold), methods=["POST"]),
            Route(settlements, _endpoint(_settlements), methods=["GET"]),
            Route(f"{BASE}/registrations/changes", _endpoint(_changes), methods=["GET"]),
            Route(premium, _endpoint(_premium), methods=["GET"]),
            Route(
                f"{premium}/payments",
                _endpoint(_pay_premium, PREMIUM_MESSAGES),
                methods=["POST"],
            ),
            Route(settlements, _endpoint(_settle), methods=["POST"]),
            Route(
                f"{settlements}/{{settlementId}}/reversal", _endpoint(_reverse), methods=["POST"]
            ),
        ],
        data_dir=data_dir,
        roster=_people() if roster is None else roster,
        policy_date=policy_date,
    )
    app.add_exception_handler(HTTPException, _http_error)
    return app


def _answer(code: int, msg: str, data: Any = None, *, status: int = 200) -> JSONResponse:
    return JSONResponse({"code": code, "msg": msg, "data": data}, status_code=status)


async def _http_error(request: Request, exc: Exception) -> Response:
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    headers = exc.headers if isinstance(exc, HTTPException) else None
    response = _answer(
        status * 100, "接口不存在" if status == 404 else "请求不被支持", status=status
    )
    if headers:
        response.headers.update(headers)
    return response


Handler = Callable[[ProvinceSystem, Request], Awaitable[Any]]


def _endpoint(
    handler: Handler, messages: dict[str, str] | None = None
) -> Callable[[Request], Awaitable[JSONResponse]]:
    """``handler`` answered in the wrapper; a refusal in the words of its field
    (`MESSAGES`), else of this endpoint (``messages``), else of its code (`ERRORS`)."""
    words = messages or {}

    async def endpoint(request: Request) -> JSONResponse:
        try:
            data = await handler(system_of(request), request)
        except SandboxRefusal as refusal:
            code, message = ERRORS[refusal.reason]
            message = words.get(refusal.reason, message)
            return _answer(code, MESSAGES.get((refusal.reason, refusal.field or ""), message))
        except RequestIdReused:
            return _answer(REQUEST_ID_REUSED, "请求ID已用于其他请求", status=409)
        except (_Malformed, KeyError, TypeError, ValueError):
            return _answer(MALFORMED, "请求参数错误", status=400)
        return _answer(0, "success", data)

    return endpoint


def _cert_nos(request: Request, key: str = "certNos") -> list[str]:
    raw = request.query_params.get(key)
    if raw is None:
        raise _Malformed(f"{key} is required")
    cert_nos = [c.strip() for c in raw.split(",") if c.strip()]
    if len(cert_nos) > MAX_CERT_NOS:
        raise _Malformed(f"too many {key}")
    return cert_nos


def _request_id(request: Request) -> str | None:
    """A write's ``X-Request-Id``, if it carries one."""
    value = request.headers.get("x-request-id")
    if value is None:
        return None
    if not value or len(value) > MAX_REQUEST_ID:
        raise _Malformed("X-Request-Id")
    return value


async def _body(request: Request) -> dict[str, Any]:
    body = await request.json()
    if not isinstance(body, dict):
        raise _Malformed("body is not an object")
    if unreadable_text(body):
        raise _Malformed("text with a control character")
    return body


def _text(body: dict[str, Any], key: str) -> str:
    value = body[key]
    if not isinstance(value, str) or not value:
        raise _Malformed(f"{key} is not a non-empty string")
    return value


def _flag(body: dict[str, Any], key: str) -> bool:
    value = body[key]
    if not isinstance(value, bool):
        raise _Malformed(f"{key} is not a boolean")
    return value


def _amount(body: dict[str, Any], key: str) -> str:
    value = body[key]
    if not isinstance(value, str) or not AMOUNT.fullmatch(value):
        raise _Malformed(f"{key} is not an amount of at most two decimals")
    return value


def _optional_amount(body: dict[str, Any], key: str) -> str | None:
    """A field that may be absent or null; present, an amount as `_amount` reads it."""
    if body.get(key) is None:
        return None
    return _amount(body, key)


def _province(body: dict[str, Any], key: str) -> str | None:
    """A province's two-digit code (``"41"``), or None when absent or null."""
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not PROVINCE.fullmatch(value):
        raise _Malformed(f"{key} is not a province's two-digit code")
    return value


def _optional_text(body: dict[str, Any], key: str) -> str | None:
    """A field that must be present: a non-empty string, or null."""
    if body[key] is None:
        return None
    return _text(body, key)


def _time(value: str | None) -> str | None:
    if value is None:
        return None
    return dt.datetime.fromisoformat(value).astimezone(CST).isoformat()


async def _persons(
    system: ProvinceSystem, request: Request
) -> list[dict[str, Any]] | dict[str, list[dict[str, Any]]]:
    """The persons of ``certNos``; with ``authorizationsOf``, also the authorizations of
    those it names, as ``GET .../authorizations`` answers them (a family screen)."""
    persons = await _person_records(system, _cert_nos(request))
    if "authorizationsOf" not in request.query_params:
        return persons
    authorizations = await _authorization_records(system, _cert_nos(request, "authorizationsOf"))
    return {"persons": persons, "authorizations": authorizations}


async def _person_records(system: ProvinceSystem, cert_nos: list[str]) -> list[dict[str, Any]]:
    if not cert_nos:
        return []
    return [
        {
            "certNo": p["cert_no"],
            "name": p["name"],
            "gender": GENDER.get(p["gender"] or ""),
            "birthDate": p["birth_date"],
            "phone": p["phone"],
            "insuredArea": {"code": p["area_code"], "name": p["area_name"]},
            "insuranceType": p["insurance_type"],
            "insuranceStatus": INSURANCE_STATUS[p["insurance_status"]],
            "accountBalance": money_text(p["balance"]),
        }
        for p in await system.persons(cert_nos)
    ]


async def _relatives(system: ProvinceSystem, request: Request) -> list[dict[str, Any]]:
    rows = await system.relatives(request.path_params["certNo"])
    return [
        {"certNo": r["cert_no"], "name": r["name"], "relation": RELATION[r["relation"]]}
        for r in rows
    ]


def _record(row: dict[str, Any]) -> dict[str, Any]:
    created = dt.datetime.fromisoformat(row["created_at"])
    quota = None
    if row["quota_granted"] is not None:
        quota = {
            "granted": money_text(row["quota_granted"]),
            "remaining": money_text(row["quota_remaining"]),
        }
    return {
        "authId": row["id"],
        "authorizer": {"certNo": row["authorizer"], "name": row["authorizer_name"]},
        "beneficiary": {"certNo": row["beneficiary"], "name": row["beneficiary_name"]},
        "relation": RELATION[row["relation"]],
        "state": STATE[row["status"]],
        "createdAt": created.astimezone(CST).isoformat(),
        "beneficiaryProvince": row["beneficiary_province"],
        "quota": quota,
    }


async def _authorizations(system: ProvinceSystem, request: Request) -> list[dict[str, Any]]:
    return await _authorization_records(system, _cert_nos(request))


async def _authorization_records(
    system: ProvinceSystem, cert_nos: list[str]
) -> list[dict[str, Any]]:
    if not cert_nos:
        return []
    return [_record(r) for r in await system.bindings_of(cert_nos)]


async def _authorize(system: ProvinceSystem, request: Request) -> dict[str, Any]:
    body = await _body(request)
    authorizer = _text(body, "authorizerCertNo")
    beneficiary = _text(body, "beneficiaryCertNo")
    name = _text(body, "beneficiaryName")
    word = _text(body, "relation")
    signed = _flag(body, "commitmentSigned")
    province = _province(body, "beneficiaryProvince")
    quota = _optional_amount(body, "quota")
    relation = RELATION_FROM.get(word)
    if relation is None:
        raise SandboxRefusal("relation_not_allowed", "relation")
    row = await system.bind(
        authorizer=authorizer,
        beneficiary=beneficiary,
        beneficiary_name=name,
        relation=relation,
        commitment_signed=signed,
        beneficiary_province=province,
        quota=quota,
        request_id=_request_id(request),
    )
    return _record(row)


async def _confirm(system: ProvinceSystem, request: Request) -> dict[str, Any]:
    body = await _body(request)
    actor = _text(body, "certNo")
    accept = _flag(body, "accept")
    row = await system.respond(
        request.path_params["authId"],
        actor=actor,
        accept=accept,
        request_id=_request_id(request),
    )
    return _record(row)


async def _cancel(system: ProvinceSystem, request: Request) -> dict[str, Any]:
    body = await _body(request)
    row = await system.unbind(
        request.path_params["authId"], actor=_text(body, "certNo"), request_id=_request_id(request)
    )
    return _record(row)


def _settlement(row: dict[str, Any]) -> dict[str, Any]:
    payer = None
    if row["payer"] is not None:
        payer = {
            "certNo": row["payer"],
            "name": row["payer_name"],
            "balc": money_text(row["payer_balance"]),
        }
    return {
        "settlementId": row["id"],
        "institutionCode": row["institution"],
        "patient": {"certNo": row["patient"], "name": row["patient_name"]},
        "medicalType": MEDICAL_TYPE[row["medical_type"]],
        "totalAmount": money_text(row["total"]),
        "fundPaid": money_text(row["fund_paid"]),
        "psnPartAmt": money_text(row["self_pay"]),
        "acctPay": money_text(row["own_account_paid"]),
        "acctMulaidPay": money_text(row["mutual_aid_paid"]),
        "psnCashPay": money_text(row["cash_due"]),
        "balc": money_text(row["patient_balance"]),
        "payer": payer,
        "settledAt": _time(row["settled_at"]),
        "reversedAt": _time(row["reversed_at"]),
        "reversalReason": row["reversal_reason"],
        "payerProvince": row["payer_province"],
        "fundingHoldId": row["funding_hold"],
    }


async def _settlements(system: ProvinceSystem, request: Request) -> list[dict[str, Any]]:
    cert_nos = _cert_nos(request)
    if not cert_nos:
        return []
    return [_settlement(r) for r in await system.settlements_of(cert_nos)]


async def _settle(system: ProvinceSystem, request: Request) -> dict[str, Any]:
    body = await _body(request)
    institution = _text(body, "institutionCode")
    key = _text(body, "idempotencyKey")
    patient = _text(body, "certNo")
    medical_type = MEDICAL_TYPE_FROM.get(_text(body, "medicalType"))
    if medical_type is None:
        raise _Malformed("unknown medicalType")
    total = _amount(body, "totalAmount")
    fund_paid = _amount(body, "fundPaid")
    funding = _funding(body, "crossProvinceFunding")
    if funding is None:
        payer = _optional_text(body, "payerCertNo")
    elif body.get("payerCertNo") is not None:  # the payer is the other province's
        raise _Malformed("payerCertNo with crossProvinceFunding")
    else:
        payer = None
    row = await system.settle(
        institution=institution,
        idempotency_key=key,
        patient=patient,
        medical_type=medical_type,
        total=total,
        fund_paid=fund_paid,
        payer=payer,
        request_id=_request_id(request),
        funding=funding,
    )
    return _settlement(row)


def _funding(body: dict[str, Any], key: str) -> Funding | None:
    """``crossProvinceFunding`` (absent or null: none) as the engine takes it."""
    raw = body.get(key)
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise _Malformed(f"{key} is not an object")
    province = _province(raw, "province")
    if province is None:
        raise _Malformed(f"{key}.province is required")
    return {
        "province": province,
        "payer": _text(raw, "payerCertNo"),
        "amount": _amount(raw, "amount"),
        "hold": _text(raw, "holdId"),
    }


async def _reverse(system: ProvinceSystem, request: Request) -> dict[str, Any]:
    body = await _body(request)
    institution = _text(body, "institutionCode")
    reason = _text(body, "reason")
    row = await system.reverse(
        request.path_params["settlementId"],
        institution=institution,
        reason=reason,
        request_id=_request_id(request),
    )
    return _settlement(row)


def _hold_record(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "holdId": row["id"],
        "authId": row["binding_id"],
        "authorizer": {"certNo": row["authorizer"], "name": row["authorizer_name"]},
        "beneficiary": {"certNo": row["beneficiary"], "name": row["beneficiary_name"]},
        "beneficiaryProvince": row["beneficiary_province"],
        "amount": money_text(row["amount"]),
        "used": money_text(row["used"]),
        "state": HOLD_STATE[row["status"]],
        "reference": row["reference"],
        "paymentRef": row["payment_ref"],
        "createdAt": _time(row["created_at"]),
    }


async def _holds(system: ProvinceSystem, request: Request) -> list[dict[str, Any]]:
    cert_nos = _cert_nos(request)
    if not cert_nos:
        return []
    return [_hold_record(r) for r in await system.holds_of(cert_nos)]


async def _hold(system: ProvinceSystem, request: Request) -> dict[str, Any]:
    body = await _body(request)
    amount = _amount(body, "amount")
    reference = _text(body, "reference")
    row = await system.hold(
        request.path_params["authId"],
        amount=amount,
        reference=reference,
        request_id=_request_id(request),
    )
    return _hold_record(row)


async def _confirm_hold(system: ProvinceSystem, request: Request) -> dict[str, Any]:
    body = await _body(request)
    used = _amount(body, "used")
    payment_ref = _text(body, "paymentRef")
    row = await system.confirm_hold(
        request.path_params["holdId"],
        used=used,
        payment_ref=payment_ref,
        request_id=_request_id(request),
    )
    return _hold_record(row)


async def _release_hold(system: ProvinceSystem, request: Request) -> dict[str, Any]:
    await _body(request)  # an object (``{}``): nothing in it is read
    row = await system.release_hold(request.path_params["holdId"], request_id=_request_id(request))
    return _hold_record(row)


async def _refund_hold(system: ProvinceSystem, request: Request) -> dict[str, Any]:
    await _body(request)  # an object (``{}``): nothing in it is read
    row = await system.refund_hold(request.path_params["holdId"], request_id=_request_id(request))
    return _hold_record(row)


async def _changes(system: ProvinceSystem, request: Request) -> list[dict[str, Any]]:
    given = request.query_params.getlist("after")
    if len(given) != 1 or not SEQ.fullmatch(given[0]):
        raise _Malformed("after is not one number of a change")
    return [
        {
            "seq": r["seq"],
            "certNo": r["cert_no"],
            "type": CHANGE_TYPE[r["kind"]],
            "toProvince": r["to_province"],
            "changedAt": _time(r["at"]),
        }
        for r in await system.changes(int(given[0]))
    ]


def _premium_path(request: Request) -> tuple[str, int]:
    """A premium's ``certNo`` and ``year`` from its path (a year of four ASCII digits,
    `FIRST_YEAR` to `LAST_YEAR`; anything else is malformed)."""
    cert_no, year = request.path_params["certNo"], request.path_params["year"]
    if not cert_no or unreadable_text(cert_no):
        raise _Malformed("certNo")
    if not YEAR.fullmatch(year) or not FIRST_YEAR <= int(year) <= LAST_YEAR:
        raise _Malformed("year is not a year")
    return cert_no, int(year)


def _premium_payment(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "paymentId": row["id"],
        "beneficiary": {"certNo": row["beneficiary"], "name": row["beneficiary_name"]},
        "year": row["year"],
        "amount": money_text(row["amount"]),
        "payer": {"certNo": row["payer"], "name": row["payer_name"]},
        "payerProvince": row["payer_province"],
        "fundingHoldId": row["funding_hold"],
        "paidAt": _time(row["paid_at"]),
    }


async def _premium(system: ProvinceSystem, request: Request) -> dict[str, Any]:
    cert_no, year = _premium_path(request)
    found = await system.premium(cert_no, year)
    return {
        "certNo": found["cert_no"],
        "year": found["year"],
        "amount": money_text(found["amount"]),
        "payment": None if found["payment"] is None else _premium_payment(found["payment"]),
    }


async def _pay_premium(system: ProvinceSystem, request: Request) -> dict[str, Any]:
    cert_no, year = _premium_path(request)
    body = await _body(request)
    payer = _text(body, "payerCertNo")
    funding = _funding(body, "crossProvinceFunding")
    row = await system.pay_premium(
        beneficiary=cert_no,
        year=year,
        payer=payer,
        funding=funding,
        request_id=_request_id(request),
    )
    return _premium_payment(row)

"""Hebei (河北) as we model it: a national-platform style envelope.

Every call is ``POST /fsi/api/rsfComIfsService/callService`` with a JSON body
``{"infno", "msgid", "inf_time", "input": {"data": ...}}``; every answer is
``{"infcode", "inf_refmsgid", "err_msg", "output"}``. ``infcode`` 0 is success,
-1 a system fault, positive numbers are business refusals (see `ERRORS`). A request
Hebei cannot read is answered -1 and not carried out: ``err_msg`` 报文格式错误 for a
body that is not JSON of the envelope's shape, 入参校验失败 for input it refuses (a
field missing or mistyped, an amount that is not one, text with a control character
XML could not carry either).

``msgid`` (报文ID) names the request. For the writes (2703, 2704, 2207, 2208, 2502, 2711-2714) Hebei
keeps it with its answer: the same ``msgid`` again is answered with the same
``infcode``, ``err_msg`` and ``output`` as the first time (a refusal too), and
nothing is done twice. A ``msgid`` already answered for another request is refused
with ``infcode`` -1 (报文ID重复) and nothing is done. Without a ``msgid`` a write is
done as it comes; queries ignore it.

Transactions:

====== ================================ =========================================
infno  what                             input.data -> output
====== ================================ =========================================
1101   person info, batched             [{"psn_cert_type": "01", "certno"}] -> {"psn_list"},
       (人员信息获取); with              or {"psn_list": [{"psn_cert_type": "01", "certno"}],
       the bindings of other             "mulaid_certno_list": [certno]} -> {"psn_list",
       persons too, in one call          "mulaid_list"} (``mulaid_list`` as 2702 answers)
2701   civil-record relatives           {"certno"} -> {"rltv_list"}
2702   mutual-aid bindings of persons   {"certno_list"} -> {"mulaid_list"}
2703   create a binding                 {"auth_certno", "bene_certno", "bene_psn_name",
                                         "rlts_type", "cmtm_flag"[, "bene_insu_prov",
                                         "quota_amt"]} -> {"mulaid"}
2704   end a binding                    {"mulaid_id", "opter_certno"} -> {"mulaid"}
2207   settle a bill (门诊/住院结算)    {"certno", "med_type", "medfee_sumamt",
                                         "fund_pay_sumamt", "fixmedins_code",
                                         "medins_setl_id"} -> {"setlinfo"}
2208   reverse a settlement (结算撤销)  {"setl_id", "fixmedins_code", "revs_rea"}
                                         -> {"setlinfo"}
5203   settlements of persons           {"certno_list"} -> {"setlinfo_list"} (newest first)
       (结算信息查询)
2711   hold on a quota (共济额度冻结)   {"mulaid_id", "frz_amt", "biz_ref"} -> {"frzinfo"}
2712   confirm a hold (冻结转支付)      {"frz_id", "pay_amt", "setl_ref"} -> {"frzinfo"}
2713   release a hold (解冻)            {"frz_id"} -> {"frzinfo"}
2714   refund a hold (支付退回)         {"frz_id"} -> {"frzinfo"}
2715   holds of persons (冻结信息查询)  {"certno_list"} -> {"frzinfo_list"}
2501   a resident's premium for a year  {"certno", "year"} -> {"prem"}
       (居民缴费查询)
2502   pay a resident's premium         {"certno", "year", "payer_certno"[, "mulaid_prov",
       (居民缴费, from an account)      "mulaid_amt", "mulaid_frz_id"]} -> {"prem_pay"}
1901   registration changes            {"begn_seq"} -> {"chg_list"} (oldest first, at
       (参保关系变更查询)               most 100): {"chg_seq", "certno", "chg_type"
                                         ("1" moved out, "2" ended), "to_admdvs"
                                         (the province's six-digit code, or null),
                                         "chg_time"}
====== ================================ =========================================

1101 given an object is a family screen in one query: the persons of ``psn_list``, as
1101 answers a list, and every binding in which one of ``mulaid_certno_list`` takes
part, as 2702 answers ``certno_list`` (either list may be empty; both are required, and
anything else is 入参校验失败).

Across provinces, a payment in the relative's province is made from a quota held here
(2711-2714, writes kept under their ``msgid`` like the others): a ``frzinfo`` is
``{"frz_id", "mulaid_id", "auth_certno", "auth_psn_name", "bene_certno",
"bene_psn_name", "bene_insu_prov", "frz_amt", "pay_amt", "frz_stas", "biz_ref",
"setl_ref", "crte_time"}``, ``frz_stas`` 1 held, 2 paid (``pay_amt``; the rest went
back to the quota), 3 released, 4 refunded. Refusals: 2023 the quota has less left
than the hold (共济额度余额不足), 2024 the hold is not in a state for this (冻结状态不允许).

The other way, a bill of a Hebei patient paid from a quota another province holds:
2207 takes ``mulaid_prov`` (that province's six-digit code), ``mulaid_certno`` (the
authorizer), ``mulaid_amt`` (what is held there, at most this much is paid) and
``mulaid_frz_id`` (the hold there); Hebei then pays nothing from an authorizer of its
own, and the ``setlinfo`` names the province (``mulaid_insu_prov``) and the hold
(``mulaid_frz_id``), both null otherwise; ``mulaid_balc`` is then null (an account
elsewhere).

A ``mulaid`` is ``{"mulaid_id", "auth_certno", "auth_psn_name", "bene_certno",
"bene_psn_name", "rlts_type", "mulaid_stas", "crte_time", "bene_insu_prov", "quota_amt",
"quota_balc"}``. Across provinces (跨省共济, from the 2026 rules' date): 2703 names the
relative's insured province (``bene_insu_prov``, its six-digit code: ``"320000"``) and
the quota set aside (``quota_amt``), which leaves the authorizer's ``balc`` at once;
``quota_balc`` is what is left of it (null, with the other two, inside Hebei). Either
side may end such a binding with 2704, and what is left returns to the account.

Settlement follows the national platform. ``med_type`` is 11 outpatient (普通门诊),
21 inpatient (普通住院) or 41 pharmacy (定点药店购药). Amounts travel as strings of at
most two decimals (``"1200.50"``); anything else is a malformed request.
``medins_setl_id`` is the institution's own settlement number (医药机构结算ID) and the
idempotency key: the same number from the same ``fixmedins_code`` is the same
settlement, answered again however often it is sent. Nobody names the payer:
Hebei's system picks the bound authorizer with the largest balance itself. 5203 is
the platform's settlement information query (结算信息查询), batched by ID number like
2702.

A ``setlinfo`` is ``{"setl_id", "fixmedins_code", "medins_setl_id", "psn_no", "certno",
"psn_name", "med_type", "medfee_sumamt", "fund_pay_sumamt", "psn_part_amt", "acct_pay",
"acct_mulaid_pay", "psn_cash_pay", "balc", "mulaid_psn_no", "mulaid_certno",
"mulaid_psn_name", "mulaid_balc", "setl_time", "revs_flag", "revs_time", "revs_rea"}``:
``psn_part_amt`` the self-pay part, ``acct_pay`` what the patient's own account paid,
``acct_mulaid_pay`` what the authorizer ``mulaid_*`` paid (the ``mulaid_*`` fields are
null when that is nothing), ``psn_cash_pay`` the cash due, ``balc`` / ``mulaid_balc``
the balances afterwards (null without an account). ``setl_time`` and ``revs_time`` are
Beijing time (``YYYY-MM-DD HH:MM:SS``, UTC+8), as the platform keeps them; ``revs_flag``
is ``"1"`` once reversed, else ``"0"`` (and ``revs_time`` / ``revs_rea`` are null).
"""

from __future__ import annotations

import datetime as dt
import json
import re
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

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
    money_text,
)

# The seed era's rules, then each change on its (illustrative) date.
# The resident premium (城乡居民医保个人缴费) Hebei declares for each year (illustrative).
PREMIUMS = ((2024, "380.00"), (2025, "400.00"), (2026, "400.00"), (2027, "420.00"))
SEED = ProvinceRules(
    prefix="13", id_prefix="HB", max_relatives=8, cross_city=True, premiums=PREMIUMS
)
NEAR = replace(
    SEED,
    effective_from=dt.date(2024, 10, 1),
    allowed_relations=NEAR_RELATIVES,
    premium_payment=True,
)
VERSIONS = (SEED, NEAR, replace(NEAR, effective_from=dt.date(2026, 2, 1), cross_province=True))

PATH = "/fsi/api/rsfComIfsService/callService"

INSUTYPE = {"EMPLOYEE": "310", "RESIDENT": "390"}
INSU_STAS = {"ACTIVE": "1", "SUSPENDED": "2", "TERMINATED": "4", "PENDING": "0"}
RLTS_TYPE = {
    "SPOUSE": "10",
    "PARENT": "21",
    "CHILD": "22",
    "PARENT_IN_LAW": "31",
    "CHILD_IN_LAW": "32",
    "SIBLING": "40",
    "GRANDPARENT": "51",
    "GRANDCHILD": "52",
}
RLTS_FROM_TYPE = {v: k for k, v in RLTS_TYPE.items()}
MULAID_STAS = {"PENDING_CONFIRMATION": "0", "ACTIVE": "1", "DECLINED": "2", "UNBOUND": "9"}
MED_TYPE = {"OUTPATIENT": "11", "INPATIENT": "21", "PHARMACY": "41"}
MED_TYPE_FROM = {v: k for k, v in MED_TYPE.items()}
# An amount as the platform sends it (decimal 16,2), sign allowed: the engine refuses negatives.
AMOUNT = re.compile(r"-?[0-9]{1,16}(\.[0-9]{1,2})?")
MAX_KEY = 64  # characters of an institution's own settlement number
MAX_MSGID = 64  # characters of a msgid (the platform's own are 26)

# infcode for each refusal reason, with the message Hebei's system sends.
ERRORS: dict[str, tuple[int, str]] = {
    "person_not_found": (2001, "未查询到参保信息"),
    "info_mismatch": (2002, "姓名与证件号码不符"),
    "not_employee": (2003, "非职工医保参保人员,无个人账户"),
    "beneficiary_not_insured": (2004, "被共济人参保状态异常"),
    "relation_not_allowed": (2005, "该亲属关系不允许共济"),
    "relation_not_verified": (2006, "亲属关系核验未通过"),
    "cross_area": (2007, "不在同一统筹区"),
    "limit": (2008, "共济人数已达上限"),
    "already_bound": (2009, "已存在共济关系"),
    "duplicate": (2010, "重复绑定"),
    "commitment": (2011, "未签署承诺书"),
    "forbidden": (2012, "无权操作该共济关系"),
    "bad_state": (2013, "共济关系状态不允许此操作"),
    "patient_not_insured": (2014, "参保人参保状态异常,不能结算"),
    "bad_amount": (2015, "结算金额不合法"),
    "idempotency_conflict": (2016, "医药机构结算ID已用于其他结算"),
    "payer_not_bound": (2017, "共济人未与参保人建立共济关系"),
    "already_reversed": (2018, "该结算已撤销"),
    "reversal_window": (2019, "仅可撤销当日结算"),
    "cross_province": (2020, "暂不支持跨省共济"),
    "quota_not_allowed": (2021, "省内共济不设共济额度"),
    "quota_above_balance": (2022, "共济额度超过个人账户余额"),
    "quota_insufficient": (2023, "共济额度余额不足"),
    "bad_hold_state": (2024, "冻结状态不允许此操作"),
    "not_resident": (2025, "非城乡居民医保参保人员"),
    "premium_not_declared": (2026, "该年度缴费标准未公布"),
    "premium_paid": (2027, "该年度已缴费"),
    "premium_not_allowed": (2028, "暂不支持个人账户为家庭成员缴费"),
    "balance_insufficient": (2029, "个人账户余额不足"),
}
# The same infcode, in the words of a particular transaction.
MESSAGES: dict[tuple[str, str], str] = {
    ("2208", "forbidden"): "无权撤销该结算",
}


def create_app(
    *,
    data_dir: Path | None = None,
    roster: dict[str, Any] | None = None,
    policy_date: dt.date | None = None,
) -> Starlette:
    return sandbox_app(
        "hebei",
        VERSIONS,
        [Route(PATH, call_service, methods=["POST"])],
        data_dir=data_dir,
        roster=roster,
        policy_date=policy_date,
    )


async def call_service(request: Request) -> JSONResponse:
    try:
        envelope = await request.json()
        infno = envelope["infno"]
        data = envelope["input"]["data"]
        msgid = envelope.get("msgid") or ""
        if not isinstance(infno, str):
            raise TypeError(f"infno: {infno!r}")
        if not isinstance(msgid, str) or len(msgid) > MAX_MSGID:
            raise TypeError(f"msgid: {msgid!r}")
    except (ValueError, KeyError, TypeError, AttributeError):
        return _answer("", -1, "报文格式错误")
    handler = _HANDLERS.get(infno)
    if handler is None:
        return _answer(msgid, -1, f"交易编号{infno}不存在")
    if unreadable_text(data):
        return _answer(msgid, -1, "入参校验失败")
    try:
        output = await handler(system_of(request), data, msgid or None)
    except SandboxRefusal as refusal:
        code, message = ERRORS[refusal.reason]
        return _answer(msgid, code, MESSAGES.get((infno, refusal.reason), message))
    except RequestIdReused:
        return _answer(msgid, -1, "报文ID重复")
    except (KeyError, TypeError, ValueError):
        return _answer(msgid, -1, "入参校验失败")
    return _answer(msgid, 0, None, output)


def _answer(msgid: str, infcode: int, err_msg: str | None, output: Any = None) -> JSONResponse:
    return JSONResponse(
        {
            "infcode": infcode,
            "inf_refmsgid": f"130000{dt.datetime.now():%Y%m%d%H%M%S}{uuid.uuid4().hex[:8]}",
            "refmsg_time": f"{dt.datetime.now():%Y%m%d%H%M%S%f}"[:17],
            "err_msg": err_msg,
            "output": output if output is not None else {},
            "msgid": msgid,
        }
    )


async def _person_info(system: ProvinceSystem, data: Any, msgid: str | None) -> dict[str, Any]:
    """1101: ``data`` a list of persons; or an object that also names, in
    ``mulaid_certno_list``, persons whose bindings to answer as 2702 does (a family
    screen in one call)."""
    if not isinstance(data, dict):
        return await _psn_list(system, data)
    psn_list, mulaid_certnos = data["psn_list"], data["mulaid_certno_list"]
    if not isinstance(psn_list, list):
        raise TypeError(f"psn_list: {psn_list!r}")
    if not isinstance(mulaid_certnos, list) or not all(isinstance(c, str) for c in mulaid_certnos):
        raise TypeError(f"mulaid_certno_list: {mulaid_certnos!r}")
    persons = await _psn_list(system, psn_list)
    bindings = await _bindings(system, {"certno_list": mulaid_certnos}, msgid)
    return {**persons, **bindings}


async def _psn_list(system: ProvinceSystem, data: Any) -> dict[str, Any]:
    """The persons among ``[{"psn_cert_type": "01", "certno"}]`` Hebei insures."""
    cert_nos = [item["certno"] for item in data]
    persons = await system.persons(cert_nos)
    return {
        "psn_list": [
            {
                "baseinfo": {
                    "psn_no": f"13{p['cert_no'][-10:]}",
                    "psn_cert_type": "01",
                    "certno": p["cert_no"],
                    "psn_name": p["name"],
                    "gend": "1" if p["gender"] == "M" else "2",
                    "brdy": p["birth_date"],
                    "tel": p["phone"],
                },
                "insuinfo": [
                    {
                        "insutype": INSUTYPE[p["insurance_type"]],
                        "psn_insu_stas": INSU_STAS[p["insurance_status"]],
                        "insuplc_admdvs": p["area_code"],
                        "insuplc_admdvs_name": p["area_name"],
                        "balc": money_text(p["balance"]),
                    }
                ],
            }
            for p in persons
        ]
    }


async def _relatives(system: ProvinceSystem, data: Any, msgid: str | None) -> dict[str, Any]:
    rows = await system.relatives(data["certno"])
    return {
        "rltv_list": [
            {"certno": r["cert_no"], "psn_name": r["name"], "rlts_type": RLTS_TYPE[r["relation"]]}
            for r in rows
        ]
    }


def _mulaid(row: dict[str, Any]) -> dict[str, Any]:
    created = dt.datetime.fromisoformat(row["created_at"])
    province = row["beneficiary_province"]
    return {
        "mulaid_id": row["id"],
        "auth_certno": row["authorizer"],
        "auth_psn_name": row["authorizer_name"],
        "bene_certno": row["beneficiary"],
        "bene_psn_name": row["beneficiary_name"],
        "rlts_type": RLTS_TYPE[row["relation"]],
        "mulaid_stas": MULAID_STAS[row["status"]],
        "crte_time": f"{created.astimezone(dt.UTC):%Y-%m-%d %H:%M:%S}",
        "bene_insu_prov": None if province is None else f"{province}0000",
        "quota_amt": money_text(row["quota_granted"]),
        "quota_balc": money_text(row["quota_remaining"]),
    }


async def _bindings(system: ProvinceSystem, data: Any, msgid: str | None) -> dict[str, Any]:
    rows = await system.bindings_of(list(data["certno_list"]))
    return {"mulaid_list": [_mulaid(r) for r in rows]}


async def _bind(system: ProvinceSystem, data: Any, msgid: str | None) -> dict[str, Any]:
    relation = RLTS_FROM_TYPE.get(data["rlts_type"])
    if relation is None:
        raise SandboxRefusal("relation_not_allowed", "relation")
    row = await system.bind(
        authorizer=data["auth_certno"],
        beneficiary=data["bene_certno"],
        beneficiary_name=data["bene_psn_name"],
        relation=relation,
        commitment_signed=data.get("cmtm_flag") == "1",
        beneficiary_province=_province(data.get("bene_insu_prov")),
        quota=None if data.get("quota_amt") is None else _amount(data, "quota_amt"),
        request_id=msgid,
    )
    return {"mulaid": _mulaid(row)}


async def _unbind(system: ProvinceSystem, data: Any, msgid: str | None) -> dict[str, Any]:
    row = await system.unbind(data["mulaid_id"], actor=data["opter_certno"], request_id=msgid)
    return {"mulaid": _mulaid(row)}


def _province(admdvs: object) -> str | None:
    """A province's six-digit division code (``"320000"``) as its two-digit prefix, or
    None when none is given."""
    if admdvs is None:
        return None
    return _province_given(admdvs)


def _province_given(admdvs: object) -> str:
    """A province's six-digit division code that must be there, as its two-digit prefix."""
    if not isinstance(admdvs, str) or re.fullmatch(r"[1-9][0-9]0000", admdvs) is None:
        raise ValueError(f"bene_insu_prov: {admdvs!r}")
    return admdvs[:2]


def _text(data: Any, key: str, *, limit: int | None = None) -> str:
    """A required, non-empty text input; anything else is a malformed request."""
    value = data[key]
    if not isinstance(value, str) or not value or (limit is not None and len(value) > limit):
        raise ValueError(f"{key}: {value!r}")
    return value


def _amount(data: Any, key: str) -> str:
    value = data[key]
    if not isinstance(value, str) or AMOUNT.fullmatch(value) is None:
        raise ValueError(f"{key}: {value!r}")
    return value


def _beijing(stamp: str | None) -> str | None:
    if stamp is None:
        return None
    return f"{dt.datetime.fromisoformat(stamp).astimezone(CHINA):%Y-%m-%d %H:%M:%S}"


def _psn_no(cert_no: str) -> str:
    return f"13{cert_no[-10:]}"


def _setlinfo(row: dict[str, Any]) -> dict[str, Any]:
    payer = row["payer"]
    reversed_at = _beijing(row["reversed_at"])
    return {
        "setl_id": row["id"],
        "fixmedins_code": row["institution"],
        "medins_setl_id": row["idempotency_key"],
        "psn_no": _psn_no(row["patient"]),
        "certno": row["patient"],
        "psn_name": row["patient_name"],
        "med_type": MED_TYPE[row["medical_type"]],
        "medfee_sumamt": money_text(row["total"]),
        "fund_pay_sumamt": money_text(row["fund_paid"]),
        "psn_part_amt": money_text(row["self_pay"]),
        "acct_pay": money_text(row["own_account_paid"]),
        "acct_mulaid_pay": money_text(row["mutual_aid_paid"]),
        "psn_cash_pay": money_text(row["cash_due"]),
        "balc": money_text(row["patient_balance"]),
        "mulaid_psn_no": None if payer is None else _psn_no(payer),
        "mulaid_certno": payer,
        "mulaid_psn_name": row["payer_name"],
        "mulaid_balc": money_text(row["payer_balance"]),
        "mulaid_insu_prov": None
        if row["payer_province"] is None
        else f"{row['payer_province']}0000",
        "mulaid_frz_id": row["funding_hold"],
        "setl_time": _beijing(row["settled_at"]),
        "revs_flag": "0" if reversed_at is None else "1",
        "revs_time": reversed_at,
        "revs_rea": row["reversal_reason"],
    }


async def _settle(system: ProvinceSystem, data: Any, msgid: str | None) -> dict[str, Any]:
    funding: Funding | None = None
    if data.get("mulaid_prov") is not None:  # from a quota held in another province
        funding = {
            "province": _province_given(data["mulaid_prov"]),
            "payer": _text(data, "mulaid_certno"),
            "amount": _amount(data, "mulaid_amt"),
            "hold": _text(data, "mulaid_frz_id", limit=MAX_KEY),
        }
    row = await system.settle(
        institution=_text(data, "fixmedins_code"),
        idempotency_key=_text(data, "medins_setl_id", limit=MAX_KEY),
        patient=_text(data, "certno"),
        medical_type=MED_TYPE_FROM[data["med_type"]],
        total=_amount(data, "medfee_sumamt"),
        fund_paid=_amount(data, "fund_pay_sumamt"),
        request_id=msgid,
        funding=funding,
    )
    return {"setlinfo": _setlinfo(row)}


def _year(data: Any) -> int:
    year = data["year"]
    if not isinstance(year, int) or isinstance(year, bool) or not 2000 <= year <= 2100:
        raise TypeError(f"year: {year!r}")
    return year


def _prem_pay(row: dict[str, Any] | None) -> dict[str, Any] | None:
    if row is None:
        return None
    province = row["payer_province"]
    return {
        "pay_id": row["id"],
        "certno": row["beneficiary"],
        "psn_name": row["beneficiary_name"],
        "year": row["year"],
        "pay_amt": money_text(row["amount"]),
        "payer_certno": row["payer"],
        "payer_name": row["payer_name"],
        "mulaid_insu_prov": None if province is None else f"{province}0000",
        "mulaid_frz_id": row["funding_hold"],
        "pay_time": _beijing(row["paid_at"]),
    }


async def _premium(system: ProvinceSystem, data: Any, msgid: str | None) -> dict[str, Any]:
    found = await system.premium(_text(data, "certno"), _year(data))
    return {
        "prem": {
            "certno": found["cert_no"],
            "year": found["year"],
            "prem_amt": money_text(found["amount"]),
            "prem_pay": _prem_pay(found["payment"]),
        }
    }


async def _pay_premium(system: ProvinceSystem, data: Any, msgid: str | None) -> dict[str, Any]:
    funding: Funding | None = None
    if data.get("mulaid_prov") is not None:  # from a quota held in another province
        funding = {
            "province": _province_given(data["mulaid_prov"]),
            "payer": _text(data, "payer_certno"),
            "amount": _amount(data, "mulaid_amt"),
            "hold": _text(data, "mulaid_frz_id", limit=MAX_KEY),
        }
    row = await system.pay_premium(
        beneficiary=_text(data, "certno"),
        year=_year(data),
        payer=_text(data, "payer_certno"),
        funding=funding,
        request_id=msgid,
    )
    return {"prem_pay": _prem_pay(row)}


CHG_TYPE = {"MOVED": "1", "ENDED": "2"}


async def _changes(system: ProvinceSystem, data: Any, msgid: str | None) -> dict[str, Any]:
    after = data["begn_seq"]
    if not isinstance(after, int) or isinstance(after, bool) or after < 0:
        raise TypeError(f"begn_seq: {after!r}")
    rows = await system.changes(after)
    return {
        "chg_list": [
            {
                "chg_seq": r["seq"],
                "certno": r["cert_no"],
                "chg_type": CHG_TYPE[r["kind"]],
                "to_admdvs": None if r["to_province"] is None else f"{r['to_province']}0000",
                "chg_time": _beijing(r["at"]),
            }
            for r in rows
        ]
    }


FRZ_STAS = {"HELD": "1", "CONFIRMED": "2", "RELEASED": "3", "REFUNDED": "4"}


def _frzinfo(row: dict[str, Any]) -> dict[str, Any]:
    created = dt.datetime.fromisoformat(row["created_at"])
    return {
        "frz_id": row["id"],
        "mulaid_id": row["binding_id"],
        "auth_certno": row["authorizer"],
        "auth_psn_name": row["authorizer_name"],
        "bene_certno": row["beneficiary"],
        "bene_psn_name": row["beneficiary_name"],
        "bene_insu_prov": f"{row['beneficiary_province']}0000",
        "frz_amt": money_text(row["amount"]),
        "pay_amt": money_text(row["used"]),
        "frz_stas": FRZ_STAS[row["status"]],
        "biz_ref": row["reference"],
        "setl_ref": row["payment_ref"],
        "crte_time": f"{created.astimezone(dt.UTC):%Y-%m-%d %H:%M:%S}",
    }


async def _hold(system: ProvinceSystem, data: Any, msgid: str | None) -> dict[str, Any]:
    row = await system.hold(
        _text(data, "mulaid_id"),
        amount=_amount(data, "frz_amt"),
        reference=_text(data, "biz_ref", limit=MAX_KEY * 2),
        request_id=msgid,
    )
    return {"frzinfo": _frzinfo(row)}


async def _confirm_hold(system: ProvinceSystem, data: Any, msgid: str | None) -> dict[str, Any]:
    row = await system.confirm_hold(
        _text(data, "frz_id"),
        used=_amount(data, "pay_amt"),
        payment_ref=_text(data, "setl_ref", limit=MAX_KEY * 2),
        request_id=msgid,
    )
    return {"frzinfo": _frzinfo(row)}


async def _release_hold(system: ProvinceSystem, data: Any, msgid: str | None) -> dict[str, Any]:
    row = await system.release_hold(_text(data, "frz_id"), request_id=msgid)
    return {"frzinfo": _frzinfo(row)}


async def _refund_hold(system: ProvinceSystem, data: Any, msgid: str | None) -> dict[str, Any]:
    row = await system.refund_hold(_text(data, "frz_id"), request_id=msgid)
    return {"frzinfo": _frzinfo(row)}


async def _holds(system: ProvinceSystem, data: Any, msgid: str | None) -> dict[str, Any]:
    cert_nos = data["certno_list"]
    if not isinstance(cert_nos, list) or not all(isinstance(c, str) for c in cert_nos):
        raise TypeError(f"certno_list: {cert_nos!r}")
    rows = await system.holds_of(cert_nos) if cert_nos else []
    return {"frzinfo_list": [_frzinfo(r) for r in rows]}


async def _reverse(system: ProvinceSystem, data: Any, msgid: str | None) -> dict[str, Any]:
    row = await system.reverse(
        _text(data, "setl_id"),
        institution=_text(data, "fixmedins_code"),
        reason=_text(data, "revs_rea"),
        request_id=msgid,
    )
    return {"setlinfo": _setlinfo(row)}


async def _settlements(system: ProvinceSystem, data: Any, msgid: str | None) -> dict[str, Any]:
    cert_nos = data["certno_list"]
    if not isinstance(cert_nos, list) or not all(isinstance(c, str) for c in cert_nos):
        raise TypeError(f"certno_list: {cert_nos!r}")
    rows = await system.settlements_of(cert_nos) if cert_nos else []
    return {"setlinfo_list": [_setlinfo(r) for r in rows]}


# Which calls write (kept under their msgid) and which read: `DIALECT`
READ_CALLS = frozenset({"1101", "2701", "2702", "5203", "2715", "1901", "2501"})
WRITE_CALLS = frozenset({"2703", "2704", "2207", "2208", "2711", "2712", "2713", "2714", "2502"})


def _message(request: httpx.Request) -> dict[str, Any]:
    if request.method != "POST" or request.url.path != PATH:
        raise UnknownCall(f"Hebei: {request.method} {request.url.path} is no call of Hebei's")
    try:
        message = json.loads(request.content)
    except ValueError as exc:
        raise UnknownCall(f"Hebei: a call that is not JSON ({exc})") from None
    if not isinstance(message, dict):
        raise UnknownCall("Hebei: a call that is not a JSON object")
    return message


def _is_write(request: httpx.Request) -> bool:
    return classified(str(_message(request).get("infno")), READ_CALLS, WRITE_CALLS, "Hebei")


def _request_id(request: httpx.Request) -> str | None:
    msgid = _message(request).get("msgid")
    return None if msgid is None else str(msgid)


DIALECT = Dialect(is_write=_is_write, request_id=_request_id)

_HANDLERS = {
    "1101": _person_info,
    "2701": _relatives,
    "2702": _bindings,
    "2703": _bind,
    "2704": _unbind,
    "2207": _settle,
    "2208": _reverse,
    "5203": _settlements,
    "2711": _hold,
    "2712": _confirm_hold,
    "2713": _release_hold,
    "2714": _refund_hold,
    "2715": _holds,
    "1901": _changes,
    "2501": _premium,
    "2502": _pay_premium,
}

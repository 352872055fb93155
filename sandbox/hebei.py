"""Hebei (河北) as we model it: a national-platform style envelope.

Every call is ``POST /fsi/api/rsfComIfsService/callService`` with a JSON body
``{"infno", "msgid", "inf_time", "input": {"data": ...}}``; every answer is
``{"infcode", "inf_refmsgid", "err_msg", "output"}``. ``infcode`` 0 is success,
-1 a system fault, positive numbers are business refusals (see `ERRORS`).

Transactions:

====== ================================ =========================================
infno  what                             input.data -> output
====== ================================ =========================================
1101   person info, batched             [{"psn_cert_type": "01", "certno"}] -> {"psn_list"}
2701   civil-record relatives           {"certno"} -> {"rltv_list"}
2702   mutual-aid bindings of persons   {"certno_list"} -> {"mulaid_list"}
2703   create a binding                 {"auth_certno", "bene_certno", "bene_psn_name",
                                         "rlts_type", "cmtm_flag"} -> {"mulaid"}
2704   end a binding                    {"mulaid_id", "opter_certno"} -> {"mulaid"}
====== ================================ =========================================
"""

from __future__ import annotations

import datetime as dt
import uuid
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from sandbox.app import sandbox_app, system_of
from sandbox.engine import ProvinceRules, ProvinceSystem, SandboxRefusal, money_text

RULES = ProvinceRules(
    prefix="13",
    id_prefix="HB",
    max_relatives=8,
    cross_city=True,
)

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
}


def create_app(*, data_dir: Path | None = None, roster: dict[str, Any] | None = None) -> Starlette:
    return sandbox_app(
        "hebei",
        RULES,
        [Route(PATH, call_service, methods=["POST"])],
        data_dir=data_dir,
        roster=roster,
    )


async def call_service(request: Request) -> JSONResponse:
    try:
        envelope = await request.json()
        infno = envelope["infno"]
        data = envelope["input"]["data"]
        msgid = str(envelope.get("msgid", ""))
    except (ValueError, KeyError, TypeError):
        return _answer("", -1, "报文格式错误")
    handler = _HANDLERS.get(infno)
    if handler is None:
        return _answer(msgid, -1, f"交易编号{infno}不存在")
    try:
        output = await handler(system_of(request), data)
    except SandboxRefusal as refusal:
        code, message = ERRORS[refusal.reason]
        return _answer(msgid, code, message)
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


async def _person_info(system: ProvinceSystem, data: Any) -> dict[str, Any]:
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


async def _relatives(system: ProvinceSystem, data: Any) -> dict[str, Any]:
    rows = await system.relatives(data["certno"])
    return {
        "rltv_list": [
            {"certno": r["cert_no"], "psn_name": r["name"], "rlts_type": RLTS_TYPE[r["relation"]]}
            for r in rows
        ]
    }


def _mulaid(row: dict[str, Any]) -> dict[str, Any]:
    created = dt.datetime.fromisoformat(row["created_at"])
    return {
        "mulaid_id": row["id"],
        "auth_certno": row["authorizer"],
        "auth_psn_name": row["authorizer_name"],
        "bene_certno": row["beneficiary"],
        "bene_psn_name": row["beneficiary_name"],
        "rlts_type": RLTS_TYPE[row["relation"]],
        "mulaid_stas": MULAID_STAS[row["status"]],
        "crte_time": f"{created.astimezone(dt.UTC):%Y-%m-%d %H:%M:%S}",
    }


async def _bindings(system: ProvinceSystem, data: Any) -> dict[str, Any]:
    rows = await system.bindings_of(list(data["certno_list"]))
    return {"mulaid_list": [_mulaid(r) for r in rows]}


async def _bind(system: ProvinceSystem, data: Any) -> dict[str, Any]:
    relation = RLTS_FROM_TYPE.get(data["rlts_type"])
    if relation is None:
        raise SandboxRefusal("relation_not_allowed", "relation")
    row = await system.bind(
        authorizer=data["auth_certno"],
        beneficiary=data["bene_certno"],
        beneficiary_name=data["bene_psn_name"],
        relation=relation,
        commitment_signed=data.get("cmtm_flag") == "1",
    )
    return {"mulaid": _mulaid(row)}


async def _unbind(system: ProvinceSystem, data: Any) -> dict[str, Any]:
    row = await system.unbind(data["mulaid_id"], actor=data["opter_certno"])
    return {"mulaid": _mulaid(row)}


_HANDLERS = {
    "1101": _person_info,
    "2701": _relatives,
    "2702": _bindings,
    "2703": _bind,
    "2704": _unbind,
}

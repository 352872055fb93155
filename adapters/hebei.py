"""Hebei (河北): a national-platform style envelope (``infno`` / ``infcode`` / ``output``)."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from adapters.base import (
    Area,
    Binding,
    BindingStatus,
    BindRequest,
    CivilRelative,
    InsuranceStatus,
    InsuranceType,
    Party,
    Person,
    Policy,
    ProvinceAdapter,
    Refusal,
    RefusalCode,
    Relation,
    parse_money,
    text,
)

_PATH = "/fsi/api/rsfComIfsService/callService"

_INSUTYPE = {"310": InsuranceType.EMPLOYEE, "390": InsuranceType.RESIDENT}
_INSU_STAS = {
    "1": InsuranceStatus.ACTIVE,
    "2": InsuranceStatus.SUSPENDED,
    "4": InsuranceStatus.TERMINATED,
    "0": InsuranceStatus.PENDING,
}
_RLTS_TYPE = {
    Relation.SPOUSE: "10",
    Relation.PARENT: "21",
    Relation.CHILD: "22",
    Relation.PARENT_IN_LAW: "31",
    Relation.CHILD_IN_LAW: "32",
    Relation.SIBLING: "40",
    Relation.GRANDPARENT: "51",
    Relation.GRANDCHILD: "52",
}
_RELATION = {v: k for k, v in _RLTS_TYPE.items()}
_MULAID_STAS = {
    "0": BindingStatus.PENDING_CONFIRMATION,
    "1": BindingStatus.ACTIVE,
    "2": BindingStatus.DECLINED,
    "9": BindingStatus.UNBOUND,
}
_REFUSALS: dict[int, RefusalCode] = {
    2001: RefusalCode.PERSON_NOT_FOUND,
    2002: RefusalCode.PERSON_INFO_MISMATCH,
    2003: RefusalCode.NOT_EMPLOYEE_INSURED,
    2004: RefusalCode.BENEFICIARY_NOT_INSURED,
    2005: RefusalCode.RELATION_NOT_ALLOWED,
    2006: RefusalCode.RELATION_NOT_VERIFIED,
    2007: RefusalCode.CROSS_AREA_NOT_ALLOWED,
    2008: RefusalCode.BINDING_LIMIT_REACHED,
    2009: RefusalCode.ALREADY_BOUND,
    2010: RefusalCode.DUPLICATE_BINDING,
    2011: RefusalCode.COMMITMENT_REQUIRED,
    2012: RefusalCode.FORBIDDEN,
    2013: RefusalCode.INVALID_BINDING_STATE,
}


class HebeiAdapter(ProvinceAdapter):
    code = "13"
    name = "河北省"
    policies = (
        Policy(
            effective_from=dt.date(2023, 1, 1),
            max_relatives=8,
            cross_city=True,
        ),
    )

    async def _service(self, infno: str, data: Any) -> tuple[int, dict[str, Any]]:
        """Send one transaction; returns ``(infcode, output)`` for business answers."""
        body = {
            "infno": infno,
            "msgid": f"GJ{dt.datetime.now():%Y%m%d%H%M%S}{uuid.uuid4().hex[:10]}",
            "inf_time": f"{dt.datetime.now():%Y-%m-%d %H:%M:%S}",
            "infver": "V1.0",
            "input": {"data": data},
        }
        response = await self._call("POST", _PATH, json=body)
        with self._reading(f"infno {infno}"):
            answer = response.json()
            infcode = int(answer["infcode"])
            output = answer["output"]
            if not isinstance(output, dict):
                raise TypeError("output is not an object")
        if infcode < 0:
            raise self._contract_error(f"infno {infno}: infcode {infcode}")
        return infcode, output

    async def _ok(self, infno: str, data: Any) -> dict[str, Any]:
        infcode, output = await self._service(infno, data)
        if infcode != 0:
            raise self._contract_error(f"infno {infno}: unexpected infcode {infcode}")
        return output

    async def _write(self, infno: str, data: Any) -> Binding | Refusal:
        infcode, output = await self._service(infno, data)
        if infcode != 0:
            refused = _REFUSALS.get(infcode)
            if refused is None:
                raise self._contract_error(f"infno {infno}: unknown infcode {infcode}")
            return Refusal(refused)
        with self._reading(f"infno {infno}"):
            return _binding(output["mulaid"])

    async def find_persons(self, cert_nos: Sequence[str]) -> Mapping[str, Person]:
        if not cert_nos:
            return {}
        output = await self._ok("1101", [{"psn_cert_type": "01", "certno": c} for c in cert_nos])
        found: dict[str, Person] = {}
        with self._reading("infno 1101"):
            for item in output["psn_list"]:
                base, insu = item["baseinfo"], item["insuinfo"][0]
                balance = insu["balc"]
                found[text(base["certno"])] = Person(
                    cert_no=text(base["certno"]),
                    name=text(base["psn_name"]),
                    area=Area(text(insu["insuplc_admdvs"]), text(insu["insuplc_admdvs_name"])),
                    insurance_type=_INSUTYPE[insu["insutype"]],
                    insurance_status=_INSU_STAS[insu["psn_insu_stas"]],
                    balance=None if balance is None else parse_money(balance),
                    phone=base.get("tel"),
                )
        return found

    async def relatives(self, cert_no: str) -> Sequence[CivilRelative]:
        output = await self._ok("2701", {"certno": cert_no})
        with self._reading("infno 2701"):
            return [
                CivilRelative(text(r["certno"]), text(r["psn_name"]), _RELATION[r["rlts_type"]])
                for r in output["rltv_list"]
            ]

    async def bindings_of(self, cert_nos: Sequence[str]) -> Sequence[Binding]:
        if not cert_nos:
            return []
        output = await self._ok("2702", {"certno_list": list(cert_nos)})
        with self._reading("infno 2702"):
            return [_binding(b) for b in output["mulaid_list"]]

    async def bind(self, request: BindRequest) -> Binding | Refusal:
        return await self._write(
            "2703",
            {
                "auth_certno": request.authorizer_cert_no,
                "bene_certno": request.beneficiary_cert_no,
                "bene_psn_name": request.beneficiary_name,
                "rlts_type": _RLTS_TYPE[request.relation],
                "cmtm_flag": "1" if request.commitment_signed else "0",
            },
        )

    async def unbind(self, binding_id: str, *, actor: str) -> Binding | Refusal:
        return await self._write("2704", {"mulaid_id": binding_id, "opter_certno": actor})


def _binding(raw: dict[str, Any]) -> Binding:
    return Binding(
        id=text(raw["mulaid_id"]),
        authorizer=Party(text(raw["auth_certno"]), text(raw["auth_psn_name"])),
        beneficiary=Party(text(raw["bene_certno"]), text(raw["bene_psn_name"])),
        relation=_RELATION[raw["rlts_type"]],
        status=_MULAID_STAS[raw["mulaid_stas"]],
        created_at=dt.datetime.strptime(text(raw["crte_time"]), "%Y-%m-%d %H:%M:%S").replace(
            tzinfo=dt.UTC
        ),
    )

"""Henan (河南): a legacy XML-over-HTTP service (``<request>`` / ``<response>``, ``retcode``).

One endpoint, ``POST /hnyb/service`` with ``text/xml; charset=utf-8``; the
service name goes in ``<head><service>``. Every answer is HTTP 200;
``<head><retcode>`` says what happened:

======= =================================== ===================================
retcode retmsg (Henan's words)              becomes
======= =================================== ===================================
0000    成功                                the parsed ``<body>``
E101    未查询到该人员参保信息              PERSON_NOT_FOUND (beneficiaryCertNo)
E102    被共济人姓名与身份证号码不一致      PERSON_INFO_MISMATCH (beneficiaryName)
E103    授权人非职工基本医疗保险参保人员    NOT_EMPLOYEE_INSURED
E104    被共济人参保状态不是正常参保        BENEFICIARY_NOT_INSURED (beneficiaryCertNo)
E105    该亲属关系不在共济范围内            RELATION_NOT_ALLOWED (relation)
E106    亲属关系与户籍信息不符              RELATION_NOT_VERIFIED (relation)
E107    授权人与被共济人不在同一统筹区      CROSS_AREA_NOT_ALLOWED (beneficiaryCertNo)
E108    共济亲属人数已达上限                BINDING_LIMIT_REACHED
E109    同一参保人只能同时绑定或被绑定1次   ALREADY_BOUND (beneficiaryCertNo)
E110    已绑定该亲属,请勿重复提交          DUPLICATE_BINDING (beneficiaryCertNo)
E111    未签署家庭共济承诺书                COMMITMENT_REQUIRED (commitmentSigned)
E112    无权操作该共济绑定                  FORBIDDEN
E113    共济绑定当前状态不允许此操作        INVALID_BINDING_STATE
9999    system fault, malformed request     `UpstreamContractError`
other   (not in the contract)               `UpstreamContractError`
======= =================================== ===================================

Services: QueryPerson (``<sfzh>*`` -> ``<person>*``), QueryRelatives (``<sfzh>`` ->
``<relative>*``), QueryBindings (``<sfzh>*`` -> ``<binding>*``), Bind and Unbind
(-> ``<binding>``). Answers are untrusted input: they are parsed with
defusedxml only, and anything we cannot read becomes `UpstreamContractError`.
"""

from __future__ import annotations

import datetime as dt
import uuid
import xml.etree.ElementTree as ET  # building only; parsing goes through defusedxml
from collections.abc import Mapping, Sequence
from typing import cast

from defusedxml import DefusedXmlException  # type: ignore[import-untyped]
from defusedxml.ElementTree import fromstring as _defused_fromstring  # type: ignore[import-untyped]

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
)

_PATH = "/hnyb/service"
_HEADERS = {"Content-Type": "text/xml; charset=utf-8"}
_OK = "0000"

_XZLX = {"11": InsuranceType.EMPLOYEE, "12": InsuranceType.RESIDENT}
_CBZT = {
    "1": InsuranceStatus.ACTIVE,
    "2": InsuranceStatus.SUSPENDED,
    "3": InsuranceStatus.TERMINATED,
    "9": InsuranceStatus.PENDING,
}
_GX = {
    Relation.SPOUSE: "01",
    Relation.PARENT: "02",
    Relation.CHILD: "03",
    Relation.PARENT_IN_LAW: "04",
    Relation.CHILD_IN_LAW: "05",
    Relation.SIBLING: "06",
    Relation.GRANDPARENT: "07",
    Relation.GRANDCHILD: "08",
}
_RELATION = {v: k for k, v in _GX.items()}
_ZT = {
    "01": BindingStatus.PENDING_CONFIRMATION,
    "02": BindingStatus.ACTIVE,
    "03": BindingStatus.DECLINED,
    "04": BindingStatus.UNBOUND,
}
_REFUSALS: dict[str, RefusalCode] = {
    "E101": RefusalCode.PERSON_NOT_FOUND,
    "E102": RefusalCode.PERSON_INFO_MISMATCH,
    "E103": RefusalCode.NOT_EMPLOYEE_INSURED,
    "E104": RefusalCode.BENEFICIARY_NOT_INSURED,
    "E105": RefusalCode.RELATION_NOT_ALLOWED,
    "E106": RefusalCode.RELATION_NOT_VERIFIED,
    "E107": RefusalCode.CROSS_AREA_NOT_ALLOWED,
    "E108": RefusalCode.BINDING_LIMIT_REACHED,
    "E109": RefusalCode.ALREADY_BOUND,
    "E110": RefusalCode.DUPLICATE_BINDING,
    "E111": RefusalCode.COMMITMENT_REQUIRED,
    "E112": RefusalCode.FORBIDDEN,
    "E113": RefusalCode.INVALID_BINDING_STATE,
}


def _parse(data: bytes) -> ET.Element:
    """Parse an untrusted answer with defusedxml (never the stdlib parser directly)."""
    return cast(ET.Element, _defused_fromstring(data))


class HenanAdapter(ProvinceAdapter):
    code = "41"
    name = "河南省"
    policies = (
        Policy(
            effective_from=dt.date(2023, 1, 1),
            max_relatives=5,
            cross_city=False,
            single_binding=True,
        ),
    )

    async def _service(
        self, service: str, fields: Sequence[tuple[str, str]]
    ) -> tuple[str, ET.Element]:
        """Send one service call; returns ``(retcode, body)`` for business answers."""
        root = ET.Element("request")
        head = ET.SubElement(root, "head")
        ET.SubElement(head, "service").text = service
        seq = f"GJ{dt.datetime.now():%Y%m%d%H%M%S}{uuid.uuid4().hex[:10]}"
        ET.SubElement(head, "seq").text = seq
        body = ET.SubElement(root, "body")
        for tag, value in fields:
            ET.SubElement(body, tag).text = value
        content = ET.tostring(root, encoding="utf-8", xml_declaration=True)
        response = await self._call("POST", _PATH, content=content, headers=_HEADERS)
        what = f"service {service}"
        with self._reading(what):
            if response.status_code != 200:
                raise self._contract_error(f"{what}: HTTP {response.status_code}")
            try:
                answer = _parse(response.content)
            except (ET.ParseError, DefusedXmlException) as exc:
                raise self._contract_error(f"{what}: unreadable XML: {exc!r}") from exc
            if answer.tag != "response":
                raise self._contract_error(f"{what}: root element <{answer.tag}>")
            retcode = _text(answer, "head/retcode")
            output = answer.find("body")
        if retcode == _OK:
            if output is None:
                raise self._contract_error(f"{what}: success without <body>")
            return retcode, output
        if retcode not in _REFUSALS:
            retmsg = answer.findtext("head/retmsg") or ""
            raise self._contract_error(f"{what}: retcode {retcode} {retmsg}")
        return retcode, output if output is not None else ET.Element("body")

    async def _ok(self, service: str, fields: Sequence[tuple[str, str]]) -> ET.Element:
        retcode, body = await self._service(service, fields)
        if retcode != _OK:
            raise self._contract_error(f"service {service}: unexpected retcode {retcode}")
        return body

    async def _write(self, service: str, fields: Sequence[tuple[str, str]]) -> Binding | Refusal:
        retcode, body = await self._service(service, fields)
        if retcode != _OK:
            return Refusal(_REFUSALS[retcode])
        with self._reading(f"service {service}"):
            found = body.findall("binding")
            if len(found) != 1:
                raise ValueError(f"{len(found)} <binding> elements")
            return _binding(found[0])

    async def find_persons(self, cert_nos: Sequence[str]) -> Mapping[str, Person]:
        if not cert_nos:
            return {}
        body = await self._ok("QueryPerson", [("sfzh", c) for c in cert_nos])
        found: dict[str, Person] = {}
        with self._reading("service QueryPerson"):
            for item in body.findall("person"):
                cert_no = _text(item, "sfzh")
                balance = _optional(item, "grzhye")
                found[cert_no] = Person(
                    cert_no=cert_no,
                    name=_text(item, "xm"),
                    area=Area(_text(item, "cbdq"), _text(item, "cbdqmc")),
                    insurance_type=_XZLX[_text(item, "xzlx")],
                    insurance_status=_CBZT[_text(item, "cbzt")],
                    balance=None if balance is None else parse_money(balance),
                    phone=_optional(item, "lxdh", missing_ok=True),
                )
        return found

    async def relatives(self, cert_no: str) -> Sequence[CivilRelative]:
        body = await self._ok("QueryRelatives", [("sfzh", cert_no)])
        with self._reading("service QueryRelatives"):
            return [
                CivilRelative(_text(r, "sfzh"), _text(r, "xm"), _RELATION[_text(r, "gx")])
                for r in body.findall("relative")
            ]

    async def bindings_of(self, cert_nos: Sequence[str]) -> Sequence[Binding]:
        if not cert_nos:
            return []
        body = await self._ok("QueryBindings", [("sfzh", c) for c in cert_nos])
        with self._reading("service QueryBindings"):
            return [_binding(b) for b in body.findall("binding")]

    async def bind(self, request: BindRequest) -> Binding | Refusal:
        return await self._write(
            "Bind",
            [
                ("sqrsfzh", request.authorizer_cert_no),
                ("bsqrsfzh", request.beneficiary_cert_no),
                ("bsqrxm", request.beneficiary_name),
                ("gx", _GX[request.relation]),
                ("cnsbz", "1" if request.commitment_signed else "0"),
            ],
        )

    async def unbind(self, binding_id: str, *, actor: str) -> Binding | Refusal:
        return await self._write("Unbind", [("bdid", binding_id), ("czrsfzh", actor)])


def _text(parent: ET.Element, path: str) -> str:
    """The stripped text at ``path``, which must be present and non-empty.

    A missing or empty element is a `KeyError` / `ValueError`: under `_reading`,
    an `UpstreamContractError`.
    """
    value = _optional(parent, path)
    if value is None:
        raise ValueError(f"<{path}> is empty")
    return value


def _optional(parent: ET.Element, path: str, *, missing_ok: bool = False) -> str | None:
    """The stripped text at ``path``, or None for an empty element (Henan's "no value").

    A missing element is a `KeyError` unless ``missing_ok``.
    """
    value = parent.findtext(path)
    if value is None and not missing_ok:
        raise KeyError(path)
    return (value or "").strip() or None


def _binding(raw: ET.Element) -> Binding:
    return Binding(
        id=_text(raw, "bdid"),
        authorizer=Party(_text(raw, "sqrsfzh"), _text(raw, "sqrxm")),
        beneficiary=Party(_text(raw, "bsqrsfzh"), _text(raw, "bsqrxm")),
        relation=_RELATION[_text(raw, "gx")],
        status=_ZT[_text(raw, "zt")],
        created_at=dt.datetime.strptime(_text(raw, "cjsj"), "%Y%m%d%H%M%S").replace(tzinfo=dt.UTC),
    )

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
E114    患者参保状态不是正常参保,不能结算  PATIENT_NOT_INSURED
E115    结算金额不合法                      AMOUNT_NOT_POSITIVE
        (to Bind: 共济额度不合法)           (to Bind: quota)
E116    机构流水号已用于另一笔结算          IDEMPOTENCY_KEY_REUSED
E117    指定的共济授权人未与患者绑定        choose the payer again, once (see below)
E118    该笔结算已撤销                      SETTLEMENT_ALREADY_REVERSED
E119    仅可撤销当日结算                    REVERSAL_WINDOW_CLOSED
E120    暂不支持跨省共济                    CROSS_PROVINCE_NOT_ALLOWED (beneficiaryCertNo)
E121    省内共济不设共济额度                QUOTA_NOT_ALLOWED (quota)
E122    共济额度超过个人账户余额            QUOTA_ABOVE_BALANCE (quota)
9999    报文格式错误, 入参校验失败          `UpstreamContractError`, not reached
        (the request could not be read)
9999    any other system fault              `UpstreamContractError`
other   (not in the contract)               `UpstreamContractError`
======= =================================== ===================================

A 9999 whose message says the request is malformed (报文格式错误: not XML Henan can
parse, such as text with a control character XML cannot carry; 入参校验失败: a field
it refuses) means Henan did nothing with it; so does HTTP 400 or 413 (from Henan or a
proxy in front of it). Those are `UpstreamContractError` with ``reached`` False: sent
again, the same request is refused again, so the gateway does not keep sending it.

Each service answers only its own refusals: E101-E113 for Bind and Unbind, and for
Bind also E115 (the quota) and E120-E122 (across provinces); E101 (the patient is
unknown), E114, E115, E116 and E117 for Settle; E112 (not this institution's
settlement, or none), E118 and E119 for ReverseSettle. A refusal from another
service's list, or any refusal to a query, is `UpstreamContractError`.

Services: QueryPerson (``<sfzh>*`` -> ``<person>*``), QueryRelatives (``<sfzh>`` ->
``<relative>*``), QueryBindings (``<sfzh>*`` -> ``<binding>*``), Bind and Unbind
(-> ``<binding>``), Settle and ReverseSettle (-> ``<settlement>``), QuerySettle
(``<sfzh>*`` -> ``<settlement>*``). Answers are untrusted input: they are parsed
with defusedxml only, and anything we cannot read becomes `UpstreamContractError`.

Across provinces (跨省共济, Henan's rules from 2026-03-01): Bind for a relative insured
in another province (`BindRequest.beneficiary_province`, ``"32"``) also sends
``<bsqrcbsf>``, that province's six-digit division code (``320000``), and for a
`BindRequest.quota` ``<gjed>``, the quota (共济额度) as a two-decimal string; neither
is sent when not set. A ``<binding>`` answers ``<bsqrcbsf>``, ``<gjed>`` (granted)
and ``<gjedye>`` (remaining), all empty (or absent) inside Henan: they become
`Binding.beneficiary_province` and `Binding.quota`, None inside Henan. A
``<bsqrcbsf>`` that is not a province's code, a quota with only one of its two
amounts or with one that is not an amount, or a province without a quota (or the
reverse), is `UpstreamContractError`. A province that is not two digits
(``[1-9][0-9]``) or a quota of more than two decimals is the caller's bug
(`ValueError`, no request).

Settlement: Henan's system must be *told* which authorizer pays by mutual aid
(``<sqrsfzh>`` in Settle); this adapter chooses. Henan is single-binding, so a
patient has at most one authorizer. `HenanAdapter.settle`:

1. asks `bindings_of` for the patient (one request) and keeps the ACTIVE
   bindings in which the patient is the beneficiary; with none, it names no payer;
2. otherwise asks `find_persons` for the patient and the authorizer together (one
   request); only when the patient's own account (none counts as 0.00) cannot
   cover the self-pay part (total - fund paid) does it name the authorizer, and
   only if their balance is above zero (should Henan ever answer more than one
   binding, the one with the largest balance, the earliest on a tie);
3. sends Settle. If Henan answers E117 (the named payer is no longer bound: the
   binding ended in between) it chooses again, once, and resends; a second E117
   is `UpstreamContractError`.

The payer named under a request id is kept (`Chosen`): `settle` sent again under the
same id (the gateway's outbox, after a lost answer) names the same payer in each of
its requests, never one chosen again from balances that have moved since (the lost
send itself may have moved them). The same bill sent again (same institution and
serial) is answered with the settlement already made, charged once. Amounts go out
as two-decimal strings; one with more than two decimals is the caller's bug
(`ValueError`, no request).

``<seq>`` names the message. A write's is its request id (`BindRequest.request_id`,
`SettleRequest.request_id`, the ``request_id`` keyword; a new one when None): Henan
keeps it with its answer and answers it again, unchanged, when the same write is
sent again. Settle sent again after E117 goes under an id derived from the first
(`_second_try`), so that the whole of `settle`, sent again under the same id, is
answered as it was the first time. Queries get a new ``<seq>`` each and are
retried (``read=True``).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import xml.etree.ElementTree as ET  # building only; parsing goes through defusedxml
from collections.abc import Collection, Mapping, Sequence
from decimal import Decimal
from typing import Any, cast

import httpx
from defusedxml import DefusedXmlException  # type: ignore[import-untyped]
from defusedxml.ElementTree import fromstring as _defused_fromstring  # type: ignore[import-untyped]

from adapters.base import (
    NEAR_RELATIVES,
    Area,
    Binding,
    BindingStatus,
    BindRequest,
    Chosen,
    CivilRelative,
    InsuranceStatus,
    InsuranceType,
    MedicalType,
    Party,
    Person,
    Policy,
    ProvinceAdapter,
    Quota,
    Refusal,
    RefusalCode,
    Relation,
    Settlement,
    SettleRequest,
    new_request_id,
    parse_money,
)

_PATH = "/hnyb/service"
_HEADERS = {"Content-Type": "text/xml; charset=utf-8"}
_OK = "0000"
_FAULT = "9999"
# The words of a 9999 that says the request could not be read (nothing was done).
_UNREAD = ("报文格式错误", "入参校验失败")

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
# Bind answers these too: its quota, and bindings across provinces (the 2026 rules).
_BIND_REFUSALS: dict[str, RefusalCode] = {
    **_REFUSALS,
    "E115": RefusalCode.AMOUNT_NOT_POSITIVE,  # the quota (共济额度不合法)
    "E120": RefusalCode.CROSS_PROVINCE_NOT_ALLOWED,
    "E121": RefusalCode.QUOTA_NOT_ALLOWED,
    "E122": RefusalCode.QUOTA_ABOVE_BALANCE,
}
_SETTLE_REFUSALS: dict[str, RefusalCode] = {
    "E101": RefusalCode.PERSON_NOT_FOUND,
    "E114": RefusalCode.PATIENT_NOT_INSURED,
    "E115": RefusalCode.AMOUNT_NOT_POSITIVE,
    "E116": RefusalCode.IDEMPOTENCY_KEY_REUSED,
}
_PAYER_NOT_BOUND = "E117"
_REVERSE_REFUSALS: dict[str, RefusalCode] = {
    "E112": RefusalCode.FORBIDDEN,
    "E118": RefusalCode.SETTLEMENT_ALREADY_REVERSED,
    "E119": RefusalCode.REVERSAL_WINDOW_CLOSED,
}
_YLLB = {
    MedicalType.OUTPATIENT: "11",
    MedicalType.INPATIENT: "21",
    MedicalType.PHARMACY: "41",
}
_MEDICAL_TYPE = {v: k for k, v in _YLLB.items()}
_CENT = Decimal("0.01")
# A province: its code in the vocabulary (``32``) and as Henan writes it (``320000``).
_PROVINCE_CODE = re.compile(r"[1-9][0-9]")
_BSQRCBSF = re.compile(r"([1-9][0-9])0000")

# The seed era's rules, then each change on its (illustrative) date: near relatives
# (2025), then relatives insured in other provinces, with a quota (2026).
_SEED = Policy(effective_from=dt.date(2023, 1, 1), single_binding=True)
_NEAR = _SEED.with_changes(effective_from=dt.date(2025, 1, 1), allowed_relations=NEAR_RELATIVES)
_ACROSS = _NEAR.with_changes(effective_from=dt.date(2026, 3, 1), cross_province=True)


def _parse(data: bytes) -> ET.Element:
    """Parse an untrusted answer with defusedxml (never the stdlib parser directly)."""
    return cast(ET.Element, _defused_fromstring(data))


class HenanAdapter(ProvinceAdapter):
    code = "41"
    name = "河南省"
    policies = (_SEED, _NEAR, _ACROSS)

    def __init__(self, client: httpx.AsyncClient, **kwargs: Any) -> None:
        super().__init__(client, **kwargs)
        self._named = Chosen()  # the payer named under each request id

    async def _service(
        self,
        service: str,
        fields: Sequence[tuple[str, str]],
        refusals: Collection[str] = (),
        *,
        read: bool = False,
        seq: str | None = None,
    ) -> tuple[str, ET.Element]:
        """Send one service call; returns ``(retcode, body)`` for success or one of ``refusals``.

        ``seq``: a write's request id (a new one when None, as for every query).
        """
        root = ET.Element("request")
        head = ET.SubElement(root, "head")
        ET.SubElement(head, "service").text = service
        ET.SubElement(head, "seq").text = seq or new_request_id()
        body = ET.SubElement(root, "body")
        for tag, value in fields:
            ET.SubElement(body, tag).text = value
        content = ET.tostring(root, encoding="utf-8", xml_declaration=True)
        response = await self._call("POST", _PATH, read=read, content=content, headers=_HEADERS)
        what = f"service {service}"
        with self._reading(what):
            self._refuse_unread(what, response)
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
        if retcode not in refusals:
            retmsg = answer.findtext("head/retmsg") or ""
            if retcode == _FAULT and any(words in retmsg for words in _UNREAD):
                raise self._unread(f"{what}: retcode {retcode} {retmsg}")
            raise self._contract_error(f"{what}: retcode {retcode} {retmsg}")
        return retcode, output if output is not None else ET.Element("body")

    async def _ok(self, service: str, fields: Sequence[tuple[str, str]]) -> ET.Element:
        """A query: it changes nothing, so it may be retried; any refusal is a surprise."""
        _, body = await self._service(service, fields, read=True)
        return body

    async def _write(
        self,
        service: str,
        fields: Sequence[tuple[str, str]],
        request_id: str | None,
        refusals: Mapping[str, RefusalCode] = _REFUSALS,
    ) -> Binding | Refusal:
        retcode, body = await self._service(service, fields, refusals, seq=request_id)
        if retcode != _OK:
            return Refusal(refusals[retcode])
        with self._reading(f"service {service}"):
            return _binding(_only(body, "binding"))

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
        fields = [
            ("sqrsfzh", request.authorizer_cert_no),
            ("bsqrsfzh", request.beneficiary_cert_no),
            ("bsqrxm", request.beneficiary_name),
            ("gx", _GX[request.relation]),
            ("cnsbz", "1" if request.commitment_signed else "0"),
        ]
        if request.beneficiary_province is not None:  # across provinces, with a quota
            fields.append(("bsqrcbsf", _province_text(request.beneficiary_province)))
        if request.quota is not None:
            fields.append(("gjed", _money_text(request.quota)))
        return await self._write("Bind", fields, request.request_id, _BIND_REFUSALS)

    async def unbind(
        self, binding_id: str, *, actor: str, request_id: str | None = None
    ) -> Binding | Refusal:
        return await self._write("Unbind", [("bdid", binding_id), ("czrsfzh", actor)], request_id)

    # -- settlement ------------------------------------------------------------------

    async def settle(self, request: SettleRequest) -> Settlement | Refusal:
        """Settle a bill, naming the paying authorizer (see the module docstring)."""
        fields = [
            ("ddjgbm", request.institution_code),
            ("jglsh", request.idempotency_key),
            ("hzsfzh", request.patient_cert_no),
            ("yllb", _YLLB[request.medical_type]),
            ("fyze", _money_text(request.total)),
            ("jjzfze", _money_text(request.fund_paid)),
        ]
        allowed = {*_SETTLE_REFUSALS, _PAYER_NOT_BOUND}
        first = request.request_id or new_request_id()
        for seq in (first, _second_try(first)):
            # the payer named under this id before, if it was sent: the same request again
            payer = await self._named.once(seq, lambda: self.payer_to_name(request))
            retcode, body = await self._service(
                "Settle", [*fields, ("sqrsfzh", payer or "")], allowed, seq=seq
            )
            if retcode == _PAYER_NOT_BOUND:
                continue  # the binding ended since we looked: choose again, once
            if retcode != _OK:
                return Refusal(_SETTLE_REFUSALS[retcode])
            with self._reading("service Settle"):
                return _settlement(_only(body, "settlement"))
        raise self._contract_error(
            f"service Settle: retcode {_PAYER_NOT_BOUND} twice (the payer chosen is not bound)"
        )

    async def reverse(
        self,
        settlement_id: str,
        *,
        institution_code: str,
        reason: str,
        request_id: str | None = None,
    ) -> Settlement | Refusal:
        retcode, body = await self._service(
            "ReverseSettle",
            [("jsid", settlement_id), ("ddjgbm", institution_code), ("cxyy", reason)],
            _REVERSE_REFUSALS,
            seq=request_id,
        )
        if retcode != _OK:
            return Refusal(_REVERSE_REFUSALS[retcode])
        with self._reading("service ReverseSettle"):
            return _settlement(_only(body, "settlement"))

    async def settlements_of(self, cert_nos: Sequence[str]) -> Sequence[Settlement]:
        if not cert_nos:
            return []
        body = await self._ok("QuerySettle", [("sfzh", c) for c in cert_nos])
        with self._reading("service QuerySettle"):
            return [_settlement(s) for s in _all(body, "settlement")]


def _second_try(request_id: str) -> str:
    """The request id of Settle sent again after E117: derived from the first (the same
    length for a `new_request_id`: its time, then 10 hex digits of a hash), so that
    `settle` sent again under the first id sends the same two requests."""
    digest = hashlib.sha256(f"{request_id}/2".encode()).hexdigest()[:10]
    return f"{request_id[:16]}{digest}"


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


def _only(body: ET.Element, tag: str) -> ET.Element:
    found = body.findall(tag)
    if len(found) != 1:
        raise ValueError(f"{len(found)} <{tag}> elements")
    return found[0]


def _all(body: ET.Element, tag: str) -> list[ET.Element]:
    """Every child of ``body``, each of which must be a ``<tag>``."""
    found = list(body)
    for child in found:
        if child.tag != tag:
            raise ValueError(f"<{child.tag}> where only <{tag}> belongs")
    return found


def _time(raw: ET.Element, path: str) -> dt.datetime | None:
    """A ``YYYYMMDDHHMMSS`` UTC time, or None for an empty element."""
    value = _optional(raw, path)
    if value is None:
        return None
    return dt.datetime.strptime(value, "%Y%m%d%H%M%S").replace(tzinfo=dt.UTC)


def _money_text(amount: Decimal) -> str:
    """An amount as Henan takes it: two decimals. More than two is the caller's bug."""
    exact = amount.quantize(_CENT) if amount.is_finite() else amount
    if not exact.is_finite() or exact != amount:
        raise ValueError(f"not an amount in cents: {amount!r}")
    return str(exact)


def _province_text(province: str) -> str:
    """A province's code (``"32"``) as Henan takes it (``"320000"``). Anything else is
    the caller's bug."""
    if not _PROVINCE_CODE.fullmatch(province):
        raise ValueError(f"not a province's code: {province!r}")
    return f"{province}0000"


def _settlement(raw: ET.Element) -> Settlement:
    """A ``<settlement>`` (`Settlement` checks that it adds up)."""
    total, fund_paid, self_pay = (parse_money(_text(raw, t)) for t in ("fyze", "jjzfze", "grfdje"))
    own, mutual, cash = (parse_money(_text(raw, t)) for t in ("grzhzf", "gjzhzf", "grxjzf"))
    balance = _optional(raw, "zhye")
    payer: Party | None = None
    payer_balance: str | None = None
    if mutual > 0:
        payer = Party(_text(raw, "sqrsfzh"), _text(raw, "sqrxm"))
        payer_balance = _optional(raw, "sqrzhye")
    settled_at = _time(raw, "jssj")
    if settled_at is None:
        raise ValueError("<jssj> is empty")
    return Settlement(
        id=_text(raw, "jsid"),
        institution_code=_text(raw, "ddjgbm"),
        patient=Party(_text(raw, "hzsfzh"), _text(raw, "hzxm")),
        medical_type=_MEDICAL_TYPE[_text(raw, "yllb")],
        total=total,
        fund_paid=fund_paid,
        self_pay=self_pay,
        own_account_paid=own,
        mutual_aid_paid=mutual,
        mutual_aid_payer=payer,
        cash_due=cash,
        patient_balance_after=None if balance is None else parse_money(balance),
        payer_balance_after=None if payer_balance is None else parse_money(payer_balance),
        settled_at=settled_at,
        reversed_at=_time(raw, "cxsj"),
        reversal_reason=_optional(raw, "cxyy"),
    )


def _binding(raw: ET.Element) -> Binding:
    return Binding(
        id=_text(raw, "bdid"),
        authorizer=Party(_text(raw, "sqrsfzh"), _text(raw, "sqrxm")),
        beneficiary=Party(_text(raw, "bsqrsfzh"), _text(raw, "bsqrxm")),
        relation=_RELATION[_text(raw, "gx")],
        status=_ZT[_text(raw, "zt")],
        created_at=dt.datetime.strptime(_text(raw, "cjsj"), "%Y%m%d%H%M%S").replace(tzinfo=dt.UTC),
        beneficiary_province=_province(raw),
        quota=_quota(raw),
    )


def _province(raw: ET.Element) -> str | None:
    """``<bsqrcbsf>``, a province's six-digit code (``320000``), as its prefix (``32``);
    None when empty or absent (inside Henan)."""
    code = _optional(raw, "bsqrcbsf", missing_ok=True)
    if code is None:
        return None
    found = _BSQRCBSF.fullmatch(code)
    if found is None:
        raise ValueError(f"<bsqrcbsf> is not a province's code: {code!r}")
    return found[1]


def _quota(raw: ET.Element) -> Quota | None:
    """``<gjed>`` (granted) and ``<gjedye>`` (remaining); None when both are empty or
    absent (inside Henan). `Binding` checks that it goes with a province."""
    granted = _optional(raw, "gjed", missing_ok=True)
    remaining = _optional(raw, "gjedye", missing_ok=True)
    if granted is None and remaining is None:
        return None
    if granted is None or remaining is None:
        raise ValueError("a quota without both <gjed> and <gjedye>")
    return Quota(parse_money(granted), parse_money(remaining))

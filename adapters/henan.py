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
        (to HoldQuota: 冻结金额不合法,
        to ConfirmHold: 支付金额不合法,
        to PayPremium: 共济冻结金额不足
        以缴费)
E116    机构流水号已用于另一笔结算          IDEMPOTENCY_KEY_REUSED
E117    指定的共济授权人未与患者绑定        choose the payer again, once (see below)
        (to PayPremium: 缴费人未与参保人    (to PayPremium: NOT_BOUND)
        绑定家庭共济)
E118    该笔结算已撤销                      SETTLEMENT_ALREADY_REVERSED
E119    仅可撤销当日结算                    REVERSAL_WINDOW_CLOSED
E120    暂不支持跨省共济                    CROSS_PROVINCE_NOT_ALLOWED (beneficiaryCertNo)
E121    省内共济不设共济额度                QUOTA_NOT_ALLOWED (quota)
E122    共济额度超过个人账户余额            QUOTA_ABOVE_BALANCE (quota)
E123    共济额度余额不足                    QUOTA_INSUFFICIENT
E124    冻结状态不允许此操作                INVALID_HOLD_STATE
E125    非城乡居民基本医疗保险参保人员      NOT_RESIDENT_INSURED
E126    该年度居民医保缴费标准未公布        PREMIUM_NOT_DECLARED
E127    该年度居民医保已缴费                PREMIUM_ALREADY_PAID
E128    暂不支持个人账户为家庭成员缴费      PREMIUM_PAYMENT_NOT_ALLOWED
E129    个人账户余额不足                    BALANCE_INSUFFICIENT
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
settlement, or none), E118 and E119 for ReverseSettle; E112 (no binding across
provinces by that id: FORBIDDEN), E113, E115 and E123 for HoldQuota; E112 (no such
hold), E115 (more than held) and E124 for ConfirmHold; E112 and E124 for ReleaseHold
and RefundHold; E101 and E125 for QueryPremium, the one query with refusals of its own;
E101, E115 (the amount held elsewhere), E117 (the payer) and E125-E129 for PayPremium.
A refusal from another service's list, or any refusal to another query, is
`UpstreamContractError`; so is E117 to a Settle that names no payer of Henan's (one
paid from a quota held elsewhere, below).

Services: QueryPerson (``<sfzh>*`` -> ``<person>*``), QueryRelatives (``<sfzh>`` ->
``<relative>*``), QueryBindings (``<sfzh>*`` -> ``<binding>*``), QueryFamily
(``<sfzh>*``, ``<bdsfzh>*`` -> ``<ryxx>``, ``<bdxx>``: a family screen, below), Bind
and Unbind (-> ``<binding>``), Settle and ReverseSettle (-> ``<settlement>``), QuerySettle
(``<sfzh>*`` -> ``<settlement>*``), HoldQuota, ConfirmHold, ReleaseHold and RefundHold
(-> ``<hold>``), QueryHold (``<sfzh>*`` -> ``<hold>*``), QueryRegistrationChanges
(``<qsxh>`` -> ``<change>*``: the change feed, below), QueryPremium (-> ``<premium>``)
and PayPremium (-> ``<payment>``: resident premiums, below). Answers are untrusted input:
they are parsed with defusedxml only, and anything we cannot read becomes
`UpstreamContractError`.

A family screen (`read_family`) is one QueryFamily: ``<sfzh>`` for each person to find
and ``<bdsfzh>`` for each person whose bindings to read; it answers exactly one
``<ryxx>`` holding ``<person>`` elements and exactly one ``<bdxx>`` holding ``<binding>``
elements, read as `find_persons` and `bindings_of` read QueryPerson's and
QueryBindings' bodies (either container missing or repeated is an
`UpstreamContractError`). With only one of the two lists, `read_family` sends that
read alone (Henan asks at least one of each); with neither, nothing.

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

Holds on such a quota (共济额度冻结), for a payment in the relative's province, are
writes like Bind (sent once, under their request id as ``<seq>``):

=========== ============================================ ==============
service     body (Henan's element: what)                 adapter method
=========== ============================================ ==============
HoldQuota   ``<bdid>`` binding, ``<djje>`` amount,       `hold_quota`
            ``<ywlsh>`` the gateway's reference
ConfirmHold ``<djid>`` hold, ``<zfje>`` used,            `confirm_hold`
            ``<zflsh>`` the paying province's settlement
ReleaseHold ``<djid>``                                   `release_hold`
RefundHold  ``<djid>``                                   `refund_hold`
QueryHold   ``<sfzh>*`` (a read, retried)                `holds_of`
=========== ============================================ ==============

Each write answers one ``<hold>``, QueryHold any number: djid (`QuotaHold.id`), bdid,
sqrsfzh / sqrxm and bsqrsfzh / bsqrxm (the two sides), bsqrcbsf (the relative's
province, six digits), djje (amount), zfje (used), djzt (status: ``01`` HELD, ``02``
CONFIRMED, ``03`` RELEASED, ``04`` REFUNDED), ywlsh (reference), zflsh (payment ref,
present exactly when CONFIRMED or REFUNDED) and cjsj (created, ``YYYYMMDDHHMMSS`` in
UTC). Anything else (an element missing, an unknown djzt, used above the amount, a
hold for another binding or reference than HoldQuota asked for, or another hold than
the one named) is `UpstreamContractError`. Amounts go out as two-decimal strings; more
decimals is the caller's bug (`ValueError`, no request).

The change feed (参保关系变更, `registration_changes`), a read like QueryHold (retried,
a new ``<seq>`` each time):

======================== ================================ ========================
service                  body (Henan's element: what)     adapter method
======================== ================================ ========================
QueryRegistrationChanges ``<qsxh>`` the changes after     `registration_changes`
                         this one (0: from the start)
======================== ================================ ========================

It answers ``<change>`` elements only, oldest first: bgxh (`RegistrationChange.seq`,
digits), sfzh, bglx (``01`` moved out, `ChangeKind.MOVED`; ``02`` ended,
`ChangeKind.ENDED`), zrsf (the province moved to, six digits like bsqrcbsf, present
exactly when moved out and never Henan's own) and bgsj (``YYYYMMDDHHMMSS`` in UTC).
Anything else (an element missing, an unknown bglx, a bgxh not above ``<qsxh>`` and
the one before it) is `UpstreamContractError`. A negative ``after`` is the caller's bug
(`ValueError`, no request).

Resident premiums (城乡居民医保个人缴费; an account pays a bound relative's from the
2025 rules, `Policy.premium_payment`):

============ ============================================== ==============
service      body (Henan's element: what)                   adapter method
============ ============================================== ==============
QueryPremium ``<sfzh>`` the resident, ``<nd>`` the year     `premium_of`
             (年度) (a read, retried, a new ``<seq>``)
PayPremium   ``<sfzh>``, ``<nd>``, ``<jfrsfzh>`` the payer  `pay_premium`
             (缴费人); from a quota held in another
             province also ``<gjsf>``, ``<gjje>`` and
             ``<gjdjid>`` as in Settle (a write, sent once
             under its request id as ``<seq>``)
============ ============================================== ==============

QueryPremium answers one ``<premium>``: sfzh and nd (`Premium.cert_no`, `Premium.year`:
the ones asked, else `UpstreamContractError`), xm, jfbz (缴费标准, `Premium.amount`;
empty: not declared yet, None) and, once paid, one ``<payment>`` inside it
(`Premium.payment`, the same resident's for the same year). PayPremium answers one
``<payment>``: jfid (`PremiumPayment.id`), sfzh / xm (the resident), nd, jfje (the
amount, above zero), jfrsfzh / jfrxm (the payer), gjsf (`PremiumPayment.payer_province`,
six digits; empty for an account in Henan) with gjdjid (`PremiumPayment.funding_hold`,
both or neither, never Henan's own) and jfsj (paid, ``YYYYMMDDHHMMSS`` in UTC); it must
be the payment asked for (the resident, year, payer, province and hold sent), else
`UpstreamContractError`. With `PremiumRequest.funding` the payer is ``<jfrsfzh>`` (no
``<gjrsfzh>``), so a funding payer other than `PremiumRequest.payer_cert_no`, a funding
province of Henan's own or not two digits, an amount of more than two decimals, or a
year that is not four digits is the caller's bug (`ValueError`, no request).

The other way, a bill of a Henan patient paid from a quota held in another province
(`SettleRequest.funding`): Settle carries ``<gjsf>`` (that province's six-digit code),
``<gjrsfzh>`` (the authorizer there), ``<gjje>`` (the amount held there) and
``<gjdjid>`` (the hold there), and no ``<sqrsfzh>``: the adapter chooses no payer of
Henan's (no `payer_to_name`, no reads before it) and sends Settle once, under its
request id. A ``<settlement>`` answers ``<gjsf>`` and ``<gjdjid>`` for such a bill
(`Settlement.mutual_aid_province`, `Settlement.funding_hold`; empty or absent
otherwise, None), with the authorizer there as `Settlement.mutual_aid_payer` and
`Settlement.payer_balance_after` None (an account elsewhere). Only one of the two, one
without mutual aid paid, or a ``<gjsf>`` of Henan's own is `UpstreamContractError`;
the same bill already made from another hold (or none) is answered as it was made. A
funding province of Henan's own (``"41"``) or not two digits, or an amount of more
than two decimals, is the caller's bug (`ValueError`, no request).

Settlement: Henan's system must be *told* which authorizer pays by mutual aid
(``<sqrsfzh>`` in Settle); this adapter chooses. Henan is single-binding, so a
patient has at most one authorizer. `HenanAdapter.settle`, for a bill without
`SettleRequest.funding`:

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
from collections.abc import Callable, Collection, Mapping, Sequence
from decimal import Decimal
from typing import Any, TypeVar, cast

import httpx
from defusedxml import DefusedXmlException  # type: ignore[import-untyped]
from defusedxml.ElementTree import fromstring as _defused_fromstring  # type: ignore[import-untyped]

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
# The holds on a quota (the 2026 rules): each service answers only its own refusals.
_HOLD_REFUSALS: dict[str, RefusalCode] = {
    "E112": RefusalCode.FORBIDDEN,  # no binding across provinces by that bdid
    "E113": RefusalCode.INVALID_BINDING_STATE,  # the binding is not in force
    "E115": RefusalCode.AMOUNT_NOT_POSITIVE,  # 冻结金额不合法
    "E123": RefusalCode.QUOTA_INSUFFICIENT,
}
_CONFIRM_REFUSALS: dict[str, RefusalCode] = {
    "E112": RefusalCode.FORBIDDEN,  # no hold by that djid
    "E115": RefusalCode.AMOUNT_NOT_POSITIVE,  # 支付金额不合法: more than held, or below zero
    "E124": RefusalCode.INVALID_HOLD_STATE,
}
_END_HOLD_REFUSALS: dict[str, RefusalCode] = {  # ReleaseHold and RefundHold
    "E112": RefusalCode.FORBIDDEN,
    "E124": RefusalCode.INVALID_HOLD_STATE,
}
# Resident premiums (城乡居民医保个人缴费): each service answers only its own refusals.
_PREMIUM_REFUSALS: dict[str, RefusalCode] = {  # QueryPremium
    "E101": RefusalCode.PERSON_NOT_FOUND,
    "E125": RefusalCode.NOT_RESIDENT_INSURED,
}
_PAY_PREMIUM_REFUSALS: dict[str, RefusalCode] = {
    **_PREMIUM_REFUSALS,
    "E115": RefusalCode.AMOUNT_NOT_POSITIVE,  # 共济冻结金额不足以缴费: the held amount
    "E117": RefusalCode.NOT_BOUND,  # 缴费人未与参保人绑定家庭共济
    "E126": RefusalCode.PREMIUM_NOT_DECLARED,
    "E127": RefusalCode.PREMIUM_ALREADY_PAID,
    "E128": RefusalCode.PREMIUM_PAYMENT_NOT_ALLOWED,
    "E129": RefusalCode.BALANCE_INSUFFICIENT,
}
_DJZT = {
    "01": HoldStatus.HELD,
    "02": HoldStatus.CONFIRMED,
    "03": HoldStatus.RELEASED,
    "04": HoldStatus.REFUNDED,
}
_YLLB = {
    MedicalType.OUTPATIENT: "11",
    MedicalType.INPATIENT: "21",
    MedicalType.PHARMACY: "41",
}
_MEDICAL_TYPE = {v: k for k, v in _YLLB.items()}
_BGLX = {"01": ChangeKind.MOVED, "02": ChangeKind.ENDED}
_BGXH = re.compile(r"[0-9]{1,18}")  # a change's number (变更序号)
_ND = re.compile(r"[0-9]{4}")  # a year (年度)
_CENT = Decimal("0.01")
# A province: its code in the vocabulary (``32``) and as Henan writes it (``320000``).
_PROVINCE_CODE = re.compile(r"[1-9][0-9]")
_BSQRCBSF = re.compile(r"([1-9][0-9])0000")

# The seed era's rules, then each change on its (illustrative) date: near relatives,
# whose resident premiums an account may pay (2025), then relatives insured in other
# provinces, with a quota (2026).
_SEED = Policy(effective_from=dt.date(2023, 1, 1), single_binding=True)
_NEAR = _SEED.with_changes(
    effective_from=dt.date(2025, 1, 1), allowed_relations=NEAR_RELATIVES, premium_payment=True
)
_ACROSS = _NEAR.with_changes(effective_from=dt.date(2026, 3, 1), cross_province=True)

_T = TypeVar("_T")


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
        return await self._written(service, fields, request_id, refusals, "binding", _binding)

    async def _written(
        self,
        service: str,
        fields: Sequence[tuple[str, str]],
        request_id: str | None,
        refusals: Mapping[str, RefusalCode],
        tag: str,
        parse: Callable[[ET.Element], _T],
    ) -> _T | Refusal:
        """A write, sent once under ``request_id``: its one ``<tag>``, or a refusal."""
        retcode, body = await self._service(service, fields, refusals, seq=request_id)
        if retcode != _OK:
            return Refusal(refusals[retcode])
        with self._reading(f"service {service}"):
            return parse(_only(body, tag))

    async def find_persons(self, cert_nos: Sequence[str]) -> Mapping[str, Person]:
        if not cert_nos:
            return {}
        body = await self._ok("QueryPerson", [("sfzh", c) for c in cert_nos])
        with self._reading("service QueryPerson"):
            return _persons(body)

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
            return _bindings(body)

    async def read_family(self, cert_nos: Sequence[str], bound: Sequence[str]) -> FamilyRead:
        """One QueryFamily: the persons ``cert_nos`` and the bindings of ``bound``."""
        if not cert_nos or not bound:  # one read at most (none for two empty lists)
            return FamilyRead(await self.find_persons(cert_nos), await self.bindings_of(bound))
        fields = [*(("sfzh", c) for c in cert_nos), *(("bdsfzh", c) for c in bound)]
        body = await self._ok("QueryFamily", fields)
        with self._reading("service QueryFamily"):
            return FamilyRead(_persons(_only(body, "ryxx")), _bindings(_only(body, "bdxx")))

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
        """Settle a bill, naming the paying authorizer (see the module docstring); or,
        with `SettleRequest.funding`, the quota held in another province instead."""
        fields = [
            ("ddjgbm", request.institution_code),
            ("jglsh", request.idempotency_key),
            ("hzsfzh", request.patient_cert_no),
            ("yllb", _YLLB[request.medical_type]),
            ("fyze", _money_text(request.total)),
            ("jjzfze", _money_text(request.fund_paid)),
        ]
        first = request.request_id or new_request_id()
        if request.funding is not None:  # paid from a quota held elsewhere: nobody to name
            return await self._settle_funded(request.funding, fields, first)
        allowed = {*_SETTLE_REFUSALS, _PAYER_NOT_BOUND}
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

    async def _settle_funded(
        self, funding: Funding, fields: list[tuple[str, str]], seq: str
    ) -> Settlement | Refusal:
        """Settle sent once under ``seq`` with the quota held in another province
        (``<gjsf>``, ``<gjrsfzh>``, ``<gjje>``, ``<gjdjid>``) and no ``<sqrsfzh>``: Henan
        pays no authorizer of its own for it, so E117 is not among its answers."""
        if funding.province == self.code:
            raise ValueError(f"a quota held in {self.code} itself is not across provinces")
        funded = [
            *fields,
            ("gjsf", _province_text(funding.province)),
            ("gjrsfzh", funding.payer),
            ("gjje", _money_text(funding.amount)),
            ("gjdjid", funding.hold_id),
        ]
        retcode, body = await self._service("Settle", funded, _SETTLE_REFUSALS, seq=seq)
        if retcode != _OK:
            return Refusal(_SETTLE_REFUSALS[retcode])
        with self._reading("service Settle"):
            # the same bill made before from another hold (or none) is answered as made
            return _settlement(_only(body, "settlement"))

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

    # -- holds on a quota (across provinces) -------------------------------------------

    async def hold_quota(
        self, binding_id: str, *, amount: Decimal, reference: str, request_id: str | None = None
    ) -> QuotaHold | Refusal:
        fields = [("bdid", binding_id), ("djje", _money_text(amount)), ("ywlsh", reference)]
        done = await self._written("HoldQuota", fields, request_id, _HOLD_REFUSALS, "hold", _hold)
        if isinstance(done, QuotaHold) and (done.binding_id, done.reference) != (
            binding_id,
            reference,
        ):
            raise self._contract_error(f"service HoldQuota: another hold {done.id!r}")
        return done

    async def confirm_hold(
        self, hold_id: str, *, used: Decimal, payment_ref: str, request_id: str | None = None
    ) -> QuotaHold | Refusal:
        fields = [("djid", hold_id), ("zfje", _money_text(used)), ("zflsh", payment_ref)]
        return await self._hold_write("ConfirmHold", hold_id, fields, request_id, _CONFIRM_REFUSALS)

    async def release_hold(
        self, hold_id: str, *, request_id: str | None = None
    ) -> QuotaHold | Refusal:
        fields = [("djid", hold_id)]
        return await self._hold_write("ReleaseHold", hold_id, fields, request_id)

    async def refund_hold(
        self, hold_id: str, *, request_id: str | None = None
    ) -> QuotaHold | Refusal:
        fields = [("djid", hold_id)]
        return await self._hold_write("RefundHold", hold_id, fields, request_id)

    async def holds_of(self, cert_nos: Sequence[str]) -> Sequence[QuotaHold]:
        if not cert_nos:
            return []
        body = await self._ok("QueryHold", [("sfzh", c) for c in cert_nos])
        with self._reading("service QueryHold"):
            return [_hold(h) for h in _all(body, "hold")]

    # -- registrations: the change feed -------------------------------------------------

    async def registration_changes(self, after: int) -> Sequence[RegistrationChange]:
        if after < 0:
            raise ValueError(f"not a change's number: {after!r}")
        body = await self._ok("QueryRegistrationChanges", [("qsxh", str(after))])
        with self._reading("service QueryRegistrationChanges"):
            changes: list[RegistrationChange] = []
            last = after
            for raw in _all(body, "change"):
                change = _change(raw)
                if change.seq <= last:
                    raise ValueError(f"change {change.seq} after {last}")
                changes.append(change)
                last = change.seq
            return changes

    # -- resident premiums (城乡居民医保个人缴费) ----------------------------------------

    async def premium_of(self, cert_no: str, year: int) -> Premium | Refusal:
        fields = [("sfzh", cert_no), ("nd", _year_text(year))]
        retcode, body = await self._service("QueryPremium", fields, _PREMIUM_REFUSALS, read=True)
        if retcode != _OK:
            return Refusal(_PREMIUM_REFUSALS[retcode])
        with self._reading("service QueryPremium"):
            premium = _premium(_only(body, "premium"))
            if (premium.cert_no, premium.year) != (cert_no, year):
                raise ValueError(f"the premium of {premium.cert_no!r} for {premium.year}")
            return premium

    async def pay_premium(self, request: PremiumRequest) -> PremiumPayment | Refusal:
        fields = [
            ("sfzh", request.beneficiary_cert_no),
            ("nd", _year_text(request.year)),
            ("jfrsfzh", request.payer_cert_no),
        ]
        funding = request.funding
        if funding is not None:  # from a quota held in another province
            if funding.province == self.code:
                raise ValueError(f"a quota held in {self.code} itself is not across provinces")
            if funding.payer != request.payer_cert_no:
                raise ValueError(f"a quota of {funding.payer!r}, not the payer's")
            fields += [
                ("gjsf", _province_text(funding.province)),
                ("gjje", _money_text(funding.amount)),
                ("gjdjid", funding.hold_id),
            ]
        done = await self._written(
            "PayPremium",
            fields,
            request.request_id,
            _PAY_PREMIUM_REFUSALS,
            "payment",
            _payment,
        )
        if isinstance(done, PremiumPayment):
            asked = (
                request.beneficiary_cert_no,
                request.year,
                request.payer_cert_no,
                None if funding is None else funding.province,
                None if funding is None else funding.hold_id,
            )
            made = (
                done.beneficiary.cert_no,
                done.year,
                done.payer.cert_no,
                done.payer_province,
                done.funding_hold,
            )
            if made != asked:
                raise self._contract_error(f"service PayPremium: another payment {done.id!r}")
        return done

    async def _hold_write(
        self,
        service: str,
        hold_id: str,
        fields: Sequence[tuple[str, str]],
        request_id: str | None,
        refusals: Mapping[str, RefusalCode] = _END_HOLD_REFUSALS,
    ) -> QuotaHold | Refusal:
        """A write on the hold ``hold_id``: the ``<hold>`` answered must be that one."""
        done = await self._written(service, fields, request_id, refusals, "hold", _hold)
        if isinstance(done, QuotaHold) and done.id != hold_id:
            raise self._contract_error(f"service {service}: another hold {done.id!r}")
        return done


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
    # across provinces: the payer's province and the hold there (absent before 2026)
    province = _province(raw, "gjsf")
    hold = _optional(raw, "gjdjid", missing_ok=True)
    if (province is None) != (hold is None) or (province is not None and payer is None):
        raise ValueError("<gjsf> and <gjdjid> come together, with mutual aid paid")
    if province == "41":
        raise ValueError("<gjsf> names Henan itself")
    if province is not None:
        payer_balance = None  # an account in another province: not Henan's to tell
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
        mutual_aid_province=province,
        funding_hold=hold,
    )


def _persons(body: ET.Element) -> dict[str, Person]:
    """QueryPerson's ``<person>`` elements (and QueryFamily's ``<ryxx>``), by ID number."""
    found: dict[str, Person] = {}
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


def _bindings(body: ET.Element) -> list[Binding]:
    """QueryBindings' ``<binding>`` elements (and QueryFamily's ``<bdxx>``)."""
    return [_binding(b) for b in body.findall("binding")]


def _binding(raw: ET.Element) -> Binding:
    return Binding(
        id=_text(raw, "bdid"),
        authorizer=Party(_text(raw, "sqrsfzh"), _text(raw, "sqrxm")),
        beneficiary=Party(_text(raw, "bsqrsfzh"), _text(raw, "bsqrxm")),
        relation=_RELATION[_text(raw, "gx")],
        status=_ZT[_text(raw, "zt")],
        created_at=_created(raw),
        beneficiary_province=_province(raw),
        quota=_quota(raw),
    )


def _created(raw: ET.Element) -> dt.datetime:
    """``<cjsj>``, ``YYYYMMDDHHMMSS`` in UTC, which must be there."""
    return dt.datetime.strptime(_text(raw, "cjsj"), "%Y%m%d%H%M%S").replace(tzinfo=dt.UTC)


def _hold(raw: ET.Element) -> QuotaHold:
    """A ``<hold>`` (`QuotaHold` checks its amounts)."""
    province = _province(raw)
    if province is None:
        raise ValueError("a hold names the relative's province")
    status = _DJZT[_text(raw, "djzt")]
    payment_ref = _optional(raw, "zflsh")
    paid = status in (HoldStatus.CONFIRMED, HoldStatus.REFUNDED)
    if paid != (payment_ref is not None):
        raise ValueError(f"a hold {status.value} with <zflsh> {payment_ref!r}")
    return QuotaHold(
        id=_text(raw, "djid"),
        binding_id=_text(raw, "bdid"),
        authorizer=Party(_text(raw, "sqrsfzh"), _text(raw, "sqrxm")),
        beneficiary=Party(_text(raw, "bsqrsfzh"), _text(raw, "bsqrxm")),
        beneficiary_province=province,
        amount=parse_money(_text(raw, "djje")),
        used=parse_money(_text(raw, "zfje")),
        status=status,
        reference=_text(raw, "ywlsh"),
        payment_ref=payment_ref,
        created_at=_created(raw),
    )


def _province(raw: ET.Element, tag: str = "bsqrcbsf") -> str | None:
    """``<bsqrcbsf>`` (or ``tag``), a province's six-digit code (``320000``), as its
    prefix (``32``); None when empty or absent (inside Henan)."""
    code = _optional(raw, tag, missing_ok=True)
    if code is None:
        return None
    found = _BSQRCBSF.fullmatch(code)
    if found is None:
        raise ValueError(f"<{tag}> is not a province's code: {code!r}")
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


def _year_text(year: int) -> str:
    """A year as Henan takes it (``<nd>``): four digits. Anything else is the caller's bug."""
    if isinstance(year, bool) or not isinstance(year, int) or not 1000 <= year <= 9999:
        raise ValueError(f"not a year: {year!r}")
    return str(year)


def _year(raw: ET.Element) -> int:
    """``<nd>``, four ASCII digits."""
    value = _text(raw, "nd")
    if not _ND.fullmatch(value):
        raise ValueError(f"<nd> is not a year: {value!r}")
    return int(value)


def _premium(raw: ET.Element) -> Premium:
    """A ``<premium>`` (QueryPremium): jfbz empty when not declared, and its ``<payment>``
    once paid, which must be the same resident's for the same year."""
    cert_no, year = _text(raw, "sfzh"), _year(raw)
    declared = _optional(raw, "jfbz")
    payments = raw.findall("payment")
    if len(payments) > 1:
        raise ValueError(f"{len(payments)} <payment> elements")
    payment = _payment(payments[0]) if payments else None
    if payment is not None and (payment.beneficiary.cert_no, payment.year) != (cert_no, year):
        raise ValueError(f"a payment {payment.id!r} of another premium")
    amount = None if declared is None else parse_money(declared)
    if amount is not None and amount <= 0:
        raise ValueError(f"<jfbz> {declared!r}")
    return Premium(cert_no, year, amount, payment)


def _payment(raw: ET.Element) -> PremiumPayment:
    """A ``<payment>``: from an account in Henan (gjsf and gjdjid empty or absent), or
    from a quota held in another province (both, never Henan's own)."""
    amount = parse_money(_text(raw, "jfje"))
    if amount <= 0:
        raise ValueError(f"<jfje> {amount}")
    province = _province(raw, "gjsf")
    hold = _optional(raw, "gjdjid", missing_ok=True)
    if (province is None) != (hold is None) or province == "41":
        raise ValueError(f"<gjsf> {province!r} with <gjdjid> {hold!r}")
    paid_at = _time(raw, "jfsj")
    if paid_at is None:
        raise ValueError("<jfsj> is empty")
    return PremiumPayment(
        id=_text(raw, "jfid"),
        beneficiary=Party(_text(raw, "sfzh"), _text(raw, "xm")),
        year=_year(raw),
        amount=amount,
        payer=Party(_text(raw, "jfrsfzh"), _text(raw, "jfrxm")),
        payer_province=province,
        funding_hold=hold,
        paid_at=paid_at,
    )


def _change(raw: ET.Element) -> RegistrationChange:
    """A ``<change>`` of the feed (QueryRegistrationChanges)."""
    number = _text(raw, "bgxh")
    if not _BGXH.fullmatch(number):
        raise ValueError(f"<bgxh> is not a change's number: {number!r}")
    kind = _BGLX[_text(raw, "bglx")]
    to = _province(raw, "zrsf")
    if (kind is ChangeKind.MOVED) != (to is not None) or to == "41":
        raise ValueError(f"<bglx> {kind.value} with <zrsf> {to!r}")
    at = _time(raw, "bgsj")
    if at is None:
        raise ValueError("<bgsj> is empty")
    return RegistrationChange(
        seq=int(number),
        cert_no=_text(raw, "sfzh"),
        kind=kind,
        to_province=to,
        at=at,
    )

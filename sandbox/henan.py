"""Henan (河南) as we model it: a legacy XML-over-HTTP service.

Every call is ``POST /hnyb/service`` with ``Content-Type: text/xml; charset=utf-8``
and a body::

    <?xml version="1.0" encoding="UTF-8"?>
    <request><head><service>QueryPerson</service><seq>...</seq></head><body>...</body></request>

Every answer is HTTP 200 (even for faults: it is a legacy system)::

    <response><head><retcode>0000</retcode><retmsg>成功</retmsg><seq>...</seq></head>
    <body>...</body></response>

``retcode`` ``0000`` is success, ``9999`` a system fault (malformed XML, unknown
service, invalid input), ``E1xx`` a business refusal (see `ERRORS`: E101-E113 for
bindings, E114-E119 for settlement, E120-E122 for bindings across provinces, E123-E124
for holds on a quota, E125-E129 for resident premiums; Bind answers E115 too, for a
quota that is not an amount above zero, and HoldQuota and ConfirmHold for their
amounts; PayPremium answers E101, E115 and E117 as well). Requests are parsed with
defusedxml only: entity declarations, external references and the like are refused
with ``9999``. A request Henan cannot read is not carried
out, and its ``retmsg`` says so: 报文格式错误 for one that is not XML it parses
(text with a control character XML cannot carry, U+0001 say, is not XML),
入参校验失败 for input it refuses (a field missing, an amount that is not one).

``<seq>`` (流水号) names the request. For the writes (Bind, Unbind, Settle,
ReverseSettle, HoldQuota, ConfirmHold, ReleaseHold, RefundHold, PayPremium) Henan keeps
it with its answer: the same ``<seq>`` again is answered with the same retcode, retmsg
and body as the first time (a refusal too), and nothing is done twice. A ``<seq>`` already
answered for another request is refused with ``9999`` (流水号重复) and nothing is done.
Without a ``<seq>`` a write is done as it comes; queries ignore it.

Services:

======================== ======================== ===============================================
service                  what                     body -> body
======================== ======================== ===============================================
QueryPerson              person info, batched     <sfzh>* -> <person>* (xm, sfzh, xb, csrq, lxdh,
                                                  cbdq, cbdqmc, xzlx, cbzt, grzhye)
QueryRelatives           civil-record relatives   <sfzh> -> <relative>* (sfzh, xm, gx)
QueryBindings            mutual-aid bindings of   <sfzh>* -> <binding>*
                         persons
QueryFamily              persons and the          <sfzh>*, <bdsfzh>* -> <ryxx> (<person>* as
                         bindings of persons, in  QueryPerson answers the sfzh), <bdxx>
                         one call (家庭共济信息   (<binding>* as QueryBindings answers the
                         查询)                    bdsfzh)
Bind                     create a binding         <sqrsfzh>, <bsqrsfzh>, <bsqrxm>, <gx>, <cnsbz>,
                                                  <bsqrcbsf>?, <gjed>? -> <binding>
Unbind                   end a binding            <bdid>, <czrsfzh> -> <binding>
Settle                   settle a bill            <ddjgbm>, <jglsh>, <hzsfzh>, <yllb>, <fyze>,
                         (门诊/住院/购药结算)     <jjzfze>, <sqrsfzh>?, (<gjsf>, <gjrsfzh>,
                                                  <gjje>, <gjdjid>)? -> <settlement>
ReverseSettle            undo a settlement        <jsid>, <ddjgbm>, <cxyy> -> <settlement>
                         (结算撤销)
QuerySettle              settlements of persons   <sfzh>* -> <settlement>* (newest first)
HoldQuota                hold on a quota          <bdid>, <djje>, <ywlsh> -> <hold>
                         (共济额度冻结)
ConfirmHold              confirm a hold           <djid>, <zfje>, <zflsh> -> <hold>
                         (冻结转支付)
ReleaseHold              release a hold (解冻)    <djid> -> <hold>
RefundHold               refund a hold (支付退回) <djid> -> <hold>
QueryHold                holds of persons,        <sfzh>* -> <hold>* (oldest first)
                         batched (冻结信息查询)
QueryRegistrationChanges the change feed          <qsxh> -> <change>* (after the change qsxh,
                         (参保关系变更查询)       oldest first, at most 100: bgxh, sfzh, bglx,
                                                  zrsf, bgsj)
QueryPremium             a resident's premium     <sfzh>, <nd> -> <premium> (sfzh, xm, nd, jfbz,
                         for a year               <payment>?)
                         (居民缴费查询)
PayPremium               pay a resident's premium <sfzh>, <nd>, <jfrsfzh>, (<gjsf>, <gjje>,
                         (居民医保缴费)           <gjdjid>)? -> <payment>
======================== ======================== ===============================================

A ``<binding>`` holds bdid, sqrsfzh / sqrxm (authorizer), bsqrsfzh / bsqrxm
(beneficiary), gx (the beneficiary's relation to the authorizer), zt (status),
cjsj (created, ``YYYYMMDDHHMMSS`` in UTC), and bsqrcbsf, gjed and gjedye (the
beneficiary's insured province and the quota granted and remaining: see below;
all three empty inside Henan).

QueryFamily is a family screen in one query: ``<sfzh>`` the persons to answer as
QueryPerson does, ``<bdsfzh>`` (绑定查询身份证号) the persons whose bindings to answer as
QueryBindings does, each at least once and at most `MAX_BATCH` times (for only one of
the two, ask QueryPerson or QueryBindings), else ``9999`` 入参校验失败. It answers one
``<ryxx>`` (人员信息) holding the ``<person>`` elements and one ``<bdxx>`` (绑定信息)
holding the ``<binding>`` elements, each present even when empty.

Across provinces (跨省共济, from the 2026 rules' date, 2026-03-01). Bind takes two
more elements: ``<bsqrcbsf>`` (被共济人参保省份), the province a relative insured
outside Henan is insured in, as its six-digit division code like ``cbdq``
(``320000``), and ``<gjed>`` (共济额度), the quota set aside for them, a
``0.00``-style amount. Both are optional; an empty element is the same as none. A
``bsqrcbsf`` that is not a province's code (``[1-9][0-9]0000``) or a ``gjed`` that
is not an amount is input Henan refuses (``9999`` 入参校验失败). The quota leaves
the authorizer's ``grzhye`` at once; ``<gjedye>`` (共济额度余额) in the
``<binding>`` is what is left of it. Refusals: E121 (省内共济不设共济额度) for a
binding inside Henan with a quota (a ``gjed`` without ``bsqrcbsf`` or with
``410000``), or for a relative Henan insures itself named as insured elsewhere; E120
(暂不支持跨省共济) for a relative outside Henan before the rules' date; E115
(共济额度不合法) for one without a ``gjed``, or with one not above zero; E122 for a
quota above the authorizer's balance. Henan's single-binding rule holds only inside
the province and the family commitment (cnsbz) is not asked across provinces.
Either side (the authorizer or the relative) may end such a binding with Unbind;
what is left of the quota returns to the authorizer's account, and ``gjedye``
becomes ``0.00``.

Holds on a quota (共济额度冻结, the 2026 rules): a payment in the relative's province
is made from a quota Henan holds. HoldQuota sets ``<djje>`` (冻结金额, an amount) apart
from the quota of the binding ``<bdid>`` for the payment the caller names ``<ywlsh>``
(业务流水号); ConfirmHold says the payment ``<zflsh>`` (支付流水号, the paying province's
settlement) used ``<zfje>`` (支付金额, ``0.00`` up to all of it), and the rest goes back
to the quota; ReleaseHold gives all of a hold not yet confirmed back; RefundHold gives
back what a confirmed one used, once, when the payment was reversed. Money given back
goes to the quota while the binding is in force, else to the authorizer's ``grzhye``
(the rest of the quota went there when it ended). A ``<hold>`` holds djid (the hold's
id), bdid, sqrsfzh / sqrxm (authorizer), bsqrsfzh / bsqrxm (beneficiary), bsqrcbsf
(the beneficiary's province, six digits as in Bind), djje, zfje (``0.00`` until
confirmed), djzt (status), ywlsh, zflsh (empty until confirmed) and cjsj (created,
``YYYYMMDDHHMMSS`` in UTC). QueryHold lists the holds on the bindings in which one of
the ``<sfzh>`` takes part (either side). Refusals: E112 (无权操作该共济绑定: no binding
across provinces by that bdid; 无权操作该笔冻结: no hold by that djid), E113 (the binding
is not in force: HoldQuota), E115 (冻结金额不合法 / 支付金额不合法: a hold not above zero,
a confirmation below zero or above the hold), E123 (共济额度余额不足: more than the quota
has left), E124 (冻结状态不允许此操作: a hold confirmed or released already, or refunded
before it was confirmed or a second time). A ``djje`` or ``zfje`` that is not an
amount, or an element missing, is ``9999`` 入参校验失败.

Settlement. ``ddjgbm`` is the designated institution's code and ``jglsh`` its
own serial number for the bill (the idempotency key: the same serial from the
same institution is the same settlement); ``hzsfzh`` the patient; ``fyze`` the
total and ``jjzfze`` the pooled fund's share, both ``0.00``-style amounts.
Henan's system must be told who pays by mutual aid: ``sqrsfzh`` names the
patient's bound authorizer (an authorizer no longer bound is refused with E117).
Left out, the system picks the bound authorizer itself (a limitation of the
modelled engine).

A bill paid from a quota held in another province (the patient insured in Henan, the
quota granted and held in the authorizer's province) carries four more elements, all
or none: ``<gjsf>`` (共济省份, that province's six-digit code, not ``410000``),
``<gjrsfzh>`` (the authorizer there), ``<gjje>`` (the amount held there: at most this
much of the self-pay part is paid from it, after the patient's own account) and
``<gjdjid>`` (the hold's id there). Such a bill names no ``<sqrsfzh>``: Henan pays it
from no authorizer of its own and moves no balance but the patient's; reversing it
gives back the patient's part only (the quota's province refunds the hold). Anything
else (one of the four missing, a ``gjsf`` not another province's code, a ``gjje`` not
an amount, a ``sqrsfzh`` besides) is ``9999`` 入参校验失败; a ``gjje`` not above zero
is E115. A ``<settlement>`` holds (national output names in brackets):

=========== ==================================================================
jsid        settlement id (setl_id)
ddjgbm      institution code (fixmedins_code)
hzsfzh/hzxm the patient (certno / psn_name)
yllb        medical type (med_type)
fyze        total (medfee_sumamt)
jjzfze      the pooled fund's share (fund_pay_sumamt)
grfdje      the self-pay part, fyze - jjzfze (psn_part_amt)
grzhzf      paid from the patient's own account (acct_pay)
gjzhzf      paid from the authorizer's account by mutual aid (acct_mulaid_pay)
grxjzf      left for the patient to pay in cash (psn_cash_pay)
zhye        the patient's account balance afterwards, empty without one (balc)
sqrsfzh     the paying authorizer, with sqrxm and sqrzhye (their balance
            afterwards); all empty unless gjzhzf is above zero
gjsf        the paying authorizer's province (six digits) when paid from a quota
            held there, with gjdjid (the hold there); sqrzhye is then empty (an
            account elsewhere); both empty otherwise
jssj        settled, ``YYYYMMDDHHMMSS`` in UTC
cxsj, cxyy  reversed (``YYYYMMDDHHMMSS`` in UTC) and why; empty until reversed
=========== ==================================================================

All amounts are two-decimal strings. A reversal is allowed once, on the day of
the settlement (Beijing time), to the institution that made it; it puts every
balance of Henan's back (not a quota held in another province: see above).

The change feed (参保关系变更, QueryRegistrationChanges): when a person's registration
here moves to another province or ends (the back office's doing), Henan records a
change, numbered in order. ``<qsxh>`` (起始序号: exactly one, ASCII digits, at most 18;
``0`` from the start) asks for the changes after that one, oldest first, at most 100
at once; anything else is ``9999`` 入参校验失败. A ``<change>`` holds bgxh (变更序号,
the change's number), sfzh, bglx (变更类型), zrsf (转入省份: the province moved to, its
six-digit code as in Bind, ``320000``; empty when the registration ended) and bgsj
(changed, ``YYYYMMDDHHMMSS`` in UTC). It is a query: ``<seq>`` is not kept.

Resident premiums (城乡居民医保个人缴费): Henan declares the premium of resident insurance
(城乡居民基本医疗保险, xzlx ``12``) for each year (`PREMIUMS`, illustrative); from the
near-relatives rules' date (2025-01-01) an authorizer's account may pay it for a relative
bound to them (家庭共济). QueryPremium asks for the resident ``<sfzh>``'s premium for the
year ``<nd>`` (年度): a ``<premium>`` holds sfzh, xm, nd and jfbz (缴费标准, the amount
declared; empty when the year's is not declared yet), and a ``<payment>`` inside it
once that year's is paid. PayPremium pays it, once a year, from the account of
``<jfrsfzh>`` (缴费人, actively bound to the resident as their authorizer); or, with
``<gjsf>`` (共济省份: another province's six-digit code, not ``410000``), ``<gjje>``
(the amount held there) and ``<gjdjid>`` (the hold there), all three or none, from a
quota ``<jfrsfzh>`` holds in that province, which must cover the premium (nothing moves
in Henan). A ``<payment>`` holds jfid (缴费ID), sfzh / xm (the resident), nd, jfje
(缴费金额), jfrsfzh / jfrxm (the payer), gjsf and gjdjid (the payer's province and the
hold there; both empty for an account in Henan) and jfsj (paid, ``YYYYMMDDHHMMSS`` in
UTC). ``<sfzh>``, ``<nd>`` and ``<jfrsfzh>`` come exactly once each, and so does each of
the three funding elements when given; ``<nd>`` is four ASCII digits, 2000 to 2100;
anything else (an element missing or repeated, a ``gjsf`` not another province's code, a
``gjje`` not an amount) is ``9999`` 入参校验失败. Refusals: E101 (the resident is not
insured here, or no longer), E125 (非城乡居民: insured as an employee), E126 (no premium
declared for that year: PayPremium), E127 (that year's is paid already), E128 (before
the rules' date, from an account), E117 (缴费人未与参保人绑定家庭共济: the payer is not
the resident's bound authorizer), E129 (the payer's account has less than the premium)
and E115 (共济冻结金额不足以缴费: a held amount not above zero or below the premium).
QueryPremium is a query (``<seq>`` not kept) and answers only E101 and E125.

Codes: xzlx ``11`` 职工基本医疗保险, ``12`` 城乡居民基本医疗保险; cbzt ``1`` 正常参保,
``2`` 暂停缴费, ``3`` 终止参保, ``9`` 未生效; gx ``01`` 配偶, ``02`` 父母, ``03`` 子女,
``04`` 配偶父母, ``05`` 子女配偶, ``06`` 兄弟姐妹, ``07`` (外)祖父母, ``08`` (外)孙子女;
zt ``01`` 待确认, ``02`` 已生效, ``03`` 已拒绝, ``04`` 已解绑; yllb ``11`` 普通门诊,
``21`` 普通住院, ``41`` 定点药店购药; djzt ``01`` 已冻结, ``02`` 已支付 (zfje used, the
rest given back), ``03`` 已解冻, ``04`` 已退回; bglx ``01`` 转出 (moved out to zrsf),
``02`` 终止参保 (ended).
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
import xml.etree.ElementTree as ET  # building only; parsing goes through defusedxml
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, cast

import httpx
from defusedxml import DefusedXmlException  # type: ignore[import-untyped]
from defusedxml.ElementTree import fromstring as _defused_fromstring  # type: ignore[import-untyped]
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from sandbox.app import sandbox_app, system_of
from sandbox.dialect import Dialect, UnknownCall, classified
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

# The resident premium (城乡居民医保个人缴费) Henan declares for each year (illustrative).
PREMIUMS = ((2024, "380.00"), (2025, "400.00"), (2026, "400.00"), (2027, "400.00"))
# The seed era's rules, then each change on its (illustrative) date.
SEED = ProvinceRules(
    prefix="41",
    id_prefix="HN",
    max_relatives=5,
    cross_city=False,
    single_binding=True,
    payer_named=True,
    premiums=PREMIUMS,
)
NEAR = replace(
    SEED,
    effective_from=dt.date(2025, 1, 1),
    allowed_relations=NEAR_RELATIVES,
    premium_payment=True,
)
VERSIONS = (SEED, NEAR, replace(NEAR, effective_from=dt.date(2026, 3, 1), cross_province=True))

PATH = "/hnyb/service"
MEDIA_TYPE = "text/xml; charset=utf-8"

# At most this many ID numbers in one batched query (a legacy system's limit).
MAX_BATCH = 200
MAX_SEQ = 64  # characters of a <seq>

XZLX = {"EMPLOYEE": "11", "RESIDENT": "12"}
CBZT = {"ACTIVE": "1", "SUSPENDED": "2", "TERMINATED": "3", "PENDING": "9"}
GX = {
    "SPOUSE": "01",
    "PARENT": "02",
    "CHILD": "03",
    "PARENT_IN_LAW": "04",
    "CHILD_IN_LAW": "05",
    "SIBLING": "06",
    "GRANDPARENT": "07",
    "GRANDCHILD": "08",
}
GX_RELATION = {v: k for k, v in GX.items()}
ZT = {"PENDING_CONFIRMATION": "01", "ACTIVE": "02", "DECLINED": "03", "UNBOUND": "04"}
YLLB = {"OUTPATIENT": "11", "INPATIENT": "21", "PHARMACY": "41"}
YLLB_TYPE = {v: k for k, v in YLLB.items()}
DJZT = {"HELD": "01", "CONFIRMED": "02", "RELEASED": "03", "REFUNDED": "04"}
BGLX = {"MOVED": "01", "ENDED": "02"}

# An amount as Henan accepts it: yuan with at most two decimals (a sign, so that the
# system itself can refuse a negative amount with E115).
_AMOUNT = re.compile(r"-?[0-9]{1,12}(\.[0-9]{1,2})?")
# A province as Henan names it: its six-digit division code (``320000``).
_PROVINCE = re.compile(r"[1-9][0-9]0000")
# A change's number in a query (``<qsxh>``).
_XH = re.compile(r"[0-9]{1,18}")
# A year (年度, ``<nd>``): four ASCII digits, within `YEARS`.
_ND = re.compile(r"[0-9]{4}")
YEARS = range(2000, 2101)

OK = ("0000", "成功")
FAULT = "9999"

# retcode for each refusal reason, with the message Henan's system sends.
ERRORS: dict[str, tuple[str, str]] = {
    "person_not_found": ("E101", "未查询到该人员参保信息"),
    "info_mismatch": ("E102", "被共济人姓名与身份证号码不一致"),
    "not_employee": ("E103", "授权人非职工基本医疗保险参保人员"),
    "beneficiary_not_insured": ("E104", "被共济人参保状态不是正常参保"),
    "relation_not_allowed": ("E105", "该亲属关系不在共济范围内"),
    "relation_not_verified": ("E106", "亲属关系与户籍信息不符"),
    "cross_area": ("E107", "授权人与被共济人不在同一统筹区"),
    "limit": ("E108", "共济亲属人数已达上限"),
    "already_bound": ("E109", "同一参保人只能同时绑定或被绑定1次"),
    "duplicate": ("E110", "已绑定该亲属,请勿重复提交"),
    "commitment": ("E111", "未签署家庭共济承诺书"),
    "forbidden": ("E112", "无权操作该共济绑定"),
    "bad_state": ("E113", "共济绑定当前状态不允许此操作"),
    # settlement
    "patient_not_insured": ("E114", "患者参保状态不是正常参保,不能结算"),
    "bad_amount": ("E115", "结算金额不合法"),
    "idempotency_conflict": ("E116", "机构流水号已用于另一笔结算"),
    "payer_not_bound": ("E117", "指定的共济授权人未与患者绑定"),
    "already_reversed": ("E118", "该笔结算已撤销"),
    "reversal_window": ("E119", "仅可撤销当日结算"),
    # across provinces (the 2026 rules)
    "cross_province": ("E120", "暂不支持跨省共济"),
    "quota_not_allowed": ("E121", "省内共济不设共济额度"),
    "quota_above_balance": ("E122", "共济额度超过个人账户余额"),
    # holds on a quota (the 2026 rules)
    "quota_insufficient": ("E123", "共济额度余额不足"),
    "bad_hold_state": ("E124", "冻结状态不允许此操作"),
    # resident premiums (城乡居民医保个人缴费)
    "not_resident": ("E125", "非城乡居民基本医疗保险参保人员"),
    "premium_not_declared": ("E126", "该年度居民医保缴费标准未公布"),
    "premium_paid": ("E127", "该年度居民医保已缴费"),
    "premium_not_allowed": ("E128", "暂不支持个人账户为家庭成员缴费"),
    "balance_insufficient": ("E129", "个人账户余额不足"),
}

# Where a service words a shared reason its own way.
_MESSAGES: dict[tuple[str, str], str] = {
    ("ReverseSettle", "forbidden"): "无权撤销该笔结算",
    ("Bind", "bad_amount"): "共济额度不合法",
    ("HoldQuota", "bad_amount"): "冻结金额不合法",
    ("ConfirmHold", "bad_amount"): "支付金额不合法",
    ("ConfirmHold", "forbidden"): "无权操作该笔冻结",
    ("ReleaseHold", "forbidden"): "无权操作该笔冻结",
    ("RefundHold", "forbidden"): "无权操作该笔冻结",
    ("PayPremium", "payer_not_bound"): "缴费人未与参保人绑定家庭共济",
    ("PayPremium", "bad_amount"): "共济冻结金额不足以缴费",
}


class _BadInput(Exception):
    """The request is well-formed XML but not a valid call (answered with 9999)."""


def roster() -> dict[str, Any]:
    """The people this province is seeded with (and the conformance scenarios staged
    with, `conformance.people`): the shared roster, and a family beyond the cap of 5 and
    a lapsed patient it lacks here."""
    family = scenario_family("hn_scenario", "410100", "河南省郑州市", relatives=6)
    return with_people(load_roster(), family)


_people = roster  # (create_app's argument of that name hides it there)


def create_app(
    *,
    data_dir: Path | None = None,
    roster: dict[str, Any] | None = None,
    policy_date: dt.date | None = None,
) -> Starlette:
    return sandbox_app(
        "henan",
        VERSIONS,
        [Route(PATH, service, methods=["POST"])],
        data_dir=data_dir,
        roster=_people() if roster is None else roster,
        policy_date=policy_date,
    )


def _parse(data: bytes) -> ET.Element:
    """Parse untrusted XML with defusedxml (never the stdlib parser directly)."""
    return cast(ET.Element, _defused_fromstring(data))


async def service(request: Request) -> Response:
    try:
        root = _parse(await request.body())
    except (ET.ParseError, DefusedXmlException, ValueError, LookupError):
        return _answer("", FAULT, "报文格式错误")
    if root.tag != "request":
        return _answer("", FAULT, "报文格式错误")
    seq = (root.findtext("head/seq") or "").strip()
    name = (root.findtext("head/service") or "").strip()
    body = root.find("body")
    handler = _HANDLERS.get(name)
    if handler is None:
        return _answer(seq, FAULT, f"服务{name or '(空)'}不存在")
    if body is None:
        return _answer(seq, FAULT, "报文缺少body节点")
    if len(seq) > MAX_SEQ:
        return _answer("", FAULT, "流水号不合法")
    try:
        children = await handler(system_of(request), body, seq or None)
    except SandboxRefusal as refusal:
        code, message = ERRORS[refusal.reason]
        return _answer(seq, code, _MESSAGES.get((name, refusal.reason), message))
    except RequestIdReused:
        return _answer(seq, FAULT, "流水号重复")
    except (_BadInput, KeyError, TypeError, ValueError):
        return _answer(seq, FAULT, "入参校验失败")
    return _answer(seq, *OK, children)


def _answer(
    seq: str, retcode: str, retmsg: str, children: list[ET.Element] | None = None
) -> Response:
    root = ET.Element("response")
    head = ET.SubElement(root, "head")
    ET.SubElement(head, "retcode").text = retcode
    ET.SubElement(head, "retmsg").text = retmsg
    ET.SubElement(head, "seq").text = seq
    ET.SubElement(head, "jylsh").text = f"41{dt.datetime.now():%Y%m%d%H%M%S}{uuid.uuid4().hex[:8]}"
    body = ET.SubElement(root, "body")
    body.extend(children or [])
    return Response(
        ET.tostring(root, encoding="utf-8", xml_declaration=True), media_type=MEDIA_TYPE
    )


# -- reading and writing elements ------------------------------------------------


def _required(parent: ET.Element, tag: str) -> str:
    value = parent.findtext(tag)
    if value is None or not value.strip():
        raise _BadInput(f"missing <{tag}>")
    return value.strip()


def _optional(parent: ET.Element, tag: str) -> str:
    return (parent.findtext(tag) or "").strip()


def _cert_nos(body: ET.Element, tag: str = "sfzh") -> list[str]:
    cert_nos = [(el.text or "").strip() for el in body.findall(tag)]
    if not cert_nos or len(cert_nos) > MAX_BATCH or not all(cert_nos):
        raise _BadInput(f"{tag} list")
    return cert_nos


def _element(tag: str, fields: dict[str, str | None]) -> ET.Element:
    element = ET.Element(tag)
    for name, value in fields.items():
        ET.SubElement(element, name).text = value or None
    return element


def _compact_date(value: str | None) -> str:
    return value.replace("-", "") if value else ""


def _compact_time(value: str | None) -> str | None:
    """An ISO timestamp as Henan writes it: ``YYYYMMDDHHMMSS`` in UTC."""
    if value is None:
        return None
    return f"{dt.datetime.fromisoformat(value).astimezone(dt.UTC):%Y%m%d%H%M%S}"


def _amount(parent: ET.Element, tag: str) -> str:
    value = _required(parent, tag)
    if not _AMOUNT.fullmatch(value):
        raise _BadInput(f"<{tag}> is not an amount")
    return value


def _optional_amount(parent: ET.Element, tag: str) -> str | None:
    """An amount that may be left out (absent or empty: None)."""
    return _amount(parent, tag) if _optional(parent, tag) else None


def _province(parent: ET.Element, tag: str) -> str | None:
    """A province's six-digit division code as its two-digit prefix (absent or empty: None)."""
    value = _optional(parent, tag)
    if not value:
        return None
    if not _PROVINCE.fullmatch(value):
        raise _BadInput(f"<{tag}> is not a province's code")
    return value[:2]


# -- services ------------------------------------------------------------------------


async def _query_person(
    system: ProvinceSystem, body: ET.Element, seq: str | None
) -> list[ET.Element]:
    return await _persons(system, _cert_nos(body))


async def _persons(system: ProvinceSystem, cert_nos: list[str]) -> list[ET.Element]:
    """A ``<person>`` for each of ``cert_nos`` Henan insures."""
    persons = await system.persons(cert_nos)
    return [
        _element(
            "person",
            {
                "grbh": f"41{p['cert_no'][-10:]}",
                "xm": p["name"],
                "sfzh": p["cert_no"],
                "xb": {"M": "1", "F": "2"}.get(p["gender"] or "", "9"),
                "csrq": _compact_date(p["birth_date"]),
                "lxdh": p["phone"],
                "cbdq": p["area_code"],
                "cbdqmc": p["area_name"],
                "xzlx": XZLX[p["insurance_type"]],
                "cbzt": CBZT[p["insurance_status"]],
                "grzhye": money_text(p["balance"]),
            },
        )
        for p in persons
    ]


async def _query_relatives(
    system: ProvinceSystem, body: ET.Element, seq: str | None
) -> list[ET.Element]:
    rows = await system.relatives(_required(body, "sfzh"))
    return [
        _element("relative", {"sfzh": r["cert_no"], "xm": r["name"], "gx": GX[r["relation"]]})
        for r in rows
    ]


def _binding(row: dict[str, Any]) -> ET.Element:
    created = dt.datetime.fromisoformat(row["created_at"])
    province = row["beneficiary_province"]
    return _element(
        "binding",
        {
            "bdid": row["id"],
            "sqrsfzh": row["authorizer"],
            "sqrxm": row["authorizer_name"],
            "bsqrsfzh": row["beneficiary"],
            "bsqrxm": row["beneficiary_name"],
            "gx": GX[row["relation"]],
            "zt": ZT[row["status"]],
            "cjsj": f"{created.astimezone(dt.UTC):%Y%m%d%H%M%S}",
            "bsqrcbsf": None if province is None else f"{province}0000",
            "gjed": money_text(row["quota_granted"]),
            "gjedye": money_text(row["quota_remaining"]),
        },
    )


async def _query_bindings(
    system: ProvinceSystem, body: ET.Element, seq: str | None
) -> list[ET.Element]:
    return await _bindings(system, _cert_nos(body))


async def _bindings(system: ProvinceSystem, cert_nos: list[str]) -> list[ET.Element]:
    """A ``<binding>`` for each binding in which one of ``cert_nos`` takes part."""
    rows = await system.bindings_of(cert_nos)
    return [_binding(r) for r in rows]


async def _query_family(
    system: ProvinceSystem, body: ET.Element, seq: str | None
) -> list[ET.Element]:
    """QueryPerson's answer for the ``<sfzh>`` in ``<ryxx>`` and QueryBindings' for the
    ``<bdsfzh>`` in ``<bdxx>``: a family screen in one call."""
    cert_nos, bound = _cert_nos(body), _cert_nos(body, "bdsfzh")
    persons = ET.Element("ryxx")
    persons.extend(await _persons(system, cert_nos))
    bindings = ET.Element("bdxx")
    bindings.extend(await _bindings(system, bound))
    return [persons, bindings]


async def _bind(system: ProvinceSystem, body: ET.Element, seq: str | None) -> list[ET.Element]:
    authorizer = _required(body, "sqrsfzh")
    beneficiary = _required(body, "bsqrsfzh")
    beneficiary_name = _required(body, "bsqrxm")
    province = _province(body, "bsqrcbsf")
    quota = _optional_amount(body, "gjed")
    relation = GX_RELATION.get(_optional(body, "gx"))
    if relation is None:
        raise SandboxRefusal("relation_not_allowed", "relation")
    row = await system.bind(
        authorizer=authorizer,
        beneficiary=beneficiary,
        beneficiary_name=beneficiary_name,
        relation=relation,
        commitment_signed=_optional(body, "cnsbz") == "1",
        quota=quota,
        beneficiary_province=province,
        request_id=seq,
    )
    return [_binding(row)]


async def _unbind(system: ProvinceSystem, body: ET.Element, seq: str | None) -> list[ET.Element]:
    row = await system.unbind(
        _required(body, "bdid"), actor=_required(body, "czrsfzh"), request_id=seq
    )
    return [_binding(row)]


def _settlement(row: dict[str, Any]) -> ET.Element:
    return _element(
        "settlement",
        {
            "jsid": row["id"],
            "ddjgbm": row["institution"],
            "hzsfzh": row["patient"],
            "hzxm": row["patient_name"],
            "yllb": YLLB[row["medical_type"]],
            "fyze": money_text(row["total"]),
            "jjzfze": money_text(row["fund_paid"]),
            "grfdje": money_text(row["self_pay"]),
            "grzhzf": money_text(row["own_account_paid"]),
            "gjzhzf": money_text(row["mutual_aid_paid"]),
            "grxjzf": money_text(row["cash_due"]),
            "zhye": money_text(row["patient_balance"]),
            "sqrsfzh": row["payer"],
            "sqrxm": row["payer_name"],
            "sqrzhye": money_text(row["payer_balance"]),
            "gjsf": None if row["payer_province"] is None else f"{row['payer_province']}0000",
            "gjdjid": row["funding_hold"],
            "jssj": _compact_time(row["settled_at"]),
            "cxsj": _compact_time(row["reversed_at"]),
            "cxyy": row["reversal_reason"],
        },
    )


async def _settle(system: ProvinceSystem, body: ET.Element, seq: str | None) -> list[ET.Element]:
    medical_type = YLLB_TYPE.get(_required(body, "yllb"))
    if medical_type is None:
        raise _BadInput("yllb")
    row = await system.settle(
        institution=_required(body, "ddjgbm"),
        idempotency_key=_required(body, "jglsh"),
        patient=_required(body, "hzsfzh"),
        medical_type=medical_type,
        total=_amount(body, "fyze"),
        fund_paid=_amount(body, "jjzfze"),
        payer=_optional(body, "sqrsfzh") or None,
        request_id=seq,
        funding=_funding(body),
    )
    return [_settlement(row)]


_FUNDING = ("gjsf", "gjrsfzh", "gjje", "gjdjid")


def _funding(body: ET.Element) -> Funding | None:
    """A bill paid from a quota held in another province: all four of `_FUNDING`, and
    no ``<sqrsfzh>`` (no payer of Henan's own); None when none of them is given."""
    if not any(_optional(body, tag) for tag in _FUNDING):
        return None
    province = _province(body, "gjsf")
    if province is None or province == SEED.prefix:
        raise _BadInput("<gjsf> is not another province's code")
    if _optional(body, "sqrsfzh"):
        raise _BadInput("<sqrsfzh> with a quota held in another province")
    return {
        "province": province,
        "payer": _required(body, "gjrsfzh"),
        "amount": _amount(body, "gjje"),
        "hold": _required(body, "gjdjid"),
    }


async def _reverse_settle(
    system: ProvinceSystem, body: ET.Element, seq: str | None
) -> list[ET.Element]:
    row = await system.reverse(
        _required(body, "jsid"),
        institution=_required(body, "ddjgbm"),
        reason=_required(body, "cxyy"),
        request_id=seq,
    )
    return [_settlement(row)]


async def _query_settle(
    system: ProvinceSystem, body: ET.Element, seq: str | None
) -> list[ET.Element]:
    rows = await system.settlements_of(_cert_nos(body))
    return [_settlement(r) for r in rows]


def _hold(row: dict[str, Any]) -> ET.Element:
    return _element(
        "hold",
        {
            "djid": row["id"],
            "bdid": row["binding_id"],
            "sqrsfzh": row["authorizer"],
            "sqrxm": row["authorizer_name"],
            "bsqrsfzh": row["beneficiary"],
            "bsqrxm": row["beneficiary_name"],
            "bsqrcbsf": f"{row['beneficiary_province']}0000",
            "djje": money_text(row["amount"]),
            "zfje": money_text(row["used"]),
            "djzt": DJZT[row["status"]],
            "ywlsh": row["reference"],
            "zflsh": row["payment_ref"],
            "cjsj": _compact_time(row["created_at"]),
        },
    )


async def _hold_quota(
    system: ProvinceSystem, body: ET.Element, seq: str | None
) -> list[ET.Element]:
    row = await system.hold(
        _required(body, "bdid"),
        amount=_amount(body, "djje"),
        reference=_required(body, "ywlsh"),
        request_id=seq,
    )
    return [_hold(row)]


async def _confirm_hold(
    system: ProvinceSystem, body: ET.Element, seq: str | None
) -> list[ET.Element]:
    row = await system.confirm_hold(
        _required(body, "djid"),
        used=_amount(body, "zfje"),
        payment_ref=_required(body, "zflsh"),
        request_id=seq,
    )
    return [_hold(row)]


async def _release_hold(
    system: ProvinceSystem, body: ET.Element, seq: str | None
) -> list[ET.Element]:
    return [_hold(await system.release_hold(_required(body, "djid"), request_id=seq))]


async def _refund_hold(
    system: ProvinceSystem, body: ET.Element, seq: str | None
) -> list[ET.Element]:
    return [_hold(await system.refund_hold(_required(body, "djid"), request_id=seq))]


async def _query_hold(
    system: ProvinceSystem, body: ET.Element, seq: str | None
) -> list[ET.Element]:
    rows = await system.holds_of(_cert_nos(body))
    return [_hold(r) for r in rows]


async def _query_registration_changes(
    system: ProvinceSystem, body: ET.Element, seq: str | None
) -> list[ET.Element]:
    given = body.findall("qsxh")
    after = _required(body, "qsxh")
    if len(given) != 1 or not _XH.fullmatch(after):
        raise _BadInput("<qsxh> is not one number of a change")
    return [
        _element(
            "change",
            {
                "bgxh": str(r["seq"]),
                "sfzh": r["cert_no"],
                "bglx": BGLX[r["kind"]],
                "zrsf": None if r["to_province"] is None else f"{r['to_province']}0000",
                "bgsj": _compact_time(r["at"]),
            },
        )
        for r in await system.changes(int(after))
    ]


# -- resident premiums (城乡居民医保个人缴费) ----------------------------------------


def _one(body: ET.Element, tag: str) -> str:
    """The text of exactly one, non-empty ``<tag>``."""
    if len(body.findall(tag)) != 1:
        raise _BadInput(f"not exactly one <{tag}>")
    return _required(body, tag)


def _year(body: ET.Element) -> int:
    """``<nd>`` (年度): exactly one, four ASCII digits, within `YEARS`."""
    value = _one(body, "nd")
    if not _ND.fullmatch(value) or int(value) not in YEARS:
        raise _BadInput("<nd> is not a year")
    return int(value)


def _payment(row: dict[str, Any]) -> ET.Element:
    province = row["payer_province"]
    return _element(
        "payment",
        {
            "jfid": row["id"],
            "sfzh": row["beneficiary"],
            "xm": row["beneficiary_name"],
            "nd": str(row["year"]),
            "jfje": money_text(row["amount"]),
            "jfrsfzh": row["payer"],
            "jfrxm": row["payer_name"],
            "gjsf": None if province is None else f"{province}0000",
            "gjdjid": row["funding_hold"],
            "jfsj": _compact_time(row["paid_at"]),
        },
    )


async def _query_premium(
    system: ProvinceSystem, body: ET.Element, seq: str | None
) -> list[ET.Element]:
    found = await system.premium(_one(body, "sfzh"), _year(body))
    premium = _element(
        "premium",
        {
            "sfzh": found["cert_no"],
            "xm": found["name"],
            "nd": str(found["year"]),
            "jfbz": money_text(found["amount"]),
        },
    )
    if found["payment"] is not None:
        premium.append(_payment(found["payment"]))
    return [premium]


_PREMIUM_FUNDING = ("gjsf", "gjje", "gjdjid")


async def _pay_premium(
    system: ProvinceSystem, body: ET.Element, seq: str | None
) -> list[ET.Element]:
    beneficiary, year, payer = _one(body, "sfzh"), _year(body), _one(body, "jfrsfzh")
    funding: Funding | None = None
    if any(_optional(body, tag) for tag in _PREMIUM_FUNDING):  # a quota held elsewhere
        for tag in _PREMIUM_FUNDING:
            if len(body.findall(tag)) != 1:
                raise _BadInput(f"not exactly one <{tag}>")
        province = _province(body, "gjsf")
        if province is None or province == SEED.prefix:
            raise _BadInput("<gjsf> is not another province's code")
        funding = {
            "province": province,
            "payer": payer,
            "amount": _amount(body, "gjje"),
            "hold": _required(body, "gjdjid"),
        }
    row = await system.pay_premium(
        beneficiary=beneficiary, year=year, payer=payer, funding=funding, request_id=seq
    )
    return [_payment(row)]


_Handler = Callable[[ProvinceSystem, ET.Element, str | None], Awaitable[list[ET.Element]]]

# Which services write (kept under their seq) and which read: `DIALECT`
READ_CALLS = frozenset(
    {
        "QueryPerson",
        "QueryRelatives",
        "QueryBindings",
        "QueryFamily",
        "QuerySettle",
        "QueryHold",
        "QueryRegistrationChanges",
        "QueryPremium",
    }
)
WRITE_CALLS = frozenset(
    {
        "Bind",
        "Unbind",
        "Settle",
        "ReverseSettle",
        "HoldQuota",
        "ConfirmHold",
        "ReleaseHold",
        "RefundHold",
        "PayPremium",
    }
)


def _envelope(request: httpx.Request) -> ET.Element:
    if request.method != "POST" or request.url.path != PATH:
        raise UnknownCall(f"Henan: {request.method} {request.url.path} is no call of Henan's")
    try:
        return _parse(request.content)
    except (ET.ParseError, DefusedXmlException, ValueError, LookupError) as exc:
        raise UnknownCall(f"Henan: a call that is not its XML ({exc})") from None


def _is_write(request: httpx.Request) -> bool:
    service = (_envelope(request).findtext("head/service") or "").strip()
    return classified(service, READ_CALLS, WRITE_CALLS, "Henan")


def _request_id(request: httpx.Request) -> str | None:
    return (_envelope(request).findtext("head/seq") or "").strip() or None


DIALECT = Dialect(is_write=_is_write, request_id=_request_id)

_HANDLERS: dict[str, _Handler] = {
    "QueryPerson": _query_person,
    "QueryRelatives": _query_relatives,
    "QueryBindings": _query_bindings,
    "QueryFamily": _query_family,
    "Bind": _bind,
    "Unbind": _unbind,
    "Settle": _settle,
    "ReverseSettle": _reverse_settle,
    "QuerySettle": _query_settle,
    "HoldQuota": _hold_quota,
    "ConfirmHold": _confirm_hold,
    "ReleaseHold": _release_hold,
    "RefundHold": _refund_hold,
    "QueryHold": _query_hold,
    "QueryRegistrationChanges": _query_registration_changes,
    "QueryPremium": _query_premium,
    "PayPremium": _pay_premium,
}

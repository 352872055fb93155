"""Hebei (河北): a national-platform style envelope (``infno`` / ``infcode`` / ``output``).

Transactions used (see `sandbox.hebei` for their inputs and outputs):

====== ===================================== ==========================================
infno  what                                  adapter method
====== ===================================== ==========================================
1101   person info, batched                  `find_persons`, `read_family` (below)
2701   civil-record relatives                `relatives`
2702   mutual-aid bindings of persons        `bindings_of`
2703   create a binding                      `bind`
2704   end a binding                         `unbind`
2207   settle a bill (门诊/住院结算)         `settle`
2208   reverse a settlement (结算撤销)       `reverse`
5203   settlements of persons (结算信息查询) `settlements_of`
2711   hold on a quota (共济额度冻结)        `hold_quota`
2712   confirm a hold (冻结转支付)           `confirm_hold`
2713   release a hold (解冻)                 `release_hold`
2714   refund a hold (支付退回)              `refund_hold`
2715   holds of persons (冻结信息查询)       `holds_of`
2501   a resident's premium (居民缴费查询)   `premium_of`
2502   pay a resident's premium (居民缴费)   `pay_premium`
1901   registration changes (参保关系变更)   `registration_changes`
====== ===================================== ==========================================

Answers: ``infcode`` 0 is success, a positive one a business refusal (`_REFUSALS`),
-1 a fault. A -1 whose ``err_msg`` says the request is malformed (报文格式错误: not
JSON of the envelope's shape; 入参校验失败: a field Hebei refuses, such as text with a
control character) means Hebei did nothing with it; so does HTTP 400 or 413 (from
Hebei or a proxy in front of it). Those are `UpstreamContractError` with ``reached``
False: sent again, the same request is refused again, so the gateway does not keep
sending it. Any other -1 (报文ID重复, an unknown ``infno``) or anything else we cannot
read is `UpstreamContractError`, its outcome unknown.

A family screen (`read_family`) is one 1101 whose ``input.data`` is an object,
``{"psn_list": [...as find_persons sends], "mulaid_certno_list": [...]}``: it answers
``psn_list`` as 1101 does and ``mulaid_list`` as 2702 does, each read as those reads
read them (both required). With only one of the two lists, `read_family` sends that
read alone; with neither, nothing.

Hebei's system picks the paying authorizer itself, so `settle` names none. The
institution's idempotency key travels as ``medins_setl_id`` (医药机构结算ID).
Settlement times are Beijing time.

``msgid`` names the message. A write's is its request id (`BindRequest.request_id`,
`SettleRequest.request_id`, the ``request_id`` keyword; a new one when None): Hebei
keeps it with its answer and answers it again, unchanged, when the same write is
sent again. Queries get a new ``msgid`` each and are retried (``read=True``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from typing import Any, TypeVar

from adapters.base import (
    NEAR_RELATIVES,
    Area,
    Binding,
    BindingStatus,
    BindRequest,
    ChangeKind,
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

T = TypeVar("T")

_PATH = "/fsi/api/rsfComIfsService/callService"
_FAULT = -1
# The words of a fault that says the request could not be read (nothing was done).
_UNREAD = ("报文格式错误", "入参校验失败")

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
    2014: RefusalCode.PATIENT_NOT_INSURED,
    2015: RefusalCode.AMOUNT_NOT_POSITIVE,
    2016: RefusalCode.IDEMPOTENCY_KEY_REUSED,
    2017: RefusalCode.NOT_BOUND,  # a premium's payer (a bill never names one here)
    2018: RefusalCode.SETTLEMENT_ALREADY_REVERSED,
    2019: RefusalCode.REVERSAL_WINDOW_CLOSED,
    2020: RefusalCode.CROSS_PROVINCE_NOT_ALLOWED,
    2021: RefusalCode.QUOTA_NOT_ALLOWED,
    2022: RefusalCode.QUOTA_ABOVE_BALANCE,
    2023: RefusalCode.QUOTA_INSUFFICIENT,
    2024: RefusalCode.INVALID_HOLD_STATE,
    2025: RefusalCode.NOT_RESIDENT_INSURED,
    2026: RefusalCode.PREMIUM_NOT_DECLARED,
    2027: RefusalCode.PREMIUM_ALREADY_PAID,
    2028: RefusalCode.PREMIUM_PAYMENT_NOT_ALLOWED,
    2029: RefusalCode.BALANCE_INSUFFICIENT,
}
_MED_TYPE = {
    MedicalType.OUTPATIENT: "11",  # 普通门诊
    MedicalType.INPATIENT: "21",  # 普通住院
    MedicalType.PHARMACY: "41",  # 定点药店购药
}
_MEDICAL_TYPE = {v: k for k, v in _MED_TYPE.items()}
# Settlement times are Beijing time, as the national platform keeps them.
_CHINA = dt.timezone(dt.timedelta(hours=8), "Asia/Shanghai")

# The seed era's rules, then each change on its (illustrative) date: near relatives
# (2024), then relatives insured in other provinces, with a quota (2026).
_SEED = Policy(effective_from=dt.date(2023, 1, 1), max_relatives=8, cross_city=True)
_NEAR = _SEED.with_changes(
    effective_from=dt.date(2024, 10, 1), allowed_relations=NEAR_RELATIVES, premium_payment=True
)
_ACROSS = _NEAR.with_changes(effective_from=dt.date(2026, 2, 1), cross_province=True)


class HebeiAdapter(ProvinceAdapter):
    code = "13"
    name = "河北省"
    policies = (_SEED, _NEAR, _ACROSS)

    async def _service(
        self, infno: str, data: Any, *, read: bool = False, msgid: str | None = None
    ) -> tuple[int, dict[str, Any]]:
        """Send one transaction; returns ``(infcode, output)`` for business answers.

        ``msgid``: a write's request id (a new one for a query).
        """
        body = {
            "infno": infno,
            "msgid": msgid or new_request_id(),
            "inf_time": f"{dt.datetime.now():%Y-%m-%d %H:%M:%S}",
            "infver": "V1.0",
            "input": {"data": data},
        }
        response = await self._call("POST", _PATH, read=read, json=body)
        what = f"infno {infno}"
        with self._reading(what):
            self._refuse_unread(what, response)
            answer = response.json()
            infcode = int(answer["infcode"])
            if infcode < 0:
                message = answer.get("err_msg")
                fault = f"{what}: infcode {infcode} {message}"
                unread = isinstance(message, str) and any(w in message for w in _UNREAD)
                if infcode == _FAULT and unread:
                    raise self._unread(fault)
                raise self._contract_error(fault)
            output = answer["output"]
            if not isinstance(output, dict):
                raise TypeError("output is not an object")
        return infcode, output

    async def _ok(self, infno: str, data: Any) -> dict[str, Any]:
        """A query: it changes nothing, so it may be retried; any refusal is a surprise."""
        infcode, output = await self._service(infno, data, read=True)
        if infcode != 0:
            raise self._contract_error(f"infno {infno}: unexpected infcode {infcode}")
        return output

    async def _write(
        self,
        infno: str,
        data: Any,
        parse: Callable[[dict[str, Any]], T],
        request_id: str | None,
    ) -> T | Refusal:
        """A write, sent once under its request id (a new one when None), that may be
        refused; ``parse`` reads its output otherwise."""
        infcode, output = await self._service(infno, data, msgid=request_id or new_request_id())
        return self._answer(infno, infcode, output, parse)

    def _answer(
        self, infno: str, infcode: int, output: dict[str, Any], parse: Callable[[Any], T]
    ) -> T | Refusal:
        """A business answer: a refusal (`_REFUSALS`; another code is a surprise), or
        the output as ``parse`` reads it."""
        if infcode != 0:
            refused = _REFUSALS.get(infcode)
            if refused is None:
                raise self._contract_error(f"infno {infno}: unknown infcode {infcode}")
            return Refusal(refused)
        with self._reading(f"infno {infno}"):
            return parse(output)

    async def find_persons(self, cert_nos: Sequence[str]) -> Mapping[str, Person]:
        if not cert_nos:
            return {}
        output = await self._ok("1101", _psn_query(cert_nos))
        with self._reading("infno 1101"):
            return _psn_list(output)

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
            return _mulaid_list(output)

    async def read_family(self, cert_nos: Sequence[str], bound: Sequence[str]) -> FamilyRead:
        """One 1101 asking for ``cert_nos`` and for the bindings of ``bound`` together."""
        if not cert_nos or not bound:  # one read at most (none for two empty lists)
            return FamilyRead(await self.find_persons(cert_nos), await self.bindings_of(bound))
        data = {"psn_list": _psn_query(cert_nos), "mulaid_certno_list": list(bound)}
        output = await self._ok("1101", data)
        with self._reading("infno 1101"):
            return FamilyRead(_psn_list(output), _mulaid_list(output))

    async def bind(self, request: BindRequest) -> Binding | Refusal:
        data = {
            "auth_certno": request.authorizer_cert_no,
            "bene_certno": request.beneficiary_cert_no,
            "bene_psn_name": request.beneficiary_name,
            "rlts_type": _RLTS_TYPE[request.relation],
            "cmtm_flag": "1" if request.commitment_signed else "0",
        }
        if request.beneficiary_province is not None:  # across provinces, with a quota
            data["bene_insu_prov"] = f"{request.beneficiary_province}0000"
        if request.quota is not None:
            data["quota_amt"] = _amount(request.quota)
        return await self._write("2703", data, _mulaid, request.request_id)

    async def unbind(
        self, binding_id: str, *, actor: str, request_id: str | None = None
    ) -> Binding | Refusal:
        return await self._write(
            "2704", {"mulaid_id": binding_id, "opter_certno": actor}, _mulaid, request_id
        )

    async def settle(self, request: SettleRequest) -> Settlement | Refusal:
        data = {
            "psn_cert_type": "01",
            "certno": request.patient_cert_no,
            "med_type": _MED_TYPE[request.medical_type],
            "medfee_sumamt": _amount(request.total),
            "fund_pay_sumamt": _amount(request.fund_paid),
            "fixmedins_code": request.institution_code,
            "medins_setl_id": request.idempotency_key,
        }
        funding = request.funding
        if funding is not None:  # from a quota another province holds
            data["mulaid_prov"] = f"{funding.province}0000"
            data["mulaid_certno"] = funding.payer
            data["mulaid_amt"] = _amount(funding.amount)
            data["mulaid_frz_id"] = funding.hold_id
        return await self._write("2207", data, _setlinfo, request.request_id)

    async def hold_quota(
        self, binding_id: str, *, amount: Decimal, reference: str, request_id: str | None = None
    ) -> QuotaHold | Refusal:
        data = {"mulaid_id": binding_id, "frz_amt": _amount(amount), "biz_ref": reference}
        return await self._write("2711", data, _frzinfo, request_id)

    async def confirm_hold(
        self, hold_id: str, *, used: Decimal, payment_ref: str, request_id: str | None = None
    ) -> QuotaHold | Refusal:
        data = {"frz_id": hold_id, "pay_amt": _amount(used), "setl_ref": payment_ref}
        return await self._write("2712", data, _frzinfo, request_id)

    async def release_hold(
        self, hold_id: str, *, request_id: str | None = None
    ) -> QuotaHold | Refusal:
        return await self._write("2713", {"frz_id": hold_id}, _frzinfo, request_id)

    async def refund_hold(
        self, hold_id: str, *, request_id: str | None = None
    ) -> QuotaHold | Refusal:
        return await self._write("2714", {"frz_id": hold_id}, _frzinfo, request_id)

    async def premium_of(self, cert_no: str, year: int) -> Premium | Refusal:
        infcode, output = await self._service("2501", {"certno": cert_no, "year": year}, read=True)
        return self._answer("2501", infcode, output, _premium)

    async def pay_premium(self, request: PremiumRequest) -> PremiumPayment | Refusal:
        data: dict[str, Any] = {
            "certno": request.beneficiary_cert_no,
            "year": request.year,
            "payer_certno": request.payer_cert_no,
        }
        funding = request.funding
        if funding is not None:  # from a quota another province holds
            data["mulaid_prov"] = f"{funding.province}0000"
            data["mulaid_amt"] = _amount(funding.amount)
            data["mulaid_frz_id"] = funding.hold_id
        return await self._write(
            "2502", data, lambda output: _payment(output["prem_pay"]), request.request_id
        )

    async def registration_changes(self, after: int) -> Sequence[RegistrationChange]:
        output = await self._ok("1901", {"begn_seq": after})
        with self._reading("infno 1901"):
            return [
                RegistrationChange(
                    seq=int(c["chg_seq"]),
                    cert_no=text(c["certno"]),
                    kind=_CHG_TYPE[c["chg_type"]],
                    to_province=_province(c["to_admdvs"]),
                    at=_beijing(c["chg_time"]),
                )
                for c in output["chg_list"]
            ]

    async def holds_of(self, cert_nos: Sequence[str]) -> Sequence[QuotaHold]:
        if not cert_nos:
            return []
        output = await self._ok("2715", {"certno_list": list(cert_nos)})
        with self._reading("infno 2715"):
            return [_hold(h) for h in output["frzinfo_list"]]

    async def reverse(
        self,
        settlement_id: str,
        *,
        institution_code: str,
        reason: str,
        request_id: str | None = None,
    ) -> Settlement | Refusal:
        return await self._write(
            "2208",
            {"setl_id": settlement_id, "fixmedins_code": institution_code, "revs_rea": reason},
            _setlinfo,
            request_id,
        )

    async def settlements_of(self, cert_nos: Sequence[str]) -> Sequence[Settlement]:
        if not cert_nos:
            return []
        output = await self._ok("5203", {"certno_list": list(cert_nos)})
        with self._reading("infno 5203"):
            return [_settlement(s) for s in output["setlinfo_list"]]


def _psn_query(cert_nos: Sequence[str]) -> list[dict[str, str]]:
    """1101's input for ``cert_nos`` (ID cards)."""
    return [{"psn_cert_type": "01", "certno": c} for c in cert_nos]


def _psn_list(output: dict[str, Any]) -> dict[str, Person]:
    """1101's ``psn_list``: the persons Hebei insures among those asked, by ID number."""
    found: dict[str, Person] = {}
    for item in _list(output["psn_list"]):
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


def _mulaid_list(output: dict[str, Any]) -> list[Binding]:
    """2702's ``mulaid_list`` (and a family screen's 1101's)."""
    return [_binding(b) for b in _list(output["mulaid_list"])]


def _list(value: object) -> list[Any]:
    if not isinstance(value, list):
        raise TypeError(f"not a list: {value!r}")
    return value


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
        beneficiary_province=_province(raw.get("bene_insu_prov")),
        quota=_quota(raw.get("quota_amt"), raw.get("quota_balc")),
    )


def _province(admdvs: object) -> str | None:
    """A province's six-digit division code (``"320000"``) as its prefix (``"32"``)."""
    if admdvs is None:
        return None
    code = text(admdvs)
    if len(code) != 6 or not code.isascii() or not code.isdigit() or code[2:] != "0000":
        raise ValueError(f"not a province's division code: {code!r}")
    return code[:2]


def _quota(granted: object, remaining: object) -> Quota | None:
    if granted is None and remaining is None:
        return None
    return Quota(parse_money(granted), parse_money(remaining))


def _mulaid(output: dict[str, Any]) -> Binding:
    return _binding(output["mulaid"])


def _amount(amount: Decimal) -> str:
    """An amount as the platform takes it: two decimals (the gateway allows no more)."""
    return f"{amount:.2f}"


def _beijing(stamp: object) -> dt.datetime:
    return dt.datetime.strptime(text(stamp), "%Y-%m-%d %H:%M:%S").replace(tzinfo=_CHINA)


def _premium(output: dict[str, Any]) -> Premium:
    raw = output["prem"]
    amount = raw["prem_amt"]
    return Premium(
        cert_no=text(raw["certno"]),
        year=int(raw["year"]),
        amount=None if amount is None else parse_money(amount),
        payment=None if raw["prem_pay"] is None else _payment(raw["prem_pay"]),
    )


def _payment(raw: dict[str, Any]) -> PremiumPayment:
    return PremiumPayment(
        id=text(raw["pay_id"]),
        beneficiary=Party(text(raw["certno"]), text(raw["psn_name"])),
        year=int(raw["year"]),
        amount=parse_money(raw["pay_amt"]),
        payer=Party(text(raw["payer_certno"]), text(raw["payer_name"])),
        payer_province=_province(raw["mulaid_insu_prov"]),
        funding_hold=None if raw["mulaid_frz_id"] is None else text(raw["mulaid_frz_id"]),
        paid_at=_beijing(raw["pay_time"]),
    )


_CHG_TYPE = {"1": ChangeKind.MOVED, "2": ChangeKind.ENDED}
_FRZ_STAS = {
    "1": HoldStatus.HELD,
    "2": HoldStatus.CONFIRMED,
    "3": HoldStatus.RELEASED,
    "4": HoldStatus.REFUNDED,
}


def _hold(raw: dict[str, Any]) -> QuotaHold:
    province = _province(raw["bene_insu_prov"])
    if province is None:
        raise ValueError("a hold names the relative's province")
    return QuotaHold(
        id=text(raw["frz_id"]),
        binding_id=text(raw["mulaid_id"]),
        authorizer=Party(text(raw["auth_certno"]), text(raw["auth_psn_name"])),
        beneficiary=Party(text(raw["bene_certno"]), text(raw["bene_psn_name"])),
        beneficiary_province=province,
        amount=parse_money(raw["frz_amt"]),
        used=parse_money(raw["pay_amt"]),
        status=_FRZ_STAS[raw["frz_stas"]],
        reference=text(raw["biz_ref"]),
        payment_ref=None if raw["setl_ref"] is None else text(raw["setl_ref"]),
        created_at=dt.datetime.strptime(text(raw["crte_time"]), "%Y-%m-%d %H:%M:%S").replace(
            tzinfo=dt.UTC
        ),
    )


def _frzinfo(output: dict[str, Any]) -> QuotaHold:
    return _hold(output["frzinfo"])


def _optional_money(value: object) -> Decimal | None:
    return None if value is None else parse_money(value)


def _setlinfo(output: dict[str, Any]) -> Settlement:
    return _settlement(output["setlinfo"])


def _settlement(raw: dict[str, Any]) -> Settlement:
    mutual_aid_paid = parse_money(raw["acct_mulaid_pay"])
    flag = raw["revs_flag"]
    if flag == "0":
        reversed_at, reason = None, None
    elif flag == "1":
        reversed_at, reason = _beijing(raw["revs_time"]), text(raw["revs_rea"])
    else:
        raise ValueError(f"revs_flag {flag!r}")
    return Settlement(
        id=text(raw["setl_id"]),
        institution_code=text(raw["fixmedins_code"]),
        patient=Party(text(raw["certno"]), text(raw["psn_name"])),
        medical_type=_MEDICAL_TYPE[raw["med_type"]],
        total=parse_money(raw["medfee_sumamt"]),
        fund_paid=parse_money(raw["fund_pay_sumamt"]),
        self_pay=parse_money(raw["psn_part_amt"]),
        own_account_paid=parse_money(raw["acct_pay"]),
        mutual_aid_paid=mutual_aid_paid,
        mutual_aid_payer=Party(text(raw["mulaid_certno"]), text(raw["mulaid_psn_name"]))
        if mutual_aid_paid
        else None,
        cash_due=parse_money(raw["psn_cash_pay"]),
        patient_balance_after=_optional_money(raw["balc"]),
        payer_balance_after=_optional_money(raw["mulaid_balc"]),
        settled_at=_beijing(raw["setl_time"]),
        reversed_at=reversed_at,
        reversal_reason=reason,
        mutual_aid_province=_province(raw.get("mulaid_insu_prov")),
        funding_hold=None if raw.get("mulaid_frz_id") is None else text(raw["mulaid_frz_id"]),
    )

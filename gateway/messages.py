"""What clients read: refusal and fault messages, in Chinese by default, English on request."""

from __future__ import annotations

from adapters.base import RefusalCode
from gateway.headers import weighted

Language = str  # "zh" or "en"

_REFUSALS: dict[RefusalCode, tuple[str, str]] = {
    RefusalCode.INVALID_CERT_NO: (
        "身份证号码格式不正确",
        "The ID number is not valid.",
    ),
    RefusalCode.PERSON_NOT_FOUND: (
        "未查询到该人员的参保信息",
        "This person is not insured in any connected province.",
    ),
    RefusalCode.PERSON_INFO_MISMATCH: (
        "姓名与身份证号码不符",
        "The name does not match the ID number.",
    ),
    RefusalCode.NOT_EMPLOYEE_INSURED: (
        "只有职工医保参保人有个人账户,才能共济给家人",
        "Only employee-insured people have a personal account to share.",
    ),
    RefusalCode.BENEFICIARY_NOT_INSURED: (
        "家人未参保或参保状态不正常(如断缴),暂不能绑定",
        "The relative is not insured, or their insurance is not in force.",
    ),
    RefusalCode.RELATION_NOT_ALLOWED: (
        "该亲属关系不在本省家庭共济范围内",
        "This relation may not share a personal account in this province.",
    ),
    RefusalCode.RELATION_NOT_VERIFIED: (
        "亲属关系与户籍记录不符",
        "The relation does not match the civil record.",
    ),
    RefusalCode.CROSS_AREA_NOT_ALLOWED: (
        "本省暂不支持跨统筹区(跨市)共济",
        "This province does not allow binding across cities.",
    ),
    RefusalCode.CROSS_PROVINCE_NOT_ALLOWED: (
        "暂不支持跨省家庭共济",
        "Binding across provinces is not possible.",
    ),
    RefusalCode.BINDING_LIMIT_REACHED: (
        "共济家庭成员人数已达上限",
        "You have bound as many relatives as this province allows.",
    ),
    RefusalCode.ALREADY_BOUND: (
        "该人员已在一个共济家庭中,不能重复绑定",
        "One of you already belongs to a mutual-aid family.",
    ),
    RefusalCode.DUPLICATE_BINDING: (
        "已与该家人绑定或正在等待确认",
        "You are already bound to this relative, or the binding is pending.",
    ),
    RefusalCode.COMMITMENT_REQUIRED: (
        "请先阅读并签署家庭共济承诺书",
        "Please read and sign the commitment letter first.",
    ),
    RefusalCode.INVALID_BINDING_STATE: (
        "该共济关系当前状态不允许此操作",
        "The binding's current status does not allow this.",
    ),
    RefusalCode.FORBIDDEN: (
        "无权操作该共济关系",
        "You may not act on this binding.",
    ),
}

_FAULTS: dict[str, tuple[str, str]] = {
    "UNAUTHENTICATED": ("请先登录", "Please sign in."),
    "UPSTREAM_UNAVAILABLE": (
        "省级医保系统暂时无法访问,请稍后再试",
        "The provincial system is unavailable. Please try again later.",
    ),
    "UPSTREAM_TIMEOUT": (
        "省级医保系统响应超时,请稍后再试",
        "The provincial system did not answer in time. Please try again later.",
    ),
    "UPSTREAM_CONTRACT_ERROR": (
        "省级医保系统返回了无法识别的结果",
        "The provincial system gave an answer we could not read.",
    ),
    "INTERNAL_ERROR": ("系统繁忙,请稍后再试", "Something went wrong on our side."),
}


def refusal_message(code: RefusalCode, lang: Language) -> str:
    zh, en = _REFUSALS[code]
    return en if lang == "en" else zh


def fault_message(code: str, lang: Language) -> str:
    zh, en = _FAULTS.get(code, _FAULTS["INTERNAL_ERROR"])
    return en if lang == "en" else zh


def preferred_language(accept_language: str | None) -> Language:
    """``en`` when the header prefers English over Chinese, else ``zh``."""
    best: Language = "zh"
    best_q = 0.0
    for tag, q in weighted(accept_language):
        primary = tag.split("-")[0]
        if primary in ("zh", "en") and q > best_q:
            best, best_q = primary, q
    return best

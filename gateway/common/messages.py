"""What clients read: refusal and fault messages, in Chinese by default, English on request."""

from __future__ import annotations

from adapters.base import RefusalCode
from gateway.common.headers import weighted
from gateway.common.refusals import Code, GatewayCode

Language = str  # "zh" or "en"

_REFUSALS: dict[Code, tuple[str, str]] = {
    RefusalCode.INVALID_CERT_NO: (
        "身份证号码格式不正确",
        "The ID number is not valid.",
    ),
    RefusalCode.PERSON_NOT_FOUND: (
        "未查询到该人员的参保信息",
        "This person is not insured in any connected province.",
    ),
    RefusalCode.PERSON_INFO_MISMATCH: (
        "姓名与身份证号码不符,或未查询到该人员的参保信息",
        "The name does not match the ID number, or no connected province insures them.",
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
    GatewayCode.SELF_BINDING_NOT_ALLOWED: (
        "不能为自己绑定家庭共济",
        "You cannot bind yourself for mutual aid.",
    ),
    RefusalCode.CROSS_AREA_NOT_ALLOWED: (
        "本省暂不支持跨统筹区(跨市)共济",
        "This province does not allow binding across cities.",
    ),
    RefusalCode.CROSS_PROVINCE_NOT_ALLOWED: (
        "您或亲属的参保省份尚未开通跨省家庭共济",
        "Your province or your relative's does not allow mutual aid across provinces yet.",
    ),
    GatewayCode.QUOTA_REQUIRED: (
        "跨省共济需设定共济额度",
        "Binding a relative insured in another province needs a quota.",
    ),
    RefusalCode.QUOTA_NOT_ALLOWED: (
        "省内共济无需设定共济额度",
        "A binding inside your province takes no quota.",
    ),
    RefusalCode.QUOTA_ABOVE_BALANCE: (
        "共济额度不能超过个人账户余额",
        "The quota is more than your personal account's balance.",
    ),
    RefusalCode.QUOTA_INSUFFICIENT: (
        "共济额度余额不足",
        "Less of the quota is left than the payment needs.",
    ),
    RefusalCode.INVALID_HOLD_STATE: (
        "该笔共济资金的状态不允许此操作",
        "The money held for this payment is not in a state for this.",
    ),
    RefusalCode.NOT_RESIDENT_INSURED: (
        "该亲属未参加城乡居民医保,无需缴纳居民医保费",
        "Your relative is not resident-insured: there is no resident premium to pay.",
    ),
    RefusalCode.PREMIUM_NOT_DECLARED: (
        "该年度居民医保缴费标准尚未公布",
        "The resident premium for that year has not been announced yet.",
    ),
    RefusalCode.PREMIUM_ALREADY_PAID: (
        "该亲属该年度的居民医保费已缴纳",
        "Your relative's resident premium for that year is already paid.",
    ),
    RefusalCode.PREMIUM_PAYMENT_NOT_ALLOWED: (
        "本省暂不支持用个人账户为家庭成员缴纳居民医保费",
        "Your province does not let a personal account pay a relative's premium yet.",
    ),
    RefusalCode.BALANCE_INSUFFICIENT: (
        "个人账户(或共济额度)余额不足",
        "Your personal account (or the quota) has less than the premium.",
    ),
    RefusalCode.NOT_BOUND: (
        "您尚未为该亲属开通家庭共济",
        "You have not bound this relative for family mutual aid.",
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
        "无权进行此操作",
        "You may not do this.",
    ),
    GatewayCode.KINSHIP_SELF_NOT_ALLOWED: (
        "不能将本人添加为亲情账户成员",
        "You cannot add yourself as a kinship member.",
    ),
    GatewayCode.KINSHIP_ALREADY_ADDED: (
        "已添加该亲属,或添加申请正在处理中",
        "You have already added this relative, or the request is in progress.",
    ),
    GatewayCode.KINSHIP_ADDER_LIMIT_REACHED: (
        "您添加的亲情账户成员已达上限(5人,含各渠道及审核中的申请)",
        "You have added as many kinship members as allowed (5, across all channels,"
        " pending requests included).",
    ),
    GatewayCode.KINSHIP_MEMBER_LIMIT_REACHED: (
        "该亲属已被2人添加为亲情账户成员,不能再被添加",
        "This relative has already been added by 2 people, the most allowed.",
    ),
    GatewayCode.DOCUMENT_REQUIRED: (
        "请上传出生医学证明或户口簿",
        "Please upload a birth certificate or the household register.",
    ),
    GatewayCode.DOCUMENT_EMPTY: (
        "上传的文件是空的",
        "The uploaded file is empty.",
    ),
    GatewayCode.DOCUMENT_TOO_LARGE: (
        "上传的文件过大",
        "The uploaded file is too large.",
    ),
    GatewayCode.DOCUMENT_TYPE_NOT_ALLOWED: (
        "仅支持 JPEG、PNG 或 PDF 文件",
        "Only JPEG, PNG or PDF files are accepted.",
    ),
    GatewayCode.TOO_MANY_DOCUMENTS: (
        "上传的文件过多",
        "Too many files were uploaded.",
    ),
    GatewayCode.REASON_REQUIRED: (
        "驳回时请填写原因",
        "Please give a reason for the rejection.",
    ),
    GatewayCode.INVALID_KINSHIP_STATE: (
        "该亲情账户当前状态不允许此操作",
        "The kinship link's current status does not allow this.",
    ),
    GatewayCode.INVALID_PAYMENT_PASSWORD: (
        "支付密码须为6位数字,且不能是相同或连续的数字",
        "The payment password must be 6 digits, not all the same or in sequence.",
    ),
    GatewayCode.MEMBER_INSURANCE_NOT_EFFECTIVE: (
        "该亲属的医保尚未生效(或已暂停),暂不能激活电子凭证",
        "The relative's insurance is not in force yet (or is paused): the e-voucher"
        " cannot be activated.",
    ),
    GatewayCode.INVALID_AREA_CODE: (
        "就医地区划代码应为6位数字",
        "The treatment area must be a 6-digit area code.",
    ),
    RefusalCode.PATIENT_NOT_INSURED: (
        "患者参保状态不正常(未生效、暂停或终止),不能结算",
        "The patient's insurance is not in force: the bill cannot be settled.",
    ),
    RefusalCode.AMOUNT_NOT_POSITIVE: (
        "医疗费用总额应大于零",
        "The total must be greater than zero.",
    ),
    GatewayCode.AMOUNT_TOO_LARGE: (
        "医疗费用总额超出可结算范围",
        "The total is larger than any bill the platform settles.",
    ),
    GatewayCode.AMOUNT_NEGATIVE: (
        "基金支付金额不能为负数",
        "The amount the fund paid cannot be negative.",
    ),
    GatewayCode.FUND_PAID_EXCEEDS_TOTAL: (
        "基金支付金额不能大于医疗费用总额",
        "The fund cannot pay more than the total.",
    ),
    GatewayCode.INVALID_IDEMPOTENCY_KEY: (
        "请求唯一标识应为1至64位可见字符,不含空格",
        "The idempotency key must be 1 to 64 visible characters without spaces.",
    ),
    RefusalCode.IDEMPOTENCY_KEY_REUSED: (
        "该请求唯一标识已用于另一笔结算",
        "This idempotency key was already used for a different bill.",
    ),
    RefusalCode.MEDICAL_TYPE_NOT_ALLOWED: (
        "本机构不能办理该类型的结算",
        "This institution may not settle this kind of bill.",
    ),
    RefusalCode.SETTLEMENT_ALREADY_REVERSED: (
        "该笔结算已撤销",
        "This settlement has already been reversed.",
    ),
    RefusalCode.REVERSAL_WINDOW_CLOSED: (
        "只能撤销当日的结算",
        "Only a settlement of the same day can be reversed.",
    ),
    RefusalCode.SETTLEMENT_NOT_SUPPORTED: (
        "该省暂不支持通过本平台结算",
        "This province does not settle through the platform yet.",
    ),
}

# Explanations the graph gives of its own accord (not refusals).
_NOTES: dict[str, tuple[str, str]] = {
    "KINSHIP_IS_NOT_MUTUAL_AID": (
        "亲情账户只能出示亲属的医保码、用亲属本人的医保结算;若要用您的个人账户为其支付"
        "自付部分,需另行办理家庭共济绑定。",
        "A kinship account shows your relative's code and pays with the relative's own"
        " insurance. To pay their self-pay part from your personal account, bind them"
        " for family mutual aid as well.",
    ),
    "MUTUAL_AID_PAYS_SELF_PAY": (
        "您已为该亲属开通家庭共济:其自付部分可从您的个人账户支付(多人共济时由余额最多者支付)。",
        "You have bound this relative for mutual aid: their self-pay part can be paid from"
        " your personal account (with several authorizers, the largest balance pays).",
    ),
    "MUTUAL_AID_NO_BALANCE": (
        "您已为该亲属开通家庭共济,但您的个人账户余额为零,暂不能为其支付。",
        "You have bound this relative for mutual aid, but your personal account is empty:"
        " it cannot pay for them now.",
    ),
    "REMOTE_TREATMENT_REGISTRATION": (
        "该亲属在外地参保,在此就医前请先办理异地就医备案。",
        "Your relative is insured elsewhere: register for treatment away from home"
        " (异地就医备案) before treatment here.",
    ),
}

_FAULTS: dict[str, tuple[str, str]] = {
    "UNAUTHENTICATED": ("请先登录", "Please sign in."),
    "FORBIDDEN": ("无权访问", "You may not see this."),
    "BAD_USER_INPUT": ("请求参数不正确", "The request's input is not valid."),
    "RATE_LIMITED": ("操作过于频繁,请稍后再试", "Too many requests: please wait and try again."),
    "UPSTREAM_UNAVAILABLE": (
        "省级医保系统暂时无法访问,请稍后再试",
        "The provincial system is unavailable. Please try again later.",
    ),
    "UPSTREAM_TIMEOUT": (
        "省级医保系统响应超时,请稍后再试",
        "The provincial system did not answer in time. Please try again later.",
    ),
    "CIRCUIT_OPEN": (
        "省级医保系统近期多次无法访问,已暂停请求,请稍后再试",
        "The provincial system failed repeatedly; requests to it are paused. Please try"
        " again later.",
    ),
    "UPSTREAM_OVERLOADED": (
        "省级医保系统当前繁忙,请稍后再试",
        "The provincial system is busy just now (the gateway keeps to what it can take)."
        " Please try again in a moment.",
    ),
    "UPSTREAM_CONTRACT_ERROR": (
        "省级医保系统返回了无法识别的结果",
        "The provincial system gave an answer we could not read.",
    ),
    "PERSISTED_QUERY_NOT_FOUND": (
        "未登记的操作,请更新应用",
        "No operation is registered under this documentId: update the app.",
    ),
    "DOCUMENT_NOT_TRUSTED": (
        "仅可执行已登记的操作",
        "Only registered operations run here: send its documentId.",
    ),
    "CURSOR_EXPIRED": (
        "该位置之后的消息已过保留期,请重新加载家庭页面",
        "Events after this cursor are no longer kept: reload the family screen, then"
        " subscribe without a cursor.",
    ),
    "TOO_MANY_SUBSCRIPTIONS": (
        "订阅数量已达上限,请关闭不用的订阅",
        "Too many subscriptions are open: close some first.",
    ),
    "INTERNAL_ERROR": ("系统繁忙,请稍后再试", "Something went wrong on our side."),
    "AUDIT_UNAVAILABLE": (
        "系统暂时无法记录本次查询,请稍后再试",
        "This read cannot be recorded just now, so it is not answered: try again later.",
    ),
    # refused at the HTTP edge, before any GraphQL ran
    "BAD_REQUEST": (
        "请求格式不正确:请以 JSON 对象发送 GraphQL 请求",
        "The request is not well formed: send a GraphQL request as a JSON object.",
    ),
    "NOT_FOUND": ("请求的地址不存在", "There is nothing at this address."),
    "METHOD_NOT_ALLOWED": ("请用 POST 发送 GraphQL 请求", "Send GraphQL requests with POST."),
    "NOT_ACCEPTABLE": (
        "无法以客户端接受的格式应答",
        "The answer cannot be given in a format the client accepts.",
    ),
    "LENGTH_REQUIRED": ("请求须注明长度(Content-Length)", "Send the body with a Content-Length."),
    "REQUEST_TOO_LARGE": ("请求内容过大", "The request body is too large."),
    "UNSUPPORTED_MEDIA_TYPE": (
        "不支持的请求格式,请使用 application/json",
        "Unsupported content type: use application/json.",
    ),
    "HEADERS_TOO_LARGE": ("请求头过多或过大", "The request's headers are too many or too large."),
}


# Every refusal code, the provinces' and the gateway's: the graph's `ErrorCode`.
REFUSAL_CODES: tuple[Code, ...] = tuple(_REFUSALS)


def refusal_message(code: Code, lang: Language) -> str:
    zh, en = _REFUSALS[code]
    return en if lang == "en" else zh


# Diagnosis reasons: (message, what to do next), each in Chinese and English.
_REASONS: dict[str, tuple[str, str, str, str]] = {
    "INVALID_CERT_NO": (
        "身份证号码不正确",
        "请核对亲属的身份证号码",
        "The ID number is not valid.",
        "Check your relative's ID number.",
    ),
    "CALLER_NOT_INSURED": (
        "未查询到您在已接入省份的参保信息",
        "请确认您的参保地",
        "You are not insured in any connected province.",
        "Check where you are insured.",
    ),
    "RELATIVE_NOT_INSURED": (
        "未查询到该亲属在已接入省份的参保信息",
        "请亲属先参加基本医疗保险",
        "Your relative is not insured in any connected province.",
        "Your relative needs basic medical insurance first.",
    ),
    "RELATIVE_INSURANCE_NOT_IN_FORCE": (
        "该亲属的医保未生效或已断缴",
        "请亲属续缴或等待医保生效",
        "Your relative's insurance is not in force (lapsed, paused or not started).",
        "Your relative should pay the contributions or wait until it starts.",
    ),
    "NOT_EMPLOYEE_INSURED": (
        "您参加的是居民医保,没有个人账户,不能为家人共济",
        "可请家中参加职工医保的成员为其开通共济",
        "You have resident insurance: there is no personal account to share.",
        "Ask an employee-insured family member to bind them.",
    ),
    "ONLY_KINSHIP_LINK": (
        "您只添加了亲情账户:它只能出示亲属的医保码、用亲属本人的医保结算,不能用您的个人账户支付",
        "如需用您的个人账户为其支付,请另行办理家庭共济绑定",
        "You only added a kinship account: it shows your relative's code and pays with"
        " their own insurance, never from your personal account.",
        "To pay from your personal account, also bind them for family mutual aid.",
    ),
    "NOT_BOUND": (
        "您尚未为该亲属开通家庭共济",
        "可在家庭共济中绑定该亲属",
        "You have not bound this relative for family mutual aid.",
        "Bind them for family mutual aid.",
    ),
    "SPOUSE_NOT_CONFIRMED": (
        "配偶尚未在本人账户中确认共济绑定",
        "请配偶登录本人账户确认",
        "Your spouse has not confirmed the binding yet.",
        "Ask your spouse to confirm it in their own app.",
    ),
    "CROSS_AREA_NOT_ALLOWED": (
        "您与亲属不在同一统筹区,本省不支持跨统筹区共济",
        "可由与亲属在同一统筹区参保的家庭成员为其开通",
        "You and your relative are insured in different cities, which this province"
        " does not allow.",
        "A family member insured in the same city can bind them.",
    ),
    "CROSS_PROVINCE_NOT_ALLOWED": (
        "您与亲属在不同省份参保,其中一方的省份尚未开通跨省共济",
        "可由与亲属在同一省份参保的家庭成员为其开通,或待两省开通后设定共济额度绑定",
        "You and your relative are insured in different provinces, and one of them does"
        " not allow mutual aid across provinces yet.",
        "A family member insured in the same province can bind them; or, once both"
        " provinces allow it, bind them with a quota.",
    ),
    "RELATION_NOT_ALLOWED": (
        "该亲属关系不在家庭共济范围内(如配偶的父母)",
        "家庭共济限于本省政策允许的近亲属:配偶、父母、子女,"
        "以及已放开的省份的兄弟姐妹、祖父母、外祖父母、孙子女、外孙子女",
        "This relation is not one mutual aid allows (a spouse's parent, for example).",
        "Mutual aid covers a spouse, parents and children, and where the province's"
        " rules allow it, siblings, grandparents and grandchildren.",
    ),
    "RELATION_NOT_VERIFIED": (
        "户籍记录中未查到您与该亲属的关系",
        "请到户籍所在地更新户籍信息,或到服务大厅办理",
        "The civil record does not show your relation to this person.",
        "Update the civil record, or ask at a service hall.",
    ),
    "BINDING_LIMIT_REACHED": (
        "您绑定的共济家庭成员已达本省上限",
        "可先解除与其他成员的绑定",
        "You have bound as many relatives as your province allows.",
        "Unbind another relative first.",
    ),
    "ALREADY_BOUND": (
        "本省每人只能绑定或被绑定一次,您或该亲属已在其他共济家庭中",
        "请先解除原有绑定",
        "In this province a person belongs to one mutual-aid family only, and one of"
        " you already does.",
        "End the existing binding first.",
    ),
    "BALANCE_ZERO": (
        "您的个人账户余额为零,暂无可共济的资金",
        "余额入账后即可为家人支付",
        "Your personal account is empty: there is nothing to share.",
        "It pays again once your account is credited.",
    ),
    "ANOTHER_AUTHORIZER_PAYS": (
        "另一位余额更多的家庭成员也为该亲属开通了共济,结算时由其支付",
        "无需操作:每次结算只从余额最多的一位共济人扣款",
        "Another family member with a larger balance has also bound this relative:"
        " settlements are paid from their account.",
        "Nothing to do: each settlement draws on one authorizer, the largest balance.",
    ),
}


# The family screen's verdicts, per feature and state.
_STATES: dict[str, tuple[str, str]] = {
    "MUTUAL_AID.BOUND": ("已开通家庭共济", "Bound for mutual aid"),
    "MUTUAL_AID.PENDING_CONFIRMATION": ("等待配偶确认", "Waiting for the spouse to confirm"),
    "MUTUAL_AID.CAN_BIND": ("可以绑定家庭共济", "Can be bound for mutual aid"),
    "MUTUAL_AID.NOT_POSSIBLE": ("不能绑定家庭共济", "Cannot be bound for mutual aid"),
    "KINSHIP.ADDED": ("已添加亲情账户,可出示其医保码", "Added: you can show their code"),
    "KINSHIP.APPROVED": ("已通过,请激活其电子凭证", "Approved: activate their e-voucher"),
    "KINSHIP.PENDING_CONSENT": ("等待亲属本人授权", "Waiting for their consent"),
    "KINSHIP.PENDING_REVIEW": ("材料审核中(1至2个工作日)", "Under review (1 to 2 working days)"),
    "KINSHIP.CAN_ADD": ("可以添加为亲情账户", "Can be added to your kinship account"),
    "KINSHIP.NOT_POSSIBLE": ("不能添加为亲情账户", "Cannot be added to your kinship account"),
}


def state_message(feature: str, state: str, lang: Language) -> str:
    zh, en = _STATES[f"{feature}.{state}"]
    return en if lang == "en" else zh


def reason_message(code: str, lang: Language) -> tuple[str, str]:
    """(what is wrong, what to do next) for a diagnosis reason."""
    zh, zh_next, en, en_next = _REASONS[code]
    return (en, en_next) if lang == "en" else (zh, zh_next)


def note_message(code: str, lang: Language) -> str:
    zh, en = _NOTES[code]
    return en if lang == "en" else zh


NOTE_CODES = tuple(_NOTES)


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

"""The interface every province implements, and the vocabulary it shares with the gateway.

An adapter turns one provincial system's dialect into these types. To add a
province, subclass `ProvinceAdapter`, declare `code`, `name` and `policies`,
implement the five abstract coroutines, and register the class under the
``gongji.adapters`` entry-point group. Everything else (the pooled HTTP client,
timeouts, fault mapping, policy lookup by date) comes from this module.

Faults raised by adapters form one tree; the gateway maps it to GraphQL
``extensions.code`` values:

    UpstreamError                 (abstract: something went wrong talking to a province)
    ├── UpstreamUnavailable       UPSTREAM_UNAVAILABLE  connection refused/reset, HTTP 5xx
    ├── UpstreamTimeout           UPSTREAM_TIMEOUT      connect, read, write or pool timeout
    ├── UpstreamContractError     UPSTREAM_CONTRACT_ERROR  an answer we cannot understand
    │                                                       (or larger than max_answer_bytes)
    └── CircuitOpen               CIRCUIT_OPEN          not sent: the province failed repeatedly

Each says whether the request may have reached the province (``reached``): a
write that may have is of unknown outcome, and the gateway asks again later
with the same request id. A province's answer that it could not read the request
(malformed) is a contract error that did not reach it (`UpstreamError`).

Expected refusals ("the cap is reached") are not exceptions: the write methods
return a `Refusal` instead of a `Binding`.

Every request goes through the province's circuit breaker; reads (``_call(...,
read=True)``) are retried with exponential backoff and jitter, writes never are:
a write carries a request id (``new_request_id``) that the province keeps, so
the gateway's reconciler can send it again and get the first answer back.

Each attempt has one deadline for the whole exchange (connect, send, receive and
decode), and each answer is read as a stream and decoded here, a piece at a
time: one that grows past ``max_answer_bytes``, as sent or as decoded, is
refused (`UpstreamContractError`) as soon as it does, so a compressed "bomb"
costs about that much memory and work, never what it would decode to.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import contextvars
import datetime as dt
import enum
import uuid
import zlib
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any, ClassVar

import httpx
from tenacity import (
    AsyncRetrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential_jitter,
)

from adapters.breaker import Breaker, BreakerState, Refused

__all__ = [
    "AdapterSettings",
    "Area",
    "BindRequest",
    "Binding",
    "BindingStatus",
    "BreakerState",
    "Chosen",
    "CircuitOpen",
    "CivilRelative",
    "Guard",
    "InsuranceStatus",
    "InsuranceType",
    "MedicalType",
    "Party",
    "Person",
    "Policy",
    "ProvinceAdapter",
    "Refusal",
    "RefusalCode",
    "Relation",
    "SettleRequest",
    "Settlement",
    "UpstreamContractError",
    "UpstreamError",
    "UpstreamTimeout",
    "UpstreamUnavailable",
    "deadline_passed",
    "new_request_id",
    "parse_money",
    "text",
]


# -- vocabulary -----------------------------------------------------------------


class Relation(enum.Enum):
    """A relative's relation to a person, as the civil record (or a caller) states it.

    ``PARENT`` means "the relative is my parent". Which of these a province lets
    mutual aid use is its policy's ``allowed_relations``.
    """

    SPOUSE = "SPOUSE"
    PARENT = "PARENT"
    CHILD = "CHILD"
    PARENT_IN_LAW = "PARENT_IN_LAW"
    CHILD_IN_LAW = "CHILD_IN_LAW"
    SIBLING = "SIBLING"
    GRANDPARENT = "GRANDPARENT"
    GRANDCHILD = "GRANDCHILD"

    @property
    def inverse(self) -> Relation:
        """If the relative is my ``self``, I am the relative's ``inverse``."""
        return _INVERSE.get(self, self)


_INVERSE = {
    Relation.PARENT: Relation.CHILD,
    Relation.CHILD: Relation.PARENT,
    Relation.PARENT_IN_LAW: Relation.CHILD_IN_LAW,
    Relation.CHILD_IN_LAW: Relation.PARENT_IN_LAW,
    Relation.GRANDPARENT: Relation.GRANDCHILD,
    Relation.GRANDCHILD: Relation.GRANDPARENT,
}


class InsuranceType(enum.Enum):
    EMPLOYEE = "EMPLOYEE"  # 职工基本医疗保险, insutype 310: has a personal account
    RESIDENT = "RESIDENT"  # 城乡居民基本医疗保险, insutype 390: no personal account


class InsuranceStatus(enum.Enum):
    ACTIVE = "ACTIVE"  # in force
    SUSPENDED = "SUSPENDED"  # paused / lapsed (断缴)
    TERMINATED = "TERMINATED"
    PENDING = "PENDING"  # enrolled, not in force yet (a newborn)


class BindingStatus(enum.Enum):
    PENDING_CONFIRMATION = "PENDING_CONFIRMATION"
    ACTIVE = "ACTIVE"
    DECLINED = "DECLINED"
    UNBOUND = "UNBOUND"

    @property
    def is_live(self) -> bool:
        """Whether the binding occupies a place (counts toward caps and duplicates)."""
        return self in (BindingStatus.PENDING_CONFIRMATION, BindingStatus.ACTIVE)


class RefusalCode(enum.Enum):
    """The closed list of expected refusals. Adapters map their dialect's codes onto it."""

    INVALID_CERT_NO = "INVALID_CERT_NO"
    PERSON_NOT_FOUND = "PERSON_NOT_FOUND"
    PERSON_INFO_MISMATCH = "PERSON_INFO_MISMATCH"
    NOT_EMPLOYEE_INSURED = "NOT_EMPLOYEE_INSURED"
    BENEFICIARY_NOT_INSURED = "BENEFICIARY_NOT_INSURED"
    RELATION_NOT_ALLOWED = "RELATION_NOT_ALLOWED"
    RELATION_NOT_VERIFIED = "RELATION_NOT_VERIFIED"
    SELF_BINDING_NOT_ALLOWED = (
        "SELF_BINDING_NOT_ALLOWED"  # the gateway's own: no one binds themselves
    )
    CROSS_AREA_NOT_ALLOWED = "CROSS_AREA_NOT_ALLOWED"
    CROSS_PROVINCE_NOT_ALLOWED = "CROSS_PROVINCE_NOT_ALLOWED"
    BINDING_LIMIT_REACHED = "BINDING_LIMIT_REACHED"
    ALREADY_BOUND = "ALREADY_BOUND"
    DUPLICATE_BINDING = "DUPLICATE_BINDING"
    COMMITMENT_REQUIRED = "COMMITMENT_REQUIRED"
    INVALID_BINDING_STATE = "INVALID_BINDING_STATE"
    FORBIDDEN = "FORBIDDEN"
    # Kinship accounts (亲情账户): the gateway's own registry, no adapter gives these.
    KINSHIP_SELF_NOT_ALLOWED = "KINSHIP_SELF_NOT_ALLOWED"
    KINSHIP_ALREADY_ADDED = "KINSHIP_ALREADY_ADDED"
    KINSHIP_ADDER_LIMIT_REACHED = "KINSHIP_ADDER_LIMIT_REACHED"
    KINSHIP_MEMBER_LIMIT_REACHED = "KINSHIP_MEMBER_LIMIT_REACHED"
    DOCUMENT_REQUIRED = "DOCUMENT_REQUIRED"
    DOCUMENT_EMPTY = "DOCUMENT_EMPTY"
    DOCUMENT_TOO_LARGE = "DOCUMENT_TOO_LARGE"
    DOCUMENT_TYPE_NOT_ALLOWED = "DOCUMENT_TYPE_NOT_ALLOWED"
    TOO_MANY_DOCUMENTS = "TOO_MANY_DOCUMENTS"
    REASON_REQUIRED = "REASON_REQUIRED"
    INVALID_KINSHIP_STATE = "INVALID_KINSHIP_STATE"
    INVALID_PAYMENT_PASSWORD = "INVALID_PAYMENT_PASSWORD"  # noqa: S105 (a code, not a secret)
    MEMBER_INSURANCE_NOT_EFFECTIVE = "MEMBER_INSURANCE_NOT_EFFECTIVE"
    INVALID_AREA_CODE = "INVALID_AREA_CODE"
    # Settlement at designated institutions
    PATIENT_NOT_INSURED = "PATIENT_NOT_INSURED"
    AMOUNT_NOT_POSITIVE = "AMOUNT_NOT_POSITIVE"
    AMOUNT_TOO_LARGE = "AMOUNT_TOO_LARGE"
    AMOUNT_NEGATIVE = "AMOUNT_NEGATIVE"
    FUND_PAID_EXCEEDS_TOTAL = "FUND_PAID_EXCEEDS_TOTAL"
    INVALID_IDEMPOTENCY_KEY = "INVALID_IDEMPOTENCY_KEY"
    IDEMPOTENCY_KEY_REUSED = "IDEMPOTENCY_KEY_REUSED"
    MEDICAL_TYPE_NOT_ALLOWED = "MEDICAL_TYPE_NOT_ALLOWED"
    SETTLEMENT_ALREADY_REVERSED = "SETTLEMENT_ALREADY_REVERSED"
    REVERSAL_WINDOW_CLOSED = "REVERSAL_WINDOW_CLOSED"
    SETTLEMENT_NOT_SUPPORTED = "SETTLEMENT_NOT_SUPPORTED"


@dataclass(frozen=True, slots=True)
class Refusal:
    """An expected "no" from a province (or from the gateway's early checks).

    Adapters give only the ``code``; the gateway knows which input ``field`` of
    the operation a code points at.
    """

    code: RefusalCode
    field: str | None = None


@dataclass(frozen=True, slots=True)
class Area:
    """A pooling area (统筹区): a GB/T 2260 city code and its name."""

    code: str
    name: str

    @property
    def province_code(self) -> str:
        return self.code[:2]


@dataclass(frozen=True, slots=True)
class Person:
    """An insured person as their province knows them."""

    cert_no: str
    name: str
    area: Area
    insurance_type: InsuranceType
    insurance_status: InsuranceStatus
    balance: Decimal | None  # personal-account balance; None for resident insurance
    phone: str | None = None

    @property
    def is_employee(self) -> bool:
        return self.insurance_type is InsuranceType.EMPLOYEE

    @property
    def is_in_force(self) -> bool:
        return self.insurance_status is InsuranceStatus.ACTIVE


@dataclass(frozen=True, slots=True)
class CivilRelative:
    """One entry of a person's civil record: ``cert_no`` is their ``relation``."""

    cert_no: str
    name: str
    relation: Relation


@dataclass(frozen=True, slots=True)
class Party:
    cert_no: str
    name: str


@dataclass(frozen=True, slots=True)
class Binding:
    """A mutual-aid binding as the province records it. ``id`` is the province's own."""

    id: str
    authorizer: Party
    beneficiary: Party
    relation: Relation  # the beneficiary's relation to the authorizer
    status: BindingStatus
    created_at: dt.datetime


@dataclass(frozen=True, slots=True)
class BindRequest:
    """``request_id``: the province's key for this request (`new_request_id`); sent again
    with the same id, the province answers as it did the first time."""

    authorizer_cert_no: str
    beneficiary_cert_no: str
    beneficiary_name: str
    relation: Relation
    commitment_signed: bool
    request_id: str | None = None  # None: the adapter makes one


def new_request_id() -> str:
    """A request id every dialect can carry: ``GJ``, the time to the second, 10 hex
    digits (26 ASCII characters, as the national platform's ``msgid``)."""
    return f"GJ{dt.datetime.now():%Y%m%d%H%M%S}{uuid.uuid4().hex[:10]}"


class MedicalType(enum.Enum):
    OUTPATIENT = "OUTPATIENT"  # 门诊
    INPATIENT = "INPATIENT"  # 住院
    PHARMACY = "PHARMACY"  # 定点药店购药


@dataclass(frozen=True, slots=True)
class SettleRequest:
    """A designated institution's bill for a patient, after the pooled fund's share.

    ``idempotency_key`` is the institution's own: the same key from the same
    institution is the same settlement, however often it is sent.
    """

    institution_code: str
    idempotency_key: str
    patient_cert_no: str
    medical_type: MedicalType
    total: Decimal
    fund_paid: Decimal
    request_id: str | None = None  # as for `BindRequest`


@dataclass(frozen=True, slots=True, kw_only=True)
class Settlement:
    """A settlement as the province records it (national platform outputs in brackets)."""

    id: str
    institution_code: str
    patient: Party
    medical_type: MedicalType
    total: Decimal  # medfee_sumamt
    fund_paid: Decimal  # fund_pay_sumamt
    self_pay: Decimal  # psn_part_amt
    own_account_paid: Decimal  # acct_pay
    mutual_aid_paid: Decimal  # acct_mulaid_pay
    mutual_aid_payer: Party | None
    cash_due: Decimal  # psn_cash_pay
    patient_balance_after: Decimal | None  # balc
    payer_balance_after: Decimal | None
    settled_at: dt.datetime
    reversed_at: dt.datetime | None = None
    reversal_reason: str | None = None

    def __post_init__(self) -> None:
        """What every province's answer must satisfy: parsed inside `_reading`, an answer
        that breaks it is a contract error."""
        parts = (self.total, self.fund_paid, self.self_pay, self.own_account_paid)
        if min(*parts, self.mutual_aid_paid, self.cash_due) < 0:
            raise ValueError("a negative amount")
        if self.fund_paid + self.self_pay != self.total:
            raise ValueError("fund paid and self-pay do not add up to the total")
        if self.own_account_paid + self.mutual_aid_paid + self.cash_due != self.self_pay:
            raise ValueError("the parts do not add up to the self-pay part")
        if (self.mutual_aid_paid > 0) != (self.mutual_aid_payer is not None):
            raise ValueError("mutual aid paid needs its payer, and a payer needs a payment")


class Chosen:
    """The payer an adapter named in a settlement, by the request id it was sent under,
    so that the settlement sent again under that id is the same request.

    A payer is chosen from balances, and balances move (the first send itself moves them
    when the province carried it out but its answer was lost): chosen again, it could be
    another payer, and the province would get another request under the same id. The
    latest ``size`` choices are kept, in memory: the outbox sends a write again within
    the gateway's life (after a restart, a settlement still unresolved is chosen for
    afresh).
    """

    def __init__(self, size: int = 10_000) -> None:
        self._kept: OrderedDict[str, str | None] = OrderedDict()
        self._size = size

    async def once(
        self, request_id: str, choose: Callable[[], Awaitable[str | None]]
    ) -> str | None:
        """The payer named under ``request_id`` before, else ``choose()``'s, kept."""
        if request_id in self._kept:
            self._kept.move_to_end(request_id)
            return self._kept[request_id]
        chosen = await choose()
        self._kept[request_id] = chosen
        if len(self._kept) > self._size:
            self._kept.popitem(last=False)
        return chosen


# -- policy ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Policy:
    """A province's mutual-aid rules from ``effective_from`` on. Data, not code paths."""

    effective_from: dt.date
    max_relatives: int = 5
    cross_city: bool = False
    cross_province: bool = False
    spouse_confirmation: bool = False
    single_binding: bool = False
    commitment_required: bool = False
    allowed_relations: frozenset[Relation] = frozenset(
        {Relation.SPOUSE, Relation.PARENT, Relation.CHILD}
    )

    def __post_init__(self) -> None:
        if self.max_relatives < 1:
            raise ValueError("max_relatives must be at least 1")

    def with_changes(self, **changes: Any) -> Policy:
        """A copy with some rules changed (for configuration overrides)."""
        if "allowed_relations" in changes:
            changes["allowed_relations"] = frozenset(
                Relation(r) if isinstance(r, str) else r for r in changes["allowed_relations"]
            )
        if isinstance(changes.get("effective_from"), str):
            changes["effective_from"] = dt.date.fromisoformat(changes["effective_from"])
        return replace(self, **changes)


# China keeps one time zone and no daylight saving: a policy takes effect on a Beijing date.
CHINA = dt.timezone(dt.timedelta(hours=8), "Asia/Shanghai")


def china_date(moment: dt.datetime | None = None) -> dt.date:
    """The Beijing date of ``moment`` (now by default), whatever the server's zone."""
    return (moment or dt.datetime.now(dt.UTC)).astimezone(CHINA).date()


def policy_in_force(policies: Sequence[Policy], on: dt.date) -> Policy:
    """The policy with the latest ``effective_from`` on or before ``on``."""
    in_force = [p for p in policies if p.effective_from <= on]
    if not in_force:
        raise LookupError(f"no policy in force on {on.isoformat()}")
    return max(in_force, key=lambda p: p.effective_from)


# -- faults ----------------------------------------------------------------------


class UpstreamError(Exception):
    """A fault talking to a province. ``str()`` is for logs, never for clients.

    ``reached``: the request may have reached the province (False only when it
    certainly did not: no connection was made, or the breaker held it back), or may
    have been carried out there. So it is False too for the province's answer that it
    could not read the request (an `UpstreamContractError`): HTTP 400 or 413, or the
    dialect's own "malformed request" code, which each adapter lists. Such a request
    was read by nobody and done by nobody, and the same request sent again is refused
    again (the gateway ends that write FAILED instead of sending it for ever).
    """

    code: ClassVar[str] = "UPSTREAM_ERROR"

    def __init__(self, message: str, *, province: str, reached: bool = True) -> None:
        super().__init__(message)
        self.province = province
        self.reached = reached


class UpstreamUnavailable(UpstreamError):
    code = "UPSTREAM_UNAVAILABLE"


class UpstreamTimeout(UpstreamError):
    code = "UPSTREAM_TIMEOUT"


class UpstreamContractError(UpstreamError):
    code = "UPSTREAM_CONTRACT_ERROR"


class CircuitOpen(UpstreamError):
    """Not sent: the province's breaker is open after repeated failures."""

    code = "CIRCUIT_OPEN"


# -- settings and the adapter ----------------------------------------------------

MAX_ANSWER_BYTES = 4 * 1024 * 1024  # a province's answer, by default: 4 MiB


@dataclass(frozen=True, slots=True, kw_only=True)
class AdapterSettings:
    """How to reach one province. Read once from configuration."""

    base_url: str
    connect_timeout: float = 2.0
    timeout: float = 5.0  # the whole request, and each read, write and pool wait within it
    max_connections: int = 50
    # reads only: attempts after the first, the first wait (doubling, with as much
    # jitter again) and the longest wait between attempts, in seconds
    retries: int = 2
    retry_wait: float = 0.05
    retry_wait_max: float = 1.0
    # the breaker: opens after this many failures in a row, probes after ``breaker_reset``
    breaker_threshold: int = 5
    breaker_reset: float = 30.0
    # the largest answer read, in bytes, as sent and as decoded: more is a contract error
    max_answer_bytes: int = MAX_ANSWER_BYTES
    policy_overrides: Mapping[str, Any] = field(default_factory=dict)
    extra_policies: Sequence[Policy] = ()

    def network(self) -> httpx.AsyncBaseTransport:
        """The pooled connections to the province's base URL."""
        return httpx.AsyncHTTPTransport(
            limits=httpx.Limits(
                max_connections=self.max_connections,
                max_keepalive_connections=self.max_connections,
            )
        )

    def make_client(self, transport: httpx.AsyncBaseTransport | None = None) -> httpx.AsyncClient:
        """The province's one pooled client, with explicit timeouts."""
        return httpx.AsyncClient(
            base_url=self.base_url,
            transport=transport or self.network(),
            timeout=httpx.Timeout(self.timeout, connect=self.connect_timeout),
        )


class ProvinceAdapter(abc.ABC):
    """Speaks one province's dialect.

    Subclasses declare:

    * ``code``: the GB/T 2260 province prefix (``"13"``), the first two digits of
      every area code the province insures.
    * ``name``: the province's name as shown to users.
    * ``policies``: one or more `Policy` values, each with its effective date.

    and implement `find_persons`, `relatives`, `bindings_of`, `bind` and `unbind`
    (and `respond` where the province asks a relative to confirm). Methods raise
    only `UpstreamError` subclasses; use `_call` around each request and
    `_reading` around parsing so that every transport fault and every surprise
    in a payload becomes one. The client is owned by whoever made it (the
    gateway's lifespan): `aclose` is provided for convenience.
    """

    code: ClassVar[str]
    name: ClassVar[str]
    policies: ClassVar[tuple[Policy, ...]]

    def __init__(
        self,
        client: httpx.AsyncClient,
        *,
        policies: Sequence[Policy] | None = None,
        deadline: float = 10.0,
        guard: Guard | None = None,
        max_answer_bytes: int = MAX_ANSWER_BYTES,
    ) -> None:
        self.client = client
        self._deadline = deadline  # seconds for a whole request, however it trickles in
        self._max_answer_bytes = max_answer_bytes  # as sent, and as decoded
        self.guard = guard or Guard()
        self._policies: tuple[Policy, ...] = tuple(policies or type(self).policies)
        if not self._policies:
            raise ValueError(f"{type(self).__name__} declares no policy")

    @classmethod
    def configured(cls, client: httpx.AsyncClient, settings: AdapterSettings) -> ProvinceAdapter:
        """An adapter whose declared policies are adjusted by configuration.

        ``policy_overrides`` change fields of every declared policy;
        ``extra_policies`` add dated policies (a rule change announced ahead).
        """
        policies = [p.with_changes(**settings.policy_overrides) for p in cls.policies]
        return cls(
            client,
            policies=[*policies, *settings.extra_policies],
            deadline=settings.timeout,
            guard=Guard.of(settings),
            max_answer_bytes=settings.max_answer_bytes,
        )

    def policy(self, on: dt.date | None = None) -> Policy:
        """The rules in force on ``on`` (today in Beijing by default)."""
        return policy_in_force(self._policies, on or china_date())

    def serves(self, area_code: str) -> bool:
        return area_code.startswith(self.code)

    # -- what an integrator implements --------------------------------------------

    @abc.abstractmethod
    async def find_persons(self, cert_nos: Sequence[str]) -> Mapping[str, Person]:
        """The persons among ``cert_nos`` that this province insures, in one request.

        Those it does not know are simply absent from the mapping.
        """

    @abc.abstractmethod
    async def relatives(self, cert_no: str) -> Sequence[CivilRelative]:
        """The civil record's relatives of a person this province insures."""

    @abc.abstractmethod
    async def bindings_of(self, cert_nos: Sequence[str]) -> Sequence[Binding]:
        """Every binding (any status) in which one of ``cert_nos`` takes part, in one request."""

    @abc.abstractmethod
    async def bind(self, request: BindRequest) -> Binding | Refusal:
        """Ask the province to create a binding. The province's rules are authoritative."""

    @abc.abstractmethod
    async def unbind(
        self, binding_id: str, *, actor: str, request_id: str | None = None
    ) -> Binding | Refusal:
        """End a binding on behalf of ``actor`` (the authorizer's ID number)."""

    async def respond(
        self, binding_id: str, *, actor: str, accept: bool, request_id: str | None = None
    ) -> Binding | Refusal:
        """The invited relative (``actor``) accepts or declines a pending binding.

        Provinces without confirmation never hold a pending binding, so the
        default refuses.
        """
        return Refusal(RefusalCode.INVALID_BINDING_STATE)

    # Settlement. A province whose system picks the paying authorizer itself just
    # passes the bill on; one that must be told picks it here (the bound
    # authorizer with the largest balance, from `bindings_of` and `find_persons`).

    async def settle(self, request: SettleRequest) -> Settlement | Refusal:
        """Settle a bill at the province. The default: this province does not (yet)."""
        return Refusal(RefusalCode.SETTLEMENT_NOT_SUPPORTED)

    async def reverse(
        self,
        settlement_id: str,
        *,
        institution_code: str,
        reason: str,
        request_id: str | None = None,
    ) -> Settlement | Refusal:
        """Undo a settlement of the same day, once, for the institution that made it."""
        return Refusal(RefusalCode.SETTLEMENT_NOT_SUPPORTED)

    async def settlements_of(self, cert_nos: Sequence[str]) -> Sequence[Settlement]:
        """Settlements in which one of ``cert_nos`` was the patient or the paying authorizer."""
        return ()

    # -- provided ------------------------------------------------------------------

    async def funded_authorizer(
        self, beneficiary: str, *, owed: Decimal | None = None
    ) -> Party | None:
        """Who pays for ``beneficiary`` by mutual aid under the national rule: of the
        authorizers actively bound to them, the one with the largest balance above zero
        (the earliest binding on a tie); None if nobody. With ``owed`` (a self-pay part),
        also None when the beneficiary's own account covers it. Two reads at most.

        For adapters whose province must be told who pays, and for the gateway's answers.
        """
        bound = sorted(
            (
                b
                for b in await self.bindings_of([beneficiary])
                if b.status is BindingStatus.ACTIVE and b.beneficiary.cert_no == beneficiary
            ),
            key=lambda b: b.created_at,  # stable: listing order among equals
        )
        authorizers = {b.authorizer.cert_no: b.authorizer for b in bound}
        if not authorizers:
            return None
        asked = [*([beneficiary] if owed is not None else []), *authorizers]
        found = await self.find_persons(asked)
        if owed is not None:
            own = found.get(beneficiary)
            if own is None or (own.balance or Decimal(0)) >= owed:
                return None  # unknown (the province refuses the bill) or covered
        best: tuple[Decimal, Party] | None = None
        for cert_no, party in authorizers.items():
            person = found.get(cert_no)
            money = person.balance if person is not None else None
            if money is not None and money > 0 and (best is None or money > best[0]):
                best = (money, party)
        return None if best is None else best[1]

    async def aclose(self) -> None:
        await self.client.aclose()

    @property
    def breaker_state(self) -> BreakerState:
        return self.guard.state

    async def _call(
        self, method: str, url: str, *, read: bool = False, **kwargs: Any
    ) -> httpx.Response:
        """Send one request through the breaker; transport faults and HTTP 5xx become
        `UpstreamError`s. A ``read`` (it changes nothing) is tried again after an
        unavailable or timed-out attempt; a write is sent once.

        4xx answers are returned: dialects use them for refusals.
        """
        if not read:
            return await self._attempt(method, url, kwargs)
        # The first attempt goes out directly: most reads succeed, and a tenacity
        # `AsyncRetrying` costs more to set up than the attempt. Only a failed read
        # enters the retry loop, whose first attempt is that failure.
        try:
            return await self._attempt(method, url, kwargs)
        except (UpstreamUnavailable, UpstreamTimeout) as exc:
            failed: BaseException | None = exc
        async for attempt in self.guard.retrying():
            with attempt:
                if failed is not None:
                    first, failed = failed, None
                    raise first
                return await self._attempt(method, url, kwargs)
        raise AssertionError("unreachable: tenacity re-raises the last error")  # pragma: no cover

    async def _attempt(self, method: str, url: str, kwargs: dict[str, Any]) -> httpx.Response:
        """One attempt through the province's breaker (`adapters.breaker`): unavailable
        and timed-out attempts are its failures, answers its successes. Anything else
        raised (a cancelled request: the caller stopped waiting; an unreadable body: the
        province answered, wrongly) is neither: it neither counts towards opening nor
        closes a probing breaker."""
        what = f"{method} {url}"
        breaker = self.guard.breaker
        try:
            probe = breaker.admit()  # one probe at a time; the rest are refused meanwhile
        except Refused as exc:
            raise CircuitOpen(f"{what}: circuit open", province=self.code, reached=False) from exc
        try:
            response = await self._send(what, method, url, kwargs)
        except (UpstreamUnavailable, UpstreamTimeout):
            breaker.failed(probe)
            raise
        except BaseException:
            breaker.released(probe)
            raise
        breaker.succeeded(probe)
        return response

    async def _send(
        self, what: str, method: str, url: str, kwargs: dict[str, Any]
    ) -> httpx.Response:
        """One attempt, its whole exchange within the deadline: the answer, read (a 5xx's
        body is not), or the `UpstreamError` it amounts to."""
        headers = httpx.Headers(kwargs.get("headers"))
        headers["Accept-Encoding"] = _CODINGS  # what `_Decoder` decodes
        try:
            async with asyncio.timeout(self._deadline) as deadline:
                token = _DEADLINE.set(deadline)
                try:
                    async with self.client.stream(
                        method, url, **{**kwargs, "headers": headers}
                    ) as streamed:
                        response = streamed
                        if streamed.status_code < 500:
                            response = await self._read(what, streamed)
                finally:
                    _DEADLINE.reset(token)
        except TimeoutError as exc:
            raise UpstreamTimeout(f"{what}: deadline passed", province=self.code) from exc
        except (httpx.ConnectTimeout, httpx.PoolTimeout) as exc:  # nothing was sent
            raise UpstreamTimeout(f"{what}: {exc!r}", province=self.code, reached=False) from exc
        except httpx.TimeoutException as exc:
            raise UpstreamTimeout(f"{what}: {exc!r}", province=self.code) from exc
        except httpx.DecodingError as exc:  # a body we cannot even decompress or decode
            raise UpstreamContractError(f"{what}: {exc!r}", province=self.code) from exc
        except httpx.ConnectError as exc:  # refused: nothing was sent
            raise UpstreamUnavailable(
                f"{what}: {exc!r}", province=self.code, reached=False
            ) from exc
        except httpx.HTTPError as exc:  # dropped connections, protocol errors, loops
            raise UpstreamUnavailable(f"{what}: {exc!r}", province=self.code) from exc
        if response.status_code >= 500:
            raise UpstreamUnavailable(f"{what}: HTTP {response.status_code}", province=self.code)
        return response

    async def _read(self, what: str, response: httpx.Response) -> httpx.Response:
        """``response`` read and decoded, chunk by chunk, refused once it is larger than
        ``max_answer_bytes`` as sent or as decoded: the answer as one with its decoded
        body (no ``Content-Encoding`` left to undo).

        httpx's own decoding turns each chunk received into all it decodes to at once
        (64 KiB of gzip can hold 64 MiB); `_Decoder` makes at most `_PIECE` bytes a step.
        Undecodable bytes raise `httpx.DecodingError`, as httpx would.
        """
        limit = self._max_answer_bytes
        if response.is_stream_consumed:  # read already by its transport (in-process ones)
            if len(response.content) > limit:
                raise self._too_large(what, f"{len(response.content)} bytes")
            return response
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise self._too_large(what, f"{declared} bytes declared")
        decoder = _Decoder(response.headers.get_list("content-encoding", split_commas=True))
        received = decoded = 0
        parts: list[bytes] = []
        async for chunk in response.aiter_raw():
            received += len(chunk)
            if received > limit:
                raise self._too_large(what, f"{received} bytes received")
            for piece in decoder.decode(chunk):
                decoded += len(piece)
                if decoded > limit:
                    raise self._too_large(what, f"{decoded} bytes decoded")
                parts.append(piece)
        kept = [
            (name, value)
            for name, value in response.headers.multi_items()
            if name not in ("content-encoding", "content-length", "transfer-encoding")
        ]
        return httpx.Response(
            response.status_code,
            headers=kept,
            content=b"".join(parts),
            request=response.request,
            extensions=response.extensions,
        )

    def _too_large(self, what: str, size: str) -> UpstreamContractError:
        return UpstreamContractError(
            f"{what}: answer over max_answer_bytes ({self._max_answer_bytes}): {size}",
            province=self.code,
        )

    @contextlib.contextmanager
    def _reading(self, what: str) -> Iterator[None]:
        """Turn any surprise while parsing an answer into `UpstreamContractError`."""
        try:
            yield
        except UpstreamError:
            raise
        except (
            LookupError,  # KeyError, IndexError, an unknown text encoding
            TypeError,
            ValueError,
            AttributeError,
            ArithmeticError,  # decimal.InvalidOperation
            RecursionError,  # absurdly nested JSON
        ) as exc:
            raise UpstreamContractError(f"{what}: {exc!r}", province=self.code) from exc

    def _contract_error(self, what: str) -> UpstreamContractError:
        return UpstreamContractError(what, province=self.code)

    def _unread(self, what: str) -> UpstreamContractError:
        """The province's answer that it could not read the request (malformed): it did
        nothing with it, so the request did not reach it (``reached`` False)."""
        return UpstreamContractError(what, province=self.code, reached=False)

    def _refuse_unread(self, what: str, response: httpx.Response) -> None:
        """Raise `_unread` for HTTP 400 (Bad Request) or 413 (Content Too Large): the
        province, or a proxy in front of it, could not read the request. Every dialect's
        answer is checked for these first, whatever its body (use inside `_reading`)."""
        if response.status_code in _UNREAD_STATUSES:
            raise self._unread(f"{what}: HTTP {response.status_code}")


# HTTP statuses that say the request could not be read: nothing was done with it.
_UNREAD_STATUSES = frozenset({400, 413})
# The content codings asked for and decoded: those zlib decodes a bounded piece at a time.
_CODINGS = "gzip, deflate"
_PIECE = 64 * 1024  # the most a coding decodes in one step, in bytes
_MAX_CODINGS = 2  # codings applied one after another ("gzip, gzip"): more is no answer


class _Inflater:
    """One gzip or deflate coding, decoded `_PIECE` bytes at most per step. "deflate"
    is a zlib stream or (as some servers send it, and httpx accepts) raw deflate: its
    first two bytes tell which."""

    def __init__(self, coding: str) -> None:
        gzip = coding == "gzip"
        self._zlib = zlib.decompressobj(zlib.MAX_WBITS | 16 if gzip else zlib.MAX_WBITS)
        self._head: bytes | None = None if gzip else b""  # deflate's first bytes, until told

    def decode(self, data: bytes) -> Iterator[bytes]:
        if self._head is not None:
            data = self._head + data
            if len(data) < 2:
                self._head = data
                return
            self._head = None
            try:
                zlib.decompressobj().decompress(data[:2])  # a zlib header?
            except zlib.error:
                self._zlib = zlib.decompressobj(-zlib.MAX_WBITS)
        while not self._zlib.eof:  # what follows the end is ignored, as httpx does
            try:
                piece = self._zlib.decompress(data, _PIECE)
            except zlib.error as exc:
                raise httpx.DecodingError(str(exc)) from exc
            data = self._zlib.unconsumed_tail
            if piece:
                yield piece
            if not data and len(piece) < _PIECE:  # a full piece may have more behind it
                return


class _Decoder:
    """An answer's ``Content-Encoding`` codings undone, the last applied first, each a
    bounded piece at a time (so a chain of them holds a few pieces at most). A coding
    other than those asked for (`_CODINGS`) or ``identity``, or more than
    `_MAX_CODINGS` of them, raises `httpx.DecodingError`."""

    def __init__(self, codings: Iterable[str]) -> None:
        stages = []
        for coding in (c.strip().lower() for c in codings):
            if coding in ("gzip", "deflate"):
                stages.append(_Inflater(coding))
            elif coding not in ("identity", ""):
                raise httpx.DecodingError(f"content coding {coding!r} was not asked for")
        if len(stages) > _MAX_CODINGS:
            raise httpx.DecodingError(f"{len(stages)} content codings, one after another")
        self._stages = stages[::-1]  # the last applied is undone first

    def decode(self, data: bytes) -> Iterator[bytes]:
        return self._through(self._stages, data)

    def _through(self, stages: Sequence[_Inflater], data: bytes) -> Iterator[bytes]:
        if not stages:
            yield data
            return
        for piece in stages[0].decode(data):
            yield from self._through(stages[1:], piece)


class Guard:
    """A province's breaker and its retry rule for reads (see `AdapterSettings`).

    The breaker counts unavailable and timed-out requests as failures and answers
    as successes; an unreadable answer and a cancelled request (a caller that
    stopped waiting) are neither (`ProvinceAdapter._attempt`).
    """

    def __init__(
        self,
        *,
        retries: int = 2,
        retry_wait: float = 0.05,
        retry_wait_max: float = 1.0,
        breaker_threshold: int = 5,
        breaker_reset: float = 30.0,
    ) -> None:
        self._retries = retries
        self._wait = wait_exponential_jitter(
            multiplier=retry_wait, max=retry_wait_max, jitter=retry_wait
        )
        self.breaker = Breaker(breaker_threshold, breaker_reset)

    @classmethod
    def of(cls, settings: AdapterSettings) -> Guard:
        return cls(
            retries=settings.retries,
            retry_wait=settings.retry_wait,
            retry_wait_max=settings.retry_wait_max,
            breaker_threshold=settings.breaker_threshold,
            breaker_reset=settings.breaker_reset,
        )

    def retrying(self) -> AsyncRetrying:
        return AsyncRetrying(
            stop=stop_after_attempt(1 + self._retries),
            wait=self._wait,
            retry=retry_if_exception_type((UpstreamUnavailable, UpstreamTimeout)),
            reraise=True,
        )

    @property
    def state(self) -> BreakerState:
        return self.breaker.state


# The deadline of the request being sent (for transports that count outcomes).
_DEADLINE: contextvars.ContextVar[asyncio.Timeout | None] = contextvars.ContextVar(
    "deadline", default=None
)


def deadline_passed() -> bool:
    """Whether the request being sent was cut off by its adapter's deadline (a transport
    sees that as a cancellation; it is a timeout)."""
    deadline = _DEADLINE.get()
    return deadline is not None and deadline.expired()


def text(value: object) -> str:
    """A dialect's text field, checked to be a string (use inside `_reading`)."""
    if not isinstance(value, str):
        raise TypeError(f"not a string: {value!r}")
    return value


def parse_money(value: object) -> Decimal:
    """A CNY amount from a dialect's string, as `Decimal` with two places; never via float."""
    if isinstance(value, float) or value is None or isinstance(value, bool):
        raise ValueError(f"not a money string: {value!r}")
    amount = Decimal(str(value))
    if not amount.is_finite():
        raise ValueError(f"not a finite amount: {value!r}")
    return amount.quantize(Decimal("0.01"))

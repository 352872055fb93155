"""The interface every province implements, and the vocabulary it shares with the gateway.

An adapter turns one provincial system's dialect into these types. To add a
province, subclass `ProvinceAdapter`, declare `code`, `name` and `policies`,
implement the five abstract coroutines, and register the class under the
``gongji.adapters`` entry-point group. Everything else (the pooled HTTP client,
timeouts, fault mapping, policy lookup by date) comes with it. Import what you need
from here: this module is the public surface, and the modules behind it can be
read one at a time:

    adapters.vocabulary   the shared words: people, bindings, settlements, refusals
    adapters.policy       a province's rules as dated data, the Beijing date
    adapters.faults       the fault tree below
    adapters.transport    settings, the pooled client, one bounded exchange
    adapters.guard        the breaker (adapters.breaker) and the retry rule for reads
    adapters.adapter      ProvinceAdapter itself

Faults raised by adapters form one tree; the gateway maps it to GraphQL
``extensions.code`` values:

    UpstreamError                 (abstract: something went wrong talking to a province)
    ├── UpstreamUnavailable       UPSTREAM_UNAVAILABLE  connection refused/reset, HTTP 5xx
    ├── UpstreamTimeout           UPSTREAM_TIMEOUT      connect, read, write or pool timeout
    ├── UpstreamContractError     UPSTREAM_CONTRACT_ERROR  an answer we cannot understand
    │                                                       (or larger than max_answer_bytes)
    ├── CircuitOpen               CIRCUIT_OPEN          not sent: the province failed repeatedly
    └── UpstreamOverloaded        UPSTREAM_OVERLOADED   not sent: the province is at its limits

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

Each attempt has one deadline for the whole exchange, and each answer is read as
a bounded stream (`adapters.transport`).
"""

from __future__ import annotations

from adapters.adapter import (
    Chosen,
    ProvinceAdapter,
)
from adapters.breaker import (
    BreakerState,
)
from adapters.faults import (
    CircuitOpen,
    UpstreamContractError,
    UpstreamError,
    UpstreamOverloaded,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from adapters.guard import (
    Guard,
)
from adapters.payer import (
    bound_authorizers,
    choose_payer,
)
from adapters.policy import (
    CHINA,
    CORE_FAMILY,
    NEAR_RELATIVES,
    Policy,
    china_date,
    policy_in_force,
)
from adapters.transport import (
    MAX_ANSWER_BYTES,
    AdapterSettings,
    deadline_passed,
)
from adapters.vocabulary import (
    Area,
    Binding,
    BindingStatus,
    BindRequest,
    ChangeKind,
    CivilRelative,
    FamilyRead,
    Funding,
    HoldStatus,
    InsuranceStatus,
    InsuranceType,
    MedicalType,
    Party,
    Person,
    Premium,
    PremiumPayment,
    PremiumRequest,
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

__all__ = [
    "CHINA",
    "CORE_FAMILY",
    "MAX_ANSWER_BYTES",
    "NEAR_RELATIVES",
    "AdapterSettings",
    "Area",
    "BindRequest",
    "Binding",
    "BindingStatus",
    "BreakerState",
    "ChangeKind",
    "Chosen",
    "CircuitOpen",
    "CivilRelative",
    "FamilyRead",
    "Funding",
    "Guard",
    "HoldStatus",
    "InsuranceStatus",
    "InsuranceType",
    "MedicalType",
    "Party",
    "Person",
    "Policy",
    "Premium",
    "PremiumPayment",
    "PremiumRequest",
    "ProvinceAdapter",
    "Quota",
    "QuotaHold",
    "Refusal",
    "RefusalCode",
    "RegistrationChange",
    "Relation",
    "SettleRequest",
    "Settlement",
    "UpstreamContractError",
    "UpstreamError",
    "UpstreamOverloaded",
    "UpstreamTimeout",
    "UpstreamUnavailable",
    "bound_authorizers",
    "china_date",
    "choose_payer",
    "deadline_passed",
    "new_request_id",
    "parse_money",
    "policy_in_force",
    "text",
]

"""Spending and authorization records in the graph: Relay connections on `me`."""

from __future__ import annotations

import asyncio
import datetime as dt

import strawberry

from adapters.base import Settlement
from gateway.common.certno import normalize
from gateway.common.ids import encode_id
from gateway.graph.errors import GatewayError
from gateway.graph.settlement_schema import MedicalType, SettlementStatus, SettlementStatusType
from gateway.graph.types import ChannelType, Info_, Money, PersonRef, Province, Relation
from gateway.provinces.directory import Located
from gateway.rules.mutual_aid import BINDING_KIND
from gateway.rules.settlement import SETTLEMENT_KIND
from gateway.state.records import (
    AuthorizationRecord,
    Event,
    Filters,
    Page,
    Role,
    Spending,
    authorizations,
    decode_cursor,
    paginate,
    spending,
)

RecordRole = strawberry.enum(Role, name="RecordRole")
AuthorizationEvent = strawberry.enum(Event, name="AuthorizationEvent")
RecordChannel = ChannelType


# Each connection's cursors are its own.
SPENDING = "spending"
AUTHORIZATIONS = "authorizations"


@strawberry.type
class PageInfo:
    has_next_page: bool
    end_cursor: str | None


@strawberry.type(
    description="A settlement: who, where, when, how much. The patient's records hold every"
    " settlement of theirs, whatever it paid; an authorizer's, what their account paid."
)
class SpendingRecord:
    settlement_id: strawberry.ID
    settled_at: dt.datetime
    patient: PersonRef
    payer: PersonRef | None = strawberry.field(
        description="The authorizer whose account paid; null when mutual aid paid nothing."
    )
    amount: Money = strawberry.field(
        description="What the payer's account paid (共济支付); 0.00 when mutual aid paid nothing."
    )
    total_amount: Money | None = strawberry.field(
        description="The whole bill: for the patient only (null for the authorizer)."
    )
    own_account_paid: Money | None = strawberry.field(
        description="What the patient's own account paid: for the patient only (null for"
        " the authorizer)."
    )
    institution_code: str
    medical_type: MedicalType  # type: ignore[valid-type]
    status: SettlementStatusType  # type: ignore[valid-type]
    province: Province = strawberry.field(description="The province that settled the bill.")
    payer_province_code: strawberry.Private[str | None]

    @strawberry.field(
        description="The province whose account paid `amount`: another one for a quota set"
        " aside across provinces, else `province`; null when mutual aid paid nothing."
    )
    def payer_province(self, info: Info_) -> Province | None:
        if self.payer is None:
            return None
        return self.province.or_other(self.payer_province_code, info)

    @classmethod
    def of(cls, record: Spending, caller: str) -> SpendingRecord:
        done: Settlement = record.settlement
        payer = done.mutual_aid_payer
        patient = done.patient.cert_no == caller
        return cls(
            settlement_id=strawberry.ID(encode_id(SETTLEMENT_KIND, record.adapter.code, done.id)),
            settled_at=done.settled_at,
            patient=PersonRef.of(done.patient, caller),
            payer=None if payer is None else PersonRef.of(payer, caller),
            amount=Money(done.mutual_aid_paid),
            total_amount=Money(done.total) if patient else None,
            own_account_paid=Money(done.own_account_paid) if patient else None,
            institution_code=done.institution_code,
            medical_type=done.medical_type,
            status=SettlementStatus.REVERSED if done.reversed_at else SettlementStatus.SETTLED,
            province=Province.of(record.adapter),
            payer_province_code=done.mutual_aid_province,
        )


@strawberry.type
class SpendingRecordEdge:
    cursor: str
    node: SpendingRecord


@strawberry.type
class SpendingRecordConnection:
    edges: list[SpendingRecordEdge]
    page_info: PageInfo


@strawberry.type(
    name="AuthorizationRecord", description="Something that happened to a mutual-aid binding."
)
class AuthorizationRecordType:
    binding_id: strawberry.ID
    event: AuthorizationEvent  # type: ignore[valid-type]
    at: dt.datetime
    channel: RecordChannel | None = strawberry.field(  # type: ignore[valid-type]
        description="Through which channel (null: done outside the platform)."
    )
    authorizer: PersonRef
    beneficiary: PersonRef
    relation: Relation  # type: ignore[valid-type]

    @classmethod
    def of(cls, record: AuthorizationRecord, caller: str) -> AuthorizationRecordType:
        return cls(
            binding_id=strawberry.ID(encode_id(BINDING_KIND, record.province, record.binding_id)),
            event=record.event,
            at=record.at,
            channel=record.channel,
            authorizer=PersonRef.of(record.authorizer, caller),
            beneficiary=PersonRef.of(record.beneficiary, caller),
            relation=record.relation,
        )


@strawberry.type
class AuthorizationRecordEdge:
    cursor: str
    node: AuthorizationRecordType


@strawberry.type
class AuthorizationRecordConnection:
    edges: list[AuthorizationRecordEdge]
    page_info: PageInfo


def _info(page: Page[object]) -> PageInfo:
    return PageInfo(
        has_next_page=page.has_next, end_cursor=page.items[-1][0] if page.items else None
    )


def _filters(
    info: Info_,
    connection: str,
    first: int,
    after: str | None,
    since: dt.date | None,
    until: dt.date | None,
    relative: str | None,
) -> Filters:
    """The filters of a page; a page of no items, or a cursor that is not one of this
    connection's, is the client's mistake (BAD_USER_INPUT naming the argument)."""
    if first < 1:
        raise GatewayError("BAD_USER_INPUT", info.context.lang, argument="first")
    if after is not None and decode_cursor(connection, after) is None:
        raise GatewayError("BAD_USER_INPUT", info.context.lang, argument="after")
    return Filters(since, until, normalize(relative) if relative else None)


async def spending_records(
    located: Located,
    info: Info_,
    role: Role,
    first: int,
    after: str | None,
    since: dt.date | None,
    until: dt.date | None,
    relative: str | None,
) -> SpendingRecordConnection:
    filters = _filters(info, SPENDING, first, after, since, until, relative)  # before asking
    me = located.person.cert_no
    # mutual aid settles in the patient's province: mine, and any that binds across provinces
    asked = [
        a
        for a in info.context.services.provinces.values()
        if a is located.adapter or a.policy().cross_province
    ]
    answers = await asyncio.gather(*(a.settlements_of([me]) for a in asked))
    found = [(s, a) for a, settled in zip(asked, answers, strict=True) for s in settled]
    kept = spending(me, role, found, filters)
    page = paginate(SPENDING, kept, lambda r: r.key, first, after)
    return SpendingRecordConnection(
        edges=[SpendingRecordEdge(cursor=c, node=SpendingRecord.of(r, me)) for c, r in page.items],
        page_info=_info(page),  # type: ignore[arg-type]
    )


async def authorization_records(
    located: Located,
    info: Info_,
    first: int,
    after: str | None,
    since: dt.date | None,
    until: dt.date | None,
    relative: str | None,
) -> AuthorizationRecordConnection:
    filters = _filters(info, AUTHORIZATIONS, first, after, since, until, relative)
    me = located.person.cert_no
    services = info.context.services
    journal, bindings = await asyncio.gather(
        services.journal.of(me), services.mutual_aid.bindings_of(me, located.adapter)
    )
    kept = authorizations(me, journal, bindings, filters)
    page = paginate(AUTHORIZATIONS, kept, lambda r: r.key, first, after)
    return AuthorizationRecordConnection(
        edges=[
            AuthorizationRecordEdge(cursor=c, node=AuthorizationRecordType.of(r, me))
            for c, r in page.items
        ],
        page_info=_info(page),  # type: ignore[arg-type]
    )

"""Subscriptions: what happens to the caller's family, as it happens.

`familyEvents` follows the events addressed to the caller (`gateway.state.events`):
from now, or after the cursor of the last event a client saw (it gets what it missed
meanwhile, as long as it is kept). Other people appear masked, as in every answer.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncGenerator, Mapping
from decimal import Decimal
from typing import Annotated, Any

import strawberry

from adapters import base
from gateway.common.ids import encode_id
from gateway.graph.errors import GatewayError
from gateway.graph.kinship_schema import KinshipStatus, global_link_id
from gateway.graph.settlement_schema import MedicalType
from gateway.graph.types import (
    BindingStatus,
    ErrorCode,
    Info_,
    Money,
    PersonRef,
    Relation,
)
from gateway.rules.kinship import LinkStatus
from gateway.rules.mutual_aid import BINDING_KIND
from gateway.rules.settlement import SETTLEMENT_KIND
from gateway.state.events import CursorExpired, Happened, Kind
from gateway.state.records import decode_cursor, encode_cursor

CONNECTION = "events"  # the cursors' connection name (`gateway.state.records`)

FamilyEventKind = strawberry.enum(
    Kind,
    name="FamilyEventKind",
    description="What happened: an invitation or a request waiting for me, the outcome of"
    " what I asked, a binding ended, a payment from my account for a relative.",
)


@strawberry.type(description="A binding as it stands after the event.")
class BindingChange:
    binding_id: strawberry.ID
    status: BindingStatus  # type: ignore[valid-type]
    relation: Relation  # type: ignore[valid-type]
    authorizer: PersonRef
    beneficiary: PersonRef
    province: str = strawberry.field(description="The province holding it (code).")


@strawberry.type(description="A kinship link as it stands after the event.")
class KinshipChange:
    link_id: strawberry.ID
    status: KinshipStatus  # type: ignore[valid-type]
    relation: Relation  # type: ignore[valid-type]
    adder: PersonRef
    member: PersonRef


@strawberry.type(description="My account paid (part of) a relative's bill.")
class RelativePayment:
    settlement_id: strawberry.ID
    patient: PersonRef
    institution_code: str
    medical_type: MedicalType  # type: ignore[valid-type]
    amount: Money = strawberry.field(description="What my account paid, in yuan.")
    balance_after: Money | None = strawberry.field(description="My balance after it.")
    settled_at: dt.datetime


@strawberry.type(description="A write answered SUBMITTED earlier, now known.")
class WriteResolution:
    operation: str
    idempotency_key: str
    refusal: ErrorCode | None  # type: ignore[valid-type]
    binding: BindingChange | None


@strawberry.type(description="Something that happened to the caller or their family.")
class FamilyEvent:
    cursor: str = strawberry.field(
        description="Subscribe again with `after` set to this to get what follows it."
    )
    kind: FamilyEventKind  # type: ignore[valid-type]
    at: dt.datetime
    binding: BindingChange | None = None
    kinship: KinshipChange | None = None
    payment: RelativePayment | None = None
    write: WriteResolution | None = None

    @classmethod
    def of(cls, happened: Happened, caller: str) -> FamilyEvent:
        body = happened.body
        event = cls(cursor=cursor_of(happened), kind=happened.kind, at=happened.at)
        if happened.kind is Kind.PAID_FOR_RELATIVE:
            event.payment = _payment(body, caller)
        elif happened.kind is Kind.WRITE_RESOLVED:
            refusal = body.get("refusal")
            event.write = WriteResolution(
                operation=body["operation"],
                idempotency_key=body["idempotencyKey"],
                refusal=None if refusal is None else base.RefusalCode(refusal),
                binding=_binding(body["binding"], caller) if body.get("binding") else None,
            )
        elif "bindingId" in body:
            event.binding = _binding(body, caller)
        elif "linkId" in body:
            event.kinship = KinshipChange(
                link_id=global_link_id(body["linkId"]),
                status=LinkStatus(body["status"]),
                relation=base.Relation(body["relation"]),
                adder=_party(body["adder"], caller),
                member=_party(body["member"], caller),
            )
        return event


def cursor_of(happened: Happened) -> str:
    return encode_cursor(CONNECTION, f"{happened.seq}|{happened.at.isoformat()}")


def _party(facts: Mapping[str, Any], caller: str) -> PersonRef:
    return PersonRef.of(base.Party(facts["certNo"], facts["name"]), caller)


def _binding(body: Mapping[str, Any], caller: str) -> BindingChange:
    return BindingChange(
        binding_id=strawberry.ID(encode_id(BINDING_KIND, body["province"], body["bindingId"])),
        status=base.BindingStatus(body["status"]),
        relation=base.Relation(body["relation"]),
        authorizer=_party(body["authorizer"], caller),
        beneficiary=_party(body["beneficiary"], caller),
        province=body["province"],
    )


def _payment(body: Mapping[str, Any], caller: str) -> RelativePayment:
    after = body.get("balanceAfter")
    return RelativePayment(
        settlement_id=strawberry.ID(
            encode_id(SETTLEMENT_KIND, body["province"], body["settlementId"])
        ),
        patient=_party(body["patient"], caller),
        institution_code=body["institution"],
        medical_type=base.MedicalType(body["medicalType"]),
        amount=Money(Decimal(body["amount"])),
        balance_after=None if after is None else Money(Decimal(after)),
        settled_at=dt.datetime.fromisoformat(body["settledAt"]),
    )


def _after(cursor: str | None, info: Info_) -> tuple[int, dt.datetime] | None:
    if cursor is None:
        return None
    key = decode_cursor(CONNECTION, cursor)
    seq, _, at = (key or "").partition("|")
    try:
        return int(seq), dt.datetime.fromisoformat(at)
    except ValueError:
        raise GatewayError("BAD_USER_INPUT", info.context.lang, field="after") from None


@strawberry.type
class Subscription:
    @strawberry.subscription(  # type: ignore[untyped-decorator]
        description="The caller's events as they happen: invitations and requests waiting"
        " for them, the outcome of what they asked, bindings ended, payments from their"
        " account for a relative. With `after` (an event's cursor), first the events"
        " since that one."
    )
    async def family_events(
        self,
        info: Info_,
        after: Annotated[
            str | None,
            strawberry.argument(description="The cursor of the last event the client saw."),
        ] = None,
    ) -> AsyncGenerator[FamilyEvent, None]:
        caller = info.context.insured()
        events = info.context.services.events
        since = _after(after, info)
        if since is None:
            seq = await events.newest()
        else:
            seq, at = since
            try:
                events.check(at)
            except CursorExpired:
                raise GatewayError("CURSOR_EXPIRED", info.context.lang) from None
        async for happened in events.follow(caller, seq):
            yield FamilyEvent.of(happened, caller)

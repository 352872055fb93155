"""`auditLog` for the ADMIN role: the audit trail, masked."""

from __future__ import annotations

import datetime as dt

import strawberry

from gateway.common.auth import ADMIN
from gateway.common.certno import mask_cert_no
from gateway.graph.audit import Entry
from gateway.graph.errors import GatewayError
from gateway.graph.marks import AUDITED
from gateway.graph.types import Info_


@strawberry.type(description="Who did what to whom, when, how it ended; ID numbers masked.")
class AuditEntry:
    seq: int
    at: dt.datetime
    request_id: str
    actor: str | None
    roles: list[str]
    client: str | None
    operation: str
    fields: list[str] = strawberry.field(
        description="The top-level fields that ran (for a request refused before it ran,"
        " those it asked for), then what the answers disclosed of other people, whatever"
        " was selected: e.g. `Settlement.patientBalanceAfter`, a read of that balance."
    )
    targets: list[str] = strawberry.field(
        description="The ID numbers in the arguments of the fields that ran (variables"
        " resolved; other variables sent name no one), then the people the answers were"
        " about (a settlement's patient and paying authorizer, a kinship link's other side)."
    )
    channel: str | None
    outcome: str = strawberry.field(
        description="OK, or the codes of the faults and of the refusals the gateway decided,"
        " whatever was selected of the answer."
    )
    document: str | None = strawberry.field(
        default=None,
        description="The registered name of the operation, when the request named a"
        " registered document by its id (trusted documents); null for a document sent as"
        " text.",
    )

    @classmethod
    def of(cls, entry: Entry) -> AuditEntry:
        return cls(
            seq=entry.seq,
            at=entry.at,
            request_id=entry.request_id,
            actor=None if entry.actor is None else mask_cert_no(entry.actor),
            roles=list(entry.roles),
            client=entry.client,
            operation=entry.operation,
            fields=list(entry.fields),
            targets=[mask_cert_no(t) for t in entry.targets],
            channel=entry.channel,
            outcome=entry.outcome,
            document=entry.document,
        )


@strawberry.type
class AuditQueries:
    @strawberry.field(
        description="The audit log, newest first (ADMIN role): `before` a seq to page back,"
        " `first` from 1 to 200. Null, with a FORBIDDEN error at its path, for anyone else:"
        " the rest of the query is still answered.",
        metadata=AUDITED,
    )
    async def audit_log(
        self, info: Info_, first: int = 50, before: int | None = None
    ) -> list[AuditEntry] | None:
        caller = info.context.signed_in()
        if ADMIN not in caller.roles:
            raise GatewayError("FORBIDDEN", info.context.lang)
        if first < 1:
            raise GatewayError("BAD_USER_INPUT", info.context.lang, argument="first")
        entries = await info.context.services.audit.newest(min(first, 200), before)
        return [AuditEntry.of(e) for e in entries]

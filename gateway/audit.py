"""The audit log: who did what to whom, when, through which channel and role, and how
it ended, for every mutation and every read of other people's data.

Written by the `Audited` schema extension after each such operation, into the
gateway's store, append-only. ``targets`` are the ID numbers the request named
(its variables and arguments); an ``ADMIN`` reads the log masked.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
from collections import OrderedDict
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from graphql import OperationDefinitionNode, OperationType, StringValueNode, Visitor, visit
from strawberry.extensions import SchemaExtension

from gateway.certno import is_valid, normalize
from gateway.operation import CACHED_QUERY_BYTES, chosen, me_fields, top_fields
from gateway.store import Store

log = logging.getLogger(__name__)

# Queries that read other people's data (or can): audited like mutations.
AUDITED_QUERIES = frozenset(
    {"node", "mutualAidDiagnosis", "kinshipReviewQueue", "kinshipUsage", "auditLog"}
)
AUDITED_ME_FIELDS = frozenset(
    {
        "family",
        "kinshipMembers",
        "addedMeAsMember",
        "mutualAidBindings",
        "spendingRecords",
        "authorizationRecords",
    }
)
_CERT = re.compile(r"^[0-9]{17}[0-9Xx]$")


@dataclass(frozen=True, slots=True, kw_only=True)
class Entry:
    seq: int
    at: dt.datetime
    request_id: str
    actor: str | None
    roles: Sequence[str]
    client: str | None
    operation: str
    fields: Sequence[str]
    targets: Sequence[str]
    channel: str | None
    outcome: str


class AuditLog:
    def __init__(self, store: Store) -> None:
        self._store = store

    async def append(self, entry: Entry) -> None:
        async with self._store.transaction() as db:
            await db.execute(
                "INSERT INTO audit (at, request_id, actor, roles, client, operation, fields,"
                " targets, channel, outcome) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    entry.at.isoformat(),
                    entry.request_id,
                    entry.actor,
                    json.dumps(list(entry.roles)),
                    entry.client,
                    entry.operation,
                    json.dumps(list(entry.fields)),
                    json.dumps(list(entry.targets)),
                    entry.channel,
                    entry.outcome,
                ),
            )

    async def newest(self, first: int, before: int | None) -> list[Entry]:
        """Up to ``first`` entries, newest first, older than ``before`` (a seq) if given."""
        async with (
            self._store.transaction() as db,
            db.execute(
                "SELECT seq, at, request_id, actor, roles, client, operation, fields, targets,"
                " channel, outcome FROM audit WHERE seq < ? ORDER BY seq DESC LIMIT ?",
                (before if before is not None else 2**62, first),
            ) as cur,
        ):
            rows = await cur.fetchall()
        return [
            Entry(
                seq=row[0],
                at=dt.datetime.fromisoformat(row[1]),
                request_id=row[2],
                actor=row[3],
                roles=json.loads(row[4]),
                client=row[5],
                operation=row[6],
                fields=json.loads(row[7]),
                targets=json.loads(row[8]),
                channel=row[9],
                outcome=row[10],
            )
            for row in rows
        ]


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _strings(item)


class _Literals(Visitor):
    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []

    def enter_string_value(self, node: StringValueNode, *_: Any) -> None:
        self.found.append(node.value)


# The string literals of recent operations: a cached document is the same object on
# every request (`gateway.schema`), so it is walked once. The entry holds its
# operation, so an id is not reused while it is kept; a document too long for the
# parser's cache is new on every request and is not kept here either.
_LITERALS: OrderedDict[int, tuple[OperationDefinitionNode, list[str]]] = OrderedDict()
_LITERALS_KEPT = 512


def _literals(operation: OperationDefinitionNode) -> list[str]:
    kept = _LITERALS.get(id(operation))
    if kept is not None and kept[0] is operation:
        _LITERALS.move_to_end(id(operation))
        return kept[1]
    literals = _Literals()
    visit(operation, literals)
    if operation.loc is None or len(operation.loc.source.body) > CACHED_QUERY_BYTES:
        return literals.found
    _LITERALS[id(operation)] = (operation, literals.found)
    if len(_LITERALS) > _LITERALS_KEPT:
        _LITERALS.popitem(last=False)
    return literals.found


def targets(operation: OperationDefinitionNode, variables: dict[str, Any] | None) -> list[str]:
    """The valid ID numbers a request names, in its variables or inline."""
    seen = []
    for text in [*_literals(operation), *_strings(variables or {})]:
        cert = normalize(text)
        if _CERT.match(cert) and is_valid(cert) and cert not in seen:
            seen.append(cert)
    return seen


def outcome(result: Any) -> str:
    """OK, or the codes of the faults or refusals the answer carried."""
    if result is None:
        return "UNKNOWN"
    if result.errors:
        codes = sorted({(e.extensions or {}).get("code", "ERROR") for e in result.errors})
        return ",".join(codes)
    refusals = sorted(
        {
            error.get("code", "")
            for payload in (result.data or {}).values()
            if isinstance(payload, dict)
            for error in payload.get("errors") or []
            if isinstance(error, dict)
        }
    )
    return ",".join(refusals) if refusals else "OK"


class Audited(SchemaExtension):
    """Around the whole operation: refusals before execution (validation, limits, rate
    limits) are recorded too."""

    async def on_operation(self) -> AsyncIterator[None]:
        yield
        ctx = self.execution_context
        context = ctx.context
        services = getattr(context, "services", None)
        document = ctx.graphql_document
        operation = chosen(document, ctx.operation_name)
        if services is None or document is None or operation is None:
            return  # nothing parsed, nothing done
        used = top_fields(operation, document)
        mutation = operation.operation is OperationType.MUTATION
        if not (
            mutation
            or AUDITED_QUERIES.intersection(used)
            or AUDITED_ME_FIELDS.intersection(me_fields(operation, document))
        ):
            return
        caller = context.caller
        variables = ctx.variables or {}
        channel = next(
            (v for v in _strings(variables) if v in ("APP", "WECHAT", "ALIPAY", "WEB", "HALL")),
            None,
        )
        entry = Entry(
            seq=0,
            at=dt.datetime.now(dt.UTC),
            request_id=context.request_id,
            actor=None if caller is None else caller.cert_no,
            roles=sorted(caller.roles) if caller else [],
            client=context.client,
            operation="mutation" if mutation else "query",
            fields=used,
            targets=targets(operation, variables),
            channel=channel,
            outcome=outcome(ctx.result),
        )
        try:
            await services.audit.append(entry)
        except Exception:  # the answer stands; the operator hears of the gap
            log.exception("request %s: not audited", context.request_id)

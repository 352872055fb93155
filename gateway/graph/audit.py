"""The audit log: who did what to whom, when, through which channel and role, and how
it ended, for every mutation and every read of other people's data.

Written by the `Audited` schema extension after each such operation, into the
gateway's store, append-only. What it writes is what the gateway did, whatever
the client selected of the answer or sent beside the operation:

- ``outcome``: the codes of the faults, and of the refusals the gateway decided
  (the ``errors`` of each top-level field's answer, as the resolver returned it,
  before any selection); OK when there are none.
- ``fields``: the top-level fields that ran, then what their answers disclosed of
  other people (`Told.disclosed`, e.g. ``Settlement.patientBalanceAfter``).
- ``targets``: the valid ID numbers among the arguments of the fields that ran
  (nested ones too), their variables resolved, then the people the answers were
  about (`Told.about`). Variables the operation does not use name no one.
- ``channel``: the ``channel`` argument (or input field) of a field that ran.

A request refused before anything ran (validation, limits, rate limits, a bad
variable) is recorded with the fields of the operation that would have run, and
the ID numbers its arguments name, literally or through the variables they use.
An ``ADMIN`` reads the log masked.
"""

from __future__ import annotations

import contextvars
import datetime as dt
import enum
import json
import logging
import re
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from inspect import isawaitable
from typing import Any

from graphql import (
    ArgumentNode,
    DocumentNode,
    EnumValueNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLResolveInfo,
    ObjectFieldNode,
    OperationDefinitionNode,
    OperationType,
    StringValueNode,
    VariableNode,
    Visitor,
    value_from_ast_untyped,
    visit,
)
from strawberry.extensions import SchemaExtension
from strawberry.types import ExecutionContext

from gateway.common.certno import is_valid, normalize
from gateway.common.channels import Channel
from gateway.graph.errors import GatewayError
from gateway.graph.marks import watched
from gateway.graph.operation import CACHED_QUERY_BYTES, chosen, me_fields, top_fields
from gateway.state.store import Store

log = logging.getLogger(__name__)

_CERT = re.compile(r"^[0-9]{17}[0-9Xx]$")
_CHANNELS = frozenset(c.value for c in Channel)


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
    # the registered name of the document the request named (trusted documents), if any
    document: str | None = None


# The registered document the request being served named (set where the request is
# read: gateway.edge.documents), for its audit entry.
DOCUMENT: contextvars.ContextVar[str | None] = contextvars.ContextVar("document", default=None)


@dataclass(frozen=True, slots=True)
class Told:
    """What a field's answer tells the audit beyond the field's arguments, whatever the
    client selects of it: the people the gateway's decision concerned (ID numbers) and
    what the answer disclosed of them (schema coordinates such as
    ``Settlement.patientBalanceAfter``). A payload carries it as ``told`` (a private
    field, never in the graph); `Audited` reads it from each top-level answer."""

    about: tuple[str, ...] = ()
    disclosed: tuple[str, ...] = ()

    @classmethod
    def of(cls, caller: str | None, *parties: str | None, disclosed: Sequence[str] = ()) -> Told:
        """About ``parties`` other than the caller (whose own data is no one else's)."""
        about = tuple(dict.fromkeys(p for p in parties if p is not None and p != caller))
        return cls(about=about, disclosed=tuple(disclosed))


NOTHING_TOLD = Told()


class AuditLog:
    def __init__(self, store: Store) -> None:
        self._store = store

    async def append(self, entry: Entry) -> None:
        async with self._store.transaction() as db:
            await db.execute(
                "INSERT INTO audit (at, request_id, actor, roles, client, operation, fields,"
                " targets, channel, outcome, document) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
                    entry.document,
                ),
            )

    async def newest(self, first: int, before: int | None) -> list[Entry]:
        """Up to ``first`` entries, newest first, older than ``before`` (a seq) if given."""
        async with self._store.transaction() as db:
            rows = await db.fetch(
                "SELECT seq, at, request_id, actor, roles, client, operation, fields, targets,"
                " channel, outcome, document FROM audit WHERE seq < ? ORDER BY seq DESC LIMIT ?",
                (before if before is not None else 2**62, first),
            )
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
                document=row[11],
            )
            for row in rows
        ]


# -- what arguments name ------------------------------------------------------------------


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _strings(item)


def people(values: Any) -> list[str]:
    """The valid ID numbers among argument values, once each, in order."""
    seen: dict[str, None] = {}
    for text in _strings(values):
        cert = normalize(text)
        if _CERT.match(cert) and is_valid(cert):
            seen.setdefault(cert)
    return list(seen)


def channel_of(values: Any) -> str | None:
    """The first ``channel`` argument or input field among argument values."""
    if isinstance(values, dict):
        given = values.get("channel")
        given = given.value if isinstance(given, enum.Enum) else given
        if isinstance(given, str) and given in _CHANNELS:
            return given
        values = list(values.values())
    if isinstance(values, list | tuple):
        for item in values:
            found = channel_of(item)
            if found is not None:
                return found
    return None


class _Named(Visitor):
    """What the arguments in some selection sets name: string literals, the variables
    they use (those a ``channel`` uses apart), literal channels, and the fragments
    spread (to walk next)."""

    def __init__(self) -> None:
        super().__init__()
        self.literals: list[str] = []
        self.variables: list[str] = []
        self.channel_variables: list[str] = []
        self.channels: list[str] = []
        self.spreads: list[str] = []

    def enter_string_value(self, node: StringValueNode, *_: Any) -> None:
        self.literals.append(node.value)

    def enter_variable(self, node: VariableNode, *_: Any) -> None:
        self.variables.append(node.name.value)

    def enter_fragment_spread(self, node: FragmentSpreadNode, *_: Any) -> None:
        self.spreads.append(node.name.value)

    def enter_argument(self, node: ArgumentNode, *_: Any) -> None:
        self._channel(node)

    def enter_object_field(self, node: ObjectFieldNode, *_: Any) -> None:
        self._channel(node)

    def _channel(self, node: ArgumentNode | ObjectFieldNode) -> None:
        if node.name.value != "channel":
            return
        if isinstance(node.value, EnumValueNode):
            self.channels.append(node.value.value)
        elif isinstance(node.value, VariableNode):
            self.channel_variables.append(node.value.name.value)


# What the arguments of recent operations name: a validated document is the same object
# on every request (`gateway.graph.shape.Validated`), so it is walked once. The entry holds
# its operation, so an id is not reused while it is kept; a refused document, or one
# too long to be kept there, is new on every request and is not kept here either.
_LITERALS: OrderedDict[int, tuple[OperationDefinitionNode, _Named]] = OrderedDict()
_LITERALS_KEPT = 512


def _named(operation: OperationDefinitionNode, document: DocumentNode, keep: bool) -> _Named:
    kept = _LITERALS.get(id(operation))
    if kept is not None and kept[0] is operation:
        _LITERALS.move_to_end(id(operation))
        return kept[1]
    fragments = {
        d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
    }
    named = _Named()
    visit(operation.selection_set, named)  # not the variables' definitions: only what is used
    walked: set[str] = set()
    while named.spreads:  # each fragment once
        name = named.spreads.pop()
        if name in fragments and name not in walked:
            walked.add(name)
            visit(fragments[name].selection_set, named)
    if not keep or operation.loc is None or len(operation.loc.source.body) > CACHED_QUERY_BYTES:
        return named
    _LITERALS[id(operation)] = (operation, named)
    if len(_LITERALS) > _LITERALS_KEPT:
        _LITERALS.popitem(last=False)
    return named


def written(
    operation: OperationDefinitionNode,
    document: DocumentNode,
    variables: dict[str, Any] | None,
    *,
    valid: bool,
) -> list[Any]:
    """The argument values an operation names as written: its literals, and the values of
    the variables its arguments use (sent, or their defaults). For a request refused
    before anything ran; what a ``valid`` document names is remembered."""
    named = _named(operation, document, keep=valid)
    given = dict(variables or {})
    for definition in operation.variable_definitions or ():
        name = definition.variable.name.value
        if name not in given and definition.default_value is not None:
            given[name] = value_from_ast_untyped(definition.default_value)
    return [
        *named.literals,
        *({"channel": c} for c in named.channels),
        *({"channel": given.get(v)} for v in named.channel_variables),
        *(given.get(v) for v in dict.fromkeys(named.variables)),
    ]


# -- how it ended ---------------------------------------------------------------------------


def _code(value: Any) -> str:
    return str(value.value if isinstance(value, enum.Enum) else value)


def decided(answer: Any) -> list[str]:
    """The refusal codes a top-level field's answer carries (a payload's ``errors``)."""
    errors = getattr(answer, "errors", None)
    if not isinstance(errors, list):
        return []
    return [_code(e.code) for e in errors if getattr(e, "code", None) is not None]


def outcome(result: Any, refusals: Sequence[str] = ()) -> str:
    """OK, or the codes of the faults and of the refusals the gateway decided."""
    if result is None:
        return "UNKNOWN"
    codes = {(e.extensions or {}).get("code", "ERROR") for e in result.errors or ()}
    codes.update(refusals)
    return ",".join(sorted(codes)) if codes else "OK"


class Audited(SchemaExtension):
    """Around the whole operation: refusals before execution (validation, limits, rate
    limits) are recorded too. While it runs, it sees each field's arguments (variables
    resolved) and each top-level field's answer as its resolver returned it."""

    def __init__(self, *, execution_context: ExecutionContext | None = None) -> None:
        super().__init__(execution_context=execution_context)
        self._ran: list[str] = []  # the top-level fields, in the order they ran
        self._arguments: list[dict[str, Any]] = []  # of every field that ran
        self._refusals: list[str] = []
        self._told: list[Told] = []

    def resolve(
        self,
        _next: Callable[..., Any],
        root: Any,
        info: GraphQLResolveInfo[Any],
        *args: str,
        **kwargs: Any,
    ) -> Any:
        if kwargs:
            self._arguments.append(kwargs)
        if info.path.prev is not None:
            return _next(root, info, *args, **kwargs)
        self._ran.append(info.field_name)
        answer = _next(root, info, *args, **kwargs)
        if isawaitable(answer):
            return self._answered(answer)
        self._note(answer)
        return answer

    async def _answered(self, pending: Awaitable[Any]) -> Any:
        answer = await pending
        self._note(answer)
        return answer

    def _note(self, answer: Any) -> None:
        self._refusals.extend(decided(answer))
        told = getattr(answer, "told", None)
        if isinstance(told, Told) and told is not NOTHING_TOLD:
            self._told.append(told)

    async def on_operation(self) -> AsyncIterator[None]:
        yield
        ctx = self.execution_context
        context = ctx.context
        services = getattr(context, "services", None)
        document = ctx.graphql_document
        operation = chosen(document, ctx.operation_name)
        if services is None or document is None or operation is None:
            return  # nothing parsed, nothing done
        used = top_fields(operation, document, ctx.variables)
        mutation = operation.operation is OperationType.MUTATION
        watching = watched(ctx.schema)  # the fields marked audited (`gateway.graph.marks`)
        if not (
            mutation
            or watching.audited.intersection(used)
            or watching.audited_of_me.intersection(me_fields(operation, document, ctx.variables))
        ):
            return
        ran = bool(self._ran) or not (ctx.result is not None and ctx.result.errors)
        if ran:  # what ran (nothing, if every field was skipped)
            fields = [*self._ran]
            values: list[Any] = self._arguments
        else:  # refused before anything ran: what the operation would have run
            fields = used
            values = written(operation, document, ctx.variables, valid=not ctx.pre_execution_errors)
        about = [p for told in self._told for p in told.about]
        disclosed = [d for told in self._told for d in told.disclosed]
        caller = context.caller
        entry = Entry(
            seq=0,
            at=dt.datetime.now(dt.UTC),
            request_id=context.request_id,
            actor=None if caller is None else caller.cert_no,
            roles=sorted(caller.roles) if caller else [],
            client=context.client,
            operation="mutation" if mutation else "query",
            fields=[*fields, *(d for d in dict.fromkeys(disclosed) if d not in fields)],
            targets=people([*values, about]),
            channel=channel_of(values),
            outcome=outcome(ctx.result, self._refusals),
            document=DOCUMENT.get(),
        )
        try:
            await services.audit.append(entry)
        except Exception:
            log.exception("request %s: not audited", context.request_id)
            if not mutation:
                # A read of other people's data that leaves no trace is not answered
                # (fails closed). A write stands: it may be done at its province, and
                # an error would read as "not done" (docs/security.md).
                withheld = GatewayError("AUDIT_UNAVAILABLE", context.lang)
                error = GraphQLError(
                    str(withheld), original_error=withheld, extensions=withheld.extensions
                )
                if ctx.result is not None:  # in place: it is the object that is answered
                    ctx.result.data = None
                    ctx.result.errors = [error]

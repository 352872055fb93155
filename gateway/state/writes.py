"""Every write the gateway makes goes one way, once per idempotency key.

::

    key ──▶ not a key ─────────────────────────────▶ INVALID_IDEMPOTENCY_KEY
     │
     ├──▶ used before ──▶ for another request ─────▶ IDEMPOTENCY_KEY_REUSED
     │                └─▶ for this one ────────────▶ its first outcome (not judged again)
     │
     └──▶ new ──▶ the rules' check ──▶ a refusal ───▶ kept as the key's outcome
                                   └─▶ where to ───▶ done, and kept as the key's outcome

What is judged before the path is taken (the caller's role, the input alone: a bill's
amounts, a password's form) keeps nothing: `refuse` answers it under the client's key,
or one made for it, and the corrected request may follow under the same key. Keys are
made here and nowhere else.

A write is done in one of two places:

- at a province (`Writes.send`): bindings, settlements, reversals. The outbox
  (`gateway.state.outbox`) records the write before it is sent and sends it until the
  province answers; the caller hears the answer, or ``SUBMITTED`` while it is not
  known. The check says which province (it may need to ask where a person is
  insured) or refuses.
- in the gateway's own store (`Writes.run`): the kinship registry. The replays
  (`gateway.state.replays`) keep each key's outcome.

A sequence of writes (a settlement held in one province and paid in another) is
a sequence of calls, each under its own key derived from the caller's.

The rules themselves (who may bind whom, what a bill may claim) are not here: a
write's owner (`gateway.rules.mutual_aid`, `gateway.rules.settlement`, the kinship registry)
supplies them as the check.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from adapters.base import RefusalCode
from gateway.common.refusals import Code, GatewayCode, Refused
from gateway.state.keys import KeyReused, key_ok, new_key
from gateway.state.outbox import FOUND, Outbox, Sent, Write
from gateway.state.outcome import KEY_FIELD, Fields, Outcome
from gateway.state.replays import Replays

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Route:
    """Where a new write goes, with what the checks found that the province must be
    told (`Write`'s ``request[FOUND]``)."""

    province: str
    found: Mapping[str, Any]


# A new write's check: the province to send it to (a `Route`, if the province must be
# told what the checks found), or the rules' refusal.
Check = Callable[[], Awaitable[str | Route | Refused]]


def _point(refusal: Refused, fields: Fields) -> Refused:
    """A province's refusal (adapters give only a code), pointed at the input it concerns."""
    return Refused(refusal.code, fields(refusal.code))


def refuse(kind: type[T], key: str | None, code: Code, field: str | None = None) -> Outcome[T]:
    """A refusal judged before the write path is taken: nothing is kept; it answers
    under ``key``, or a key made for it (a ``kind`` write's outcome)."""
    return Outcome[T].refused(code, field).under(new_key() if key is None else key)


class Writes:
    """The one way a write is done (see the module)."""

    def __init__(self, outbox: Outbox, replays: Replays) -> None:
        self._outbox = outbox
        self._replays = replays

    async def send(
        self,
        scope: str,
        key: str | None,
        asked: Write,
        check: Check | None,
        fields: Fields,
        kind: type[T],
    ) -> Outcome[T]:
        """Send ``asked`` to its province once per ``(scope, key)``.

        ``check``, for a new key only, says which province (its answer replaces
        ``asked.province``) or refuses; without one, ``asked`` names its province.
        The answer is a ``kind`` (a `Binding`, a `Settlement`), or a refusal pointed
        by ``fields``.
        """
        key = new_key() if key is None else key
        if not key_ok(key):
            return Outcome[T].refused(GatewayCode.INVALID_IDEMPOTENCY_KEY, KEY_FIELD).under(key)
        try:
            sent = await self._send(scope, key, asked, check)
        except KeyReused:
            return Outcome[T].refused(RefusalCode.IDEMPOTENCY_KEY_REUSED, KEY_FIELD).under(key)
        return _outcome(sent, fields, kind)

    async def recorded(self, scope: str, key: str) -> bool:
        """Whether a write is recorded under ``(scope, key)`` (sent, or to be sent)."""
        return await self._outbox.recorded(scope, key) is not None

    async def _send(self, scope: str, key: str, asked: Write, check: Check | None) -> Sent:
        recorded = await self._outbox.recorded(scope, key)
        if recorded is not None:  # a repeat: as it was first asked, whatever has changed
            if recorded.fingerprint != asked.fingerprint:
                raise KeyReused(key)
            return await self._outbox.send(scope, key, recorded)
        where = asked.province if check is None else await check()
        if isinstance(where, Refused):  # kept: a repeat gets the same refusal
            return await self._outbox.refused(scope, key, asked, where)
        if isinstance(where, Route):
            request = {**asked.request, FOUND: dict(where.found)}
            asked = dataclasses.replace(asked, province=where.province, request=request)
            return await self._outbox.send(scope, key, asked)
        return await self._outbox.send(scope, key, dataclasses.replace(asked, province=where))

    async def run(
        self,
        scope: str,
        key: str | None,
        operation: str,
        request: Mapping[str, Any],
        do: Callable[[], Awaitable[Outcome[T]]],
        kind: type[T],
    ) -> Outcome[T]:
        """Do a write in the gateway's own store once per ``(scope, key)``: ``do()``,
        whose outcome (a ``kind``, or refusals) a repeat gets back. ``request``
        identifies the request in its fingerprint: never a secret."""
        key = new_key() if key is None else key
        if not key_ok(key):
            return Outcome[T].refused(GatewayCode.INVALID_IDEMPOTENCY_KEY, KEY_FIELD).under(key)
        try:
            outcome = await self._replays.once(scope, key, operation, request, do, kind)
        except KeyReused:
            return Outcome[T].refused(RefusalCode.IDEMPOTENCY_KEY_REUSED, KEY_FIELD).under(key)
        return outcome.under(key)


def _outcome(sent: Sent, fields: Fields, kind: type[T]) -> Outcome[T]:
    answer, key = sent.answer, sent.key
    if answer is None:
        return Outcome(adapter=sent.adapter, submitted=True, key=key)
    if isinstance(answer, Refused):  # the province's (it has an adapter), or the check's
        refusal = answer if sent.adapter is None else _point(answer, fields)
        return Outcome(errors=(refusal,), adapter=sent.adapter, key=key)
    if not isinstance(answer, kind):
        raise TypeError(f"a write answered with {type(answer).__name__}, not {kind.__name__}")
    return Outcome(value=answer, adapter=sent.adapter, key=key)

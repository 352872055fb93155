"""Each key's outcome, for the writes the gateway makes in its own store (the kinship
registry); `gateway.state.writes` is the way in.

A province's writes go through the outbox (`gateway.state.outbox`); writes the gateway
makes in its own store cannot end with an unknown outcome, but a client whose
answer was lost sends them again. With the same key, the caller gets the first
outcome back instead of doing it twice (or hearing "already done"); with a key
used for another request, `KeyReused`.

The outcome is kept after the write's own transaction, so a process that dies in
between leaves the write done and the key free: sent again, the request is judged
anew (and refused as a duplicate where that applies).

A request's fingerprint is a fast hash (SHA-256) of what identifies it, kept in the
store: it must hold nothing secret, nor anything derived from a secret that a fast
hash could find again (a six-digit payment password is a million tries). A secret
input is left out of the request; the same key sent with another secret gets the
first outcome back.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

from adapters.base import ProvinceAdapter, UpstreamUnavailable
from gateway.common.refusals import Refused
from gateway.state.codec import NotFederated, decode, encode
from gateway.state.keys import KeyReused, fingerprint
from gateway.state.leases import Leases
from gateway.state.outcome import Outcome
from gateway.state.store import Store

T = TypeVar("T")

# Operations whose earlier rows covered something derived from a secret, and why: they
# are deleted the first time the replays are used (once per process; a key of theirs
# sent again is judged anew, and the registry refuses what is already done).
LEGACY = {
    "ACTIVATE_KINSHIP_MEMBER": "an HMAC of the payment password was in its fingerprint",
}


class Replays:
    def __init__(
        self, store: Store, provinces: Mapping[str, ProvinceAdapter], leases: Leases
    ) -> None:
        self._store = store
        self._provinces = provinces
        self._leases = leases
        self._scrubbed = False

    async def _scrub(self) -> None:
        """Delete the rows of `LEGACY` operations (a store written by an earlier version)."""
        if self._scrubbed:
            return
        marks = ",".join("?" * len(LEGACY))
        async with self._store.transaction() as db:
            await db.execute(
                f"DELETE FROM replay WHERE operation IN ({marks})",  # noqa: S608
                tuple(LEGACY),
            )
        self._scrubbed = True

    async def once(
        self,
        scope: str,
        key: str,
        operation: str,
        request: Mapping[str, Any],
        run: Callable[[], Awaitable[Outcome[T]]],
        kind: type[T],
    ) -> Outcome[T]:
        """``run()`` once per ``(scope, key)``; a repeat gets its outcome (its value a
        ``kind``). ``request`` identifies the request: never a secret (see the module)."""
        await self._scrub()
        wanted = fingerprint(operation, request)
        # the same key at once, on any instance: one at a time
        async with self._leases.hold(f"replay:{scope}:{key}"):
            kept = await self._kept(scope, key)
            if kept is not None:
                if kept[0] != wanted:
                    raise KeyReused(key)
                try:
                    return _decoded(kind, json.loads(kept[1]), self._provinces)
                except NotFederated as exc:  # its province was since left out
                    raise UpstreamUnavailable(
                        f"replay of {operation}: {exc}", province=exc.province, reached=False
                    ) from exc
            outcome = await run()
            async with self._store.transaction() as db:
                await db.execute(
                    "INSERT INTO replay (scope, idempotency_key, operation, fingerprint,"
                    " outcome, at) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                    (
                        scope,
                        key,
                        operation,
                        wanted,
                        json.dumps(_encoded(outcome), ensure_ascii=False),
                        dt.datetime.now(dt.UTC).isoformat(),
                    ),
                )
            return outcome

    async def _kept(self, scope: str, key: str) -> tuple[str, str] | None:
        async with self._store.transaction() as db:
            row = await db.fetchone(
                "SELECT fingerprint, outcome FROM replay WHERE scope = ? AND idempotency_key = ?",
                (scope, key),
            )
        return None if row is None else (str(row[0]), str(row[1]))


def _encoded(outcome: Outcome[Any]) -> dict[str, Any]:
    return {"value": encode(outcome.value), "errors": encode(outcome.errors)}


# Where rows written before `gateway.state.outcome` kept a value (by the outcome's kind).
_EARLIER_VALUES = ("link", "voucher")


def _decoded(
    kind: type[T], data: Mapping[str, Any], provinces: Mapping[str, ProvinceAdapter]
) -> Outcome[T]:
    name = next((n for n in ("value", *_EARLIER_VALUES) if n in data), None)
    value = None if name is None or data[name] is None else decode(kind, data[name], provinces)
    errors = tuple(decode(Refused, e) for e in data.get("errors", ()))
    return Outcome(value=value, errors=errors)

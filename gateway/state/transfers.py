"""Money crossing provinces, step by step, kept in the store so that it is finished
whatever stops the gateway in between.

A payment in the relative's province (the *target*: a bill's settlement, a resident
premium) made in part from a quota another province (the *source*) holds for them is
four writes, each through the outbox under its own key: hold the amount at the source,
pay at the target with that funding, then confirm at the source what the payment used
(the rest goes back to the quota), or release all of it if the target refused. A
`Transfer` records the step reached; the step is moved on only once the write before it
has its answer, and every
step is a write the province keeps under its request id, so doing a step again never
does it twice. The request that began a transfer drives it; the reconciler drives the
ones a stopped gateway left (`gateway.rules.crossing`).

A reversal of such a settlement goes on from ``DONE``: the reversal at the target
(``REVERSING``, the institution's write kept with the transfer), then the refund at the
source of what the hold paid (``REFUNDING``), ending ``REFUNDED``; a reversal the
target refuses leaves it ``DONE``.
"""

from __future__ import annotations

import datetime as dt
import enum
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any

from gateway.state.keys import KeyReused, new_key
from gateway.state.store import Store


class Step(enum.Enum):
    HOLDING = "HOLDING"  # hold the amount at the source
    SETTLING = "SETTLING"  # settle at the target (with the hold, if there is one)
    CONFIRMING = "CONFIRMING"  # confirm at the source what the settlement used
    RELEASING = "RELEASING"  # release the hold: the target refused, or used nothing
    DONE = "DONE"
    REVERSING = "REVERSING"  # the settlement's reversal at the target
    REFUNDING = "REFUNDING"  # refund at the source what the hold paid
    REFUNDED = "REFUNDED"


FINAL = (Step.DONE, Step.REFUNDED)


@dataclass(frozen=True, slots=True)
class Transfer:
    scope: str
    key: str
    fingerprint: str  # the payment's: a key used again for another one is refused
    operation: str  # the payment's write at the target (an outbox `Operation`)
    request: Mapping[str, Any]  # the payment, as that write asks it
    step: Step
    source: str  # the province holding the quota
    binding_id: str
    payer: str  # the authorizer
    amount: Decimal  # what is held (at most)
    target: str  # the patient's province, which settles
    hold_id: str | None = None  # once held; None after a refused hold
    used: Decimal | None = None  # what the settlement used, once settled
    payment_ref: str | None = None  # "<target>:<settlement id>", once settled
    reversal_key: str | None = None  # the institution's reversal: its key and request
    reversal: Mapping[str, Any] | None = None

    @property
    def reference(self) -> str:
        """The gateway's name for the payment, as the source keeps it with the hold."""
        return f"{self.scope}|{self.key}"


_COLUMNS = (
    "scope, idempotency_key, fingerprint, operation, request, step, source, binding_id,"
    " payer, amount, target, hold_id, used, payment_ref, reversal_key, reversal"
)


def _of(row: Sequence[Any]) -> Transfer:
    scope, key, fingerprint, operation, request, step, source, binding_id, *rest = row
    payer, amount, target, hold_id, used, payment_ref, reversal_key, reversal = rest
    return Transfer(
        scope=scope,
        key=key,
        fingerprint=fingerprint,
        operation=operation,
        request=json.loads(request),
        step=Step(step),
        source=source,
        binding_id=binding_id,
        payer=payer,
        amount=Decimal(amount),
        target=target,
        hold_id=hold_id,
        used=None if used is None else Decimal(used),
        payment_ref=payment_ref,
        reversal_key=reversal_key,
        reversal=None if reversal is None else json.loads(reversal),
    )


class Transfers:
    def __init__(self, store: Store) -> None:
        self._store = store

    async def begin(self, planned: Transfer) -> Transfer:
        """Record ``planned`` (at its first step) unless its key has a transfer already:
        that one, then. Raises `KeyReused` if that one is for another bill."""
        now = _now()
        async with self._store.transaction() as db:
            await db.execute(
                f"INSERT INTO transfer ({_COLUMNS}, created_at, updated_at)"  # noqa: S608
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT DO NOTHING",
                (
                    planned.scope,
                    planned.key,
                    planned.fingerprint,
                    planned.operation,
                    json.dumps(dict(planned.request), ensure_ascii=False),
                    planned.step.value,
                    planned.source,
                    planned.binding_id,
                    planned.payer,
                    str(planned.amount),
                    planned.target,
                    None,
                    None,
                    None,
                    None,
                    None,
                    now,
                    now,
                ),
            )
        found = await self.get(planned.scope, planned.key)
        if found is None:  # pragma: no cover (just written)
            raise LookupError(planned.reference)
        if found.fingerprint != planned.fingerprint:
            raise KeyReused(planned.key)
        return found

    async def get(self, scope: str, key: str) -> Transfer | None:
        async with self._store.transaction() as db:
            rows = await db.fetch(
                f"SELECT {_COLUMNS} FROM transfer"  # noqa: S608
                " WHERE scope = ? AND idempotency_key = ?",
                (scope, key),
            )
        return _of(next(iter(rows))) if rows else None

    async def moved(self, transfer: Transfer, step: Step, **changes: Any) -> Transfer:
        """``transfer`` at its next ``step``, with what the last one learnt, kept; if it
        has moved on meanwhile (a driver that lost its lease to another instance), it
        stays as that one left it, and that is returned."""
        after = replace(transfer, step=step, **changes)
        async with self._store.transaction() as db:
            moved = await db.execute(
                "UPDATE transfer SET step = ?, hold_id = ?, used = ?, payment_ref = ?,"
                " reversal_key = ?, reversal = ?, updated_at = ?"
                " WHERE scope = ? AND idempotency_key = ? AND step = ?",
                (
                    after.step.value,
                    after.hold_id,
                    None if after.used is None else str(after.used),
                    after.payment_ref,
                    after.reversal_key,
                    None if after.reversal is None else json.dumps(dict(after.reversal)),
                    _now(),
                    after.scope,
                    after.key,
                    transfer.step.value,
                ),
            )
        if moved:
            return after
        now = await self.get(transfer.scope, transfer.key)
        return after if now is None else now

    async def reversing(
        self, transfer: Transfer, key: str | None, reversal: Mapping[str, Any]
    ) -> Transfer:
        """``transfer``, its settlement to be reversed by ``reversal`` under ``key`` (one
        made when None), kept before the reversal is sent."""
        key = new_key() if key is None else key
        return await self.moved(transfer, Step.REVERSING, reversal_key=key, reversal=dict(reversal))

    async def unfinished(self) -> list[Transfer]:
        async with self._store.transaction() as db:
            rows = await db.fetch(
                f"SELECT {_COLUMNS} FROM transfer"  # noqa: S608
                " WHERE step NOT IN ('DONE', 'REFUNDED') ORDER BY created_at"
            )
        return [_of(r) for r in rows]

    async def of_payment(self, payment_ref: str) -> Transfer | None:
        """The transfer that paid the settlement ``payment_ref`` (for its reversal)."""
        async with self._store.transaction() as db:
            rows = await db.fetch(
                f"SELECT {_COLUMNS} FROM transfer WHERE payment_ref = ?",  # noqa: S608
                (payment_ref,),
            )
        return _of(next(iter(rows))) if rows else None


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat()

"""Money crossing provinces: driving a `Transfer` (`gateway.state.transfers`) step by
step, from the request that began it or, after a crash or a lost answer, from the
reconciler (`resume`).

A payment in the relative's province (the *target*: a bill's settlement, a resident
premium) from a quota the authorizer's province (the *source*) holds: hold the amount
at the source, make the payment at the target with that funding (the payer's own write,
under their key, with what the checks found: `gateway.state.writes.Route`), then
confirm at the source what the payment used, or release the hold. A settlement reversed
at the target is refunded at the source. Each step is a write through the outbox under
a key of its own, and the step reached is kept before the next is taken: a step done
again is answered as before and never done twice.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from adapters.base import PremiumPayment, QuotaHold, RefusalCode, Settlement, UpstreamError
from gateway.common.certno import loggable
from gateway.common.refusals import Code
from gateway.state.keys import KeyReused
from gateway.state.leases import Leases
from gateway.state.outbox import Operation, Write
from gateway.state.outcome import Outcome
from gateway.state.transfers import FINAL, Step, Transfer, Transfers
from gateway.state.writes import Route, Writes

log = logging.getLogger(__name__)

Payment = Settlement | PremiumPayment  # what a payment at the target is answered with
Fields = Callable[[Code], str | None]


def _no_field(code: Code) -> str | None:
    return None


class _NoHold:
    """The source refused the hold (or certainly never took it)."""

    id = None


class Crossing:
    def __init__(self, writes: Writes, transfers: Transfers, leases: Leases) -> None:
        self._writes = writes
        self._transfers = transfers
        self._leases = leases  # one driver per transfer, on any instance
        # each kind of payment: what answers it, and where its refusals point
        self._kinds: dict[str, tuple[type[Any], Fields]] = {}

    def accepts(self, operation: Operation, kind: type[Any], fields: Fields) -> None:
        """Writes of ``operation`` at the target (a payment, a settlement's reversal) are
        answered with ``kind``; their refusals point at the input ``fields`` says."""
        self._kinds[operation.value] = (kind, fields)

    async def under(self, scope: str, key: str, fingerprint: str) -> Outcome[Any] | None:
        """The payment a transfer already makes under ``(scope, key)``, driven on (a
        repeat, or the reconciler's work done early), or `IDEMPOTENCY_KEY_REUSED` if it is
        another payment's; None when the key has no transfer."""
        transfer = await self._transfers.get(scope, key)
        if transfer is None:
            return None
        if transfer.fingerprint != fingerprint:
            return self._key_reused(transfer.operation, key)
        return await self.drive(transfer)

    async def start(self, planned: Transfer) -> Outcome[Any]:
        """Record ``planned`` and drive it (or the transfer its key already has)."""
        try:
            transfer = await self._transfers.begin(planned)
        except KeyReused:
            return self._key_reused(planned.operation, planned.key)
        return await self.drive(transfer)

    def _key_reused(self, operation: str, key: str) -> Outcome[Any]:
        _, fields = self._kinds[operation]
        code = RefusalCode.IDEMPOTENCY_KEY_REUSED
        return Outcome[Any].refused(code, fields(code)).under(key)

    async def resume(self) -> int:
        """Drive on every transfer a stopped gateway (or a lost answer) left unfinished:
        the reconciler's part for money crossing provinces. The number finished."""
        finished = 0
        for transfer in await self._transfers.unfinished():
            try:
                outcome = await self.drive(transfer, wait=False)
            except Exception:
                log.exception("transfer %s: not finished this time", _logged(transfer))
                continue
            finished += not outcome.submitted
        return finished

    async def drive(self, transfer: Transfer, *, wait: bool = True) -> Outcome[Any]:
        """Take ``transfer`` as far as the provinces' answers allow; the payment's
        outcome (``SUBMITTED`` while its answer is unknown). One driver at a time, on
        any instance: the others wait (not ``wait``: leave it to that one)."""
        name = f"transfer:{transfer.scope}:{transfer.key}"
        async with self._leases.lease(name, wait=wait) as mine:
            if not mine:
                return Outcome[Any](submitted=True, key=transfer.key)
            now = await self._transfers.get(transfer.scope, transfer.key)
            transfer = now or transfer
            paid: Outcome[Any] | None = None
            while transfer.step not in FINAL:
                step = transfer.step
                if step is Step.HOLDING:
                    held = await self._hold(transfer)
                    if held is None:
                        break
                    transfer = await self._transfers.moved(
                        transfer, Step.SETTLING, hold_id=held.id if held.id else None
                    )
                elif step is Step.SETTLING:
                    paid = await self._pay(transfer)
                    if paid.submitted:
                        return paid
                    transfer = await self._paid(transfer, paid)
                elif step in (Step.CONFIRMING, Step.RELEASING):
                    if not await self._finish(transfer):
                        break
                    transfer = await self._transfers.moved(transfer, Step.DONE)
                elif step is Step.REVERSING:
                    undone = await self._reversed(transfer)
                    if undone is None:
                        break
                    after = Step.REFUNDING if undone else Step.DONE
                    transfer = await self._transfers.moved(transfer, after)
                else:  # REFUNDING
                    if not await self._refund(transfer):
                        break
                    transfer = await self._transfers.moved(transfer, Step.REFUNDED)
            if paid is None and transfer.step is not Step.HOLDING:
                paid = await self._pay(transfer)  # as answered before
            return paid or Outcome[Any](submitted=True, key=transfer.key)

    async def reversed_by(
        self, scope: str, target: str, settlement_id: str, key: str | None, reversal: Write
    ) -> tuple[Transfer | None, str | None]:
        """Before a settlement's reversal is sent: the transfer that paid it from a quota
        (kept as reversing, with the reversal and its key: one is made when None), and
        the key to send it under."""
        transfer = await self._transfers.of_payment(f"{target}:{settlement_id}")
        if transfer is None or transfer.scope != scope:
            return None, key  # not paid across (or another institution's: it is refused)
        if transfer.step is Step.DONE:
            transfer = await self._transfers.reversing(transfer, key, reversal.request)
            return transfer, transfer.reversal_key
        return transfer, key

    async def refund(self, transfer: Transfer) -> None:
        """After the reversal's answer: the refund at the source (kept, if not sent yet)."""
        try:
            await self.drive(transfer)
        except UpstreamError:
            log.warning("transfer %s: refund not sent yet", _logged(transfer))

    # -- the steps ----------------------------------------------------------------------

    async def _hold(self, transfer: Transfer) -> QuotaHold | _NoHold | None:
        """Hold the amount at the source: the hold, `_NoHold` when the source refused
        (or certainly never took it: the payment is then made without it), None while
        its answer is unknown."""
        write = Write(
            Operation.HOLD,
            transfer.source,
            {
                "binding_id": transfer.binding_id,
                "amount": str(transfer.amount),
                "reference": transfer.reference,
            },
        )
        try:
            held = await self._writes.send(
                f"{transfer.scope}/hold", transfer.key, write, None, _no_field, QuotaHold
            )
        except UpstreamError:
            return _NoHold()
        if held.submitted:
            return None
        if held.value is None:
            log.info("transfer %s: hold refused %s", _logged(transfer), held.errors)
            return _NoHold()
        return held.value

    async def _pay(self, transfer: Transfer) -> Outcome[Any]:
        """The payment at the target, with the hold as its funding (the same write, under
        the payer's key, however often this is done)."""
        funding = None
        if transfer.hold_id is not None:
            funding = {
                "province": transfer.source,
                "payer": transfer.payer,
                "amount": str(transfer.amount),
                "hold_id": transfer.hold_id,
            }
        asked = Write(Operation(transfer.operation), "", transfer.request)
        kind, fields = self._kinds[transfer.operation]

        async def check() -> str | Route:
            if funding is None:
                return transfer.target
            return Route(transfer.target, {"funding": funding})

        return await self._writes.send(transfer.scope, transfer.key, asked, check, fields, kind)

    async def _paid(self, transfer: Transfer, paid: Outcome[Any]) -> Transfer:
        """The step after the target's answer: confirm what the payment used of the
        hold, or release it (the target refused, or the payment needed none of it)."""
        if transfer.hold_id is None:
            return await self._transfers.moved(transfer, Step.DONE)
        payment = paid.value
        used = _used(payment, transfer.hold_id)
        if payment is not None and used > 0:
            ref = f"{transfer.target}:{payment.id}"
            return await self._transfers.moved(
                transfer, Step.CONFIRMING, used=used, payment_ref=ref
            )
        return await self._transfers.moved(transfer, Step.RELEASING)

    async def _finish(self, transfer: Transfer) -> bool:
        """Confirm or release the hold at the source; False while its answer is unknown."""
        if transfer.hold_id is None:  # nothing was held
            return True
        if transfer.step is Step.CONFIRMING:
            request = {
                "hold_id": transfer.hold_id,
                "used": str(transfer.used),
                "payment_ref": transfer.payment_ref,
            }
            write = Write(Operation.CONFIRM_HOLD, transfer.source, request)
        else:
            write = Write(Operation.RELEASE_HOLD, transfer.source, {"hold_id": transfer.hold_id})
        done = await self._writes.send(
            f"{transfer.scope}/finish", transfer.key, write, None, _no_field, QuotaHold
        )
        if done.errors:  # the hold is not as the transfer left it: someone must look
            log.error("transfer %s: %s refused %s", _logged(transfer), write.operation, done.errors)
        return not done.submitted

    async def _reversed(self, transfer: Transfer) -> bool | None:
        """Whether the target has reversed the settlement, by the reversal kept with the
        transfer (or by another: "already reversed"); None while unknown."""
        write = Write(Operation.REVERSE, transfer.target, transfer.reversal or {})
        _, fields = self._kinds[Operation.REVERSE.value]
        undone = await self._writes.send(
            transfer.scope, transfer.reversal_key or "", write, None, fields, Settlement
        )
        if undone.submitted:
            return None
        if undone.value is not None:
            return undone.value.reversed_at is not None
        return any(e.code is RefusalCode.SETTLEMENT_ALREADY_REVERSED for e in undone.errors)

    async def _refund(self, transfer: Transfer) -> bool:
        """Refund at the source what the hold paid; False while its answer is unknown."""
        if transfer.hold_id is None:  # pragma: no cover (a paid transfer held)
            return True
        write = Write(Operation.REFUND_HOLD, transfer.source, {"hold_id": transfer.hold_id})
        done = await self._writes.send(
            f"{transfer.scope}/refund", transfer.key, write, None, _no_field, QuotaHold
        )
        if done.errors:
            log.error("transfer %s: refund refused %s", _logged(transfer), done.errors)
        return not done.submitted


def _used(answer: object, hold_id: str) -> Decimal:
    """What a payment used of the hold ``hold_id`` (nothing if it was made without it)."""
    if isinstance(answer, Settlement) and answer.funding_hold == hold_id:
        return answer.mutual_aid_paid
    if isinstance(answer, PremiumPayment) and answer.funding_hold == hold_id:
        return answer.amount
    return Decimal("0.00")


def _logged(transfer: Transfer) -> str:
    return f"{transfer.source}->{transfer.target} for {loggable(transfer.payer)}"

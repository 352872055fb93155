"""Writes to provinces, recorded before they are sent, so that none is lost or doubled.

Every write a province is asked for (bind, respond, unbind, settle, reverse)
goes through the outbox:

1. It is found by its idempotency key, scoped to whoever asked (a repeated key
   returns the first outcome: the recorded answer, or for a write still
   unresolved, the province's answer to the same request sent again).
2. Otherwise it is recorded (``PENDING``) with a fresh request id, and only then
   sent, carrying that id: the province keeps it and answers a repeat as it did
   the first time.
3. The answer is recorded (``DONE``), with the journal entry it makes, in one
   transaction. A fault that may have reached the province (a timeout, a dropped
   connection, an answer we cannot read) leaves the write ``UNKNOWN`` and the
   caller hears ``SUBMITTED``. A write ends ``FAILED`` only when it certainly did
   not take effect: never sent before and certainly not received (connection
   refused, breaker open), or answered by the province that it cannot read the
   request (`refused_unread`: the same request every time, so it never could).
   The caller then gets the fault (the same key may be tried again); the
   reconciler leaves it. One that may have been sent before stays ``UNKNOWN``,
   whatever else stops a later attempt.
   The gateway's own refusal (its checks) is recorded as the key's answer too.
4. The `Reconciler` sends every ``PENDING`` write no request of this process is
   carrying and every ``UNKNOWN`` one again, with backoff, until the province
   answers. After a crash, ``PENDING`` rows are the requests that were in flight;
   the reconciler resumes them at start.

What a caller hears is the truth (docs/frontend.md): a fault only for a write
recorded ``FAILED``. Once a write may be recorded, it will be sent until it is
answered, so whatever goes wrong in the gateway meanwhile is answered with the
province's answer if it has come, else ``SUBMITTED``: the store failing to record
an outcome (a full disk: the write stays as it was, to be sent again), an adapter's
bug, or the request being cancelled (uvicorn cancels the requests still running
when a stop outlives its grace; a cancelled request would be a plain-text 500).
Sending and recording go on without a cancelled request, in tasks of their own, so
that an answer that comes is recorded, not lost.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import enum
import json
import logging
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, TypeVar

from adapters.base import (
    Binding,
    BindingStatus,
    BindRequest,
    Funding,
    MedicalType,
    PremiumPayment,
    PremiumRequest,
    ProvinceAdapter,
    QuotaHold,
    Refusal,
    Relation,
    Settlement,
    SettleRequest,
    UpstreamContractError,
    UpstreamError,
    UpstreamUnavailable,
    new_request_id,
)
from gateway.common.channels import Channel
from gateway.common.refusals import Refused
from gateway.state.codec import decode, encode
from gateway.state.events import Kind as EventKind
from gateway.state.events import raise_event
from gateway.state.keys import KeyReused, fingerprint
from gateway.state.leases import Busy, Leases
from gateway.state.records import Event, Journal
from gateway.state.store import Store, Tx

log = logging.getLogger(__name__)

Answer = Binding | Settlement | QuotaHold | PremiumPayment | Refused
# What a province answers a write with (its refusal becomes the gateway's `Refused`).
Answered = Binding | Settlement | QuotaHold | PremiumPayment | Refusal
_T = TypeVar("_T")


class State(enum.Enum):
    PENDING = "PENDING"  # recorded; sent or about to be; no answer yet
    UNKNOWN = "UNKNOWN"  # sent; the answer was lost
    DONE = "DONE"  # the province answered (a refusal is an answer)
    FAILED = "FAILED"  # certainly not received by the province


class Operation(enum.Enum):
    BIND = "BIND"
    RESPOND = "RESPOND"
    UNBIND = "UNBIND"
    SETTLE = "SETTLE"
    REVERSE = "REVERSE"
    # across provinces: a quota's money held, then confirmed or released; refunded
    HOLD = "HOLD"
    CONFIRM_HOLD = "CONFIRM_HOLD"
    RELEASE_HOLD = "RELEASE_HOLD"
    REFUND_HOLD = "REFUND_HOLD"
    PAY_PREMIUM = "PAY_PREMIUM"  # a resident's premium, from an account or a quota


@dataclass(frozen=True, slots=True)
class Write:
    """What to ask of which province; ``request`` is JSON-able (see `_SEND`).

    ``request[FOUND]``, when present, is what the gateway's checks found that the
    province must be told (the relative's province): kept and sent with the write, but
    not what the caller asked, so not part of its fingerprint.
    """

    operation: Operation
    province: str
    request: Mapping[str, Any]
    channel: Channel | None = None  # for the journal

    @property
    def fingerprint(self) -> str:
        # what the caller asked for: the province follows from it, and may be known
        # only after the gateway's checks
        asked = {k: v for k, v in self.request.items() if k != FOUND}
        return fingerprint(self.operation.value, asked)


FOUND = "found"


@dataclass(frozen=True, slots=True)
class Sent:
    """The outcome of a write: the province's answer, or None while it is unknown
    (``SUBMITTED``: the reconciler will learn it). ``adapter`` is None only for a
    refusal recorded by the gateway's own checks."""

    answer: Answer | None
    adapter: ProvinceAdapter | None
    key: str

    @property
    def submitted(self) -> bool:
        return self.answer is None


def refused_unread(error: UpstreamError) -> bool:
    """The province answered that it cannot read the request (malformed, unreadable: an
    HTTP 400, or the dialect's equivalent), so it carried out nothing: an answer (a
    contract error) that the adapter marks as not taking effect (``reached`` False).
    A write's request is the same every time it is sent, so it never could."""
    return isinstance(error, UpstreamContractError) and not error.reached


# -- how each operation is sent ----------------------------------------------------------


async def _bind(adapter: ProvinceAdapter, r: Mapping[str, Any], rid: str) -> Answered:
    quota = r.get("quota")  # across provinces only
    return await adapter.bind(
        BindRequest(
            authorizer_cert_no=r["authorizer"],
            beneficiary_cert_no=r["beneficiary"],
            beneficiary_name=r["beneficiary_name"],
            relation=Relation(r["relation"]),
            commitment_signed=r["commitment_signed"],
            request_id=rid,
            beneficiary_province=r.get(FOUND, {}).get("beneficiary_province"),
            quota=None if quota is None else Decimal(quota),
        )
    )


async def _respond(adapter: ProvinceAdapter, r: Mapping[str, Any], rid: str) -> Answered:
    return await adapter.respond(
        r["binding_id"], actor=r["actor"], accept=r["accept"], request_id=rid
    )


async def _unbind(adapter: ProvinceAdapter, r: Mapping[str, Any], rid: str) -> Answered:
    return await adapter.unbind(r["binding_id"], actor=r["actor"], request_id=rid)


async def _settle(adapter: ProvinceAdapter, r: Mapping[str, Any], rid: str) -> Answered:
    funding = r.get(FOUND, {}).get("funding")  # held in another province for this bill
    return await adapter.settle(
        SettleRequest(
            institution_code=r["institution"],
            idempotency_key=r["idempotency_key"],
            patient_cert_no=r["patient"],
            medical_type=MedicalType(r["medical_type"]),
            total=Decimal(r["total"]),
            fund_paid=Decimal(r["fund_paid"]),
            request_id=rid,
            funding=_funding(funding),
        )
    )


def _funding(found: Mapping[str, Any] | None) -> Funding | None:
    """What the checks found: funding held in another province, if any."""
    if found is None:
        return None
    return Funding(
        province=found["province"],
        payer=found["payer"],
        amount=Decimal(found["amount"]),
        hold_id=found["hold_id"],
    )


async def _pay_premium(adapter: ProvinceAdapter, r: Mapping[str, Any], rid: str) -> Answered:
    return await adapter.pay_premium(
        PremiumRequest(
            beneficiary_cert_no=r["beneficiary"],
            year=r["year"],
            payer_cert_no=r["payer"],
            request_id=rid,
            funding=_funding(r.get(FOUND, {}).get("funding")),
        )
    )


async def _hold(adapter: ProvinceAdapter, r: Mapping[str, Any], rid: str) -> Answered:
    return await adapter.hold_quota(
        r["binding_id"], amount=Decimal(r["amount"]), reference=r["reference"], request_id=rid
    )


async def _confirm_hold(adapter: ProvinceAdapter, r: Mapping[str, Any], rid: str) -> Answered:
    return await adapter.confirm_hold(
        r["hold_id"], used=Decimal(r["used"]), payment_ref=r["payment_ref"], request_id=rid
    )


async def _release_hold(adapter: ProvinceAdapter, r: Mapping[str, Any], rid: str) -> Answered:
    return await adapter.release_hold(r["hold_id"], request_id=rid)


async def _refund_hold(adapter: ProvinceAdapter, r: Mapping[str, Any], rid: str) -> Answered:
    return await adapter.refund_hold(r["hold_id"], request_id=rid)


async def _reverse(adapter: ProvinceAdapter, r: Mapping[str, Any], rid: str) -> Answered:
    return await adapter.reverse(
        r["settlement_id"], institution_code=r["institution"], reason=r["reason"], request_id=rid
    )


_SEND: dict[Operation, Callable[[ProvinceAdapter, Mapping[str, Any], str], Awaitable[Answered]]] = {
    Operation.BIND: _bind,
    Operation.RESPOND: _respond,
    Operation.UNBIND: _unbind,
    Operation.SETTLE: _settle,
    Operation.REVERSE: _reverse,
    Operation.HOLD: _hold,
    Operation.CONFIRM_HOLD: _confirm_hold,
    Operation.RELEASE_HOLD: _release_hold,
    Operation.REFUND_HOLD: _refund_hold,
    Operation.PAY_PREMIUM: _pay_premium,
}


def _event(write: Write) -> Event | None:
    """What the journal records when a binding write is answered with a binding."""
    if write.operation is Operation.BIND:
        return Event.CREATED
    if write.operation is Operation.RESPOND:
        return Event.CONFIRMED if write.request["accept"] else Event.DECLINED
    if write.operation is Operation.UNBIND:
        return Event.ENDED if write.request.get("reason") else Event.UNBOUND
    return None


Told = tuple[str, EventKind, dict[str, Any]]  # to whom, what, the facts


def _told(row: _Row, province: str, answer: Answer) -> list[Told]:
    """The events a write's answer raises: to those it waits on, to whom it ends
    something, to the payer whose account paid; and to whoever asked, when the answer
    comes after they were told ``SUBMITTED`` (the write had to be sent again)."""
    write, told = row.write, list[Told]()
    if isinstance(answer, Binding):
        facts = _binding_facts(answer, province)
        if (
            write.operation is Operation.BIND
            and answer.status is BindingStatus.PENDING_CONFIRMATION
        ):
            told.append((answer.beneficiary.cert_no, EventKind.BINDING_INVITED, facts))
        elif write.operation is Operation.RESPOND:
            kind = (
                EventKind.BINDING_CONFIRMED
                if write.request["accept"]
                else EventKind.BINDING_DECLINED
            )
            told.append((answer.authorizer.cert_no, kind, facts))
        elif write.operation is Operation.UNBIND:
            ended = {answer.authorizer.cert_no, answer.beneficiary.cert_no}
            if not write.request.get("reason"):  # not a registration change: the actor knows
                ended.discard(write.request["actor"])
            told.extend((c, EventKind.BINDING_ENDED, facts) for c in sorted(ended))
    if (
        isinstance(answer, Settlement)
        and answer.mutual_aid_payer is not None
        and answer.mutual_aid_paid > 0
        and answer.mutual_aid_payer.cert_no != answer.patient.cert_no
    ):
        paid = {
            "province": province,
            "settlementId": answer.id,
            "patient": {"certNo": answer.patient.cert_no, "name": answer.patient.name},
            "institution": answer.institution_code,
            "medicalType": answer.medical_type.value,
            "amount": str(answer.mutual_aid_paid),
            "balanceAfter": None
            if answer.payer_balance_after is None
            else str(answer.payer_balance_after),
            "settledAt": answer.settled_at.isoformat(),
        }
        told.append((answer.mutual_aid_payer.cert_no, EventKind.PAID_FOR_RELATIVE, paid))
    asker = write.request.get("actor") or write.request.get("authorizer")
    # sent before and not known since (a FAILED one was answered as an error: its
    # resend is the caller's own, answered to them)
    if row.attempts > 0 and row.state is not State.FAILED and isinstance(asker, str):
        resolved: dict[str, Any] = {
            "province": province,
            "operation": write.operation.value,
            "idempotencyKey": row.key,
            "refusal": answer.code.value if isinstance(answer, Refused) else None,
        }
        if isinstance(answer, Binding):
            resolved["binding"] = _binding_facts(answer, province)
        told.append((asker, EventKind.WRITE_RESOLVED, resolved))
    return told


def _binding_facts(binding: Binding, province: str) -> dict[str, Any]:
    return {
        "province": province,
        "bindingId": binding.id,
        "status": binding.status.value,
        "relation": binding.relation.value,
        "authorizer": {"certNo": binding.authorizer.cert_no, "name": binding.authorizer.name},
        "beneficiary": {"certNo": binding.beneficiary.cert_no, "name": binding.beneficiary.name},
    }


# -- answers as JSON ----------------------------------------------------------------------


_KINDS: dict[str, type[Answer]] = {
    "binding": Binding,
    "settlement": Settlement,
    "hold": QuotaHold,
    "premium": PremiumPayment,
    "refusal": Refused,
}


def _encode_answer(answer: Answer) -> str:
    kind = next(k for k, cls in _KINDS.items() if isinstance(answer, cls))
    return json.dumps({"kind": kind, "value": encode(answer)}, ensure_ascii=False)


def _decode_answer(text: str) -> Answer:
    data = json.loads(text)
    return decode(_KINDS[data["kind"]], data["value"])


# -- the outbox ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Row:
    id: str
    key: str
    write: Write
    fingerprint: str
    state: State
    answer: str | None
    attempts: int


_SELECT = (
    "SELECT id, idempotency_key, operation, province, request, channel, fingerprint, state,"
    " answer, attempts FROM outbox WHERE "
)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Outbox:
    def __init__(
        self,
        store: Store,
        provinces: Mapping[str, ProvinceAdapter],
        journal: Journal,
        leases: Leases,
    ) -> None:
        self._store = store
        self._provinces = provinces
        self._journal = journal
        self._leases = leases  # a write is sent by one instance at a time
        self._running: set[asyncio.Task[Any]] = set()  # claims, sends and recordings

    async def send(self, scope: str, key: str, write: Write) -> Sent:
        """Send ``write`` once for ``(scope, key)``; see the module's docstring.

        Raises `KeyReused` for a key already used for another request, and the
        province's `UpstreamError` when the write is recorded ``FAILED`` (it certainly
        did not take effect). A cancelled request is answered, not cancelled: with the
        province's answer if it has come, else ``SUBMITTED``.
        """
        claiming = self._start(self._claim(scope, key, write))
        try:
            row, new = await asyncio.shield(claiming)
        except asyncio.CancelledError:
            # it may be recorded, and then it will be sent: never "not done"
            _orphan(claiming, "claiming")
            return Sent(None, self._provinces.get(write.province), key)
        if row.fingerprint != write.fingerprint:
            raise KeyReused(key)
        adapter = self._provinces.get(row.write.province)
        if row.state is State.DONE and row.answer is not None:
            answer = _decode_answer(row.answer)
            if adapter is not None or isinstance(answer, Refused):
                return Sent(answer, adapter, key)
        if adapter is None:  # a province since left out of the configuration
            if row.state in (State.PENDING, State.UNKNOWN):
                return Sent(None, None, key)  # kept, and sent once the province is back
            raise UpstreamUnavailable(
                f"write {row.id}: province {row.write.province} is not federated",
                province=row.write.province,
                reached=False,
            )
        sending = self._start(self._deliver(row, adapter, fresh=new))
        try:
            heard = await asyncio.shield(sending)
        except asyncio.CancelledError:
            _orphan(sending, f"write {row.id}")
            return Sent(_answered(sending), adapter, key)
        except UpstreamError:
            raise  # recorded FAILED: it certainly did not take effect
        except Exception:
            # recorded, so it will be sent until answered: not a fault
            log.exception("write %s: unresolved (SUBMITTED)", row.id)
            return Sent(None, adapter, key)
        return Sent(heard, adapter, key)

    def _start(self, work: Coroutine[Any, Any, _T]) -> asyncio.Task[_T]:
        """``work`` in a task of its own, kept until it ends: a cancelled request stops
        waiting for it, and it goes on."""
        task = asyncio.get_running_loop().create_task(work)
        self._running.add(task)
        task.add_done_callback(self._running.discard)
        return task

    async def refused(self, scope: str, key: str, write: Write, refusal: Refused) -> Sent:
        """Record the gateway's own refusal of ``write`` under the key (a repeat gets it
        again, whatever has changed since); the first outcome if the key has one."""
        row, _ = await self._claim(scope, key, write, refusal)
        if row.fingerprint != write.fingerprint:
            raise KeyReused(key)
        if row.state is State.DONE and row.answer is not None:
            return Sent(_decode_answer(row.answer), self._provinces.get(row.write.province), key)
        return await self.send(scope, key, row.write)  # another request sent it meanwhile

    async def recorded(self, scope: str, key: str) -> Write | None:
        """The write recorded for ``(scope, key)``, if any: a repeat needs no new checks."""
        async with self._store.transaction() as db:
            row = await self._row(db, "scope = ? AND idempotency_key = ?", scope, key)
        return None if row is None else row.write

    async def _claim(
        self, scope: str, key: str, write: Write, refusal: Refused | None = None
    ) -> tuple[_Row, bool]:
        """The row for ``(scope, key)``: the one recorded before, or a new one (True);
        with ``refusal``, a new one is recorded as answered by it."""
        now = _now().isoformat()
        state, answer = State.PENDING, None
        if refusal is not None:
            state, answer = State.DONE, _encode_answer(refusal)
        rid = new_request_id()
        async with self._store.transaction() as db:
            found = await self._row(db, "scope = ? AND idempotency_key = ?", scope, key)
            if found is not None:
                return found, False
            # another instance may record the same key meanwhile: then its row is the one
            new = await db.execute(
                "INSERT INTO outbox (id, scope, idempotency_key, operation, province,"
                " fingerprint, request, channel, state, answer, attempts, next_at, created_at,"
                " updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, ?, ?, ?)"
                " ON CONFLICT (scope, idempotency_key) DO NOTHING",
                (
                    rid,
                    scope,
                    key,
                    write.operation.value,
                    write.province,
                    write.fingerprint,
                    json.dumps(dict(write.request), ensure_ascii=False),
                    None if write.channel is None else write.channel.value,
                    state.value,
                    answer,
                    now,
                    now,
                    now,
                ),
            )
        if not new:
            async with self._store.transaction() as db:
                found = await self._row(db, "scope = ? AND idempotency_key = ?", scope, key)
            if found is None:  # pragma: no cover (a row is never deleted)
                raise LookupError(key)
            return found, False
        return _Row(rid, key, write, write.fingerprint, state, answer, 0), True

    async def _row(self, db: Tx, where: str, *args: str) -> _Row | None:
        """One row; ``where`` is one of this module's constant conditions."""
        found = await db.fetchone(_SELECT + where, args)
        return None if found is None else _row_of(found)

    async def _deliver(
        self, row: _Row, adapter: ProvinceAdapter, *, fresh: bool = False, wait: bool = True
    ) -> Answer | None:
        """Send the row's write (again), record what came of it; None: still unknown.

        ``fresh``: this process just recorded it. Raises the province's fault only once
        the write is recorded ``FAILED``: never sent before and certainly not received,
        or answered that the province cannot read it (`refused_unread`). One that may
        have been sent already stays UNKNOWN, whatever else stops it reaching the
        province now. An outcome the store cannot record (a full disk) leaves the row as
        it was, to be sent again: the answer is still returned; without one, None.
        One instance sends it at a time: the others wait (not ``wait``: leave it to
        the one sending), then find what it learnt.
        """
        try:
            async with self._leases.lease(_lease(row.id), wait=wait) as held:
                return await self._send(row, adapter, fresh=fresh) if held else None
        except Busy:  # another instance is still at it: it will record the outcome
            log.warning("write %s: another instance is still sending it", row.id)
            return None

    async def _send(self, row: _Row, adapter: ProvinceAdapter, *, fresh: bool) -> Answer | None:
        """`_deliver`'s work, with the write's lease held."""
        async with self._store.transaction() as db:  # another sender may have finished
            current = await self._row(db, "id = ?", row.id)
        if current is not None and current.state is State.DONE and current.answer:
            return _decode_answer(current.answer)
        never_sent = fresh or (current is not None and current.state is State.FAILED)
        try:
            answered = await _SEND[row.write.operation](adapter, row.write.request, row.id)
        except UpstreamError as exc:
            failed = refused_unread(exc) or (never_sent and not exc.reached)
            state = State.FAILED if failed else State.UNKNOWN
            if await self._record(row, self._failed(row, state, exc.code)) and failed:
                raise
            return None  # unknown, or FAILED but not recorded: it will be sent again
        except Exception:  # an adapter's bug, maybe after sending: unknown
            log.exception("write %s: the adapter failed; it may have been sent", row.id)
            await self._record(row, self._failed(row, State.UNKNOWN, "INTERNAL_ERROR"))
            return None
        answer = Refused.of(answered) if isinstance(answered, Refusal) else answered
        await self._record(row, self._done(row, adapter, answer))
        return answer

    async def _record(self, row: _Row, recording: Coroutine[Any, Any, None]) -> bool:
        """Run ``recording`` (what came of sending ``row``'s write) to its end, whoever
        stops waiting for it (a cancellation would lose the answer); False if the store
        could not take it."""

        async def record() -> bool:
            try:
                await recording
            except Exception:
                log.exception(
                    "write %s (%s, province %s): its outcome could not be recorded;"
                    " it stays as it was, to be sent again",
                    row.id,
                    row.write.operation.value,
                    row.write.province,
                )
                return False
            return True

        return await asyncio.shield(self._start(record()))

    async def _done(self, row: _Row, adapter: ProvinceAdapter, answer: Answer) -> None:
        event = _event(row.write)
        async with self._store.transaction() as db:
            first = await db.execute(
                "UPDATE outbox SET state = ?, answer = ?, attempts = attempts + 1,"
                " updated_at = ? WHERE id = ? AND state != ?",
                (State.DONE.value, _encode_answer(answer), _now().isoformat(), row.id, "DONE"),
            )
            # else another sender recorded (and journaled) it
            if first > 0 and event is not None and isinstance(answer, Binding):
                await self._journal.insert(db, answer, adapter.code, event, row.write.channel)
            if first > 0:
                for subject, kind, facts in _told(row, adapter.code, answer):
                    once = f"outbox:{row.id}:{kind.value}:{subject}"
                    await raise_event(db, subject, kind, facts, once)

    async def _failed(self, row: _Row, state: State, code: str) -> None:
        attempts = row.attempts + 1
        wait = min(2.0 ** min(attempts, 12), 300.0)  # seconds until the reconciler tries
        async with self._store.transaction() as db:
            await db.execute(
                "UPDATE outbox SET state = ?, attempts = ?, next_at = ?, updated_at = ?"
                " WHERE id = ? AND state != ?",
                (
                    state.value,
                    attempts,
                    (_now() + dt.timedelta(seconds=wait)).isoformat(),
                    _now().isoformat(),
                    row.id,
                    "DONE",
                ),
            )
        log.warning(
            "write %s (%s, province %s): %s after %d attempt(s): %s",
            row.id,
            row.write.operation.value,
            row.write.province,
            state.value,
            attempts,
            code,
        )

    # -- for the reconciler -----------------------------------------------------------------

    async def due(self, *, pending_after: dt.timedelta, now: bool = False) -> list[_Row]:
        """Writes to send again: unknown ones whose wait is over (all of them ``now``),
        and pending ones older than ``pending_after``; none that an instance is sending
        (another's lease, or this one at work on it: a lease of its own that it failed to
        give back does not count)."""
        at = _now()
        async with self._store.transaction() as db:
            found = await db.fetch(
                _SELECT + "((state = 'UNKNOWN' AND next_at <= ?)"  # noqa: S608
                " OR (state = 'PENDING' AND created_at <= ?))"
                " AND NOT EXISTS (SELECT 1 FROM lease WHERE lease.name = 'outbox:' || outbox.id"
                " AND lease.until >= ? AND lease.owner != ?) ORDER BY created_at",
                (
                    (dt.datetime.max if now else at).isoformat(),
                    (at - pending_after).isoformat(),
                    at.isoformat(),
                    self._store.owner,
                ),
            )
        return [r for r in map(_row_of, found) if _lease(r.id) not in self._leases]

    async def resend(self, row: _Row) -> bool:
        """Send a due write again; True if it is settled: the province answered, or it
        is recorded FAILED (the province cannot read it)."""
        adapter = self._provinces.get(row.write.province)
        if adapter is None:  # a province since left out: kept until it is back
            await self._failed(row, State.UNKNOWN, UpstreamUnavailable.code)
            return False
        try:
            return await self._deliver(row, adapter, wait=False) is not None
        except UpstreamError:  # raised only once recorded FAILED
            return True

    async def counts(self) -> dict[str, int]:
        """Rows by state (for /readyz and metrics)."""
        async with self._store.transaction() as db:
            rows = await db.fetch("SELECT state, COUNT(*) FROM outbox GROUP BY state")
        found = {str(state): int(n) for state, n in rows}
        return {s.value: found.get(s.value, 0) for s in State}


def _lease(write_id: str) -> str:
    return f"outbox:{write_id}"  # (`Outbox.due` names it in SQL too)


def _answered(task: asyncio.Task[Answer | None]) -> Answer | None:
    """What a send that is still going on (or is over) has learnt so far."""
    if not task.done() or task.cancelled() or task.exception() is not None:
        return None
    return task.result()


def _orphan(task: asyncio.Task[Any], what: str) -> None:
    """Nobody waits for ``task`` any more: whatever it raises is logged."""

    def retrieved(task: asyncio.Task[Any]) -> None:
        if task.cancelled():
            return
        error = task.exception()
        if error is not None and not isinstance(error, UpstreamError):  # those are logged
            log.error("%s, after its request was cancelled", what, exc_info=error)

    task.add_done_callback(retrieved)


def _row_of(found: Any) -> _Row:
    rid, key, operation, province, request, channel, fingerprint, state, answer, attempts = found
    return _Row(
        id=rid,
        key=key,
        write=Write(
            Operation(operation),
            province,
            json.loads(request),
            None if channel is None else Channel(channel),
        ),
        fingerprint=fingerprint,
        state=State(state),
        answer=answer,
        attempts=attempts,
    )


class Reconciler:
    """Settles writes whose outcome is unknown, from start-up until shutdown."""

    def __init__(
        self,
        outbox: Outbox,
        *,
        interval: float = 2.0,
        pending_after: float = 30.0,
        also: Callable[[], Awaitable[int]] | None = None,
    ) -> None:
        self._outbox = outbox
        self._interval = interval
        self._pending_after = dt.timedelta(seconds=pending_after)
        # what writes the outbox alone cannot finish (a transfer's next step), after each pass
        self._also = also

    async def run_once(
        self, *, pending_after: dt.timedelta | None = None, now: bool = False
    ) -> int:
        """One pass; the number of writes settled. ``now``: do not wait out backoffs."""
        rows = await self._outbox.due(
            pending_after=self._pending_after if pending_after is None else pending_after,
            now=now,
        )
        settled = 0
        for row in rows:
            settled += await self._outbox.resend(row)
        if rows:
            log.info("reconciler: %d of %d unresolved write(s) settled", settled, len(rows))
        if self._also is not None:
            settled += await self._also()
        return settled

    async def run(self) -> None:
        # at start, every pending write is one the previous process left in flight
        first: dt.timedelta | None = dt.timedelta(0)
        while True:
            try:
                await self.run_once(pending_after=first)
            except Exception:
                log.exception("reconciler pass failed")
            first = None
            await asyncio.sleep(self._interval)

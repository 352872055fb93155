"""The outbox's guards when two senders carry the same write at once.

Within one process a write is carried by one sender at a time; the guards in the
store (an answer is recorded, and journaled, only over a row not ``DONE`` yet) are
what keep a second sender (another `Outbox` over the same store here) from
journaling the same binding twice, or from undoing a recorded answer with its fault.
The province is held in memory, each of its answers released by the test.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator, Sequence
from typing import Any, ClassVar

import httpx
import pytest

from adapters.base import (
    Binding,
    BindingStatus,
    BindRequest,
    Party,
    Policy,
    ProvinceAdapter,
    UpstreamTimeout,
)
from gateway.provinces.federated import Provinces
from gateway.state.leases import Leases
from gateway.state.outbox import Operation, Outbox, Write
from gateway.state.records import Event, Journal
from gateway.state.sqlite import SqliteStore
from gateway.state.store import Store
from tests.doubles import Nowhere

AUTHORIZER, BENEFICIARY = "130102197603150016", "130602195001200010"
WRITE = Write(
    Operation.BIND,
    "13",
    {
        "authorizer": AUTHORIZER,
        "beneficiary": BENEFICIARY,
        "beneficiary_name": "王德明",
        "relation": "PARENT",
        "commitment_signed": True,
    },
)


class Counter(ProvinceAdapter):
    """A province whose answers to binds wait for the test: each bind that comes in is
    queued with what it will be answered (a binding, or the exception given)."""

    code: ClassVar[str] = "13"
    name: ClassVar[str] = "河北省"
    policies: ClassVar[tuple[Policy, ...]] = (Policy(effective_from=dt.date(2020, 1, 1)),)

    def __init__(self) -> None:
        super().__init__(httpx.AsyncClient(transport=Nowhere()))
        self.waiting: asyncio.Queue[asyncio.Future[BaseException | None]] = asyncio.Queue()

    async def bind(self, request: BindRequest) -> Binding:
        answer: asyncio.Future[BaseException | None] = asyncio.get_running_loop().create_future()
        await self.waiting.put(answer)
        fault = await answer
        if fault is not None:
            raise fault
        return Binding(
            id="HB00000001",
            authorizer=Party(request.authorizer_cert_no, "王建国"),
            beneficiary=Party(request.beneficiary_cert_no, request.beneficiary_name),
            relation=request.relation,
            status=BindingStatus.ACTIVE,
            created_at=dt.datetime(2024, 3, 1, tzinfo=dt.UTC),
        )

    async def find_persons(self, cert_nos: Sequence[str]) -> dict[str, Any]:
        raise AssertionError("the outbox read persons")

    async def relatives(self, cert_no: str) -> list[Any]:
        raise AssertionError("the outbox read relatives")

    async def bindings_of(self, cert_nos: Sequence[str]) -> list[Binding]:
        raise AssertionError("the outbox read bindings")

    async def unbind(self, binding_id: str, *, actor: str, request_id: str | None = None) -> Any:
        raise AssertionError("the outbox unbound")


Sending = tuple[asyncio.Task[Any], asyncio.Future[BaseException | None]]


class Two:
    """Two senders of writes (`Outbox`) over one store and one province."""

    def __init__(self, store: Store, province: Counter) -> None:
        self.store = store
        self.province = province
        self.journal = Journal(store)
        provinces = Provinces([province])
        # two instances: each its own leases
        self.first = Outbox(store, provinces, self.journal, Leases(store))
        self.second = Outbox(store, provinces, self.journal, Leases(store))

    async def both_sending(self) -> tuple[Sending, Sending]:
        """The first sends the write; the second, finding it due, sends it again: both
        are at the province, unanswered. Each: its task, and the province's answer to set."""
        first = asyncio.create_task(self.first.send("scope", "key-1", WRITE))
        one = await self.province.waiting.get()
        async with self.store.transaction() as db:  # the first's lease ran out (a long pause)
            await db.execute("DELETE FROM lease")
        [row] = await self.second.due(pending_after=dt.timedelta(0))
        second = asyncio.create_task(self.second.resend(row))
        other = await self.province.waiting.get()
        return (first, one), (second, other)

    async def events(self) -> list[Event]:
        return [r.event for r in await self.journal.of(AUTHORIZER)]


@pytest.fixture
async def two() -> AsyncIterator[Two]:
    store = await SqliteStore.open(None)
    try:
        yield Two(store, Counter())
    finally:
        await store.close()


async def test_a_binding_answered_to_two_senders_is_journaled_once(two: Two) -> None:
    (first, one), (second, other) = await two.both_sending()
    one.set_result(None)
    sent = await first
    assert isinstance(sent.answer, Binding)
    other.set_result(None)
    assert await second is True  # answered: settled
    assert await two.events() == [Event.CREATED]
    assert (await two.first.counts())["DONE"] == 1


async def test_a_fault_after_the_answer_is_recorded_does_not_undo_it(two: Two) -> None:
    (first, one), (second, other) = await two.both_sending()
    one.set_result(None)
    answered = (await first).answer
    other.set_result(UpstreamTimeout("the second send timed out", province="13"))
    assert await second is False  # its own attempt learnt nothing
    assert await two.first.counts() == {"PENDING": 0, "UNKNOWN": 0, "DONE": 1, "FAILED": 0}
    assert await two.first.due(pending_after=dt.timedelta(0), now=True) == []
    again = await two.first.send("scope", "key-1", WRITE)  # the key's outcome: the answer
    assert again.answer == answered
    assert await two.events() == [Event.CREATED]

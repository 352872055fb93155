"""Concurrent identical reads to a province, sent once and shared.

A read (`ProvinceAdapter.find_persons`, `bindings_of`, `relatives`, ...) asked while the
same read, with the same arguments, is already on its way to the province is not sent
again: the second caller waits for the first one's answer (or its fault). The read runs
in a task of its own, so a caller that stops waiting stops nobody else; once nobody
waits for it, it is cancelled, as a read of one caller alone would be. Writes are never
shared, and a read asked after a write to the province began, or ended, never joins one
asked before it: the province may answer it differently now.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable, Hashable, Sequence
from typing import Any, TypeVar

T = TypeVar("T")

# The reads every adapter answers or may answer (the rest of its methods write, or are
# built on these).
READS = (
    "find_persons",
    "relatives",
    "bindings_of",
    "read_family",
    "settlements_of",
    "holds_of",
    "premium_of",
    "registration_changes",
)


class Coalescer:
    def __init__(self) -> None:
        self._flying: dict[Hashable, asyncio.Task[Any]] = {}
        self._waiting: dict[asyncio.Task[Any], int] = {}  # callers waiting for each
        self._writes = 0  # writes begun or ended: a read after one shares nothing before
        self.shared = 0  # reads answered by another caller's request, since the start

    def wrote(self) -> None:
        """A write to the province begins or ends."""
        self._writes += 1

    async def read(self, key: Hashable, run: Callable[[], Awaitable[T]]) -> T:
        """``run()``'s answer, shared with every caller asking ``key`` meanwhile (a key
        that cannot be hashed, an argument of a kind not foreseen, shares nothing)."""
        key = (self._writes, key)
        try:
            hash(key)
        except TypeError:
            return await run()
        flying = self._flying.get(key)
        if flying is None:
            flying = asyncio.get_running_loop().create_task(_awaited(run))
            self._flying[key] = flying
            flying.add_done_callback(functools.partial(self._landed, key))
        else:
            self.shared += 1
        self._waiting[flying] = self._waiting.get(flying, 0) + 1
        try:
            answer: T = await asyncio.shield(flying)
        finally:
            left = self._waiting.pop(flying) - 1
            if left:
                self._waiting[flying] = left
            elif not flying.done():  # the last caller stopped waiting: nobody needs it
                if self._flying.get(key) is flying:
                    del self._flying[key]  # (and nobody joins it while it winds down)
                flying.cancel()
        return answer

    def _landed(self, key: Hashable, task: asyncio.Task[Any]) -> None:
        if self._flying.get(key) is task:
            del self._flying[key]
        if not task.cancelled():
            task.exception()  # retrieved: whoever waited has it, or nobody needs it


class Batcher:
    """Family reads of different people asked while one is on its way to the province
    go together, as one request, once it is back.

    The first read goes at once; those asked meanwhile wait for it to land (``wait``
    seconds at most: a province that hangs costs them one timeout, not two), then go
    as one request for all their people (at most ``most`` a request), and each caller
    gets its own part: the people it asked for, and the bindings in which one of the
    people it named takes part. A merged request is sent after every read in it was
    asked, so none gets an answer older than its question. A fault reaches every read
    in the request; a caller that stops waiting leaves the others theirs.
    """

    def __init__(self, most: int = 100, wait: float = 0.1) -> None:
        self._most = most
        self._wait = wait
        self._flying = 0  # requests on their way
        self._next: list[tuple[frozenset[str], frozenset[str], asyncio.Future[Any]]] = []
        self._timer: asyncio.TimerHandle | None = None
        self._how: tuple[Send, Split] | None = None  # how the waiting reads are sent
        self._sending: set[asyncio.Task[None]] = set()
        self.merged = 0  # reads answered by a request made for several, since the start

    async def read(
        self, people: Sequence[str], bound: Sequence[str], send: Send, split: Split
    ) -> Any:
        if not self._flying:
            self._flying += 1
            try:
                return await send(people, bound)
            finally:
                self._flying -= 1
                self._flush()
        waiting: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._next.append((frozenset(people), frozenset(bound), waiting))
        self._how = (send, split)
        if self._timer is None:  # the first to wait: not longer than ``wait``
            self._timer = asyncio.get_running_loop().call_later(self._wait, self._flush)
        return await waiting

    def _flush(self) -> None:
        """Send what waits (a request of at most ``most`` people), if anything does."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        waiting = [w for w in self._next if not w[2].done()]  # (done: its caller left)
        batch: list[tuple[frozenset[str], frozenset[str], asyncio.Future[Any]]] = []
        people: set[str] = set()
        for read in waiting:
            if batch and len(people | read[0] | read[1]) > self._most:
                break
            batch.append(read)
            people |= read[0] | read[1]
        self._next = waiting[len(batch) :]
        if not batch or self._how is None:
            return
        self._flying += 1
        task = asyncio.get_running_loop().create_task(self._send(batch, *self._how))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)
        if self._next:  # more than one request's worth: the rest go when this lands
            self._timer = asyncio.get_running_loop().call_later(self._wait, self._flush)

    async def _send(
        self,
        batch: list[tuple[frozenset[str], frozenset[str], asyncio.Future[Any]]],
        send: Send,
        split: Split,
    ) -> None:
        people = sorted(set().union(*(p for p, _, _ in batch)))
        bound = sorted(set().union(*(b for _, b, _ in batch)))
        try:
            answer = await send(people, bound)
        except BaseException as exc:
            for _, _, waiting in batch:
                if not waiting.done():
                    waiting.set_exception(exc)
                    waiting.exception()  # retrieved here too: a caller may have left
            if not isinstance(exc, Exception):
                raise
        else:
            if len(batch) > 1:
                self.merged += len(batch)
            for asked, named, waiting in batch:
                if not waiting.done():
                    waiting.set_result(split(answer, asked, named))
        finally:
            self._flying -= 1
            self._flush()


# How a batch is sent (people, bound) and how one caller's part is cut from its answer.
Send = Callable[[Sequence[str], Sequence[str]], Awaitable[Any]]
Split = Callable[[Any, frozenset[str], frozenset[str]], Any]


async def _awaited(run: Callable[[], Awaitable[T]]) -> T:
    return await run()


def key_of(name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Hashable:
    """The read and its arguments, as a key (lists as tuples, in their order)."""

    def frozen(value: Any) -> Hashable:
        if isinstance(value, list | tuple):
            return tuple(frozen(v) for v in value)
        if isinstance(value, set | frozenset):
            return frozenset(value)
        return value  # type: ignore[no-any-return]

    return (name, frozen(args), tuple(sorted((k, frozen(v)) for k, v in kwargs.items())))

"""Work for `me` started before the caller is located.

Where a caller is insured is remembered (`Directory.remembered`). While their own
province is asked who they are, what their family screen and bindings need is
asked at once of the province remembered for them: `Prefetch` is told which fields
of `me` were asked (`gateway.graph.operation.me_fields`, as ``@skip`` and ``@include``
leave them) and starts only what those need. Each field takes its result once
(`Ahead.take`); when the caller turns out to be elsewhere, the work is cancelled and
each field asks for itself.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Collection, Coroutine
from typing import Any, TypeVar

from adapters.base import BreakerState, ProvinceAdapter, UpstreamError
from gateway.provinces.directory import Directory, Located
from gateway.provinces.federated import Provinces
from gateway.rules.family import Family
from gateway.rules.kinship import KinshipLink
from gateway.rules.mutual_aid import MutualAid

T = TypeVar("T")

log = logging.getLogger(__name__)


class Ahead:
    """Work started for one `me` on the province ``home``; each field takes its result
    once (``family``, ``bindings``), or asks for itself."""

    def __init__(
        self, home: ProvinceAdapter | None = None, leftovers: list[asyncio.Task[Any]] | None = None
    ) -> None:
        self.home = home
        # where the caller is, given by the family screen's request to ``home``
        self.caller: asyncio.Future[Located | None] | None = None
        self._tasks: dict[str, asyncio.Task[Any]] = {}
        # cancelled when the operation ends (`Measured`): `Context.leftovers`
        self._leftovers = [] if leftovers is None else leftovers

    def start(self, name: str, work: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
        task = asyncio.ensure_future(work)
        task.add_done_callback(_taken)
        self._tasks[name] = task
        self._leftovers.append(task)
        return task

    def take(self, name: str) -> asyncio.Task[Any] | None:
        return self._tasks.pop(name, None)

    def cancel(self) -> None:
        for task in self._tasks.values():
            task.cancel()
        self._tasks.clear()
        if self.caller is not None and not self.caller.done():
            self.caller.cancel()


def _taken(task: asyncio.Future[Any]) -> None:
    """A result nobody awaits (its field failed first) is not an unhandled error; a
    province's fault is its field's to report, anything else is logged here."""
    if task.cancelled():
        return
    error = task.exception()
    if error is not None and not isinstance(error, UpstreamError):
        log.error("work started ahead failed", exc_info=error)


class Prefetch:
    """One per request (`Context.prefetch`)."""

    def __init__(
        self,
        *,
        directory: Directory,
        provinces: Provinces,
        family: Family,
        mutual_aid: MutualAid,
        person: Callable[[str], Awaitable[Located | None]],
        known: Callable[[str, Located | None], None],
        links: Callable[[str], Awaitable[list[KinshipLink]]],
        leftovers: list[asyncio.Task[Any]],
    ) -> None:
        self._directory = directory
        self._provinces = provinces
        self._family = family
        self._mutual_aid = mutual_aid
        self._person = person
        self._known = known
        self._links = links
        self._leftovers = leftovers

    async def locate(self, caller: str, asked: Collection[str]) -> tuple[Located | None, Ahead]:
        """Where ``caller`` is insured, and the work the fields ``asked`` of their `me`
        need, started meanwhile (none unless they are where they were remembered)."""
        ahead = await self._start(caller, asked)
        try:
            located = await self._settled(caller, ahead)
        except BaseException:
            ahead.cancel()
            raise
        if located is None or located.adapter is not ahead.home:
            ahead.cancel()  # not insured, or elsewhere now: each field asks for itself
            ahead = Ahead()
        return located, ahead

    async def _settled(self, caller: str, ahead: Ahead) -> Located | None:
        """Where the caller is: from the family screen's request to their home province
        when it asks (one request, not two), otherwise asked for."""
        if ahead.caller is not None:
            located = await ahead.caller
            if located is not None:
                self._known(caller, located)  # the rest of the request asks nothing
                return located
        return await self._person(caller)  # not where remembered: looked for everywhere

    async def _start(self, caller: str, asked: Collection[str]) -> Ahead:
        family, bindings = "family" in asked, "mutualAidBindings" in asked
        if not (family or bindings):
            return Ahead()
        code = (await self._directory.remembered([caller])).get(caller)
        home = self._provinces.get(code) if code else None
        if home is None or home.breaker_state is not BreakerState.CLOSED:
            return Ahead()  # after an outage, guesses must not take the breaker's one probe
        ahead = Ahead(home, self._leftovers)
        if family:
            settle = None
            if self._directory.civil_record_kept(home, caller):
                # the relatives are known at once: the caller is asked with them (a civil
                # record to read first would delay finding the caller)
                settle = asyncio.get_running_loop().create_future()
                settle.add_done_callback(_taken)
                ahead.caller = settle
            facts = ahead.start(
                "family", self._family.facts(caller, home, self._links(caller), settle)
            )
            if bindings:  # the family screen asks for the caller's bindings too: no second request
                ahead.start("bindings", self._family.bindings_of_caller(facts, home))
        elif bindings:
            ahead.start("bindings", self._mutual_aid.bindings_of(caller, home))
        return ahead

"""Which province insures whom: asked of every province at once, remembered in the store."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass

from adapters.base import (
    Binding,
    CivilRelative,
    FamilyRead,
    Person,
    ProvinceAdapter,
    UpstreamError,
    UpstreamOverloaded,
)
from gateway.common.certno import loggable
from gateway.provinces.federated import Provinces
from gateway.state.store import Store

log = logging.getLogger(__name__)

CIVIL_RECORDS = 10_000  # civil records remembered at most (the least recently used go)


@dataclass(frozen=True, slots=True)
class Located:
    person: Person
    adapter: ProvinceAdapter


class Directory:
    """``civil_record_ttl``: seconds a person's civil record (who their relatives are, a
    fact that changes with marriages and births) is remembered; 0: asked every time."""

    def __init__(self, provinces: Provinces, store: Store, civil_record_ttl: float = 0.0) -> None:
        self._provinces = provinces
        self._store = store
        self._civil_ttl = civil_record_ttl
        self._civil: OrderedDict[tuple[str, str], tuple[float, Sequence[CivilRelative]]] = (
            OrderedDict()
        )

    async def civil_record(self, adapter: ProvinceAdapter, cert_no: str) -> Sequence[CivilRelative]:
        """A person's civil record from their province, remembered ``civil_record_ttl``
        seconds (in this process only; at most `CIVIL_RECORDS` people)."""
        if self._civil_ttl <= 0:
            return await adapter.relatives(cert_no)
        key = (adapter.code, cert_no)
        now = time.monotonic()
        kept = self._civil.get(key)
        if kept is not None and kept[0] > now:
            self._civil.move_to_end(key)
            return kept[1]
        record = tuple(await adapter.relatives(cert_no))
        self._civil[key] = (now + self._civil_ttl, record)
        self._civil.move_to_end(key)
        while len(self._civil) > CIVIL_RECORDS:
            self._civil.popitem(last=False)
        return record

    def civil_record_kept(self, adapter: ProvinceAdapter, cert_no: str) -> bool:
        """Whether ``cert_no``'s civil record is remembered (`civil_record` asks nothing)."""
        kept = self._civil.get((adapter.code, cert_no))
        return kept is not None and kept[0] > time.monotonic()

    async def remembered(self, cert_nos: Iterable[str]) -> dict[str, str]:
        """The province last found insuring each of ``cert_nos`` (a hint: they may
        have moved since), for those the store remembers in a federated province."""
        return {
            cert_no: code
            for cert_no, code in (await self._store.locations(cert_nos)).items()
            if code in self._provinces
        }

    async def locate(self, cert_nos: Iterable[str]) -> dict[str, Located]:
        """Each insured person among ``cert_nos`` with the adapter of their province.

        A person not found while a province that might insure them failed raises
        that province's `UpstreamError`: "not insured" would be a guess.
        """
        found, unresolved = await self.locate_all(cert_nos)
        for cert_no, error in unresolved.items():
            level = logging.INFO if isinstance(error, UpstreamOverloaded) else logging.WARNING
            log.log(
                level, "cannot locate %s: province %s failed", loggable(cert_no), error.province
            )
            raise error
        return found

    async def locate_all(
        self, cert_nos: Iterable[str]
    ) -> tuple[dict[str, Located], dict[str, UpstreamError]]:
        """Like `locate`, but whoever cannot be located because a province failed comes
        back with that province's error instead: the caller answers the rest."""
        found = await self.survey(cert_nos)
        return found.located, found.unresolved

    async def survey(
        self,
        cert_nos: Iterable[str],
        bound: Mapping[str, Collection[str]] | None = None,
        landed: Callable[[str, FamilyRead | UpstreamError], None] | None = None,
    ) -> Survey:
        """Where each of ``cert_nos`` is insured and, in the same requests, the bindings
        of the people ``bound`` names by province code (`ProvinceAdapter.read_family`).

        One request per province at most per round: remembered people are asked of
        their own province, unknown ones of every province concurrently; once all are
        found, provinces still answering are not waited for (unless their bindings are
        wanted). A remembered person missing there (they moved) is looked for
        everywhere else. ``landed(code, answer)`` is told each province's first answer
        (or fault) as it comes, before the others are in.
        """
        wanted = sorted(set(cert_nos))
        theirs = {code: set(certs) for code, certs in (bound or {}).items() if certs}
        if not wanted and not theirs:
            return Survey({}, {}, {}, {})
        remembered = await self.remembered(wanted)  # a province since left out: look again
        unknown = [c for c in wanted if c not in remembered]
        asks: dict[str, set[str]] = {code: set(unknown) for code in self._provinces}
        for cert_no, code in remembered.items():
            asks[code].add(cert_no)
        found, failures, bindings = await self._ask(asks, theirs, landed)

        # Missing from the province that answered for them before: they moved.
        # (Missing because that province failed says nothing: keep what we know.)
        moved = [c for c, code in remembered.items() if c not in found and code not in failures]
        if moved:
            retry = {code: set(moved) for code in self._provinces if code not in failures}
            for cert_no in moved:
                retry[remembered[cert_no]].discard(cert_no)
            more, more_failures, _ = await self._ask({k: v for k, v in retry.items() if v})
            found.update(more)
            failures.update(more_failures)
            await self._store.forget_locations(c for c in moved if c not in found)

        unresolved: dict[str, UpstreamError] = {}
        if failures:
            first = next(iter(failures.values()))
            for cert_no in wanted:
                if cert_no not in found:
                    mine = remembered.get(cert_no)  # the province that insured them
                    unresolved[cert_no] = failures.get(mine, first) if mine else first
        await self._store.remember_locations(
            {
                c: loc.adapter.code
                for c, loc in found.items()
                if remembered.get(c) != loc.adapter.code
            }
        )
        return Survey(
            located=found,
            unresolved=unresolved,
            bindings=bindings,
            failed={code: e for code, e in failures.items() if code in theirs},
        )

    async def _ask(
        self,
        asks: Mapping[str, set[str]],
        bound: Mapping[str, set[str]] | None = None,
        landed: Callable[[str, FamilyRead | UpstreamError], None] | None = None,
    ) -> tuple[dict[str, Located], dict[str, UpstreamError], dict[str, Sequence[Binding]]]:
        """Ask each province for its people (and the bindings ``bound`` names there, in
        the same request), concurrently; stop waiting once everyone asked for is found
        and every binding wanted is in (the provinces still answering are then not
        needed)."""
        bound = bound or {}
        everyone = set().union(*asks.values())
        tasks: dict[asyncio.Future[FamilyRead], str] = {}
        for code in (*asks, *(c for c in bound if c not in asks)):
            people, theirs = sorted(asks.get(code, ())), sorted(bound.get(code, ()))
            if people or theirs:
                tasks[asyncio.ensure_future(self._read(code, people, theirs))] = code
        needed = {task for task, code in tasks.items() if code in bound}
        found: dict[str, Located] = {}
        failures: dict[str, UpstreamError] = {}
        bindings: dict[str, Sequence[Binding]] = {}
        crashed: BaseException | None = None  # not a province's fault: a bug, raised
        waiting = set(tasks)
        try:
            while waiting and crashed is None and (needed & waiting or everyone - found.keys()):
                done, waiting = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
                for task in done:  # every finished task's outcome is taken
                    code = tasks[task]
                    error = task.exception()
                    if isinstance(error, UpstreamError):
                        failures[code] = error
                        if landed is not None:
                            landed(code, error)
                    elif error is not None:
                        crashed = crashed or error
                    else:
                        adapter = self._provinces[code]
                        answer = task.result()
                        for cert_no, person in _checked(
                            answer.persons, asks.get(code, set()), adapter
                        ):
                            found[cert_no] = Located(person, adapter)
                        if code in bound:
                            bindings[code] = answer.bindings
                        if landed is not None:
                            landed(code, answer)
        finally:
            for task in waiting:
                task.cancel()
            if waiting:
                for task in (await asyncio.wait(waiting))[0]:
                    if not task.cancelled():
                        task.exception()  # taken: it is not needed any more
        if crashed is not None:
            raise crashed
        return found, failures, bindings

    async def _read(self, code: str, people: Sequence[str], bound: Sequence[str]) -> FamilyRead:
        adapter = self._provinces[code]
        if not bound:  # a lookup alone: the same read (and share) as any other
            return FamilyRead(await adapter.find_persons(people), ())
        return await adapter.read_family(people, bound)


@dataclass(frozen=True, slots=True)
class Survey:
    """What `Directory.survey` learnt: who is insured where, who could not be located
    (with the fault of the province that may insure them), the bindings asked for by
    province code, and the provinces whose bindings could not be read."""

    located: dict[str, Located]
    unresolved: dict[str, UpstreamError]
    bindings: dict[str, Sequence[Binding]]
    failed: dict[str, UpstreamError]


def _checked(
    answer: Mapping[str, Person], asked: set[str], adapter: ProvinceAdapter
) -> Sequence[tuple[str, Person]]:
    """Keep only people that were asked for and that the province really insures."""
    return [
        (cert_no, person)
        for cert_no, person in answer.items()
        if cert_no in asked and adapter.serves(person.area.code)
    ]

"""Which province insures whom: asked of every province at once, remembered in the store."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from adapters.base import (
    CivilRelative,
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
        back with that province's error instead: the caller answers the rest.

        One request per province at most per round: remembered people are asked of
        their own province, unknown ones of every province concurrently; once all are
        found, provinces still answering are not waited for. A remembered person
        missing there (they moved) is looked for everywhere else.
        """
        wanted = sorted(set(cert_nos))
        if not wanted:
            return {}, {}
        remembered = await self.remembered(wanted)  # a province since left out: look again
        unknown = [c for c in wanted if c not in remembered]
        asks: dict[str, set[str]] = {code: set(unknown) for code in self._provinces}
        for cert_no, code in remembered.items():
            asks[code].add(cert_no)
        found, failures = await self._ask(asks)

        # Missing from the province that answered for them before: they moved.
        # (Missing because that province failed says nothing: keep what we know.)
        moved = [c for c, code in remembered.items() if c not in found and code not in failures]
        if moved:
            retry = {code: set(moved) for code in self._provinces if code not in failures}
            for cert_no in moved:
                retry[remembered[cert_no]].discard(cert_no)
            more, more_failures = await self._ask({k: v for k, v in retry.items() if v})
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
        return found, unresolved

    async def _ask(
        self, asks: Mapping[str, set[str]]
    ) -> tuple[dict[str, Located], dict[str, UpstreamError]]:
        """Ask each province for its people, concurrently; stop waiting once everyone
        asked for is found (the provinces still answering are then not needed)."""
        everyone = set().union(*asks.values())
        tasks = {
            asyncio.ensure_future(self._provinces[code].find_persons(sorted(certs))): code
            for code, certs in asks.items()
            if certs
        }
        found: dict[str, Located] = {}
        failures: dict[str, UpstreamError] = {}
        crashed: BaseException | None = None  # not a province's fault: a bug, raised
        waiting = set(tasks)
        try:
            while waiting and crashed is None and not everyone <= found.keys():
                done, waiting = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
                for task in done:  # every finished task's outcome is taken
                    code = tasks[task]
                    error = task.exception()
                    if isinstance(error, UpstreamError):
                        failures[code] = error
                    elif error is not None:
                        crashed = crashed or error
                    else:
                        adapter = self._provinces[code]
                        for cert_no, person in _checked(task.result(), asks[code], adapter):
                            found[cert_no] = Located(person, adapter)
        finally:
            for task in waiting:
                task.cancel()
            if waiting:
                for task in (await asyncio.wait(waiting))[0]:
                    if not task.cancelled():
                        task.exception()  # taken: it is not needed any more
        if crashed is not None:
            raise crashed
        return found, failures


def _checked(
    answer: Mapping[str, Person], asked: set[str], adapter: ProvinceAdapter
) -> Sequence[tuple[str, Person]]:
    """Keep only people that were asked for and that the province really insures."""
    return [
        (cert_no, person)
        for cert_no, person in answer.items()
        if cert_no in asked and adapter.serves(person.area.code)
    ]

"""A binding across provinces ends by itself when either person's registration
(参保关系) moves to another province or ends (the 2026 rules).

Each province reports such changes in its change feed (`ProvinceAdapter
.registration_changes`). The gateway reads every feed from where it left off (the
position is kept in the store), and for each change ends the live bindings across
provinces in which that person takes part: an unbind at the province that holds the
binding, on the person's behalf, through the outbox under a key made of the change
(so that reading a change again ends nothing twice). The province returns what remains
of the quota to the authorizer; the authorization records say ``ENDED``. With several
instances on one store, one at a time reads a given feed (its lease); the others skip it.
"""

from __future__ import annotations

import asyncio
import logging

from adapters.base import Binding, ProvinceAdapter, RegistrationChange, UpstreamError
from gateway.common.certno import loggable
from gateway.provinces.federated import Provinces
from gateway.rules.mutual_aid import MutualAid
from gateway.state.leases import Leases
from gateway.state.outbox import Operation, Write
from gateway.state.store import Store
from gateway.state.writes import Writes

log = logging.getLogger(__name__)

SCOPE = "registrations"  # whose keys the ends are written under: no caller's


def _on_binding(code: object) -> str:
    return "bindingId"


class Registrations:
    def __init__(
        self,
        provinces: Provinces,
        mutual_aid: MutualAid,
        writes: Writes,
        store: Store,
        leases: Leases,
    ) -> None:
        self._provinces = provinces
        self._mutual_aid = mutual_aid
        self._writes = writes
        self._store = store
        self._leases = leases

    async def follow_once(self) -> int:
        """Read every province's feed once, from where it was left; the number of
        bindings ended. A province that cannot be read is read next time."""
        ended = 0
        for adapter in self._provinces.values():
            try:
                ended += await self._follow(adapter)
            except UpstreamError as exc:
                log.warning("change feed of %s: not read this time (%s)", adapter.code, exc)
        return ended

    async def run(self, interval: float) -> None:
        """Every ``interval`` seconds, from ``interval`` after start (a gateway starting
        has the provinces' attention for what its clients ask first)."""
        while True:
            await asyncio.sleep(interval)
            try:
                await self.follow_once()
            except Exception:
                log.exception("following the change feeds failed")

    async def _follow(self, adapter: ProvinceAdapter) -> int:
        async with self._leases.attempt(f"feed:{adapter.code}") as mine:
            return await self._read(adapter) if mine else 0

    async def _read(self, adapter: ProvinceAdapter) -> int:
        ended = 0
        after = await self._store.feed_position(adapter.code)
        while True:
            changes = await adapter.registration_changes(after)
            for change in changes:
                ended += await self._end_bindings_of(change, adapter)
                after = change.seq
                await self._store.move_feed_position(adapter.code, after)
            if not changes:
                return ended

    async def _end_bindings_of(self, change: RegistrationChange, home: ProvinceAdapter) -> int:
        """End the person's live bindings across provinces, wherever they are held."""
        me = change.cert_no
        ended = 0
        for binding, holder in await self._mutual_aid.bindings_of(me, home):
            if not _ends(binding, me):
                continue
            key = f"{home.code}-{change.seq}-{holder.code}-{binding.id}"
            write = Write(
                Operation.UNBIND,
                holder.code,
                {
                    "binding_id": binding.id,
                    "actor": me,
                    "reason": f"REGISTRATION_{change.kind.value}",
                },
            )
            try:
                outcome = await self._writes.send(SCOPE, key, write, None, _on_binding, Binding)
            except UpstreamError:
                log.error("binding %s: could not be ended (%s moved)", binding.id, loggable(me))
                continue
            if outcome.value is not None or outcome.submitted:
                ended += 1
                log.info(
                    "binding %s at %s ends: the registration of %s %s",
                    binding.id,
                    holder.code,
                    loggable(me),
                    change.kind.value.lower(),
                )
        return ended


def _ends(binding: Binding, cert_no: str) -> bool:
    """Whether the change of ``cert_no``'s registration ends ``binding``: a live one
    across provinces in which they take part."""
    parties = (binding.authorizer.cert_no, binding.beneficiary.cert_no)
    return binding.across_provinces and binding.status.is_live and cert_no in parties

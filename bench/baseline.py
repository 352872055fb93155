"""The baseline: the family dashboard as a hand-written Starlette + httpx endpoint.

``POST /dashboard`` with ``Authorization: Bearer <token>`` answers the same JSON
document as the gateway answers `bench.dashboard.QUERY` (``{"data": {"me": ...}}``),
from the same sandboxes and the same store, making the same upstream requests as
the gateway (the same kinds, as many, to the same provinces, naming the same
people), as a careful hand-written service would with the same adapters:

* civil records (who a person's relatives are) are kept in memory
  ``[cache] civil_record_seconds`` (300 s by default), as the gateway keeps them;
* a warm dashboard (the caller's civil record kept, everyone's province remembered
  in the store) asks each province involved once, concurrently, with
  `ProvinceAdapter.read_family`: who among the people remembered there it insures
  (the caller, of their remembered home province, in the same request) and every
  binding of the caller and of those people;
* otherwise first, concurrently, the caller of their home province (``find_persons``)
  and their civil record (``relatives``), then the same one request per province;
  someone never located is asked of every province, and their bindings after.

It reuses what is not the gateway's plumbing: the adapters for the dialects
(`AdapterSettings.make_client`, `ProvinceAdapter.configured`, their coalescing of
reads asked at once), the binding rules (`gateway.rules.mutual_aid.judge`, who pays:
`adapters.base.choose_payer`), the messages, masking and ids, and token
verification. Not GraphQL, not the gateway's services. Moments are rendered as the
graph's ``DateTime`` renders them (Beijing time to the second, with its offset). Like
the gateway it keeps its state in SQLite through one aiosqlite connection (a copy of
the gateway's store: kinship links, remembered locations), and appends one audit row
per request.

    .venv/bin/python -m bench.baseline --config CFG.toml --db STORE.sqlite3 --port P
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import time
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiosqlite
import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from adapters.base import (
    Binding,
    BindingStatus,
    CivilRelative,
    FamilyRead,
    Party,
    Person,
    ProvinceAdapter,
    RefusalCode,
    Relation,
    UpstreamError,
    bound_authorizers,
    choose_payer,
)
from gateway.common.auth import InvalidToken, bearer, verify_token
from gateway.common.beijing import CHINA, china_date
from gateway.common.certno import mask_cert_no, mask_name
from gateway.common.ids import encode_id
from gateway.common.messages import reason_message, refusal_message, state_message
from gateway.common.refusals import GatewayCode
from gateway.ops import logs
from gateway.ops.config import KinshipPolicy, Settings
from gateway.provinces.directory import Located
from gateway.provinces.federated import adapter_classes
from gateway.rules.diagnosis import Reason, reason_for
from gateway.rules.family import AgeBand, KinshipState, MutualAidState
from gateway.rules.kinship import LINK_KIND, age_on
from gateway.rules.mutual_aid import BINDING_KIND, judge

REGISTRY = "gateway"  # the "province" part of a kinship link's global id
LIVE_LINKS = ("PENDING_CONSENT", "PENDING_REVIEW", "APPROVED", "ACTIVE")
ESTABLISHED = ("APPROVED", "ACTIVE")
KINSHIP_STATES = {
    "ACTIVE": KinshipState.ADDED,
    "APPROVED": KinshipState.APPROVED,
    "PENDING_CONSENT": KinshipState.PENDING_CONSENT,
    "PENDING_REVIEW": KinshipState.PENDING_REVIEW,
}
RELATION_ORDER = list(Relation)
CIVIL_RECORDS = 10_000  # civil records kept at most (the least recently used go), as the gateway


class Failed(Exception):
    def __init__(self, code: str, status: int) -> None:
        super().__init__(code)
        self.code = code
        self.status = status


class Store:
    """The few statements the dashboard needs, on one connection taking turns."""

    def __init__(self, db: aiosqlite.Connection) -> None:
        self.db = db
        self.turn = asyncio.Lock()

    async def locations(self, cert_nos: Collection[str]) -> dict[str, str]:
        if not cert_nos:
            return {}
        marks = ",".join("?" * len(cert_nos))
        async with (
            self.turn,
            self.db.execute(
                f"SELECT cert_no, province FROM person_location WHERE cert_no IN ({marks})",  # noqa: S608
                list(cert_nos),
            ) as cur,
        ):
            return {row[0]: row[1] for row in await cur.fetchall()}

    async def remember(self, located: Mapping[str, str]) -> None:
        if not located:
            return
        now = dt.datetime.now(dt.UTC).isoformat()
        async with self.turn:
            await self.db.executemany(
                "INSERT INTO person_location (cert_no, province, located_at) VALUES (?, ?, ?)"
                " ON CONFLICT (cert_no) DO UPDATE SET province = excluded.province,"
                " located_at = excluded.located_at",
                [(c, p, now) for c, p in located.items()],
            )
            await self.db.commit()

    async def links_of(self, cert_no: str) -> list[dict[str, Any]]:
        """The person's kinship links, newest first (no documents: the dashboard shows none)."""
        async with (
            self.turn,
            self.db.execute(
                "SELECT id, adder, adder_name, member, member_name, relation, channel, status,"
                " created_at FROM kinship_link WHERE adder = ? OR member = ?"
                " ORDER BY created_at DESC",
                (cert_no, cert_no),
            ) as cur,
        ):
            names = [d[0] for d in cur.description]
            return [dict(zip(names, row, strict=True)) for row in await cur.fetchall()]

    async def live_adders(self, members: Sequence[str]) -> dict[str, int]:
        if not members:
            return {}
        marks = ",".join("?" * len(members))
        async with (
            self.turn,
            self.db.execute(
                "SELECT member, count(*) FROM kinship_link WHERE status IN"  # noqa: S608
                f" ('PENDING_CONSENT', 'PENDING_REVIEW', 'APPROVED', 'ACTIVE')"
                f" AND member IN ({marks}) GROUP BY member",
                list(members),
            ) as cur,
        ):
            return {str(row[0]): int(row[1]) for row in await cur.fetchall()}

    async def audit(self, actor: str, client: str | None, request_id: str) -> None:
        async with self.turn:
            await self.db.execute(
                "INSERT INTO audit (at, request_id, actor, roles, client, operation, fields,"
                " targets, channel, outcome) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    dt.datetime.now(dt.UTC).isoformat(),
                    request_id,
                    actor,
                    "[]",
                    client,
                    "query",
                    '["me"]',
                    "[]",
                    None,
                    "OK",
                ),
            )
            await self.db.commit()


@dataclass(slots=True)
class Facts:
    """What one dashboard is made from."""

    me: Located
    civil: Sequence[CivilRelative]
    links: Sequence[dict[str, Any]]
    names: dict[str, str]
    relation: dict[str, Relation | None]
    located: dict[str, Located]
    held: list[tuple[Binding, ProvinceAdapter]]  # the bindings the caller takes part in
    theirs: dict[str, list[Binding]]  # everyone's bindings, by person
    # whoever else is actively bound to a relative the caller is bound to (who pays)
    co_authorizers: dict[str, Located] = field(default_factory=dict)


class Dashboard:
    def __init__(
        self,
        settings: Settings,
        db_path: Path,
        transports: Mapping[str, httpx.AsyncBaseTransport] | None = None,
    ) -> None:
        self.settings = settings
        self.db_path = db_path
        self.transports = transports or {}
        self.kinship: KinshipPolicy = settings.kinship
        self.adapters: dict[str, ProvinceAdapter] = {}
        self.store: Store
        self.civil_ttl = settings.cache.civil_record_seconds
        self.civil: OrderedDict[tuple[str, str], tuple[float, Sequence[CivilRelative]]] = (
            OrderedDict()
        )

    @contextlib.asynccontextmanager
    async def lifespan(self, app: Starlette) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as stack:
            for name, cls in sorted(adapter_classes().items()):
                if name in self.settings.disabled:
                    continue
                conf = self.settings.provinces.get(name)
                if conf is None or not conf.base_url:
                    raise ValueError(f"province {name}: the baseline needs its base_url")
                client = conf.make_client(self.transports.get(name))
                stack.push_async_callback(client.aclose)
                adapter = cls.configured(client, conf)
                self.adapters[adapter.code] = adapter
            self.adapters = dict(sorted(self.adapters.items()))
            db = await aiosqlite.connect(str(self.db_path))
            stack.push_async_callback(db.close)
            self.store = Store(db)
            yield

    # -- the endpoint ----------------------------------------------------------------

    async def endpoint(self, request: Request) -> JSONResponse:
        token = bearer(request.headers.get("authorization"))
        try:
            if token is None:
                raise Failed("UNAUTHENTICATED", 401)
            try:
                caller = verify_token(token, self.settings.auth)
            except InvalidToken as exc:
                raise Failed("UNAUTHENTICATED", 401) from exc
            if caller.roles:
                raise Failed("FORBIDDEN", 403)
            me = await self.me(caller.cert_no)
        except Failed as exc:
            return _error(exc.code, exc.status)
        except UpstreamError as exc:
            return _error(exc.code, 502)
        client = request.client.host if request.client else None
        request_id = request.headers.get("x-request-id") or uuid.uuid4().hex
        await self.store.audit(caller.cert_no, client, request_id)
        return JSONResponse({"data": {"me": me}})

    async def me(self, caller: str) -> dict[str, Any] | None:
        code = (await self.store.locations([caller])).get(caller)
        home = self.adapters.get(code or "")
        facts = None if home is None else await self.facts(caller, home)
        if facts is None:  # unknown, or no longer where remembered: look everywhere
            found = (await self.survey([caller]))[0].get(caller)
            if found is None:
                return None
            facts = await self.facts(caller, found.adapter, found)
            assert facts is not None
        me, links = facts.me, facts.links
        person, home = me.person, me.adapter
        order = {code: i for i, code in enumerate(self.adapters)}
        own = sorted(  # the caller's own province and those binding across, in province order
            ((b, a) for b, a in facts.held if a is home or a.policy().cross_province),
            key=lambda found: order[found[1].code],
        )
        return {
            "certNo": person.cert_no,
            "name": person.name,
            "insuredArea": {"code": person.area.code, "name": person.area.name},
            "province": {"code": home.code, "name": home.name},
            "insurance": {
                "type": person.insurance_type.value,
                "status": person.insurance_status.value,
            },
            "account": None
            if person.balance is None
            else {"balance": str(Decimal(person.balance).quantize(Decimal("0.01")))},
            "mutualAidBindings": {
                "asAuthorizer": [
                    _binding_view(b, a, caller, "beneficiary")
                    for b, a in own
                    if b.authorizer.cert_no == caller
                ],
                "asBeneficiary": [
                    _binding_view(b, a, caller, "authorizer")
                    for b, a in own
                    if b.beneficiary.cert_no == caller
                ],
            },
            "kinshipMembers": [
                {
                    "id": _link_id(link),
                    "status": link["status"],
                    "relation": link["relation"],
                    "channel": link["channel"],
                    "createdAt": _moment(dt.datetime.fromisoformat(link["created_at"])),
                    "member": _person_ref(link["member"], link["member_name"], caller),
                }
                for link in links
                if link["adder"] == caller
            ],
            "addedMeAsMember": [
                {
                    "id": _link_id(link),
                    "status": link["status"],
                    "relation": link["relation"],
                    "adder": _person_ref(link["adder"], link["adder_name"], caller),
                }
                for link in links
                if link["adder"] != caller
            ],
            "family": await self.family(facts),
        }

    # -- the upstream requests ------------------------------------------------------------

    def kept_civil(self, home: ProvinceAdapter, cert_no: str) -> Sequence[CivilRelative] | None:
        """A civil record kept, still fresh (None: it must be asked)."""
        kept = self.civil.get((home.code, cert_no))
        if kept is None or kept[0] <= time.monotonic():
            return None
        self.civil.move_to_end((home.code, cert_no))
        return kept[1]

    async def civil_record(self, home: ProvinceAdapter, cert_no: str) -> Sequence[CivilRelative]:
        """The civil record from the person's province, kept ``civil_ttl`` seconds."""
        if self.civil_ttl <= 0:
            return await home.relatives(cert_no)
        record = tuple(await home.relatives(cert_no))
        self.civil[(home.code, cert_no)] = (time.monotonic() + self.civil_ttl, record)
        self.civil.move_to_end((home.code, cert_no))
        while len(self.civil) > CIVIL_RECORDS:
            self.civil.popitem(last=False)
        return record

    async def facts(
        self, caller: str, home: ProvinceAdapter, me: Located | None = None
    ) -> Facts | None:
        """Everything a dashboard shows from the provinces and the store. ``me``: where
        the caller is, when known already; otherwise they are asked of ``home`` (None:
        not insured there)."""
        civil = self.kept_civil(home, caller)
        if civil is not None:  # the caller goes with their family, in one request to home
            links = await self.store.links_of(caller)
        elif me is None:  # the caller and their civil record first, at once
            found, civil, links = await asyncio.gather(
                home.find_persons([caller]),
                self.civil_record(home, caller),
                self.store.links_of(caller),
            )
            me = _located(found.get(caller), home)
            if me is None:
                return None
        else:
            civil, links = await asyncio.gather(
                self.civil_record(home, caller), self.store.links_of(caller)
            )
        names: dict[str, str] = {}
        relation: dict[str, Relation | None] = {}
        for entry in civil:
            names[entry.cert_no] = entry.name
            relation[entry.cert_no] = entry.relation
        for link in links:
            if link["status"] not in ESTABLISHED:
                continue
            linked = Relation(link["relation"])
            for cert_no, name in (
                (link["adder"], link["adder_name"]),
                (link["member"], link["member_name"]),
            ):
                if cert_no != caller:
                    names.setdefault(cert_no, name)
                    relation.setdefault(
                        cert_no, linked if link["adder"] == caller else linked.inverse
                    )

        # the caller's bindings wherever they may be held, and each relative's where
        # they are insured: one request per province
        bound: dict[str, set[str]] = {
            code: {caller}
            for code, adapter in self.adapters.items()
            if adapter is home or adapter.policy().cross_province
        }
        wanted = [*names, caller] if me is None else list(names)
        remembered = await self.remembered(names)
        if len(remembered) == len(names):  # where they are and their bindings, at once
            for cert_no, code in remembered.items():
                bound.setdefault(code, set()).add(cert_no)
            located, answers = await self.survey(wanted, bound)
        else:  # someone never located: where they are first, then their bindings
            located, _ = await self.survey(wanted)
            for cert_no, where in located.items():
                if cert_no in names:
                    bound.setdefault(where.adapter.code, set()).add(cert_no)
            answers = await self.bindings(bound)
        if me is None:
            me = located.get(caller)
            if me is None or me.adapter is not home:
                return None  # not there any more
        located = {c: where for c, where in located.items() if c in names}
        # a relative found where their bindings were not asked (they moved): ask there
        late: dict[str, set[str]] = {}
        for cert_no, where in located.items():
            if cert_no not in bound.get(where.adapter.code, ()):
                late.setdefault(where.adapter.code, set()).add(cert_no)
        answered = list(answers.items())
        if late:
            answered += list((await self.bindings(late)).items())
        held: list[tuple[Binding, ProvinceAdapter]] = []
        theirs: dict[str, list[Binding]] = {}
        seen: set[tuple[str, str]] = set()
        for code, bindings in answered:
            adapter = self.adapters[code]
            for binding in bindings:
                if (code, binding.id) in seen:
                    continue
                seen.add((code, binding.id))
                if caller in (binding.authorizer.cert_no, binding.beneficiary.cert_no):
                    held.append((binding, adapter))
                for party in (binding.authorizer, binding.beneficiary):
                    theirs.setdefault(party.cert_no, []).append(binding)
        # someone bound to the caller on no record of theirs (rare), and whoever else is
        # actively bound to a relative the caller is bound to (their balance says who pays)
        extra = {
            party.cert_no: (
                party.name,
                b.relation if b.authorizer.cert_no == caller else b.relation.inverse,
            )
            for b, _ in held
            if b.status.is_live
            for party in (b.authorizer, b.beneficiary)
            if party.cert_no != caller and party.cert_no not in names
        }
        others = {
            party.cert_no
            for b, _ in held
            if b.status is BindingStatus.ACTIVE and b.authorizer.cert_no == caller
            for party in bound_authorizers(
                theirs.get(b.beneficiary.cert_no, ()), b.beneficiary.cert_no
            )
            if party.cert_no != caller and party.cert_no not in names and party.cert_no not in extra
        }
        co_authorizers: dict[str, Located] = {}
        if extra or others:
            for cert_no, (name, related) in extra.items():
                names[cert_no], relation[cert_no] = name, related
            more, _ = await self.survey([*extra, *others])
            for cert_no, where in more.items():
                (located if cert_no in extra else co_authorizers)[cert_no] = where
        return Facts(
            me=me,
            civil=civil,
            links=links,
            names=names,
            relation=relation,
            located=located,
            held=held,
            theirs=theirs,
            co_authorizers=co_authorizers,
        )

    async def remembered(self, cert_nos: Collection[str]) -> dict[str, str]:
        """The province remembered for each of ``cert_nos`` (a hint: they may have moved)."""
        return {
            c: code
            for c, code in (await self.store.locations(cert_nos)).items()
            if code in self.adapters
        }

    async def survey(
        self, cert_nos: Iterable[str], bound: Mapping[str, set[str]] | None = None
    ) -> tuple[dict[str, Located], dict[str, Sequence[Binding]]]:
        """Where each of ``cert_nos`` is insured and, in the same requests, the bindings of
        the people ``bound`` names by province code: remembered people asked of their
        province, unknown ones of every province, one request per province, concurrently;
        someone missing where remembered (they moved) is then looked for everywhere else.
        What is found is remembered."""
        wanted = sorted(set(cert_nos))
        bound = bound or {}
        remembered = await self.remembered(wanted)
        unknown = {c for c in wanted if c not in remembered}
        asks: dict[str, set[str]] = {code: set(unknown) for code in self.adapters}
        for cert_no, code in remembered.items():
            asks[code].add(cert_no)
        located, bindings = await self._ask(asks, bound)
        moved = [c for c in remembered if c not in located]
        if moved:  # rare: look everywhere else, as the gateway's directory does
            retry = {code: {c for c in moved if remembered[c] != code} for code in self.adapters}
            more, _ = await self._ask(retry, {})
            located.update(more)
        await self.store.remember(
            {
                c: loc.adapter.code
                for c, loc in located.items()
                if remembered.get(c) != loc.adapter.code
            }
        )
        return located, bindings

    async def _ask(
        self, asks: Mapping[str, set[str]], bound: Mapping[str, set[str]]
    ) -> tuple[dict[str, Located], dict[str, Sequence[Binding]]]:
        """One request per province asked something, concurrently: `read_family` where
        bindings are wanted, `find_persons` where only people are."""
        codes = [c for c in self.adapters if asks.get(c) or bound.get(c)]
        answers = await asyncio.gather(
            *(self._read(c, sorted(asks.get(c, ())), sorted(bound.get(c, ()))) for c in codes)
        )
        located: dict[str, Located] = {}
        bindings: dict[str, Sequence[Binding]] = {}
        for code, answer in zip(codes, answers, strict=True):
            adapter = self.adapters[code]
            for cert_no, person in answer.persons.items():
                where = _located(person, adapter)
                if cert_no in asks.get(code, ()) and where is not None:
                    located[cert_no] = where
            if bound.get(code):
                bindings[code] = answer.bindings
        return located, bindings

    async def _read(self, code: str, people: Sequence[str], bound: Sequence[str]) -> FamilyRead:
        adapter = self.adapters[code]
        if not bound:
            return FamilyRead(await adapter.find_persons(people), ())
        return await adapter.read_family(people, bound)

    async def bindings(self, bound: Mapping[str, set[str]]) -> dict[str, Sequence[Binding]]:
        """The bindings of ``bound``'s people, one `bindings_of` per province, at once."""
        codes = [c for c, certs in bound.items() if certs]
        answers = await asyncio.gather(
            *(self.adapters[c].bindings_of(sorted(bound[c])) for c in codes)
        )
        return dict(zip(codes, answers, strict=True))

    # -- the family screen -----------------------------------------------------------------

    async def family(self, facts: Facts) -> list[dict[str, Any]]:
        me, links, names, relation = facts.me, facts.links, facts.names, facts.relation
        located, held, theirs = facts.located, facts.held, facts.theirs
        caller = me.person.cert_no
        adders = await self.store.live_adders(list(names))
        my_links = sum(link["status"] in LIVE_LINKS and link["adder"] == caller for link in links)
        on_record = {entry.cert_no for entry in facts.civil}
        today = china_date()
        members = []
        for cert_no in sorted(names, key=lambda c: (_order(relation[c]), c)):
            where = located.get(cert_no)
            mine = [
                (b, a)
                for b, a in held
                if {b.authorizer.cert_no, b.beneficiary.cert_no} == {caller, cert_no}
            ]
            i_authorize = _pick(mine, caller)
            authorizes_me = _pick(mine, cert_no)
            i_added = _pick_link(links, caller, cert_no)
            added_me = _pick_link(links, cert_no, caller)
            age = age_on(cert_no, today)
            civil_relation = relation[cert_no] if cert_no in on_record else None
            aid_state, aid_reason = self._aid_verdict(
                me,
                where,
                civil_relation,
                i_authorize,
                [*theirs.get(caller, []), *theirs.get(cert_no, [])],
                _payer(facts, cert_no),
            )
            kin_state, kin_reason, documents = self._kinship_verdict(
                where, civil_relation, i_added, my_links, adders.get(cert_no, 0), age
            )
            members.append(
                _member_view(
                    Party(cert_no, names[cert_no]),
                    relation[cert_no],
                    where,
                    AgeBand.of(age),
                    (i_authorize, authorizes_me, i_added, added_me),
                    (aid_state, aid_reason),
                    (kin_state, kin_reason, documents),
                    caller,
                )
            )
        return members

    # -- verdicts (the rules of the family screen, by the same judge) -------------------

    def _aid_verdict(
        self,
        me: Located,
        them: Located | None,
        civil: Relation | None,
        mine: tuple[Binding, ProvinceAdapter] | None,
        bindings: Sequence[Binding],
        payer: Party | None,
    ) -> tuple[MutualAidState, Reason | None]:
        empty = me.person.is_employee and (me.person.balance or 0) <= 0
        if mine is not None and mine[0].status is BindingStatus.ACTIVE:
            if not me.person.is_employee:
                return MutualAidState.BOUND, Reason.NOT_EMPLOYEE_INSURED
            if them is not None and not them.person.is_in_force:
                return MutualAidState.BOUND, Reason.RELATIVE_INSURANCE_NOT_IN_FORCE
            if empty:
                return MutualAidState.BOUND, Reason.BALANCE_ZERO
            if them is not None and payer is not None and payer.cert_no != me.person.cert_no:
                return MutualAidState.BOUND, Reason.ANOTHER_AUTHORIZER_PAYS
            return MutualAidState.BOUND, None
        if mine is not None and mine[0].status is BindingStatus.PENDING_CONFIRMATION:
            return MutualAidState.PENDING_CONFIRMATION, Reason.SPOUSE_NOT_CONFIRMED
        if them is None:
            return MutualAidState.NOT_POSSIBLE, Reason.RELATIVE_NOT_INSURED
        if civil is None:
            return MutualAidState.NOT_POSSIBLE, Reason.RELATION_NOT_VERIFIED
        refused = judge(me, them, civil, civil=civil, bindings=bindings)
        if refused is not None:
            return MutualAidState.NOT_POSSIBLE, reason_for(refused)
        return MutualAidState.CAN_BIND, Reason.BALANCE_ZERO if empty else None

    def _kinship_verdict(
        self,
        them: Located | None,
        civil: Relation | None,
        mine: dict[str, Any] | None,
        my_links: int,
        their_adders: int,
        age: int | None,
    ) -> tuple[KinshipState, RefusalCode | None, bool]:
        policy = self.kinship
        if mine is not None and mine["status"] in LIVE_LINKS:
            return KINSHIP_STATES[mine["status"]], None, False
        if them is None:
            return KinshipState.NOT_POSSIBLE, RefusalCode.PERSON_NOT_FOUND, False
        if civil is not None and civil not in policy.allowed_relations:
            return KinshipState.NOT_POSSIBLE, RefusalCode.RELATION_NOT_ALLOWED, False
        if my_links >= policy.max_members:
            return KinshipState.NOT_POSSIBLE, GatewayCode.KINSHIP_ADDER_LIMIT_REACHED, False
        if their_adders >= policy.max_adders:
            return KinshipState.NOT_POSSIBLE, GatewayCode.KINSHIP_MEMBER_LIMIT_REACHED, False
        needs = civil is None or age is None or age <= policy.review_age
        return KinshipState.CAN_ADD, None, needs


def _payer(facts: Facts, relative: str) -> Party | None:
    """Who pays for ``relative`` by mutual aid: of the authorizers actively bound to
    them, the largest balance known (`adapters.base.choose_payer`)."""
    me = facts.me.person

    def balance(cert_no: str) -> Decimal | None:
        if cert_no == me.cert_no:
            return me.balance
        where = facts.located.get(cert_no) or facts.co_authorizers.get(cert_no)
        return None if where is None else where.person.balance

    authorizers = bound_authorizers(facts.theirs.get(relative, ()), relative)
    return choose_payer(None, None, [(p, balance(p.cert_no)) for p in authorizers])


def _located(person: Person | None, adapter: ProvinceAdapter) -> Located | None:
    """Where ``person`` is insured, if ``adapter``'s province really insures them."""
    if person is None or not adapter.serves(person.area.code):
        return None
    return Located(person, adapter)


# -- views --------------------------------------------------------------------------------


def _moment(moment: dt.datetime) -> str:
    """A moment as the graph's ``DateTime`` renders it (`gateway.graph.types.beijing_time`,
    the contract front ends see): Beijing time to the second, with its offset
    (``2026-12-03T14:05:09+08:00``); a moment kept without a zone is UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.astimezone(CHINA).isoformat(timespec="seconds")


def _error(code: str, status: int) -> JSONResponse:
    return JSONResponse(
        {"data": None, "errors": [{"message": code, "extensions": {"code": code}}]},
        status_code=status,
    )


def _person_ref(cert_no: str, name: str, caller: str) -> dict[str, str]:
    if cert_no == caller:
        return {"name": name, "certNo": cert_no}
    return {"name": mask_name(name), "certNo": mask_cert_no(cert_no)}


def _binding_id(binding: Binding, adapter: ProvinceAdapter) -> str:
    return encode_id(BINDING_KIND, adapter.code, binding.id)


def _link_id(link: dict[str, Any]) -> str:
    return encode_id(LINK_KIND, REGISTRY, link["id"])


def _binding_view(
    binding: Binding, adapter: ProvinceAdapter, caller: str, other: str
) -> dict[str, Any]:
    party: Party = getattr(binding, other)
    return {
        "id": _binding_id(binding, adapter),
        "status": binding.status.value,
        "relation": binding.relation.value,
        "createdAt": _moment(binding.created_at),
        other: _person_ref(party.cert_no, party.name, caller),
        "province": {"code": adapter.code},
    }


def _member_view(
    party: Party,
    relation: Relation | None,
    where: Located | None,
    band: AgeBand,
    links: tuple[Any, Any, Any, Any],
    aid: tuple[MutualAidState, Reason | None],
    kin: tuple[KinshipState, Any, bool],
    caller: str,
) -> dict[str, Any]:
    lang = "zh"
    person: Person | None = where.person if where else None
    i_authorize, authorizes_me, i_added, added_me = links
    aid_state, aid_reason = aid
    message = state_message("MUTUAL_AID", aid_state.value, lang)
    if aid_reason is not None:
        message += "：" + reason_message(aid_reason.value, lang)[0]
    kin_state, kin_reason, documents = kin
    kin_message = state_message("KINSHIP", kin_state.value, lang)
    if kin_reason is not None:
        kin_message += "：" + refusal_message(kin_reason, lang)

    def binding(found: tuple[Binding, ProvinceAdapter] | None) -> dict[str, str] | None:
        if found is None:
            return None
        return {"id": _binding_id(*found), "status": found[0].status.value}

    def link(found: dict[str, Any] | None) -> dict[str, str] | None:
        return None if found is None else {"id": _link_id(found), "status": found["status"]}

    return {
        "relative": _person_ref(party.cert_no, party.name, caller),
        "relation": None if relation is None else relation.value,
        "ageBand": band.value,
        "insuredArea": None
        if person is None
        else {"code": person.area.code, "name": person.area.name},
        "province": None
        if where is None
        else {"code": where.adapter.code, "name": where.adapter.name},
        "insurance": None
        if person is None
        else {"type": person.insurance_type.value, "status": person.insurance_status.value},
        "mutualAid": {
            "iAuthorize": binding(i_authorize),
            "authorizesMe": binding(authorizes_me),
            "verdict": {
                "state": aid_state.value,
                "reason": None if aid_reason is None else aid_reason.value,
                "message": message,
            },
        },
        "kinship": {
            "iAdded": link(i_added),
            "addedMe": link(added_me),
            "verdict": {
                "state": kin_state.value,
                "reason": None if kin_reason is None else kin_reason.value,
                "documentsNeeded": documents,
                "message": kin_message,
            },
        },
    }


def _latest(items: Iterable[tuple[dt.datetime, bool, Any]]) -> Any:
    ranked = sorted(items, key=lambda i: (i[1], i[0]), reverse=True)
    return ranked[0][2] if ranked else None


def _pick(
    found: Sequence[tuple[Binding, ProvinceAdapter]], authorizer: str
) -> tuple[Binding, ProvinceAdapter] | None:
    return _latest(
        (b.created_at, b.status.is_live, (b, a))
        for b, a in found
        if b.authorizer.cert_no == authorizer
    )


def _pick_link(links: Sequence[dict[str, Any]], adder: str, member: str) -> dict[str, Any] | None:
    return _latest(
        (dt.datetime.fromisoformat(link["created_at"]), link["status"] in LIVE_LINKS, link)
        for link in links
        if link["adder"] == adder and link["member"] == member
    )


def _order(relation: Relation | None) -> int:
    return RELATION_ORDER.index(relation) if relation is not None else len(RELATION_ORDER)


def create_app(
    settings: Settings,
    db_path: Path,
    transports: Mapping[str, httpx.AsyncBaseTransport] | None = None,
) -> Starlette:
    """``transports`` replaces the network for named provinces (the benchmark records
    the baseline's upstream requests through them, as the gateway's)."""
    dashboard = Dashboard(settings, db_path, transports)

    async def healthz(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})  # for the harness: started and serving

    return Starlette(
        routes=[
            Route("/dashboard", dashboard.endpoint, methods=["POST"]),
            Route("/healthz", healthz),
        ],
        lifespan=dashboard.lifespan,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, required=True, help="the gateway's TOML file")
    parser.add_argument("--db", type=Path, required=True, help="a copy of the gateway's store")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    settings = Settings.load(args.config)
    logs.configure(fmt=settings.logs_as)  # served as the gateway is: the same logs, uvicorn
    uvicorn.run(create_app(settings, args.db), host=args.host, port=args.port, log_config=None)


if __name__ == "__main__":
    main()

"""The baseline: the family dashboard as a hand-written Starlette + httpx endpoint.

``POST /dashboard`` with ``Authorization: Bearer <token>`` answers the same JSON
document as the gateway answers `bench.dashboard.QUERY` (``{"data": {"me": ...}}``),
from the same sandboxes and the same store, making the same upstream requests as
the gateway (the same kinds, as many, to the same provinces) but each as early as
its inputs allow:

* wave 1, concurrently: the caller's insurance, civil record and bindings from
  their (remembered) province, and their kinship links from the store;
* wave 2, concurrently: the relatives' insurance from each province that insures
  them (remembered) and the bindings of the caller and the relatives together.

It reuses what is not the gateway's plumbing: the adapters for the dialects
(`AdapterSettings.make_client`, `ProvinceAdapter.configured`), the binding rules
(`gateway.rules.mutual_aid.judge`), the messages, masking and ids, and token
verification. Not GraphQL, not the gateway's services. Like the gateway it keeps
its state in SQLite through one aiosqlite connection (a copy of the gateway's
store: kinship links, remembered locations), and appends one audit row per request.

    .venv/bin/python -m bench.baseline --config CFG.toml --db STORE.sqlite3 --port P
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import uuid
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiosqlite
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from adapters.base import (
    Binding,
    BindingStatus,
    Party,
    Person,
    ProvinceAdapter,
    RefusalCode,
    Relation,
    UpstreamError,
)
from gateway.common.auth import InvalidToken, bearer, verify_token
from gateway.common.beijing import china_date
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

    async def locations(self, cert_nos: Sequence[str]) -> dict[str, str]:
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


class Dashboard:
    def __init__(self, settings: Settings, db_path: Path) -> None:
        self.settings = settings
        self.db_path = db_path
        self.kinship: KinshipPolicy = settings.kinship
        self.adapters: dict[str, ProvinceAdapter] = {}
        self.store: Store

    @contextlib.asynccontextmanager
    async def lifespan(self, app: Starlette) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as stack:
            for name, cls in sorted(adapter_classes().items()):
                if name in self.settings.disabled:
                    continue
                conf = self.settings.provinces.get(name)
                if conf is None or not conf.base_url:
                    raise ValueError(f"province {name}: the baseline needs its base_url")
                client = conf.make_client()
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
        # wave 1: the caller's own facts from their remembered province, and the store
        code = (await self.store.locations([caller])).get(caller)
        home = self.adapters.get(code or "")
        if home is not None:
            found, civil, own, links = await asyncio.gather(
                home.find_persons([caller]),
                home.relatives(caller),
                self._own_bindings(caller, home),
                self.store.links_of(caller),
            )
            person = found.get(caller)
            if person is None or not home.serves(person.area.code):
                home = None  # they moved: look everywhere, as the gateway would
        if home is None:
            located = await self.locate([caller])
            if caller not in located:
                return None
            home, person = located[caller].adapter, located[caller].person
            civil, own, links = await asyncio.gather(
                home.relatives(caller),
                self._own_bindings(caller, home),
                self.store.links_of(caller),
            )
        me = Located(person, home)
        members = await self.family(me, civil, links)
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
                    "createdAt": dt.datetime.fromisoformat(link["created_at"]).isoformat(),
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
            "family": members,
        }

    async def _own_bindings(
        self, caller: str, home: ProvinceAdapter
    ) -> list[tuple[Binding, ProvinceAdapter]]:
        asked = [a for a in self.adapters.values() if a is home or a.policy().cross_province]
        answers = await asyncio.gather(*(a.bindings_of([caller]) for a in asked))
        return [(b, a) for a, found in zip(asked, answers, strict=True) for b in found]

    async def locate(self, cert_nos: Iterable[str]) -> dict[str, Located]:
        """Ask every province (the slow path: someone unknown or moved), and remember."""
        wanted = sorted(set(cert_nos))
        codes = list(self.adapters)
        answers = await asyncio.gather(*(self.adapters[c].find_persons(wanted) for c in codes))
        found: dict[str, Located] = {}
        for code, answer in zip(codes, answers, strict=True):
            adapter = self.adapters[code]
            for cert_no, person in answer.items():
                if cert_no in wanted and adapter.serves(person.area.code):
                    found[cert_no] = Located(person, adapter)
        await self.store.remember({c: loc.adapter.code for c, loc in found.items()})
        return found

    async def family(
        self, me: Located, civil: Sequence[Any], links: Sequence[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        caller = me.person.cert_no
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

        # wave 2: everyone's insurance and everyone's bindings, at once
        located, held, theirs = await self._wave2(me, sorted(names))
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
        if extra:
            for cert_no, (name, related) in extra.items():
                names[cert_no], relation[cert_no] = name, related
            located.update(await self.locate(extra))
        adders = await self.store.live_adders(list(names))
        my_links = sum(link["status"] in LIVE_LINKS and link["adder"] == caller for link in links)
        on_record = {entry.cert_no for entry in civil}
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

    async def _wave2(
        self, me: Located, wanted: list[str]
    ) -> tuple[dict[str, Located], list[tuple[Binding, ProvinceAdapter]], dict[str, list[Binding]]]:
        caller = me.person.cert_no
        remembered = {
            c: code
            for c, code in (await self.store.locations(wanted)).items()
            if code in self.adapters
        }
        unknown = [c for c in wanted if c not in remembered]
        finds: dict[str, set[str]] = (
            {code: set(unknown) for code in self.adapters} if wanted else {}
        )
        binds: dict[str, set[str]] = {
            a.code: {caller}
            for a in self.adapters.values()
            if a is me.adapter or a.policy().cross_province
        }
        for cert_no, code in remembered.items():
            finds.setdefault(code, set()).add(cert_no)
            binds.setdefault(code, set()).add(cert_no)
        find_codes = [c for c, certs in finds.items() if certs]
        bind_codes = list(binds)
        found_by, bound_by = await asyncio.gather(
            asyncio.gather(*(self.adapters[c].find_persons(sorted(finds[c])) for c in find_codes)),
            asyncio.gather(*(self.adapters[c].bindings_of(sorted(binds[c])) for c in bind_codes)),
        )
        located: dict[str, Located] = {}
        for code, answer in zip(find_codes, found_by, strict=True):
            adapter = self.adapters[code]
            for cert_no, person in answer.items():
                if cert_no in finds[code] and adapter.serves(person.area.code):
                    located[cert_no] = Located(person, adapter)
        moved = [c for c in remembered if c not in located]
        if moved:  # rare: look everywhere else, as the gateway's directory does
            located.update(await self.locate(moved))
        await self.store.remember(
            {
                c: loc.adapter.code
                for c, loc in located.items()
                if remembered.get(c) != loc.adapter.code
            }
        )
        # anyone found somewhere their bindings were not asked: ask there (rare)
        late: dict[str, set[str]] = {}
        for cert_no, loc in located.items():
            if cert_no not in binds.get(loc.adapter.code, ()):
                late.setdefault(loc.adapter.code, set()).add(cert_no)
        answers = list(zip(bind_codes, bound_by, strict=True))
        if late:
            more = await asyncio.gather(
                *(self.adapters[c].bindings_of(sorted(certs)) for c, certs in late.items())
            )
            answers += list(zip(late, more, strict=True))
        held: list[tuple[Binding, ProvinceAdapter]] = []
        theirs: dict[str, list[Binding]] = {}
        seen: set[tuple[str, str]] = set()
        for code, bindings in answers:
            adapter = self.adapters[code]
            for binding in bindings:
                if (code, binding.id) in seen:
                    continue
                seen.add((code, binding.id))
                if caller in (binding.authorizer.cert_no, binding.beneficiary.cert_no):
                    held.append((binding, adapter))
                for party in (binding.authorizer, binding.beneficiary):
                    theirs.setdefault(party.cert_no, []).append(binding)
        return located, held, theirs

    # -- verdicts (the rules of the family screen, by the same judge) -------------------

    def _aid_verdict(
        self,
        me: Located,
        them: Located | None,
        civil: Relation | None,
        mine: tuple[Binding, ProvinceAdapter] | None,
        bindings: Sequence[Binding],
    ) -> tuple[MutualAidState, Reason | None]:
        empty = me.person.is_employee and (me.person.balance or 0) <= 0
        if mine is not None and mine[0].status is BindingStatus.ACTIVE:
            if not me.person.is_employee:
                return MutualAidState.BOUND, Reason.NOT_EMPLOYEE_INSURED
            if them is not None and not them.person.is_in_force:
                return MutualAidState.BOUND, Reason.RELATIVE_INSURANCE_NOT_IN_FORCE
            return MutualAidState.BOUND, Reason.BALANCE_ZERO if empty else None
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


# -- views --------------------------------------------------------------------------------


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
        "createdAt": binding.created_at.isoformat(),
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


def create_app(settings: Settings, db_path: Path) -> Starlette:
    dashboard = Dashboard(settings, db_path)

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

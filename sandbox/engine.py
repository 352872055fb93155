"""A provincial medical-insurance system as we model it: storage and its own rules.

Each dialect module (`sandbox.hebei`, ...) wraps one `ProvinceSystem` in the
HTTP dialect of that province and maps `SandboxRefusal.reason` onto its own
error codes. The rules here are the province's, enforced authoritatively,
independent of the gateway's early checks.

Request ids. Every write (`ProvinceSystem.bind`, `respond`, `unbind`, `settle`,
`reverse`) takes the caller's ``request_id`` (each dialect says where it travels).
The province keeps the id with its answer, the refusal included, in the same
transaction as the write itself (table ``answered``): either both are kept or
neither. The same id again is answered with the kept answer, and nothing is done
a second time, whatever has changed since (a binding answered ACTIVE is answered
ACTIVE again after it ended; a settlement as it was, before its reversal). A
write without an id behaves as it always did; reads ignore ids. Answers are kept
for good (a real system would keep them for some days at least: longer than the
gateway takes to ask again).

An id reused for a different request (another operation, or other fields) is
refused with `RequestIdReused`, as payment platforms refuse a reused key: each
dialect answers it as a fault of the request, not a business refusal (Hebei
``infcode`` -1, Jiangsu HTTP 409 with 40900, Henan ``9999``); nothing is done and
nothing is kept, so the first request's answer stays to be asked for. Replaying
the first answer instead would tell the caller that their second request was
done when it was not. What counts as "the same request" is what the caller asked
for: for a settlement, the bill (institution, its key, patient, medical type,
amounts) but not the ``payer`` named, which is the caller's advice chosen from
balances that move (a retry may name another one; the bill is still the same, as
with the idempotency key).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, TypedDict

import aiosqlite

ROSTER = Path(__file__).resolve().parent.parent / "fixtures" / "roster.json"

# Reasons a province refuses; each dialect maps them onto its own codes.
REASONS = (
    "person_not_found",
    "info_mismatch",
    "not_employee",
    "beneficiary_not_insured",
    "relation_not_allowed",
    "relation_not_verified",
    "cross_area",
    "cross_province",
    "quota_not_allowed",
    "quota_above_balance",
    "quota_insufficient",
    "bad_hold_state",
    # resident premiums
    "not_resident",
    "premium_not_declared",
    "premium_paid",
    "premium_not_allowed",
    "balance_insufficient",
    "limit",
    "already_bound",
    "duplicate",
    "commitment",
    "forbidden",
    "bad_state",
    # settlement
    "patient_not_insured",
    "bad_amount",
    "idempotency_conflict",
    "payer_not_bound",
    "already_reversed",
    "reversal_window",
)

LIVE = ("PENDING_CONFIRMATION", "ACTIVE")


class SandboxRefusal(Exception):
    def __init__(self, reason: str, field: str | None = None) -> None:
        if reason not in REASONS:
            raise ValueError(reason)
        super().__init__(reason)
        self.reason = reason
        self.field = field


class RequestIdReused(Exception):
    """The request id was kept with the answer to a different request: nothing was done.

    Not a business refusal: each dialect answers it as a fault of the request.
    """

    def __init__(self, request_id: str) -> None:
        super().__init__(f"request id {request_id!r} was used for another request")
        self.request_id = request_id


CORE_FAMILY = frozenset({"SPOUSE", "PARENT", "CHILD"})
# Near relatives (近亲属, Civil Code art. 1045), whom mutual aid may cover from 2024 on.
NEAR_RELATIVES = CORE_FAMILY | {"SIBLING", "GRANDPARENT", "GRANDCHILD"}


class Funding(TypedDict):
    """Mutual aid held in another province from a quota, paying here in place of an
    authorizer of this province's own (`ProvinceSystem.settle`, `.pay_premium`)."""

    province: str  # the province holding the quota: its two-digit code ("13")
    payer: str  # the authorizer there
    amount: str  # what is held there, a decimal string ("120.00")
    hold: str  # the hold's id there


@dataclass(frozen=True, slots=True)
class ProvinceRules:
    """The province's own rules, as its system enforces them."""

    prefix: str
    id_prefix: str
    # the first day these rules apply; a province's rules are a series of versions
    effective_from: dt.date = dt.date(2020, 1, 1)
    max_relatives: int = 5
    cross_city: bool = False
    # Its employees may bind near relatives insured in another province, with a quota
    # (共济额度) set aside from their account (the 2026 national rules).
    cross_province: bool = False
    spouse_confirmation: bool = False
    single_binding: bool = False
    commitment_required: bool = False
    allowed_relations: frozenset[str] = CORE_FAMILY
    # The province must be told which authorizer pays a settlement; a bill that
    # names none gets nothing from mutual aid (else the system picks the largest).
    payer_named: bool = False
    # An account may pay a bound relative's resident premium (城乡居民医保个人缴费, 2024 on).
    premium_payment: bool = False
    # The resident premium this province declares for each year: (year, amount).
    premiums: tuple[tuple[int, str], ...] = ()


_SCHEMA = """
CREATE TABLE IF NOT EXISTS person (
    cert_no TEXT PRIMARY KEY, name TEXT NOT NULL, gender TEXT, birth_date TEXT,
    area_code TEXT NOT NULL, area_name TEXT NOT NULL, insurance_type TEXT NOT NULL,
    insurance_status TEXT NOT NULL, balance TEXT, phone TEXT
);
CREATE TABLE IF NOT EXISTS civil_person (cert_no TEXT PRIMARY KEY, name TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS civil_relation (
    subject TEXT NOT NULL, relative TEXT NOT NULL, relation TEXT NOT NULL,
    PRIMARY KEY (subject, relative)
);
CREATE TABLE IF NOT EXISTS binding (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT UNIQUE NOT NULL,
    authorizer TEXT NOT NULL, beneficiary TEXT NOT NULL, relation TEXT NOT NULL,
    status TEXT NOT NULL, created_at TEXT NOT NULL, updated_at TEXT NOT NULL,
    beneficiary_province TEXT, quota_granted TEXT, quota_remaining TEXT
);
CREATE INDEX IF NOT EXISTS binding_authorizer ON binding (authorizer);
CREATE INDEX IF NOT EXISTS binding_beneficiary ON binding (beneficiary);
CREATE TABLE IF NOT EXISTS settlement (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT UNIQUE NOT NULL,
    institution TEXT NOT NULL, idempotency_key TEXT NOT NULL,
    patient TEXT NOT NULL, medical_type TEXT NOT NULL,
    total TEXT NOT NULL, fund_paid TEXT NOT NULL, self_pay TEXT NOT NULL,
    own_account_paid TEXT NOT NULL, mutual_aid_paid TEXT NOT NULL, payer TEXT,
    cash_due TEXT NOT NULL, patient_balance TEXT, payer_balance TEXT,
    settled_at TEXT NOT NULL, reversed_at TEXT, reversal_reason TEXT,
    UNIQUE (institution, idempotency_key)
);
CREATE INDEX IF NOT EXISTS settlement_patient ON settlement (patient);
CREATE TABLE IF NOT EXISTS premium_payment (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT UNIQUE NOT NULL,
    beneficiary TEXT NOT NULL, year INTEGER NOT NULL, amount TEXT NOT NULL,
    payer TEXT NOT NULL, payer_province TEXT, funding_hold TEXT, paid_at TEXT NOT NULL,
    UNIQUE (beneficiary, year)
);
CREATE TABLE IF NOT EXISTS registration_change (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, cert_no TEXT NOT NULL, kind TEXT NOT NULL,
    to_province TEXT, at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS quota_hold (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT UNIQUE NOT NULL,
    binding_id TEXT NOT NULL, amount TEXT NOT NULL, used TEXT NOT NULL,
    status TEXT NOT NULL, reference TEXT NOT NULL, payment_ref TEXT,
    created_at TEXT NOT NULL, updated_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS quota_hold_binding ON quota_hold (binding_id);
CREATE INDEX IF NOT EXISTS settlement_payer ON settlement (payer);
CREATE TABLE IF NOT EXISTS answered (
    request_id TEXT PRIMARY KEY, operation TEXT NOT NULL, fingerprint TEXT NOT NULL,
    answer TEXT, refusal TEXT, field TEXT, answered_at TEXT NOT NULL,
    CHECK ((answer IS NULL) != (refusal IS NULL))
);
"""

# China keeps one time zone: "the same day" for a reversal is a Beijing day.
CHINA = dt.timezone(dt.timedelta(hours=8))
CENT = Decimal("0.01")


def load_roster(path: Path = ROSTER) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def scenario_family(
    key: str, area: str, area_name: str, *, relatives: int, lapsed: bool = True
) -> dict[str, Any]:
    """People a province's scenarios need that a shared roster may lack, made up in the
    roster's format (`with_people` adds them): an employee of ``area`` with money, whose
    two parents and ``relatives - 2`` children are insured there (enough to go beyond a
    cap), and, if ``lapsed``, a resident of the same area whose insurance is suspended.
    ID numbers are valid (GB 11643) and born on made-up dates; keys start with ``key``."""

    def one(n: int, name: str, born: str, kind: str, status: str = "ACTIVE") -> dict[str, Any]:
        body = f"{area}{born.replace('-', '')}{900 + n:03d}"
        total = sum(int(d) * w for d, w in zip(body, _WEIGHTS, strict=True))
        return {
            "key": f"{key}_{n}",
            "certNo": body + "10X98765432"[total % 11],
            "name": name,
            "gender": "M" if n % 2 else "F",
            "birthDate": born,
            "insuredArea": area,
            "insuredAreaName": area_name,
            "insuranceType": kind,
            "insuranceStatus": status,
            "accountBalance": "5000.00" if kind == "EMPLOYEE" else None,
            "phone": None,
            "notes": "made up for the conformance scenarios (sandbox.engine.scenario_family)",
        }

    me = one(1, "甲一", "1970-05-01", "EMPLOYEE")
    parents = [one(2, "甲父", "1940-01-01", "RESIDENT"), one(3, "甲母", "1942-02-02", "RESIDENT")]
    children = [
        one(4 + n, f"甲子{n + 1}", f"{1995 + n}-03-0{1 + n % 9}", "RESIDENT")
        for n in range(relatives - 2)
    ]
    people = [me, *parents, *children]
    if lapsed:
        people.append(one(30, "甲停", "1960-06-06", "RESIDENT", "SUSPENDED"))
    relations = [{"kind": "PARENT_OF", "a": p["certNo"], "b": me["certNo"]} for p in parents]
    relations += [{"kind": "PARENT_OF", "a": me["certNo"], "b": c["certNo"]} for c in children]
    return {"people": people, "relations": relations}


_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)


def with_people(roster: dict[str, Any], *more: dict[str, Any]) -> dict[str, Any]:
    """``roster`` with the people and relations of ``more`` added."""
    people, relations = list(roster["people"]), list(roster["relations"])
    for added in more:
        people += added["people"]
        relations += added["relations"]
    return {**roster, "people": people, "relations": relations}


def derive_relations(pairs: Iterable[dict[str, str]]) -> set[tuple[str, str, str]]:
    """(subject, relative, relation-of-relative-to-subject) from SPOUSE / PARENT_OF facts."""
    spouse: dict[str, set[str]] = {}
    parents: dict[str, set[str]] = {}
    children: dict[str, set[str]] = {}
    for pair in pairs:
        a, b = pair["a"], pair["b"]
        if pair["kind"] == "SPOUSE":
            spouse.setdefault(a, set()).add(b)
            spouse.setdefault(b, set()).add(a)
        elif pair["kind"] == "PARENT_OF":
            parents.setdefault(b, set()).add(a)
            children.setdefault(a, set()).add(b)
    out: set[tuple[str, str, str]] = set()
    people = set(spouse) | set(parents) | set(children)
    for me in people:
        found: dict[str, str] = {}

        def put(relative: str, relation: str, me: str = me, found: dict[str, str] = found) -> None:
            if relative != me:
                found.setdefault(relative, relation)

        for s in spouse.get(me, ()):
            put(s, "SPOUSE")
        for p in parents.get(me, ()):
            put(p, "PARENT")
        for c in children.get(me, ()):
            put(c, "CHILD")
        for s in spouse.get(me, ()):
            for p in parents.get(s, ()):
                put(p, "PARENT_IN_LAW")
        for c in children.get(me, ()):
            for s in spouse.get(c, ()):
                put(s, "CHILD_IN_LAW")
        for p in parents.get(me, ()):
            for sib in children.get(p, ()):
                put(sib, "SIBLING")
            for gp in parents.get(p, ()):
                put(gp, "GRANDPARENT")
        for c in children.get(me, ()):
            for gc in children.get(c, ()):
                put(gc, "GRANDCHILD")
        out.update((me, relative, relation) for relative, relation in found.items())
    return out


Versions = ProvinceRules | Sequence[ProvinceRules]


class ProvinceSystem:
    """One province's records, in SQLite, with the province's rules: the version in force
    on the policy date (today in Beijing, or the date the sandbox was started on)."""

    def __init__(
        self, db: aiosqlite.Connection, rules: Versions, policy_date: dt.date | None = None
    ) -> None:
        self._db = db
        versions = (rules,) if isinstance(rules, ProvinceRules) else tuple(rules)
        self._versions = tuple(sorted(versions, key=lambda r: r.effective_from))
        self._policy_date = policy_date
        # One connection: every statement, read or write, takes its turn (interleaved
        # cursors and commits of concurrent requests misuse a sqlite3 connection).
        self._turn = asyncio.Lock()

    @property
    def rules(self) -> ProvinceRules:
        """The rules in force on the policy date (a Beijing date)."""
        on = self._policy_date or dt.datetime.now(CHINA).date()
        in_force = [r for r in self._versions if r.effective_from <= on]
        if not in_force:
            raise LookupError(f"no rules in force on {on.isoformat()}")
        return in_force[-1]

    @classmethod
    async def open(
        cls,
        rules: Versions,
        *,
        path: Path | None = None,
        roster: dict[str, Any] | None = None,
        policy_date: dt.date | None = None,
    ) -> ProvinceSystem:
        """Open (and on first use seed from the roster) the province's database."""
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        db = await aiosqlite.connect(str(path) if path else ":memory:")
        db.row_factory = aiosqlite.Row
        system = cls(db, rules, policy_date)
        try:
            await db.executescript(_SCHEMA)
            await _add_missing_columns(db)
            async with db.execute("SELECT count(*) FROM civil_person") as cur:
                row = await cur.fetchone()
            if row is not None and row[0] == 0:
                await system._seed(roster if roster is not None else load_roster())
        except BaseException:
            await db.close()  # else its thread keeps the process alive
            raise
        return system

    async def close(self) -> None:
        await self._db.close()

    async def _seed(self, roster: dict[str, Any]) -> None:
        people = roster["people"]
        await self._db.executemany(
            "INSERT INTO civil_person (cert_no, name) VALUES (?, ?)",
            [(p["certNo"], p["name"]) for p in people],
        )
        await self._db.executemany(
            "INSERT INTO person VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    p["certNo"],
                    p["name"],
                    p.get("gender"),
                    p.get("birthDate"),
                    p["insuredArea"],
                    p["insuredAreaName"],
                    p["insuranceType"],
                    p["insuranceStatus"],
                    p.get("accountBalance"),
                    p.get("phone"),
                )
                for p in people
                if p["insuredArea"].startswith(self.rules.prefix)
            ],
        )
        await self._db.executemany(
            "INSERT INTO civil_relation VALUES (?, ?, ?)",
            sorted(derive_relations(roster["relations"])),
        )
        await self._db.commit()

    # -- reads ---------------------------------------------------------------------

    async def persons(self, cert_nos: Sequence[str]) -> list[dict[str, Any]]:
        async with self._turn:
            return await self._persons(cert_nos)

    async def _persons(self, cert_nos: Sequence[str]) -> list[dict[str, Any]]:
        marks = ",".join("?" * len(cert_nos))
        async with self._db.execute(
            f"SELECT * FROM person WHERE cert_no IN ({marks})",  # noqa: S608
            tuple(cert_nos),
        ) as cur:
            return [dict(row) for row in await cur.fetchall()]

    async def relatives(self, cert_no: str) -> list[dict[str, Any]]:
        async with (
            self._turn,
            self._db.execute(
                "SELECT r.relative AS cert_no, c.name, r.relation FROM civil_relation r"
                " JOIN civil_person c ON c.cert_no = r.relative WHERE r.subject = ?"
                " ORDER BY r.relation, r.relative",
                (cert_no,),
            ) as cur,
        ):
            return [dict(row) for row in await cur.fetchall()]

    async def bindings_of(self, cert_nos: Sequence[str]) -> list[dict[str, Any]]:
        marks = ",".join("?" * len(cert_nos))
        async with (
            self._turn,
            self._db.execute(
                f"{_BINDING_SELECT} WHERE b.authorizer IN ({marks}) OR b.beneficiary IN ({marks})"
                " ORDER BY b.seq",
                (*cert_nos, *cert_nos),
            ) as cur,
        ):
            return [dict(row) for row in await cur.fetchall()]

    async def binding(self, binding_id: str) -> dict[str, Any] | None:
        async with self._turn:
            return await self._binding(binding_id)

    async def _binding(self, binding_id: str) -> dict[str, Any] | None:
        async with self._db.execute(f"{_BINDING_SELECT} WHERE b.id = ?", (binding_id,)) as cur:
            row = await cur.fetchone()
        return dict(row) if row else None

    async def _relation(self, subject: str, relative: str) -> str | None:
        async with self._db.execute(
            "SELECT relation FROM civil_relation WHERE subject = ? AND relative = ?",
            (subject, relative),
        ) as cur:
            row = await cur.fetchone()
        return str(row[0]) if row else None

    async def _count(self, sql: str, *args: str) -> int:
        async with self._db.execute(sql, args) as cur:
            row = await cur.fetchone()
        return int(row[0]) if row else 0

    async def count_bindings(self, authorizer: str, beneficiary: str) -> int:
        """How many bindings (any status) were ever made between the two (for tests)."""
        async with self._turn:
            return await self._count(
                "SELECT count(*) FROM binding WHERE authorizer = ? AND beneficiary = ?",
                authorizer,
                beneficiary,
            )

    async def count_settlements(self, patient: str) -> int:
        """How many settlements (reversed or not) were made for ``patient`` (for tests)."""
        async with self._turn:
            return await self._count("SELECT count(*) FROM settlement WHERE patient = ?", patient)

    # -- writes --------------------------------------------------------------------

    async def _once(
        self,
        request_id: str | None,
        operation: str,
        given: dict[str, Any],
        work: Callable[[], Awaitable[dict[str, Any]]],
    ) -> dict[str, Any]:
        """Do one write in its turn, in one transaction with its answer kept under
        ``request_id``; a kept answer is given again without doing anything.

        ``given`` is what identifies the request (see the module's docstring).
        ``work`` reads and writes without committing, and returns the answer or
        raises `SandboxRefusal` (a refusal is kept as well, and writes nothing).
        """
        fingerprint = hashlib.sha256(
            json.dumps([operation, given], sort_keys=True, ensure_ascii=False).encode()
        ).hexdigest()
        async with self._turn:
            if request_id is not None:
                async with self._db.execute(
                    "SELECT operation, fingerprint, answer, refusal, field FROM answered"
                    " WHERE request_id = ?",
                    (request_id,),
                ) as cur:
                    kept = await cur.fetchone()
                if kept is not None:
                    if (kept["operation"], kept["fingerprint"]) != (operation, fingerprint):
                        raise RequestIdReused(request_id)
                    if kept["refusal"] is not None:
                        raise SandboxRefusal(kept["refusal"], kept["field"])
                    answer: dict[str, Any] = json.loads(kept["answer"])
                    return answer
            try:
                try:
                    answer = await work()
                except SandboxRefusal as refusal:
                    await self._db.rollback()  # a refusal writes nothing; be sure of it
                    if request_id is not None:
                        await self._keep(request_id, operation, fingerprint, refusal=refusal)
                        await self._db.commit()
                    raise
                if request_id is not None:
                    await self._keep(request_id, operation, fingerprint, answer=answer)
                await self._db.commit()  # the write and its kept answer, together
            except SandboxRefusal:
                raise
            except BaseException:
                await self._db.rollback()  # neither the write nor its answer
                raise
            return answer

    async def _keep(
        self,
        request_id: str,
        operation: str,
        fingerprint: str,
        *,
        answer: dict[str, Any] | None = None,
        refusal: SandboxRefusal | None = None,
    ) -> None:
        await self._db.execute(
            "INSERT INTO answered (request_id, operation, fingerprint, answer, refusal, field,"
            " answered_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                request_id,
                operation,
                fingerprint,
                None if answer is None else json.dumps(answer, ensure_ascii=False),
                None if refusal is None else refusal.reason,
                None if refusal is None else refusal.field,
                _now(),
            ),
        )

    async def bind(
        self,
        *,
        authorizer: str,
        beneficiary: str,
        beneficiary_name: str,
        relation: str,
        commitment_signed: bool,
        quota: str | None = None,
        beneficiary_province: str | None = None,
        request_id: str | None = None,
    ) -> dict[str, Any]:
        """Create a binding, or raise `SandboxRefusal` with the province's reason.

        A relative insured in another province (``beneficiary_province``, whom this
        province's records do not hold: the national platform vouches for their
        insurance) is bound with a ``quota`` (共济额度), which leaves the authorizer's
        balance at once; an in-province binding takes none.
        """
        rules = self.rules

        async def work() -> dict[str, Any]:
            found = {p["cert_no"]: p for p in await self._persons([authorizer, beneficiary])}
            auth = found.get(authorizer)
            bene = found.get(beneficiary)
            across = beneficiary_province is not None and beneficiary_province != rules.prefix
            if auth is None:
                raise SandboxRefusal("person_not_found")
            if across:
                if bene is not None:  # one of ours after all: no quota in the province
                    raise SandboxRefusal("quota_not_allowed", "quota")
                if not rules.cross_province:
                    raise SandboxRefusal("cross_province", "beneficiaryCertNo")
                if quota is None:
                    raise SandboxRefusal("bad_amount", "quota")
                set_aside = _positive(quota, field="quota")
                name = await self._civil_name(beneficiary)
                if name is None:
                    raise SandboxRefusal("person_not_found", "beneficiaryCertNo")
                if name != beneficiary_name:
                    raise SandboxRefusal("info_mismatch", "beneficiaryName")
            else:
                if quota is not None:
                    raise SandboxRefusal("quota_not_allowed", "quota")
                if bene is None:
                    raise SandboxRefusal("person_not_found", "beneficiaryCertNo")
                if bene["name"] != beneficiary_name:
                    raise SandboxRefusal("info_mismatch", "beneficiaryName")
            if auth["insurance_type"] != "EMPLOYEE":
                raise SandboxRefusal("not_employee")
            if bene is not None and bene["insurance_status"] != "ACTIVE":
                raise SandboxRefusal("beneficiary_not_insured", "beneficiaryCertNo")
            if bene is not None and not rules.cross_city and auth["area_code"] != bene["area_code"]:
                raise SandboxRefusal("cross_area", "beneficiaryCertNo")
            if relation not in rules.allowed_relations:
                raise SandboxRefusal("relation_not_allowed", "relation")
            actual = await self._relation(authorizer, beneficiary)
            if actual != relation:
                if actual is not None and actual not in rules.allowed_relations:
                    raise SandboxRefusal("relation_not_allowed", "relation")
                raise SandboxRefusal("relation_not_verified", "relation")
            if not across and rules.commitment_required and not commitment_signed:
                raise SandboxRefusal("commitment", "commitmentSigned")
            live = ",".join(f"'{s}'" for s in LIVE)
            if await self._count(
                f"SELECT count(*) FROM binding WHERE authorizer = ? AND beneficiary = ?"  # noqa: S608
                f" AND status IN ({live})",
                authorizer,
                beneficiary,
            ):
                raise SandboxRefusal("duplicate", "beneficiaryCertNo")
            if (
                not across
                and rules.single_binding
                and await self._count(
                    f"SELECT count(*) FROM binding WHERE status IN ({live})"  # noqa: S608
                    " AND (beneficiary = ? OR authorizer = ? OR beneficiary = ?)",
                    authorizer,
                    beneficiary,
                    beneficiary,
                )
            ):
                raise SandboxRefusal("already_bound", "beneficiaryCertNo")
            if (
                await self._count(
                    f"SELECT count(*) FROM binding WHERE authorizer = ? AND status IN ({live})",  # noqa: S608
                    authorizer,
                )
                >= rules.max_relatives
            ):
                raise SandboxRefusal("limit")
            confirm = not across and rules.spouse_confirmation and relation == "SPOUSE"
            status = "PENDING_CONFIRMATION" if confirm else "ACTIVE"
            granted = None
            if across:
                balance = Decimal(auth["balance"] or "0")
                if set_aside > balance:
                    raise SandboxRefusal("quota_above_balance", "quota")
                await self._set_balance(authorizer, balance - set_aside)
                granted = str(set_aside)
            now = _now()
            cur = await self._db.execute(
                "INSERT INTO binding (id, authorizer, beneficiary, relation, status, created_at,"
                " updated_at, beneficiary_province, quota_granted, quota_remaining)"
                " VALUES ('', ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    authorizer,
                    beneficiary,
                    relation,
                    status,
                    now,
                    now,
                    beneficiary_province if across else None,
                    granted,
                    granted,
                ),
            )
            binding_id = f"{rules.id_prefix}{cur.lastrowid:08d}"
            await self._db.execute(
                "UPDATE binding SET id = ? WHERE seq = ?", (binding_id, cur.lastrowid)
            )
            return await self._written(binding_id)

        given = {
            "authorizer": authorizer,
            "beneficiary": beneficiary,
            "beneficiary_name": beneficiary_name,
            "relation": relation,
            "commitment_signed": commitment_signed,
            "quota": quota,
            "beneficiary_province": beneficiary_province,
        }
        return await self._once(request_id, "bind", given, work)

    async def respond(
        self, binding_id: str, *, actor: str, accept: bool, request_id: str | None = None
    ) -> dict[str, Any]:
        async def work() -> dict[str, Any]:
            found = await self._binding(binding_id)
            if found is None or found["beneficiary"] != actor:
                raise SandboxRefusal("forbidden")
            if found["status"] != "PENDING_CONFIRMATION":
                raise SandboxRefusal("bad_state")
            await self._set_status(binding_id, "ACTIVE" if accept else "DECLINED")
            return await self._written(binding_id)

        given = {"binding_id": binding_id, "actor": actor, "accept": accept}
        return await self._once(request_id, "respond", given, work)

    async def unbind(
        self, binding_id: str, *, actor: str, request_id: str | None = None
    ) -> dict[str, Any]:
        async def work() -> dict[str, Any]:
            found = await self._binding(binding_id)
            # Across provinces either side may end it; in the province, the authorizer.
            parties = (found["authorizer"], found["beneficiary"]) if found else ()
            across = found is not None and found["quota_granted"] is not None
            if found is None or actor not in (parties if across else parties[:1]):
                raise SandboxRefusal("forbidden")
            if found["status"] not in LIVE:
                raise SandboxRefusal("bad_state")
            await self._set_status(binding_id, "UNBOUND")
            await self._return_quota(found)
            return await self._written(binding_id)

        given = {"binding_id": binding_id, "actor": actor}
        return await self._once(request_id, "unbind", given, work)

    async def _return_quota(self, binding: dict[str, Any]) -> None:
        """What is left of an ended binding's quota goes back to the authorizer's account."""
        if binding["quota_remaining"] is None:
            return
        await self._credit(binding["authorizer"], Decimal(binding["quota_remaining"]))
        await self._db.execute(
            "UPDATE binding SET quota_remaining = '0.00' WHERE id = ?", (binding["id"],)
        )

    async def _civil_name(self, cert_no: str) -> str | None:
        async with self._db.execute(
            "SELECT name FROM civil_person WHERE cert_no = ?", (cert_no,)
        ) as cur:
            row = await cur.fetchone()
        return str(row[0]) if row else None

    async def _set_status(self, binding_id: str, status: str) -> None:
        await self._db.execute(
            "UPDATE binding SET status = ?, updated_at = ? WHERE id = ?",
            (status, _now(), binding_id),
        )

    async def _written(self, binding_id: str) -> dict[str, Any]:
        """The binding as just written (in the write's own transaction, before commit)."""
        result = await self._binding(binding_id)
        if result is None:
            raise LookupError(binding_id)
        return result

    # -- resident premiums (城乡居民医保个人缴费) --------------------------------------

    async def premium(self, cert_no: str, year: int) -> dict[str, Any]:
        """A resident insured here, their premium for ``year`` as declared (None: not
        declared yet) and its payment if made. Raises `SandboxRefusal`."""
        async with self._turn:
            resident = await self._resident(cert_no)
            declared = dict(self.rules.premiums).get(year)
            paid = await self._premium_paid(cert_no, year)
        return {
            "cert_no": cert_no,
            "name": resident["name"],
            "year": year,
            "amount": declared,
            "payment": paid,
        }

    async def pay_premium(
        self,
        *,
        beneficiary: str,
        year: int,
        payer: str,
        funding: Funding | None = None,
        request_id: str | None = None,
    ) -> dict[str, Any]:
        """Pay a resident's premium for ``year``, once: from ``payer``'s account here (an
        authorizer actively bound to them, where the rules allow it), or with
        ``funding`` held in another province from a quota (``province``, ``payer``,
        ``amount``, ``hold``), which must cover it."""

        async def work() -> dict[str, Any]:
            await self._resident(beneficiary)
            declared = dict(self.rules.premiums).get(year)
            if declared is None:
                raise SandboxRefusal("premium_not_declared", "year")
            amount = Decimal(declared)
            if await self._premium_paid(beneficiary, year) is not None:
                raise SandboxRefusal("premium_paid", "year")
            if funding is not None:
                if funding["payer"] != payer or _positive(funding["amount"]) < amount:
                    raise SandboxRefusal("bad_amount")
            else:
                if not self.rules.premium_payment:
                    raise SandboxRefusal("premium_not_allowed")
                bound = await self._count(
                    "SELECT count(*) FROM binding WHERE authorizer = ? AND beneficiary = ?"
                    " AND status = 'ACTIVE' AND quota_granted IS NULL",
                    payer,
                    beneficiary,
                )
                if not bound:
                    raise SandboxRefusal("payer_not_bound")
                found = await self._persons([payer])
                balance = Decimal(found[0]["balance"] or "0") if found else Decimal(0)
                if balance < amount:
                    raise SandboxRefusal("balance_insufficient")
                await self._set_balance(payer, balance - amount)
            cur = await self._db.execute(
                "INSERT INTO premium_payment (id, beneficiary, year, amount, payer,"
                " payer_province, funding_hold, paid_at) VALUES ('', ?, ?, ?, ?, ?, ?, ?)",
                (
                    beneficiary,
                    year,
                    str(amount.quantize(CENT)),
                    payer,
                    None if funding is None else funding["province"],
                    None if funding is None else funding["hold"],
                    _now(),
                ),
            )
            payment_id = f"{self.rules.id_prefix}P{cur.lastrowid:08d}"
            await self._db.execute(
                "UPDATE premium_payment SET id = ? WHERE seq = ?", (payment_id, cur.lastrowid)
            )
            paid = await self._premium_paid(beneficiary, year)
            if paid is None:  # pragma: no cover (just written)
                raise LookupError(payment_id)
            return paid

        given = {"beneficiary": beneficiary, "year": year, "payer": payer, "funding": funding}
        return await self._once(request_id, "pay_premium", given, work)

    async def _resident(self, cert_no: str) -> dict[str, Any]:
        found = await self._persons([cert_no])
        if not found or found[0]["insurance_status"] == "TERMINATED":
            raise SandboxRefusal("person_not_found", "beneficiaryCertNo")
        if found[0]["insurance_type"] != "RESIDENT":
            raise SandboxRefusal("not_resident", "beneficiaryCertNo")
        return found[0]

    async def _premium_paid(self, cert_no: str, year: int) -> dict[str, Any] | None:
        async with self._db.execute(
            "SELECT p.id, p.beneficiary, cb.name AS beneficiary_name, p.year, p.amount,"
            " p.payer, cp.name AS payer_name, p.payer_province, p.funding_hold, p.paid_at"
            " FROM premium_payment p JOIN civil_person cb ON cb.cert_no = p.beneficiary"
            " JOIN civil_person cp ON cp.cert_no = p.payer"
            " WHERE p.beneficiary = ? AND p.year = ?",
            (cert_no, year),
        ) as cur:
            row = await cur.fetchone()
        return dict(row) if row else None

    # -- registrations (参保关系) ---------------------------------------------------

    async def move_registration(self, cert_no: str, *, to_province: str | None) -> dict[str, Any]:
        """The back office moves a person's registration out of this province (to
        ``to_province``, a two-digit code) or ends it (None): their insurance here ends,
        and the change feed (`changes`) says so. Raises `LookupError` for someone not
        insured here (or not any more)."""
        async with self._turn:
            found = await self._persons([cert_no])
            if not found or found[0]["insurance_status"] == "TERMINATED":
                raise LookupError(cert_no)
            if to_province is not None and (
                len(to_province) != 2
                or not to_province.isdigit()
                or to_province == self.rules.prefix
            ):
                raise ValueError(f"not another province: {to_province!r}")
            try:
                await self._db.execute(
                    "UPDATE person SET insurance_status = 'TERMINATED' WHERE cert_no = ?",
                    (cert_no,),
                )
                kind = "ENDED" if to_province is None else "MOVED"
                cur = await self._db.execute(
                    "INSERT INTO registration_change (cert_no, kind, to_province, at)"
                    " VALUES (?, ?, ?, ?)",
                    (cert_no, kind, to_province, _now()),
                )
                await self._db.commit()
            except BaseException:
                await self._db.rollback()
                raise
            return {
                "seq": cur.lastrowid,
                "cert_no": cert_no,
                "kind": kind,
                "to_province": to_province,
            }

    async def changes(self, after: int, limit: int = 100) -> list[dict[str, Any]]:
        """Registration changes after ``after`` (a change's ``seq``), oldest first."""
        async with (
            self._turn,
            self._db.execute(
                "SELECT seq, cert_no, kind, to_province, at FROM registration_change"
                " WHERE seq > ? ORDER BY seq LIMIT ?",
                (after, limit),
            ) as cur,
        ):
            return [dict(row) for row in await cur.fetchall()]

    # -- holds on a quota (across provinces) -----------------------------------------
    #
    # A payment in the relative's province from a quota held here: held first (the
    # quota shrinks), then confirmed with what the payment used (the rest comes back)
    # or released (all of it comes back); a confirmed one is refunded when the payment
    # is reversed. Money comes back to the quota while the binding lives, else to the
    # authorizer's account. Each is a write, kept under its request id.

    async def hold(
        self, binding_id: str, *, amount: str, reference: str, request_id: str | None = None
    ) -> dict[str, Any]:
        async def work() -> dict[str, Any]:
            binding = await self._binding(binding_id)
            if binding is None or binding["quota_remaining"] is None:
                raise SandboxRefusal("forbidden")
            if binding["status"] != "ACTIVE":
                raise SandboxRefusal("bad_state")
            held = _positive(amount)
            remaining = Decimal(binding["quota_remaining"])
            if held > remaining:
                raise SandboxRefusal("quota_insufficient")
            await self._set_quota(binding_id, remaining - held)
            now = _now()
            cur = await self._db.execute(
                "INSERT INTO quota_hold (id, binding_id, amount, used, status, reference,"
                " created_at, updated_at) VALUES ('', ?, ?, '0.00', 'HELD', ?, ?, ?)",
                (binding_id, str(held), reference, now, now),
            )
            hold_id = f"{self.rules.id_prefix}H{cur.lastrowid:08d}"
            await self._db.execute(
                "UPDATE quota_hold SET id = ? WHERE seq = ?", (hold_id, cur.lastrowid)
            )
            return await self._held(hold_id)

        given = {"binding_id": binding_id, "amount": amount, "reference": reference}
        return await self._once(request_id, "hold", given, work)

    async def confirm_hold(
        self, hold_id: str, *, used: str, payment_ref: str, request_id: str | None = None
    ) -> dict[str, Any]:
        async def work() -> dict[str, Any]:
            found = await self._hold_row(hold_id)
            if found is None:
                raise SandboxRefusal("forbidden")
            if found["status"] != "HELD":
                raise SandboxRefusal("bad_hold_state")
            paid = _positive(used, zero=True)
            held = Decimal(found["amount"])
            if paid > held:
                raise SandboxRefusal("bad_amount")
            await self._give_back(found, held - paid)
            await self._set_hold(hold_id, "CONFIRMED", used=paid, payment_ref=payment_ref)
            return await self._held(hold_id)

        given = {"hold_id": hold_id, "used": used, "payment_ref": payment_ref}
        return await self._once(request_id, "confirm_hold", given, work)

    async def release_hold(self, hold_id: str, *, request_id: str | None = None) -> dict[str, Any]:
        return await self._end_hold(hold_id, "HELD", "RELEASED", "release_hold", request_id)

    async def refund_hold(self, hold_id: str, *, request_id: str | None = None) -> dict[str, Any]:
        return await self._end_hold(hold_id, "CONFIRMED", "REFUNDED", "refund_hold", request_id)

    async def _end_hold(
        self, hold_id: str, was: str, becomes: str, operation: str, request_id: str | None
    ) -> dict[str, Any]:
        """A hold's money back: all of a held one (released), what a confirmed one
        used (refunded)."""

        async def work() -> dict[str, Any]:
            found = await self._hold_row(hold_id)
            if found is None:
                raise SandboxRefusal("forbidden")
            if found["status"] != was:
                raise SandboxRefusal("bad_hold_state")
            back = Decimal(found["amount"] if was == "HELD" else found["used"])
            await self._give_back(found, back)
            await self._set_hold(hold_id, becomes)
            return await self._held(hold_id)

        return await self._once(request_id, operation, {"hold_id": hold_id}, work)

    async def holds_of(self, cert_nos: Sequence[str]) -> list[dict[str, Any]]:
        """Holds on the quotas of bindings in which one of ``cert_nos`` takes part."""
        marks = ",".join("?" * len(cert_nos))
        async with (
            self._turn,
            self._db.execute(
                f"{_HOLD_SELECT} WHERE b.authorizer IN ({marks}) OR b.beneficiary IN ({marks})"
                " ORDER BY h.seq",
                (*cert_nos, *cert_nos),
            ) as cur,
        ):
            return [dict(row) for row in await cur.fetchall()]

    async def _give_back(self, hold: dict[str, Any], amount: Decimal) -> None:
        if amount == 0:
            return
        binding = await self._binding(hold["binding_id"])
        if binding is not None and binding["status"] in LIVE:
            await self._set_quota(binding["id"], Decimal(binding["quota_remaining"]) + amount)
        elif binding is not None:  # ended: its quota went back already; this follows it
            await self._credit(binding["authorizer"], amount)

    async def _set_quota(self, binding_id: str, remaining: Decimal) -> None:
        await self._db.execute(
            "UPDATE binding SET quota_remaining = ?, updated_at = ? WHERE id = ?",
            (str(remaining.quantize(CENT)), _now(), binding_id),
        )

    async def _set_hold(
        self,
        hold_id: str,
        status: str,
        *,
        used: Decimal | None = None,
        payment_ref: str | None = None,
    ) -> None:
        await self._db.execute(
            "UPDATE quota_hold SET status = ?, used = COALESCE(?, used),"
            " payment_ref = COALESCE(?, payment_ref), updated_at = ? WHERE id = ?",
            (status, None if used is None else str(used), payment_ref, _now(), hold_id),
        )

    async def _held(self, hold_id: str) -> dict[str, Any]:
        """The hold as just written (in the write's own transaction, before commit)."""
        found = await self._hold_row(hold_id)
        if found is None:
            raise LookupError(hold_id)
        return found

    async def _hold_row(self, hold_id: str) -> dict[str, Any] | None:
        async with self._db.execute(f"{_HOLD_SELECT} WHERE h.id = ?", (hold_id,)) as cur:
            row = await cur.fetchone()
        return dict(row) if row else None

    # -- settlement ----------------------------------------------------------------

    async def settle(
        self,
        *,
        institution: str,
        idempotency_key: str,
        patient: str,
        medical_type: str,
        total: str,
        fund_paid: str,
        payer: str | None = None,
        request_id: str | None = None,
        funding: Funding | None = None,
    ) -> dict[str, Any]:
        """Settle a bill: the self-pay part from the patient's own account, then from
        one authorizer (``payer`` if named, else the bound one with the largest
        balance), then cash. The same key at the same institution is the same
        settlement; every balance moves in one turn, so none is overdrawn.

        ``funding`` (``province``, ``payer``, ``amount``, ``hold``): mutual aid held in
        another province from a quota for the patient; it pays, up to ``amount``, in
        place of an authorizer here, and no balance here moves for it.
        """

        async def work() -> dict[str, Any]:
            try:
                total_amount = Decimal(total).quantize(CENT)
                fund = Decimal(fund_paid).quantize(CENT)
            except ArithmeticError as exc:
                raise SandboxRefusal("bad_amount") from exc
            if not (total_amount > 0 and 0 <= fund <= total_amount):
                raise SandboxRefusal("bad_amount")
            bill = (patient, medical_type, str(total_amount), str(fund))
            done = await self._settlement_where(
                "s.institution = ? AND s.idempotency_key = ?", institution, idempotency_key
            )
            if done is not None:
                # the same bill again: the same settlement, whoever a retry names as payer
                same = (done["patient"], done["medical_type"], done["total"], done["fund_paid"])
                if same != bill:
                    raise SandboxRefusal("idempotency_conflict")
                return done
            found = await self._persons([patient])
            if not found:
                raise SandboxRefusal("person_not_found")
            person = found[0]
            if person["insurance_status"] != "ACTIVE":
                raise SandboxRefusal("patient_not_insured")

            self_pay = (total_amount - fund).quantize(CENT)
            own_balance = Decimal(person["balance"]) if person["balance"] is not None else None
            own = min(own_balance, self_pay) if own_balance is not None else Decimal("0.00")
            rest = self_pay - own
            if funding is not None:  # held in another province: nothing moves here for it
                held = _positive(funding["amount"])
                chosen = {"cert_no": funding["payer"], "balance": str(held)} if rest > 0 else None
            else:
                chosen = await self._payer(patient, payer) if rest > 0 else None
            mutual = min(Decimal(chosen["balance"]), rest) if chosen else Decimal("0.00")
            cash = rest - mutual

            now = _now()
            patient_after = None if own_balance is None else own_balance - own
            payer_after = None if chosen is None else Decimal(chosen["balance"]) - mutual
            if funding is not None:
                payer_after = None  # another province's account: not ours to tell
            if patient_after is not None:
                await self._set_balance(patient, patient_after)
            if chosen is not None and payer_after is not None:
                await self._set_balance(chosen["cert_no"], payer_after)
            across = funding is not None and mutual > 0
            cur = await self._db.execute(
                "INSERT INTO settlement (id, institution, idempotency_key, patient, medical_type,"
                " total, fund_paid, self_pay, own_account_paid, mutual_aid_paid, payer, cash_due,"
                " patient_balance, payer_balance, settled_at, payer_province, funding_hold)"
                " VALUES ('', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    institution,
                    idempotency_key,
                    *bill,
                    str(self_pay),
                    str(own.quantize(CENT)),
                    str(mutual.quantize(CENT)),
                    chosen["cert_no"] if chosen and mutual > 0 else None,
                    str(cash.quantize(CENT)),
                    money_text(str(patient_after)) if patient_after is not None else None,
                    money_text(str(payer_after))
                    if payer_after is not None and mutual > 0
                    else None,
                    now,
                    funding["province"] if funding is not None and across else None,
                    funding["hold"] if funding is not None and across else None,
                ),
            )
            settlement_id = f"{self.rules.id_prefix}S{cur.lastrowid:08d}"
            await self._db.execute(
                "UPDATE settlement SET id = ? WHERE seq = ?", (settlement_id, cur.lastrowid)
            )
            return await self._settled(settlement_id)

        given = {
            "institution": institution,
            "idempotency_key": idempotency_key,
            "patient": patient,
            "medical_type": medical_type,
            "total": total,
            "fund_paid": fund_paid,
        }  # not the payer: see the module's docstring
        return await self._once(request_id, "settle", given, work)

    async def _payer(self, patient: str, named: str | None) -> dict[str, Any] | None:
        """The authorizer who pays: the one named (who must be bound), else the bound
        one with the largest balance (the earliest binding on a tie); None if nobody."""
        async with self._db.execute(
            "SELECT p.cert_no, p.balance FROM binding b JOIN person p ON p.cert_no = b.authorizer"
            " WHERE b.beneficiary = ? AND b.status = 'ACTIVE' AND p.balance IS NOT NULL"
            " ORDER BY b.seq",
            (patient,),
        ) as cur:
            bound = [dict(row) for row in await cur.fetchall()]
        if named is None and self.rules.payer_named:
            return None
        if named is not None:
            chosen = next((b for b in bound if b["cert_no"] == named), None)
            if chosen is None:
                raise SandboxRefusal("payer_not_bound")
            return chosen if Decimal(chosen["balance"]) > 0 else None
        funded = [b for b in bound if Decimal(b["balance"]) > 0]
        return max(funded, key=lambda b: Decimal(b["balance"])) if funded else None

    async def reverse(
        self,
        settlement_id: str,
        *,
        institution: str,
        reason: str,
        request_id: str | None = None,
    ) -> dict[str, Any]:
        """Undo a settlement of today (Beijing), once: every balance it moved goes back."""

        async def work() -> dict[str, Any]:
            found = await self._settlement_where("s.id = ?", settlement_id)
            if found is None or found["institution"] != institution:
                raise SandboxRefusal("forbidden")
            if found["reversed_at"] is not None:
                raise SandboxRefusal("already_reversed")
            settled = dt.datetime.fromisoformat(found["settled_at"]).astimezone(CHINA).date()
            if settled != dt.datetime.now(CHINA).date():
                raise SandboxRefusal("reversal_window")
            await self._credit(found["patient"], Decimal(found["own_account_paid"]))
            if found["payer"] is not None and found["payer_province"] is None:
                # (from another province's quota: that province refunds it)
                await self._credit(found["payer"], Decimal(found["mutual_aid_paid"]))
            await self._db.execute(
                "UPDATE settlement SET reversed_at = ?, reversal_reason = ? WHERE id = ?",
                (_now(), reason, settlement_id),
            )
            return await self._settled(settlement_id)

        given = {"settlement_id": settlement_id, "institution": institution, "reason": reason}
        return await self._once(request_id, "reverse", given, work)

    async def _settled(self, settlement_id: str) -> dict[str, Any]:
        """The settlement as just written (in the write's own transaction, before commit)."""
        result = await self._settlement_where("s.id = ?", settlement_id)
        if result is None:
            raise LookupError(settlement_id)
        return result

    async def settlement(self, settlement_id: str) -> dict[str, Any] | None:
        async with self._turn:
            return await self._settlement_where("s.id = ?", settlement_id)

    async def settlements_of(self, cert_nos: Sequence[str]) -> list[dict[str, Any]]:
        """Settlements in which one of ``cert_nos`` was the patient or the payer, newest first."""
        marks = ",".join("?" * len(cert_nos))
        async with (
            self._turn,
            self._db.execute(
                f"{_SETTLEMENT_SELECT} WHERE s.patient IN ({marks}) OR s.payer IN ({marks})"
                " ORDER BY s.seq DESC",
                (*cert_nos, *cert_nos),
            ) as cur,
        ):
            return [dict(row) for row in await cur.fetchall()]

    async def _settlement_where(self, where: str, *args: str) -> dict[str, Any] | None:
        async with self._db.execute(f"{_SETTLEMENT_SELECT} WHERE {where}", args) as cur:
            row = await cur.fetchone()
        return dict(row) if row else None

    async def _set_balance(self, cert_no: str, balance: Decimal) -> None:
        await self._db.execute(
            "UPDATE person SET balance = ? WHERE cert_no = ?",
            (str(balance.quantize(CENT)), cert_no),
        )

    async def _credit(self, cert_no: str, amount: Decimal) -> None:
        if amount == 0:
            return
        async with self._db.execute(
            "SELECT balance FROM person WHERE cert_no = ?", (cert_no,)
        ) as cur:
            row = await cur.fetchone()
        if row is not None and row[0] is not None:
            await self._set_balance(cert_no, Decimal(row[0]) + amount)


_SETTLEMENT_SELECT = (
    "SELECT s.id, s.institution, s.idempotency_key, s.patient, cp.name AS patient_name,"
    " s.medical_type, s.total, s.fund_paid, s.self_pay, s.own_account_paid, s.mutual_aid_paid,"
    " s.payer, cq.name AS payer_name, s.cash_due, s.patient_balance, s.payer_balance,"
    " s.settled_at, s.reversed_at, s.reversal_reason, s.payer_province, s.funding_hold"
    " FROM settlement s JOIN civil_person cp ON cp.cert_no = s.patient"
    " LEFT JOIN civil_person cq ON cq.cert_no = s.payer"
)


# Columns added since a data directory may have been made (sqlite adds them in place).
_ADDED_COLUMNS = {
    "binding": ("beneficiary_province TEXT", "quota_granted TEXT", "quota_remaining TEXT"),
    "settlement": ("payer_province TEXT", "funding_hold TEXT"),
}


async def _add_missing_columns(db: aiosqlite.Connection) -> None:
    for table, columns in _ADDED_COLUMNS.items():
        async with db.execute(f"PRAGMA table_info({table})") as cur:
            present = {row[1] for row in await cur.fetchall()}
        for column in columns:
            if column.split()[0] not in present:
                await db.execute(f"ALTER TABLE {table} ADD COLUMN {column}")
    await db.commit()


_BINDING_SELECT = (
    "SELECT b.id, b.authorizer, ca.name AS authorizer_name, b.beneficiary,"
    " cb.name AS beneficiary_name, b.relation, b.status, b.created_at, b.updated_at,"
    " b.beneficiary_province, b.quota_granted, b.quota_remaining"
    " FROM binding b JOIN civil_person ca ON ca.cert_no = b.authorizer"
    " JOIN civil_person cb ON cb.cert_no = b.beneficiary"
)


_HOLD_SELECT = (
    "SELECT h.id, h.binding_id, h.amount, h.used, h.status, h.reference, h.payment_ref,"
    " h.created_at, b.authorizer, ca.name AS authorizer_name, b.beneficiary,"
    " cb.name AS beneficiary_name, b.beneficiary_province"
    " FROM quota_hold h JOIN binding b ON b.id = h.binding_id"
    " JOIN civil_person ca ON ca.cert_no = b.authorizer"
    " JOIN civil_person cb ON cb.cert_no = b.beneficiary"
)


def _positive(amount: str, *, zero: bool = False, field: str | None = None) -> Decimal:
    """A positive (or, with ``zero``, not negative) amount of at most two decimals, or
    the refusal ``bad_amount`` (pointing at ``field``)."""
    try:
        value = Decimal(amount)
    except ArithmeticError as exc:
        raise SandboxRefusal("bad_amount", field) from exc
    if not value.is_finite() or value < 0 or (value == 0 and not zero):
        raise SandboxRefusal("bad_amount", field)
    if value != value.quantize(CENT):
        raise SandboxRefusal("bad_amount", field)
    return value.quantize(CENT)


def _now() -> str:
    return dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat()


def money_text(value: str | None) -> str | None:
    """Balances are stored and sent as two-decimal strings."""
    return None if value is None else str(Decimal(value).quantize(Decimal("0.01")))

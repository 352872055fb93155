"""Kinship accounts (亲情账户): the national registry the gateway keeps itself.

An adder adds a relative (the member) to their own e-voucher, to show the
member's code and pay with the member's own insurance. Members may be insured
in any federated province: the member's province, through its adapter, says
whether they are insured and in force and what the civil record says of the
relation; the age comes from the ID number. The rules are the national
`KinshipPolicy` (configuration), not a province's.

    add ──► PENDING_CONSENT ──(member accepts)──► APPROVED ──(activate)──► ACTIVE
        └─► PENDING_REVIEW ──(reviewer approves)─┘      (documents that match: at once)
    any live state ──(either side removes)──► REMOVED; refusals end in DECLINED / REJECTED
"""

from __future__ import annotations

import asyncio
import datetime as dt
import enum
import hashlib
import hmac
import itertools
import secrets
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import jwt
import segno

from adapters.base import BindingStatus, Party, Refusal, RefusalCode, Relation
from gateway.auth import REVIEWER, Caller
from gateway.beijing import china_date
from gateway.certno import birth_date, is_valid, normalize
from gateway.channels import Channel
from gateway.config import AuthSettings, KinshipPolicy
from gateway.directory import Directory, Located
from gateway.documents import Document, DocumentKind
from gateway.mutual_aid import MutualAid
from gateway.outcome import Outcome
from gateway.store import Store

LINK_KIND = "KinshipLink"
VOUCHER_AUDIENCE = "gongji-kinship-voucher"


class LinkStatus(enum.Enum):
    PENDING_CONSENT = "PENDING_CONSENT"  # waiting for the member's face authorization
    PENDING_REVIEW = "PENDING_REVIEW"  # waiting for a reviewer (1 to 2 working days)
    APPROVED = "APPROVED"  # the adder may activate the member's e-voucher
    ACTIVE = "ACTIVE"
    DECLINED = "DECLINED"  # the member said no
    REJECTED = "REJECTED"  # the reviewer said no, with a reason
    REMOVED = "REMOVED"  # either side ended it

    @property
    def is_live(self) -> bool:
        """Whether the link takes a place (counts toward both limits)."""
        return self in _LIVE


_LIVE = frozenset(
    {LinkStatus.PENDING_CONSENT, LinkStatus.PENDING_REVIEW, LinkStatus.APPROVED, LinkStatus.ACTIVE}
)


@dataclass(frozen=True, slots=True)
class DocumentInfo:
    id: int
    kind: DocumentKind
    content_type: str
    size: int
    sha256: str
    recorded_cert_no: str  # what the client says the document records
    recorded_relation: Relation


@dataclass(frozen=True, slots=True, kw_only=True)
class KinshipLink:
    id: str
    adder: Party
    member: Party
    relation: Relation  # the member's relation to the adder
    channel: Channel
    status: LinkStatus
    created_at: dt.datetime
    decided_at: dt.datetime | None = None
    reason: str | None = None
    activated_at: dt.datetime | None = None
    ended_at: dt.datetime | None = None
    documents: Sequence[DocumentInfo] = ()

    def expected_decision(self, policy: KinshipPolicy) -> tuple[dt.date, dt.date] | None:
        """While under review: the earliest and latest working day to expect an answer."""
        if self.status is not LinkStatus.PENDING_REVIEW:
            return None
        start = china_date(self.created_at)
        low, high = policy.review_working_days
        return add_working_days(start, low), add_working_days(start, high)


@dataclass(frozen=True, slots=True)
class AddInput:
    member_cert_no: str
    member_name: str
    relation: Relation
    channel: Channel
    documents: Sequence[Document] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class Voucher:
    """What the adder shows when accompanying the member: the member's own code."""

    code: str
    expires_at: dt.datetime
    qr_svg: str
    link: KinshipLink
    member: Located
    treatment_area: str
    remote_registration_required: bool
    mutual_aid_payer: Party | None  # the adder, when their mutual aid pays the self-pay part
    notes: Sequence[str] = field(default=())


LinkOutcome = Outcome[KinshipLink]  # what a registry write came to
VoucherOutcome = Outcome[Voucher]


@dataclass(frozen=True, slots=True)
class Use:
    at: dt.datetime
    treatment_area: str


def add_working_days(day: dt.date, n: int) -> dt.date:
    """``n`` working days after ``day`` (Monday to Friday; public holidays not known)."""
    while n > 0:
        day += dt.timedelta(days=1)
        if day.weekday() < 5:
            n -= 1
    return day


def age_on(cert_no: str, today: dt.date) -> int | None:
    born = birth_date(cert_no)
    if born is None:
        return None
    return today.year - born.year - ((today.month, today.day) < (born.month, born.day))


# -- the payment password: scrypt (hashlib), salted, never stored in the clear -----------

_SCRYPT = {"n": 2**14, "r": 8, "p": 1}


def password_ok(password: str) -> bool:
    """Six digits, not all the same and not a run up or down (111111, 123456, 654321)."""
    if len(password) != 6 or not password.isascii() or not password.isdigit():
        return False
    steps = {int(b) - int(a) for a, b in itertools.pairwise(password)}
    return steps not in ({0}, {1}, {-1})


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, **_SCRYPT)
    return f"scrypt${_SCRYPT['n']}${_SCRYPT['r']}${_SCRYPT['p']}${salt.hex()}${digest.hex()}"


def verify_password(password: str, stored: str) -> bool:
    _, n, r, p, salt, digest = stored.split("$")
    got = hashlib.scrypt(password.encode(), salt=bytes.fromhex(salt), n=int(n), r=int(r), p=int(p))
    return hmac.compare_digest(got.hex(), digest)


# -- the registry ------------------------------------------------------------------------

_LIVE_SQL = "('PENDING_CONSENT', 'PENDING_REVIEW', 'APPROVED', 'ACTIVE')"


def _when(value: str | None) -> dt.datetime | None:
    return None if value is None else dt.datetime.fromisoformat(value)


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat()


class Kinship:
    def __init__(
        self,
        store: Store,
        directory: Directory,
        mutual_aid: MutualAid,
        policy: KinshipPolicy,
        auth: AuthSettings,
    ) -> None:
        self._store = store
        self._directory = directory
        self._mutual_aid = mutual_aid
        self.policy = policy
        self._auth = auth
        # Vouchers are signed with a key of their own, derived from the signing secret:
        # whoever checks vouchers never holds what signs bearer tokens.
        self._voucher_key = hmac.new(
            auth.secret.encode(), b"gongji kinship voucher", hashlib.sha256
        ).hexdigest()

    # -- adding ------------------------------------------------------------------------

    async def add(self, adder: str, given: AddInput) -> LinkOutcome:
        policy = self.policy
        member = normalize(given.member_cert_no)
        if not is_valid(member):
            return Outcome.refused(RefusalCode.INVALID_CERT_NO, "memberCertNo")
        if member == adder:
            return Outcome.refused(RefusalCode.KINSHIP_SELF_NOT_ALLOWED, "memberCertNo")
        if len(given.documents) > policy.max_documents:
            return Outcome.refused(RefusalCode.TOO_MANY_DOCUMENTS, "documents")
        people = await self._directory.locate([adder, member])
        if adder not in people:
            return Outcome.refused(RefusalCode.PERSON_NOT_FOUND, None)
        if member not in people:
            # the same answer as a wrong name: no one learns whether an ID number is insured
            return Outcome.refused(RefusalCode.PERSON_INFO_MISMATCH, "memberName")
        found = people[member]
        if found.person.name != given.member_name.strip():
            return Outcome.refused(RefusalCode.PERSON_INFO_MISMATCH, "memberName")
        if given.relation not in policy.allowed_relations:
            return Outcome.refused(RefusalCode.RELATION_NOT_ALLOWED, "relation")

        # The civil record, from the member's province: how the adder relates to them.
        civil = await found.adapter.relatives(member)
        stated = next((r.relation.inverse for r in civil if r.cert_no == adder), None)
        if stated is not None and stated is not given.relation:
            return Outcome.refused(RefusalCode.RELATION_NOT_VERIFIED, "relation")
        verified = stated is given.relation

        age = age_on(member, china_date())
        minor = age is None or age <= policy.review_age
        usable = {DocumentKind.BIRTH_CERTIFICATE, DocumentKind.HOUSEHOLD_REGISTER}
        if not minor:
            usable = {DocumentKind.HOUSEHOLD_REGISTER}  # an adult has no birth certificate path
        documents = [d for d in given.documents if d.kind in usable]
        if not documents and (given.documents or minor):
            return Outcome.refused(RefusalCode.DOCUMENT_REQUIRED, "documents")
        if not documents and not verified:
            # the member's consent cannot stand in for an unknown relation: a document can
            return Outcome.refused(RefusalCode.RELATION_NOT_VERIFIED, "relation")

        # What a document records is what the client says it records (no one reads
        # the file here). So it passes at once only where it adds nothing the civil
        # record does not already say: a minor (who cannot consent), a relation the
        # civil record confirms, and no earlier rejection of this pair. An adult's
        # document never replaces their consent without a reviewer.
        if not documents:
            status = LinkStatus.PENDING_CONSENT
        elif (
            minor
            and verified
            and any(
                d.recorded_cert_no == member and d.recorded_relation is given.relation
                for d in documents
            )
            and not await self._rejected_before(adder, member)
        ):
            status = LinkStatus.APPROVED
        else:
            status = LinkStatus.PENDING_REVIEW

        adder_party = Party(adder, people[adder].person.name)
        link = KinshipLink(
            id=uuid.uuid4().hex,
            adder=adder_party,
            member=Party(member, found.person.name),
            relation=given.relation,
            channel=given.channel,
            status=status,
            created_at=dt.datetime.now(dt.UTC),
            decided_at=dt.datetime.now(dt.UTC) if status is LinkStatus.APPROVED else None,
        )
        refusal = await self._insert(link, documents)
        if refusal is not None:
            return Outcome.refused(refusal, "memberCertNo")
        return Outcome(value=await self.link(link.id))

    async def _rejected_before(self, adder: str, member: str) -> bool:
        async with (
            self._store.transaction() as db,
            db.execute(
                "SELECT 1 FROM kinship_link WHERE adder = ? AND member = ? AND status = 'REJECTED'",
                (adder, member),
            ) as cur,
        ):
            return await cur.fetchone() is not None

    async def _insert(self, link: KinshipLink, documents: Sequence[Document]) -> RefusalCode | None:
        """Check both limits and duplicates and insert, in one turn: no race between."""
        async with self._store.transaction() as db:
            async with db.execute(
                f"SELECT adder, member FROM kinship_link WHERE status IN {_LIVE_SQL}"  # noqa: S608
                " AND (adder = ? OR member = ?)",
                (link.adder.cert_no, link.member.cert_no),
            ) as cur:
                live = list(await cur.fetchall())
            if any(a == link.adder.cert_no and m == link.member.cert_no for a, m in live):
                return RefusalCode.KINSHIP_ALREADY_ADDED
            if sum(a == link.adder.cert_no for a, _ in live) >= self.policy.max_members:
                return RefusalCode.KINSHIP_ADDER_LIMIT_REACHED
            if sum(m == link.member.cert_no for _, m in live) >= self.policy.max_adders:
                return RefusalCode.KINSHIP_MEMBER_LIMIT_REACHED
            await db.execute(
                "INSERT INTO kinship_link (id, adder, adder_name, member, member_name, relation,"
                " channel, status, created_at, decided_at, decided_by)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    link.id,
                    link.adder.cert_no,
                    link.adder.name,
                    link.member.cert_no,
                    link.member.name,
                    link.relation.value,
                    link.channel.value,
                    link.status.value,
                    link.created_at.isoformat(),
                    link.decided_at.isoformat() if link.decided_at else None,
                    "document check" if link.decided_at else None,
                ),
            )
            await db.executemany(
                "INSERT INTO kinship_document (link_id, kind, content_type, size, sha256,"
                " recorded_cert_no, recorded_relation, content) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        link.id,
                        d.kind.value,
                        d.content_type,
                        d.size,
                        d.sha256,
                        d.recorded_cert_no,
                        d.recorded_relation.value,
                        d.content,
                    )
                    for d in documents
                ],
            )
        return None

    # -- deciding ----------------------------------------------------------------------

    async def respond(self, actor: str, link_id: str, *, accept: bool) -> LinkOutcome:
        """The member's face authorization (or refusal) of a request to add them."""
        link = await self.link(link_id)
        if link is None or link.member.cert_no != actor:
            return Outcome.refused(RefusalCode.FORBIDDEN, "requestId")
        if link.status is not LinkStatus.PENDING_CONSENT:
            return Outcome.refused(RefusalCode.INVALID_KINSHIP_STATE, "requestId")
        status = LinkStatus.APPROVED if accept else LinkStatus.DECLINED
        return await self._decide(link, LinkStatus.PENDING_CONSENT, status, actor, None)

    async def review(
        self, reviewer: Caller, link_id: str, *, approve: bool, reason: str | None
    ) -> LinkOutcome:
        if REVIEWER not in reviewer.roles:
            return Outcome.refused(RefusalCode.FORBIDDEN, None)  # the role, not the request
        link = await self.link(link_id)
        if link is None or reviewer.cert_no in (link.adder.cert_no, link.member.cert_no):
            return Outcome.refused(RefusalCode.FORBIDDEN, "requestId")  # not one's own
        if link.status is not LinkStatus.PENDING_REVIEW:
            return Outcome.refused(RefusalCode.INVALID_KINSHIP_STATE, "requestId")
        reason = (reason or "").strip() or None
        if not approve and reason is None:
            return Outcome.refused(RefusalCode.REASON_REQUIRED, "reason")
        status = LinkStatus.APPROVED if approve else LinkStatus.REJECTED
        return await self._decide(link, LinkStatus.PENDING_REVIEW, status, reviewer.cert_no, reason)

    async def _decide(
        self,
        link: KinshipLink,
        expected: LinkStatus,
        status: LinkStatus,
        by: str,
        reason: str | None,
    ) -> LinkOutcome:
        changed = await self._move(
            link.id,
            expected,
            status,
            "decided_at = ?, decided_by = ?, reason = ?",
            (_now(), by, reason),
        )
        if not changed:  # someone else decided first
            return Outcome.refused(RefusalCode.INVALID_KINSHIP_STATE, "requestId")
        return Outcome(value=await self.link(link.id))

    async def _move(
        self,
        link_id: str,
        expected: LinkStatus | None,
        status: LinkStatus,
        sets: str,
        values: tuple[Any, ...],
    ) -> bool:
        """Move a link to ``status`` if it still is ``expected`` (None: any live state)."""
        where = f"status IN {_LIVE_SQL}" if expected is None else "status = ?"
        params = () if expected is None else (expected.value,)
        async with self._store.transaction() as db:
            cur = await db.execute(
                f"UPDATE kinship_link SET status = ?, {sets} WHERE id = ? AND {where}",  # noqa: S608
                (status.value, *values, link_id, *params),
            )
            return cur.rowcount == 1

    # -- using -------------------------------------------------------------------------

    async def activate(self, actor: str, link_id: str, password: str) -> LinkOutcome:
        """The adder activates the member's e-voucher and sets its payment password."""
        link = await self.link(link_id)
        if link is None or link.adder.cert_no != actor:
            return Outcome.refused(RefusalCode.FORBIDDEN, "memberId")
        if link.status is not LinkStatus.APPROVED:
            return Outcome.refused(RefusalCode.INVALID_KINSHIP_STATE, "memberId")
        if not password_ok(password):
            return Outcome.refused(RefusalCode.INVALID_PAYMENT_PASSWORD, "paymentPassword")
        member = (await self._directory.locate([link.member.cert_no])).get(link.member.cert_no)
        if member is None or not member.person.is_in_force:
            return Outcome.refused(RefusalCode.MEMBER_INSURANCE_NOT_EFFECTIVE, "memberId")
        hashed = await asyncio.to_thread(hash_password, password)  # slow on purpose
        changed = await self._move(
            link.id,
            LinkStatus.APPROVED,
            LinkStatus.ACTIVE,
            "activated_at = ?, password_hash = ?",
            (_now(), hashed),
        )
        if not changed:
            return Outcome.refused(RefusalCode.INVALID_KINSHIP_STATE, "memberId")
        return Outcome(value=await self.link(link.id))

    async def remove(self, actor: str, link_id: str) -> LinkOutcome:
        """Either side ends the link, whatever its live state."""
        link = await self.link(link_id)
        if link is None or actor not in (link.adder.cert_no, link.member.cert_no):
            return Outcome.refused(RefusalCode.FORBIDDEN, "memberId")
        if not await self._move(link.id, None, LinkStatus.REMOVED, "ended_at = ?", (_now(),)):
            return Outcome.refused(RefusalCode.INVALID_KINSHIP_STATE, "memberId")
        return Outcome(value=await self.link(link.id))

    async def voucher(self, actor: str, link_id: str, treatment_area: str | None) -> VoucherOutcome:
        """A short-lived signed code of the member's e-voucher, for an active adder only."""
        link = await self.link(link_id)
        if link is None or link.adder.cert_no != actor:
            return VoucherOutcome.refused(RefusalCode.FORBIDDEN, "memberId")
        if link.status is not LinkStatus.ACTIVE:
            return VoucherOutcome.refused(RefusalCode.INVALID_KINSHIP_STATE, "memberId")
        people = await self._directory.locate([actor, link.member.cert_no])
        member = people.get(link.member.cert_no)
        if member is None or not member.person.is_in_force:
            refusal = Refusal(RefusalCode.MEMBER_INSURANCE_NOT_EFFECTIVE, "memberId")
            return VoucherOutcome(errors=(refusal,))
        adder = people.get(actor)
        area = treatment_area or (adder.person.area.code if adder else member.person.area.code)
        if not (len(area) == 6 and area.isascii() and area.isdigit()):
            return VoucherOutcome.refused(RefusalCode.INVALID_AREA_CODE, "treatmentArea")
        bound = False
        if adder is not None:
            bindings = await self._mutual_aid.bindings_of(actor, adder.adapter)
            bound = any(
                b.status is BindingStatus.ACTIVE
                and b.authorizer.cert_no == actor
                and b.beneficiary.cert_no == link.member.cert_no
                for b, _ in bindings
            )
        # Mutual aid may pay the self-pay part: an active binding and money to pay with.
        # (At settlement the bound authorizer with the largest balance pays.)
        funded = bound and adder is not None and (adder.person.balance or 0) > 0
        payer = link.adder if funded else None
        remote = area != member.person.area.code
        if funded:
            notes = ["MUTUAL_AID_PAYS_SELF_PAY"]
        elif bound:
            notes = ["MUTUAL_AID_NO_BALANCE"]
        else:
            notes = ["KINSHIP_IS_NOT_MUTUAL_AID"]
        if remote:
            notes.append("REMOTE_TREATMENT_REGISTRATION")

        issued = dt.datetime.now(dt.UTC).replace(microsecond=0)
        expires = issued + dt.timedelta(seconds=self.policy.voucher_ttl_seconds)
        code = jwt.encode(
            {
                "typ": "kinship-voucher",
                "sub": link.id,  # no personal data in the code itself
                "aud": VOUCHER_AUDIENCE,
                "iss": self._auth.issuer,
                "iat": issued,
                "exp": expires,
                "jti": uuid.uuid4().hex,
            },
            self._voucher_key,
            algorithm="HS256",
        )
        async with self._store.transaction() as db:
            await db.execute(
                "INSERT INTO kinship_use (link_id, at, treatment_area) VALUES (?, ?, ?)",
                (link.id, issued.isoformat(), area),
            )
        return VoucherOutcome(
            value=Voucher(
                code=code,
                expires_at=expires,
                qr_svg=segno.make(code, error="m").svg_inline(scale=4),
                link=link,
                member=member,
                treatment_area=area,
                remote_registration_required=remote,
                mutual_aid_payer=payer,
                notes=notes,
            )
        )

    async def usage(self, actor: str, link_id: str) -> tuple[list[Use], Sequence[Refusal]]:
        """The codes issued of the member's voucher, newest first: for the adder or the member."""
        link = await self.link(link_id)
        if link is None or actor not in (link.adder.cert_no, link.member.cert_no):
            return [], (Refusal(RefusalCode.FORBIDDEN, "memberId"),)
        async with (
            self._store.transaction() as db,
            db.execute(
                "SELECT at, treatment_area FROM kinship_use WHERE link_id = ? ORDER BY id DESC",
                (link.id,),
            ) as cur,
        ):
            rows = await cur.fetchall()
        return [Use(dt.datetime.fromisoformat(at), area) for at, area in rows], ()

    # -- reading -----------------------------------------------------------------------

    async def link(self, link_id: str) -> KinshipLink | None:
        links = await self._links("l.id = ?", (link_id,))
        return links[0] if links else None

    async def links_of(self, cert_no: str) -> list[KinshipLink]:
        """Every link the person takes part in, as adder or member, newest first."""
        return await self._links("l.adder = ? OR l.member = ?", (cert_no, cert_no))

    async def document_content(self, document_id: int) -> bytes | None:
        """A stored document's bytes (for reviewers: the caller checks the role)."""
        async with (
            self._store.transaction() as db,
            db.execute("SELECT content FROM kinship_document WHERE id = ?", (document_id,)) as cur,
        ):
            row = await cur.fetchone()
        return None if row is None else bytes(row[0])

    async def live_adders(self, members: Sequence[str]) -> dict[str, int]:
        """How many live links each of ``members`` has as a member, in one query."""
        if not members:
            return {}
        marks = ",".join("?" * len(members))
        async with self._store.transaction() as db:
            rows = await db.execute_fetchall(
                f"SELECT member, count(*) FROM kinship_link WHERE status IN {_LIVE_SQL}"  # noqa: S608
                f" AND member IN ({marks}) GROUP BY member",
                tuple(members),
            )
        return {str(row[0]): int(row[1]) for row in rows}

    async def review_queue(self) -> list[KinshipLink]:
        """Requests waiting for a reviewer, oldest first."""
        links = await self._links("l.status = 'PENDING_REVIEW'", ())
        return sorted(links, key=lambda link: link.created_at)

    async def _links(self, where: str, params: tuple[str, ...]) -> list[KinshipLink]:
        async with self._store.transaction() as db:  # both statements in one turn
            rows = list(
                await db.execute_fetchall(
                    "SELECT id, adder, adder_name, member, member_name, relation, channel,"  # noqa: S608
                    " status, created_at, decided_at, reason, activated_at, ended_at"
                    f" FROM kinship_link l WHERE {where} ORDER BY created_at DESC",
                    params,
                )
            )
            ids = [row[0] for row in rows]
            marks = ",".join("?" * len(ids))
            attached = await db.execute_fetchall(
                "SELECT link_id, id, kind, content_type, size, sha256, recorded_cert_no,"  # noqa: S608
                f" recorded_relation FROM kinship_document WHERE link_id IN ({marks}) ORDER BY id",
                ids,
            )
        documents: dict[str, list[DocumentInfo]] = {}
        for row in attached:
            info = DocumentInfo(
                id=row[1],
                kind=DocumentKind(row[2]),
                content_type=row[3],
                size=row[4],
                sha256=row[5],
                recorded_cert_no=row[6],
                recorded_relation=Relation(row[7]),
            )
            documents.setdefault(row[0], []).append(info)
        return [
            KinshipLink(
                id=row[0],
                adder=Party(row[1], row[2]),
                member=Party(row[3], row[4]),
                relation=Relation(row[5]),
                channel=Channel(row[6]),
                status=LinkStatus(row[7]),
                created_at=dt.datetime.fromisoformat(row[8]),
                decided_at=_when(row[9]),
                reason=row[10],
                activated_at=_when(row[11]),
                ended_at=_when(row[12]),
                documents=documents.get(row[0], []),
            )
            for row in rows
        ]

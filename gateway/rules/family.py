"""The family screen: every relative once, with both features side by side.

Relatives are everyone the caller's civil record relates them to and anyone
linked to them by mutual aid or a kinship account. For each: who they are,
where they are insured, and for each feature both directions with a verdict
judged by the same rules as binding and the diagnosis (`mutual_aid.judge`), adding
a kinship member (`kinship.judge_kinship`) and who pays (`adapters.payer`).

One screen asks each province at most once per kind of fact, however large
the family: the caller's civil record (one `relatives`), the relatives' insurance (one
`find_persons` per province, through the directory) and the bindings of the
caller and the relatives together (one `bindings_of` per province).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import enum
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal

from adapters.base import (
    Binding,
    BindingStatus,
    CivilRelative,
    FamilyRead,
    Party,
    ProvinceAdapter,
    RefusalCode,
    Relation,
    UpstreamError,
    bound_authorizers,
    choose_payer,
)
from gateway.common.beijing import china_date
from gateway.common.refusals import Code
from gateway.provinces.directory import Directory, Located
from gateway.provinces.federated import Provinces
from gateway.rules.diagnosis import Reason, reason_for
from gateway.rules.kinship import (
    Kinship,
    KinshipLink,
    LinkStatus,
    Taken,
    age_on,
    documents_needed,
    judge_kinship,
)
from gateway.rules.mutual_aid import judge


class AgeBand(enum.Enum):
    CHILD = "CHILD"  # 16 or younger: kinship needs a document and review
    ADULT = "ADULT"  # 17 to 59
    SENIOR = "SENIOR"  # 60 or older
    UNKNOWN = "UNKNOWN"

    @classmethod
    def of(cls, age: int | None) -> AgeBand:
        if age is None:
            return cls.UNKNOWN
        return cls.CHILD if age <= 16 else cls.ADULT if age < 60 else cls.SENIOR


class MutualAidState(enum.Enum):
    BOUND = "BOUND"
    PENDING_CONFIRMATION = "PENDING_CONFIRMATION"
    CAN_BIND = "CAN_BIND"
    NOT_POSSIBLE = "NOT_POSSIBLE"


class KinshipState(enum.Enum):
    ADDED = "ADDED"  # active: the code can be shown
    APPROVED = "APPROVED"  # activate the e-voucher next
    PENDING_CONSENT = "PENDING_CONSENT"
    PENDING_REVIEW = "PENDING_REVIEW"
    CAN_ADD = "CAN_ADD"
    NOT_POSSIBLE = "NOT_POSSIBLE"


_KINSHIP_STATES = {
    LinkStatus.ACTIVE: KinshipState.ADDED,
    LinkStatus.APPROVED: KinshipState.APPROVED,
    LinkStatus.PENDING_CONSENT: KinshipState.PENDING_CONSENT,
    LinkStatus.PENDING_REVIEW: KinshipState.PENDING_REVIEW,
}


@dataclass(frozen=True, slots=True)
class MutualAidVerdict:
    state: MutualAidState
    reason: Reason | None = None  # why not, or what still stands in the way (an empty account)


@dataclass(frozen=True, slots=True)
class KinshipVerdict:
    state: KinshipState
    reason: Code | None = None
    documents_needed: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class Member:
    party: Party
    relation: Relation | None  # theirs to the caller, as the civil record (or a link) says
    located: Located | None
    age_band: AgeBand
    i_authorize: tuple[Binding, ProvinceAdapter] | None
    authorizes_me: tuple[Binding, ProvinceAdapter] | None
    i_added: KinshipLink | None
    added_me: KinshipLink | None
    mutual_aid: MutualAidVerdict
    kinship: KinshipVerdict
    # a province that failed: where they are insured is unknown (``located`` is None,
    # and so every verdict), or only their bindings are
    unlocated: UpstreamError | None = None
    bindings_failed: UpstreamError | None = None


def _latest(items: Iterable[tuple[dt.datetime, bool, object]]) -> object | None:
    """The live one if any, else the newest."""
    ranked = sorted(items, key=lambda i: (i[1], i[0]), reverse=True)
    return ranked[0][2] if ranked else None


# who takes part in bindings with the caller, everyone's bindings, provinces that failed
Bindings = tuple[
    list[tuple[Binding, ProvinceAdapter]], dict[str, list[Binding]], dict[str, UpstreamError]
]


@dataclass(frozen=True, slots=True, kw_only=True)
class Facts:
    """What the screen is made from (`Family.facts`)."""

    civil: Sequence[CivilRelative]
    links: Sequence[KinshipLink]
    names: dict[str, str]
    relation: dict[str, Relation | None]
    located: dict[str, Located]
    unlocated: dict[str, UpstreamError]
    held: list[tuple[Binding, ProvinceAdapter]]
    theirs: dict[str, list[Binding]]
    failed: dict[str, UpstreamError]
    adders: dict[str, int]
    # whoever else is actively bound to a relative the caller is bound to, off the
    # screen: their balance says who pays for that relative
    co_authorizers: dict[str, Located] = field(default_factory=dict)


class Family:
    def __init__(self, provinces: Provinces, kinship: Kinship, directory: Directory) -> None:
        self._provinces = provinces
        self._kinship = kinship
        self._directory = directory

    async def of(self, me: Located) -> list[Member]:
        return self.screen(me, await self.facts(me.person.cert_no, me.adapter))

    async def facts(
        self,
        caller: str,
        home: ProvinceAdapter,
        read_links: Awaitable[Sequence[KinshipLink]] | None = None,
        settle: asyncio.Future[Located | None] | None = None,
    ) -> Facts:
        """Everything the screen needs from the provinces and the store, in as few
        rounds as the facts allow: the civil record (remembered a while) and the
        links; then where the relatives are insured and the bindings of everyone,
        in one request per province remembered for them (a relative found elsewhere
        since is asked of their province after). ``read_links``: the caller's kinship
        links, when the request reads them already.

        ``settle``: the caller is looked for at ``home`` in the same request, and this
        is given where they are (None: not there, or not asked) or ``home``'s fault as
        soon as ``home`` answers, whatever the other provinces do.
        """
        try:
            return await self._facts(caller, home, read_links, settle)
        finally:
            if settle is not None and not settle.done():
                settle.set_result(None)  # never asked: whoever waits asks for themselves

    async def _facts(
        self,
        caller: str,
        home: ProvinceAdapter,
        read_links: Awaitable[Sequence[KinshipLink]] | None,
        settle: asyncio.Future[Located | None] | None,
    ) -> Facts:
        civil, links = await asyncio.gather(
            self._directory.civil_record(home, caller),
            read_links or self._kinship.links_of(caller),
        )
        names: dict[str, str] = {}
        relation: dict[str, Relation | None] = {}
        for entry in civil:
            names[entry.cert_no] = entry.name
            relation[entry.cert_no] = entry.relation
        for link in links:
            # off the civil record, a link shows someone only once it is established: a
            # request alone (anyone may file one with a document) shows no stranger
            if link.status not in (LinkStatus.APPROVED, LinkStatus.ACTIVE):
                continue
            for party in (link.adder, link.member):
                if party.cert_no != caller:
                    names.setdefault(party.cert_no, party.name)
                    relation.setdefault(party.cert_no, _link_relation(link, caller))
        groups: dict[str, set[str]] = {
            code: {caller}
            for code, adapter in self._provinces.items()
            if adapter is home or adapter.policy().cross_province
        }
        landed = None if settle is None else _settling(settle, caller, home)
        wanted = [*names, caller] if settle is not None else list(names)
        remembered = await self._directory.remembered(names)
        if len(remembered) < len(names):
            # someone new: where they are insured first, then each province once
            survey = await self._directory.survey(wanted, landed=landed)
            for cert_no, where in survey.located.items():
                if cert_no in names:
                    groups.setdefault(where.adapter.code, set()).add(cert_no)
            held, theirs, failed = await self._bindings(caller, groups)
        else:  # all remembered: where they are and everyone's bindings, one request each
            for cert_no, code in remembered.items():
                groups.setdefault(code, set()).add(cert_no)
            survey = await self._directory.survey(wanted, groups, landed)
            held, theirs, failed = self._sorted(caller, survey.bindings, survey.failed)
        located = {c: where for c, where in survey.located.items() if c in names}
        unlocated = {c: error for c, error in survey.unresolved.items() if c in names}
        # relatives found in a province not asked above (they moved): ask it now
        later: dict[str, set[str]] = {}
        for cert_no, where in located.items():
            if cert_no not in groups.get(where.adapter.code, ()):
                later.setdefault(where.adapter.code, set()).add(cert_no)
        if later:  # a province asked again: only what the first round did not bring
            seen = {(a.code, b.id) for b, a in held} | {
                (code, b.id)
                for code, certs in groups.items()
                for c in certs
                for b in theirs.get(c, ())
            }
            _merge((held, theirs, failed), await self._bindings(caller, later, seen))
        # someone bound to the caller but on no record of theirs (rare): add them too
        extra = {
            party.cert_no: (party.name, _binding_relation(binding, caller))
            for binding, _ in held
            if binding.status.is_live
            for party in (binding.authorizer, binding.beneficiary)
            if party.cert_no != caller and party.cert_no not in names
        }
        # whoever else is bound to a relative the caller is bound to: the largest balance
        # pays (`adapters.payer`), so where they are insured too, in the same round
        others = {
            party.cert_no
            for binding, _ in held
            if binding.status is BindingStatus.ACTIVE and binding.authorizer.cert_no == caller
            for party in bound_authorizers(
                theirs.get(binding.beneficiary.cert_no, ()), binding.beneficiary.cert_no
            )
            if party.cert_no != caller and party.cert_no not in names and party.cert_no not in extra
        }
        co_authorizers: dict[str, Located] = {}
        if extra or others:
            for cert_no, (name, related) in extra.items():
                names[cert_no], relation[cert_no] = name, related
            more_located, more_unlocated = await self._directory.locate_all([*extra, *others])
            for cert_no, where in more_located.items():
                (located if cert_no in extra else co_authorizers)[cert_no] = where
            unlocated.update((c, e) for c, e in more_unlocated.items() if c in extra)
        return Facts(
            civil=civil,
            links=links,
            names=names,
            relation=relation,
            located=located,
            unlocated=unlocated,
            held=held,
            theirs=theirs,
            failed=failed,
            adders=await self._kinship.live_adders(list(names)),
            co_authorizers=co_authorizers,
        )

    async def bindings_of_caller(
        self, facts: Awaitable[Facts], home: ProvinceAdapter
    ) -> list[tuple[Binding, ProvinceAdapter]]:
        """The caller's bindings as `MutualAid.bindings_of` gives them (their own province
        and those that bind across provinces), from the family screen's facts."""
        known = await facts
        asked = [a for a in self._provinces.values() if a is home or a.policy().cross_province]
        for adapter in asked:
            if adapter.code in known.failed:
                raise known.failed[adapter.code]
        order = {a.code: i for i, a in enumerate(asked)}
        mine = [(b, a) for b, a in known.held if a.code in order]
        return sorted(mine, key=lambda found: order[found[1].code])  # stable: province order

    def screen(self, me: Located, facts: Facts) -> list[Member]:
        """The screen from the facts: every relative once, with the verdicts."""
        caller = me.person.cert_no
        civil, links, names, relation = facts.civil, facts.links, facts.names, facts.relation
        located, unlocated = facts.located, facts.unlocated
        held, theirs, failed, adders = facts.held, facts.theirs, facts.failed, facts.adders
        my_links = sum(link.status.is_live and link.adder.cert_no == caller for link in links)
        on_record = {entry.cert_no for entry in civil}
        today = china_date()

        members = []
        for cert_no in sorted(names, key=lambda c: (_order(relation[c]), c)):
            where = located.get(cert_no)
            mine = [(b, a) for b, a in held if _pair(b, caller, cert_no)]
            i_authorize = _pick_binding(mine, authorizer=caller)
            authorizes_me = _pick_binding(mine, authorizer=cert_no)
            i_added = _pick_link(links, adder=caller, member=cert_no)
            added_me = _pick_link(links, adder=cert_no, member=caller)
            age = age_on(cert_no, today)
            # the caller's own province holds their bindings: its failure hides them all
            bindings_failed = failed.get(me.adapter.code) or (
                failed.get(where.adapter.code) if where is not None else None
            )
            members.append(
                Member(
                    party=Party(cert_no, names[cert_no]),
                    relation=relation[cert_no],
                    located=where,
                    age_band=AgeBand.of(age),
                    i_authorize=i_authorize,
                    authorizes_me=authorizes_me,
                    i_added=i_added,
                    added_me=added_me,
                    mutual_aid=self._mutual_aid_verdict(
                        me,
                        where,
                        relation[cert_no] if cert_no in on_record else None,
                        i_authorize,
                        [*theirs.get(caller, []), *theirs.get(cert_no, [])],
                        _payer(me, cert_no, facts),
                    ),
                    kinship=self._kinship_verdict(
                        me,
                        where,
                        relation[cert_no] if cert_no in on_record else None,
                        i_added,
                        Taken(members=my_links, adders=adders.get(cert_no, 0)),
                        today,
                    ),
                    unlocated=unlocated.get(cert_no),
                    bindings_failed=bindings_failed,
                )
            )
        return members

    async def _bindings(
        self,
        caller: str,
        groups: Mapping[str, set[str]],
        seen: set[tuple[str, str]] | None = None,
    ) -> Bindings:
        """The bindings of ``groups``' people, one request per province; who takes part
        with the caller, everyone's, and the provinces that failed (left out). ``seen``:
        ``(province, binding id)`` already had, left out."""
        order = [(code, certs) for code, certs in groups.items() if certs]
        answers = await asyncio.gather(
            *(self._provinces[code].bindings_of(sorted(certs)) for code, certs in order),
            return_exceptions=True,
        )
        bindings: dict[str, Sequence[Binding]] = {}
        failed: dict[str, UpstreamError] = {}
        for (code, _), answer in zip(order, answers, strict=True):
            if isinstance(answer, UpstreamError):
                failed[code] = answer
            elif isinstance(answer, BaseException):
                raise answer
            else:
                bindings[code] = answer
        return self._sorted(caller, bindings, failed, seen)

    def _sorted(
        self,
        caller: str,
        answers: Mapping[str, Sequence[Binding]],
        failed: Mapping[str, UpstreamError],
        seen: set[tuple[str, str]] | None = None,
    ) -> Bindings:
        """The bindings each province answered: who takes part with the caller,
        everyone's, and the provinces that failed (``seen`` left out)."""
        found: Bindings = ([], {}, dict(failed))
        held, theirs, _ = found
        seen = set() if seen is None else seen
        for code, bindings in answers.items():
            adapter = self._provinces[code]
            for binding in bindings:
                if (code, binding.id) in seen:
                    continue
                seen.add((code, binding.id))
                if caller in (binding.authorizer.cert_no, binding.beneficiary.cert_no):
                    held.append((binding, adapter))
                for party in (binding.authorizer, binding.beneficiary):
                    theirs.setdefault(party.cert_no, []).append(binding)
        return found

    def _mutual_aid_verdict(
        self,
        me: Located,
        them: Located | None,
        civil: Relation | None,
        mine: tuple[Binding, ProvinceAdapter] | None,
        bindings: Sequence[Binding],
        payer: Party | None,
    ) -> MutualAidVerdict:
        empty = me.person.is_employee and (me.person.balance or 0) <= 0
        if mine is not None and mine[0].status is BindingStatus.ACTIVE:
            # bound, and what would still stop it paying today (as the diagnosis says)
            if not me.person.is_employee:
                return MutualAidVerdict(MutualAidState.BOUND, Reason.NOT_EMPLOYEE_INSURED)
            if them is not None and not them.person.is_in_force:
                return MutualAidVerdict(
                    MutualAidState.BOUND, Reason.RELATIVE_INSURANCE_NOT_IN_FORCE
                )
            if empty:
                return MutualAidVerdict(MutualAidState.BOUND, Reason.BALANCE_ZERO)
            if them is not None and payer is not None and payer.cert_no != me.person.cert_no:
                return MutualAidVerdict(MutualAidState.BOUND, Reason.ANOTHER_AUTHORIZER_PAYS)
            return MutualAidVerdict(MutualAidState.BOUND)
        if mine is not None and mine[0].status is BindingStatus.PENDING_CONFIRMATION:
            return MutualAidVerdict(
                MutualAidState.PENDING_CONFIRMATION, Reason.SPOUSE_NOT_CONFIRMED
            )
        if them is None:
            return MutualAidVerdict(MutualAidState.NOT_POSSIBLE, Reason.RELATIVE_NOT_INSURED)
        if civil is None:
            return MutualAidVerdict(MutualAidState.NOT_POSSIBLE, Reason.RELATION_NOT_VERIFIED)
        refused = judge(me, them, civil, civil=civil, bindings=bindings)
        if refused is not None:
            return MutualAidVerdict(MutualAidState.NOT_POSSIBLE, reason_for(refused))
        return MutualAidVerdict(MutualAidState.CAN_BIND, Reason.BALANCE_ZERO if empty else None)

    def _kinship_verdict(
        self,
        me: Located,
        them: Located | None,
        civil: Relation | None,
        mine: KinshipLink | None,
        taken: Taken,
        today: dt.date,
    ) -> KinshipVerdict:
        """Whether the caller could add them, by the rules `Kinship.add` judges with
        (the relation as the civil record states it: none, when off the record)."""
        policy = self._kinship.policy
        if mine is not None and mine.status.is_live:
            return KinshipVerdict(_KINSHIP_STATES[mine.status])
        if them is None:
            return KinshipVerdict(KinshipState.NOT_POSSIBLE, RefusalCode.PERSON_NOT_FOUND)
        refused = judge_kinship(
            me, them, civil, civil=civil, taken=taken, policy=policy, today=today
        )
        if refused is not None:
            return KinshipVerdict(KinshipState.NOT_POSSIBLE, refused)
        # off the civil record, only a document (and a reviewer) can show the relation
        needs = documents_needed(
            them.person.cert_no, verified=civil is not None, policy=policy, today=today
        )
        return KinshipVerdict(KinshipState.CAN_ADD, documents_needed=needs)


def _payer(me: Located, relative: str, facts: Facts) -> Party | None:
    """Who pays for ``relative`` by mutual aid (`adapters.payer`): of the authorizers
    actively bound to them, the largest balance the screen knows of."""

    def balance(cert_no: str) -> Decimal | None:
        if cert_no == me.person.cert_no:
            return me.person.balance
        where = facts.located.get(cert_no) or facts.co_authorizers.get(cert_no)
        return None if where is None else where.person.balance

    authorizers = bound_authorizers(facts.theirs.get(relative, ()), relative)
    return choose_payer(None, None, [(p, balance(p.cert_no)) for p in authorizers])


def _settling(
    settle: asyncio.Future[Located | None], caller: str, home: ProvinceAdapter
) -> Callable[[str, FamilyRead | UpstreamError], None]:
    """Gives ``settle`` where the caller is as soon as their home province answers."""

    def landed(code: str, answer: FamilyRead | UpstreamError) -> None:
        if code != home.code or settle.done():
            return
        if isinstance(answer, UpstreamError):
            settle.set_exception(answer)
            return
        person = answer.persons.get(caller)
        found = person is not None and home.serves(person.area.code)
        settle.set_result(Located(person, home) if person is not None and found else None)

    return landed


def _merge(into: Bindings, more: Bindings) -> None:
    """Add the bindings of a later round (other provinces: no binding twice)."""
    held, theirs, failed = into
    more_held, more_theirs, more_failed = more
    held.extend(more_held)
    for cert_no, bindings in more_theirs.items():
        theirs.setdefault(cert_no, []).extend(bindings)
    failed.update(more_failed)


def _pair(binding: Binding, a: str, b: str) -> bool:
    return {binding.authorizer.cert_no, binding.beneficiary.cert_no} == {a, b}


def _pick_binding(
    found: Sequence[tuple[Binding, ProvinceAdapter]], *, authorizer: str
) -> tuple[Binding, ProvinceAdapter] | None:
    chosen = _latest(
        (b.created_at, b.status.is_live, (b, a))
        for b, a in found
        if b.authorizer.cert_no == authorizer
    )
    return chosen  # type: ignore[return-value]


def _pick_link(links: Sequence[KinshipLink], *, adder: str, member: str) -> KinshipLink | None:
    chosen = _latest(
        (link.created_at, link.status.is_live, link)
        for link in links
        if link.adder.cert_no == adder and link.member.cert_no == member
    )
    return chosen  # type: ignore[return-value]


def _binding_relation(binding: Binding, caller: str) -> Relation:
    """The other person's relation to the caller, from the binding's own."""
    if binding.authorizer.cert_no == caller:
        return binding.relation
    return binding.relation.inverse


def _link_relation(link: KinshipLink, caller: str) -> Relation:
    return link.relation if link.adder.cert_no == caller else link.relation.inverse


_RELATION_ORDER = list(Relation)


def _order(relation: Relation | None) -> int:
    return _RELATION_ORDER.index(relation) if relation is not None else len(_RELATION_ORDER)

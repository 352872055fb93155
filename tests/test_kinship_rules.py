"""`gateway.rules.kinship.judge_kinship`, the pure rules of adding a kinship member, at each
boundary: relations, the civil record, ages and documents, the two limits, and which
states of a link take a place. The national `KinshipPolicy` is data; judging asks
nothing (the province here answers no request)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection

import httpx
import pytest

from adapters.base import Area, InsuranceStatus, InsuranceType, Person, RefusalCode, Relation
from adapters.hebei import HebeiAdapter
from gateway.common.certno import check_character
from gateway.common.refusals import Code, GatewayCode
from gateway.ops.config import KinshipPolicy
from gateway.provinces.directory import Located
from gateway.rules.documents import DocumentKind
from gateway.rules.kinship import LinkStatus, Taken, age_on, documents_needed, judge_kinship
from tests.doubles import Nowhere

TODAY = dt.date(2026, 6, 15)
POLICY = KinshipPolicy()  # 5 members, 2 adders, review at 16 or younger
R = RefusalCode
G = GatewayCode
BIRTH, REGISTER = DocumentKind.BIRTH_CERTIFICATE, DocumentKind.HOUSEHOLD_REGISTER
SPOUSE, PARENT, CHILD = Relation.SPOUSE, Relation.PARENT, Relation.CHILD


PROVINCE = HebeiAdapter(httpx.AsyncClient(transport=Nowhere()))


def cert(born: dt.date | str, sequence: str = "001") -> str:
    """A valid ID number of someone born on ``born`` (a date, or 8 digits as written)."""
    digits = born.strftime("%Y%m%d") if isinstance(born, dt.date) else born
    first17 = f"130102{digits}{sequence}"
    return first17 + check_character(first17)


def someone(cert_no: str, name: str = "某人") -> Located:
    person = Person(
        cert_no,
        name,
        Area("130100", "河北省石家庄市"),
        InsuranceType.RESIDENT,
        InsuranceStatus.ACTIVE,
        None,
    )
    return Located(person, PROVINCE)


ADDER = someone(cert(dt.date(1976, 3, 15), "011"), "加人")


def aged(years: int, *, days: int = 0) -> Located:
    """A member ``years`` old today; ``days`` > 0: turning ``years + 1`` in that many days."""
    birthday = TODAY.replace(year=TODAY.year - years - (1 if days else 0))
    return someone(cert(birthday + dt.timedelta(days=days)))


def judged(
    member: Located,
    relation: Relation | None = CHILD,
    *,
    civil: Relation | None = CHILD,
    documents: Collection[DocumentKind] | None = (),
    taken: Taken | None = None,
    policy: KinshipPolicy = POLICY,
) -> Code | None:
    return judge_kinship(
        ADDER,
        member,
        relation,
        civil=civil,
        documents=documents,
        taken=taken,
        policy=policy,
        today=TODAY,
    )


# -- who and how related ------------------------------------------------------------------------


def test_no_one_adds_themselves() -> None:
    assert judged(ADDER) is G.KINSHIP_SELF_NOT_ALLOWED


@pytest.mark.parametrize("relation", list(Relation), ids=lambda r: r.value)
def test_only_the_policys_relations_may_be_added(relation: Relation) -> None:
    expected = None if relation in POLICY.allowed_relations else R.RELATION_NOT_ALLOWED
    assert judged(aged(30), relation, civil=relation) is expected


def test_the_allowed_relations_are_data() -> None:
    narrow = KinshipPolicy(allowed_relations=frozenset({SPOUSE}))
    assert judged(aged(30), CHILD, policy=narrow) is R.RELATION_NOT_ALLOWED
    assert judged(aged(30), SPOUSE, civil=SPOUSE, policy=narrow) is None


def test_a_relation_not_said_yet_is_not_judged() -> None:
    """The family screen before anyone chooses: off the civil record, nothing to judge."""
    assert judged(aged(30), None, civil=None, documents=None) is None


def test_a_relation_the_civil_record_contradicts_is_not_verified() -> None:
    assert judged(aged(30), CHILD, civil=PARENT) is R.RELATION_NOT_VERIFIED
    # even where what it states is no relation kinship allows
    assert judged(aged(30), CHILD, civil=Relation.PARENT_IN_LAW) is R.RELATION_NOT_VERIFIED
    # a relation the policy refuses is that, whatever the record says
    assert judged(aged(30), Relation.PARENT_IN_LAW, civil=PARENT) is R.RELATION_NOT_ALLOWED


def test_an_adult_off_the_civil_record_needs_the_household_register() -> None:
    assert judged(aged(30), CHILD, civil=None) is R.RELATION_NOT_VERIFIED
    assert judged(aged(30), CHILD, civil=None, documents=[REGISTER]) is None
    # an adult's birth certificate is no path: it is as if none were given
    assert judged(aged(30), CHILD, civil=None, documents=[BIRTH]) is G.DOCUMENT_REQUIRED


def test_without_the_civil_record_no_document_is_judged() -> None:
    """Left out (``...``), the civil record and the documents are for a later judging."""
    young = aged(3)
    assert judge_kinship(ADDER, young, CHILD, policy=POLICY, today=TODAY) is None
    assert judge_kinship(ADDER, young, CHILD, documents=[], policy=POLICY, today=TODAY) is None
    assert judged(young, documents=None) is None  # the record, but no documents yet


# -- ages and documents ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("member", "minor"),
    [
        pytest.param(aged(0), True, id="born today"),
        pytest.param(aged(16), True, id="16 today"),
        pytest.param(aged(16, days=1), True, id="17 tomorrow"),
        pytest.param(aged(17), False, id="17 today"),
        pytest.param(aged(70), False, id="70"),
    ],
)
def test_sixteen_or_younger_needs_a_document_older_consents(member: Located, minor: bool) -> None:
    assert judged(member) is (G.DOCUMENT_REQUIRED if minor else None)
    assert documents_needed(member.person.cert_no, verified=True, policy=POLICY, today=TODAY) is (
        minor
    )
    assert judged(member, documents=[REGISTER]) is None
    assert judged(member, documents=[BIRTH]) is (None if minor else G.DOCUMENT_REQUIRED)


def test_an_age_that_cannot_be_read_counts_as_a_minors() -> None:
    unreadable = someone("130102" + "20230230" + "0017")  # 30 February
    assert age_on(unreadable.person.cert_no, TODAY) is None
    assert judged(unreadable) is G.DOCUMENT_REQUIRED
    assert judged(unreadable, documents=[BIRTH]) is None


def test_the_review_age_is_data() -> None:
    eighteen = KinshipPolicy(review_age=18)
    assert judged(aged(18), policy=eighteen) is G.DOCUMENT_REQUIRED
    assert judged(aged(19), policy=eighteen) is None
    assert judged(aged(17)) is None


def test_documents_are_needed_for_a_minor_or_an_unverified_relation() -> None:
    for member, verified, needed in [
        (aged(17), True, False),
        (aged(17), False, True),
        (aged(16), True, True),
        (aged(16), False, True),
    ]:
        cert_no = member.person.cert_no
        assert documents_needed(cert_no, verified=verified, policy=POLICY, today=TODAY) is needed


# -- the two limits ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("taken", "expected"),
    [
        pytest.param(Taken(), None, id="nothing taken"),
        pytest.param(Taken(members=4), None, id="the adder's fifth"),
        pytest.param(Taken(members=5), G.KINSHIP_ADDER_LIMIT_REACHED, id="the adder's sixth"),
        pytest.param(Taken(adders=1), None, id="the member's second adder"),
        pytest.param(Taken(adders=2), G.KINSHIP_MEMBER_LIMIT_REACHED, id="the member's third"),
        pytest.param(Taken(added=True), G.KINSHIP_ALREADY_ADDED, id="added already"),
        pytest.param(
            Taken(members=5, adders=2, added=True), G.KINSHIP_ALREADY_ADDED, id="all: twice first"
        ),
        pytest.param(
            Taken(members=5, adders=2), G.KINSHIP_ADDER_LIMIT_REACHED, id="both: the adder's first"
        ),
    ],
)
def test_an_adder_has_five_members_and_a_member_two_adders(
    taken: Taken, expected: Code | None
) -> None:
    assert judged(aged(30), taken=taken) is expected


def test_the_limits_are_data() -> None:
    one_each = KinshipPolicy(max_members=1, max_adders=1)
    assert judged(aged(30), taken=Taken(members=1), policy=one_each) is (
        G.KINSHIP_ADDER_LIMIT_REACHED
    )
    assert judged(aged(30), taken=Taken(adders=1), policy=one_each) is (
        G.KINSHIP_MEMBER_LIMIT_REACHED
    )


def test_the_limits_come_after_the_rules_of_the_person() -> None:
    full = Taken(members=5, adders=2, added=True)
    assert judged(aged(30), Relation.PARENT_IN_LAW, taken=full) is R.RELATION_NOT_ALLOWED
    assert judged(aged(3), taken=full) is G.DOCUMENT_REQUIRED


def test_places_taken_are_counted_from_the_live_links_of_either() -> None:
    a, m = "adder", "member"
    live = [(a, m), (a, "x"), (a, "y"), ("z", m), ("w", "q")]
    assert Taken.among(live, a, m) == Taken(members=3, adders=2, added=True)
    assert Taken.among([(m, a)], a, m) == Taken(members=0, adders=0, added=False)  # the other way
    assert Taken.among([], a, m) == Taken()


@pytest.mark.parametrize("status", list(LinkStatus), ids=lambda s: s.value)
def test_a_link_takes_a_place_while_it_is_live(status: LinkStatus) -> None:
    live = {
        LinkStatus.PENDING_CONSENT,
        LinkStatus.PENDING_REVIEW,
        LinkStatus.APPROVED,
        LinkStatus.ACTIVE,
    }
    assert status.is_live is (status in live)

"""`ProvinceAdapter.read_family`: what a family screen needs of one province (who among
some people it insures, and every binding in which one of some others takes part) in
ONE request, in each province's own dialect, answering exactly what `find_persons` and
`bindings_of` answer (and nothing asked of an empty list).

Run against every registered adapter wired to its own sandbox (`conformance.suite`'s
``province`` fixture); requests are counted where they reach the sandbox.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import httpx
import pytest
import respx
from defusedxml import ElementTree as SafeET

from adapters.base import (
    Binding,
    BindingStatus,
    FamilyRead,
    Guard,
    UpstreamContractError,
)
from conformance import suite as kit
from conformance.people import PEOPLE
from conformance.suite import (
    ADAPTERS,
    NAMES,
    QUICK,
    Pair,
    Province,
    Row,
    family,
    guarded,
    insured,
)
from tests.conftest import NOWHERE

# The conformance suite's fixtures: each registered adapter wired to its own sandbox, and
# a relative its roster lets an employee bind.
province = kit.province
pair = kit.pair


class Wire:
    """Between an adapter and its sandbox: every request the sandbox gets, the last
    real answer it gave, and (``instead``) what to answer in its place."""

    def __init__(self, province: Province) -> None:
        forward = province.sandbox.side_effect
        assert isinstance(forward, respx.ASGIHandler)
        self.seen: list[httpx.Request] = []
        self.last: httpx.Response | None = None
        self.instead: Callable[[httpx.Request, httpx.Response], httpx.Response] | None = None

        async def side_effect(request: httpx.Request) -> httpx.Response:
            self.seen.append(request)
            real = await forward(request)
            kind = {"content-type": real.headers["content-type"]}
            self.last = httpx.Response(real.status_code, headers=kind, content=await real.aread())
            return self.last if self.instead is None else self.instead(request, self.last)

        province.sandbox.side_effect = side_effect

    def answering(self, content: bytes) -> None:
        """Answer ``content`` to every request from now on (the real answer's status and type)."""
        self.instead = lambda request, real: httpx.Response(
            real.status_code, headers=real.headers, content=content
        )


def certs(rows: Sequence[Row]) -> list[str]:
    return [r["certNo"] for r in rows]


EVERYONE = certs(list(PEOPLE.values()))  # insured here, in other provinces, and nowhere


async def bound_family(province: Province, pair: Pair) -> list[Binding]:
    """``pair`` bound, and as many of the province's other bindable relatives as it
    allows; the last one unbound again (bindings of any status are read)."""
    made = await province.adapter.bind(pair.request())
    assert isinstance(made, Binding)
    bindings = [made]
    for other in family(province.code, province.adapter.policy()):
        if other.authorizer is pair.authorizer and other.beneficiary is pair.beneficiary:
            continue
        done = await province.adapter.bind(other.request())
        if isinstance(done, Binding):
            bindings.append(done)
    if len(bindings) > 1:
        ended = await province.adapter.unbind(
            bindings[-1].id, actor=bindings[-1].authorizer.cert_no
        )
        assert isinstance(ended, Binding)
        assert ended.status is BindingStatus.UNBOUND
    return bindings


def parties(bindings: Sequence[Binding]) -> list[str]:
    """Everyone taking part in ``bindings``, each once, in order."""
    return list(
        dict.fromkeys(c for b in bindings for c in (b.authorizer.cert_no, b.beneficiary.cert_no))
    )


def by_id(bindings: Sequence[Binding]) -> list[Binding]:
    return sorted(bindings, key=lambda b: b.id)


async def separately(province: Province, people: Sequence[str], bound: Sequence[str]) -> FamilyRead:
    """What the two reads answer, one request each."""
    adapter = province.adapter
    return FamilyRead(await adapter.find_persons(people), await adapter.bindings_of(bound))


def assert_same(got: FamilyRead, expected: FamilyRead) -> None:
    """The same persons (every field, balances as `Decimal`) and the same bindings."""
    assert dict(got.persons) == dict(expected.persons)
    assert by_id(got.bindings) == by_id(expected.bindings)
    assert len({b.id for b in got.bindings}) == len(got.bindings)


# -- the same answer as the two reads -----------------------------------------------------


async def test_read_family_answers_exactly_what_the_two_reads_answer(
    province: Province, pair: Pair
) -> None:
    bindings = await bound_family(province, pair)
    bound = parties(bindings)
    stranger = next(p for p in certs(insured(province.code)) if p not in bound)
    for people, asked in (
        (EVERYONE, [*bound, stranger]),  # one of them takes part in nothing
        ([stranger], bound),  # the two lists apart: each answered for its own people
        (bound, [stranger]),
        (bound[:1], bound[1:]),
    ):
        got = await province.adapter.read_family(people, asked)
        expected = await separately(province, people, asked)
        assert_same(got, expected)
        for person in got.persons.values():
            assert person == expected.persons[person.cert_no]
    got = await province.adapter.read_family(EVERYONE, bound)
    assert got.persons  # something to compare, on both sides
    assert {b.id for b in got.bindings} == {b.id for b in bindings}
    if len(bindings) > 1:
        assert BindingStatus.UNBOUND in {b.status for b in got.bindings}
    assert not (await province.adapter.read_family(bound, [stranger])).bindings


async def test_a_binding_is_read_from_either_side(province: Province, pair: Pair) -> None:
    made = await province.adapter.bind(pair.request())
    assert isinstance(made, Binding)
    me, them = pair.authorizer["certNo"], pair.beneficiary["certNo"]
    for side in ([me], [them], [me, them]):
        got = await province.adapter.read_family([me], side)
        assert list(got.bindings) == [made]
        assert set(got.persons) == {me}


async def test_people_the_province_does_not_insure_are_simply_absent(
    province: Province, pair: Pair
) -> None:
    await province.adapter.bind(pair.request())
    got = await province.adapter.read_family(EVERYONE, [pair.authorizer["certNo"]])
    ours = set(certs(insured(province.code)))
    assert set(got.persons) == ours
    assert PEOPLE[NOWHERE]["certNo"] not in got.persons
    others = set(EVERYONE) - ours
    assert others
    assert not others & set(got.persons)
    unknown = "110101190001010000"  # nobody's
    alone = await province.adapter.read_family([unknown], [unknown])
    assert (dict(alone.persons), list(alone.bindings)) == ({}, [])


# -- one request ----------------------------------------------------------------------------


async def test_a_family_screen_is_one_request_and_a_read(province: Province, pair: Pair) -> None:
    bindings = await bound_family(province, pair)
    bound = parties(bindings)
    wire = Wire(province)
    got = await province.adapter.read_family(EVERYONE, bound)
    assert len(wire.seen) == 1
    assert not province.writes(wire.seen)  # the dialect places the call, as a read
    assert_same(got, await separately(province, EVERYONE, bound))


@pytest.mark.parametrize(
    ("people", "bound"),
    [(True, False), (False, True)],
    ids=["only-people", "only-bound"],
)
async def test_with_only_one_list_only_that_is_asked_in_one_request(
    province: Province, pair: Pair, people: bool, bound: bool
) -> None:
    await province.adapter.bind(pair.request())
    asked_people = EVERYONE if people else []
    asked_bound = [pair.authorizer["certNo"]] if bound else []
    wire = Wire(province)
    got = await province.adapter.read_family(asked_people, asked_bound)
    assert len(wire.seen) == 1
    assert not province.writes(wire.seen)
    assert_same(got, await separately(province, asked_people, asked_bound))
    assert bool(got.persons) is people
    assert bool(got.bindings) is bound


async def test_asking_about_nobody_sends_nothing(province: Province) -> None:
    got = await province.adapter.read_family([], [])
    assert (dict(got.persons), list(got.bindings)) == ({}, [])
    assert province.requests == 0


async def test_the_same_family_screen_asked_at_once_is_sent_once(
    province: Province, pair: Pair
) -> None:
    await province.adapter.bind(pair.request())
    bound = [pair.authorizer["certNo"]]
    wire = Wire(province)
    first, second = await asyncio.gather(
        province.adapter.read_family(EVERYONE, bound),
        province.adapter.read_family(EVERYONE, bound),
    )
    assert len(wire.seen) == 1
    assert first == second


async def test_a_family_screen_answered_503_is_tried_again_as_a_read(
    province: Province, pair: Pair
) -> None:
    await province.adapter.bind(pair.request())
    bound = [pair.authorizer["certNo"], pair.beneficiary["certNo"]]
    expected = await separately(province, EVERYONE, bound)
    adapter = guarded(province, Guard(**QUICK))
    wire = Wire(province)
    busy = iter([httpx.Response(503, content=b"busy")])
    wire.instead = lambda request, real: next(busy, real)
    assert_same(await adapter.read_family(EVERYONE, bound), expected)
    assert len(wire.seen) == 2


# -- a combined answer that is not one ------------------------------------------------------


def name_of(province: Province) -> str:
    return next(n for n in NAMES if type(province.adapter) is ADAPTERS[n])


WRONG: tuple[Any, ...] = (None, "？", 7, {}, {"x": 1})


def json_variants(
    body: bytes, container: str, parts: tuple[str, str], binding_id: str
) -> Iterator[tuple[str, bytes]]:
    """A JSON dialect's combined answer (``container`` holding the persons' and the
    bindings' ``parts``) with one thing wrong."""
    answer = json.loads(body)
    inner = answer[container]
    assert set(parts) <= set(inner), "the real answer is not shaped as this suite thinks"

    def with_inner(value: Any) -> bytes:
        return json.dumps({**answer, container: value}, ensure_ascii=False).encode()

    for part in parts:
        yield f"{part}-missing", with_inner({k: v for k, v in inner.items() if k != part})
        for wrong in WRONG:
            yield f"{part}-{wrong!r}", with_inner({**inner, part: wrong})
    bindings = inner[parts[1]]
    assert bindings, "the real answer has no binding to break"
    nameless = {k: v for k, v in bindings[0].items() if k != binding_id}
    yield "a-binding-without-its-id", with_inner({**inner, parts[1]: [nameless, *bindings[1:]]})
    yield f"{container}-a-list", with_inner([inner])


def xml_variants(body: bytes) -> Iterator[tuple[str, bytes]]:
    """Henan's QueryFamily answer with one thing wrong."""

    def changed(change: Callable[[Any], None]) -> bytes:
        root = SafeET.fromstring(body)
        change(root.find("body"))
        return b'<?xml version="1.0" encoding="UTF-8"?>' + SafeET.tostring(root, encoding="utf-8")

    def dropped(tag: str) -> Callable[[Any], None]:
        return lambda b: b.remove(b.find(tag))

    def doubled(tag: str) -> Callable[[Any], None]:
        return lambda b: b.append(SafeET.fromstring(SafeET.tostring(b.find(tag))))

    def flattened(b: Any) -> None:  # QueryPerson's and QueryBindings' bodies run together
        for tag in ("ryxx", "bdxx"):
            container = b.find(tag)
            b.remove(container)
            b.extend(list(container))

    def nameless(b: Any) -> None:
        binding = b.find("bdxx/binding")
        binding.remove(binding.find("bdid"))

    for tag in ("ryxx", "bdxx"):
        yield f"{tag}-missing", changed(dropped(tag))
        yield f"{tag}-twice", changed(doubled(tag))
    yield "without-containers", changed(flattened)
    yield "a-binding-without-its-id", changed(nameless)


# How to break each province's combined answer, for this repository's three dialects: the
# test below runs over the provinces installed that have one here. A province installed
# from its own package (e.g. examples/shandong) tests its own dialect's broken answers there.
VARIANTS: dict[str, Callable[[bytes], Iterator[tuple[str, bytes]]]] = {
    "hebei": lambda body: json_variants(body, "output", ("psn_list", "mulaid_list"), "mulaid_id"),
    "jiangsu": lambda body: json_variants(body, "data", ("persons", "authorizations"), "authId"),
    "henan": xml_variants,
}


def test_this_repository_s_provinces_are_installed_and_each_has_its_variants() -> None:
    assert set(VARIANTS) == {"hebei", "jiangsu", "henan"}
    assert set(VARIANTS) <= set(NAMES)


@pytest.mark.parametrize("province", [n for n in NAMES if n in VARIANTS], indirect=True)
async def test_a_combined_answer_missing_a_part_or_of_the_wrong_shape_is_a_contract_error(
    province: Province, pair: Pair
) -> None:
    name = name_of(province)
    await province.adapter.bind(pair.request())
    people, bound = [pair.authorizer["certNo"]], [pair.authorizer["certNo"]]
    wire = Wire(province)
    real = await province.adapter.read_family(people, bound)
    assert real.persons
    assert real.bindings
    assert wire.last is not None
    variants = list(VARIANTS[name](wire.last.content))
    assert variants
    for label, content in variants:
        wire.answering(content)
        before = len(wire.seen)
        with pytest.raises(UpstreamContractError) as caught:
            await province.adapter.read_family(people, bound)
        assert caught.value.province == province.code, label
        assert len(wire.seen) == before + 1, label  # a contract error is not retried


@pytest.mark.parametrize("alone", ["find_persons", "bindings_of"])
async def test_the_answer_of_one_read_alone_is_no_family_screen(
    province: Province, pair: Pair, alone: str
) -> None:
    """A province that ignored half of the question (an older system) answers as one of
    the two reads would: the missing half is a contract error, never read as empty."""
    await province.adapter.bind(pair.request())
    me = [pair.authorizer["certNo"]]
    wire = Wire(province)
    await getattr(province.adapter, alone)(me)
    assert wire.last is not None
    wire.answering(wire.last.content)
    with pytest.raises(UpstreamContractError) as caught:
        await province.adapter.read_family(me, me)
    assert caught.value.province == province.code
    assert len(wire.seen) == 2

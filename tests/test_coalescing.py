"""Concurrent identical reads to a province are sent once and shared
(`adapters.coalescing`); writes never, and no read asked after a write began joins one
asked before it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest

from adapters.base import BindRequest, Guard, Refusal, Relation, UpstreamUnavailable
from adapters.hebei import HebeiAdapter
from bench.dashboard import QUERY as DASHBOARD
from gateway.provinces.federated import sandbox_factory
from tests.conftest import WANG_EIGHT, Sandboxes, gateway, person

WANG = person("hb_wang_jianguo")["certNo"]
LI = person("hb_li_xiuying")["certNo"]


class Gated(httpx.AsyncBaseTransport):
    """Hebei's sandbox; while ``gate`` is clear, requests wait at it (counted in ``sent``,
    those cancelled meanwhile in ``dropped``)."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.gate = asyncio.Event()
        self.gate.set()
        self.sent = 0
        self.dropped = 0
        self.arrived = asyncio.Event()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.sent += 1
        self.arrived.set()
        try:
            await self.gate.wait()
        except asyncio.CancelledError:
            self.dropped += 1
            raise
        return await self.inner.handle_async_request(request)


@pytest.fixture
async def hebei() -> AsyncIterator[tuple[HebeiAdapter, Gated]]:
    app = sandbox_factory("hebei")(data_dir=None)
    async with app.router.lifespan_context(app):
        gated = Gated(httpx.ASGITransport(app=app))
        async with httpx.AsyncClient(transport=gated, base_url="http://hebei") as client:
            yield HebeiAdapter(client), gated


async def test_identical_reads_at_once_are_sent_once_and_shared(
    hebei: tuple[HebeiAdapter, Gated],
) -> None:
    adapter, gated = hebei
    gated.gate.clear()
    asked = [asyncio.create_task(adapter.find_persons([WANG, LI])) for _ in range(5)]
    other = asyncio.create_task(adapter.find_persons([LI]))  # another read: its own request
    await gated.arrived.wait()
    await asyncio.sleep(0.01)
    gated.gate.set()
    answers = await asyncio.gather(*asked)
    await other
    assert gated.sent == 2
    assert all(a == answers[0] for a in answers)
    assert set(answers[0]) == {WANG, LI}
    assert adapter.coalescer.shared == 4
    # once answered, the same read is sent again
    await adapter.find_persons([WANG, LI])
    assert gated.sent == 3


async def test_a_read_asked_after_a_write_began_does_not_join_one_from_before(
    hebei: tuple[HebeiAdapter, Gated],
) -> None:
    adapter, gated = hebei
    gated.gate.clear()
    before = asyncio.create_task(adapter.bindings_of([WANG]))
    await gated.arrived.wait()
    writing = asyncio.create_task(
        adapter.bind(
            BindRequest(
                authorizer_cert_no=WANG,
                beneficiary_cert_no=LI,
                beneficiary_name=person("hb_li_xiuying")["name"],
                relation=Relation.SPOUSE,
                commitment_signed=True,
            )
        )
    )
    await asyncio.sleep(0.01)
    after = asyncio.create_task(adapter.bindings_of([WANG]))
    await asyncio.sleep(0.01)
    assert gated.sent == 3  # the read, the write, and the read after it: not shared
    gated.gate.set()
    await asyncio.gather(before, writing, after)
    assert adapter.coalescer.shared == 0


async def test_a_fault_is_shared_and_a_caller_that_stops_waiting_stops_nobody_else(
    hebei: tuple[HebeiAdapter, Gated],
) -> None:
    adapter, gated = hebei
    gated.gate.clear()
    first = asyncio.create_task(adapter.find_persons([WANG]))
    second = asyncio.create_task(adapter.find_persons([WANG]))
    await gated.arrived.wait()
    first.cancel()
    gated.gate.set()
    assert WANG in await second  # the request went on for the one still waiting
    assert gated.sent == 1
    assert gated.dropped == 0

    # nobody left waiting: the request is dropped, as one caller's would be
    gated.gate.clear()
    gated.arrived.clear()
    alone = asyncio.create_task(adapter.find_persons([LI]))
    await gated.arrived.wait()
    alone.cancel()
    with pytest.raises(asyncio.CancelledError):
        await alone
    await asyncio.sleep(0.01)
    assert gated.dropped == 1
    gated.gate.set()

    # a fault reaches everyone who shared the read
    async def down(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(0.02)
        return httpx.Response(503)

    failing = HebeiAdapter(
        httpx.AsyncClient(transport=httpx.MockTransport(down), base_url="http://hebei")
    )
    outcomes = await asyncio.gather(
        *(failing.find_persons([WANG]) for _ in range(3)), return_exceptions=True
    )
    assert all(isinstance(o, UpstreamUnavailable) for o in outcomes)
    assert failing.coalescer.shared == 2
    await failing.aclose()


async def test_one_person_s_dashboard_opened_four_times_at_once_costs_the_provinces_one() -> None:
    boxes = Sandboxes()
    async with boxes:
        await boxes.start(delay=0.02)  # each request takes a moment: the four overlap
        async with gateway(dict(boxes.transports)) as gql:
            assert "errors" not in await gql(DASHBOARD, as_="hb_wang_jianguo")  # warmed up
            before = boxes.calls
            assert "errors" not in await gql(DASHBOARD, as_="hb_wang_jianguo")
            one = boxes.calls - before
            before = boxes.calls
            four = await asyncio.gather(*(gql(DASHBOARD, as_="hb_wang_jianguo") for _ in range(4)))
            assert all("errors" not in answer for answer in four)
            at_once = boxes.calls - before
    assert one > 0
    assert at_once == one


async def test_a_read_whose_arguments_cannot_be_a_key_is_sent_as_it_is() -> None:
    from adapters.coalescing import Coalescer, key_of

    coalescer = Coalescer()
    sent = 0

    async def read() -> int:
        nonlocal sent
        sent += 1
        await asyncio.sleep(0.01)
        return sent

    key = key_of("premium_of", ({"not": "hashable"},), {})
    await asyncio.gather(coalescer.read(key, read), coalescer.read(key, read))
    assert sent == 2  # each its own request
    assert coalescer.shared == 0


# -- different families at once: one request for those asked meanwhile -----------------

DEMING = person("hb_wang_deming")["certNo"]
JING = person("hb_wang_jing")["certNo"]


async def test_family_reads_asked_while_one_is_on_its_way_go_together_each_answered_its_own(
    hebei: tuple[HebeiAdapter, Gated],
) -> None:
    adapter, gated = hebei
    for relative, relation in ((DEMING, Relation.PARENT), (JING, Relation.CHILD)):
        made = await adapter.bind(
            BindRequest(WANG, relative, "王德明" if relative == DEMING else "王静", relation, True)
        )
        assert not isinstance(made, Refusal), made
    alone = {
        asked: await adapter.read_family(*asked)
        for asked in (((WANG,), (WANG,)), ((LI, DEMING), (DEMING,)), ((JING,), (JING, LI)))
    }
    sent = gated.sent

    gated.gate.clear()
    first = asyncio.create_task(adapter.read_family((WANG,), (WANG,)))
    await gated.arrived.wait()  # on its way
    meanwhile = [
        asyncio.create_task(adapter.read_family(*asked))
        for asked in (((LI, DEMING), (DEMING,)), ((JING,), (JING, LI)))
    ]
    await asyncio.sleep(0.01)
    assert gated.sent == sent + 1  # the two wait for the first to land
    gated.gate.set()
    answers = await asyncio.gather(first, *meanwhile)
    assert gated.sent == sent + 2  # then go as one
    for asked, answer in zip(alone, answers, strict=True):
        assert dict(answer.persons) == dict(alone[asked].persons)
        assert sorted(b.id for b in answer.bindings) == sorted(b.id for b in alone[asked].bindings)
    assert adapter.batcher.merged == 2


async def test_family_reads_waiting_behind_one_that_hangs_go_after_a_moment_not_a_timeout(
    hebei: tuple[HebeiAdapter, Gated],
) -> None:
    """A province that hangs would cost the reads waiting for its first answer a second
    timeout: they wait a moment (`Batcher`'s ``wait``) at most, then go as one."""
    adapter, gated = hebei
    gated.gate.clear()
    first = asyncio.create_task(adapter.read_family((WANG,), (WANG,)))
    await gated.arrived.wait()
    meanwhile = [asyncio.create_task(adapter.read_family((who,), (who,))) for who in (LI, DEMING)]
    await asyncio.sleep(0.3)  # the first still hangs
    assert gated.sent == 2  # the two went, together, without it
    gated.gate.set()
    assert set((await asyncio.gather(*meanwhile))[0].persons) == {LI}
    await first


async def test_a_merged_family_read_s_fault_reaches_each_and_one_leaving_leaves_the_others(
    hebei: tuple[HebeiAdapter, Gated],
) -> None:
    adapter, gated = hebei
    gated.gate.clear()
    first = asyncio.create_task(adapter.read_family((WANG,), (WANG,)))
    await gated.arrived.wait()
    leaving = asyncio.create_task(adapter.read_family((LI,), (LI,)))
    staying = asyncio.create_task(adapter.read_family((DEMING,), (DEMING,)))
    await asyncio.sleep(0.01)
    leaving.cancel()
    gated.gate.set()
    await first
    assert set((await staying).persons) == {DEMING}
    with pytest.raises(asyncio.CancelledError):
        await leaving

    down = HebeiAdapter(
        httpx.AsyncClient(
            transport=httpx.MockTransport(lambda request: httpx.Response(503)),
            base_url="http://hebei",
        ),
        guard=Guard(retries=0),
    )
    outcomes = await asyncio.gather(
        down.read_family((WANG,), (WANG,)),
        down.read_family((LI,), (LI,)),
        down.read_family((DEMING,), (DEMING,)),
        return_exceptions=True,
    )
    assert all(isinstance(o, UpstreamUnavailable) for o in outcomes), outcomes
    await down.aclose()


async def test_eight_members_opening_their_dashboards_at_once_cost_each_province_two_requests() -> (
    None
):
    """王建国's family, each member their own dashboard at the same moment: the first
    request to each province goes alone, the others' wait for it and go as one."""
    members = ["hb_wang_jianguo", *(k for k, _ in WANG_EIGHT if k != "hb_wang_hao")][:8]
    boxes = Sandboxes()
    async with boxes:
        await boxes.start(delay=0.02)
        async with gateway(dict(boxes.transports)) as gql:
            for _ in range(2):  # remembered, civil records kept
                for who in members:
                    assert "errors" not in await gql(DASHBOARD, as_=who)
            before = {name: t.calls for name, t in boxes.transports.items()}
            one = await gql(DASHBOARD, as_="hb_wang_jianguo")
            single = {name: t.calls - before[name] for name, t in boxes.transports.items()}
            before = {name: t.calls for name, t in boxes.transports.items()}
            answers = await asyncio.gather(*(gql(DASHBOARD, as_=who) for who in members))
            sent = {name: t.calls - before[name] for name, t in boxes.transports.items()}
    assert "errors" not in one
    assert all("errors" not in a for a in answers), answers
    assert all(n <= 2 for n in sent.values()), (sent, single)
    assert sum(sent.values()) <= 2 * sum(single.values())

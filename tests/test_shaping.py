"""What a province can take (`adapters.shaping`): requests at once and a second, beyond
which the gateway queues briefly and then sheds with a coded, retryable fault; one
province at its limits never holds up another."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from adapters.base import UpstreamOverloaded
from adapters.shaping import Shaper
from gateway.ops.config import Settings, province_settings
from tests.conftest import Recording, Sandboxes, gateway, person

ME = "{ me { name account { balance } } }"


async def test_beyond_its_concurrency_a_request_waits_then_is_shed() -> None:
    shaper = Shaper(max_concurrent=2, queue_seconds=0.1)
    release = asyncio.Event()
    inside = 0

    async def attempt() -> None:
        nonlocal inside
        async with shaper.place("read", province="13"):
            inside += 1
            await release.wait()

    holders = [asyncio.create_task(attempt()) for _ in range(2)]
    await asyncio.sleep(0.01)
    assert inside == 2
    started = time.monotonic()
    with pytest.raises(UpstreamOverloaded) as shed:
        await attempt()
    assert 0.09 <= time.monotonic() - started < 0.5  # it waited its turn first
    assert shed.value.province == "13"
    assert not shed.value.reached  # never sent
    assert shaper.shed == 1
    # a place that comes free in time is taken
    waiting = asyncio.create_task(attempt())
    await asyncio.sleep(0.02)
    release.set()
    await asyncio.gather(*holders, waiting)
    assert inside == 3


async def test_beyond_its_rate_a_request_waits_then_is_shed() -> None:
    shaper = Shaper(max_per_second=5, queue_seconds=0.05)
    for _ in range(5):  # a burst up to the rate passes at once
        async with shaper.place("read", province="32"):
            pass
    with pytest.raises(UpstreamOverloaded):
        async with shaper.place("read", province="32"):
            pass  # pragma: no cover
    patient = Shaper(max_per_second=5, queue_seconds=1.0)
    started = time.monotonic()
    for _ in range(6):
        async with patient.place("read", province="32"):
            pass
    assert 0.1 < time.monotonic() - started < 1.0  # the sixth waited for the bucket


async def test_no_limits_declared_means_no_waiting() -> None:
    shaper = Shaper()
    assert not shaper.limited
    async with asyncio.timeout(1):
        await asyncio.gather(*(_enter(shaper) for _ in range(100)))


async def _enter(shaper: Shaper) -> None:
    async with shaper.place("read", province="41"):
        await asyncio.sleep(0)


class Held(httpx.AsyncBaseTransport):
    """A province's sandbox whose answers wait until ``open`` is set."""

    def __init__(self, inner: Recording) -> None:
        self.inner = inner
        self.open = asyncio.Event()
        self.waiting = 0
        self.held = asyncio.Event()  # set once a request waits

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.waiting += 1
        if not self.open.is_set():
            self.held.set()
        try:
            await self.open.wait()
        finally:
            self.waiting -= 1
        return await self.inner.handle_async_request(request)


def limited(**hebei: Any) -> Settings:
    table = {"base_url": "http://hebei.sandbox", "retries": 0, **hebei}
    return Settings(data_dir=None, provinces={"hebei": province_settings("hebei", table)})


@pytest.fixture
async def boxes() -> AsyncIterator[Sandboxes]:
    boxes = Sandboxes()
    async with boxes:
        await boxes.start()
        yield boxes


async def test_a_saturated_province_sheds_with_a_retryable_code_and_the_others_answer(
    boxes: Sandboxes,
) -> None:
    hebei = Held(boxes.transports["hebei"])
    settings = limited(max_concurrent=1, queue_seconds=0.1)
    async with gateway({**boxes.transports, "hebei": hebei}, settings) as gql:
        hebei.open.set()
        for key in ("hb_wang_jianguo", "hb_li_xiuying", "js_chen_zhiqiang"):
            assert "errors" not in await gql(ME, as_=key)  # where each is insured
        hebei.open.clear()
        first = asyncio.create_task(gql(ME, as_="hb_wang_jianguo"))
        await hebei.held.wait()  # Hebei's one place is taken, and held
        shed = await gql(ME, as_="hb_li_xiuying")
        # Jiangsu answers meanwhile, at once: Hebei's queue is Hebei's alone
        async with asyncio.timeout(2):
            jiangsu = await gql(ME, as_="js_chen_zhiqiang")
        hebei.open.set()
        answered = await first
        breaker = (await gql.client.get("/readyz")).json()["provinces"]["13"]["breaker"]
    assert jiangsu["data"]["me"]["name"] == person("js_chen_zhiqiang")["name"]
    assert answered["data"]["me"]["name"] == person("hb_wang_jianguo")["name"]
    [error] = shed["errors"]
    assert error["extensions"]["code"] == "UPSTREAM_OVERLOADED"
    assert error["extensions"]["province"] == "13"
    assert error["extensions"]["retryAfter"] == 1
    assert "繁忙" in error["message"]
    assert breaker == "CLOSED"  # shedding is not the province failing


async def test_a_write_shed_is_not_sent_and_the_same_key_later_is_done(boxes: Sandboxes) -> None:
    hebei = Held(boxes.transports["hebei"])
    settings = limited(max_concurrent=1, queue_seconds=0.1)
    bind = """mutation($i: BindMutualAidInput!) { bindMutualAid(input: $i) {
      binding { status } errors { code } status } }"""
    relative = person("hb_li_xiuying")
    given = {
        "i": {
            "beneficiaryCertNo": relative["certNo"],
            "beneficiaryName": relative["name"],
            "relation": "SPOUSE",
            "commitmentSigned": True,
            "idempotencyKey": "shed-once",
        }
    }
    async with gateway({**boxes.transports, "hebei": hebei}, settings) as gql:
        hebei.open.set()
        assert "errors" not in await gql(ME, as_="hb_wang_jianguo")
        hebei.open.clear()
        holder = asyncio.create_task(gql(ME, as_="hb_wang_lei"))
        await hebei.held.wait()
        writes_before = boxes.transports["hebei"].calls
        shed = await gql(bind, given, as_="hb_wang_jianguo")
        assert boxes.transports["hebei"].calls == writes_before  # nothing reached Hebei
        hebei.open.set()
        await holder
        again = await gql(bind, given, as_="hb_wang_jianguo")
    assert shed["errors"][0]["extensions"]["code"] == "UPSTREAM_OVERLOADED"
    assert again["data"]["bindMutualAid"]["status"] == "DONE"
    assert again["data"]["bindMutualAid"]["binding"]["status"] == "ACTIVE"


def test_a_province_s_limits_are_read_from_its_table() -> None:
    conf = province_settings(
        "hebei",
        {"base_url": "http://x", "max_concurrent": 8, "max_per_second": 20, "queue_seconds": 0.25},
    )
    assert (conf.max_concurrent, conf.max_per_second, conf.queue_seconds) == (8, 20.0, 0.25)
    assert (
        province_settings("hebei", {"base_url": "http://x", "max_concurrent": 0}).max_concurrent
        == 0
    )
    with pytest.raises(ValueError, match="queue_seconds"):
        province_settings("hebei", {"base_url": "http://x", "queue_seconds": 0})
    with pytest.raises(ValueError, match="max_concurrent"):
        province_settings("hebei", {"base_url": "http://x", "max_concurrent": 1.5})

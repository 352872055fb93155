"""A province's answer is bounded: in size, decoded, and in time.

The adapter reads each answer as a stream and decodes gzip and deflate itself, at
most a piece at a time: an answer that grows past the province's
``max_answer_bytes`` (as sent or as decoded) is that province's contract fault,
found after reading about that much of it, never a memory blow-up. One deadline
(the province's ``timeout``) bounds each attempt as a whole: connecting, sending,
and receiving and decoding the answer, however slowly it trickles in.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import tracemalloc
import zlib
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from adapters.base import AdapterSettings, UpstreamContractError, UpstreamTimeout
from adapters.hebei import HebeiAdapter
from gateway.ops.config import Settings, province_settings
from gateway.provinces.federated import sandbox_factory
from tests.conftest import Sandboxes, gateway, person

KiB = 1024
MiB = 1024 * KiB
DEFAULT_LIMIT = 4 * MiB
BOMB_SIZE = 64 * MiB  # decoded; about 64 KiB as sent

ME = "{ me { name insuredArea { code } account { balance } } }"
WANG = person("hb_wang_jianguo")["certNo"]  # insured in Hebei

GZIP, ZLIB, RAW_DEFLATE = 31, 15, -15  # zlib's wbits for each container


def compress(data: bytes, wbits: int) -> bytes:
    packer = zlib.compressobj(6, zlib.DEFLATED, wbits)
    return packer.compress(data) + packer.flush()


def zeros(size: int, wbits: int) -> bytes:
    """``size`` zero bytes, compressed, without ever holding them all."""
    packer = zlib.compressobj(9, zlib.DEFLATED, wbits)
    block = bytes(MiB)
    parts = [packer.compress(block) for _ in range(size // MiB)]
    return b"".join([*parts, packer.flush()])


@pytest.fixture(scope="module")
def bomb() -> bytes:
    return zeros(BOMB_SIZE, GZIP)


class Chunks(httpx.AsyncByteStream):
    """A body sent ``size`` bytes at a time, counting what the client pulled."""

    def __init__(self, body: bytes, size: int = 8 * KiB) -> None:
        self.body = body
        self.size = size
        self.sent = 0
        self.closed = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for start in range(0, len(self.body), self.size):
            chunk = self.body[start : start + self.size]
            self.sent += len(chunk)
            yield chunk

    async def aclose(self) -> None:
        self.closed = True


class Trickle(httpx.AsyncByteStream):
    """A body that never ends: one byte every ``every`` seconds."""

    def __init__(self, every: float = 0.2) -> None:
        self.every = every
        self.sent = 0
        self.closed = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while True:
            await asyncio.sleep(self.every)
            self.sent += 1
            yield b" "

    async def aclose(self) -> None:
        self.closed = True


def streaming(
    make: Callable[[httpx.Request], httpx.AsyncByteStream],
    headers: dict[str, str],
    sent: list[httpx.AsyncByteStream],
    asked: list[httpx.Request] | None = None,
) -> httpx.MockTransport:
    """A province that answers 200 with ``headers`` and the body ``make`` streams."""

    def province(request: httpx.Request) -> httpx.Response:
        stream = make(request)
        sent.append(stream)
        if asked is not None:
            asked.append(request)
        return httpx.Response(200, headers=headers, stream=stream)

    return httpx.MockTransport(province)


@contextlib.asynccontextmanager
async def hebei(transport: httpx.AsyncBaseTransport, **options: Any) -> AsyncIterator[HebeiAdapter]:
    async with httpx.AsyncClient(transport=transport, base_url="http://hebei") as client:
        yield HebeiAdapter(client, **options)


@contextlib.contextmanager
def peak_memory() -> Iterator[list[int]]:
    """The peak of Python's allocations inside the block, in bytes (filled in at the end)."""
    peak: list[int] = []
    tracemalloc.start()
    try:
        yield peak
        peak.append(tracemalloc.get_traced_memory()[1])
    finally:
        tracemalloc.stop()


GZIPPED = {"content-type": "application/json", "content-encoding": "gzip"}


# -- size ----------------------------------------------------------------------------


async def test_a_gzip_bomb_is_refused_after_reading_about_the_limit(bomb: bytes) -> None:
    """64 MiB of zeros in 64 KiB of gzip, under the default limit (4 MiB): refused after
    the first chunks, holding about the limit at most, and not asked again (a contract
    fault is not retried)."""
    sent: list[httpx.AsyncByteStream] = []
    async with hebei(streaming(lambda r: Chunks(bomb), GZIPPED, sent)) as adapter:
        with peak_memory() as peak, pytest.raises(UpstreamContractError) as caught:
            await adapter.find_persons([WANG])
    assert caught.value.province == "13"
    assert len(sent) == 1
    stream = sent[0]
    assert isinstance(stream, Chunks)
    # 4 MiB of zeros is about 4 KiB of gzip: two 8 KiB chunks at most, of eight
    assert stream.sent <= 2 * stream.size <= len(bomb) // 3
    assert stream.closed
    assert peak[0] < 3 * DEFAULT_LIMIT, f"peak {peak[0] / MiB:.1f} MiB"


@pytest.mark.parametrize(
    ("coding", "wbits"),
    [("deflate", ZLIB), ("deflate", RAW_DEFLATE), ("gzip, deflate", None)],
    ids=["deflate", "raw-deflate", "gzip-then-deflate"],
)
async def test_other_bombs_are_refused_too(coding: str, wbits: int | None) -> None:
    body = compress(zeros(16 * MiB, GZIP), ZLIB) if wbits is None else zeros(16 * MiB, wbits)
    headers = {"content-type": "application/json", "content-encoding": coding}
    sent: list[httpx.AsyncByteStream] = []
    async with hebei(streaming(lambda r: Chunks(body), headers, sent), max_answer_bytes=MiB) as a:
        with peak_memory() as peak, pytest.raises(UpstreamContractError):
            await a.find_persons([WANG])
    assert peak[0] < 3 * MiB, f"peak {peak[0] / MiB:.1f} MiB"


class Padded(httpx.AsyncBaseTransport):
    """Hebei's sandbox, its answers padded with spaces (still JSON) to ``size`` bytes,
    then compressed as ``coding`` says (``raw-deflate``: "deflate" without zlib's
    wrapping) and sent ``chunk`` bytes at a time."""

    def __init__(self, size: int, coding: str, chunk: int = 8 * KiB) -> None:
        self.app = sandbox_factory("hebei")(data_dir=None)
        self.inner = httpx.ASGITransport(app=self.app)
        self.size = size
        self.codings = [c.strip() for c in coding.split(",")]
        self.chunk = chunk

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        answer = await self.inner.handle_async_request(request)
        body = await answer.aread()
        body += b" " * (self.size - len(body))
        wbits = {"gzip": GZIP, "deflate": ZLIB, "raw-deflate": RAW_DEFLATE}
        for coding in self.codings:
            if coding != "identity":
                body = compress(body, wbits[coding])
        headers = {
            "content-type": "application/json",
            "content-encoding": ", ".join(self.codings).replace("raw-deflate", "deflate"),
        }
        return httpx.Response(answer.status_code, headers=headers, stream=Chunks(body, self.chunk))


@pytest.mark.parametrize("coding", ["identity", "gzip", "deflate", "gzip, deflate"])
async def test_an_answer_up_to_the_limit_is_accepted_and_one_byte_more_is_not(
    coding: str,
) -> None:
    limit = 256 * KiB
    for size, accepted in ((limit - 1, True), (limit, True), (limit + 1, False)):
        province = Padded(size, coding)
        async with (
            province.app.router.lifespan_context(province.app),
            hebei(province, max_answer_bytes=limit) as adapter,
        ):
            if accepted:
                found = await adapter.find_persons([WANG])
                assert found[WANG].name == "王建国", size
            else:
                with pytest.raises(UpstreamContractError, match="max_answer_bytes"):
                    await adapter.find_persons([WANG])


@pytest.mark.parametrize("chunk", [1, 7, 64 * KiB])
@pytest.mark.parametrize("coding", ["gzip", "deflate", "raw-deflate", "deflate, gzip"])
async def test_compressed_answers_decode_whole_however_they_are_cut(
    coding: str, chunk: int
) -> None:
    """Sizes around the decoder's steps (64 KiB), the body cut anywhere."""
    for size in (64 * KiB - 1, 64 * KiB, 128 * KiB + 1):
        province = Padded(size, coding, chunk)
        async with (
            province.app.router.lifespan_context(province.app),
            hebei(province, max_answer_bytes=size) as adapter,
        ):
            found = await adapter.find_persons([WANG])
        assert found[WANG].name == "王建国", size


async def test_an_answer_that_declares_more_than_the_limit_is_refused_unread() -> None:
    sent: list[httpx.AsyncByteStream] = []
    headers = {"content-type": "application/json", "content-length": str(MiB + 1)}
    async with hebei(
        streaming(lambda r: Chunks(b" " * (MiB + 1)), headers, sent), max_answer_bytes=MiB
    ) as adapter:
        with pytest.raises(UpstreamContractError, match="max_answer_bytes"):
            await adapter.find_persons([WANG])
    assert [s.sent for s in sent if isinstance(s, Chunks)] == [0]


async def test_an_answer_read_already_by_its_transport_is_measured_too() -> None:
    def province(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=b" " * (MiB + 1))  # in memory, read at once

    async with hebei(httpx.MockTransport(province), max_answer_bytes=MiB) as adapter:
        with pytest.raises(UpstreamContractError, match="max_answer_bytes"):
            await adapter.find_persons([WANG])


@pytest.mark.parametrize(
    ("coding", "complaint"),
    [("br", "'br' was not asked for"), ("zstd", "'zstd'"), ("gzip, gzip, gzip", "3 content")],
)
async def test_only_gzip_and_deflate_are_asked_for_and_accepted(
    coding: str, complaint: str
) -> None:
    sent: list[httpx.AsyncByteStream] = []
    asked: list[httpx.Request] = []
    headers = {"content-type": "application/json", "content-encoding": coding}
    transport = streaming(lambda r: Chunks(b"\x1b{}"), headers, sent, asked)
    async with hebei(transport) as adapter:
        with pytest.raises(UpstreamContractError, match=complaint):
            await adapter.find_persons([WANG])
    assert asked[0].headers["accept-encoding"] == "gzip, deflate"


@pytest.mark.parametrize("coding", ["gzip", "deflate"])
async def test_a_body_that_does_not_decode_is_a_contract_error(coding: str) -> None:
    sent: list[httpx.AsyncByteStream] = []
    headers = {"content-type": "application/json", "content-encoding": coding}
    transport = streaming(lambda r: Chunks(b"\xff\xff not compressed at all"), headers, sent)
    async with hebei(transport) as adapter:
        with pytest.raises(UpstreamContractError, match="DecodingError"):
            await adapter.find_persons([WANG])
    assert len(sent) == 1  # not retried


async def test_a_bomb_is_the_contract_fault_of_its_province_alone(bomb: bytes) -> None:
    """Through the gateway: Hebei's bomb is Hebei's UPSTREAM_CONTRACT_ERROR, and a
    Jiangsu caller asking at the same time is answered."""
    settings = Settings(
        data_dir=None,
        provinces={"hebei": AdapterSettings(base_url="http://hb", max_answer_bytes=MiB)},
    )
    sent: list[httpx.AsyncByteStream] = []
    boxes = Sandboxes()
    async with boxes:
        await boxes.start()
        transports: dict[str, httpx.AsyncBaseTransport] = {
            **boxes.transports,
            "hebei": streaming(lambda r: Chunks(bomb), GZIPPED, sent),
        }
        async with gateway(transports, settings) as gql:
            wang, chen = await asyncio.gather(
                gql(ME, as_="hb_wang_jianguo"), gql(ME, as_="js_chen_zhiqiang")
            )
    assert [(e["extensions"]["code"], e["extensions"]["province"]) for e in wang["errors"]] == [
        ("UPSTREAM_CONTRACT_ERROR", "13")
    ]
    assert chen["data"]["me"]["name"] == person("js_chen_zhiqiang")["name"]
    assert all(isinstance(s, Chunks) and s.sent <= 2 * s.size and s.closed for s in sent)


# -- time ----------------------------------------------------------------------------


async def test_a_trickling_answer_is_cut_off_by_the_deadline() -> None:
    """A byte every 0.2 s never trips a per-read timeout; the attempt's deadline ends it,
    each retry with a deadline of its own, and each stream is closed."""
    sent: list[httpx.AsyncByteStream] = []
    plain = {"content-type": "application/json"}
    async with hebei(streaming(lambda r: Trickle(), plain, sent), deadline=0.5) as adapter:
        started = time.perf_counter()
        with pytest.raises(UpstreamTimeout) as caught:
            await adapter.find_persons([WANG])
        took = time.perf_counter() - started
    assert caught.value.province == "13"
    assert len(sent) == 3  # the first attempt and two retries (the default)
    assert all(isinstance(s, Trickle) and s.sent >= 2 and s.closed for s in sent)
    assert took >= 1.5  # three deadlines of 0.5 s each, none cut short


class Switched(httpx.AsyncBaseTransport):
    """A province's sandbox, or (``trickling``) an answer that trickles in forever."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.trickling = False
        self.streams: list[Trickle] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if not self.trickling:
            return await self.inner.handle_async_request(request)
        stream = Trickle()
        self.streams.append(stream)
        return httpx.Response(200, headers={"content-type": "application/json"}, stream=stream)


async def test_a_trickling_province_times_out_at_its_deadline_and_holds_up_no_other() -> None:
    settings = Settings(
        data_dir=None,
        provinces={"hebei": AdapterSettings(base_url="http://hb", timeout=1.0, retries=0)},
    )
    boxes = Sandboxes()
    async with boxes:
        await boxes.start()
        hebei_side = Switched(boxes.transports["hebei"])
        transports: dict[str, httpx.AsyncBaseTransport] = {**boxes.transports, "hebei": hebei_side}
        async with gateway(transports, settings) as gql:
            for key in ("hb_wang_jianguo", "js_chen_zhiqiang"):  # where they are insured
                assert "errors" not in await gql(ME, as_=key)
            hebei_side.trickling = True

            async def timed(key: str) -> tuple[dict[str, Any], float]:
                started = time.perf_counter()
                result = await gql(ME, as_=key)
                return result, time.perf_counter() - started

            hebei_asked = asyncio.ensure_future(timed("hb_wang_jianguo"))
            chen, _ = await timed("js_chen_zhiqiang")
            # Jiangsu's caller is answered while Hebei's is still waiting on the trickle
            assert not hebei_asked.done()
            wang, wang_took = await hebei_asked
    assert [(e["extensions"]["code"], e["extensions"]["province"]) for e in wang["errors"]] == [
        ("UPSTREAM_TIMEOUT", "13")
    ]
    assert wang_took >= 1.0  # cut off at the deadline, not before
    assert "errors" not in chen
    assert hebei_side.streams
    assert all(s.sent >= 4 and s.closed for s in hebei_side.streams)


# -- configuration -------------------------------------------------------------------


def test_max_answer_bytes_defaults_to_4_mib_and_is_configurable(tmp_path: Path) -> None:
    assert AdapterSettings(base_url="").max_answer_bytes == DEFAULT_LIMIT
    assert province_settings("hebei", {}).max_answer_bytes == DEFAULT_LIMIT
    config = tmp_path / "gongji.toml"
    config.write_text("[provinces.hebei]\nmax_answer_bytes = 1048576\n", encoding="utf-8")
    settings = Settings.load(config, environ={})
    assert settings.provinces["hebei"].max_answer_bytes == MiB


@pytest.mark.parametrize("bad", ["0", "-1", "1.5", '"4MiB"', "true", "[1]"])
def test_max_answer_bytes_must_be_a_positive_whole_number(tmp_path: Path, bad: str) -> None:
    config = tmp_path / "gongji.toml"
    config.write_text(f"[provinces.hebei]\nmax_answer_bytes = {bad}\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"provinces\.hebei\.max_answer_bytes"):
        Settings.load(config, environ={})

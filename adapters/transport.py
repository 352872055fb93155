"""How a province is reached: its settings, its one pooled client, and one exchange
within one deadline, its answer read as a bounded stream.

Each attempt has one deadline for the whole exchange (connect, send, receive and
decode), and each answer is read as a stream and decoded here, a piece at a
time: one that grows past ``max_answer_bytes``, as sent or as decoded, is
refused (`UpstreamContractError`) as soon as it does, so a compressed "bomb"
costs about that much memory and work, never what it would decode to.
"""

from __future__ import annotations

import asyncio
import contextvars
import datetime as dt
import zlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from adapters.faults import UpstreamContractError, UpstreamTimeout, UpstreamUnavailable
from adapters.policy import Policy

MAX_ANSWER_BYTES = 4 * 1024 * 1024  # a province's answer, by default: 4 MiB


@dataclass(frozen=True, slots=True, kw_only=True)
class AdapterSettings:
    """How to reach one province. Read once from configuration."""

    base_url: str
    connect_timeout: float = 2.0
    timeout: float = 5.0  # the whole request, and each read, write and pool wait within it
    max_connections: int = 50
    # reads only: attempts after the first, the first wait (doubling, with as much
    # jitter again) and the longest wait between attempts, in seconds
    retries: int = 2
    retry_wait: float = 0.05
    retry_wait_max: float = 1.0
    # the breaker: opens after this many failures in a row, probes after ``breaker_reset``
    breaker_threshold: int = 5
    breaker_reset: float = 30.0
    # the largest answer read, in bytes, as sent and as decoded: more is a contract error
    max_answer_bytes: int = MAX_ANSWER_BYTES
    # what the province can take (adapters.shaping): requests at once and a second (0:
    # no limit), and how long one waits for a place before it is shed
    max_concurrent: int = 0
    max_per_second: float = 0.0
    queue_seconds: float = 0.5
    policy_overrides: Mapping[str, Any] = field(default_factory=dict)
    extra_policies: Sequence[Policy] = ()
    # the date whose rules are in force (a sandbox demonstrating another era); None:
    # today in Beijing, always so in production
    policy_date: dt.date | None = None

    def network(self) -> httpx.AsyncBaseTransport:
        """The pooled connections to the province's base URL."""
        return httpx.AsyncHTTPTransport(
            limits=httpx.Limits(
                max_connections=self.max_connections,
                max_keepalive_connections=self.max_connections,
            )
        )

    def make_client(self, transport: httpx.AsyncBaseTransport | None = None) -> httpx.AsyncClient:
        """The province's one pooled client, with explicit timeouts."""
        return httpx.AsyncClient(
            base_url=self.base_url,
            transport=transport or self.network(),
            timeout=httpx.Timeout(self.timeout, connect=self.connect_timeout),
        )


async def exchange(
    client: httpx.AsyncClient,
    what: str,
    method: str,
    url: str,
    kwargs: dict[str, Any],
    *,
    province: str,
    deadline: float,
    max_answer_bytes: int,
) -> httpx.Response:
    """One attempt, its whole exchange within ``deadline`` seconds: the answer, read (a
    5xx's body is not), or the `UpstreamError` it amounts to."""
    headers = httpx.Headers(kwargs.get("headers"))
    headers["Accept-Encoding"] = _CODINGS  # what `_Decoder` decodes
    try:
        async with asyncio.timeout(deadline) as cut_off:
            token = _DEADLINE.set(cut_off)
            try:
                async with client.stream(method, url, **{**kwargs, "headers": headers}) as streamed:
                    response = streamed
                    if streamed.status_code < 500:
                        response = await _read(what, streamed, province, max_answer_bytes)
            finally:
                _DEADLINE.reset(token)
    except TimeoutError as exc:
        raise UpstreamTimeout(f"{what}: deadline passed", province=province) from exc
    except (httpx.ConnectTimeout, httpx.PoolTimeout) as exc:  # nothing was sent
        raise UpstreamTimeout(f"{what}: {exc!r}", province=province, reached=False) from exc
    except httpx.TimeoutException as exc:
        raise UpstreamTimeout(f"{what}: {exc!r}", province=province) from exc
    except httpx.DecodingError as exc:  # a body we cannot even decompress or decode
        raise UpstreamContractError(f"{what}: {exc!r}", province=province) from exc
    except httpx.ConnectError as exc:  # refused: nothing was sent
        raise UpstreamUnavailable(f"{what}: {exc!r}", province=province, reached=False) from exc
    except httpx.HTTPError as exc:  # dropped connections, protocol errors, loops
        raise UpstreamUnavailable(f"{what}: {exc!r}", province=province) from exc
    if response.status_code >= 500:
        raise UpstreamUnavailable(f"{what}: HTTP {response.status_code}", province=province)
    return response


async def _read(what: str, response: httpx.Response, province: str, limit: int) -> httpx.Response:
    """``response`` read and decoded, chunk by chunk, refused once it is larger than
    ``limit`` bytes as sent or as decoded: the answer as one with its decoded body (no
    ``Content-Encoding`` left to undo).

    httpx's own decoding turns each chunk received into all it decodes to at once
    (64 KiB of gzip can hold 64 MiB); `_Decoder` makes at most `_PIECE` bytes a step.
    Undecodable bytes raise `httpx.DecodingError`, as httpx would.
    """

    def too_large(size: str) -> UpstreamContractError:
        return UpstreamContractError(
            f"{what}: answer over max_answer_bytes ({limit}): {size}", province=province
        )

    if response.is_stream_consumed:  # read already by its transport (in-process ones)
        if len(response.content) > limit:
            raise too_large(f"{len(response.content)} bytes")
        return response
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_large(f"{declared} bytes declared")
    decoder = _Decoder(response.headers.get_list("content-encoding", split_commas=True))
    received = decoded = 0
    parts: list[bytes] = []
    async for chunk in response.aiter_raw():
        received += len(chunk)
        if received > limit:
            raise too_large(f"{received} bytes received")
        for piece in decoder.decode(chunk):
            decoded += len(piece)
            if decoded > limit:
                raise too_large(f"{decoded} bytes decoded")
            parts.append(piece)
    kept = [
        (name, value)
        for name, value in response.headers.multi_items()
        if name not in ("content-encoding", "content-length", "transfer-encoding")
    ]
    return httpx.Response(
        response.status_code,
        headers=kept,
        content=b"".join(parts),
        request=response.request,
        extensions=response.extensions,
    )


# The content codings asked for and decoded: those zlib decodes a bounded piece at a time.
_CODINGS = "gzip, deflate"
_PIECE = 64 * 1024  # the most a coding decodes in one step, in bytes
_MAX_CODINGS = 2  # codings applied one after another ("gzip, gzip"): more is no answer


class _Inflater:
    """One gzip or deflate coding, decoded `_PIECE` bytes at most per step. "deflate"
    is a zlib stream or (as some servers send it, and httpx accepts) raw deflate: its
    first two bytes tell which."""

    def __init__(self, coding: str) -> None:
        gzip = coding == "gzip"
        self._zlib = zlib.decompressobj(zlib.MAX_WBITS | 16 if gzip else zlib.MAX_WBITS)
        self._head: bytes | None = None if gzip else b""  # deflate's first bytes, until told

    def decode(self, data: bytes) -> Iterator[bytes]:
        if self._head is not None:
            data = self._head + data
            if len(data) < 2:
                self._head = data
                return
            self._head = None
            try:
                zlib.decompressobj().decompress(data[:2])  # a zlib header?
            except zlib.error:
                self._zlib = zlib.decompressobj(-zlib.MAX_WBITS)
        while not self._zlib.eof:  # what follows the end is ignored, as httpx does
            try:
                piece = self._zlib.decompress(data, _PIECE)
            except zlib.error as exc:
                raise httpx.DecodingError(str(exc)) from exc
            data = self._zlib.unconsumed_tail
            if piece:
                yield piece
            if not data and len(piece) < _PIECE:  # a full piece may have more behind it
                return


class _Decoder:
    """An answer's ``Content-Encoding`` codings undone, the last applied first, each a
    bounded piece at a time (so a chain of them holds a few pieces at most). A coding
    other than those asked for (`_CODINGS`) or ``identity``, or more than
    `_MAX_CODINGS` of them, raises `httpx.DecodingError`."""

    def __init__(self, codings: Iterable[str]) -> None:
        stages = []
        for coding in (c.strip().lower() for c in codings):
            if coding in ("gzip", "deflate"):
                stages.append(_Inflater(coding))
            elif coding not in ("identity", ""):
                raise httpx.DecodingError(f"content coding {coding!r} was not asked for")
        if len(stages) > _MAX_CODINGS:
            raise httpx.DecodingError(f"{len(stages)} content codings, one after another")
        self._stages = stages[::-1]  # the last applied is undone first

    def decode(self, data: bytes) -> Iterator[bytes]:
        return self._through(self._stages, data)

    def _through(self, stages: Sequence[_Inflater], data: bytes) -> Iterator[bytes]:
        if not stages:
            yield data
            return
        for piece in stages[0].decode(data):
            yield from self._through(stages[1:], piece)


# The deadline of the request being sent (for transports that count outcomes).
_DEADLINE: contextvars.ContextVar[asyncio.Timeout | None] = contextvars.ContextVar(
    "deadline", default=None
)


def deadline_passed() -> bool:
    """Whether the request being sent was cut off by its adapter's deadline (a transport
    sees that as a cancellation; it is a timeout)."""
    deadline = _DEADLINE.get()
    return deadline is not None and deadline.expired()

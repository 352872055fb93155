"""Fault mode: a sandbox province that is slow, fails, drops answers, garbles them or hangs.

For resilience tests, soak runs and benchmarks. Every sandbox app (built by
`sandbox.app.sandbox_app`) carries a `FaultMiddleware`; its settings are a `Faults`
value in ``app.state.faults``, read at every request. The default, ``Faults()``, is
off, and costs one attribute read and one comparison per request.

Per request, in this order (only for requests whose path starts with one of
``paths``, or every request when ``paths`` is empty):

1. ``hang``: the request is held, unanswered and unseen by the app, until ``hang``
   is switched off (then it goes on as below) or the client goes away (then the app
   never sees it). Other requests and the admin route are not held up.
2. ``latency_ms`` plus a uniform ``0..jitter_ms`` is waited before the app sees it.
3. One draw ``u`` from the generator decides the outcome; the three rates are
   exclusive and add up to at most 1:

   - ``u < error_rate``: HTTP 503 with a short text body; the app never sees it;
   - then ``drop_rate``: the app handles the request (a write takes effect), but the
     answer is lost: the status line and headers go out, then the connection is
     closed before the body. An HTTP client sees a transport error (httpx:
     `httpx.RemoteProtocolError`). In-process over `httpx.ASGITransport` the app
     raises `DroppedConnection`, itself an ``httpx.RemoteProtocolError``, which the
     client sees as such with ``raise_app_exceptions=True`` (httpx's default);
   - then ``malformed_rate``: the app handles the request, and its answer's body is
     replaced by bytes that are neither JSON nor XML (status 200, the app's
     content type);
   - otherwise the app answers normally.

The generator is seeded with ``seed`` (or from the OS when it is ``None``) and
restarts whenever the settings are replaced.

``GET /_faults`` answers the settings as JSON, ``PUT /_faults`` with a JSON object
updates some of them (422 when the result is invalid), ``DELETE /_faults`` switches
everything off. The admin route is never subject to faults. It exists in the sandbox
only.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import random
from collections.abc import Mapping
from typing import Any, ClassVar

import anyio
import httpx
from starlette.datastructures import State
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

ADMIN_PATH = "/_faults"
RATES = ("error_rate", "drop_rate", "malformed_rate")
# follows the first half of the real answer: bytes no JSON or XML parser accepts
GARBAGE = b"\x00\xff\xfe<<garbled sandbox answer>> {]\x00"
# how often a held request looks whether hang is still on
HOLD_POLL_SECONDS = 0.05


@dataclasses.dataclass(frozen=True, slots=True)
class Faults:
    """The fault settings of one sandbox app (all off by default)."""

    latency_ms: float = 0.0
    jitter_ms: float = 0.0
    error_rate: float = 0.0
    drop_rate: float = 0.0
    malformed_rate: float = 0.0
    hang: bool = False
    # path prefixes the faults apply to; empty: every path
    paths: tuple[str, ...] = ()
    # seeds the generator behind the rates and the jitter; None: from the OS
    seed: int | None = None

    FIELDS: ClassVar[tuple[str, ...]] = (
        "latency_ms",
        "jitter_ms",
        "error_rate",
        "drop_rate",
        "malformed_rate",
        "hang",
        "paths",
        "seed",
    )

    def __post_init__(self) -> None:
        for name in ("latency_ms", "jitter_ms"):
            value = getattr(self, name)
            if not _is_number(value) or value < 0:
                raise ValueError(f"{name} must be a number of milliseconds >= 0, not {value!r}")
            object.__setattr__(self, name, float(value))
        for name in RATES:
            value = getattr(self, name)
            if not _is_number(value) or not 0 <= value <= 1:
                raise ValueError(f"{name} must be a number from 0 to 1, not {value!r}")
            object.__setattr__(self, name, float(value))
        if sum(getattr(self, name) for name in RATES) > 1 + 1e-9:
            raise ValueError("error_rate + drop_rate + malformed_rate must be at most 1")
        if not isinstance(self.hang, bool):
            raise ValueError(f"hang must be true or false, not {self.hang!r}")
        paths = self.paths
        if isinstance(paths, str) or not isinstance(paths, tuple | list):
            raise ValueError(f"paths must be a list of path prefixes, not {paths!r}")
        if not all(isinstance(p, str) and p.startswith("/") for p in paths):
            raise ValueError(f"paths must be path prefixes starting with '/', not {paths!r}")
        object.__setattr__(self, "paths", tuple(paths))
        if self.seed is not None and (
            isinstance(self.seed, bool) or not isinstance(self.seed, int)
        ):
            raise ValueError(f"seed must be an integer or null, not {self.seed!r}")

    @property
    def active(self) -> bool:
        """Whether any fault is on (``paths`` and ``seed`` alone do nothing)."""
        return bool(
            self.latency_ms
            or self.jitter_ms
            or self.error_rate
            or self.drop_rate
            or self.malformed_rate
            or self.hang
        )

    def to_json(self) -> dict[str, Any]:
        return {
            name: list(self.paths) if name == "paths" else getattr(self, name)
            for name in self.FIELDS
        }

    @classmethod
    def from_json(cls, data: Any) -> Faults:
        """Settings from a JSON object (missing fields: off); `ValueError` when invalid."""
        return cls().updated(data)

    def updated(self, changes: Any) -> Faults:
        """These settings with some fields changed (a JSON object); `ValueError` when invalid."""
        if not isinstance(changes, Mapping):
            raise ValueError("fault settings must be a JSON object")
        unknown = sorted(set(changes) - set(self.FIELDS))
        if unknown:
            raise ValueError(f"unknown fault settings {unknown}; known: {list(self.FIELDS)}")
        fields = dict(changes)
        if isinstance(fields.get("paths"), list):
            fields["paths"] = tuple(fields["paths"])
        return dataclasses.replace(self, **fields)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


OFF = Faults()


class DroppedConnection(httpx.RemoteProtocolError):
    """Raised by the middleware to have the server close the connection mid-answer."""

    def __init__(self) -> None:
        super().__init__("sandbox fault mode: the answer was dropped")


class _QuietDrops(logging.Filter):
    """uvicorn logs an app's exception with its traceback: a planned drop gets one line."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], DroppedConnection):
            record.msg, record.args = "sandbox fault mode: dropped an answer", ()
            record.exc_info, record.exc_text = None, None
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


_QUIET_DROPS = _QuietDrops()


class FaultMiddleware:
    """Pure ASGI middleware applying ``state.faults`` (a `Faults`) to HTTP requests."""

    def __init__(self, app: ASGIApp, state: State) -> None:
        self.app = app
        self.state = state
        if not hasattr(state, "faults"):
            state.faults = OFF
        self._seen: Faults | None = None
        self._rng = random.Random()  # noqa: S311 (faults, not secrets)
        logging.getLogger("uvicorn.error").addFilter(_QUIET_DROPS)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["path"] == ADMIN_PATH:
            await self._admin(scope, receive, send)
            return
        faults: Faults = self.state.faults
        if not faults.active or (faults.paths and not scope["path"].startswith(faults.paths)):
            await self.app(scope, receive, send)
            return
        await self._faulty(faults, scope, receive, send)

    def _generator(self, faults: Faults) -> random.Random:
        if faults is not self._seen:
            self._seen = faults
            self._rng = random.Random(faults.seed)  # noqa: S311 (faults, not secrets)
        return self._rng

    async def _faulty(self, faults: Faults, scope: Scope, receive: Receive, send: Send) -> None:
        if faults.hang:
            replay = await self._hold(receive)
            if replay is None:
                return  # the client went away while held: the app never sees it
            receive = replay
            faults = self.state.faults  # they changed, to let the request go
        rng = self._generator(faults)
        delay = faults.latency_ms + (rng.uniform(0, faults.jitter_ms) if faults.jitter_ms else 0)
        if delay:
            # the province has the whole request before it takes its time: a client that
            # goes away meanwhile does not undo it (as with a real system's slow write)
            receive = await _buffered(receive)
            await anyio.sleep(delay / 1000)
        draw = rng.random()
        if draw < faults.error_rate:
            response = PlainTextResponse(
                "503 Service Unavailable (sandbox fault mode)\n", status_code=503
            )
            await response(scope, receive, send)
        elif draw < faults.error_rate + faults.drop_rate:
            start, _ = await _answer_of(self.app, scope, receive)
            await send(start)
            raise DroppedConnection
        elif draw < faults.error_rate + faults.drop_rate + faults.malformed_rate:
            start, body = await _answer_of(self.app, scope, receive)
            garbled = body[: len(body) // 2] + GARBAGE
            headers = [
                (k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"
            ]
            headers.append((b"content-length", str(len(garbled)).encode()))
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": garbled, "more_body": False})
        else:
            await self.app(scope, receive, send)

    async def _hold(self, receive: Receive) -> Receive | None:
        """Wait while ``hang`` is on; the request's own messages are kept for the app.

        Returns a ``receive`` replaying them, or None when the client disconnected.
        """
        kept: list[Message] = []
        gone = False

        async def watch() -> None:
            nonlocal gone
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    gone = True
                    return
                kept.append(message)

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(watch)
            # polled: the settings are a plain attribute that anyone may replace
            while not gone and self.state.faults.hang:  # noqa: ASYNC110
                await anyio.sleep(HOLD_POLL_SECONDS)
            tasks.cancel_scope.cancel()
        if gone:
            return None

        async def replay() -> Message:
            return kept.pop(0) if kept else await receive()

        return replay

    async def _admin(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        response: Response
        if request.method == "GET":
            response = JSONResponse(self.state.faults.to_json())
        elif request.method == "DELETE":
            self.state.faults = OFF
            response = JSONResponse(OFF.to_json())
        elif request.method == "PUT":
            try:
                changes = json.loads(await request.body())
            except ValueError:
                response = JSONResponse({"error": "the body is not JSON"}, status_code=400)
            else:
                try:
                    faults = self.state.faults.updated(changes)
                except (ValueError, TypeError) as exc:
                    response = JSONResponse({"error": str(exc)}, status_code=422)
                else:
                    self.state.faults = faults
                    response = JSONResponse(faults.to_json())
        else:
            response = JSONResponse(
                {"error": "method not allowed"},
                status_code=405,
                headers={"Allow": "GET, PUT, DELETE"},
            )
        await response(scope, receive, send)


async def _answer_of(app: ASGIApp, scope: Scope, receive: Receive) -> tuple[Message, bytes]:
    """Run the app to the end, keeping its answer from the client: (start message, body)."""
    start: Message = {"type": "http.response.start", "status": 200, "headers": []}
    body = bytearray()

    async def keep(message: Message) -> None:
        nonlocal start
        if message["type"] == "http.response.start":
            start = message
        elif message["type"] == "http.response.body":
            body.extend(message.get("body", b""))

    await app(scope, receive, keep)
    return start, bytes(body)


def faults_of(app: Any) -> Faults:
    """The fault settings of a sandbox app."""
    faults: Faults = app.state.faults
    return faults


def set_faults(app: Any, faults: Faults | None) -> None:
    """Replace a sandbox app's fault settings (None: off), before or while it serves."""
    if not any(m.cls is FaultMiddleware for m in getattr(app, "user_middleware", ())):
        raise ValueError("this app has no FaultMiddleware (build it with sandbox_app)")
    app.state.faults = faults or OFF


async def _buffered(receive: Receive) -> Receive:
    """Read the request's body now; the app then gets it from memory."""
    kept: list[Message] = []
    while True:
        message = await receive()
        kept.append(message)
        if message["type"] != "http.request" or not message.get("more_body", False):
            break

    async def replay() -> Message:
        if kept:
            return kept.pop(0)
        return await receive()

    return replay

"""Subscriptions over WebSocket (``graphql-transport-ws``) and Server-Sent Events
(``graphql-sse``): who may connect, how many at once, and for how long.

Strawberry speaks both protocols; the gateway decides who is let in. A WebSocket
client sends its token in ``connection_init``'s payload (``{"authorization":
"Bearer …"}``); without a valid one the connection is closed ``4403 Forbidden``, as
the protocol's servers do when a connection is refused. A connection is closed
``4401 Unauthorized`` when its token runs out, and ``4429`` when the caller or the
client's address already has as many connections as ``[subscriptions]`` allows. A
connection that runs no subscription for ``idle_seconds`` is closed ``1000``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import Counter
from typing import Any

from starlette.websockets import WebSocket, WebSocketState

from gateway.common.messages import Language, fault_message
from gateway.edge.documents import DocumentRefused, Manifest, trusted
from gateway.ops.config import Subscriptions

FORBIDDEN = 4403  # no valid token at connection
UNAUTHORIZED = 4401  # the token ran out while connected
TOO_MANY = 4429  # too many connections for this caller or address


class Socket(WebSocket):
    """A WebSocket whose refusal can be given its own code (`refuse`), and that is
    closed once whoever closes it (the protocol handler, a token running out)."""

    refusal: tuple[int, str] | None = None
    subject: str | None = None  # once admitted
    expiry: asyncio.TimerHandle | None = None
    # the registered documents, as for HTTP (`gateway.edge.documents.trusted`)
    documents: Manifest | None = None
    free_documents: bool = True
    lang: Language = "zh"
    # closed this long after its last subscription ended (or it opened without one)
    idle_seconds: float = 300.0
    _idle: asyncio.TimerHandle | None = None
    _closing: asyncio.Task[None] | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._active: set[object] = set()  # the ids of the subscriptions running

    def idle_clock(self) -> None:
        """(Re)start the idle clock if nothing runs; stop it if something does."""
        if self._idle is not None:
            self._idle.cancel()
            self._idle = None
        if not self._active:
            self._idle = asyncio.get_running_loop().call_later(self.idle_seconds, self._idled)

    def _idled(self) -> None:
        self._closing = asyncio.ensure_future(self.close(1000, "Idle: no subscription"))

    def stop_clocks(self) -> None:
        for clock in (self._idle, self.expiry):
            if clock is not None:
                clock.cancel()

    async def send_text(self, data: str) -> None:
        """Notes the subscriptions that end (``complete`` or ``error`` for an id)."""
        if '"complete"' in data or '"error"' in data:
            with contextlib.suppress(ValueError):
                message = json.loads(data)
                if isinstance(message, dict) and message.get("type") in ("complete", "error"):
                    self._active.discard(message.get("id"))
                    self.idle_clock()
        await super().send_text(data)

    async def receive_text(self) -> str:
        """Each ``subscribe`` message runs a registered document, as a request over
        HTTP does: its ``documentId`` (or persisted-query hash) becomes the text, and a
        document that may not run is answered with an ``error`` message, unparsed."""
        while True:
            text = await super().receive_text()
            try:
                message = json.loads(text)
            except ValueError:
                return text  # the protocol handler closes 4400
            if isinstance(message, dict) and message.get("type") == "complete":
                self._active.discard(message.get("id"))  # the client stops one
                self.idle_clock()
            if not isinstance(message, dict) or message.get("type") != "subscribe":
                return text
            payload = message.get("payload")
            if not isinstance(payload, dict):
                return text
            try:
                payload = dict(trusted(payload, self.documents, free=self.free_documents))
            except DocumentRefused as refused:
                error = {
                    "message": fault_message(refused.code, self.lang),
                    "extensions": {"code": refused.code},
                }
                answer = {"id": message.get("id"), "type": "error", "payload": [error]}
                await self.send_text(json.dumps(answer, ensure_ascii=False))
                continue
            self._active.add(message.get("id"))
            self.idle_clock()
            return json.dumps({**message, "payload": payload}, ensure_ascii=False)

    def refuse(self, code: int, reason: str) -> None:
        """Close with ``code`` when the handler refuses the connection (it would say
        4403 for every refusal)."""
        self.refusal = (code, reason)

    async def send_bytes(self, data: bytes) -> None:
        """The protocol speaks in text frames; the view encodes JSON as UTF-8 bytes."""
        await self.send_text(data.decode("utf-8"))

    async def close(self, code: int = 1000, reason: str | None = None) -> None:
        if self.refusal is not None and code == FORBIDDEN:
            code, reason = self.refusal
        if self.application_state is WebSocketState.DISCONNECTED:
            return
        if self.client_state is WebSocketState.DISCONNECTED:
            return
        with contextlib.suppress(RuntimeError):  # closed meanwhile
            await super().close(code, reason)


class Connections:
    """The connections open in this process, by caller and by address."""

    def __init__(self, limits: Subscriptions) -> None:
        self._limits = limits
        self._subjects: Counter[str] = Counter()
        self._addresses: Counter[str] = Counter()
        self._tasks: set[asyncio.Task[Any]] = set()

    def open_address(self, address: str | None) -> bool:
        if address is None:
            return True
        if self._addresses[address] >= self._limits.per_address:
            return False
        self._addresses[address] += 1
        return True

    def admit(self, socket: Socket, subject: str) -> bool:
        if self._subjects[subject] >= self._limits.per_subject:
            return False
        self._subjects[subject] += 1
        socket.subject = subject
        return True

    def expire(self, socket: Socket, seconds: float) -> None:
        """Close ``socket`` ``4401`` in ``seconds`` (its token runs out then)."""

        def ran_out() -> None:
            task = asyncio.ensure_future(socket.close(UNAUTHORIZED, "Unauthorized: token expired"))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

        socket.expiry = asyncio.get_running_loop().call_later(max(seconds, 0.0), ran_out)

    def closed(self, socket: Socket, address: str | None) -> None:
        socket.stop_clocks()
        if socket.subject is not None:
            self._subjects[socket.subject] -= 1
            if self._subjects[socket.subject] <= 0:
                del self._subjects[socket.subject]
        if address is not None and address in self._addresses:
            self._addresses[address] -= 1
            if self._addresses[address] <= 0:
                del self._addresses[address]

    @property
    def idle_seconds(self) -> float:
        return self._limits.idle_seconds

    @property
    def open(self) -> int:
        return sum(self._addresses.values())

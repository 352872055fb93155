"""Subscriptions over WebSocket (``graphql-transport-ws``) and Server-Sent Events
(``graphql-sse``): who may connect, how many at once, and for how long.

Strawberry speaks both protocols; the gateway decides who is let in. A WebSocket
client sends its token in ``connection_init``'s payload (``{"authorization":
"Bearer …"}``); without a valid one the connection is closed ``4403 Forbidden``, as
the protocol's servers do when a connection is refused. A connection is closed
``4401 Unauthorized`` when its token runs out, and ``4429`` when the caller or the
client's address already has as many connections as ``[subscriptions]`` allows.
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
        if socket.expiry is not None:
            socket.expiry.cancel()
        if socket.subject is not None:
            self._subjects[socket.subject] -= 1
            if self._subjects[socket.subject] <= 0:
                del self._subjects[socket.subject]
        if address is not None and address in self._addresses:
            self._addresses[address] -= 1
            if self._addresses[address] <= 0:
                del self._addresses[address]

    @property
    def open(self) -> int:
        return sum(self._addresses.values())

"""The faults an adapter raises: one tree, each with the ``extensions.code`` the gateway
shows and whether the request may have reached the province.

    UpstreamError                 (abstract: something went wrong talking to a province)
    ├── UpstreamUnavailable       UPSTREAM_UNAVAILABLE  connection refused/reset, HTTP 5xx
    ├── UpstreamTimeout           UPSTREAM_TIMEOUT      connect, read, write or pool timeout
    ├── UpstreamContractError     UPSTREAM_CONTRACT_ERROR  an answer we cannot understand
    │                                                       (or larger than max_answer_bytes)
    ├── CircuitOpen               CIRCUIT_OPEN          not sent: the province failed repeatedly
    └── UpstreamOverloaded        UPSTREAM_OVERLOADED   not sent: the province already has
                                                        all it declared it can take
"""

from __future__ import annotations

from typing import ClassVar


class UpstreamError(Exception):
    """A fault talking to a province. ``str()`` is for logs, never for clients.

    ``reached``: the request may have reached the province (False only when it
    certainly did not: no connection was made, or the breaker held it back), or may
    have been carried out there. So it is False too for the province's answer that it
    could not read the request (an `UpstreamContractError`): HTTP 400 or 413, or the
    dialect's own "malformed request" code, which each adapter lists. Such a request
    was read by nobody and done by nobody, and the same request sent again is refused
    again (the gateway ends that write FAILED instead of sending it for ever).
    """

    code: ClassVar[str] = "UPSTREAM_ERROR"

    def __init__(self, message: str, *, province: str, reached: bool = True) -> None:
        super().__init__(message)
        self.province = province
        self.reached = reached


class UpstreamUnavailable(UpstreamError):
    code = "UPSTREAM_UNAVAILABLE"


class UpstreamTimeout(UpstreamError):
    code = "UPSTREAM_TIMEOUT"


class UpstreamContractError(UpstreamError):
    code = "UPSTREAM_CONTRACT_ERROR"


class CircuitOpen(UpstreamError):
    """Not sent: the province's breaker is open after repeated failures."""

    code = "CIRCUIT_OPEN"


class UpstreamOverloaded(UpstreamError):
    """Not sent: the province already had all the requests it can take (its declared
    concurrency or rate), and no place came free in time (`adapters.shaping`). Nothing
    failed: the same request may be sent again shortly (``retry_after``, seconds)."""

    code = "UPSTREAM_OVERLOADED"
    retry_after = 1

"""A province's circuit breaker: stop asking a province that keeps failing.

    CLOSED ──(threshold failures in a row)──▶ OPEN ──(reset seconds)──▶ HALF_OPEN
       ▲                                       ▲                           │
       └──────────(the probe succeeds)─────────┼───(the probe fails)───────┘

While open, requests are refused without being sent. Once ``reset`` seconds have
passed, one request at a time (the probe) goes through; the others are refused
until it ends. A success closes the breaker, a failure opens it again. What is
neither (a cancelled request, an answer that could not be read) leaves the count
as it was and frees the probe.

Small enough to own outright: the adapter decides what counts as a failure, and
the states are an enum, not strings.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable


class BreakerState(enum.Enum):
    CLOSED = "CLOSED"  # requests go through
    OPEN = "OPEN"  # requests are refused without being sent
    HALF_OPEN = "HALF_OPEN"  # the next request probes whether the province is back


class Refused(Exception):
    """The breaker is open, or its one probe is taken: the request is not sent."""


class Breaker:
    def __init__(
        self, threshold: int, reset: float, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._threshold = threshold
        self._reset = reset
        self._clock = clock
        self._failures = 0  # in a row, while closed
        self._opened_at: float | None = None
        self._probing = False

    @property
    def state(self) -> BreakerState:
        if self._opened_at is None:
            return BreakerState.CLOSED
        if self._probing or self._clock() >= self._opened_at + self._reset:
            return BreakerState.HALF_OPEN
        return BreakerState.OPEN

    def admit(self) -> bool:
        """Let a request through: True when it is the probe of a half-open breaker.
        Raises `Refused` while open, or while another request probes."""
        state = self.state
        if state is BreakerState.CLOSED:
            return False
        if state is BreakerState.OPEN or self._probing:
            raise Refused
        self._probing = True
        return True

    def succeeded(self, probe: bool) -> None:
        """The province answered: the count starts again, and a probe closes the breaker."""
        if probe or self._opened_at is None:
            self._failures = 0
            self._opened_at = None
        if probe:
            self._probing = False

    def failed(self, probe: bool) -> None:
        """The province was unavailable or too slow: a probe opens the breaker again;
        enough failures in a row open a closed one."""
        if probe:
            self._probing = False
            self._opened_at = self._clock()
        elif self._opened_at is None:
            self._failures += 1
            if self._failures >= self._threshold:
                self._opened_at = self._clock()

    def released(self, probe: bool) -> None:
        """Neither success nor failure: only the probe is freed."""
        if probe:
            self._probing = False

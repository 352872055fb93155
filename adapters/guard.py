"""What protects a province and its callers: the breaker, the retry rule for reads, and
the places it can take (`adapters.shaping`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tenacity import (
    AsyncRetrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential_jitter,
)

from adapters.breaker import Breaker, BreakerState
from adapters.faults import UpstreamTimeout, UpstreamUnavailable
from adapters.shaping import Shaper

if TYPE_CHECKING:
    from adapters.transport import AdapterSettings


class Guard:
    """A province's breaker and its retry rule for reads (see `AdapterSettings`).

    The breaker counts unavailable and timed-out requests as failures and answers
    as successes; an unreadable answer and a cancelled request (a caller that
    stopped waiting) are neither (`ProvinceAdapter._attempt`).
    """

    def __init__(
        self,
        *,
        retries: int = 2,
        retry_wait: float = 0.05,
        retry_wait_max: float = 1.0,
        breaker_threshold: int = 5,
        breaker_reset: float = 30.0,
        shaper: Shaper | None = None,
    ) -> None:
        self._retries = retries
        self._wait = wait_exponential_jitter(
            multiplier=retry_wait, max=retry_wait_max, jitter=retry_wait
        )
        self.breaker = Breaker(breaker_threshold, breaker_reset)
        self.shaper = shaper or Shaper()

    @classmethod
    def of(cls, settings: AdapterSettings) -> Guard:
        return cls(
            retries=settings.retries,
            retry_wait=settings.retry_wait,
            retry_wait_max=settings.retry_wait_max,
            breaker_threshold=settings.breaker_threshold,
            breaker_reset=settings.breaker_reset,
            shaper=Shaper(
                max_concurrent=settings.max_concurrent,
                max_per_second=settings.max_per_second,
                queue_seconds=settings.queue_seconds,
            ),
        )

    def retrying(self) -> AsyncRetrying:
        return AsyncRetrying(
            stop=stop_after_attempt(1 + self._retries),
            wait=self._wait,
            retry=retry_if_exception_type((UpstreamUnavailable, UpstreamTimeout)),
            reraise=True,
        )

    @property
    def state(self) -> BreakerState:
        return self.breaker.state

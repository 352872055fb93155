"""What a write came to, whatever it wrote: one outcome type for every write."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from adapters.base import BindingStatus, ProvinceAdapter
from gateway.common.refusals import Code, Refused

T = TypeVar("T")
KEY_FIELD = "idempotencyKey"  # where a refusal of the key points

# Where a refusal points: the input field each code concerns (None: none of them).
Fields = Callable[[Code], str | None]


# Not slotted: a slotted frozen generic cannot be made through its alias
# (``Outcome[Voucher](...)`` fails in Python 3.11's typing).
@dataclass(frozen=True)
class Outcome(Generic[T]):
    """What a write came to: its ``value`` (a binding, a settlement, a kinship link...)
    or the refusals, each pointing at the input it concerns (``errors``).

    ``adapter``: the province that holds the value, or that refused (None: the
    gateway's own checks refused); ``submitted``: sent, the
    province's answer not known yet (the outbox will learn it); ``key``: the
    idempotency key it went under. A dry run (``dry_run``) did nothing and says what
    would have been made (``expected``).
    """

    value: T | None = None
    errors: Sequence[Refused] = ()
    adapter: ProvinceAdapter | None = None
    submitted: bool = False
    key: str | None = None
    dry_run: bool = False
    expected: BindingStatus | None = None

    @classmethod
    def refused(cls, code: Code, field: str | None = None) -> Outcome[T]:
        return cls(errors=(Refused(code, field),))

    def under(self, key: str) -> Outcome[T]:
        """The same outcome, as the answer to the request under ``key``."""
        return dataclasses.replace(self, key=key)

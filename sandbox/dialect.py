"""How a sandbox province's requests read to whoever watches them: which ask for a
write, and which request id each carries.

The conformance suite and the fault injectors sit between an adapter and its sandbox
and must tell writes from reads in the province's own dialect: a write is sent again
under the same request id, a read is simply retried. Each sandbox module declares its
`DIALECT` beside the dialect it models; `dialect_of` finds it, and a sandbox that
declares none is an error, never taken to be "every POST is a write". A request the
dialect cannot place (an unknown call) raises `UnknownCall`.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx


class UnknownCall(ValueError):
    """A request the dialect cannot tell to be a read or a write."""


@dataclass(frozen=True, slots=True)
class Dialect:
    is_write: Callable[[httpx.Request], bool]
    request_id: Callable[[httpx.Request], str | None]


def dialect_of(factory: Callable[..., Any]) -> Dialect:
    """The `Dialect` the module of a sandbox's app factory declares (``DIALECT``)."""
    module = sys.modules[factory.__module__]
    dialect = getattr(module, "DIALECT", None)
    if not isinstance(dialect, Dialect):
        raise LookupError(
            f"sandbox {module.__name__} declares no DIALECT (sandbox.dialect.Dialect):"
            " which of its requests are writes, and the request id each carries, is its"
            " own to say"
        )
    return dialect


def classified(name: str, reads: frozenset[str], writes: frozenset[str], province: str) -> bool:
    """Whether the call ``name`` is a write; `UnknownCall` if it is neither listed."""
    if name in writes:
        return True
    if name in reads:
        return False
    raise UnknownCall(f"{province}: call {name!r} is neither a known read nor a known write")

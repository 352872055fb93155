"""Test doubles shared by the rule tests: a network that must not be used, and a
province held in memory that records the reads asked of it."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from decimal import Decimal
from typing import Any, ClassVar

import httpx

from adapters.base import (
    Area,
    Binding,
    InsuranceStatus,
    InsuranceType,
    Person,
    Policy,
    ProvinceAdapter,
)


class Nowhere(httpx.AsyncBaseTransport):
    """A transport that fails the test if anything is sent through it."""

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        raise AssertionError(f"a request was sent: {request.method} {request.url}")


class Ledger(ProvinceAdapter):
    """A province held in memory: its bindings and balances (None: no personal
    account, as resident insurance), and the reads asked of it. Anything but reading
    people and bindings fails the test."""

    code: ClassVar[str] = "13"
    name: ClassVar[str] = "甲省"
    policies: ClassVar[tuple[Policy, ...]] = (Policy(effective_from=dt.date(2020, 1, 1)),)

    def __init__(self, balances: dict[str, Decimal | None], bindings: Sequence[Binding]) -> None:
        super().__init__(httpx.AsyncClient(transport=Nowhere()))
        self.balances = balances
        self.bindings = list(bindings)
        self.reads: list[tuple[str, list[str]]] = []

    async def find_persons(self, cert_nos: Sequence[str]) -> dict[str, Person]:
        self.reads.append(("find_persons", list(cert_nos)))
        kind = {True: InsuranceType.RESIDENT, False: InsuranceType.EMPLOYEE}
        return {
            c: Person(
                c,
                c,
                Area("130100", "某市"),
                kind[self.balances[c] is None],
                InsuranceStatus.ACTIVE,
                self.balances[c],
            )
            for c in cert_nos
            if c in self.balances
        }

    async def relatives(self, cert_no: str) -> list[Any]:
        raise AssertionError("the payer rule asked for relatives")

    async def bindings_of(self, cert_nos: Sequence[str]) -> list[Binding]:
        self.reads.append(("bindings_of", list(cert_nos)))
        wanted = set(cert_nos)
        return [
            b
            for b in self.bindings
            if b.authorizer.cert_no in wanted or b.beneficiary.cert_no in wanted
        ]

    async def bind(self, request: Any) -> Any:
        raise AssertionError("the payer rule asked to bind")

    async def unbind(self, binding_id: str, *, actor: str, request_id: str | None = None) -> Any:
        raise AssertionError("the payer rule asked to unbind")

"""`ProvinceAdapter`: the class an integrator subclasses for a province (see
`adapters.base` for the whole picture)."""

from __future__ import annotations

import abc
import asyncio
import contextlib
import datetime as dt
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from decimal import Decimal
from typing import Any, ClassVar, TypeVar

import httpx

from adapters.breaker import BreakerState, Refused
from adapters.coalescing import READS, Batcher, Coalescer, key_of
from adapters.faults import (
    CircuitOpen,
    UpstreamContractError,
    UpstreamError,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from adapters.guard import Guard
from adapters.payer import bound_authorizers, choose_payer
from adapters.policy import Policy, china_date, policy_in_force
from adapters.transport import MAX_ANSWER_BYTES, AdapterSettings, exchange
from adapters.vocabulary import (
    Binding,
    BindRequest,
    CivilRelative,
    FamilyRead,
    Party,
    Person,
    Premium,
    PremiumPayment,
    PremiumRequest,
    QuotaHold,
    Refusal,
    RefusalCode,
    RegistrationChange,
    Settlement,
    SettleRequest,
)

T = TypeVar("T")

# HTTP statuses that say the request could not be read: nothing was done with it.
_UNREAD_STATUSES = frozenset({400, 413})


class Chosen:
    """The payer an adapter named in a settlement, by the request id it was sent under,
    so that the settlement sent again under that id is the same request.

    A payer is chosen from balances, and balances move (the first send itself moves them
    when the province carried it out but its answer was lost): chosen again, it could be
    another payer, and the province would get another request under the same id. The
    latest ``size`` choices are kept, in memory: the outbox sends a write again within
    the gateway's life (after a restart, a settlement still unresolved is chosen for
    afresh).
    """

    def __init__(self, size: int = 10_000) -> None:
        self._kept: OrderedDict[str, str | None] = OrderedDict()
        self._size = size

    async def once(
        self, request_id: str, choose: Callable[[], Awaitable[str | None]]
    ) -> str | None:
        """The payer named under ``request_id`` before, else ``choose()``'s, kept."""
        if request_id in self._kept:
            self._kept.move_to_end(request_id)
            return self._kept[request_id]
        chosen = await choose()
        self._kept[request_id] = chosen
        if len(self._kept) > self._size:
            self._kept.popitem(last=False)
        return chosen


class ProvinceAdapter(abc.ABC):
    """Speaks one province's dialect.

    Subclasses declare:

    * ``code``: the GB/T 2260 province prefix (``"13"``), the first two digits of
      every area code the province insures.
    * ``name``: the province's name as shown to users.
    * ``policies``: one or more `Policy` values, each with its effective date.

    and implement `find_persons`, `relatives`, `bindings_of`, `bind` and `unbind`
    (and `respond` where the province asks a relative to confirm). Methods raise
    only `UpstreamError` subclasses; use `_call` around each request and
    `_reading` around parsing so that every transport fault and every surprise
    in a payload becomes one. The client is owned by whoever made it (the
    gateway's lifespan): `aclose` is provided for convenience.
    """

    code: ClassVar[str]
    name: ClassVar[str]
    policies: ClassVar[tuple[Policy, ...]]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Each read the class defines shares its request with identical ones asked
        meanwhile (`adapters.coalescing`): the integrator writes it plainly."""
        super().__init_subclass__(**kwargs)
        for name in READS:
            method = cls.__dict__.get(name)
            if method is not None and not getattr(method, "_coalesced", False):
                setattr(cls, name, _coalescing(name, method))

    def __init__(
        self,
        client: httpx.AsyncClient,
        *,
        policies: Sequence[Policy] | None = None,
        deadline: float = 10.0,
        guard: Guard | None = None,
        max_answer_bytes: int = MAX_ANSWER_BYTES,
        policy_date: dt.date | None = None,
    ) -> None:
        self.client = client
        self._policy_date = policy_date  # None: today in Beijing
        self._deadline = deadline  # seconds for a whole request, however it trickles in
        self._max_answer_bytes = max_answer_bytes  # as sent, and as decoded
        self.guard = guard or Guard()
        self.coalescer = Coalescer()  # identical reads at once: sent once (adapters.coalescing)
        self.batcher = Batcher()  # family reads of others asked meanwhile: one request next
        self._policies: tuple[Policy, ...] = tuple(policies or type(self).policies)
        if not self._policies:
            raise ValueError(f"{type(self).__name__} declares no policy")

    @classmethod
    def configured(cls, client: httpx.AsyncClient, settings: AdapterSettings) -> ProvinceAdapter:
        """An adapter whose declared policies are adjusted by configuration.

        ``policy_overrides`` change fields of every declared policy;
        ``extra_policies`` add dated policies (a rule change announced ahead).
        """
        policies = [p.with_changes(**settings.policy_overrides) for p in cls.policies]
        return cls(
            client,
            policies=[*policies, *settings.extra_policies],
            deadline=settings.timeout,
            guard=Guard.of(settings),
            max_answer_bytes=settings.max_answer_bytes,
            policy_date=settings.policy_date,
        )

    def policy(self, on: dt.date | None = None) -> Policy:
        """The rules in force on ``on`` (by default the policy date: today in Beijing,
        unless a sandbox was started on another)."""
        return policy_in_force(self._policies, on or self.policy_date)

    @property
    def policy_date(self) -> dt.date:
        """The date whose rules are in force: today in Beijing, or the date a sandbox
        was started on (`AdapterSettings.policy_date`)."""
        return self._policy_date or china_date()

    def timeline(self) -> tuple[Policy, ...]:
        """Every version of the rules, past, in force and announced, oldest first."""
        return tuple(sorted(self._policies, key=lambda p: p.effective_from))

    def serves(self, area_code: str) -> bool:
        return area_code.startswith(self.code)

    # -- what an integrator implements --------------------------------------------

    @abc.abstractmethod
    async def find_persons(self, cert_nos: Sequence[str]) -> Mapping[str, Person]:
        """The persons among ``cert_nos`` that this province insures, in one request.

        Those it does not know are simply absent from the mapping.
        """

    @abc.abstractmethod
    async def relatives(self, cert_no: str) -> Sequence[CivilRelative]:
        """The civil record's relatives of a person this province insures."""

    @abc.abstractmethod
    async def bindings_of(self, cert_nos: Sequence[str]) -> Sequence[Binding]:
        """Every binding (any status) in which one of ``cert_nos`` takes part, in one request."""

    async def read_family(self, cert_nos: Sequence[str], bound: Sequence[str]) -> FamilyRead:
        """Who among ``cert_nos`` this province insures and every binding in which one of
        ``bound`` takes part: what a family screen needs of one province (either list
        may be empty; nothing is asked of an empty one).

        By default `find_persons` and `bindings_of` go at once, two requests. A
        province whose system answers both in one request overrides this to send one
        (and must answer exactly what the two reads would).
        """
        persons, bindings = await asyncio.gather(
            self.find_persons(cert_nos) if cert_nos else _given({}),
            self.bindings_of(bound) if bound else _given(()),
        )
        return FamilyRead(persons, bindings)

    @abc.abstractmethod
    async def bind(self, request: BindRequest) -> Binding | Refusal:
        """Ask the province to create a binding. The province's rules are authoritative."""

    @abc.abstractmethod
    async def unbind(
        self, binding_id: str, *, actor: str, request_id: str | None = None
    ) -> Binding | Refusal:
        """End a binding on behalf of ``actor`` (the authorizer's ID number)."""

    async def respond(
        self, binding_id: str, *, actor: str, accept: bool, request_id: str | None = None
    ) -> Binding | Refusal:
        """The invited relative (``actor``) accepts or declines a pending binding.

        Provinces without confirmation never hold a pending binding, so the
        default refuses.
        """
        return Refusal(RefusalCode.INVALID_BINDING_STATE)

    # Settlement. A province whose system picks the paying authorizer itself just
    # passes the bill on; one that must be told picks it here (the bound
    # authorizer with the largest balance, from `bindings_of` and `find_persons`).

    async def settle(self, request: SettleRequest) -> Settlement | Refusal:
        """Settle a bill at the province. The default: this province does not (yet)."""
        return Refusal(RefusalCode.SETTLEMENT_NOT_SUPPORTED)

    async def reverse(
        self,
        settlement_id: str,
        *,
        institution_code: str,
        reason: str,
        request_id: str | None = None,
    ) -> Settlement | Refusal:
        """Undo a settlement of the same day, once, for the institution that made it."""
        return Refusal(RefusalCode.SETTLEMENT_NOT_SUPPORTED)

    async def settlements_of(self, cert_nos: Sequence[str]) -> Sequence[Settlement]:
        """Settlements in which one of ``cert_nos`` was the patient or the paying authorizer."""
        return ()

    # Across provinces (the 2026 rules): a payment in the relative's province from a
    # quota this province holds. The gateway holds the money here, settles there
    # (`SettleRequest.funding`), then confirms here what was used, or releases it; a
    # reversal there is refunded here. A province that binds across provinces
    # (`Policy.cross_province`) implements all five; the defaults refuse.

    async def hold_quota(
        self, binding_id: str, *, amount: Decimal, reference: str, request_id: str | None = None
    ) -> QuotaHold | Refusal:
        """Hold ``amount`` of the binding's quota for the payment the gateway calls
        ``reference``: `RefusalCode.QUOTA_INSUFFICIENT` if less is left."""
        return Refusal(RefusalCode.SETTLEMENT_NOT_SUPPORTED)

    async def confirm_hold(
        self, hold_id: str, *, used: Decimal, payment_ref: str, request_id: str | None = None
    ) -> QuotaHold | Refusal:
        """The payment ``payment_ref`` used ``used`` of the hold (at most all of it);
        the rest goes back to the quota."""
        return Refusal(RefusalCode.SETTLEMENT_NOT_SUPPORTED)

    async def release_hold(
        self, hold_id: str, *, request_id: str | None = None
    ) -> QuotaHold | Refusal:
        """The payment was not made: all of the hold goes back to the quota."""
        return Refusal(RefusalCode.SETTLEMENT_NOT_SUPPORTED)

    async def refund_hold(
        self, hold_id: str, *, request_id: str | None = None
    ) -> QuotaHold | Refusal:
        """The payment was reversed: what it used goes back to the quota, once (to the
        authorizer's account if the binding has ended)."""
        return Refusal(RefusalCode.SETTLEMENT_NOT_SUPPORTED)

    async def holds_of(self, cert_nos: Sequence[str]) -> Sequence[QuotaHold]:
        """Holds on the quotas of bindings in which one of ``cert_nos`` takes part."""
        return ()

    async def premium_of(self, cert_no: str, year: int) -> Premium | Refusal:
        """A resident's premium for ``year`` as this province declares it (a read)."""
        return Refusal(RefusalCode.SETTLEMENT_NOT_SUPPORTED)

    async def pay_premium(self, request: PremiumRequest) -> PremiumPayment | Refusal:
        """Pay a resident's premium for a year, once (a write)."""
        return Refusal(RefusalCode.SETTLEMENT_NOT_SUPPORTED)

    async def registration_changes(self, after: int) -> Sequence[RegistrationChange]:
        """The province's change feed: registrations that moved out or ended after the
        change ``after`` (0: from the start), oldest first, as many as the province
        gives at once (a read). A binding across provinces ends by itself when either
        person's registration does: the gateway follows every feed for that."""
        return ()

    # -- provided ------------------------------------------------------------------

    async def funded_authorizer(
        self, beneficiary: str, *, owed: Decimal | None = None
    ) -> Party | None:
        """Who pays for ``beneficiary`` by mutual aid under the national rule
        (`adapters.payer.choose_payer`): of the authorizers actively bound to them, the
        one with the largest balance above zero (the earliest binding on a tie); None if
        nobody. With ``owed`` (a self-pay part), also None when the beneficiary's own
        account covers it, or the province does not know them. Two reads at most.

        For adapters whose province must be told who pays, and for the gateway's answers.
        """
        authorizers = bound_authorizers(await self.bindings_of([beneficiary]), beneficiary)
        if not authorizers:
            return None
        asked = [*([beneficiary] if owed is not None else []), *(p.cert_no for p in authorizers)]
        found = await self.find_persons(asked)
        own = found.get(beneficiary)
        if owed is not None and own is None:
            return None  # unknown to the province: it refuses the bill
        candidates = [
            (p, found[p.cert_no].balance if p.cert_no in found else None) for p in authorizers
        ]
        return choose_payer(owed, None if own is None else own.balance, candidates)

    async def payer_to_name(self, request: SettleRequest) -> str | None:
        """For a province that must be told who pays: the authorizer to name for this
        bill's self-pay part (`funded_authorizer`), or None.

        A read refused unread (``reached`` False) says nothing of the settlement, which
        may have been sent before under the same id (its payer forgotten since, as by a
        restart): its outcome stays unknown, so the error says it may have reached.
        """
        owed = request.total - request.fund_paid
        try:
            payer = await self.funded_authorizer(request.patient_cert_no, owed=owed)
        except UpstreamContractError as exc:
            if exc.reached:
                raise
            raise self._contract_error(f"choosing the payer: {exc}") from exc
        return None if payer is None else payer.cert_no

    async def aclose(self) -> None:
        await self.client.aclose()

    @property
    def breaker_state(self) -> BreakerState:
        return self.guard.state

    async def _call(
        self, method: str, url: str, *, read: bool = False, **kwargs: Any
    ) -> httpx.Response:
        """Send one request through the breaker; transport faults and HTTP 5xx become
        `UpstreamError`s. A ``read`` (it changes nothing) is tried again after an
        unavailable or timed-out attempt; a write is sent once.

        4xx answers are returned: dialects use them for refusals.
        """
        if not read:
            self.coalescer.wrote()  # reads from now on share nothing asked before
            try:
                return await self._attempt(method, url, kwargs)
            finally:
                self.coalescer.wrote()
        # The first attempt goes out directly: most reads succeed, and a tenacity
        # `AsyncRetrying` costs more to set up than the attempt. Only a failed read
        # enters the retry loop, whose first attempt is that failure.
        try:
            return await self._attempt(method, url, kwargs)
        except (UpstreamUnavailable, UpstreamTimeout) as exc:
            failed: BaseException | None = exc
        async for attempt in self.guard.retrying():
            with attempt:
                if failed is not None:
                    first, failed = failed, None
                    raise first
                return await self._attempt(method, url, kwargs)
        raise AssertionError("unreachable: tenacity re-raises the last error")  # pragma: no cover

    async def _attempt(self, method: str, url: str, kwargs: dict[str, Any]) -> httpx.Response:
        """One attempt through the province's breaker (`adapters.breaker`): unavailable
        and timed-out attempts are its failures, answers its successes. Anything else
        raised (a cancelled request: the caller stopped waiting; an unreadable body: the
        province answered, wrongly) is neither: it neither counts towards opening nor
        closes a probing breaker."""
        what = f"{method} {url}"
        breaker = self.guard.breaker
        # a place first (shed if none comes in time: not the province failing), then
        # the breaker's leave
        async with self.guard.shaper.place(what, province=self.code):
            try:
                probe = breaker.admit()  # one probe at a time; the rest are refused meanwhile
            except Refused as exc:
                raise CircuitOpen(
                    f"{what}: circuit open", province=self.code, reached=False
                ) from exc
            try:
                response = await self._send(what, method, url, kwargs)
            except (UpstreamUnavailable, UpstreamTimeout):
                breaker.failed(probe)
                raise
            except BaseException:
                breaker.released(probe)
                raise
            breaker.succeeded(probe)
            return response

    async def _send(
        self, what: str, method: str, url: str, kwargs: dict[str, Any]
    ) -> httpx.Response:
        """One attempt, its whole exchange within the deadline (`adapters.transport`)."""
        return await exchange(
            self.client,
            what,
            method,
            url,
            kwargs,
            province=self.code,
            deadline=self._deadline,
            max_answer_bytes=self._max_answer_bytes,
        )

    @contextlib.contextmanager
    def _reading(self, what: str) -> Iterator[None]:
        """Turn any surprise while parsing an answer into `UpstreamContractError`."""
        try:
            yield
        except UpstreamError:
            raise
        except (
            LookupError,  # KeyError, IndexError, an unknown text encoding
            TypeError,
            ValueError,
            AttributeError,
            ArithmeticError,  # decimal.InvalidOperation
            RecursionError,  # absurdly nested JSON
        ) as exc:
            raise UpstreamContractError(f"{what}: {exc!r}", province=self.code) from exc

    def _contract_error(self, what: str) -> UpstreamContractError:
        return UpstreamContractError(what, province=self.code)

    def _unread(self, what: str) -> UpstreamContractError:
        """The province's answer that it could not read the request (malformed): it did
        nothing with it, so the request did not reach it (``reached`` False)."""
        return UpstreamContractError(what, province=self.code, reached=False)

    def _refuse_unread(self, what: str, response: httpx.Response) -> None:
        """Raise `_unread` for HTTP 400 (Bad Request) or 413 (Content Too Large): the
        province, or a proxy in front of it, could not read the request. Every dialect's
        answer is checked for these first, whatever its body (use inside `_reading`)."""
        if response.status_code in _UNREAD_STATUSES:
            raise self._unread(f"{what}: HTTP {response.status_code}")


def _coalescing(name: str, method: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    async def read(self: ProvinceAdapter, *args: Any, **kwargs: Any) -> Any:
        return await self.coalescer.read(
            key_of(name, args, kwargs), lambda: method(self, *args, **kwargs)
        )

    async def read_family(self: ProvinceAdapter, *args: Any, **kwargs: Any) -> Any:
        """Shared as any read, and different families asked at once go together."""
        people, bound = _family_arguments(*args, **kwargs)

        def send(p: Sequence[str], b: Sequence[str]) -> Awaitable[Any]:
            return method(self, p, b)

        return await self.coalescer.read(
            key_of(name, (people, bound), {}),
            lambda: self.batcher.read(people, bound, send, _part_of),
        )

    if name == "read_family":  # chosen once, when the class is made
        read = read_family
    read.__name__ = method.__name__
    read.__qualname__ = method.__qualname__
    read.__doc__ = method.__doc__
    read._coalesced = True  # type: ignore[attr-defined]
    return read


async def _given(value: T) -> T:
    return value


def _family_arguments(
    cert_nos: Sequence[str], bound: Sequence[str]
) -> tuple[Sequence[str], Sequence[str]]:
    return cert_nos, bound


def _part_of(answer: FamilyRead, people: frozenset[str], bound: frozenset[str]) -> FamilyRead:
    """One caller's part of a family read made for several: what it would have been
    answered alone."""
    return FamilyRead(
        {c: p for c, p in answer.persons.items() if c in people},
        [
            b
            for b in answer.bindings
            if b.authorizer.cert_no in bound or b.beneficiary.cert_no in bound
        ],
    )

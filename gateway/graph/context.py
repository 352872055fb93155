"""What resolvers reach: the long-lived services and the per-request context.

Resolvers are typed against what they use of it (`gateway.graph.types.RequestContext`),
not against these classes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from graphql import DocumentNode
from strawberry.dataloader import DataLoader
from strawberry.extensions import SchemaExtension

from gateway.common.auth import Caller
from gateway.common.messages import Language
from gateway.graph.audit import AuditLog
from gateway.graph.errors import GatewayError
from gateway.graph.metrics import Metrics
from gateway.graph.prefetch import Prefetch
from gateway.graph.ratelimit import RateLimiter
from gateway.ops.config import Settings
from gateway.provinces.directory import Directory, Located
from gateway.provinces.federated import Provinces
from gateway.rules.diagnosis import Diagnostics
from gateway.rules.family import Family
from gateway.rules.kinship import Kinship, KinshipLink
from gateway.rules.mutual_aid import MutualAid
from gateway.rules.premiums import Premiums
from gateway.rules.settlement import Settlements
from gateway.state.events import Events
from gateway.state.outbox import Outbox
from gateway.state.records import Journal
from gateway.state.replays import Replays
from gateway.state.store import Store
from gateway.state.writes import Writes


@dataclass(frozen=True, slots=True)
class Services:
    """Made once in the app's lifespan."""

    settings: Settings
    store: Store
    provinces: Provinces
    directory: Directory
    mutual_aid: MutualAid
    kinship: Kinship
    settlements: Settlements
    premiums: Premiums
    diagnostics: Diagnostics
    journal: Journal
    family: Family
    rate_limiter: RateLimiter
    audit: AuditLog
    metrics: Metrics
    outbox: Outbox
    replays: Replays
    writes: Writes  # every write, once per idempotency key
    events: Events  # what happened to whom, for subscriptions


@dataclass(slots=True)
class Context:
    """One per request."""

    services: Services
    lang: Language
    request_id: str
    caller: Caller | None
    client: str | None = None  # the client's address, for rate limits
    # a WebSocket connection's: its socket, and connection_init's payload
    socket: Any = None
    connection_params: Any = None
    # work started ahead for this request (`prefetch`): cancelled when the operation
    # ends if no field took it
    leftovers: list[asyncio.Task[Any]] = field(default_factory=list)
    # the document that runs, fragments and all (set by `Documented` as it starts)
    document: DocumentNode | None = field(default=None, init=False)
    prefetch: Prefetch = field(init=False)
    _people: DataLoader[str, Located | None] = field(init=False)
    _links: DataLoader[str, list[KinshipLink]] = field(init=False)

    def __post_init__(self) -> None:
        self._people = DataLoader(load_fn=self._load_people)
        self._links = DataLoader(load_fn=self._load_links)
        services = self.services
        self.prefetch = Prefetch(
            directory=services.directory,
            provinces=services.provinces,
            family=services.family,
            mutual_aid=services.mutual_aid,
            person=self.person,
            known=self._people.prime,
            links=self.links,
            leftovers=self.leftovers,
        )

    def signed_in(self) -> Caller:
        """The caller; without a valid token, an UNAUTHENTICATED error."""
        if self.caller is None:
            raise GatewayError("UNAUTHENTICATED", self.lang)
        return self.caller

    def caller_cert_no(self) -> str:
        """Whoever is signed in (staff too): for masking what they are shown."""
        return self.signed_in().cert_no

    def insured(self) -> str:
        """The caller acting as an insured person. A staff token (one with a role) is for
        its duties only: personal operations answer it FORBIDDEN."""
        caller = self.signed_in()
        if caller.roles:
            raise GatewayError("FORBIDDEN", self.lang)
        return caller.cert_no

    async def person(self, cert_no: str) -> Located | None:
        """Where a person is insured, batched and remembered for this request."""
        return await self._people.load(cert_no)

    async def links(self, cert_no: str) -> list[KinshipLink]:
        """A person's kinship links, read once for this request (the family screen and
        both directions of `me` use them)."""
        return await self._links.load(cert_no)

    async def _load_links(self, cert_nos: list[str]) -> list[list[KinshipLink]]:
        kinship = self.services.kinship
        return [await kinship.links_of(c) for c in cert_nos]

    async def _load_people(self, cert_nos: list[str]) -> list[Located | None]:
        found = await self.services.directory.locate(cert_nos)
        return [found.get(c) for c in cert_nos]


class Documented(SchemaExtension):
    """Puts the document that runs on the request's `Context`, for resolvers that look
    at what else it asks (`Query.me`, to start work ahead)."""

    def on_execute(self) -> Iterator[None]:
        ctx = self.execution_context
        if isinstance(ctx.context, Context):
            ctx.context.document = ctx.graphql_document
        yield


if TYPE_CHECKING:
    from gateway.graph.types import RequestContext

    _RESOLVERS_SEE: type[RequestContext] = Context  # mypy checks that a Context is one

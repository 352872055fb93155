"""The ASGI app: lifespan-made services, GraphQL at /graphql; /healthz (alive) and
/readyz (the store writable, each province's breaker) for orchestrators.

In sandbox mode a browser opening /graphql gets the playground (`gateway.edge.playground`);
in production mode there is no page and no persona route.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import re
import uuid
from collections.abc import AsyncIterator, Mapping
from typing import Any, cast

import httpx
import orjson
from cross_web import HTTPException
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route, WebSocketRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.exceptions import ConnectionRejectionError
from strawberry.schema import BaseSchema
from strawberry.subscriptions import GRAPHQL_SSE_PROTOCOL, GRAPHQL_TRANSPORT_WS_PROTOCOL
from strawberry.types import ExecutionResult
from strawberry.types.unset import UNSET, UnsetType

from gateway.common.auth import Caller, InvalidToken, bearer, verify_token
from gateway.common.messages import preferred_language
from gateway.edge.documents import DocumentRefused, Manifest, trusted
from gateway.edge.limits import (
    GRAPHQL_RESPONSE_JSON,
    JSON,
    BodyLimit,
    negotiate,
    request_error,
    request_status,
)
from gateway.edge.playground import Playground
from gateway.edge.subscriptions import TOO_MANY, Connections, Socket
from gateway.graph.audit import DOCUMENT, AuditLog
from gateway.graph.context import Context, Services
from gateway.graph.metrics import Metrics
from gateway.graph.ratelimit import RateLimiter
from gateway.graph.schema import build_schema
from gateway.ops.config import Settings, Subscriptions
from gateway.ops.logs import REQUEST_ID
from gateway.provinces.directory import Directory
from gateway.provinces.federated import open_provinces, sandbox_names, sandbox_people
from gateway.rules.crossing import Crossing
from gateway.rules.diagnosis import Diagnostics
from gateway.rules.family import Family
from gateway.rules.kinship import Kinship
from gateway.rules.mutual_aid import MutualAid
from gateway.rules.premiums import Premiums
from gateway.rules.registrations import Registrations
from gateway.rules.settlement import Settlements
from gateway.state.backend import open_store
from gateway.state.events import Events
from gateway.state.leases import Leases
from gateway.state.outbox import Outbox, Reconciler
from gateway.state.records import Journal
from gateway.state.replays import Replays
from gateway.state.store import held_data_dir
from gateway.state.transfers import Transfers
from gateway.state.writes import Writes

log = logging.getLogger(__name__)

_REQUEST_ID = re.compile(rb"[A-Za-z0-9._:-]{1,64}")


class RequestIds:
    """Every request gets an id: the edge proxy's ``X-Request-Id`` when it is a plain
    token (anything else could forge log lines), else a new one. It is on every log
    line logged while the request is served, in its errors, and in the answer's
    ``X-Request-Id`` header."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = dict(scope["headers"]).get(b"x-request-id", b"")
        request_id = given.decode() if _REQUEST_ID.fullmatch(given) else uuid.uuid4().hex

        async def with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [
                    *message.get("headers", []),
                    (b"x-request-id", request_id.encode()),
                ]
            await send(message)

        token = REQUEST_ID.set(request_id)
        try:
            await self.app(scope, receive, with_id)
        finally:
            REQUEST_ID.reset(token)


class _GraphQL(GraphQL[Context, None]):
    def __init__(
        self,
        schema: BaseSchema,
        playground: Playground | None,
        documents: Manifest | None = None,
        *,
        free_documents: bool = True,
        subscriptions: Subscriptions = Subscriptions(),  # noqa: B008
    ) -> None:
        # Uploads (kinship documents) come as GraphQL multipart requests. Tokens
        # travel in a header, never a cookie, so a cross-site form cannot use them.
        super().__init__(
            schema,
            graphql_ide="graphiql" if playground else None,
            multipart_uploads_enabled=True,
            # POST only: a query in a URL ends up in access logs and proxies' caches
            allow_queries_via_get=False,
            subscription_protocols=(GRAPHQL_TRANSPORT_WS_PROTOCOL, GRAPHQL_SSE_PROTOCOL),
            max_subscriptions_per_connection=subscriptions.per_connection,
            allowed_origins=subscriptions.allowed_origins,
            connection_init_wait_timeout=dt.timedelta(seconds=10),
        )
        self.connections = Connections(subscriptions)
        self.playground = playground
        self.documents = documents  # the registered documents (gateway.edge.documents)
        self.free_documents = free_documents

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "websocket":
            await super().__call__(scope, receive, send)
            return
        socket = Socket(scope, receive=receive, send=send)
        socket.documents, socket.free_documents = self.documents, self.free_documents
        socket.lang = preferred_language(socket.headers.get("accept-language"))
        socket.idle_seconds = self.connections.idle_seconds
        socket.idle_clock()
        address = socket.client.host if socket.client else None
        if not self.connections.open_address(address):
            await socket.accept(subprotocol=GRAPHQL_TRANSPORT_WS_PROTOCOL)
            await socket.close(TOO_MANY, "Too many connections from this address")
            return
        try:
            await self.run(socket)
        finally:
            self.connections.closed(socket, address)

    async def on_ws_connect(self, context: Context) -> UnsetType | dict[str, object] | None:
        """A WebSocket client signs in with ``connection_init``'s payload: its token as
        ``authorization`` (``Bearer …``), as a header would carry it. Refused without a
        valid one; closed when it runs out."""
        socket = context.socket
        params = context.connection_params if isinstance(context.connection_params, dict) else {}
        authorization = params.get("authorization") or params.get("Authorization")
        token = bearer(authorization) if isinstance(authorization, str) else None
        caller = None if token is None else await _verified(token, context.services)
        if caller is None or not isinstance(socket, Socket):
            raise ConnectionRejectionError
        if not self.connections.admit(socket, caller.cert_no):
            socket.refuse(TOO_MANY, "Too many connections for this caller")
            raise ConnectionRejectionError
        context.caller = caller
        if caller.expires is not None:
            left = (caller.expires - dt.datetime.now(dt.UTC)).total_seconds()
            self.connections.expire(socket, left)
        return cast(UnsetType, UNSET)  # connection_ack without a payload

    def encode_json(self, data: object) -> bytes:
        """orjson: several times faster than the standard library on large answers."""
        return orjson.dumps(data)

    def decode_json(self, data: str | bytes) -> object:
        """orjson: strict UTF-8, and nesting bounded (1,024 levels) without recursing in
        Python; what it refuses is a 400 (`orjson.JSONDecodeError` is a
        `json.JSONDecodeError`)."""
        return orjson.loads(data)

    def parse_json(self, data: str | bytes) -> Any:
        """A GraphQL request is a JSON object (a list would be a batch: refused)."""
        parsed = super().parse_json(data)
        if not isinstance(parsed, dict | list):
            raise HTTPException(400, "the body must be a JSON object")
        if isinstance(parsed, dict):  # a registered document named, or refused unparsed
            return dict(trusted(parsed, self.documents, free=self.free_documents))
        return parsed

    async def parse_multipart(self, request: Any) -> dict[str, str]:
        """A multipart request whose ``operations`` or ``map`` is not what the upload
        spec says (not JSON, the wrong shapes, pointing nowhere) is a 400."""
        try:
            return await super().parse_multipart(request)
        except (ValueError, TypeError, AttributeError, KeyError, IndexError) as exc:
            raise HTTPException(400, "the multipart request does not follow the spec") from exc

    async def run(self, request: Any, context: Any = UNSET, root_value: Any = UNSET) -> Any:
        """GraphQL over HTTP: the answer in the media type the client accepts
        (`negotiate`); with ``application/graphql-response+json``, a request that was
        not executed (it did not parse, validate or fit its variables) has a 4xx status
        and no ``data``. A request the view cannot take (a malformed body, a wrong
        method) is answered as a GraphQL error with a code, never plain text.
        Strawberry reads a multipart form (uploads) but leaves its files open: they
        are closed."""
        media = JSON
        DOCUMENT.set(None)  # until the request names a registered one
        try:
            streamed = isinstance(request, Request) and self._get_stream_transport_from_headers(
                request.headers
            )
            if isinstance(request, Request) and request.method == "POST" and not streamed:
                chosen = negotiate(request.headers.get("accept"))
                if chosen is None:
                    raise HTTPException(406, "no acceptable media type")
                request.state.media = media = chosen
            response = await super().run(request, context, root_value)
            if media == GRAPHQL_RESPONSE_JSON and isinstance(response, Response):
                response.headers["content-type"] = f"{GRAPHQL_RESPONSE_JSON}; charset=utf-8"
                response.status_code = getattr(request.state, "status", response.status_code)
            return response
        except HTTPException as exc:
            lang = preferred_language(request.headers.get("accept-language"))
            code = exc.code if isinstance(exc, DocumentRefused) else None
            return request_error(exc.status_code, lang, media, code)
        finally:
            if isinstance(request, Request):
                await request.close()

    async def process_result(self, request: Any, result: ExecutionResult) -> Any:
        """With ``application/graphql-response+json``, a result that never ran (every
        error before execution, so none with a path) has no ``data`` and a 4xx status."""
        processed = await super().process_result(request, result)
        media = getattr(request.state, "media", JSON) if isinstance(request, Request) else JSON
        errors = result.errors or []
        executed = result.data is not None or any(e.path is not None for e in errors)
        if media == GRAPHQL_RESPONSE_JSON and errors and not executed:
            processed.pop("data", None)
            request.state.status = request_status(errors)
        return processed

    async def render_graphql_ide(self, request: Request) -> Response:
        if self.playground is None:  # the view renders an IDE only when given one
            return Response(status_code=404)
        return await self.playground.page(request)

    async def get_context(
        self, request: Request | WebSocket, response: Response | WebSocket
    ) -> Context:
        services: Services = request.app.state.services
        lang = preferred_language(request.headers.get("accept-language"))
        token = bearer(request.headers.get("authorization"))
        caller = None if token is None else await _verified(token, services)
        request_id = REQUEST_ID.get()
        if request_id == "-":  # not through the app's middleware (never in practice)
            request_id = uuid.uuid4().hex
        return Context(
            services=services,
            lang=lang,
            request_id=request_id,
            caller=caller,
            client=request.client.host if request.client else None,
            socket=request if isinstance(request, Socket) else None,
        )


async def _verified(token: str, services: Services) -> Caller | None:
    """The caller a token names, or None (logged) if it does not verify."""
    auth = services.settings.auth
    try:
        if auth.jwks_url is not None:  # the key set may be fetched: not on the loop
            return await asyncio.to_thread(verify_token, token, auth)
        return verify_token(token, auth)
    except InvalidToken as exc:
        log.info("rejected token: %s", exc)
        return None


def embeds_sandboxes(settings: Settings) -> bool:
    """Whether the gateway will run sandbox provinces in-process, on files in its data
    directory, with a shared store (with SQLite, the store holds the directory anyway):
    then the directory is this process's alone all the same."""
    if settings.production or not settings.store.shared or settings.data_dir is None:
        return False
    configured = settings.provinces
    return any(
        not (name in configured and configured[name].base_url)
        for name in sandbox_names()
        if name not in settings.disabled
    )


def create_app(
    settings: Settings,
    *,
    transports: Mapping[str, httpx.AsyncBaseTransport] | None = None,
) -> Starlette:
    """The gateway. ``transports`` replaces the network for named provinces (tests)."""

    metrics = Metrics()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        data_dir = settings.data_dir
        async with (
            held_data_dir(data_dir if embeds_sandboxes(settings) else None),
            open_store(settings.store, data_dir) as store,
            open_provinces(
                settings.provinces,
                data_dir=data_dir,
                disabled=settings.disabled,
                transports=transports,
                sandboxes=not settings.production,
                measure=metrics.measure,
                policy_date=settings.policy_date,
            ) as provinces,
        ):
            directory = Directory(
                provinces, store, civil_record_ttl=settings.cache.civil_record_seconds
            )
            journal = Journal(store)
            leases = Leases(store, seconds=settings.store.lease_seconds)
            outbox = Outbox(store, provinces, journal, leases)
            replays = Replays(store, provinces, leases)
            writes = Writes(outbox, replays)
            mutual_aid = MutualAid(provinces, directory, writes)
            kinship = Kinship(store, directory, mutual_aid, settings.kinship, settings.auth)
            crossing = Crossing(writes, Transfers(store), leases)
            app.state.crossing = crossing  # (the reconciler's part, for tests to run)
            settlements = Settlements(provinces, directory, writes, mutual_aid, crossing)
            premiums = Premiums(directory, mutual_aid, writes, crossing)
            events = Events(store, dt.timedelta(hours=settings.subscriptions.retention_hours))
            await events.start()
            app.state.services = Services(
                settings=settings,
                store=store,
                provinces=provinces,
                directory=directory,
                mutual_aid=mutual_aid,
                kinship=kinship,
                settlements=settlements,
                premiums=premiums,
                diagnostics=Diagnostics(mutual_aid, kinship, directory),
                journal=journal,
                family=Family(provinces, kinship, directory),
                rate_limiter=RateLimiter(settings.limits, store),
                audit=AuditLog(store),
                metrics=metrics,
                outbox=outbox,
                replays=replays,
                writes=writes,
                events=events,
            )
            metrics.watch(provinces, outbox, store)
            resilience = settings.resilience
            reconciler = Reconciler(
                outbox,
                interval=resilience.reconcile_interval,
                pending_after=resilience.pending_after,
                also=crossing.resume,
            )
            registrations = Registrations(provinces, mutual_aid, writes, store, leases)
            app.state.registrations = registrations
            # the server drains requests in flight before this lifespan ends
            running = [
                asyncio.create_task(reconciler.run(), name="reconciler"),
                asyncio.create_task(
                    registrations.run(resilience.registration_interval),
                    name="registrations",
                ),
                asyncio.create_task(events.run_pruning(), name="events"),
            ]
            try:
                yield
            finally:
                for task in running:  # a write it was sending stays for next time
                    task.cancel()
                for task in running:
                    with contextlib.suppress(asyncio.CancelledError):
                        await task

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> Response:
        """Ready when the store takes writes; every province's breaker is reported (an
        open one does not make the gateway unready: the others are still served)."""
        services: Services | None = getattr(request.app.state, "services", None)
        if services is None:
            return JSONResponse({"status": "starting"}, status_code=503)
        try:
            await asyncio.wait_for(services.store.check_writable(), timeout=2.0)
            store = "ok"
        except Exception:
            log.exception("readiness: the store does not take writes")
            store = "failing"
        provinces = {
            code: {"name": adapter.name, "breaker": adapter.breaker_state.value}
            for code, adapter in services.provinces.items()
        }
        ready = store == "ok"
        return JSONResponse(
            {"status": "ready" if ready else "not ready", "store": store, "provinces": provinces},
            status_code=200 if ready else 503,
        )

    async def root(request: Request) -> Response:
        return RedirectResponse("/graphql")

    playground = (
        None
        if settings.production
        else Playground(settings.playground_dir, settings.roster, settings.auth, sandbox_people())
    )
    documents = Manifest.load(settings.documents) if settings.documents.exists() else None
    if documents is None and not settings.allows_free_documents:
        raise ValueError(
            f"only registered documents run ([graphql] free_documents is off), and"
            f" {settings.documents} holds none: gongji documents build, or [graphql] documents"
        )
    graphql = _GraphQL(
        build_schema(introspection=settings.allows_introspection),
        playground,
        documents,
        free_documents=settings.allows_free_documents,
        subscriptions=settings.subscriptions,
    )
    routes: list[BaseRoute] = [
        Route("/healthz", healthz),
        Route("/readyz", readyz),
        Route("/metrics", metrics.endpoint),
        Route("/graphql", graphql, methods=["GET", "POST"]),
        WebSocketRoute("/graphql", graphql),
    ]
    if playground is not None:
        routes += [Route("/", root), *playground.routes()]
    # the largest upload: every document at its largest, and room for the rest
    kinship = settings.kinship
    max_bytes = kinship.max_documents * kinship.max_document_bytes + 1024 * 1024
    return Starlette(
        routes=routes,
        lifespan=lifespan,
        middleware=[
            Middleware(RequestIds),
            Middleware(
                BodyLimit, max_upload_bytes=max_bytes, limits=settings.limits, auth=settings.auth
            ),
        ],
    )

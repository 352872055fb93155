"""Prometheus metrics at /metrics: requests by operation and outcome, latency histograms,
and each province's requests, outcomes and latency. No label carries personal data."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING, Any

import httpx
from graphql import OperationType
from opentelemetry.trace import SpanKind, StatusCode
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from starlette.requests import Request
from starlette.responses import Response
from strawberry.extensions import SchemaExtension

from adapters.base import BreakerState, ProvinceAdapter, deadline_passed
from gateway.graph.operation import chosen
from gateway.ops import tracing
from gateway.ops.logs import mask_cert_nos

if TYPE_CHECKING:
    from gateway.state.outbox import Outbox
    from gateway.state.store import Store


class Metrics:
    """One registry per app (tests make many apps in one process)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "gongji_graphql_requests",
            "GraphQL operations, by kind and outcome (ok, or the first error code)",
            ["operation", "outcome"],
            registry=self.registry,
        )
        self.seconds = Histogram(
            "gongji_graphql_request_seconds",
            "GraphQL operation latency",
            ["operation"],
            registry=self.registry,
        )
        self.upstream = Counter(
            "gongji_upstream_requests",
            "Requests to provinces, by province and outcome (HTTP status class or fault)",
            ["province", "outcome"],
            registry=self.registry,
        )
        self.upstream_seconds = Histogram(
            "gongji_upstream_request_seconds",
            "Latency of requests to provinces",
            ["province"],
            registry=self.registry,
        )
        self.breaker = Gauge(
            "gongji_upstream_breaker_state",
            "Each province's circuit breaker: 1 for the state it is in",
            ["province", "state"],
            registry=self.registry,
        )
        self.writes = Gauge(
            "gongji_outbox_writes",
            "Writes to provinces in the outbox, by state (PENDING and UNKNOWN: unresolved)",
            ["state"],
            registry=self.registry,
        )
        self.store_statements = Counter(
            "gongji_store_statements",
            "Statements this instance sent to its store, by backend",
            ["backend"],
            registry=self.registry,
        )
        self.store_transactions = Counter(
            "gongji_store_transactions",
            "Transactions this instance ran on its store, by backend",
            ["backend"],
            registry=self.registry,
        )
        self._watched: tuple[Mapping[str, ProvinceAdapter], Outbox, Store] | None = None
        self._told = (0, 0)  # the store's counts at the last scrape

    def watch(self, provinces: Mapping[str, ProvinceAdapter], outbox: Outbox, store: Store) -> None:
        """Report each province's breaker, the outbox's unresolved writes and the store's
        round trips at scrape time."""
        self._watched = (provinces, outbox, store)

    def measure(
        self, province: str, transport: httpx.AsyncBaseTransport
    ) -> httpx.AsyncBaseTransport:
        return _Measured(transport, province, self)

    async def endpoint(self, request: Request) -> Response:
        if self._watched is not None:
            provinces, outbox, store = self._watched
            for code, adapter in provinces.items():
                for state in BreakerState:
                    self.breaker.labels(code, state.value).set(adapter.breaker_state is state)
            for name, count in (await outbox.counts()).items():
                self.writes.labels(name).set(count)
            statements, transactions = store.counts.statements, store.counts.transactions
            self.store_statements.labels(store.dialect).inc(statements - self._told[0])
            self.store_transactions.labels(store.dialect).inc(transactions - self._told[1])
            self._told = (statements, transactions)
        return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)


class _Measured(httpx.AsyncBaseTransport):
    """A province's transport: timed, counted, and traced when tracing is on."""

    def __init__(self, inner: httpx.AsyncBaseTransport, province: str, metrics: Metrics) -> None:
        self._inner = inner
        self._province = province
        self._metrics = metrics
        self._seconds = metrics.upstream_seconds.labels(province)
        self._counted: dict[str, Any] = {}  # outcome: its counter, looked up once

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        started = time.perf_counter()
        outcome = "error"
        with tracing.span(
            f"upstream {request.method}", kind=SpanKind.CLIENT, record_exception=False
        ) as span:
            if span.is_recording():  # the path only (a query string may hold ID numbers), masked
                span.set_attribute("gongji.province", self._province)
                span.set_attribute("http.request.method", request.method)
                span.set_attribute("url.path", mask_cert_nos(request.url.path))
            try:
                response = await self._inner.handle_async_request(request)
                outcome = f"{response.status_code // 100}xx"
                span.set_attribute("http.response.status_code", response.status_code)
                return response
            except asyncio.CancelledError:
                # cut off by the adapter's deadline, or its answer was no longer needed
                outcome = "timeout" if deadline_passed() else "cancelled"
                raise
            except httpx.TimeoutException:
                outcome = "timeout"
                raise
            except httpx.TransportError:
                outcome = "unavailable"
                raise
            finally:
                if outcome not in ("2xx", "4xx", "cancelled"):
                    span.set_status(StatusCode.ERROR, outcome)
                counter = self._counted.get(outcome)
                if counter is None:
                    counter = self._counted[outcome] = self._metrics.upstream.labels(
                        self._province, outcome
                    )
                counter.inc()
                self._seconds.observe(time.perf_counter() - started)

    async def aclose(self) -> None:
        await self._inner.aclose()


class Measured(SchemaExtension):
    """Times each operation and counts it by outcome; its span (when tracing is on) is
    the parent of the upstream requests' spans."""

    async def on_operation(self) -> AsyncIterator[None]:
        started = time.perf_counter()
        with tracing.span("graphql", record_exception=False) as span:
            try:
                yield
            finally:
                for task in getattr(self.execution_context.context, "leftovers", ()):
                    task.cancel()  # work started ahead that no field took
            ctx = self.execution_context
            services = getattr(ctx.context, "services", None)
            if services is None:
                return
            operation = chosen(ctx.graphql_document, ctx.operation_name)
            kind = (
                "mutation"
                if operation and operation.operation is OperationType.MUTATION
                else "query"
            )
            outcome = "ok"
            if ctx.result is not None and ctx.result.errors:
                outcome = str((ctx.result.errors[0].extensions or {}).get("code", "error"))
            services.metrics.requests.labels(kind, outcome).inc()
            services.metrics.seconds.labels(kind).observe(time.perf_counter() - started)
            if span.is_recording():
                name = operation.name.value if operation and operation.name else None
                span.update_name(f"graphql {kind}" + (f" {name}" if name else ""))
                span.set_attribute("graphql.operation.type", kind)
                if name:
                    span.set_attribute("graphql.operation.name", name)
                span.set_attribute("gongji.request_id", getattr(ctx.context, "request_id", "-"))
                span.set_attribute("gongji.outcome", outcome)
                if outcome != "ok":
                    span.set_status(StatusCode.ERROR, outcome)

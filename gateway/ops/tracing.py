"""OpenTelemetry traces: a span for each GraphQL operation and one for each request to
a province, off unless ``[tracing] exporter`` says where to send them.

Off (no provider set, ours or a global one), `span` hands out one span that records
nothing and leaves the context alone: no attributes are built and nothing is
kept, and the OpenTelemetry SDK is not even imported (only the API is). Spans
carry no personal data: the province, the method and the path of upstream
requests (never their query strings, which can hold ID numbers), the operation's
kind and name, and the request id.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
from typing import TYPE_CHECKING, Any

from opentelemetry import trace

from gateway.ops.config import Tracing

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider

log = logging.getLogger(__name__)

# One tracer, made again only when the provider changes: asking the API for a tracer
# on every span costs more than the no-op span. Without a provider of ours it is the
# API's proxy, which follows the global provider wherever that is set.
_provider: trace.TracerProvider | None = None
_tracer: trace.Tracer = trace.get_tracer("gongji")
_OFF: contextlib.nullcontext[trace.Span] = contextlib.nullcontext(trace.INVALID_SPAN)


def span(name: str, **options: Any) -> contextlib.AbstractContextManager[trace.Span]:
    """The tracer's ``start_as_current_span(name, **options)``; while no provider is set
    (ours or a global one), a span that records nothing, without touching the context."""
    if _provider is None and isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
        return _OFF
    return _tracer.start_as_current_span(name, **options)


def use(provider: trace.TracerProvider | None) -> None:
    """Send our spans to ``provider`` (tests; None: back to the global provider)."""
    global _provider, _tracer  # one provider per process, as OpenTelemetry has
    _provider = provider
    _tracer = trace.get_tracer("gongji", tracer_provider=provider)


def configure(settings: Tracing) -> TracerProvider | None:
    """Install the exporter the settings name; None when tracing is off."""
    if settings.exporter == "none":
        return None
    # the SDK only where tracing is on
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import (
        BatchSpanProcessor,
        ConsoleSpanExporter,
        SpanExporter,
    )

    exporter: SpanExporter
    if settings.exporter == "console":
        exporter = ConsoleSpanExporter()
    else:
        try:
            otlp: Any = importlib.import_module(
                "opentelemetry.exporter.otlp.proto.http.trace_exporter"
            )
        except ImportError as exc:
            raise ValueError(
                "tracing.exporter = otlp needs the OTLP exporter: pip install '.[otlp]'"
            ) from exc
        exporter = otlp.OTLPSpanExporter(endpoint=settings.endpoint)
    provider = TracerProvider(resource=Resource.create({"service.name": settings.service_name}))
    provider.add_span_processor(BatchSpanProcessor(exporter))
    use(provider)
    log.info("tracing: spans go to %s", settings.exporter)
    return provider

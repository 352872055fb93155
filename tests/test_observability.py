"""Structured logs with the request id, and traces of operations and upstream calls."""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from gateway.ops import logs, tracing
from gateway.ops.config import Settings, Tracing
from tests.conftest import ROOT, GraphQL, person


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    """The root logger, configured as the CLI does (JSON), into a buffer."""
    root = logging.getLogger()
    before = (root.handlers[:], root.level)
    logs.configure(fmt="json")
    out = io.StringIO()
    root.handlers[0].stream = out  # type: ignore[attr-defined]
    try:
        yield out
    finally:
        root.handlers[:], root.level = before


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.use(provider)
    try:
        yield exporter
    finally:
        tracing.use(None)


async def test_log_lines_are_json_with_the_request_id_and_no_full_id_number(
    gql: GraphQL, captured: io.StringIO
) -> None:
    cert_no = person("hb_wang_jianguo")["certNo"]
    response = await gql.client.post(
        "/graphql",
        json={"query": "{ me { name } }"},
        headers={"Authorization": "Bearer not-a-token", "X-Request-Id": "edge-42.a"},
    )
    assert response.status_code == 200
    assert response.headers["x-request-id"] == "edge-42.a"
    served = [json.loads(line) for line in captured.getvalue().splitlines()]
    assert any(line["request_id"] == "edge-42.a" for line in served)  # "rejected token"
    logging.getLogger("gateway.test").warning("looked for %s", cert_no)  # outside a request
    lines = [json.loads(line) for line in captured.getvalue().splitlines()]
    assert lines, "nothing was logged"
    assert {"time", "level", "logger", "message", "request_id"} <= lines[-1].keys()
    assert lines[-1]["request_id"] == "-"
    assert lines[-1]["message"] == f"looked for {cert_no[:6]}********{cert_no[-4:]}"
    assert cert_no not in captured.getvalue()


async def test_a_request_id_from_the_edge_is_kept_only_when_it_is_a_plain_token(
    gql: GraphQL, captured: io.StringIO
) -> None:
    for given, kept in (("edge-42.a", True), ("x {forged}", False), ("a" * 65, False)):
        result = await gql.client.post(
            "/graphql",
            json={"query": "{ me { name } }"},
            headers={"X-Request-Id": given},
        )
        answered = result.headers["x-request-id"]
        assert (answered == given) is kept
        if not kept:
            assert len(answered) == 32  # a new one


async def test_operations_and_upstream_calls_are_traced_without_personal_data(
    gql: GraphQL, spans: InMemorySpanExporter
) -> None:
    result = await gql(
        "query Family { me { name family { relative { name } } } }", as_="hb_liu_yang"
    )
    assert "errors" not in result
    finished = spans.get_finished_spans()
    operation = next(s for s in finished if s.name.startswith("graphql"))
    upstream = [s for s in finished if s.name.startswith("upstream")]
    assert operation.name == "graphql query Family"
    assert operation.attributes is not None
    assert operation.attributes["gongji.outcome"] == "ok"
    assert upstream, "no upstream call was traced"
    assert all(
        s.parent is not None and s.parent.span_id == operation.context.span_id for s in upstream
    )
    assert {s.attributes["gongji.province"] for s in upstream if s.attributes} >= {"13"}
    text = json.dumps([dict(s.attributes or {}) for s in finished], ensure_ascii=False)
    for key in ("hb_liu_yang", "hb_liu_yinuo", "js_zhang_shuzhen"):
        assert person(key)["certNo"] not in text
        assert person(key)["name"] not in text


async def test_tracing_is_off_by_default(gql: GraphQL) -> None:
    assert Settings(data_dir=None).tracing.exporter == "none"
    assert tracing.configure(Tracing()) is None
    before = trace.get_current_span()
    with tracing.span("x") as span:
        assert not span.is_recording()
        assert trace.get_current_span() is before  # off: the context is left alone


def test_logging_and_tracing_settings_are_read(tmp_path: Path) -> None:
    config = tmp_path / "gongji.toml"
    config.write_text('[logging]\nformat = "json"\n[tracing]\nexporter = "console"\n', "utf-8")
    settings = Settings.load(config, environ={})
    assert settings.logs_as == "json"
    assert settings.tracing.exporter == "console"
    assert Settings.load(None, environ={}).logs_as == "text"  # sandbox mode
    assert Settings.load(None, environ={"GONGJI_LOG_FORMAT": "json"}).logs_as == "json"
    config.write_text('[logging]\nformat = "xml"\n', "utf-8")
    with pytest.raises(ValueError, match=r"logging\.format"):
        Settings.load(config, environ={})
    config.write_text('[tracing]\nexporter = "zipkin"\n', "utf-8")
    with pytest.raises(ValueError, match=r"tracing\.exporter"):
        Settings.load(config, environ={})
    provider = tracing.configure(Tracing(exporter="console"))
    try:
        assert provider is not None
        with tracing.span("x") as span:
            assert span.is_recording()
    finally:
        tracing.use(None)
        if provider is not None:
            provider.shutdown()


async def test_upstream_spans_mask_id_numbers_in_paths(
    gql: GraphQL, spans: InMemorySpanExporter
) -> None:
    """Jiangsu's REST paths name people (/persons/{certNo}/relatives)."""
    result = await gql("{ me { family { relative { name } } } }", as_="js_chen_zhiqiang")
    assert "errors" not in result
    paths = [s.attributes.get("url.path") for s in spans.get_finished_spans() if s.attributes]
    assert any(p and "/persons/" in p for p in paths)
    text = json.dumps(paths)
    for key in ("js_chen_zhiqiang", "js_liu_fang", "js_chen_chen"):
        assert person(key)["certNo"] not in text


def test_without_tracing_the_sdk_is_not_loaded() -> None:
    """The OpenTelemetry SDK is for when tracing is on: a gateway serving without it
    imports the API only (a fresh interpreter, as `gongji serve` starts)."""
    code = (
        "import sys, gateway.edge.app, gateway.edge.cli;"
        "print(sorted(m for m in sys.modules if m.startswith('opentelemetry.sdk')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert out.stdout.strip() == "[]"

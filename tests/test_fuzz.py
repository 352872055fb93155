"""Generated queries and mutations against the running app: no 500s, no internal errors.

hypothesis-graphql draws operations (with arguments) from the schema; each runs
as a signed-in person through the ASGI app over the in-process sandboxes. Any
answer is fine but an HTTP 5xx, an ``INTERNAL_ERROR``, or text that gives
internals away.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis_graphql import from_schema
from hypothesis_graphql.nodes import String

from gateway.common.auth import mint_token
from gateway.edge.app import create_app
from gateway.ops.config import Settings

SDL = (Path(__file__).resolve().parent.parent / "schema.graphql").read_text(encoding="utf-8")
LEAKS = ("Traceback", "sqlite", "http://", 'File "', "Exception")


def run(document: str) -> httpx.Response:
    async def call() -> httpx.Response:
        gateway_settings = Settings(data_dir=None)
        app = create_app(gateway_settings)
        token = mint_token("130102197603150016", gateway_settings.auth)
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://gateway"
            ) as client,
        ):
            return await client.post(
                "/graphql",
                json={"query": document},
                headers={"Authorization": f"Bearer {token}"},
            )

    return asyncio.run(call())


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
@given(
    document=from_schema(
        SDL,
        custom_scalars={
            "Money": st.sampled_from(["0", "12.50", "-1", "1e40", "3.333", "abc"]).map(String),
            "Date": st.sampled_from(["2026-11-23", "not a date"]).map(String),
            "DateTime": st.just("2026-11-23T00:00:00+08:00").map(String),
            "Upload": st.just("not a file").map(String),
        },
    )
)
def test_generated_operations_never_fault(document: str) -> None:
    response = run(document)
    assert response.status_code < 500, (document, response.text)
    body = response.text
    assert "INTERNAL_ERROR" not in body, (document, body)
    assert not any(leak in body for leak in LEAKS), (document, body)

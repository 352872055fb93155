from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from gateway.common.auth import mint_token
from gateway.edge.app import create_app
from gateway.ops.config import AuthSettings, Settings
from gateway.provinces.federated import adapter_classes, sandbox_factory
from sandbox.engine import ProvinceSystem

# --store=postgresql: every gateway on PostgreSQL (tests/stores.py)
pytest_plugins = ["tests.stores"]

ROOT = Path(__file__).resolve().parent.parent
ROSTER: dict[str, Any] = json.loads((ROOT / "fixtures" / "roster.json").read_text("utf-8"))
PEOPLE: dict[str, dict[str, Any]] = {p["key"]: p for p in ROSTER["people"]}


# 王建国's first eight eligible relatives, with their relation to him: Hebei's cap is eight
WANG_EIGHT = [
    ("hb_li_xiuying", "SPOUSE"),
    ("hb_wang_deming", "PARENT"),
    ("hb_zhao_guilan", "PARENT"),
    ("hb_wang_lei", "CHILD"),
    ("hb_wang_jing", "CHILD"),
    ("hb_wang_peng", "CHILD"),
    ("hb_wang_fang", "CHILD"),
    ("hb_wang_hao", "CHILD"),
]


# Insured in an area no adapter will ever serve, on purpose (Hong Kong's 810000): the
# tests' person "insured nowhere", whichever provinces are installed
NOWHERE = "hk_chen_dawen"


def province_codes() -> set[str]:
    """The codes of the provinces installed (derived, never listed: another province
    installed must not break a test)."""
    return {cls.code for cls in adapter_classes().values()}


def person(key: str) -> dict[str, Any]:
    """A roster person by key, e.g. ``person("hb_wang_jianguo")["certNo"]``."""
    return PEOPLE[key]


BIND_MUTUAL_AID = """mutation Bind($input: BindMutualAidInput!) {
  bindMutualAid(input: $input) {
    binding { id status } errors { code field } dryRun expectedStatus
  }
}"""


class GraphQL:
    """Posts operations to the gateway as a roster person (by key) or anonymously."""

    def __init__(self, client: httpx.AsyncClient, auth: AuthSettings) -> None:
        self.client = client
        self.auth = auth

    def token(self, key: str) -> str:
        if self.auth.asymmetric:  # production: as the identity provider signs them
            from tests.keys import provider_token

            return provider_token(PEOPLE[key]["certNo"], self.auth)
        return mint_token(PEOPLE[key]["certNo"], self.auth)

    async def bind(
        self, authorizer: str, relative: str, relation: str, **extra: Any
    ) -> dict[str, Any]:
        """``bindMutualAid`` as ``authorizer`` for a roster ``relative`` under their own
        name, the commitment letter signed (``extra`` adds or replaces input fields):
        the payload."""
        given = {
            "beneficiaryCertNo": PEOPLE[relative]["certNo"],
            "beneficiaryName": PEOPLE[relative]["name"],
            "relation": relation,
            "commitmentSigned": True,
            **extra,
        }
        result = await self(BIND_MUTUAL_AID, {"input": given}, as_=authorizer)
        assert "errors" not in result, result
        payload: dict[str, Any] = result["data"]["bindMutualAid"]
        return payload

    async def __call__(
        self,
        query: str,
        variables: dict[str, Any] | None = None,
        *,
        as_: str | None = None,
        lang: str | None = None,
        token: str | None = None,
    ) -> dict[str, Any]:
        headers = {}
        if as_ is not None:
            token = self.token(as_)
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        if lang is not None:
            headers["Accept-Language"] = lang
        response = await self.client.post(
            "/graphql", json={"query": query, "variables": variables or {}}, headers=headers
        )
        assert response.status_code == 200, response.text
        result: dict[str, Any] = response.json()
        return result


class Recording(httpx.AsyncBaseTransport):
    """Forwards to a province's sandbox; counts requests and how many overlap."""

    def __init__(self, app: Starlette, delay: float = 0.0) -> None:
        self.inner = httpx.ASGITransport(app=app)
        self.delay = delay
        self.calls = 0
        self.in_flight = 0
        self.peak = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.calls += 1
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            await asyncio.sleep(self.delay)
            return await self.inner.handle_async_request(request)
        finally:
            self.in_flight -= 1


class Sandboxes:
    """Every province's sandbox in memory, each behind a `Recording` transport; used
    as ``async with Sandboxes() as boxes: await boxes.start()``, which stops them."""

    def __init__(self) -> None:
        self.transports: dict[str, Recording] = {}
        self._stack = contextlib.AsyncExitStack()

    async def __aenter__(self) -> Sandboxes:
        await self._stack.__aenter__()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._stack.aclose()

    async def start(self, delay: float = 0.0) -> None:
        for name in adapter_classes():
            app = sandbox_factory(name)(data_dir=None)
            await self._stack.enter_async_context(app.router.lifespan_context(app))
            self.transports[name] = Recording(app, delay)

    @property
    def calls(self) -> int:
        return sum(t.calls for t in self.transports.values())


class Switch(httpx.AsyncBaseTransport):
    """A province's sandbox behind a switch: ``mode`` is how the next requests fare
    (those ``only`` picks, when set: the others pass)."""

    def __init__(self, app: Starlette) -> None:
        self.inner = httpx.ASGITransport(app=app)
        self.mode = "ok"
        self.only: Callable[[httpx.Request], bool] | None = None
        self.calls = 0
        self.reached = asyncio.Event()  # a request the mode applies to got this far

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.calls += 1
        mode = self.mode if self.only is None or self.only(request) else "ok"
        if mode != "ok":
            self.reached.set()
        if mode == "refuse":
            raise httpx.ConnectError("connection refused")
        if mode == "down":
            return httpx.Response(503, text="Service Unavailable")
        if mode == "garble":
            return httpx.Response(200, content=b"\x00<<not an answer")
        if mode == "hang":
            await asyncio.Event().wait()
        response = await self.inner.handle_async_request(request)
        await response.aread()
        if mode == "lose":  # carried out; the answer is lost on the way back
            raise httpx.ReadError("connection reset by peer")
        if mode == "lose-and-hang":  # carried out; the answer never comes
            await asyncio.Event().wait()
        return response


class Provinces:
    """The three sandboxes in memory (kept across gateway restarts), each behind a switch."""

    def __init__(self) -> None:
        self.apps: dict[str, Starlette] = {}
        self.switches: dict[str, Switch] = {}

    def system(self, name: str) -> ProvinceSystem:
        system: ProvinceSystem = self.apps[name].state.system
        return system

    async def bindings(self, name: str, key: str) -> list[dict[str, Any]]:
        return await self.system(name).bindings_of([person(key)["certNo"]])


async def stored(
    app: Starlette, sql: str, parameters: tuple[Any, ...] = ()
) -> list[tuple[Any, ...]]:
    """What the gateway's store holds, read (or written) through its own transaction."""
    async with app.state.services.store.transaction() as db:
        return [tuple(row) for row in await db.fetch(sql, parameters)]


@contextlib.asynccontextmanager
async def gateway(
    transports: dict[str, httpx.AsyncBaseTransport], settings: Settings | None = None
) -> AsyncIterator[GraphQL]:
    settings = settings or Settings(data_dir=None)
    app = create_app(settings, transports=transports)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as client,
    ):
        yield GraphQL(client, settings.auth)


@pytest.fixture
def settings() -> Settings:
    return Settings(data_dir=None)


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[Starlette]:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        yield app


@pytest.fixture
async def gql(app: Starlette, settings: Settings) -> AsyncIterator[GraphQL]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
        yield GraphQL(client, settings.auth)


# A policy date when every province allows near relatives and none binds across
# provinces yet (the 2026 rules' dates are later): the era before cross-province aid.
BEFORE_ACROSS = dt.date(2025, 6, 1)


@pytest.fixture
async def gql_2025() -> AsyncIterator[GraphQL]:
    """The gateway (and its in-process sandboxes) on `BEFORE_ACROSS`."""
    async with gateway({}, Settings(data_dir=None, policy_date=BEFORE_ACROSS)) as gql:
        yield gql


@pytest.fixture
async def provinces() -> AsyncIterator[Provinces]:
    """The three sandboxes in memory, each behind a `Switch` set to ``ok``."""
    found = Provinces()
    async with contextlib.AsyncExitStack() as stack:
        for name in adapter_classes():
            app = sandbox_factory(name)(data_dir=None)
            await stack.enter_async_context(app.router.lifespan_context(app))
            found.apps[name] = app
            found.switches[name] = Switch(app)
        yield found

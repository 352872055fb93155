"""Fault mode of the sandbox provinces (sandbox/faults.py) and the serve helpers."""

from __future__ import annotations

import asyncio
import json
import math
import random
import signal
import subprocess
import time
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gateway.provinces.federated import sandbox_factory, sandbox_names
from sandbox.app import sandbox_app
from sandbox.faults import OFF, DroppedConnection, Faults, faults_of, set_faults
from sandbox.hebei import SEED as RULES
from sandbox.serve import free_port, serving, spawn_sandbox, stop, wait_ready, wait_ready_async

ROSTER = Path(__file__).resolve().parent.parent / "fixtures" / "roster.json"


class Counted:
    """A sandbox app (fault mode included) whose routes count what reached them."""

    def __init__(self, faults: Faults | None = None) -> None:
        self.seen: list[bytes] = []
        self.app = sandbox_app(
            "counted",
            RULES,
            [
                Route("/write", self.write, methods=["POST"]),
                Route("/xml", self.xml, methods=["GET"]),
                Route("/other/read", self.read, methods=["GET"]),
            ],
            faults=faults,
        )

    async def write(self, request: Request) -> Response:
        self.seen.append(await request.body())
        return JSONResponse({"seen": len(self.seen), "echo": self.seen[-1].decode()}, 201)

    async def xml(self, request: Request) -> Response:
        self.seen.append(b"")
        return Response("<answer><code>0</code></answer>", media_type="application/xml")

    async def read(self, request: Request) -> Response:
        return JSONResponse({"ok": True})

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.app), base_url="http://counted"
        )

    def set(self, **settings: Any) -> None:
        set_faults(self.app, Faults(**settings))


@pytest.fixture
async def counted() -> AsyncIterator[tuple[Counted, httpx.AsyncClient]]:
    sandbox = Counted()
    async with sandbox.client() as client:
        yield sandbox, client


@pytest.fixture
async def served() -> AsyncIterator[tuple[Counted, httpx.AsyncClient]]:
    """The same over a real uvicorn server on loopback (no lifespan: no database)."""
    sandbox = Counted()
    async with (
        serving(sandbox.app, lifespan="off", shutdown_timeout=0.5) as url,
        httpx.AsyncClient(base_url=url, timeout=5) as client,
    ):
        yield sandbox, client


# --- the settings ---------------------------------------------------------------


def test_off_by_default() -> None:
    assert not Faults().active
    assert Faults() == OFF
    assert faults_of(Counted().app) == OFF
    for name in sandbox_names():
        assert faults_of(sandbox_factory(name)()) == OFF
    assert not Faults(paths=("/x",), seed=1).active  # they only narrow and seed faults


async def test_no_faults_no_change(counted: tuple[Counted, httpx.AsyncClient]) -> None:
    _, client = counted
    answer = await client.post("/write", content=b"hello")
    assert (answer.status_code, answer.json()) == (201, {"seen": 1, "echo": "hello"})


def test_the_settings_round_trip_through_json() -> None:
    faults = Faults(
        latency_ms=20,
        jitter_ms=5.5,
        error_rate=0.1,
        drop_rate=0.2,
        malformed_rate=0.3,
        hang=True,
        paths=("/fsi", "/api"),
        seed=7,
    )
    text = json.dumps(faults.to_json())
    assert json.loads(text)["paths"] == ["/fsi", "/api"]
    assert Faults.from_json(json.loads(text)) == faults
    assert Faults.from_json({}) == OFF
    assert OFF.updated({"drop_rate": 1}) == Faults(drop_rate=1.0)


@pytest.mark.parametrize(
    "settings",
    [
        {"error_rate": 1.5},
        {"drop_rate": -0.1},
        {"malformed_rate": math.nan},
        {"error_rate": True},
        {"error_rate": "0.5"},
        {"error_rate": 0.6, "drop_rate": 0.5},
        {"latency_ms": -1},
        {"jitter_ms": math.inf},
        {"hang": 1},
        {"paths": "/fsi"},
        {"paths": ["fsi"]},
        {"seed": 1.5},
        {"seed": False},
    ],
)
def test_invalid_settings_are_refused(settings: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=next(iter(settings)).split("_")[0]):
        Faults.from_json(settings)


def test_unknown_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown fault settings"):
        Faults.from_json({"drop": 1})
    with pytest.raises(ValueError, match="JSON object"):
        Faults.from_json([1])


def test_set_faults_needs_the_middleware() -> None:
    with pytest.raises(ValueError, match="FaultMiddleware"):
        set_faults(Starlette(), Faults(error_rate=1))


# --- the faults, in-process -----------------------------------------------------


async def test_error_rate_answers_503_without_the_app(
    counted: tuple[Counted, httpx.AsyncClient],
) -> None:
    sandbox, client = counted
    sandbox.set(error_rate=1)
    answer = await client.post("/write", content=b"x")
    assert answer.status_code == 503
    assert "fault" in answer.text
    assert sandbox.seen == []


async def test_malformed_answers_garbage_after_the_app_ran(
    counted: tuple[Counted, httpx.AsyncClient],
) -> None:
    sandbox, client = counted
    sandbox.set(malformed_rate=1)
    answer = await client.post("/write", content=b"x")
    assert answer.status_code == 200  # the app said 201
    assert answer.headers["content-type"] == "application/json"
    assert int(answer.headers["content-length"]) == len(answer.content)
    with pytest.raises((json.JSONDecodeError, UnicodeDecodeError)):
        answer.json()
    answer = await client.get("/xml")
    assert answer.status_code == 200
    with pytest.raises(ET.ParseError):
        ET.fromstring(answer.content)  # noqa: S314 (our own test answer)
    assert sandbox.seen == [b"x", b""]


async def test_drop_in_process_raises_a_transport_error(
    counted: tuple[Counted, httpx.AsyncClient],
) -> None:
    sandbox, client = counted
    sandbox.set(drop_rate=1)
    with pytest.raises(httpx.RemoteProtocolError) as caught:
        await client.post("/write", content=b"x")
    assert isinstance(caught.value, DroppedConnection)
    assert sandbox.seen == [b"x"]  # the write took effect


async def test_latency_and_jitter_are_added(counted: tuple[Counted, httpx.AsyncClient]) -> None:
    sandbox, client = counted
    sandbox.set(latency_ms=120)
    started = time.monotonic()
    assert (await client.post("/write")).status_code == 201
    assert time.monotonic() - started >= 0.12
    sandbox.set(latency_ms=30, jitter_ms=60, seed=3)
    expected = 30 + random.Random(3).uniform(0, 60)  # noqa: S311
    started = time.monotonic()
    assert (await client.post("/write")).status_code == 201
    assert time.monotonic() - started >= expected / 1000


async def test_seeded_rates_repeat(counted: tuple[Counted, httpx.AsyncClient]) -> None:
    sandbox, client = counted

    async def pattern() -> list[int]:
        return [(await client.get("/xml")).status_code for _ in range(40)]

    sandbox.set(error_rate=0.5, seed=42)
    first = await pattern()
    draws = random.Random(42)  # noqa: S311
    assert first == [503 if draws.random() < 0.5 else 200 for _ in range(40)]
    assert 5 < first.count(503) < 35
    # replacing the settings (here through the admin route) restarts the generator
    assert (await client.put("/_faults", json={"seed": 42})).status_code == 200
    assert await pattern() == first


async def test_exclusive_rates_split_the_draws(
    counted: tuple[Counted, httpx.AsyncClient],
) -> None:
    sandbox, client = counted
    sandbox.set(error_rate=0.3, malformed_rate=0.7, seed=1)
    statuses = {(await client.get("/xml")).status_code for _ in range(30)}
    assert statuses == {503, 200}
    assert len(sandbox.seen) > 0  # malformed answers ran the app


async def test_paths_narrow_the_faults(counted: tuple[Counted, httpx.AsyncClient]) -> None:
    sandbox, client = counted
    sandbox.set(error_rate=1, paths=("/other",))
    assert (await client.get("/other/read")).status_code == 503
    assert (await client.get("/xml")).status_code == 200


async def test_every_dialect_carries_fault_mode() -> None:
    for name in sandbox_names():
        app = sandbox_factory(name)()
        set_faults(app, Faults(error_rate=1))
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://p") as client:
            assert (await client.post("/anything", content=b"{}")).status_code == 503
            assert (await client.get("/_faults")).json()["error_rate"] == 1


async def test_sandbox_app_takes_faults_at_start() -> None:
    sandbox = Counted(Faults(error_rate=1))
    async with sandbox.client() as client:
        assert (await client.get("/xml")).status_code == 503


# --- the admin route --------------------------------------------------------------


async def test_admin_route_reads_updates_and_clears(
    counted: tuple[Counted, httpx.AsyncClient],
) -> None:
    sandbox, client = counted
    assert (await client.get("/_faults")).json() == OFF.to_json()
    answer = await client.put("/_faults", json={"latency_ms": 5, "drop_rate": 0.25})
    assert answer.status_code == 200
    assert answer.json() == Faults(latency_ms=5, drop_rate=0.25).to_json()
    answer = await client.put("/_faults", json={"paths": ["/xml"]})  # partial: the rest stays
    assert answer.json() == Faults(latency_ms=5, drop_rate=0.25, paths=("/xml",)).to_json()
    assert faults_of(sandbox.app) == Faults(latency_ms=5, drop_rate=0.25, paths=("/xml",))
    answer = await client.delete("/_faults")
    assert (answer.status_code, answer.json()) == (200, OFF.to_json())
    assert faults_of(sandbox.app) == OFF


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b'{"error_rate": 2}', 422),
        (b'{"error_rate": 0.7, "drop_rate": 0.7}', 422),
        (b'{"hang": "yes"}', 422),
        (b'{"nonsense": 1}', 422),
        (b"[1, 2]", 422),
        (b"{not json", 400),
    ],
)
async def test_admin_route_validates(
    counted: tuple[Counted, httpx.AsyncClient], body: bytes, status: int
) -> None:
    sandbox, client = counted
    sandbox.set(latency_ms=1)
    answer = await client.put("/_faults", content=body)
    assert answer.status_code == status
    assert answer.json()["error"]
    assert faults_of(sandbox.app) == Faults(latency_ms=1)  # unchanged


async def test_admin_route_is_never_faulted(counted: tuple[Counted, httpx.AsyncClient]) -> None:
    sandbox, client = counted
    sandbox.set(error_rate=0.5, malformed_rate=0.5, hang=True, latency_ms=10_000)
    async with asyncio.timeout(2):
        answer = await client.get("/_faults")
    assert answer.json()["hang"] is True
    assert (await client.post("/_faults")).status_code == 405


# --- over a real server (uvicorn on 127.0.0.1) ----------------------------------------


async def test_drop_over_http_closes_the_connection(
    served: tuple[Counted, httpx.AsyncClient],
) -> None:
    sandbox, client = served
    sandbox.set(drop_rate=1)
    with pytest.raises(httpx.RemoteProtocolError):  # a transport error, not an HTTP 500
        await client.post("/write", content=b"paid")
    assert sandbox.seen == [b"paid"]  # but the write took effect
    set_faults(sandbox.app, None)
    assert (await client.post("/write", content=b"again")).json()["seen"] == 2


async def test_error_and_malformed_over_http(served: tuple[Counted, httpx.AsyncClient]) -> None:
    sandbox, client = served
    sandbox.set(error_rate=1)
    assert (await client.post("/write")).status_code == 503
    sandbox.set(malformed_rate=1)
    answer = await client.post("/write", content=b"x")
    assert answer.status_code == 200
    with pytest.raises((json.JSONDecodeError, UnicodeDecodeError)):
        answer.json()


async def test_hang_holds_until_the_client_gives_up(
    served: tuple[Counted, httpx.AsyncClient],
) -> None:
    sandbox, client = served
    sandbox.set(hang=True, paths=("/write",))
    started = time.monotonic()
    with pytest.raises(httpx.ReadTimeout):
        await client.post("/write", content=b"never", timeout=0.3)
    assert time.monotonic() - started < 1
    # meanwhile other paths and the admin route answer
    assert (await client.get("/other/read")).status_code == 200
    assert (await client.get("/_faults")).json()["hang"] is True
    assert (await client.delete("/_faults")).status_code == 200
    await asyncio.sleep(0.15)
    assert sandbox.seen == []  # the client went away: the app never saw it


async def test_hang_released_lets_the_request_through(
    served: tuple[Counted, httpx.AsyncClient],
) -> None:
    sandbox, client = served
    sandbox.set(hang=True)
    held = asyncio.create_task(client.post("/write", content=b"held body", timeout=3))
    await asyncio.sleep(0.2)
    assert not held.done()
    assert sandbox.seen == []
    answer = await client.put("/_faults", json={"hang": False})
    assert answer.status_code == 200
    async with asyncio.timeout(2):
        released = await held
    assert released.json() == {"seen": 1, "echo": "held body"}  # the body was kept


async def test_serving_runs_a_dialect_with_its_lifespan() -> None:
    app = sandbox_factory("hebei")()
    async with serving(app) as url, httpx.AsyncClient(base_url=url, timeout=5) as client:
        assert url.startswith("http://127.0.0.1:")
        await wait_ready_async(url, timeout=5)
        assert (await client.put("/_faults", json={"error_rate": 1})).status_code == 200
        assert (await client.post("/fsi/api/rsfComIfsService/callService")).status_code == 503
    assert app.state.system is not None  # the lifespan ran


async def test_spawn_sandbox_passes_the_flags(tmp_path: Path) -> None:
    port = free_port()
    process = spawn_sandbox(
        "henan",
        port,
        tmp_path,
        ["--error-rate", "0.25", "--latency-ms", "3", "--fault-seed", "9", "--roster", str(ROSTER)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        await asyncio.to_thread(wait_ready, url, 20, process=process)
        async with httpx.AsyncClient(timeout=5) as client:
            settings = (await client.get(f"{url}/_faults")).json()
        assert settings == Faults(error_rate=0.25, latency_ms=3, seed=9).to_json()
        assert (tmp_path / "sandbox" / "henan.sqlite3").exists()
    finally:
        # uvicorn ends gracefully on SIGTERM, then re-raises it: -15
        assert stop(process) in {0, -signal.SIGTERM}


def test_wait_ready_fails_fast_when_the_process_died(tmp_path: Path) -> None:
    process = spawn_sandbox(
        "hebei", free_port(), tmp_path, ["--error-rate", "3"], stderr=subprocess.DEVNULL
    )
    process.wait(timeout=20)
    with pytest.raises(RuntimeError, match="exited with 2"):
        wait_ready("http://127.0.0.1:9", 5, process=process)

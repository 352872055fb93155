"""The gateway killed (SIGKILL) with writes in flight, then started again: checked
against the provinces' own records, nothing is lost and nothing is doubled.

Real processes on loopback: the three sandbox provinces (Hebei answering slowly, so
that writes are in flight) and the gateway, each started by its own CLI. Nothing waits
by the clock: each step waits for the state it needs (`until`, with a deadline), and
where that state is the traffic to Hebei, the gateway reaches Hebei through a `Door`
in this process that counts (and, when asked, holds) what passes.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import signal
import socket
import sqlite3
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from adapters.base import BindingStatus
from adapters.hebei import HebeiAdapter
from adapters.jiangsu import JiangsuAdapter
from gateway.common.auth import INSTITUTION, Institution, mint_token
from gateway.ops.config import AuthSettings
from sandbox.serve import (
    LOOPBACK,
    free_port,
    serving,
    spawn_gateway,
    spawn_sandbox,
    stop,
    wait_ready,
)
from tests.conftest import WANG_EIGHT, person

AUTHORIZER = "hb_wang_jianguo"
CASHIER = "130102196001010011"
RELATIVES = WANG_EIGHT  # the cap is eight
BIND = """mutation($i: BindMutualAidInput!) { bindMutualAid(input: $i) {
  binding { id status } errors { code } status } }"""
DEADLINE = 20.0  # seconds: the longest any step waits for the state it needs
SETTLE = """mutation($i: SettleInput!) { settle(input: $i) {
  settlement { id ownAccountPaid } errors { code } status idempotencyKey } }"""


async def until(
    check: Callable[[], bool | Awaitable[bool]],
    what: str,
    *,
    within: float = DEADLINE,
    every: float = 0.02,
) -> None:
    """Wait until ``check()`` holds, asking again ``every`` so many seconds (a client
    sending again paces itself: 0.2); fail after ``within`` seconds."""
    deadline = time.monotonic() + within
    while True:
        held = check()
        if inspect.isawaitable(held):
            held = await held
        if held:
            return
        if time.monotonic() > deadline:
            pytest.fail(f"not within {within} s: {what}")
        await asyncio.sleep(every)


# hop-by-hop and coding headers: the door's own client speaks to the province
_NOT_PASSED = {"host", "content-length", "transfer-encoding", "connection", "accept-encoding"}


class Door:
    """The province's door, in this process: each request the gateway sends passes here
    on its way to the province and back. ``came`` counts requests received whole (the
    province gets them, whoever waits for the answer), ``inside`` those the province has
    not answered yet; while ``open`` is clear, requests wait here, unsent."""

    def __init__(self, upstream: str) -> None:
        self.came = 0
        self.inside = 0
        self.open = asyncio.Event()
        self.open.set()
        self._changed = asyncio.Condition()
        self._upstream = upstream
        self._client: httpx.AsyncClient | None = None
        self.app = Starlette(
            routes=[Route("/{path:path}", self._pass, methods=["GET", "POST", "PUT", "DELETE"])],
            lifespan=self._lifespan,
        )

    @contextlib.asynccontextmanager
    async def _lifespan(self, app: Starlette) -> AsyncIterator[None]:
        async with httpx.AsyncClient(base_url=self._upstream, timeout=30) as client:
            self._client = client
            yield

    async def _count(self, came: int, inside: int) -> None:
        async with self._changed:
            self.came += came
            self.inside += inside
            self._changed.notify_all()

    async def _pass(self, request: Request) -> Response:
        assert self._client is not None
        body = await request.body()  # whole, or the gateway went away: then never sent
        await self._count(1, 1)
        try:
            await self.open.wait()
            headers = {k: v for k, v in request.headers.items() if k not in _NOT_PASSED}
            answer = await self._client.request(
                request.method, request.url.path, content=body, headers=headers
            )
        finally:
            await self._count(0, -1)
        passed = {k: v for k, v in answer.headers.items() if k not in _NOT_PASSED}
        passed.pop("content-encoding", None)
        return Response(answer.content, answer.status_code, headers=passed)

    async def wait_for(self, predicate: Callable[[], bool]) -> None:
        """Wait until ``predicate()`` holds of the counts (at most `DEADLINE` seconds)."""
        async with asyncio.timeout(DEADLINE), self._changed:
            await self._changed.wait_for(predicate)


@contextlib.contextmanager
def quiet(process: subprocess.Popen[bytes]) -> Iterator[subprocess.Popen[bytes]]:
    try:
        yield process
    finally:
        stop(process, kill=True)


@pytest.fixture
def provinces(tmp_path: Path) -> Iterator[dict[str, str]]:
    urls: dict[str, str] = {}
    with contextlib.ExitStack() as stack:
        for name, extra in (("hebei", ["--latency-ms", "400"]), ("jiangsu", []), ("henan", [])):
            port = free_port()
            process = stack.enter_context(
                quiet(
                    spawn_sandbox(
                        name, port, tmp_path / "provinces", extra, stderr=subprocess.DEVNULL
                    )
                )
            )
            urls[name] = f"http://127.0.0.1:{port}"
            wait_ready(urls[name], process=process)
        yield urls


@pytest.fixture
async def hebei(provinces: dict[str, str]) -> AsyncIterator[tuple[Door, dict[str, str]]]:
    """The door to Hebei, and every province's URL as the gateway is to reach it."""
    door = Door(provinces["hebei"])
    async with serving(door.app) as url:
        yield door, {**provinces, "hebei": url}


def refuses_connections(port: int) -> bool:
    try:
        with socket.create_connection((LOOPBACK, port), timeout=1):
            return False
    except OSError:
        return True


def outbox(store: Path) -> dict[str, int]:
    """The gateway's writes by state, read from its store (a running gateway's too)."""
    if not store.exists():
        return {}
    with contextlib.closing(sqlite3.connect(store, timeout=5)) as db:
        try:
            rows = db.execute("SELECT state, COUNT(*) FROM outbox GROUP BY state").fetchall()
        except sqlite3.OperationalError:  # not created yet
            return {}
    return {str(state): int(n) for state, n in rows}


def gateway_config(tmp_path: Path, urls: dict[str, str]) -> Path:
    config = tmp_path / "gongji.toml"
    lines = ["[resilience]", "reconcile_interval = 0.2", "pending_after = 60", ""]
    for name, url in urls.items():
        lines += [f"[provinces.{name}]", f'base_url = "{url}"', "timeout = 10", ""]
    config.write_text("\n".join(lines), encoding="utf-8")
    return config


def bind_variables(relative: str, relation: str) -> dict[str, Any]:
    return {
        "i": {
            "beneficiaryCertNo": person(relative)["certNo"],
            "beneficiaryName": person(relative)["name"],
            "relation": relation,
            "idempotencyKey": f"kill-{relative}",
        }
    }


async def test_a_gateway_killed_with_writes_in_flight_loses_nothing_and_doubles_nothing(
    tmp_path: Path, provinces: dict[str, str], hebei: tuple[Door, dict[str, str]]
) -> None:
    door, reached = hebei
    config = gateway_config(tmp_path, reached)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    token = mint_token(person(AUTHORIZER)["certNo"], AuthSettings())
    headers = {"Authorization": f"Bearer {token}"}

    def start() -> subprocess.Popen[bytes]:
        process = spawn_gateway(config, port, tmp_path / "gateway", stderr=subprocess.DEVNULL)
        wait_ready(url, process=process, path="/readyz")
        return process

    first = await asyncio.to_thread(start)  # (the door goes on serving meanwhile)
    try:
        async with httpx.AsyncClient(base_url=url, headers=headers, timeout=30) as client:
            # where he is insured is remembered first, as it would be in real use
            assert (await client.post("/graphql", json={"query": "{ me { name } }"})).is_success
            sent = [
                asyncio.create_task(
                    client.post("/graphql", json={"query": BIND, "variables": bind_variables(*r)})
                )
                for r in RELATIVES
            ]
            # killed once writes are recorded and on their way (Hebei takes 400 ms each)
            store = tmp_path / "gateway" / "gateway.sqlite3"
            await until(lambda: outbox(store).get("PENDING", 0) >= 3, "three writes pending")
            first.send_signal(signal.SIGKILL)
            first.wait(timeout=10)
            answered = await asyncio.gather(*sent, return_exceptions=True)
        lost = [a for a in answered if isinstance(a, BaseException)]
        assert lost, "the kill came after every answer: nothing was in flight"
    finally:
        stop(first, kill=True)
    # what reached Hebei is carried out there: every request it got is answered
    await door.wait_for(lambda: door.inside == 0)
    left = outbox(tmp_path / "gateway" / "gateway.sqlite3")
    assert left.get("PENDING", 0) >= 3, left  # recorded, the answer never heard
    async with httpx.AsyncClient(base_url=provinces["hebei"], timeout=30) as upstream:
        done_meanwhile = await HebeiAdapter(upstream).bindings_of([person(AUTHORIZER)["certNo"]])
    assert done_meanwhile, "no write reached the province before the kill"

    second = await asyncio.to_thread(start)  # its reconciler resumes what the first left
    try:
        async with httpx.AsyncClient(base_url=url, headers=headers, timeout=30) as client:
            outcomes: dict[str, dict[str, Any]] = {}

            async def all_done() -> bool:  # the client sends each again with its key
                waiting = [r for r in RELATIVES if r[0] not in outcomes]
                answers = await asyncio.gather(
                    *(
                        client.post(
                            "/graphql", json={"query": BIND, "variables": bind_variables(*r)}
                        )
                        for r in waiting
                    )
                )
                for (relative, _), answer in zip(waiting, answers, strict=True):
                    payload = answer.json()["data"]["bindMutualAid"]
                    if payload["status"] == "DONE":
                        outcomes[relative] = payload
                return len(outcomes) == len(RELATIVES)

            await until(all_done, "every binding DONE", within=30, every=0.2)
            ready = (await client.get("/readyz")).json()
            records = (
                await client.post(
                    "/graphql",
                    json={
                        "query": "{ me { authorizationRecords(first: 50) { edges { node {"
                        " event } } } } }"
                    },
                )
            ).json()
    finally:
        await asyncio.to_thread(stop, second)

    # nothing lost: every request ended in a binding, none refused as a duplicate
    assert sorted(outcomes) == sorted(r for r, _ in RELATIVES)
    assert all(o["errors"] == [] and o["binding"]["status"] == "ACTIVE" for o in outcomes.values())
    assert ready["status"] == "ready"

    # nothing doubled, as the province itself records it
    async with httpx.AsyncClient(base_url=provinces["hebei"], timeout=30) as upstream:
        bindings = await HebeiAdapter(upstream).bindings_of([person(AUTHORIZER)["certNo"]])
    live = [b for b in bindings if b.status is BindingStatus.ACTIVE]
    beneficiaries = sorted(b.beneficiary.cert_no for b in live)
    assert beneficiaries == sorted(person(r)["certNo"] for r, _ in RELATIVES)
    assert len(bindings) == len(RELATIVES)
    # and the gateway journaled each creation once
    edges = records["data"]["me"]["authorizationRecords"]["edges"]
    assert sorted(e["node"]["event"] for e in edges) == ["CREATED"] * len(RELATIVES)


async def test_a_stopping_gateway_answers_the_requests_in_flight(
    tmp_path: Path, hebei: tuple[Door, dict[str, str]]
) -> None:
    """SIGTERM: the gateway stops taking requests, answers those it has (one waits for
    Hebei, held at the door until the gateway no longer takes connections), then stops
    its reconciler and exits."""
    door, reached = hebei
    config = gateway_config(tmp_path, reached)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    token = mint_token(person(AUTHORIZER)["certNo"], AuthSettings())
    process = spawn_gateway(config, port, tmp_path / "gateway", stderr=subprocess.DEVNULL)
    try:
        await asyncio.to_thread(wait_ready, url, process=process, path="/readyz")
        async with httpx.AsyncClient(
            base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=30
        ) as client:
            door.open.clear()
            before = door.came
            asked = asyncio.create_task(client.post("/graphql", json={"query": "{ me { name } }"}))
            await door.wait_for(lambda: door.came > before)  # in flight: Hebei is asked
            process.send_signal(signal.SIGTERM)
            await until(lambda: refuses_connections(port), "the gateway takes no more requests")
            door.open.set()  # Hebei answers only now
            answer = await asked
        assert answer.status_code == 200
        assert answer.json() == {"data": {"me": {"name": person(AUTHORIZER)["name"]}}}
        # a clean stop: uvicorn re-raises the signal once it has shut down
        assert await asyncio.to_thread(process.wait, 10) == -signal.SIGTERM
    finally:
        stop(process, kill=True)


async def test_a_write_outliving_the_shutdown_grace_is_answered_submitted_then_resumed(
    tmp_path: Path, provinces: dict[str, str]
) -> None:
    """SIGTERM while a bill is on its way to Jiangsu (whose settlements now take 2.5 s),
    and the grace (1 s) runs out first: uvicorn cancels the request. The hospital hears
    SUBMITTED, as JSON (not a plain-text 500, which reads as "not charged": Jiangsu goes
    on to settle it). The next gateway resumes the write, and the same bill key gets the
    settlement, charged once."""
    config = tmp_path / "gongji.toml"
    lines = ["[resilience]", "reconcile_interval = 0.2", "pending_after = 60", "shutdown_grace = 1"]
    for name, base in provinces.items():
        lines += [f"[provinces.{name}]", f'base_url = "{base}"', "timeout = 10"]
    config.write_text("\n".join(lines) + "\n", encoding="utf-8")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    patient = person("js_chen_zhiqiang")["certNo"]  # 5000.00 in his own account
    hospital = Institution("H32010001", "HOSPITAL")
    token = mint_token(
        CASHIER, AuthSettings(), roles=frozenset({INSTITUTION}), institution=hospital
    )
    headers = {"Authorization": f"Bearer {token}"}
    bill = {
        "i": {
            "patientCertNo": patient,
            "medicalType": "OUTPATIENT",
            "totalAmount": "300.00",
            "fundPaid": "100.00",
            "idempotencyKey": "GRACE-0001",
        }
    }

    def start() -> subprocess.Popen[bytes]:
        process = spawn_gateway(config, port, tmp_path / "gateway", stderr=subprocess.DEVNULL)
        wait_ready(url, process=process, path="/readyz")
        return process

    async def jiangsu_faults(method: str, **faults: Any) -> None:
        async with httpx.AsyncClient(base_url=provinces["jiangsu"], timeout=10) as jiangsu:
            assert (await jiangsu.request(method, "/_faults", json=faults or None)).is_success

    first = start()
    try:
        async with httpx.AsyncClient(base_url=url, headers=headers, timeout=30) as client:
            # slow settlements only: the patient is found (and remembered) at once
            await jiangsu_faults("PUT", latency_ms=2500, paths=["/api/v1/settlements"])
            sent = asyncio.create_task(
                client.post("/graphql", json={"query": SETTLE, "variables": bill})
            )
            store = tmp_path / "gateway" / "gateway.sqlite3"
            # checked, recorded, on its way to Jiangsu
            await until(lambda: outbox(store).get("PENDING", 0) == 1, "the bill pending")
            first.send_signal(signal.SIGTERM)
            answer = await sent
        assert await asyncio.to_thread(first.wait, 15) == -signal.SIGTERM
    finally:
        stop(first, kill=True)
    assert answer.status_code == 200, answer.text
    assert answer.json() == {
        "data": {
            "settle": {
                "settlement": None,
                "errors": [],
                "status": "SUBMITTED",
                "idempotencyKey": "GRACE-0001",
            }
        }
    }

    await jiangsu_faults("DELETE")
    async with httpx.AsyncClient(base_url=provinces["jiangsu"], timeout=30) as upstream:

        async def settled_at_jiangsu() -> bool:  # its client had gone: it settles all the same
            return bool(await JiangsuAdapter(upstream).settlements_of([patient]))

        await until(settled_at_jiangsu, "Jiangsu has settled the bill")
    second = start()  # its reconciler resumes the write left in flight
    try:
        async with httpx.AsyncClient(base_url=url, headers=headers, timeout=30) as client:
            payload: dict[str, Any] = {}

            async def done() -> bool:  # the hospital sends the bill again with its key
                again = await client.post("/graphql", json={"query": SETTLE, "variables": bill})
                payload.update(again.json()["data"]["settle"])
                return bool(payload["status"] == "DONE")

            await until(done, "the bill DONE", every=0.2)
    finally:
        stop(second)
    assert payload["errors"] == []
    assert payload["settlement"]["ownAccountPaid"] == "200.00"
    async with httpx.AsyncClient(base_url=provinces["jiangsu"], timeout=30) as upstream:
        found = await JiangsuAdapter(upstream).find_persons([patient])
    assert found[patient].balance == Decimal("4800.00")  # charged once

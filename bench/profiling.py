"""The gateway in-process, for what a served gateway cannot tell from outside.

* `record`: the upstream requests one dashboard makes, with their start and end
  times, grouped into *waves* (requests sent together; a wave starts once an
  answer of the one before has come back). The load driver replays them
  directly against the sandboxes: the floor a dashboard cannot go below.
  ``side="baseline"`` records the hand-written baseline's the same way
  (`bench.baseline.create_app` with the same recording transports), and
  `request_key` says what a request asks, to compare the two.
* `profile`: cProfile over a number of dashboards, the top functions and the
  gateway's self time by component.

The app is `gateway.edge.app.create_app` with its provinces' transports replaced
(``transports=``) by real HTTP transports to the served sandboxes, wrapped to
record; requests reach it through `httpx.ASGITransport` (so uvicorn's own HTTP
parsing is not in the profile). Its store is a copy of the served gateway's.
"""

from __future__ import annotations

import base64
import contextlib
import cProfile
import dataclasses
import json
import pstats
import re
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from bench import baseline
from gateway.edge.app import create_app
from gateway.ops.config import Settings


@dataclass(slots=True)
class Call:
    province: str
    kind: str
    start: float
    end: float
    request: dict[str, Any]

    def to_json(self, origin: float) -> dict[str, Any]:
        return {
            "province": self.province,
            "kind": self.kind,
            "start_ms": round((self.start - origin) * 1000, 2),
            "end_ms": round((self.end - origin) * 1000, 2),
        }


# What each dialect's request is, in the adapters' own words.
_KINDS = {
    "1101": "find_persons",
    "2701": "relatives",
    "2702": "bindings_of",
    "QueryPerson": "find_persons",
    "QueryRelatives": "relatives",
    "QueryBindings": "bindings_of",
    "QueryFamily": "read_family",
}


def kind_of(request: httpx.Request, body: bytes) -> str:
    """``find_persons``, ``relatives``, ``bindings_of``, ``read_family`` (people and
    bindings in one request), or the dialect's own name."""
    path = request.url.path
    if body.startswith(b"{"):
        with contextlib.suppress(ValueError, AttributeError, TypeError):
            sent = json.loads(body)
            infno = str(sent.get("infno"))
            if infno == "1101" and "mulaid_certno_list" in sent["input"]["data"]:
                return "read_family"  # Hebei: persons and their bindings in one 1101
            return _KINDS.get(infno, f"infno {infno}")
    match = re.search(rb"<service>(\w+)</service>", body)
    if match:
        service = match[1].decode()
        return _KINDS.get(service, service)
    if path.endswith("/relatives"):
        return "relatives"
    if path.endswith("/persons"):
        # Jiangsu: persons, and with authorizationsOf their bindings too
        return "read_family" if "authorizationsOf" in request.url.params else "find_persons"
    if "authorization" in path:
        return "bindings_of"
    return f"{request.method} {path}"


_CERT = re.compile(r"\b\d{17}[\dX]\b")


def request_key(call: Call) -> tuple[str, str, str]:
    """What a recorded request asks, to compare two plans: its province, its kind and
    the ID numbers it names, field by field in order (request ids and times left out)."""
    request = call.request
    body = base64.b64decode(request["body"]).decode("utf-8", "replace")
    named: list[str] = []
    if body.startswith("{"):  # Hebei: the fields of input.data
        with contextlib.suppress(ValueError, KeyError, TypeError, AttributeError):
            data = json.loads(body)["input"]["data"]
            for name in sorted(data):
                named.append(f"{name}=" + ",".join(_CERT.findall(json.dumps(data[name]))))
    elif body.startswith("<"):  # Henan: the elements of <body>, by name
        fields: dict[str, list[str]] = {}
        for name, value in re.findall(r"<(\w+)>([^<]*)</\1>", body.split("<body>", 1)[-1]):
            if _CERT.search(value):
                fields.setdefault(name, []).extend(_CERT.findall(value))
        named += [f"{name}=" + ",".join(certs) for name, certs in sorted(fields.items())]
    url = httpx.URL(request["url"])
    for name, value in sorted(url.params.multi_items()):
        named.append(f"{name}=" + ",".join(_CERT.findall(value)))
    path = _CERT.sub("…", url.path)
    if _CERT.search(url.path):
        named.append("path=" + ",".join(_CERT.findall(url.path)))
    return call.province, f"{call.kind} {request['method']} {path}", "; ".join(named)


class Recording(httpx.AsyncBaseTransport):
    """Real HTTP to a sandbox, each request noted in ``calls`` while ``on``."""

    def __init__(self, province: str, calls: list[Call]) -> None:
        self._inner = httpx.AsyncHTTPTransport()
        self._province = province
        self._calls = calls
        self.on = False

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        body = await request.aread()
        started = time.perf_counter()
        response = await self._inner.handle_async_request(request)
        if self.on:
            self._calls.append(
                Call(
                    province=self._province,
                    kind=kind_of(request, body),
                    start=started,
                    end=time.perf_counter(),
                    request={
                        "method": request.method,
                        "url": str(request.url),
                        "headers": {
                            k: v
                            for k, v in request.headers.items()
                            if k.lower() in ("content-type", "accept")
                        },
                        "body": base64.b64encode(body).decode(),
                    },
                )
            )
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()


@contextlib.asynccontextmanager
async def in_process(
    settings: Settings, data_dir: Path, side: str = "gateway"
) -> AsyncIterator[tuple[httpx.AsyncClient, list[Call], list[Recording]]]:
    """The gateway (or ``side="baseline"``, `bench.baseline`, on the store
    ``data_dir/gateway.sqlite3``) in-process, its provinces over real HTTP, recorded."""
    calls: list[Call] = []
    recorders = {name: Recording(name, calls) for name in settings.provinces}
    app: Any
    if side == "gateway":
        app = create_app(dataclasses.replace(settings, data_dir=data_dir), transports=recorders)
    else:
        app = baseline.create_app(settings, data_dir / "gateway.sqlite3", transports=recorders)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url=f"http://{side}.bench"
        ) as client,
    ):
        yield client, calls, list(recorders.values())


async def dashboard(client: httpx.AsyncClient, token: str, query: str) -> dict[str, Any]:
    """One dashboard: through the gateway's /graphql, or the baseline's /dashboard when
    ``client`` is the baseline's."""
    if client.base_url.host == "baseline.bench":
        response = await client.post("/dashboard", headers={"authorization": f"Bearer {token}"})
    else:
        response = await client.post(
            "/graphql", json={"query": query}, headers={"authorization": f"Bearer {token}"}
        )
    answer: dict[str, Any] = response.json()
    if response.status_code != 200 or answer.get("errors"):
        raise RuntimeError(f"dashboard failed: {response.status_code} {response.text[:500]}")
    return answer


def waves(calls: list[Call]) -> list[list[Call]]:
    """Requests in the order sent, cut where one waited for an answer: a request that
    starts after some request of the current wave has ended begins the next wave."""
    out: list[list[Call]] = []
    for call in sorted(calls, key=lambda c: c.start):
        if out and call.start < min(c.end for c in out[-1]):
            out[-1].append(call)
        else:
            out.append([call])
    return out


async def record(
    settings: Settings, data_dir: Path, token: str, query: str, side: str = "gateway"
) -> tuple[list[list[Call]], float]:
    """The upstream requests of one (warm) dashboard, in waves, and its own duration:
    the gateway's, or the baseline's (``side="baseline"``)."""
    async with in_process(settings, data_dir, side) as (client, calls, recorders):
        await dashboard(client, token, query)  # warm: connections, remembered locations
        for recorder in recorders:
            recorder.on = True
        started = time.perf_counter()
        await dashboard(client, token, query)
        took = time.perf_counter() - started
    return waves(calls), took


# -- the profile -----------------------------------------------------------------------

_COMPONENTS = (
    ("graphql-core: parse", ("/graphql/language/lexer", "/graphql/language/parser")),
    (
        "graphql-core: validate (and the limits' rules)",
        ("/graphql/validation/", "/graphql/language/visitor", "/graphql/utilities/type_info"),
    ),
    ("graphql-core: execute", ("/graphql/",)),
    ("strawberry (schema, extensions, ASGI view)", ("/strawberry/",)),
    ("httpx/httpcore/h11 (client to provinces)", ("/httpx/", "/httpcore/", "/h11/")),
    ("anyio", ("/anyio/",)),
    ("starlette", ("/starlette/",)),
    ("sqlite (aiosqlite, the store)", ("/aiosqlite/", "sqlite3")),
    ("metrics (prometheus_client)", ("/prometheus_client/",)),
    ("jwt and crypto", ("/jwt/", "/cryptography/")),
    ("breaker and retries (adapters.breaker, tenacity)", ("/adapters/breaker.py", "/tenacity/")),
    ("rate limits (limits)", ("/limits/",)),
    ("adapters (dialects)", ("/adapters/",)),
    ("gateway: audit", ("/gateway/audit", "/gateway/operation")),
    ("gateway code", ("/gateway/",)),
    ("XML (henan)", ("xml", "defusedxml")),
    ("json", ("/json/", "_json")),
    ("logging", ("/logging/",)),
    ("failed imports (`import sniffio` in httpcore/httpx)", ("importlib",)),
    ("asyncio event loop", ("/asyncio/", "selectors", "_asyncio")),
    ("uuid, datetime, decimal, enum, re", ("uuid", "datetime", "decimal", "/enum", "/re/")),
)
IDLE = "idle: waiting on sockets (upstream answers)"


def _component(filename: str, function: str) -> str:
    if filename == "~" and ("poll" in function or "select" in function):
        return IDLE
    if filename == "~" and ("socket" in function):
        return "sockets (send, recv)"
    if filename == "~" and "posix.stat" in function:
        return "failed imports (`import sniffio` in httpcore/httpx)"
    for label, needles in _COMPONENTS:
        if any(n in filename for n in needles):
            return label
    return "other"


def _owner(func: tuple[str, int, str], raw: Mapping[Any, Any], depth: int = 0) -> dict[str, float]:
    """Whose self time a function's is: its own component, or for a built-in (getattr,
    isinstance, ...) its callers' in proportion (one level up, or two for built-ins
    called by built-ins)."""
    filename, _, name = func
    own = _component(filename, name)
    if filename != "~" or own != "other" or depth > 1:
        return {own: 1.0}
    callers = raw[func][4]
    total = sum(tt for (_cc, _nc, tt, _ct) in callers.values()) or 1.0
    shares: dict[str, float] = {}
    for caller, (_cc, _nc, tt, _ct) in callers.items():
        for name_, share in _owner(caller, raw, depth + 1).items():
            shares[name_] = shares.get(name_, 0.0) + share * tt / total
    return shares or {"other": 1.0}


def _label(func: tuple[str, int, str]) -> str:
    filename, line, name = func
    if filename == "~":
        return name
    short = filename
    for marker in ("site-packages/", "/lib/python3"):
        if marker in filename:
            short = filename.split(marker, 1)[1]
            break
    else:  # ours: from the package on, wherever the tree is
        for package in ("/gateway/", "/adapters/", "/sandbox/", "/bench/"):
            if package in filename:
                short = package[1:] + filename.rsplit(package, 1)[1]
                break
    return f"{short}:{line}({name})"


async def profile(
    settings: Settings,
    data_dir: Path,
    token: str,
    query: str,
    requests: int,
    dump: Path | None = None,
) -> dict[str, Any]:
    """cProfile over ``requests`` dashboards, one at a time; times per request, ms."""
    async with in_process(settings, data_dir) as (client, _, _):
        for _ in range(5):
            await dashboard(client, token, query)
        plain = []
        for _ in range(requests):
            started = time.perf_counter()
            await dashboard(client, token, query)
            plain.append(time.perf_counter() - started)
        profiler = cProfile.Profile()
        started = time.perf_counter()
        profiler.enable()
        for _ in range(requests):
            await dashboard(client, token, query)
        profiler.disable()
        wall = time.perf_counter() - started
    if dump is not None:
        profiler.dump_stats(dump)  # for snakeviz, or pstats
    stats = pstats.Stats(profiler)
    raw: Mapping[Any, Any] = stats.stats  # type: ignore[attr-defined]
    rows = []
    components: dict[str, float] = {}
    for func, (_cc, ncalls, tottime, cumtime, _callers) in raw.items():
        rows.append((func, ncalls, tottime, cumtime))
        for name, share in _owner(func, raw).items():
            components[name] = components.get(name, 0.0) + tottime * share

    def top(key: int, n: int = 25) -> list[dict[str, Any]]:
        chosen = sorted(rows, key=lambda r: r[key], reverse=True)[:n]
        return [
            {
                "function": _label(func),
                "calls_per_request": ncalls / requests,
                "self_ms": tottime * 1000 / requests,
                "cumulative_ms": cumtime * 1000 / requests,
            }
            for func, ncalls, tottime, cumtime in chosen
        ]

    total = sum(components.values())
    return {
        "requests": requests,
        "wall_ms_per_request_profiled": wall * 1000 / requests,
        "wall_ms_per_request_median_unprofiled": sorted(plain)[len(plain) // 2] * 1000,
        "top_self": top(2),
        "top_cumulative": top(3, 40),
        "components": [
            {"component": name, "self_ms": ms * 1000 / requests, "share": ms / total}
            for name, ms in sorted(components.items(), key=lambda kv: kv[1], reverse=True)
        ],
    }

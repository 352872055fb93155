"""Protecting the provinces (issue 20): shaping and coalescing, measured.

    .venv/bin/python -m bench.shaping            # the full run, about 4 minutes
    .venv/bin/python -m bench.shaping --quick    # about 2 minutes, fewer samples
    .venv/bin/python -m bench.shaping --out DIR --keep

Starts, on 127.0.0.1 and each its own process, the three sandbox provinces (seeded with
fixtures/roster.json and one family of `bench.families`), a small proxy in front of
each (this module's ``--proxy`` mode: it forwards every request unchanged, counts those
waiting on the province at once and logs each), and gateways (``gongji --config CFG
serve``), one after another. Load comes from separate processes (``--job`` mode).

1. **Shaping.** Hebei's sandbox answers in 200 ms (``PUT /_faults``) and the gateway
   declares ``[provinces.hebei] max_concurrent = 4, queue_seconds = 0.2``; Hebei is
   reached through its proxy, Jiangsu directly. A fixed closed loop of Jiangsu callers
   asks ``{ me { name account { balance } } }`` (one Jiangsu request each), (a) with
   Hebei idle and (b) while 16 other clients, each a different Hebei person, ask the
   same of Hebei back to back (no pause, even after UPSTREAM_OVERLOADED), in rounds
   a b a b ...; then as many pairs (quick: one) through a gateway that declares no
   limits. Before each measurement it waits (``--quiet``) for a quiet machine, and it
   records the cores each kind of process had, and everything else on the machine.
2. **Coalescing.** 50 ms on every province, every province through its proxy, no
   limits. From the gateway's ``gongji_upstream_requests_total`` (and the proxies'
   logs): the upstream requests of one dashboard (`bench.dashboard.QUERY`, warm), of
   the same caller's dashboard 8 times at once, of 8 members of one family opening
   theirs at once, and of those 8 one after another; for 王建国's family (the roster,
   all in Hebei) and a `bench.families` family of three provinces (set up through the
   gateway). What the 8 members' requests ask, read from the proxies' logs.

Writes ``shaping-DATE-TIME[-quick].md`` and ``.json`` into ``--out`` (default
bench/results/shaping); bench/README.md says what each figure means.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import dataclasses
import datetime as dt
import gc
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import httpx
from prometheus_client.parser import text_string_to_metric_families

from bench import common, families
from bench.common import LOOPBACK, ROOT, Jobs, cpu_seconds, tree_source
from bench.dashboard import QUERY as DASHBOARD
from bench.dashboard import GraphQL, Servers, set_up, start_sandboxes
from bench.load import percentile, summary
from gateway.ops.config import Settings
from gateway.provinces.federated import adapter_classes
from sandbox.serve import free_port, spawn_gateway, stop, wait_ready

OUT = common.RESULTS / "shaping"
ROSTER = ROOT / "fixtures" / "roster.json"
ME = "{ me { name account { balance } } }"
ADMIN = "/_proxy"
# the Jiangsu callers of the measured loop, a different person per client (the same
# person asked twice at once would be one request, coalesced)
JIANGSU = ("js_chen_zhiqiang", "js_huang_wei", "js_wu_ting", "js_chen_chen", "js_liu_fang")
WANG = (  # 王建国 and seven of his relatives (tests/conftest.py WANG_EIGHT)
    "hb_wang_jianguo",
    "hb_li_xiuying",
    "hb_wang_deming",
    "hb_zhao_guilan",
    "hb_wang_lei",
    "hb_wang_jing",
    "hb_wang_peng",
    "hb_wang_fang",
)
BENCH_FAMILY = 9  # the index of the bench.families family of 8 relatives
LOAD_NICENESS = 10  # the Hebei load stands for other clients, on other machines
CERT = re.compile(r"\d{17}[\dXx]")
CERTS = re.compile(r"\d{17}[\dXx](,\d{17}[\dXx])*")  # a list of them, in a path


@dataclass(frozen=True, slots=True)
class Plan:
    rounds: int  # a b pairs through the limited gateway
    unlimited_rounds: int  # a b pairs through the gateway without limits
    warmup_s: float  # the Jiangsu loop's, unmeasured
    seconds: float  # the Jiangsu loop's, measured
    ramp_s: float  # the Hebei load runs this long before the Jiangsu loop starts
    jiangsu_clients: int
    hebei_clients: int
    hebei_latency_ms: float
    jiangsu_latency_ms: float
    max_concurrent: int
    queue_seconds: float
    repetitions: int  # of each coalescing case
    coalescing_latency_ms: float

    @classmethod
    def of(cls, args: argparse.Namespace) -> Plan:
        quick = args.quick
        return cls(
            rounds=args.rounds or 3,
            unlimited_rounds=args.unlimited_rounds or (1 if quick else 3),
            warmup_s=1.0 if quick else 2.0,
            seconds=args.seconds or (4.0 if quick else 10.0),
            ramp_s=1.0 if quick else 1.5,
            jiangsu_clients=args.jiangsu_clients,
            hebei_clients=args.hebei_clients,
            hebei_latency_ms=args.hebei_latency_ms,
            jiangsu_latency_ms=args.jiangsu_latency_ms,
            max_concurrent=args.max_concurrent,
            queue_seconds=args.queue_seconds,
            repetitions=3 if quick else 5,
            coalescing_latency_ms=args.coalescing_latency_ms,
        )


# -- the proxy (``--proxy PORT TARGET``) -----------------------------------------------------

HOP = {
    b"connection",
    b"keep-alive",
    b"transfer-encoding",
    b"content-length",
    b"host",
    b"upgrade",
    b"te",
    b"trailer",
    b"proxy-connection",
}


class Proxy:
    """A province's address as the gateway sees it: every request forwarded unchanged to
    ``target``, counted while it waits on the province (from its arrival until the
    province's answer is read, before it is passed on: within the time the gateway holds
    a place for it), and logged (method, path, body). ``GET /_proxy`` (``?log=1``: with
    the log) tells, ``DELETE /_proxy`` starts counting again."""

    def __init__(self, target: str) -> None:
        self.target = target
        self.client: httpx.AsyncClient | None = None
        self.in_flight = 0
        self.max_in_flight = 0
        self.requests = 0
        self.log: list[dict[str, Any]] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        if scope["path"] == ADMIN:
            await self._admin(scope, send)
            return
        path = scope["raw_path"].decode()
        if scope["query_string"]:
            path += "?" + scope["query_string"].decode()
        headers = [(k, v) for k, v in scope["headers"] if k.lower() not in HOP]
        assert self.client is not None
        self.requests += 1
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        started = time.monotonic()
        status, raw, answer_headers = 502, b"proxy: the province did not answer", []
        try:
            request = self.client.build_request(
                scope["method"], path, headers=headers, content=body
            )
            response = await self.client.send(request, stream=True)
            try:
                raw = b"".join([chunk async for chunk in response.aiter_raw()])
            finally:
                await response.aclose()
            status = response.status_code
            answer_headers = [(k, v) for k, v in response.headers.raw if k.lower() not in HOP]
        except httpx.HTTPError:
            pass
        finally:
            self.in_flight -= 1
        if len(self.log) < 100_000:
            self.log.append(
                {
                    "t": started,
                    "ms": (time.monotonic() - started) * 1000,
                    "method": scope["method"],
                    "path": path,
                    "body": body.decode("utf-8", "replace")[:4000],
                    "status": status,
                }
            )
        answer_headers.append((b"content-length", str(len(raw)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": answer_headers})
        await send({"type": "http.response.body", "body": raw})

    async def _lifespan(self, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                limits = httpx.Limits(max_connections=500, max_keepalive_connections=500)
                self.client = httpx.AsyncClient(base_url=self.target, limits=limits, timeout=60)
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self.client is not None:
                    await self.client.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _admin(self, scope: dict[str, Any], send: Any) -> None:
        if scope["method"] == "DELETE":
            self.requests, self.log = 0, []
            self.max_in_flight = self.in_flight
        told: dict[str, Any] = {
            "requests": self.requests,
            "in_flight": self.in_flight,
            "max_in_flight": self.max_in_flight,
        }
        if b"log=1" in scope["query_string"]:
            told["log"] = self.log
        body = json.dumps(told, ensure_ascii=False).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def proxy_main(port: int, target: str) -> None:
    import uvicorn

    gc.freeze()  # the imports kept out of the collector's way, as in `job_main`
    uvicorn.run(
        Proxy(target),  # type: ignore[arg-type]
        host=LOOPBACK,
        port=port,
        log_level="warning",
        access_log=False,
        lifespan="on",
    )


# -- the load (``--job``) ---------------------------------------------------------------------


def _outcome(response: httpx.Response) -> str:
    """``ok``, the first error's ``extensions.code``, or what went wrong."""
    if response.status_code != 200:
        return f"HTTP {response.status_code}"
    try:
        answer = response.json()
    except ValueError:
        return "NOT_JSON"
    errors = answer.get("errors") if isinstance(answer, dict) else None
    if errors:
        return str((errors[0].get("extensions") or {}).get("code", "ERROR"))
    return "ok" if isinstance(answer, dict) and answer.get("data") else "NO_DATA"


async def closed(job: dict[str, Any], stop_event: threading.Event) -> dict[str, Any]:
    """``clients`` callers, client i always as ``tokens[i % len]``, each sending ``query``
    back to back: ``warmup_s`` unmeasured, then ``duration_s`` measured, or (``until_eof``)
    measured from the start until stdin closes. Latencies by outcome."""
    clients = int(job["clients"])
    tokens = job["tokens"]
    body = json.dumps({"query": job["query"]}).encode()
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    latencies: dict[str, list[float]] = collections.defaultdict(list)
    samples: dict[str, str] = {}
    sent = 0
    measuring = bool(job.get("until_eof"))
    deadline = 0.0

    def done() -> bool:
        if job.get("until_eof"):
            return stop_event.is_set()
        return time.perf_counter() >= deadline

    async with httpx.AsyncClient(limits=limits, timeout=httpx.Timeout(60.0)) as client:

        async def worker(i: int) -> None:
            nonlocal sent
            headers = {
                "authorization": f"Bearer {tokens[i % len(tokens)]}",
                "content-type": "application/json",
            }
            while not done():
                started = time.perf_counter()
                try:
                    response = await client.post(job["url"], content=body, headers=headers)
                    outcome = _outcome(response)
                    if outcome != "ok" and outcome not in samples:
                        samples[outcome] = response.text[:600]
                except httpx.HTTPError as exc:
                    outcome = type(exc).__name__
                elapsed = time.perf_counter() - started
                sent += 1
                if measuring:
                    latencies[outcome].append(elapsed)

        if not job.get("until_eof"):
            deadline = time.perf_counter() + float(job["warmup_s"])
            await asyncio.gather(*(worker(i) for i in range(clients)))
            measuring = True
            deadline = time.perf_counter() + float(job["duration_s"])
        started = time.perf_counter()
        await asyncio.gather(*(worker(i) for i in range(clients)))
        wall = time.perf_counter() - started
    ok = latencies.get("ok", [])
    result: dict[str, Any] = {
        "clients": clients,
        "wall_s": wall,
        "sent": sent,  # warm-up included
        "requests": sum(len(v) for v in latencies.values()),
        "outcomes": {k: len(v) for k, v in sorted(latencies.items())},
        "answered_per_s": len(ok) / wall if wall else 0.0,
        "latency": summary(ok),
        "by_outcome": {k: summary(v) for k, v in sorted(latencies.items())},
        "samples": samples,
    }
    if job.get("keep_latencies"):
        result["latencies"] = ok
    return result


def job_main() -> None:
    """``python -m bench.shaping --job``: one JSON job on stdin's first line, one JSON
    result on stdout; an ``until_eof`` job runs until stdin closes."""
    job = json.loads(sys.stdin.readline())
    # this module's imports (the gateway's) make a full collection take some 50 ms, and
    # the load's own pauses are not the gateway's: kept out of the collector's way
    gc.freeze()
    stop_event = threading.Event()
    if job.get("nice"):
        os.nice(int(job["nice"]))
    if job.get("until_eof"):

        def wait_for_eof() -> None:
            sys.stdin.read()
            stop_event.set()

        threading.Thread(target=wait_for_eof, daemon=True).start()
    result = asyncio.run(closed(job, stop_event))
    usage = resource.getrusage(resource.RUSAGE_SELF)
    result["cpu_s"] = usage.ru_utime + usage.ru_stime  # the whole process, start-up included
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")


# -- processes ---------------------------------------------------------------------------------


@dataclass(slots=True)
class Run:
    servers: Servers
    jobs: Jobs = field(default_factory=lambda: Jobs("bench.shaping"))
    proxies: dict[str, str] = field(default_factory=dict)  # province -> the proxy's base URL
    gateway: str = ""
    gateway_process: subprocess.Popen[bytes] | None = None
    settings: Settings | None = None
    sandbox_pids: list[int] = field(default_factory=list)
    proxy_pids: list[int] = field(default_factory=list)
    sources: dict[str, Any] = field(default_factory=dict)  # the tree as each gateway started
    quiet: float = 0.0  # seconds to wait at most for a quiet machine before a measurement

    def stop_all(self) -> None:
        self.jobs.stop_all()
        self.servers.stop_all()


def start_proxies(run: Run) -> None:
    started = {}
    for name, target in run.servers.sandboxes.items():
        port = free_port()
        process = subprocess.Popen(  # noqa: S603 (our own interpreter and module)
            [sys.executable, "-m", "bench.shaping", "--proxy", str(port), target],
            stdout=run.servers.log(f"proxy-{name}"),
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )
        run.servers.processes.append(process)
        run.proxy_pids.append(process.pid)
        run.proxies[name] = f"http://{LOOPBACK}:{port}"
        started[name] = process
    for name, url in run.proxies.items():
        wait_ready(url, 20.0, process=started[name], path=ADMIN)


def start_gateway(run: Run, name: str, urls: dict[str, str], hebei: dict[str, float]) -> None:
    """A gateway reaching each province at ``urls[province]``, Hebei's limits ``hebei``
    (none when empty); the one before it stopped first."""
    if run.gateway_process is not None:
        stop(run.gateway_process)
        run.servers.processes.remove(run.gateway_process)
    config = run.servers.work / f"gateway-{name}.toml"
    lines = [
        'mode = "sandbox"',
        "",
        "[limits]  # no rate limit in the way of the load",
        'per_subject = "1000000/minute"',
        'per_address = "1000000/minute"',
        "",
        "[resilience]  # no change-feed reads in the counts",
        "registration_interval = 3600.0",
    ]
    for province, url in urls.items():
        lines += ["", f"[provinces.{province}]", f'base_url = "{url}"']
        if province == "hebei":
            lines += [f"{key} = {value}" for key, value in hebei.items()]
    config.write_text("\n".join(lines) + "\n", encoding="utf-8")
    # the gateway runs the working tree as it is now: others may be editing it
    run.sources[name] = tree_source(None)
    port = free_port()
    process = spawn_gateway(
        config,
        port,
        run.servers.work / f"gateway-{name}",
        stdout=run.servers.log(f"gateway-{name}"),
        stderr=subprocess.STDOUT,
        cwd=ROOT,
    )
    run.servers.processes.append(process)
    run.gateway_process = process
    run.gateway = f"http://{LOOPBACK}:{port}"
    run.settings = Settings.load(config)
    wait_ready(run.gateway, 30.0, process=process, path="/readyz")


def set_latency(run: Run, province: str, latency_ms: float) -> None:
    url = run.servers.sandboxes[province]
    httpx.put(url + "/_faults", json={"latency_ms": latency_ms, "jitter_ms": 0}).raise_for_status()


def proxy(run: Run, province: str, *, reset: bool = False, log: bool = False) -> dict[str, Any]:
    url = run.proxies[province] + ADMIN + ("?log=1" if log else "")
    answer = httpx.delete(url) if reset else httpx.get(url, timeout=30)
    answer.raise_for_status()
    told: dict[str, Any] = answer.json()
    return told


CODES = {cls.code: name for name, cls in adapter_classes().items()}


def scrape(url: str) -> dict[str, float]:
    """``upstream/PROVINCE/OUTCOME`` and ``graphql/OPERATION/OUTCOME`` counters."""
    counts: dict[str, float] = {}
    for family in text_string_to_metric_families(httpx.get(url + "/metrics").text):
        for sample in family.samples:
            if not sample.name.endswith("_total"):
                continue
            if family.name == "gongji_upstream_requests":
                province = CODES.get(sample.labels["province"], sample.labels["province"])
                counts[f"upstream/{province}/{sample.labels['outcome']}"] = sample.value
            elif family.name == "gongji_graphql_requests":
                labels = sample.labels
                counts[f"graphql/{labels['operation']}/{labels['outcome']}"] = sample.value
    return counts


def delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {k: v - before.get(k, 0.0) for k, v in after.items() if v - before.get(k, 0.0)}


def upstream_by_province(counts: dict[str, float]) -> dict[str, float]:
    per: dict[str, float] = {}
    for key, value in counts.items():
        kind, province, _ = key.split("/")
        if kind == "upstream":
            per[province] = per.get(province, 0.0) + value
    return per


# -- where the cores went ------------------------------------------------------------------------


def machine_cpu() -> dict[str, float]:
    """The machine's CPU seconds since boot, all cores: busy, idle, stolen (/proc/stat)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    user, nice, system, idle, iowait, irq, softirq, steal = fields
    hz = os.sysconf("SC_CLK_TCK")
    return {
        "busy": (user + nice + system + irq + softirq) / hz,
        "idle": (idle + iowait) / hz,
        "steal": steal / hz,
    }


def cpu_snapshot(run: Run) -> dict[str, float]:
    """CPU seconds so far of the machine and of each kind of this benchmark's processes
    (the jobs report theirs when they end)."""
    assert run.gateway_process is not None
    mine = resource.getrusage(resource.RUSAGE_SELF)
    return {
        **machine_cpu(),
        "gateway": cpu_seconds(run.gateway_process.pid),
        "sandboxes": sum(cpu_seconds(pid) for pid in run.sandbox_pids),
        "proxies": sum(cpu_seconds(pid) for pid in run.proxy_pids),
        "bench": mine.ru_utime + mine.ru_stime,
        "wall": time.perf_counter(),
    }


def cores_between(
    before: dict[str, float], after: dict[str, float], jobs_cpu: float
) -> dict[str, float]:
    """Cores each had on average: the gateway, the sandboxes, the proxies, the load jobs
    and this process, everything else on the machine (``other``), idle and stolen."""
    wall = after["wall"] - before["wall"]
    spent = {k: after[k] - before[k] for k in after if k != "wall"}
    spent["load"] = jobs_cpu + spent.pop("bench")
    ours = sum(spent[k] for k in ("gateway", "sandboxes", "proxies", "load"))
    spent["other"] = max(0.0, spent.pop("busy") - ours)
    return {k: v / wall for k, v in spent.items()}


def wait_quiet(run: Run, threshold: float = 0.3) -> dict[str, float]:
    """Wait (at most ``run.quiet`` seconds) until the machine used at most ``threshold``
    cores over a second: others may be running their tests on it."""
    started = time.monotonic()
    while True:
        a, t = machine_cpu(), time.monotonic()
        time.sleep(1.0)
        busy = (machine_cpu()["busy"] - a["busy"]) / (time.monotonic() - t)
        waited = time.monotonic() - started
        if busy <= threshold or waited >= run.quiet:
            if waited > 1.5:
                say(f"  waited {waited:.0f} s for a quiet machine (now {busy:.2f} cores busy)")
            return {"waited_s": waited, "busy_cores": busy}


# -- 1. shaping -------------------------------------------------------------------------------


def shaping_round(
    run: Run, plan: Plan, gateway: str, hebei_idle: bool, js: list[str], hb: list[str]
) -> dict[str, Any]:
    assert run.gateway_process is not None
    pid = run.gateway_process.pid
    url = run.gateway + "/graphql"
    quiet = wait_quiet(run)
    proxy(run, "hebei", reset=True)
    before = scrape(run.gateway)
    load_before = os.getloadavg()[0]
    cpu_before, t0 = cpu_seconds(pid), time.perf_counter()
    snapshot = cpu_snapshot(run)
    hebei_load = None
    if not hebei_idle:
        hebei_load = run.jobs.start(
            {
                "url": url,
                "query": ME,
                "tokens": hb,
                "clients": plan.hebei_clients,
                "until_eof": True,
                "nice": LOAD_NICENESS,
            }
        )
        time.sleep(plan.ramp_s)
    jiangsu = run.jobs.run(
        {
            "url": url,
            "query": ME,
            "tokens": js,
            "clients": plan.jiangsu_clients,
            "warmup_s": plan.warmup_s,
            "duration_s": plan.seconds,
            "keep_latencies": True,
        },
        timeout=plan.warmup_s + plan.seconds + 60,
    )
    hebei = run.jobs.finish(hebei_load, timeout=60) if hebei_load is not None else None
    wall = time.perf_counter() - t0
    gateway_cores = (cpu_seconds(pid) - cpu_before) / wall
    jobs_cpu = jiangsu["cpu_s"] + (hebei["cpu_s"] if hebei else 0.0)
    cores = cores_between(snapshot, cpu_snapshot(run), jobs_cpu)
    counts = delta(before, scrape(run.gateway))
    at_hebei = proxy(run, "hebei")
    latencies = jiangsu.pop("latencies")
    say(
        f"  {gateway}, Hebei {'idle' if hebei_idle else 'saturated'}: Jiangsu p50"
        f" {jiangsu['latency']['p50_ms']:.1f} p99 {jiangsu['latency']['p99_ms']:.1f} ms;"
        f" cores: gateway {cores['gateway']:.2f}, other {cores['other']:.2f},"
        f" idle {cores['idle']:.2f}"
        + (
            ""
            if hebei is None
            else f"; Hebei {hebei['outcomes']}, at most {at_hebei['max_in_flight']} at once"
        )
    )
    return {
        "gateway": gateway,
        "hebei": "idle" if hebei_idle else "saturated",
        "jiangsu": jiangsu,
        "jiangsu_latencies_ms": [round(v * 1000, 3) for v in latencies],
        "hebei_load": hebei,
        "at_hebei": at_hebei,
        "metrics": counts,
        "gateway_cores": gateway_cores,
        "cores": cores,
        "quiet": quiet,
        "load_average": [load_before, os.getloadavg()[0]],
    }


def shaping(run: Run, plan: Plan, roster: dict[str, Any]) -> dict[str, Any]:
    hebei_people = [p for p in roster["people"] if p["insuredArea"].startswith("13")]
    hebei_people = [p for p in hebei_people if not p["key"].startswith("bench_")]
    if len(hebei_people) < plan.hebei_clients:
        raise RuntimeError(f"{len(hebei_people)} Hebei people for {plan.hebei_clients} clients")
    cert = {p["key"]: p["certNo"] for p in roster["people"]}
    jiangsu_keys = list(JIANGSU[: plan.jiangsu_clients])
    set_latency(run, "hebei", plan.hebei_latency_ms)
    set_latency(run, "jiangsu", plan.jiangsu_latency_ms)
    urls = {
        "hebei": run.proxies["hebei"],
        "jiangsu": run.servers.sandboxes["jiangsu"],
        "henan": run.servers.sandboxes["henan"],
    }
    limits = {"max_concurrent": plan.max_concurrent, "queue_seconds": plan.queue_seconds}
    rounds = []
    checks: dict[str, Any] = {}
    for gateway, hebei in (("limited", limits), ("unlimited", {})):
        say(f"shaping: the gateway with {'Hebei limited: ' + str(hebei) if hebei else 'no limits'}")
        start_gateway(run, gateway, urls, hebei)
        assert run.settings is not None
        gql = GraphQL(run.gateway, run.settings)
        try:
            # warm: every caller once, one at a time (where each is insured, remembered)
            for key in jiangsu_keys:
                gql(cert[key], ME)
            for person in hebei_people:
                gql(person["certNo"], ME)
            before = scrape(run.gateway)  # then what one Jiangsu query asks of whom
            for key in jiangsu_keys:
                gql(cert[key], ME)
            checks[f"{gateway}_upstream_per_jiangsu_query"] = {
                province: n / len(jiangsu_keys)
                for province, n in upstream_by_province(delta(before, scrape(run.gateway))).items()
            }
            js = [gql.token(cert[key]) for key in jiangsu_keys]
            hb = [gql.token(p["certNo"]) for p in hebei_people[: plan.hebei_clients]]
        finally:
            gql.client.close()
        pairs = plan.rounds if hebei else plan.unlimited_rounds
        for _ in range(pairs):
            for hebei_idle in (True, False):
                rounds.append(shaping_round(run, plan, gateway, hebei_idle, js, hb))
    return {
        "hebei_limits": limits,
        "jiangsu_callers": jiangsu_keys,
        "hebei_callers": [p["key"] for p in hebei_people[: plan.hebei_clients]],
        "checks": checks,
        "rounds": rounds,
        "summary": shaping_summary(rounds, plan),
    }


def _spread(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def shaping_summary(rounds: list[dict[str, Any]], plan: Plan) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for gateway in ("limited", "unlimited"):
        for hebei in ("idle", "saturated"):
            mine = [r for r in rounds if r["gateway"] == gateway and r["hebei"] == hebei]
            if not mine:
                continue
            pooled = [v for r in mine for v in r["jiangsu_latencies_ms"]]
            entry: dict[str, Any] = {
                "rounds": len(mine),
                **{
                    stat: _spread([r["jiangsu"]["latency"][f"{stat}_ms"] for r in mine])
                    for stat in ("p50", "p90", "p99", "max")
                },
                "pooled": {
                    "n": len(pooled),
                    "p50_ms": percentile(pooled, 50),
                    "p90_ms": percentile(pooled, 90),
                    "p99_ms": percentile(pooled, 99),
                    "max_ms": max(pooled),
                },
                "jiangsu_per_s": _spread([r["jiangsu"]["answered_per_s"] for r in mine]),
                "jiangsu_errors": sum(
                    n for r in mine for k, n in r["jiangsu"]["outcomes"].items() if k != "ok"
                ),
                "gateway_cores": _spread([r["gateway_cores"] for r in mine]),
                "cores": {k: _spread([r["cores"][k] for r in mine]) for k in mine[0]["cores"]},
                "hebei_max_in_flight": max(r["at_hebei"]["max_in_flight"] for r in mine),
                "hebei_requests_at_proxy": sum(r["at_hebei"]["requests"] for r in mine),
                # the gateway's own counts: Hebei requests sent, queries shed
                "gateway_hebei_requests": sum(
                    v
                    for r in mine
                    for k, v in r["metrics"].items()
                    if k.startswith("upstream/hebei/")
                ),
                "gateway_shed": sum(
                    r["metrics"].get("graphql/query/UPSTREAM_OVERLOADED", 0.0) for r in mine
                ),
            }
            loads = [r["hebei_load"] for r in mine if r["hebei_load"]]
            if loads:
                outcomes: collections.Counter[str] = collections.Counter()
                for load in loads:
                    outcomes.update(load["outcomes"])
                entry["hebei_outcomes"] = dict(outcomes)
                entry["hebei_answered_per_s"] = _spread([x["answered_per_s"] for x in loads])
                entry["hebei_answered_p50_ms"] = _spread(
                    [x["by_outcome"]["ok"]["p50_ms"] for x in loads if "ok" in x["by_outcome"]]
                )
                shed = [x["by_outcome"].get("UPSTREAM_OVERLOADED") for x in loads]
                if all(shed):
                    entry["hebei_shed_p50_ms"] = _spread([s["p50_ms"] for s in shed if s])
            out[f"{gateway}/{hebei}"] = entry
    out["ratios"] = {}
    for gateway in ("limited", "unlimited"):
        pairs = [
            (a, b)
            for a, b in zip(rounds[::2], rounds[1::2], strict=False)
            if a["gateway"] == b["gateway"] == gateway
        ]
        b, a = out[f"{gateway}/saturated"], out[f"{gateway}/idle"]
        out["ratios"][gateway] = {
            "p99_b_over_a_of_medians": b["p99"]["median"] / a["p99"]["median"],
            "p99_b_over_a_each_round": [
                y["jiangsu"]["latency"]["p99_ms"] / x["jiangsu"]["latency"]["p99_ms"]
                for x, y in pairs
            ],
            "p99_b_over_a_pooled": b["pooled"]["p99_ms"] / a["pooled"]["p99_ms"],
        }
    out["ratios"]["unlimited_b_over_limited_a"] = (
        out["unlimited/saturated"]["p99"]["median"] / out["limited/idle"]["p99"]["median"]
    )
    out["declared_max_concurrent"] = plan.max_concurrent
    return out


# -- 2. coalescing ----------------------------------------------------------------------------


async def _dashboards(url: str, tokens: list[str], at_once: bool) -> list[tuple[float, str]]:
    """``tokens``' dashboards, all at once (each its own connection, opened first) or one
    after another; (seconds, outcome) each."""
    limits = httpx.Limits(max_connections=len(tokens), max_keepalive_connections=len(tokens))
    body = json.dumps({"query": DASHBOARD}).encode()
    async with httpx.AsyncClient(limits=limits, timeout=httpx.Timeout(60.0)) as client:
        await asyncio.gather(*(client.get(url + "/healthz") for _ in tokens))

        async def one(token: str) -> tuple[float, str]:
            headers = {"authorization": f"Bearer {token}", "content-type": "application/json"}
            started = time.perf_counter()
            response = await client.post(url + "/graphql", content=body, headers=headers)
            return time.perf_counter() - started, _outcome(response)

        if at_once:
            return list(await asyncio.gather(*(one(t) for t in tokens)))
        return [await one(t) for t in tokens]


def describe(province: str, entry: dict[str, Any], names: dict[str, str]) -> tuple[str, str]:
    """(what was asked, of whom): the request's kind (Hebei's ``infno``, Henan's service,
    Jiangsu's method and path, ID numbers left out) and the people it names, in order,
    as roster keys (request ids and times left out); other arguments when it names
    nobody."""
    method, path, body = entry["method"], unquote(entry["path"]), entry["body"]
    what, rest = f"{method} {path}", path + body
    if province == "hebei":
        with contextlib.suppress(ValueError, KeyError, TypeError):
            sent = json.loads(body)
            what, rest = f"infno {sent['infno']}", json.dumps(sent["input"]["data"])
    elif province == "henan":
        with contextlib.suppress(ET.ParseError, AttributeError):
            root = ET.fromstring(body)  # noqa: S314 (our own sandbox's request)
            found = root.find("body")
            fields = [f"{e.tag}={e.text}" for e in found] if found is not None else []
            what, rest = f"service {root.findtext('head/service')}", ", ".join(fields)
    else:
        what = f"{method} {CERTS.sub('…', path)}"
    people = [names.get(c, "?") for c in CERT.findall(rest)]
    return what, ",".join(people) if people else rest[:200]


def coalescing(run: Run, plan: Plan, roster: dict[str, Any], bench: families.Family) -> Any:
    names = {p["certNo"]: p["key"] for p in roster["people"]}
    cert = {p["key"]: p["certNo"] for p in roster["people"]}
    say("coalescing: every province through its proxy, no limits; setting up a bench family")
    for province in run.servers.sandboxes:
        set_latency(run, province, 0)
    start_gateway(run, "coalescing", dict(run.proxies), {})
    assert run.settings is not None
    gql = GraphQL(run.gateway, run.settings)
    members = {
        "wang": list(WANG),
        "bench": [p["key"] for p in bench.people[:8]],
    }
    try:
        made = set_up(gql, families.World(dt.date.today(), {8: bench}, [bench]))
        for province in run.servers.sandboxes:
            set_latency(run, province, plan.coalescing_latency_ms)
        for keys in members.values():  # warm: each member's dashboard once, one at a time
            for key in keys:
                gql(cert[key], DASHBOARD)
            gql(cert[keys[0]], DASHBOARD)
        tokens = {k: [gql.token(cert[key]) for key in keys] for k, keys in members.items()}
    finally:
        gql.client.close()
    cases: dict[str, Any] = {}
    for family, keys in members.items():
        say(f"  {family}: {', '.join(keys)}")
        quiet = wait_quiet(run)
        scenarios = {
            "one": ([tokens[family][0]], True),
            "same_8_at_once": ([tokens[family][0]] * 8, True),
            "members_8_at_once": (tokens[family], True),
            "members_8_one_after_another": (tokens[family], False),
        }
        reps: dict[str, list[dict[str, Any]]] = {name: [] for name in scenarios}
        logs: dict[str, dict[str, list[dict[str, Any]]]] = {}
        for _ in range(plan.repetitions):
            for name, (who, at_once) in scenarios.items():
                for province in run.proxies:
                    proxy(run, province, reset=True)
                before = scrape(run.gateway)
                answers = asyncio.run(_dashboards(run.gateway, who, at_once))
                time.sleep(0.3)  # anything still in flight lands (leftovers cancelled)
                counts = delta(before, scrape(run.gateway))
                told = {p: proxy(run, p, log=True) for p in run.proxies}
                reps[name].append(
                    {
                        "upstream": upstream_by_province(counts),
                        "at_proxies": {p: t["requests"] for p, t in told.items()},
                        "metrics": counts,
                        "errors": [o for _, o in answers if o != "ok"],
                        "dashboard_ms": summary([s for s, _ in answers]),
                    }
                )
                logs[name] = {p: t["log"] for p, t in told.items()}  # the last repetition's
        cases[family] = {
            "members": keys,
            "quiet": quiet,
            "repetitions": reps,
            "summary": coalescing_summary(reps),
            "requests": requests_compared(logs, names),
        }
        s = cases[family]["summary"]
        say(
            "    upstream requests (median): "
            + "; ".join(f"{name} {s[name]['total']['median']:g}" for name in scenarios)
        )
    return {"setup": made, "latency_ms": plan.coalescing_latency_ms, "cases": cases}


def coalescing_summary(reps: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, runs in reps.items():
        provinces = sorted({p for r in runs for p in r["upstream"]} | {"hebei", "jiangsu", "henan"})
        out[name] = {
            **{p: _spread([r["upstream"].get(p, 0.0) for r in runs]) for p in provinces},
            "total": _spread([sum(r["upstream"].values()) for r in runs]),
            "proxies_agree": all(
                r["at_proxies"].get(p, 0) == r["upstream"].get(p, 0)
                for r in runs
                for p in provinces
            ),
            "errors": sum(len(r["errors"]) for r in runs),
            "dashboard_p50_ms": _spread([r["dashboard_ms"]["p50_ms"] for r in runs]),
            "dashboard_max_ms": _spread([r["dashboard_ms"]["max_ms"] for r in runs]),
        }
    return out


def requests_compared(
    logs: dict[str, dict[str, list[dict[str, Any]]]], names: dict[str, str]
) -> dict[str, Any]:
    """Per (province, request kind): how many each scenario sent (its last repetition),
    what the 8 members asked at once (each argument set, how often), and how many of the
    requests of the 8 members' dashboards one after another (no sharing) differ: what
    would be sent if every identical read were shared, whenever it was asked."""
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    for scenario, by_province in logs.items():
        for province, entries in by_province.items():
            for entry in entries:
                what, args = describe(province, entry, names)
                row = rows.setdefault(
                    (province, what),
                    {"province": province, "request": what, "sent": {}, "asked": {}, "all": {}},
                )
                row["sent"][scenario] = row["sent"].get(scenario, 0) + 1
                if scenario == "members_8_at_once":
                    row["asked"][args] = row["asked"].get(args, 0) + 1
                if scenario == "members_8_one_after_another":
                    row["all"][args] = row["all"].get(args, 0) + 1
    out = [rows[k] for k in sorted(rows)]
    for row in out:
        row["distinct"] = len(row.pop("all"))
    return {"rows": out, "distinct": sum(row["distinct"] for row in out)}


# -- the run ----------------------------------------------------------------------------------


def world_roster(bench: families.Family) -> dict[str, Any]:
    """fixtures/roster.json with one bench family added."""
    roster: dict[str, Any] = json.loads(ROSTER.read_text(encoding="utf-8"))
    roster["people"] += bench.people
    roster["relations"] += bench.relations
    roster["areas"] = {**families.AREAS, **roster["areas"]}
    certs = [p["certNo"] for p in roster["people"]]
    if len(set(certs)) != len(certs):
        raise AssertionError("duplicate ID numbers in the roster")
    return roster


def run(args: argparse.Namespace) -> dict[str, Any]:
    plan = Plan.of(args)
    began = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="gongji-shaping-"))
    servers = Servers(work=work, config=work / "unused.toml")
    the_run = Run(servers=servers)
    source = tree_source(args.commit)
    the_run.quiet = args.quiet
    result = common.begin("shaping", args.quick, dataclasses.asdict(plan), source, ME)
    result["dashboard_query"] = DASHBOARD
    bench = families.family(BENCH_FAMILY, families.MAX_RELATIVES, dt.date.today())
    roster = world_roster(bench)
    roster_path = work / "roster.json"
    roster_path.write_text(json.dumps(roster, ensure_ascii=False), encoding="utf-8")
    try:
        say("starting the sandboxes and their proxies")
        start_sandboxes(servers, roster_path)
        the_run.sandbox_pids = [p.pid for p in servers.processes]
        start_proxies(the_run)
        result["shaping"] = shaping(the_run, plan, roster)
        result["coalescing"] = coalescing(the_run, plan, roster, bench)
    finally:
        the_run.stop_all()
        common.clean_up(work, args.keep, say)
        result["gateway_sources"] = the_run.sources
    result["source_at_end"] = tree_source(args.commit)
    common.end(result, began)
    return result


# -- the report -------------------------------------------------------------------------------


def _f(value: float, digits: int = 1) -> str:
    return f"{value:.{digits}f}"


def _sp(s: dict[str, float], digits: int = 1) -> str:
    return f"{_f(s['median'], digits)} ({_f(s['min'], digits)} – {_f(s['max'], digits)})"


def _count(s: dict[str, float]) -> str:
    if s["min"] == s["max"]:
        return f"{s['median']:g}"
    return f"{s['median']:g} ({s['min']:g} – {s['max']:g})"


CORES = ("gateway", "sandboxes", "proxies", "load", "other", "idle", "steal")


def _tree_lines(result: dict[str, Any]) -> list[str]:
    """The tree under test: at the start, as each gateway started, at the end."""
    src = result["source"]
    lines = [common.commit_line(src, f": {', '.join(src['uncommitted'])}")]
    seen = {(src["commit"], tuple(src["uncommitted"]), src.get("uncommitted_sha256"))}
    moments = [*(("gateway " + k, v) for k, v in result["gateway_sources"].items())]
    for moment, other in [*moments, ("the end", result["source_at_end"])]:
        key = (other["commit"], tuple(other["uncommitted"]), other.get("uncommitted_sha256"))
        if key in seen:
            continue
        seen.add(key)
        files = ", ".join(other["uncommitted"]) or "none"
        lines.append(
            f"- the tree changed (others were editing it): at {moment}, commit"
            f" `{other['commit']}`, uncommitted: {files}"
            + (f" (digest {other['uncommitted_sha256']})" if other["uncommitted"] else "")
        )
    return lines


def _people(args: str) -> str:
    """A request's people, the first three when there are more than four."""
    people = args.split(",")
    if len(people) <= 4:
        return "[" + ", ".join(people) + "]"
    return "[" + ", ".join(people[:3]) + f", … {len(people)} people]"


def markdown(result: dict[str, Any]) -> str:
    plan = result["plan"]
    sh = result["shaping"]
    s = sh["summary"]
    lines = [
        f"# Shaping and coalescing ({result['date']}{', quick' if result['quick'] else ''})",
        "",
        *_tree_lines(result),
        common.machine_line(result["machine"]),
        f"- duration {result['duration_s']:.0f} s",
        "",
        "## 1. Shaping: a Jiangsu-only query while Hebei is saturated",
        "",
        f"Hebei's sandbox answers in {plan['hebei_latency_ms']:g} ms, Jiangsu's in"
        f" {plan['jiangsu_latency_ms']:g} ms (added). The limited gateway declares"
        f" `[provinces.hebei] max_concurrent = {plan['max_concurrent']}`,"
        f" `queue_seconds = {plan['queue_seconds']:g}`. Measured: `{ME}` by"
        f" {plan['jiangsu_clients']} Jiangsu callers in a closed loop"
        f" ({', '.join(sh['jiangsu_callers'])}), {plan['warmup_s']:g} s warm-up then"
        f" {plan['seconds']:g} s; (b): meanwhile {plan['hebei_clients']} Hebei callers"
        f" (each a different person) send the same to Hebei back to back, from"
        f" {plan['ramp_s']:g} s before. Rounds a b a b ...; medians of the rounds"
        " (min – max). Milliseconds.",
        "",
        "| gateway | Hebei | rounds | p50 | p90 | p99 | max | Jiangsu answers/s | cores:"
        " gateway | cores: others on the machine | cores: idle | Hebei at once (max) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for key in ("limited/idle", "limited/saturated", "unlimited/idle", "unlimited/saturated"):
        e = s[key]
        gateway, hebei = key.split("/")
        lines.append(
            f"| {gateway} | {hebei} | {e['rounds']} | {_sp(e['p50'])} | {_sp(e['p90'])}"
            f" | {_sp(e['p99'])} | {_sp(e['max'])} | {_sp(e['jiangsu_per_s'])}"
            f" | {_sp(e['cores']['gateway'], 2)} | {_sp(e['cores']['other'], 2)}"
            f" | {_sp(e['cores']['idle'], 2)} | {e['hebei_max_in_flight']} |"
        )
    r = s["ratios"]
    lines.append("")
    for gateway in ("limited", "unlimited"):
        g = r[gateway]
        lines.append(
            f"- p99(b) / p99(a), {gateway} gateway: **{g['p99_b_over_a_of_medians']:.2f}**"
            f" (medians); each pair of rounds:"
            f" {', '.join(f'{x:.2f}' for x in g['p99_b_over_a_each_round'])}; all samples"
            f" pooled: {g['p99_b_over_a_pooled']:.2f}."
        )
    lines += [
        f"- p99(b, no limits) / p99(a, limited): {r['unlimited_b_over_limited_a']:.2f}.",
        "",
        "Pooled samples (every round of a condition together):",
        "",
        "| gateway | Hebei | n | p50 | p90 | p99 | max | Jiangsu errors |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for key in ("limited/idle", "limited/saturated", "unlimited/idle", "unlimited/saturated"):
        e, (gateway, hebei) = s[key], key.split("/")
        p = e["pooled"]
        lines.append(
            f"| {gateway} | {hebei} | {p['n']} | {_f(p['p50_ms'])} | {_f(p['p90_ms'])}"
            f" | {_f(p['p99_ms'])} | {_f(p['max_ms'])} | {e['jiangsu_errors']} |"
        )
    lines += [
        "",
        "The Hebei load (whole run of each round, ramp included):",
        "",
        "| gateway | answers by outcome | answered/s | answered p50 ms | shed p50 ms"
        " | requests that reached Hebei | most at once at Hebei | the gateway's metrics:"
        " Hebei requests, queries shed |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for key in ("limited/saturated", "unlimited/saturated"):
        e = s[key]
        shed = _sp(e["hebei_shed_p50_ms"]) if "hebei_shed_p50_ms" in e else "–"
        outcomes = ", ".join(f"{k} {v}" for k, v in e["hebei_outcomes"].items())
        lines.append(
            f"| {key.split('/')[0]} | {outcomes} | {_sp(e['hebei_answered_per_s'])}"
            f" | {_sp(e['hebei_answered_p50_ms'])} | {shed} | {e['hebei_requests_at_proxy']}"
            f" | {e['hebei_max_in_flight']} | {e['gateway_hebei_requests']:g},"
            f" {e['gateway_shed']:g} |"
        )
    lines += [
        "",
        "Upstream requests per Jiangsu query (warm-up, one at a time): "
        + "; ".join(
            f"{g}: {json.dumps(c)}"
            for g, c in sh["checks"].items()
            if g.endswith("per_jiangsu_query")
        )
        + f" for {len(sh['jiangsu_callers'])} queries.",
        "",
        "Each round, and the cores each kind of process had on average over it (from"
        " `/proc`; load: the load processes and this one; others: everything else on the"
        " machine):",
        "",
        "| # | gateway | Hebei | p50 | p99 | max | Jiangsu n | Hebei outcomes | at Hebei (max"
        " at once) | cores: gateway / sandboxes / proxies / load / others / idle / stolen"
        " | load average |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for i, rd in enumerate(sh["rounds"], 1):
        lat = rd["jiangsu"]["latency"]
        hb = rd["hebei_load"]
        lines.append(
            f"| {i} | {rd['gateway']} | {rd['hebei']} | {_f(lat['p50_ms'])} | {_f(lat['p99_ms'])}"
            f" | {_f(lat['max_ms'])} | {lat['n']} | {hb['outcomes'] if hb else '–'}"
            f" | {rd['at_hebei']['requests']} ({rd['at_hebei']['max_in_flight']})"
            f" | {' / '.join(_f(rd['cores'][k], 2) for k in CORES)}"
            f" | {rd['load_average'][0]:.2f} →"
            f" {rd['load_average'][1]:.2f} |"
        )
    co = result["coalescing"]
    lines += [
        "",
        "## 2. Coalescing: 8 members of one family opening their dashboards at once",
        "",
        f"{co['latency_ms']:g} ms added on every province; every province through its"
        " proxy; `bench.dashboard.QUERY`; every member's dashboard opened once before"
        " (locations remembered, civil records cached). Upstream requests from the"
        " gateway's `gongji_upstream_requests_total`, per province: the median of"
        f" {plan['repetitions']} repetitions (min – max).",
    ]
    labels = {
        "one": "one dashboard (the first member's)",
        "same_8_at_once": "the same dashboard 8 times at once",
        "members_8_at_once": "8 members at once",
        "members_8_one_after_another": "8 members one after another",
    }
    for family, case in co["cases"].items():
        cs = case["summary"]
        lines += [
            "",
            "### "
            + (
                "王建国’s family (roster, all in Hebei)"
                if family == "wang"
                else "A bench.families family of three provinces"
            ),
            "",
            "Members: " + ", ".join(case["members"]) + ".",
            "",
            "| | hebei | jiangsu | henan | total | proxies agree | errors"
            " | dashboard p50 / max ms |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for name, label in labels.items():
            c = cs[name]
            lines.append(
                f"| {label} | {_count(c['hebei'])} | {_count(c['jiangsu'])}"
                f" | {_count(c['henan'])} | {_count(c['total'])} | {c['proxies_agree']}"
                f" | {c['errors']} | {_f(c['dashboard_p50_ms']['median'])} /"
                f" {_f(c['dashboard_max_ms']['median'])} |"
            )
        compared = case["requests"]
        lines += [
            "",
            "The requests of the last repetition, from the proxies' logs, by kind: how many"
            " each case sent; *distinct*: how many of the 8 members' requests (one after"
            " another) differ in what they ask, i.e. what would be sent if every identical"
            " read were shared whenever asked; and what the 8 members asked at once (the"
            " people each request names, as roster keys; ×n: n identical requests):",
            "",
            "| province | request | one | 8 × same | 8 members | 8 one after another"
            " | distinct | the 8 members' requests at once |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for row in compared["rows"]:
            sent = row["sent"]
            asked = "; ".join(
                _people(args) + (f" ×{n}" if n > 1 else "") for args, n in row["asked"].items()
            )
            lines.append(
                f"| {row['province']} | `{row['request']}` | {sent.get('one', 0)}"
                f" | {sent.get('same_8_at_once', 0)} | {sent.get('members_8_at_once', 0)}"
                f" | {sent.get('members_8_one_after_another', 0)} | {row['distinct']}"
                f" | {asked.replace('|', '/')} |"
            )
        total = {
            k: sum(r["sent"].get(k, 0) for r in compared["rows"])
            for k in ("one", "same_8_at_once", "members_8_at_once", "members_8_one_after_another")
        }
        lines.append(
            f"| all | | {total['one']} | {total['same_8_at_once']}"
            f" | {total['members_8_at_once']} | {total['members_8_one_after_another']}"
            f" | {compared['distinct']} | |"
        )
    lines += ["", "The JSON beside this file has every figure and every round's samples."]
    return "\n".join(lines) + "\n"


say = common.teller("shaping")


def main() -> None:
    if sys.argv[1:2] == ["--job"]:
        job_main()
        return
    if sys.argv[1:2] == ["--proxy"]:
        proxy_main(int(sys.argv[2]), sys.argv[3])
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="about 2 minutes, fewer samples")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--rounds", type=int, help="a b pairs, limited gateway (3)")
    parser.add_argument(
        "--unlimited-rounds", type=int, help="a b pairs, no limits (1 quick, 3 full)"
    )
    parser.add_argument("--seconds", type=float, help="measured seconds each (4 quick, 10 full)")
    parser.add_argument("--jiangsu-clients", type=int, default=2)
    parser.add_argument("--hebei-clients", type=int, default=16)
    parser.add_argument("--hebei-latency-ms", type=float, default=200.0)
    parser.add_argument("--jiangsu-latency-ms", type=float, default=20.0)
    parser.add_argument("--max-concurrent", type=int, default=4, help="Hebei's, declared")
    parser.add_argument("--queue-seconds", type=float, default=0.2, help="Hebei's, declared")
    parser.add_argument("--coalescing-latency-ms", type=float, default=50.0)
    parser.add_argument(
        "--quiet",
        type=float,
        default=45.0,
        help="seconds to wait at most, before each measurement, for the machine to be quiet",
    )
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs)")
    parser.add_argument(
        "--commit", help="the commit under test, when run from an exported tree (default: HEAD)"
    )
    args = parser.parse_args()
    common.stop_cleanly_on_sigterm()
    result = run(args)
    paths = common.write(result, args.out, markdown)
    s = result["shaping"]["summary"]
    print(
        f"Jiangsu p99, Hebei idle {s['limited/idle']['p99']['median']:.1f} ms, saturated"
        f" {s['limited/saturated']['p99']['median']:.1f} ms: ratio"
        f" {s['ratios']['limited']['p99_b_over_a_of_medians']:.2f}; Hebei at once at most"
        f" {s['limited/saturated']['hebei_max_in_flight']} (declared"
        f" {s['declared_max_concurrent']}); Hebei outcomes"
        f" {s['limited/saturated']['hebei_outcomes']}"
    )
    for family, case in result["coalescing"]["cases"].items():
        cs = case["summary"]
        print(
            f"{family}: upstream requests, one {cs['one']['total']['median']:g}, same x8"
            f" {cs['same_8_at_once']['total']['median']:g}, 8 members"
            f" {cs['members_8_at_once']['total']['median']:g}, one after another"
            f" {cs['members_8_one_after_another']['total']['median']:g}"
        )
    for path in paths:
        print(f"written: {path}")


if __name__ == "__main__":
    main()

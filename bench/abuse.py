"""The abuse benchmark: what refusing abusive documents costs, and /healthz meanwhile.

    .venv/bin/python -m bench.abuse            # the full run, about 2 minutes
    .venv/bin/python -m bench.abuse --quick    # about 40 s, fewer samples
    .venv/bin/python -m bench.abuse --out bench/results --senders 3

Targets (the issue): for every entry of the corpus (`bench.abusive`), refusing it
costs the gateway's process no more CPU time than one family dashboard; and
``GET /healthz`` keeps answering within 100 ms while the abuse arrives.

Starts the three sandbox provinces and the gateway on 127.0.0.1 as separate
processes, exactly as `bench.dashboard` does (its functions), sets up its families,
then measures, each time from separate processes (this module's ``--job`` mode):

1. the gateway's CPU time per family dashboard (`bench.dashboard.QUERY`, one at a
   time, 0 ms added upstream), before and after the corpus;
2. per corpus entry, its CPU time per request: N requests one at a time, each a
   fresh document (a different ``#n`` comment line appended to the query, so that no
   parse or validation cache can help; a body that is not a small GraphQL JSON
   request goes as it is), every answer checked against the expected status and
   ``extensions.code``;
3. ``GET /healthz`` every 20 ms (a new connection each time, as an orchestrator's
   probe), first with nothing else arriving (the floor), then while 2 to 4 senders
   send the whole corpus round after round.

The gateway's CPU time is its process's user and system time (all its threads),
from /proc (`bench.common.cpu_seconds`). Writes ``abuse-DATE-TIME[-quick].md`` and
``.json`` into ``--out``; exits with 1 when a target fails or an answer was not the
expected one.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import http.client
import json
import os
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from bench import common, dashboard, families
from bench.abusive import Abuse, corpus
from bench.common import LOOPBACK, Jobs
from bench.load import summary
from gateway.ops.config import RateLimits, Settings

# The targets.
CPU_RATIO = 1.0  # an entry's CPU time per request, over one dashboard's
HEALTHZ_MAX_MS = 100.0

# A fresh document must stay within the gateway's JSON body limit (64 KiB): only bodies
# well within it get a comment line appended.
VARY_MAX_BYTES = RateLimits().max_json_bytes - 1024
PROBE_TIMEOUT_S = 5.0
REQUEST_TIMEOUT_S = 30.0
SENDER_NICENESS = 10  # the senders (other machines, in the world) yield the cores


@dataclass(frozen=True, slots=True)
class Plan:
    """How much of each measurement."""

    dashboard_requests: int  # one at a time, for the CPU time per dashboard
    entry_requests: int  # per corpus entry, one at a time, measured
    entry_warmup: int  # per corpus entry, before those, unmeasured (answers checked)
    senders: int  # concurrent senders while /healthz is probed
    rounds: int  # of the whole corpus, per sender
    probe_every_s: float
    floor_s: float  # /healthz probed with nothing else arriving
    abuse_max_s: float  # the concurrent phase stops after this, rounds done or not
    idle_s: float  # the gateway's CPU time with nothing arriving

    @classmethod
    def of(cls, args: argparse.Namespace) -> Plan:
        if args.quick:
            plan = cls(50, 40, 3, args.senders, 8, 0.02, 4.0, 60.0, 2.0)
        else:
            plan = cls(200, 200, 5, args.senders, 40, 0.02, 10.0, 180.0, 3.0)
        if args.requests is not None:
            plan = dataclasses.replace(plan, entry_requests=args.requests)
        if args.rounds is not None:
            plan = dataclasses.replace(plan, rounds=args.rounds)
        return plan


# -- the senders (in their own processes) --------------------------------------------------


@dataclass(frozen=True, slots=True)
class Entry:
    """One kind of request, as a sender sends it."""

    name: str
    body: bytes
    content_type: str
    headers: dict[str, str]
    status: int
    code: str | None  # None: an answer, HTTP 200 with data and no errors
    query: dict[str, Any] | None  # the request, when each one is sent as a fresh document

    @classmethod
    def of(cls, abuse: Abuse) -> Entry:
        return cls(
            abuse.name,
            abuse.body,
            abuse.content_type,
            dict(abuse.headers),
            abuse.status,
            abuse.code,
            _graphql_request(abuse.body),
        )

    @classmethod
    def from_spec(cls, spec: dict[str, Any], abuses: list[Abuse]) -> Entry:
        if "corpus" in spec:
            return cls.of(abuses[int(spec["corpus"])])
        body = json.dumps(spec["request"]).encode()
        return cls(
            spec["name"],
            body,
            "application/json",
            dict(spec.get("headers", {})),
            int(spec.get("status", 200)),
            spec.get("code"),
            _graphql_request(body),
        )

    def body_for(self, n: int) -> bytes:
        """The ``n``-th request: the query with ``#n`` appended, or the body as it is."""
        if self.query is None:
            return self.body
        fresh = dict(self.query)
        fresh["query"] = f"{self.query['query']}\n#{n}"
        return json.dumps(fresh).encode()


def _graphql_request(body: bytes) -> dict[str, Any] | None:
    """The body as a GraphQL JSON request with a query, if it is a small one."""
    if len(body) > VARY_MAX_BYTES:
        return None
    try:
        request = json.loads(body)
    except (ValueError, RecursionError):
        return None
    if isinstance(request, dict) and isinstance(request.get("query"), str):
        return request
    return None


class Sender:
    """Sends entries over one connection (reopened when the gateway closes it) and
    checks every answer."""

    def __init__(self, url: str, salt: int) -> None:
        self.url = url
        self.client = httpx.Client(
            timeout=REQUEST_TIMEOUT_S,
            limits=httpx.Limits(max_connections=1, max_keepalive_connections=1),
        )
        self.n = salt * 10_000_000  # every document of every job differs

    def send(self, entry: Entry, tally: dict[str, Any]) -> float:
        """Seconds for one request; a mismatch is counted into ``tally``."""
        self.n += 1
        body = entry.body_for(self.n)
        headers = {"content-type": entry.content_type, **entry.headers}
        started = time.perf_counter()
        try:
            response = self.client.post(self.url, content=body, headers=headers)
            elapsed = time.perf_counter() - started
            problem = _mismatch(entry, response)
        except httpx.HTTPError as exc:
            elapsed = time.perf_counter() - started
            problem = f"{type(exc).__name__}: {exc}"
        tally["answers"] += 1
        if problem is not None:
            tally["mismatches"] += 1
            if len(tally["mismatch_samples"]) < 5:
                tally["mismatch_samples"].append(problem)
        return elapsed

    def close(self) -> None:
        self.client.close()


def _mismatch(entry: Entry, response: httpx.Response) -> str | None:
    """What is wrong with an answer (None: the expected one)."""
    kind = response.headers.get("content-type", "")
    if not kind.startswith("application/json"):
        return f"HTTP {response.status_code} as {kind!r}: {response.text[:200]!r}"
    try:
        answer = response.json()
    except ValueError:
        return f"HTTP {response.status_code}, not JSON: {response.text[:200]!r}"
    errors = answer.get("errors") if isinstance(answer, dict) else None
    code = None
    if errors and isinstance(errors, list) and isinstance(errors[0], dict):
        code = (errors[0].get("extensions") or {}).get("code")
    if response.status_code != entry.status:
        return f"HTTP {response.status_code} (expected {entry.status}), code {code}"
    if entry.code is None:
        if errors or not isinstance(answer, dict) or not answer.get("data"):
            return f"expected data without errors: {response.text[:200]!r}"
        return None
    if code != entry.code:
        return f"code {code} (expected {entry.code}): {response.text[:200]!r}"
    return None


def _tally() -> dict[str, Any]:
    return {"answers": 0, "mismatches": 0, "mismatch_samples": []}


def _wait_until(epoch: float | None) -> float:
    """Sleep until the wall-clock time ``epoch`` (shared by the processes of a phase);
    how late this process was ready for it (seconds, 0 if on time)."""
    if epoch is None:
        return 0.0
    ahead = epoch - time.time()
    if ahead > 0:
        time.sleep(min(ahead, 60.0))
    return max(0.0, -ahead)


def each(job: dict[str, Any]) -> dict[str, Any]:
    """Entry after entry, one request at a time: warm-up, then ``requests`` measured,
    the gateway's CPU time read from /proc just before and after."""
    abuses = corpus()
    entries = [Entry.from_spec(spec, abuses) for spec in job["entries"]]
    deadline = time.monotonic() + float(job["deadline_s"])
    pid = int(job["pid"])
    sender = Sender(job["url"], int(job["salt"]))
    out = []
    try:
        for entry in entries:
            tally = _tally()
            for _ in range(int(job["warmup"])):
                sender.send(entry, tally)
            latencies: list[float] = []
            started = time.perf_counter()
            before = common.cpu_seconds(pid)
            for _ in range(int(job["requests"])):
                if time.monotonic() > deadline:
                    break
                latencies.append(sender.send(entry, tally))
            cpu = common.cpu_seconds(pid) - before
            wall = time.perf_counter() - started
            out.append(
                {
                    "name": entry.name,
                    "requests": len(latencies),
                    "complete": len(latencies) == int(job["requests"]),
                    "cpu_s": cpu,
                    "wall_s": wall,
                    "latency": summary(latencies),
                    **tally,
                }
            )
    finally:
        sender.close()
    return {"entries": out}


def rotate(job: dict[str, Any]) -> dict[str, Any]:
    """The entries in turn, ``rounds`` times (each sender from a different one), as fast
    as the answers come back, until done or the deadline."""
    abuses = corpus()
    entries = [Entry.from_spec(spec, abuses) for spec in job["entries"]]
    sender = Sender(job["url"], int(job["salt"]))
    tallies = {entry.name: _tally() for entry in entries}
    latencies: list[float] = []
    log: list[list[Any]] = []  # [entry, wall-clock start, seconds] of every request
    late = _wait_until(job.get("start_at"))
    began = time.time()
    deadline = time.monotonic() + float(job["deadline_s"])
    offset = int(job.get("offset", 0))
    try:
        for i in range(int(job["rounds"]) * len(entries)):
            if time.monotonic() > deadline:
                break
            index = (offset + i) % len(entries)
            at = time.time()
            latencies.append(sender.send(entries[index], tallies[entries[index].name]))
            log.append([index, at, latencies[-1]])
    finally:
        sender.close()
    return {
        "late_s": late,
        "began": began,
        "ended": time.time(),
        "requests": len(latencies),
        "latency": summary(latencies),
        "entries": tallies,
        "log": log,
    }


def probe(job: dict[str, Any], stop: threading.Event) -> dict[str, Any]:
    """``GET /healthz`` every ``every_s`` seconds, each on a new connection, until
    ``stop`` is set or ``max_s`` have passed: [wall-clock start, seconds, ok] each."""
    where = urlsplit(job["url"])
    every = float(job["every_s"])
    late = _wait_until(job.get("start_at"))
    samples: list[list[Any]] = []
    t0 = time.monotonic()
    limit = t0 + float(job["max_s"])
    tick = 0
    while not stop.is_set() and time.monotonic() < limit:
        wall = time.time()
        started = time.perf_counter()
        ok = False
        with contextlib.suppress(OSError, http.client.HTTPException):
            connection = http.client.HTTPConnection(
                where.hostname or LOOPBACK, where.port, timeout=PROBE_TIMEOUT_S
            )
            try:
                connection.request("GET", "/healthz")
                answer = connection.getresponse()
                answer.read()
                ok = answer.status == 200
            finally:
                connection.close()
        samples.append([wall, time.perf_counter() - started, ok])
        # the next tick on the 20 ms grid; ticks missed by a slow probe are skipped
        tick = max(tick + 1, int((time.monotonic() - t0) / every) + 1)
        stop.wait(max(0.0, t0 + tick * every - time.monotonic()))
    return {"late_s": late, "every_s": every, "samples": samples}


def job_main() -> None:
    """``python -m bench.abuse --job``: one JSON job on stdin's first line, one JSON
    result on stdout. A probe runs until stdin closes (or its ``max_s``)."""
    job = json.loads(sys.stdin.readline())
    if job["kind"] == "probe":
        stop = threading.Event()

        def wait_for_eof() -> None:
            sys.stdin.read()
            stop.set()

        threading.Thread(target=wait_for_eof, daemon=True).start()
        result = probe(job, stop)
    elif job["kind"] == "each":
        result = each(job)
    elif job["kind"] == "rotate":
        # The senders stand for clients on other machines: here they share the two
        # cores with the gateway and the probe, so they run at a lower priority and
        # what the probe measures is the gateway's answer, not the senders' CPU.
        os.nice(SENDER_NICENESS)
        result = rotate(job)
    else:
        raise ValueError(f"unknown job kind {job['kind']!r}")
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")


# -- the benchmark ---------------------------------------------------------------------------


class CpuSampler:
    """In a thread, every ``every`` seconds: the gateway's CPU time, that of all this
    benchmark's processes (the servers, the jobs, this one) and the machine's (busy,
    stolen by the hypervisor, in all; /proc/stat), as seconds of CPU since the start.
    Says, for any stretch of time, how many cores each had: whether a slow answer was
    the gateway busy, or the gateway waiting for a core others held."""

    def __init__(self, gateway: int, pids: Any, every: float = 0.05) -> None:
        self.gateway = gateway
        self.pids = pids  # () -> the processes to count, now
        self.every = every
        self.samples: list[tuple[float, float, float, float, float, float]] = []
        self._last: dict[int, float] = {}
        self._ours = 0.0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> CpuSampler:
        self._sample()
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._done.set()
        self._thread.join(timeout=5)
        self._sample()

    def _run(self) -> None:
        while not self._done.wait(self.every):
            self._sample()

    def _sample(self) -> None:
        wall = time.time()
        gateway = 0.0
        for pid in {*self.pids(), os.getpid(), self.gateway}:
            with contextlib.suppress(OSError, ValueError, IndexError):
                used = common.cpu_seconds(pid)
                self._ours += max(0.0, used - self._last.get(pid, used))
                self._last[pid] = used
                if pid == self.gateway:
                    gateway = used
        tick = os.sysconf("SC_CLK_TCK")
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
        user, nice, system, _idle, _iowait, irq, softirq, steal = fields
        busy = (user + nice + system + irq + softirq) / tick
        self.samples.append((wall, gateway, self._ours, busy, steal / tick, sum(fields) / tick))

    def share(self, start: float, end: float) -> dict[str, float]:
        """Cores used between two wall-clock times, from the samples around them."""
        before = [s for s in self.samples if s[0] <= start] or self.samples[:1]
        after = [s for s in self.samples if s[0] >= end] or self.samples[-1:]
        a, b = before[-1], after[0]
        span = b[0] - a[0]
        if span <= 0:
            return {}
        gateway, ours, busy, steal, total = (b[i] - a[i] for i in range(1, 6))
        return {
            "seconds": span,
            "gateway_cores": gateway / span,
            "ours_cores": ours / span,
            "others_cores": max(0.0, busy - ours) / span,
            "steal_cores": steal / span,
            "idle_cores": max(0.0, total - busy - steal) / span,
        }


# --gc-log: a sitecustomize put on the gateway's PYTHONPATH (its code unchanged) that
# logs each of its garbage collections: wall-clock start, generation, wall and CPU seconds.
GC_LOGGER = """import gc, os, time
_path = os.environ.pop("GONGJI_BENCH_GC_LOG", None)
if _path:
    _log = open(_path, "a", buffering=1)
    _at = {}
    def _collected(phase, info):
        if phase == "start":
            _at["wall"], _at["clock"] = time.time(), time.perf_counter()
            _at["cpu"] = time.process_time()
        else:
            _log.write("%.4f %d %.6f %.6f\\n" % (_at["wall"], info["generation"],
                time.perf_counter() - _at["clock"], time.process_time() - _at["cpu"]))
    gc.callbacks.append(_collected)
"""


@contextlib.contextmanager
def gc_logged(work: Path, on: bool) -> Any:
    """Processes started in the block log their collections into the path yielded."""
    if not on:
        yield None
        return
    folder = work / "gc-logger"
    folder.mkdir()
    (folder / "sitecustomize.py").write_text(GC_LOGGER, encoding="utf-8")
    log = work / "gateway-gc.log"
    saved = {k: os.environ.get(k) for k in ("PYTHONPATH", "GONGJI_BENCH_GC_LOG")}
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(folder), saved["PYTHONPATH"]]))
    os.environ["GONGJI_BENCH_GC_LOG"] = str(log)
    try:
        yield log
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def collections(log: Path | None) -> list[tuple[float, int, float, float]]:
    """(wall-clock start, generation, wall s, CPU s) of each logged collection."""
    if log is None or not log.exists():
        return []
    rows = []
    for line in log.read_text().splitlines():
        with contextlib.suppress(ValueError):
            wall, gen, took, cpu = line.split()
            rows.append((float(wall), int(gen), float(took), float(cpu)))
    return rows


def gc_summary(rows: list[tuple[float, int, float, float]], start: float, end: float) -> Any:
    out = []
    for gen in (0, 1, 2):
        chosen = [r for r in rows if r[1] == gen and start <= r[0] <= end]
        out.append(
            {
                "generation": gen,
                "collections": len(chosen),
                "max_ms": max((r[2] for r in chosen), default=0.0) * 1000,
                "max_cpu_ms": max((r[3] for r in chosen), default=0.0) * 1000,
                "cpu_s": sum(r[3] for r in chosen),
            }
        )
    return out


def probe_summary(samples: list[list[Any]]) -> dict[str, Any]:
    return {
        **summary([s[1] for s in samples]),
        "failures": sum(1 for s in samples if not s[2]),
        "over_100_ms": sum(1 for s in samples if s[1] * 1000 > HEALTHZ_MAX_MS),
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    plan = Plan.of(args)
    began = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="gongji-abuse-"))
    servers = dashboard.Servers(work=work, config=work / "gateway.toml")
    jobs = Jobs("bench.abuse")
    abuses = corpus()
    result = common.begin(
        "abuse",
        args.quick,
        dataclasses.asdict(plan),
        common.tree_source(args.commit),
        dashboard.QUERY,
    )
    world = families.world(load_families=4)
    roster = work / "roster.json"
    roster.write_text(json.dumps(world.roster(), ensure_ascii=False), encoding="utf-8")
    gql: dashboard.GraphQL | None = None
    memory: list[tuple[str, dict[str, int]]] = []  # the gateway's VmRSS, VmHWM (KiB)
    result["gateway_memory"] = memory
    try:
        say("starting the sandboxes and the gateway (dashboard.py's set-up)")
        dashboard.start_sandboxes(servers, roster)
        dashboard.write_config(servers)
        with gc_logged(work, args.gc_log) as gc_log:
            dashboard.start_gateway(servers)
        assert servers.gateway_process is not None
        pid = servers.gateway_process.pid
        gql = dashboard.GraphQL(servers.gateway, Settings.load(servers.config))
        dashboard.set_latency(servers, 0)

        say("setting up the families through the gateway's mutations")
        result["setup"] = dashboard.set_up(gql, world)
        result["setup"]["people"] = len(world.roster()["people"])
        callers = [f.caller["certNo"] for f in world.load]
        tokens = [gql.token(c) for c in callers]
        for family in world.families:  # warm: every caller once (locations remembered)
            gql(family.caller["certNo"], dashboard.QUERY)
        result["dashboard_family_members"] = len(gql(callers[0], dashboard.QUERY)["me"]["family"])

        memory.append(("after the set-up", common.proc_status(pid)))
        time.sleep(0.5)
        before = common.cpu_seconds(pid)
        time.sleep(plan.idle_s)
        result["idle_cpu_ms_per_s"] = (common.cpu_seconds(pid) - before) * 1000 / plan.idle_s

        url = servers.gateway + "/graphql"
        target = dashboard.gateway_target(servers, tokens)
        deadline = 600.0
        say(f"CPU time per dashboard: {plan.dashboard_requests} one at a time")
        cpu_before, errors_before = dashboard.cpu_per_request(pid, target, plan.dashboard_requests)

        say(
            f"CPU time per abusive request: {plan.entry_requests} of each of the"
            f" {len(abuses)} entries, one at a time, each a fresh document"
        )
        measured = jobs.run(
            {
                "kind": "each",
                "url": url,
                "pid": pid,
                "salt": 1,
                "entries": [{"corpus": i} for i in range(len(abuses))],
                "requests": plan.entry_requests,
                "warmup": plan.entry_warmup,
                "deadline_s": deadline,
            },
            timeout=deadline + 120,
        )["entries"]

        say("CPU time per dashboard again, and per dashboard sent as a fresh document")
        cpu_after, errors_after = dashboard.cpu_per_request(pid, target, plan.dashboard_requests)
        fresh = jobs.run(
            {
                "kind": "each",
                "url": url,
                "pid": pid,
                "salt": 2,
                "entries": [
                    {
                        "name": "family dashboard, a fresh document each time",
                        "request": {"query": dashboard.QUERY},
                        "headers": {"authorization": f"Bearer {tokens[0]}"},
                    }
                ],
                "requests": plan.dashboard_requests,
                "warmup": plan.entry_warmup,
                "deadline_s": deadline,
            },
            timeout=deadline + 120,
        )["entries"][0]
        reference = (cpu_before + cpu_after) / 2
        result["dashboard"] = {
            "requests": plan.dashboard_requests,
            "cpu_ms_before": cpu_before,
            "cpu_ms_after": cpu_after,
            "cpu_ms": reference,
            "errors": errors_before + errors_after,
            "fresh": {
                **fresh,
                "cpu_ms": fresh["cpu_s"] * 1000 / max(fresh["requests"], 1),
            },
        }
        entries = []
        for abuse, row in zip(abuses, measured, strict=True):
            cpu_ms = row["cpu_s"] * 1000 / max(row["requests"], 1)
            entries.append(
                {
                    **row,
                    "code": abuse.code,
                    "status": abuse.status,
                    "content_type": abuse.content_type,
                    "bytes": len(abuse.body),
                    "header_bytes": sum(len(k) + len(v) for k, v in abuse.headers.items()),
                    "fresh_documents": Entry.of(abuse).query is not None,
                    "cpu_ms": cpu_ms,
                    "ratio": cpu_ms / reference,
                }
            )
        result["entries"] = entries
        memory.append(("after the corpus, one at a time", common.proc_status(pid)))

        say(f"/healthz every {plan.probe_every_s * 1000:g} ms, nothing else arriving")
        result["healthz_floor"] = healthz_floor(jobs, servers, plan, pid)

        say(
            f"/healthz every {plan.probe_every_s * 1000:g} ms while {plan.senders} senders send"
            f" the corpus {plan.rounds} times each"
        )
        result["healthz_abuse"] = healthz_under_abuse(jobs, servers, plan, abuses, pid)
        memory.append(("after the concurrent phase", common.proc_status(pid)))
        if gc_log is not None:
            abuse = result["healthz_abuse"]
            rows = collections(gc_log)
            result["gc"] = {
                "run": gc_summary(rows, 0.0, float("inf")),
                "concurrent_phase": gc_summary(rows, *abuse["window"]),
            }
            for slow in abuse["slowest"]:
                at = abuse["window"][0] + slow["at_s"]
                slow["collections"] = [
                    {"generation": r[1], "ms": r[2] * 1000, "cpu_ms": r[3] * 1000}
                    for r in rows
                    if r[0] <= at + slow["ms"] / 1000 and r[0] + r[2] >= at
                ]
            slow_probes = [(a, ms) for a, ms, _ in abuse["probes"] if ms > HEALTHZ_MAX_MS]
            result["gc"]["probes_over_100_ms"] = len(slow_probes)
            result["gc"]["of_which_during_a_collection"] = sum(
                1
                for a, ms in slow_probes
                if any(
                    r[0] <= abuse["window"][0] + a + ms / 1000
                    and r[0] + r[2] >= abuse["window"][0] + a
                    for r in rows
                )
            )
    finally:
        jobs.stop_all()
        if gql is not None:
            gql.client.close()
        servers.stop_all()
        common.clean_up(work, args.keep, say)
    common.end(result, began)
    result["verdicts"] = verdicts(result)
    return result


def healthz_floor(jobs: Jobs, servers: dashboard.Servers, plan: Plan, pid: int) -> dict[str, Any]:
    process = jobs.start(
        {
            "kind": "probe",
            "url": servers.gateway,
            "every_s": plan.probe_every_s,
            "max_s": plan.floor_s + 30,
            "start_at": time.time() + 2.0,  # after the job's imports
        }
    )
    with CpuSampler(pid, lambda: [p.pid for p in servers.processes + jobs.running]) as cpu:
        time.sleep(2.0 + plan.floor_s)
    probed = jobs.finish(process, timeout=60)
    samples = probed["samples"]
    return {
        "seconds": plan.floor_s,
        "late_s": probed["late_s"],
        "cores": cpu.share(samples[0][0], samples[-1][0]) if samples else {},
        **probe_summary(samples),
    }


def healthz_under_abuse(
    jobs: Jobs, servers: dashboard.Servers, plan: Plan, abuses: list[Abuse], pid: int
) -> dict[str, Any]:
    entries = len(abuses)
    start_at = time.time() + 3.0  # after every job's imports and corpus
    prober = jobs.start(
        {
            "kind": "probe",
            "url": servers.gateway,
            "every_s": plan.probe_every_s,
            "max_s": plan.abuse_max_s + 60,
            "start_at": start_at,
        }
    )
    senders = [
        jobs.start(
            {
                "kind": "rotate",
                "url": servers.gateway + "/graphql",
                "salt": 10 + i,
                "entries": [{"corpus": j} for j in range(entries)],
                "rounds": plan.rounds,
                "offset": i * entries // plan.senders,
                "start_at": start_at + 0.5,
                "deadline_s": plan.abuse_max_s,
            }
        )
        for i in range(plan.senders)
    ]
    ours = [p.pid for p in [*servers.processes, prober, *senders]]
    with CpuSampler(pid, lambda: ours) as sampler:
        cpu_before = common.cpu_seconds(pid)
        sent = [jobs.finish(s, timeout=plan.abuse_max_s + 120) for s in senders]
        cpu = common.cpu_seconds(pid) - cpu_before
    time.sleep(0.2)
    probed = jobs.finish(prober, timeout=60)
    window = (min(s["began"] for s in sent), max(s["ended"] for s in sent))
    during = [s for s in probed["samples"] if window[0] <= s[0] <= window[1]]
    by_entry: dict[str, dict[str, Any]] = {}
    for s in sent:
        for name, tally in s["entries"].items():
            into = by_entry.setdefault(name, {"answers": 0, "mismatches": 0, "samples": []})
            into["answers"] += tally["answers"]
            into["mismatches"] += tally["mismatches"]
            into["samples"] = (into["samples"] + tally["mismatch_samples"])[:5]
    requests = sum(s["requests"] for s in sent)
    seconds = window[1] - window[0]
    log = [row for s in sent for row in s["log"]]
    slowest = []
    for at, took, _ in sorted(during, key=lambda p: -p[1])[:10]:
        in_flight: dict[str, int] = {}
        for index, began, elapsed in log:
            if began <= at + took and began + elapsed >= at:
                name = abuses[index].name
                in_flight[name] = in_flight.get(name, 0) + 1
        slowest.append(
            {
                "at_s": at - window[0],
                "ms": took * 1000,
                "in_flight": in_flight,
                "cores": sampler.share(at, at + took),
            }
        )
    return {
        "senders": plan.senders,
        "rounds": plan.rounds,
        "requests": requests,
        "complete": requests == plan.senders * plan.rounds * entries,
        "seconds": seconds,
        "window": list(window),  # wall-clock (epoch) start and end of the abuse
        "rps": requests / seconds if seconds else 0.0,
        "senders_late_s": max(s["late_s"] for s in sent),
        "sender_latency": [s["latency"] for s in sent],
        "gateway_cpu_s": cpu,
        "cores": sampler.share(*window),
        "entries": by_entry,
        "mismatches": sum(e["mismatches"] for e in by_entry.values()),
        "probe_late_s": probed["late_s"],
        **probe_summary(during),
        "slowest": slowest,
        # every probe of the window: seconds from its start, milliseconds taken, answered
        "probes": [[round(s[0] - window[0], 3), round(s[1] * 1000, 2), s[2]] for s in during],
    }


# -- verdicts and report ---------------------------------------------------------------------


def verdicts(result: dict[str, Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []

    def add(name: str, goal: str, measured: str, ok: bool) -> None:
        out.append({"target": name, "goal": goal, "measured": measured, "pass": ok})

    reference = result["dashboard"]["cpu_ms"]
    for row in result["entries"]:
        add(
            f"CPU per refusal: {row['name']}",
            f"≤ {CPU_RATIO:g} × a dashboard ({reference:.2f} ms)",
            f"{row['cpu_ms']:.2f} ms ({row['ratio']:.2f} ×)",
            row["ratio"] <= CPU_RATIO and row["complete"],
        )
    floor, abuse = result["healthz_floor"], result["healthz_abuse"]
    add(
        "/healthz while the abuse arrives",
        f"max ≤ {HEALTHZ_MAX_MS:g} ms",
        f"p50 {abuse['p50_ms']:.1f}, p99 {abuse['p99_ms']:.1f}, max {abuse['max_ms']:.1f} ms"
        f" ({abuse['n']} probes, {abuse['failures']} failed; floor: p50 {floor['p50_ms']:.1f},"
        f" p99 {floor['p99_ms']:.1f}, max {floor['max_ms']:.1f} ms)",
        abuse["n"] > 0 and abuse["failures"] == 0 and abuse["max_ms"] <= HEALTHZ_MAX_MS,
    )
    answers = sum(r["answers"] for r in result["entries"]) + abuse["requests"]
    answers += result["dashboard"]["fresh"]["answers"]
    mismatches = sum(r["mismatches"] for r in result["entries"]) + abuse["mismatches"]
    mismatches += result["dashboard"]["fresh"]["mismatches"] + result["dashboard"]["errors"]
    add(
        "every answer the expected status and code",
        "no mismatch",
        f"{mismatches} mismatches in {answers} answers"
        + ("" if abuse["complete"] else "; the concurrent phase stopped at its time limit"),
        mismatches == 0 and abuse["complete"],
    )
    return out


def markdown(result: dict[str, Any]) -> str:
    m, src, plan = result["machine"], result["source"], result["plan"]
    dash = result["dashboard"]
    floor, abuse = result["healthz_floor"], result["healthz_abuse"]
    lines = [
        f"# Abuse benchmark, {result['date']}{' (quick)' if result['quick'] else ''}",
        "",
        common.commit_line(
            src,
            f" ({', '.join(f'`{name}`' for name in src['uncommitted'][:8])}"
            f"{', ...' if len(src['uncommitted']) > 8 else ''}; digest of the changes"
            f" `{src.get('uncommitted_sha256', '')}`)",
        ),
        common.machine_line(m),
        "- everything on 127.0.0.1: three sandbox provinces, the gateway, and the senders and"
        f" the probe, each its own process; {result['duration_s']:.0f} s in all",
        f"- families: {result['setup']['people']} synthetic people,"
        f" {result['setup']['bindings']} bindings and {result['setup']['kinship_links']}"
        " kinship links made through the gateway's mutations (`bench.dashboard.set_up`); the"
        f" dashboard shows {result['dashboard_family_members']} relatives",
        f"- the gateway idle: {result['idle_cpu_ms_per_s']:.1f} ms of CPU per second",
        "",
        *common.targets(result["verdicts"]),
    ]
    lines += [
        "",
        "## 1. CPU time per request",
        "",
        "The gateway's user and system time (its process, all threads, from /proc) over"
        " requests sent one at a time; 0 ms added upstream. The family dashboard"
        f" (`bench.dashboard.QUERY`, {dash['requests']} requests by `bench.load`, the same"
        " document each time): "
        f"{dash['cpu_ms_before']:.2f} ms before the corpus, {dash['cpu_ms_after']:.2f} ms after;"
        f" the reference is their mean, **{dash['cpu_ms']:.2f} ms**. Sent as a fresh"
        " document each time (no parse or validation cache can help, as for the corpus): "
        f"{dash['fresh']['cpu_ms']:.2f} ms.",
        "",
        f"Each entry: {plan['entry_warmup']} unmeasured, then {plan['entry_requests']} measured;"
        " *fresh*: a different `#n` comment line appended to the query of every request"
        " (no: the body as it is, refused before it is parsed). Every answer (warm-up"
        " included) is checked against the expected HTTP status and `extensions.code`.",
        "",
        "| entry | expected | body | fresh | answers | mismatches | CPU ms / request"
        " | × dashboard | client p50 ms | |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in result["entries"]:
        ok = row["ratio"] <= CPU_RATIO and row["complete"]
        size = _bytes(row["bytes"]) + (
            f" + {_bytes(row['header_bytes'])} headers" if row["header_bytes"] else ""
        )
        lines.append(
            f"| {row['name']} | {row['status']} `{row['code']}` | {size}"
            f" | {'yes' if row['fresh_documents'] else 'no'} | {row['answers']}"
            f" | {row['mismatches']} | {row['cpu_ms']:.2f} | {row['ratio']:.2f}"
            f" | {row['latency']['p50_ms']:.1f} | {common.verdict(ok)} |"
        )
    lines += [
        "",
        "The resolution of /proc's CPU time is one clock tick (10 ms): "
        f"{10 / max(plan['entry_requests'], 1):.2f} ms per request over"
        f" {plan['entry_requests']} requests.",
        "",
        "## 2. `/healthz` while the abuse arrives",
        "",
        f"`GET /healthz` every {plan['probe_every_s'] * 1000:g} ms from its own process, each"
        " on a new connection (as an orchestrator probes). The floor: nothing else arriving,"
        f" {floor['seconds']:g} s. Then {abuse['senders']} senders, each its own process and"
        f" connection, send the whole corpus {abuse['rounds']} times each (each from a"
        " different entry, the next request as soon as the answer is back; fresh documents"
        f" as above): {abuse['requests']} requests in {abuse['seconds']:.1f} s"
        f" ({abuse['rps']:.0f} req/s), the gateway's CPU time {abuse['gateway_cpu_s']:.1f} s"
        f" ({abuse['gateway_cpu_s'] / abuse['seconds'] * 100 if abuse['seconds'] else 0:.0f} %"
        " of one core); only the probes sent between the first abusive request and the"
        " last answer count.",
        "",
        "| | n | p50 ms | p90 ms | p99 ms | mean ms | max ms | failed | over 100 ms |",
        "|---|---|---|---|---|---|---|---|---|",
        _probe_row("nothing else arriving (floor)", floor),
        _probe_row(f"{abuse['senders']} senders of the corpus", abuse),
        "",
        f"Cores in use (of {result['machine']['cores']}; sampled every 50 ms from /proc: the"
        " gateway; this benchmark's other processes, sandboxes, senders and probe included;"
        " every other process on the machine; stolen by the hypervisor; idle):",
        "",
        "| | gateway | ours, others | other processes | stolen | idle |",
        "|---|---|---|---|---|---|",
        _cores_row("nothing else arriving (floor)", floor.get("cores", {})),
        _cores_row(f"{abuse['senders']} senders of the corpus", abuse.get("cores", {})),
        "",
        "Answers in the concurrent phase, by entry:",
        "",
        "| entry | answers | mismatches |",
        "|---|---|---|",
    ]
    for name, tally in abuse["entries"].items():
        lines.append(f"| {name} | {tally['answers']} | {tally['mismatches']} |")
    if abuse.get("slowest"):
        lines += [
            "",
            "The slowest probes, and the abusive requests in flight meanwhile (from the"
            " senders' logs: sent before the probe's answer, answered after it was sent):",
            "",
            "| at s | probe ms | in flight | cores: gateway / ours, others / other processes"
            " / stolen / idle |",
            "|---|---|---|---|",
        ]
        for slow in abuse["slowest"]:
            flying = ", ".join(f"{name} × {n}" for name, n in sorted(slow["in_flight"].items()))
            lines.append(
                f"| {slow['at_s']:.2f} | {slow['ms']:.1f} | {flying or 'nothing'}"
                f" | {_cores(slow.get('cores', {}))} |"
            )
    if result.get("gateway_memory"):
        lines += [
            "",
            "The gateway's memory (from /proc; of the fresh documents its caches keep the"
            " dashboards, which pass validation, and none of the refused):",
            "",
            "| when | VmRSS MiB | VmHWM MiB |",
            "|---|---|---|",
        ]
        for when, status in result["gateway_memory"]:
            lines.append(
                f"| {when} | {status['VmRSS'] / 1024:.1f} | {status['VmHWM'] / 1024:.1f} |"
            )
    if result.get("gc"):
        gc = result["gc"]
        lines += [
            "",
            "## The gateway's garbage collections (`--gc-log`)",
            "",
            "Logged in the gateway's process by a `sitecustomize` on its PYTHONPATH (the"
            " gateway's code unchanged). Probes over 100 ms during the concurrent phase:"
            f" {gc['probes_over_100_ms']}, of which {gc['of_which_during_a_collection']}"
            " overlapped a collection.",
            "",
            "| | generation | collections | max ms | max CPU ms | CPU s in all |",
            "|---|---|---|---|---|---|",
        ]
        phases = (("the whole run", gc["run"]), ("concurrent phase", gc["concurrent_phase"]))
        for when, rows in phases:
            for row in rows:
                lines.append(
                    f"| {when} | {row['generation']} | {row['collections']}"
                    f" | {row['max_ms']:.1f} | {row['max_cpu_ms']:.1f} | {row['cpu_s']:.2f} |"
                )
        lines += ["", "The slowest probes and the collections during them:", ""]
        lines += ["| at s | probe ms | collections (generation: ms, CPU ms) |", "|---|---|---|"]
        for slow in result["healthz_abuse"]["slowest"]:
            during = ", ".join(
                f"{c['generation']}: {c['ms']:.0f}, {c['cpu_ms']:.0f}"
                for c in slow.get("collections", [])
            )
            lines.append(f"| {slow['at_s']:.2f} | {slow['ms']:.1f} | {during or 'none'} |")
    samples = [(row["name"], s) for row in result["entries"] for s in row["mismatch_samples"]] + [
        (name, s) for name, tally in abuse["entries"].items() for s in tally["samples"]
    ]
    if samples:
        lines += ["", "## Mismatches (first few)", ""]
        lines += [f"- {name}: {s}" for name, s in samples[:20]]
    lines += ["", "## The dashboard query", "", "```graphql", result["query"], "```", ""]
    return "\n".join(lines)


def _cores(c: dict[str, float]) -> str:
    """Cores: the gateway / our other processes / other processes / stolen / idle."""
    if not c:
        return "(not sampled)"
    values = (
        c["gateway_cores"],
        c["ours_cores"] - c["gateway_cores"],
        c["others_cores"],
        c["steal_cores"],
        c["idle_cores"],
    )
    return " / ".join(f"{v:.2f}" for v in values)


def _cores_row(name: str, c: dict[str, float]) -> str:
    return f"| {name} | " + _cores(c).replace(" / ", " | ") + " |"


def _probe_row(name: str, s: dict[str, Any]) -> str:
    return common.latency_row(name, s)[: -len(" |")] + f" | {s['failures']} | {s['over_100_ms']} |"


def _bytes(n: int) -> str:
    if n >= 1_000_000:
        return f"{n / 1_000_000:.1f} MB"
    if n >= 1024:
        return f"{n / 1024:.1f} KiB"
    return f"{n} B"


def write(result: dict[str, Any], out: Path) -> list[Path]:
    return common.write(result, out, markdown)


say = common.teller("abuse")


def main() -> None:
    if sys.argv[1:] == ["--job"]:
        job_main()
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer samples")
    parser.add_argument("--out", type=Path, default=common.RESULTS)
    parser.add_argument(
        "--senders", type=int, default=3, choices=range(1, 9), help="concurrent senders (3)"
    )
    parser.add_argument("--requests", type=int, help="measured per entry (40 quick, 200 full)")
    parser.add_argument("--rounds", type=int, help="of the corpus per sender (8 quick, 40 full)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs)")
    parser.add_argument(
        "--gc-log",
        action="store_true",
        help="diagnosis: log the gateway's garbage collections (a sitecustomize on its"
        " PYTHONPATH) and match them to slow probes",
    )
    parser.add_argument(
        "--commit", help="the commit under test, when run from an exported tree (default: HEAD)"
    )
    args = parser.parse_args()
    result = run(args)
    common.published(result, write(result, args.out))
    if not all(v["pass"] for v in result["verdicts"]):
        sys.exit(1)


if __name__ == "__main__":
    main()

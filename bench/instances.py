"""Gateway instances: the family dashboard's throughput on 1 and 2 gateways on
PostgreSQL against 1 on SQLite, in one run, and the store's round trips per dashboard.

    .venv/bin/python -m bench.instances            # the full run, about 4 minutes
    .venv/bin/python -m bench.instances --quick    # about 80 s, fewer samples
    .venv/bin/python -m bench.instances --store-url postgresql://USER@HOST:PORT/DB

Starts, on 127.0.0.1, the three sandbox provinces once (seeded with `bench.families`,
as `bench.dashboard` does), a throwaway PostgreSQL server (``scripts/postgres``, stopped
and removed at the end, also on failure; none with ``--store-url``: then the run's
tables go to a schema of their own, dropped at the end), and three gateways, each its
own ``gongji --config CFG serve`` process on its own port: one on SQLite and two on
the same PostgreSQL store. The families are set up through the gateways' mutations:
the bindings once (they live in the provinces), the kinship links once into each
store. Then, with every gateway warm:

1. **Round trips per dashboard**: ``gongji_store_statements_total`` and
   ``gongji_store_transactions_total`` from a gateway's ``/metrics`` before and after
   N dashboards sent one at a time, less what the same gateway counted over an idle
   window as long (its background work and one scrape), divided by N; on each
   backend. Also the CPU time each process used per dashboard meanwhile.
2. **Throughput** of (a) 1 gateway on SQLite, (b) 1 gateway on PostgreSQL, (c) 2
   gateways on PostgreSQL: a closed loop from two `bench.load` processes, each with
   half the concurrency, for the same warm-up and duration; in (c) each process
   drives one gateway, in (a) and (b) both drive the one. The three configurations
   are measured in turn, R rounds, each round starting one further along (a b c,
   b c a, c a b, ...); the median round and the spread. The load average before and
   after each measurement, and the cores each kind of process used (from /proc).

Writes ``instances-DATE-TIME[-quick].md`` and ``.json`` into ``--out``
(bench/README.md says what each figure means).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import datetime as dt
import itertools
import json
import os
import re
import resource
import statistics
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from prometheus_client.parser import text_string_to_metric_families

from bench import common, families
from bench import load as bench_load
from bench.common import LOOPBACK, ROOT, cpu_seconds
from bench.dashboard import (
    QUERY,
    GraphQL,
    Servers,
    compare,
    load,
    set_up,
    start_sandboxes,
    write_config,
)
from gateway.ops.config import Settings
from sandbox.serve import free_port, spawn_gateway, wait_ready

OUT = common.RESULTS / "instances"
SENDERS = 2  # load processes in every measurement (the concurrency split between them)
CLOCK = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True, slots=True)
class Config:
    key: str
    name: str
    gateways: tuple[str, ...]  # which of the run's gateways take the load


CONFIGS = (
    Config("a", "1 gateway, SQLite", ("sqlite",)),
    Config("b", "1 gateway, PostgreSQL", ("pg1",)),
    Config("c", "2 gateways, PostgreSQL", ("pg1", "pg2")),
)
BACKEND = {"sqlite": "sqlite", "pg1": "postgresql", "pg2": "postgresql"}


@dataclass(frozen=True, slots=True)
class Plan:
    concurrency: int  # clients in all, split between the SENDERS load processes
    warmup_s: float
    duration_s: float
    rounds: int
    round_trip_requests: int

    @classmethod
    def of(cls, args: argparse.Namespace) -> Plan:
        plan = (
            cls(args.concurrency, 1.0, 4.0, 3, 50)
            if args.quick
            else cls(args.concurrency, 2.0, 8.0, 5, 300)
        )
        if args.rounds is not None:
            plan = dataclasses.replace(plan, rounds=args.rounds)
        if args.seconds is not None:
            plan = dataclasses.replace(plan, duration_s=args.seconds)
        return plan


# -- processes -----------------------------------------------------------------------------


@dataclass(slots=True)
class Run:
    servers: Servers
    gateways: dict[str, str] = field(default_factory=dict)  # name -> base URL
    pids: dict[str, int] = field(default_factory=dict)  # gateway name -> pid
    sandbox_pids: list[int] = field(default_factory=list)
    postmaster: int | None = None  # the throwaway server's, when it is ours
    store_url: str = ""
    server_log: Path | None = None  # the throwaway server's log, when it is ours


def postgres_start(directory: Path) -> str:
    """A throwaway PostgreSQL server in ``directory`` (new or empty); its URL."""
    done = subprocess.run(  # noqa: S603 (the project's own script)
        [str(ROOT / "scripts" / "postgres"), "start", str(directory)],
        capture_output=True,
        cwd=ROOT,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"scripts/postgres start failed: {done.stderr.decode()[-2000:]}")
    return done.stdout.decode().strip()


def postgres_stop(directory: Path) -> None:
    subprocess.run(  # noqa: S603 (the project's own script)
        [str(ROOT / "scripts" / "postgres"), "stop", str(directory)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=ROOT,
        check=False,
    )


def postmaster_pid(directory: Path) -> int | None:
    with contextlib.suppress(OSError, ValueError, IndexError):
        return int((directory / "data" / "postmaster.pid").read_text().splitlines()[0])
    return None


async def _server(url: str, drop: str | None = None) -> str:
    """The server's version; with ``drop``, that schema dropped first."""
    conn = await asyncpg.connect(url)
    try:
        if drop is not None:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{drop}" CASCADE')
        return str(await conn.fetchval("SHOW server_version"))
    finally:
        await conn.close()


async def _sql(url: str, *statements: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()


def log_statements(url: str, on: bool) -> None:
    """The server logs every statement it executes (``log_statement``), or stops."""
    value = "'all'" if on else "DEFAULT"
    asyncio.run(_sql(url, f"ALTER SYSTEM SET log_statement = {value}", "SELECT pg_reload_conf()"))
    time.sleep(1.0)  # every backend reads the configuration again


def mark(url: str, name: str) -> str:
    """A statement of our own in the server's log, to count between."""
    text = f"gongji-bench-mark-{name}-{os.getpid()}"
    asyncio.run(_sql(url, f"SELECT '{text}'"))
    return text


# '%m [%p] ' (PostgreSQL's default log_line_prefix), then what log_statement logs: a
# simple query ("statement: BEGIN") or an extended one's execution ("execute NAME: ...")
_LOGGED = re.compile(r"^\S+ \S+ \S+ \[\d+\] LOG:  (?:statement|execute [^:]*): (.*)$")


def logged_between(log: Path, marks: list[str]) -> list[list[str]]:
    """The statements the server logged between each two consecutive ``marks``."""
    entries: list[str] = []
    for line in log.read_text(encoding="utf-8", errors="replace").splitlines():
        found = _LOGGED.match(line)
        if found:
            entries.append(found.group(1))
        elif line.startswith("\t") and entries:  # a statement's next line
            entries[-1] += " " + line.strip()
    at = [next(i for i, e in enumerate(entries) if m in e) for m in marks]
    return [entries[a + 1 : b] for a, b in itertools.pairwise(at)]


def kind(statement: str) -> str:
    """A logged statement, shortened to what it is."""
    if statement.startswith("SELECT pg_advisory_unlock_all()"):
        return "asyncpg's reset (pg_advisory_unlock_all; CLOSE ALL; UNLISTEN *; RESET ALL)"
    return " ".join(statement.split())[:90]


def server_counts(busy: list[str], idle: list[str], requests: int) -> dict[str, Any]:
    """What the server executed per dashboard: busy less idle, in all and by kind."""
    kinds: dict[str, float] = {}
    for statement in busy:
        kinds[kind(statement)] = kinds.get(kind(statement), 0.0) + 1
    for statement in idle:
        kinds[kind(statement)] = kinds.get(kind(statement), 0.0) - 1
    per = {k: v / requests for k, v in kinds.items() if abs(v / requests) >= 0.01}
    return {
        "logged_busy": len(busy),
        "logged_idle": len(idle),
        "per_dashboard": (len(busy) - len(idle)) / requests,
        "by_kind": dict(sorted(per.items(), key=lambda kv: -kv[1])),
    }


def pg_config(servers: Servers, url: str, schema: str) -> Path:
    """The gateways' configuration (`dashboard.write_config`'s) with ``[store]``."""
    path = servers.work / "gateway-pg.toml"
    text = servers.config.read_text(encoding="utf-8")
    text += f'\n[store]\nurl = "{url}"\nschema = "{schema}"\n'
    path.write_text(text, encoding="utf-8")
    return path


def start_gateways(run: Run, configs: dict[str, Path]) -> None:
    """A ``gongji --config CFG serve`` process per name, each on its own port and data
    directory, all started before any is waited for (the two on PostgreSQL migrate
    once, under the store's lock). ``GONGJI_STORE_URL`` is not passed on: the
    configuration file alone says which store."""
    env = {k: v for k, v in os.environ.items() if k != "GONGJI_STORE_URL"}
    started: dict[str, subprocess.Popen[bytes]] = {}
    servers = run.servers
    for name, config in configs.items():
        port = free_port()
        process = spawn_gateway(
            config,
            port,
            servers.work / f"gateway-{name}",
            stdout=servers.log(f"gateway-{name}"),
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            env=env,
        )
        servers.processes.append(process)
        started[name] = process
        run.gateways[name] = f"http://{LOOPBACK}:{port}"
        run.pids[name] = process.pid
    for name, process in started.items():
        wait_ready(run.gateways[name], 60.0, process=process, path="/readyz")


def kinship_only(world: families.World) -> families.World:
    """The same families without their bindings (made once, in the provinces): what
    a second store needs set up through its own gateway."""
    stripped = {f.index: dataclasses.replace(f, bindings=[]) for f in world.families}
    return families.World(
        world.as_of,
        {n: stripped[f.index] for n, f in world.by_size.items()},
        [stripped[f.index] for f in world.load],
    )


def normalised(document: Any) -> Any:
    """A dashboard without what differs between two stores for the same facts: the
    kinship links' ids and times."""
    if isinstance(document, dict):
        return {k: normalised(v) for k, v in document.items() if k not in ("id", "createdAt")}
    if isinstance(document, list):
        return [normalised(v) for v in document]
    return document


# -- readings ------------------------------------------------------------------------------


def store_counts(url: str) -> dict[str, Any]:
    """The gateway's ``gongji_store_statements_total`` and ``..._transactions_total``
    (and the backend they are labelled with). The scrape itself reads the store (the
    outbox's counts) before the figures are taken."""
    text = httpx.get(url + "/metrics", timeout=30.0).text
    found: dict[str, Any] = {"statements": 0.0, "transactions": 0.0, "backend": None}
    for family in text_string_to_metric_families(text):
        if family.name not in ("gongji_store_statements", "gongji_store_transactions"):
            continue
        for sample in family.samples:
            if sample.name.endswith("_total"):
                found[family.name.removeprefix("gongji_store_")] += sample.value
                found["backend"] = sample.labels.get("backend")
    return found


def _children(parent: int) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, ValueError, IndexError):
            stat = (entry / "stat").read_text()
            if int(stat.rpartition(")")[2].split()[1]) == parent:
                pids.append(int(entry.name))
    return pids


def _cpu(pid: int) -> float | None:
    try:
        return cpu_seconds(pid)
    except (OSError, ValueError, IndexError):
        return None


def _machine_jiffies() -> dict[str, int]:
    fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    user, nice, system, idle, iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    return {
        "busy": user + nice + system + irq + softirq,
        "idle": idle + iowait,
        "steal": steal,
    }


def snapshot(run: Run) -> dict[str, Any]:
    """CPU seconds so far of every process of the run, and of the machine."""
    postgres: dict[int, float] | None = None
    if run.postmaster is not None:
        postgres = {}
        for pid in [run.postmaster, *_children(run.postmaster)]:
            used = _cpu(pid)
            if used is not None:
                postgres[pid] = used
    children = resource.getrusage(resource.RUSAGE_CHILDREN)  # the load processes, ended
    me = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "at": time.perf_counter(),
        "load": os.getloadavg(),
        "gateways": {name: _cpu(pid) or 0.0 for name, pid in run.pids.items()},
        "sandboxes": sum(_cpu(pid) or 0.0 for pid in run.sandbox_pids),
        "postgres": postgres,
        "load_generators": children.ru_utime + children.ru_stime,
        "bench": me.ru_utime + me.ru_stime,
        "machine": _machine_jiffies(),
    }


def cpu_between(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """CPU seconds each kind of process used between two snapshots; ``other``: the
    rest of the machine's busy time (whoever else runs here)."""
    spent: dict[str, Any] = {
        "wall_s": after["at"] - before["at"],
        "gateways": {
            name: after["gateways"][name] - before["gateways"].get(name, 0.0)
            for name in after["gateways"]
        },
        "sandboxes": after["sandboxes"] - before["sandboxes"],
        "postgres": None,
        "load_generators": after["load_generators"] - before["load_generators"],
        "bench": after["bench"] - before["bench"],
    }
    if after["postgres"] is not None and before["postgres"] is not None:
        spent["postgres"] = sum(
            used - before["postgres"].get(pid, 0.0) for pid, used in after["postgres"].items()
        )
    machine = {
        k: (after["machine"][k] - before["machine"][k]) / CLOCK for k in ("busy", "idle", "steal")
    }
    ours = (
        sum(spent["gateways"].values())
        + spent["sandboxes"]
        + (spent["postgres"] or 0.0)
        + spent["load_generators"]
        + spent["bench"]
    )
    spent["machine_busy"] = machine["busy"]
    spent["machine_idle"] = machine["idle"]
    spent["steal"] = machine["steal"]
    spent["other"] = max(0.0, machine["busy"] - ours)
    return spent


def as_cores(spent: dict[str, Any]) -> dict[str, float | None]:
    """CPU seconds over the wall time: cores used, on average."""
    wall = spent["wall_s"]

    def rate(value: float | None) -> float | None:
        return None if value is None else value / wall

    return {
        "gateways": sum(spent["gateways"].values()) / wall,
        "sandboxes": spent["sandboxes"] / wall,
        "postgres": rate(spent["postgres"]),
        "load_generators": spent["load_generators"] / wall,
        "other": spent["other"] / wall,
        "steal": spent["steal"] / wall,
        "idle": spent["machine_idle"] / wall,
    }


# -- measurements --------------------------------------------------------------------------


def target(url: str, tokens: list[str]) -> dict[str, Any]:
    return {"url": url + "/graphql", "tokens": tokens, "body": {"query": QUERY}}


def round_trips(run: Run, name: str, tokens: list[str], requests: int) -> dict[str, Any]:
    """The store's statements and transactions per dashboard on gateway ``name``:
    ``requests`` dashboards one at a time (after 10 unmeasured), less an idle window
    as long; and the CPU each process used per dashboard."""
    url = run.gateways[name]
    load({"kind": "count", "target": target(url, tokens), "concurrency": 1, "requests": 10})
    trace = BACKEND[name] == "postgresql" and run.server_log is not None
    marks: list[str] = []
    if trace:  # the server's own count too: every statement it executes, logged
        log_statements(run.store_url, on=True)
        marks.append(mark(run.store_url, "start"))
    first = store_counts(url)
    before = snapshot(run)
    outcome = load(
        {
            "kind": "count",
            "target": target(url, tokens),
            "concurrency": 1,
            "requests": requests,
            "warmup": 0,
        }
    )
    after = snapshot(run)
    middle = store_counts(url)
    if trace:
        marks.append(mark(run.store_url, "busy"))
    took = after["at"] - before["at"]
    time.sleep(took)  # idle: the gateway's background work (and one scrape) alone
    last = store_counts(url)
    server: dict[str, Any] | None = None
    if trace:
        marks.append(mark(run.store_url, "idle"))
        log_statements(run.store_url, on=False)
        assert run.server_log is not None
        try:
            busy_log, idle_log = logged_between(run.server_log, marks)
            server = server_counts(busy_log, idle_log, requests)
        except (OSError, StopIteration, ValueError) as exc:  # a log not as expected
            server = {"error": repr(exc)}
    spent = cpu_between(before, after)
    busy = {k: middle[k] - first[k] for k in ("statements", "transactions")}
    idle = {k: last[k] - middle[k] for k in ("statements", "transactions")}
    statements = (busy["statements"] - idle["statements"]) / requests
    transactions = (busy["transactions"] - idle["transactions"]) / requests
    per_ms = {
        "gateway": spent["gateways"][name] * 1000 / requests,
        "sandboxes": spent["sandboxes"] * 1000 / requests,
        "postgres": None if spent["postgres"] is None else spent["postgres"] * 1000 / requests,
        "load_generator": spent["load_generators"] * 1000 / requests,
    }
    return {
        "gateway": name,
        "backend": middle["backend"] or BACKEND[name],
        "requests": requests,
        "errors": outcome["errors"],
        "error_samples": outcome["error_samples"],
        "seconds": took,
        "latency": outcome["latency"],
        "counted": busy,
        "idle_window": idle,
        "statements_per_dashboard": statements,
        "transactions_per_dashboard": transactions,
        # BEGIN and COMMIT around each transaction block
        "round_trips_per_dashboard": statements + 2 * transactions,
        # and asyncpg's pool resetting the connection as it is given back
        "round_trips_with_reset": statements + 3 * transactions,
        "cpu_ms_per_dashboard": per_ms,
        # the statements the server logged (log_statement = all), throwaway server only
        "server_logged": server,
    }


def measure(
    run: Run, config: Config, tokens: list[str], plan: Plan
) -> tuple[dict[str, Any], list[float]]:
    """One throughput measurement of ``config``: SENDERS load processes at once, the
    concurrency split between them, each on one of the configuration's gateways."""
    jobs: list[dict[str, Any]] = []
    for i in range(SENDERS):
        name = config.gateways[i % len(config.gateways)]
        jobs.append(
            {
                "kind": "closed",
                "target": target(run.gateways[name], tokens[i::SENDERS] or tokens),
                "concurrency": plan.concurrency // SENDERS,
                "warmup_s": plan.warmup_s,
                "duration_s": plan.duration_s,
                "keep_latencies": True,
                "gateway": name,
            }
        )
    before = snapshot(run)
    with ThreadPoolExecutor(len(jobs)) as pool:
        outcomes = list(pool.map(load, jobs))
    after = snapshot(run)
    latencies = [v for o in outcomes for v in o.pop("latencies")]
    spent = cpu_between(before, after)
    by_gateway: dict[str, float] = {}
    for job, outcome in zip(jobs, outcomes, strict=True):
        by_gateway[job["gateway"]] = by_gateway.get(job["gateway"], 0.0) + outcome["rps"]
    return {
        "config": config.key,
        "rps": sum(o["rps"] for o in outcomes),
        "rps_by_gateway": by_gateway,
        "requests": sum(o["requests"] for o in outcomes),
        "errors": sum(o["errors"] for o in outcomes),
        "error_samples": [e for o in outcomes for e in o["error_samples"]][:5],
        "senders": [
            {k: o[k] for k in ("concurrency", "wall_s", "requests", "rps", "errors")}
            | {"gateway": job["gateway"]}
            for job, o in zip(jobs, outcomes, strict=True)
        ],
        "latency": bench_load.summary(latencies),
        "load_before": list(before["load"]),
        "load_after": list(after["load"]),
        "cpu_s": spent,
        "cores": as_cores(spent),
    }, latencies


def order(rounds: int) -> list[Config]:
    """a b c, b c a, c a b, a b c, ...: each configuration first, second and third as
    often as the rounds allow (a drift in the machine's load favours none)."""
    out = []
    for r in range(rounds):
        for i in range(len(CONFIGS)):
            out.append(CONFIGS[(r + i) % len(CONFIGS)])
    return out


def throughput(run: Run, tokens: list[str], plan: Plan) -> dict[str, Any]:
    measurements: list[dict[str, Any]] = []
    latencies: dict[str, list[float]] = {c.key: [] for c in CONFIGS}
    for i, config in enumerate(order(plan.rounds)):
        m, lat = measure(run, config, tokens, plan)
        m["round"] = i // len(CONFIGS) + 1
        m["position"] = i + 1
        measurements.append(m)
        latencies[config.key] += lat
        cores = m["cores"]
        say(
            f"  {i + 1:2d}. ({config.key}) {config.name}: {m['rps']:.1f} dashboards/s,"
            f" {m['errors']} errors; load {m['load_before'][0]:.2f} -> {m['load_after'][0]:.2f};"
            f" cores: gateways {cores['gateways']:.2f}, sandboxes {cores['sandboxes']:.2f},"
            f" postgres {_fmt(cores['postgres'])}, load {cores['load_generators']:.2f},"
            f" idle {cores['idle']:.2f}"
        )
    summary = {}
    for config in CONFIGS:
        mine = [m for m in measurements if m["config"] == config.key]
        rates = [m["rps"] for m in mine]
        median = statistics.median(rates)
        cores = {
            k: statistics.median(v for v in (m["cores"][k] for m in mine) if v is not None)
            if any(m["cores"][k] is not None for m in mine)
            else None
            for k in mine[0]["cores"]
        }
        summary[config.key] = {
            "name": config.name,
            "gateways": list(config.gateways),
            "rounds_rps": rates,
            "median_rps": median,
            "min_rps": min(rates),
            "max_rps": max(rates),
            "spread": (max(rates) - min(rates)) / median if median else None,
            "errors": sum(m["errors"] for m in mine),
            "latency": bench_load.summary(latencies[config.key]),
            "median_cores": cores,
            "load_before": [m["load_before"][0] for m in mine],
            "load_after": [m["load_after"][0] for m in mine],
        }
    a, b, c = (summary[k]["median_rps"] for k in ("a", "b", "c"))
    return {
        "measurements": measurements,
        "configs": summary,
        "ratios": {"b_over_a": b / a if a else None, "c_over_b": c / b if b else None},
    }


def _fmt(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


# -- the run ---------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> dict[str, Any]:
    plan = Plan.of(args)
    if plan.concurrency < SENDERS or plan.concurrency % SENDERS:
        raise SystemExit(f"--concurrency: a multiple of {SENDERS}")
    began = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="gongji-bench-"))
    servers = Servers(work=work, config=work / "gateway.toml")
    bench_run = Run(servers)
    result = common.begin(
        "instances", args.quick, dataclasses.asdict(plan), common.source(args.commit), QUERY
    )
    result["senders"] = SENDERS
    world = families.world(load_families=4)
    roster = work / "roster.json"
    roster.write_text(json.dumps(world.roster(), ensure_ascii=False), encoding="utf-8")
    pg_dir: Path | None = None
    url: str = args.store_url or ""
    schema = "bench"
    if args.store_url:  # someone else's server: a schema of our own, dropped at the end
        schema = f"bench_instances_{dt.datetime.now():%Y%m%d_%H%M%S}_{os.getpid()}"
    clients: list[GraphQL] = []
    try:
        if not url:
            say("starting a throwaway PostgreSQL server (scripts/postgres)")
            pg_dir = Path(tempfile.mkdtemp(prefix="gongji-bench-pg-"))
            url = postgres_start(pg_dir)
            bench_run.postmaster = postmaster_pid(pg_dir)
            bench_run.server_log = pg_dir / "server.log"
        bench_run.store_url = url
        version = asyncio.run(_server(url))
        result["postgres"] = {
            "version": version,
            "server": "throwaway (scripts/postgres: fsync, synchronous_commit and"
            " full_page_writes off), on this machine"
            if pg_dir
            else "given by --store-url",
            "schema": schema,
            "pool_size": 10,
        }
        say(f"PostgreSQL {version}; starting the sandboxes and three gateways")
        start_sandboxes(servers, roster)
        bench_run.sandbox_pids = [p.pid for p in servers.processes]
        write_config(servers)
        pg = pg_config(servers, url, schema)
        start_gateways(bench_run, {"sqlite": servers.config, "pg1": pg, "pg2": pg})
        settings = Settings.load(servers.config)
        gql = {name: GraphQL(u, settings) for name, u in bench_run.gateways.items()}
        clients += gql.values()

        say("setting up the families: bindings and kinship through SQLite's gateway")
        result["setup"] = {"sqlite": set_up(gql["sqlite"], world)}
        say("the kinship links again, into PostgreSQL, through its first gateway")
        result["setup"]["postgresql"] = set_up(gql["pg1"], kinship_only(world))
        result["setup"]["people"] = len(world.roster()["people"])
        callers = [f.caller["certNo"] for f in world.load]
        tokens = [gql["sqlite"].token(c) for c in callers]
        for client in gql.values():  # warm: every caller once through every gateway
            for family in world.families:
                client(family.caller["certNo"], QUERY)

        say("checking the three gateways answer the same dashboards")
        differences: dict[str, list[str]] = {}
        for caller in callers:
            reference = normalised(gql["sqlite"](caller, QUERY))
            for name in ("pg1", "pg2"):
                diff = compare(normalised(gql[name](caller, QUERY)), reference)
                if diff:
                    differences[f"{name} {caller[:6]}…{caller[-4:]}"] = diff[:10]
        result["equivalence"] = {"callers": len(callers), "differences": differences}
        if differences:
            say(f"WARNING: the backends' dashboards differ: {differences}")

        say(f"round trips: {plan.round_trip_requests} dashboards one at a time, each backend")
        result["round_trips"] = {
            BACKEND[name]: round_trips(bench_run, name, tokens, plan.round_trip_requests)
            for name in ("sqlite", "pg1")
        }
        for backend, rt in result["round_trips"].items():
            say(
                f"  {backend}: {rt['statements_per_dashboard']:.2f} statements,"
                f" {rt['transactions_per_dashboard']:.2f} transactions per dashboard"
            )

        say(
            f"throughput: {plan.rounds} rounds of a, b, c (rotated), {plan.concurrency}"
            f" clients from {SENDERS} processes, {plan.warmup_s:g} s + {plan.duration_s:g} s each"
        )
        result["throughput"] = throughput(bench_run, tokens, plan)
        result["logs_tail"] = {
            name: _tail(work / f"gateway-{name}.log") for name in bench_run.gateways
        }
    finally:
        for client in clients:
            client.client.close()
        servers.stop_all()
        if pg_dir is not None:
            say("stopping the throwaway PostgreSQL server")
            postgres_stop(pg_dir)
        elif args.store_url:
            with contextlib.suppress(Exception):
                asyncio.run(_server(args.store_url, drop=schema))
        common.clean_up(work, args.keep, say)
    common.end(result, began)
    return result


def _tail(path: Path) -> list[str]:
    """The gateway log's warnings and errors (its last 5), if any."""
    with contextlib.suppress(OSError):
        found = [
            line
            for line in path.read_text(encoding="utf-8", errors="replace").splitlines()
            if "ERROR" in line or "WARNING" in line or "Traceback" in line
        ]
        return found[-5:]
    return []


# -- the report ------------------------------------------------------------------------------

TWO_INSTANCES = (
    "Two instances are two `gongji --config CFG serve` processes on separate ports, the"
    " load spread over both (one load process each), not `serve --workers 2` on one"
    " port: each instance's `/metrics` (a scrape on a `--workers` port reaches whichever"
    " worker takes the connection, docs/deployment.md) and CPU time (its own pid) can be"
    " read, and the split is exact. Under `--workers` the kernel hands each of the load"
    " driver's keep-alive connections to one worker for the whole measurement, so 8"
    " connections could split 5 : 3 or worse. Each worker runs the same app"
    " (`worker_app` is `create_app`), so the per-process cost is the same."
)


def markdown(result: dict[str, Any]) -> str:
    plan = result["plan"]
    t = result["throughput"]
    lines = [
        f"# Gateway instances: SQLite and PostgreSQL ({result['date']})",
        "",
        common.commit_line(result["source"], f": {', '.join(result['source']['uncommitted'])}")
        if result["source"]["uncommitted"]
        else common.commit_line(result["source"]),
        common.machine_line(result["machine"]),
        f"- PostgreSQL {result['postgres']['version']}, {result['postgres']['server']};"
        f" schema `{result['postgres']['schema']}`, pool of"
        f" {result['postgres']['pool_size']} connections per instance",
        f"- run: {'quick' if result['quick'] else 'full'}, {result['duration_s']:.0f} s;"
        f" {plan['concurrency']} clients from {result['senders']} load processes"
        f" ({plan['concurrency'] // result['senders']} each), {plan['warmup_s']:g} s warm-up"
        f" + {plan['duration_s']:g} s measured, {plan['rounds']} rounds",
        f"- set-up: {result['setup']['people']} people; through SQLite's gateway"
        f" {result['setup']['sqlite']['bindings']} bindings (in the provinces) and"
        f" {result['setup']['sqlite']['kinship_links']} kinship links, the same"
        f" {result['setup']['postgresql']['kinship_links']} kinship links into PostgreSQL;"
        f" dashboards of {result['equivalence']['callers']} callers (8 relatives each) equal"
        f" on the three gateways: "
        + ("yes" if not result["equivalence"]["differences"] else "**no**, see the JSON"),
        "",
        TWO_INSTANCES,
        "",
        "## Throughput (dashboards/s)",
        "",
        "| configuration | median | min | max | spread | rounds | p50 / p99 ms | errors |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for key, s in t["configs"].items():
        lat = s["latency"]
        lines.append(
            f"| ({key}) {s['name']} | **{s['median_rps']:.1f}** | {s['min_rps']:.1f}"
            f" | {s['max_rps']:.1f} | {s['spread'] * 100:.0f} %"
            f" | {', '.join(f'{r:.1f}' for r in s['rounds_rps'])}"
            f" | {lat['p50_ms']:.0f} / {lat['p99_ms']:.0f} | {s['errors']} |"
        )
    r = t["ratios"]
    lines += [
        "",
        f"Ratios of the medians: PostgreSQL / SQLite (b / a) {_fmt(r['b_over_a'])};"
        f" 2 / 1 instances on PostgreSQL (c / b) {_fmt(r['c_over_b'])}.",
        "",
        "## Each measurement, in the order run",
        "",
        "Load average (1 min) before and after; cores used on average over the"
        " measurement (warm-up included), from /proc: the gateways under load, the"
        " three sandboxes, PostgreSQL (server and backends), the two load processes,"
        " everything else busy on the machine, time stolen by the hypervisor, idle.",
        "",
        "| # | config | dashboards/s | by gateway | load before → after | gateways | sandboxes"
        " | postgres | load gen. | other | steal | idle |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for m in t["measurements"]:
        c = m["cores"]
        split = " + ".join(f"{v:.1f}" for v in m["rps_by_gateway"].values())
        lines.append(
            f"| {m['position']} | {m['config']} | {m['rps']:.1f} | {split}"
            f" | {m['load_before'][0]:.2f} → {m['load_after'][0]:.2f}"
            f" | {c['gateways']:.2f} | {c['sandboxes']:.2f} | {_fmt(c['postgres'])}"
            f" | {c['load_generators']:.2f} | {c['other']:.2f} | {c['steal']:.2f}"
            f" | {c['idle']:.2f} |"
        )
    lines += [
        "",
        "Median cores per configuration:",
        "",
        "| configuration | gateways | sandboxes | postgres | load gen. | other | steal | idle |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for key, s in t["configs"].items():
        c = s["median_cores"]
        lines.append(
            f"| ({key}) {s['name']} | {_fmt(c['gateways'])} | {_fmt(c['sandboxes'])}"
            f" | {_fmt(c['postgres'])} | {_fmt(c['load_generators'])} | {_fmt(c['other'])}"
            f" | {_fmt(c['steal'])} | {_fmt(c['idle'])} |"
        )
    lines += [
        "",
        "## The store's round trips per dashboard",
        "",
        f"`gongji_store_statements_total` and `gongji_store_transactions_total` from the"
        f" gateway's `/metrics` before and after {plan['round_trip_requests']} dashboards"
        " one at a time, less the counts of an idle window as long (background work and"
        " one scrape), divided by the dashboards. A dashboard's own counts are whole"
        " numbers: the fractions are the gateway's background work (the reconciler every"
        " 2 s, the change feeds every 10 s), which lands unevenly in the two windows.",
        "",
        "| backend | statements | transactions | round trips (statements + 2 × transactions)"
        " | with asyncpg's reset (+ 1 × transactions) | counted: busy / idle window"
        " (statements) | p50 ms |",
        "|---|---|---|---|---|---|---|",
    ]
    for backend, rt in result["round_trips"].items():
        if backend == "postgresql":
            trips = f"{rt['round_trips_per_dashboard']:.2f}"
            with_reset = f"{rt['round_trips_with_reset']:.2f}"
        else:  # not network round trips, and reads commit nothing: see below
            trips, with_reset = "n/a (below)", "n/a"
        lines.append(
            f"| {backend} | {rt['statements_per_dashboard']:.2f}"
            f" | {rt['transactions_per_dashboard']:.2f} | {trips} | {with_reset}"
            f" | {rt['counted']['statements']:.0f} / {rt['idle_window']['statements']:.0f}"
            f" | {rt['latency']['p50_ms']:.1f} |"
        )
    lines += [
        "",
        "On SQLite the store is a file in the gateway's process: a statement is a hop to"
        " aiosqlite's thread and back, not a network round trip, and a transaction that"
        " only read commits nothing (no BEGIN is sent; sqlite3 begins one before a write),"
        " so its transactions are not round trips of their own: only those that wrote add"
        " one hop, their COMMIT. On PostgreSQL every transaction block is BEGIN ..."
        " COMMIT over the socket, and asyncpg's pool sends one more query"
        " (`SELECT pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL;`) when the"
        " connection is given back, before the block's caller goes on.",
        "",
    ]
    server = result["round_trips"].get("postgresql", {}).get("server_logged")
    if server and "per_dashboard" in server:
        lines += [
            "The server's own count, the same dashboards: with `log_statement = all` (the"
            " throwaway server only, during this count and not the throughput), the"
            f" statements it logged: {server['logged_busy']} over the dashboards,"
            f" {server['logged_idle']} over the idle window, so"
            f" **{server['per_dashboard']:.2f} per dashboard**, each a round trip (a"
            " simple query, or an extended one's execution; an `executemany` logs each"
            " row but is sent as one batch). By kind, per dashboard (the background's"
            " statements, some in one window and not the other, leave fractions and"
            " negative rows: a dashboard's own counts are whole numbers):",
            "",
            "| per dashboard | statement |",
            "|---|---|",
            *[f"| {n:.2f} | `{k}` |" for k, n in server["by_kind"].items()],
        ]
    lines += [
        "",
        "CPU time per dashboard meanwhile (one at a time), ms:",
        "",
        "| backend | gateway | sandboxes (3) | postgres | load process (incl. its start) |",
        "|---|---|---|---|---|",
    ]
    for backend, rt in result["round_trips"].items():
        c = rt["cpu_ms_per_dashboard"]
        lines.append(
            f"| {backend} | {c['gateway']:.1f} | {c['sandboxes']:.1f}"
            f" | {_fmt(c['postgres'], 1)} | {c['load_generator']:.1f} |"
        )
    logs = {k: v for k, v in result.get("logs_tail", {}).items() if v}
    if logs:
        lines += ["", "## Warnings in the gateways' logs", ""]
        for name, found in logs.items():
            lines += [f"- {name}:", *[f"    - `{line[:200]}`" for line in found]]
    lines += ["", "The JSON beside this file has every figure."]
    return "\n".join(lines) + "\n"


say = common.teller("instances")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="about 80 s, fewer samples")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument(
        "--store-url",
        help="a PostgreSQL server to use (default: a throwaway one, scripts/postgres)",
    )
    parser.add_argument("--concurrency", type=int, default=8, help="clients in all (8)")
    parser.add_argument("--rounds", type=int, help="rounds of the three (3 quick, 5 full)")
    parser.add_argument("--seconds", type=float, help="measured seconds each (4 quick, 8 full)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs)")
    parser.add_argument(
        "--commit", help="the commit under test, when run from an exported tree (default: HEAD)"
    )
    args = parser.parse_args()
    common.stop_cleanly_on_sigterm()
    result = run(args)
    paths = common.write(result, args.out, markdown)
    t = result["throughput"]["configs"]
    for key, s in t.items():
        print(
            f"({key}) {s['name']}: median {s['median_rps']:.1f} dashboards/s"
            f" (min {s['min_rps']:.1f}, max {s['max_rps']:.1f})"
        )
    for backend, rt in result["round_trips"].items():
        print(
            f"{backend}: {rt['statements_per_dashboard']:.2f} statements,"
            f" {rt['transactions_per_dashboard']:.2f} transactions per dashboard"
        )
    for path in paths:
        print(f"written: {path}")


if __name__ == "__main__":
    main()

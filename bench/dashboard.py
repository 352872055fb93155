"""The family dashboard benchmark: overhead, fan-out, calls, throughput and memory.

    .venv/bin/python -m bench.dashboard            # the full run, about 4.5 minutes
    .venv/bin/python -m bench.dashboard --quick    # about 2 minutes, fewer samples
    .venv/bin/python -m bench.dashboard --quick --callgrind   # + instructions, 5 to 8 min
    .venv/bin/python -m bench.dashboard --out bench/results
    .venv/bin/python -m bench.dashboard --soak        # the soak alone, about 8.5 minutes
    .venv/bin/python -m bench.dashboard --soak 600 --soak-every 10

Starts, on 127.0.0.1, the three sandbox provinces (``gongji sandbox NAME``, seeded
with `bench.families`) and the gateway (``gongji --config CFG serve``) as separate
uvicorn processes, sets up the families through the gateway's own mutations, then
drives load from separate processes (`bench.load`) and writes a Markdown and a JSON
report into ``--out`` (see bench/README.md for what each figure means and how). At the
end, the steady figure (`bench.steady`): function calls per dashboard, and with
``--callgrind`` instructions, of the gateway and the baseline in-process. With
``--soak``, only the soak: steady load on the served gateway, its RSS sampled until
it levels (its own report, ``dashboard-soak-...``).

Upstream latency is added by the sandboxes' fault mode (``PUT /_faults``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from bench import common, families, profiling, report, steady
from bench import load as bench_load
from bench.common import LOOPBACK, ROOT, cpu_seconds, proc_status
from gateway.common.auth import mint_token
from gateway.ops.config import Settings
from gateway.provinces.federated import adapter_classes
from sandbox.serve import free_port, spawn_gateway, spawn_sandbox, stop, wait_ready

PROVINCES = ("hebei", "jiangsu", "henan")
# --soak without SECONDS: long enough on the 2-core VM (about 50 dashboards a second) for
# the last third to begin after RSS levels (about 12,500 dashboards, RESULTS.md)
SOAK_S = 480.0
SOAK_QUICK_S = 60.0  # --soak --quick: a check that the stage runs; shows the rise only

# The family dashboard: the caller, their insurance and balance, their bindings and
# kinship links, and every relative across the provinces with both features' verdicts.
QUERY = """query Dashboard {
  me {
    certNo name
    insuredArea { code name }
    province { code name }
    insurance { type status }
    account { balance }
    mutualAidBindings {
      asAuthorizer { id status relation createdAt beneficiary { name certNo } province { code } }
      asBeneficiary { id status relation createdAt authorizer { name certNo } province { code } }
    }
    kinshipMembers { id status relation channel createdAt member { name certNo } }
    addedMeAsMember { id status relation adder { name certNo } }
    family {
      relative { name certNo }
      relation ageBand
      insuredArea { code name }
      province { code name }
      insurance { type status }
      mutualAid {
        iAuthorize { id status }
        authorizesMe { id status }
        verdict { state reason message }
      }
      kinship {
        iAdded { id status }
        addedMe { id status }
        verdict { state reason documentsNeeded message }
      }
    }
  }
}"""


@dataclass(frozen=True, slots=True)
class Plan:
    """How long and how much of each measurement."""

    overhead_pairs: int
    overhead_pairs_slow: int
    fanout_requests: int
    calls_requests: int
    concurrency: int
    warmup_s: float
    throughput_s: float
    throughput_rounds: int
    repeats: int
    repeat_s: float
    profile_requests: int
    latency_ms: float
    cpu_requests: int
    # the steady figure (`bench.steady`): the same in quick and full runs, comparable
    steady_runs: int = 3
    steady_requests: int = 50
    callgrind_requests: int = 0  # 0: no callgrind (--callgrind)

    @classmethod
    def of(cls, args: argparse.Namespace) -> Plan:
        if args.quick:
            plan = cls(40, 6, 6, 5, args.concurrency, 0.5, 4, 2, 3, 3, 20, args.latency_ms, 100)
        else:
            plan = cls(300, 30, 30, 20, args.concurrency, 2, 8, 3, 5, 8, 50, args.latency_ms, 400)
        plan = dataclasses.replace(
            plan, steady_runs=args.steady_runs, callgrind_requests=args.callgrind or 0
        )
        if args.repeats is not None:
            plan = dataclasses.replace(plan, repeats=args.repeats)
        if args.repeat_seconds is not None:
            plan = dataclasses.replace(plan, repeat_s=args.repeat_seconds)
        return plan


# -- processes ---------------------------------------------------------------------------


@dataclass(slots=True)
class Servers:
    work: Path
    config: Path
    sandboxes: dict[str, str] = field(default_factory=dict)  # name -> base URL
    gateway: str = ""
    baseline: str = ""
    gateway_process: subprocess.Popen[bytes] | None = None
    baseline_process: subprocess.Popen[bytes] | None = None
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    logs: list[Any] = field(default_factory=list)

    def log(self, name: str) -> Any:
        handle = (self.work / f"{name}.log").open("wb")
        self.logs.append(handle)
        return handle

    def stop_all(self) -> None:
        for process in reversed(self.processes):
            stop(process)
        for handle in self.logs:
            handle.close()


def start_sandboxes(servers: Servers, roster: Path) -> None:
    started: dict[str, subprocess.Popen[bytes]] = {}
    for name in PROVINCES:
        port = free_port()
        process = spawn_sandbox(
            name,
            port,
            servers.work / "sandboxes",
            ["--roster", str(roster)],
            stdout=servers.log(f"sandbox-{name}"),
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )
        servers.processes.append(process)
        servers.sandboxes[name] = f"http://{LOOPBACK}:{port}"
        started[name] = process
    for name, url in servers.sandboxes.items():
        wait_ready(url, process=started[name])


def write_config(servers: Servers) -> None:
    lines = [
        'mode = "sandbox"',
        "",
        "[limits]  # the set-up makes many mutations per person: no rate limit in the way",
        'per_subject = "100000/minute"',
        'per_address = "100000/minute"',
    ]
    for name, url in servers.sandboxes.items():
        lines += ["", f"[provinces.{name}]", f'base_url = "{url}"']
    servers.config.write_text("\n".join(lines) + "\n", encoding="utf-8")


def start_gateway(servers: Servers) -> None:
    port = free_port()
    process = spawn_gateway(
        servers.config,
        port,
        servers.work / "gateway",
        stdout=servers.log("gateway"),
        stderr=subprocess.STDOUT,
        cwd=ROOT,
    )
    servers.processes.append(process)
    servers.gateway_process = process
    servers.gateway = f"http://{LOOPBACK}:{port}"
    wait_ready(servers.gateway, 30.0, process=process, path="/readyz")


def start_baseline(servers: Servers, db: Path) -> None:
    port = free_port()
    process = subprocess.Popen(  # noqa: S603 (our own interpreter and module)
        [
            sys.executable,
            "-m",
            "bench.baseline",
            "--config",
            str(servers.config),
            "--db",
            str(db),
            "--port",
            str(port),
        ],
        stdout=servers.log("baseline"),
        stderr=subprocess.STDOUT,
        cwd=ROOT,
    )
    servers.processes.append(process)
    servers.baseline_process = process
    servers.baseline = f"http://{LOOPBACK}:{port}"
    wait_ready(servers.baseline, 30.0, process=process, path="/healthz")


def set_latency(servers: Servers, latency_ms: float) -> None:
    for url in servers.sandboxes.values():
        answer = httpx.put(url + "/_faults", json={"latency_ms": latency_ms, "jitter_ms": 0})
        answer.raise_for_status()


def copy_store(servers: Servers, to: Path) -> Path:
    """A consistent copy of the running gateway's store (SQLite's backup API)."""
    to.mkdir(parents=True, exist_ok=True)
    target = to / "gateway.sqlite3"
    source = sqlite3.connect(servers.work / "gateway" / "gateway.sqlite3")
    copy = sqlite3.connect(target)
    with contextlib.closing(source), contextlib.closing(copy):
        source.backup(copy)
    return target


def measure_steady(**kwargs: Any) -> dict[str, Any]:
    """`steady.measure`, or what stopped it (the rest of the run is reported anyway)."""
    try:
        return steady.measure(**kwargs)
    except RuntimeError as exc:
        say(f"  the steady figure failed: {str(exc)[-300:]}")
        return {"error": str(exc)[-2000:]}


def start_and_set_up(
    servers: Servers, roster: Path, world: families.World, result: dict[str, Any]
) -> tuple[Settings, GraphQL]:
    """The sandboxes (seeded with ``world``'s roster, written to ``roster``) and the
    gateway started; the families set up through the gateway's mutations (noted in
    ``result["setup"]``); every caller's dashboard opened once (locations remembered)."""
    roster.write_text(json.dumps(world.roster(), ensure_ascii=False), encoding="utf-8")
    say("starting the sandboxes and the gateway")
    start_sandboxes(servers, roster)
    write_config(servers)
    start_gateway(servers)
    settings = Settings.load(servers.config)
    gql = GraphQL(servers.gateway, settings)

    say("setting up the families through the gateway's mutations")
    result["setup"] = set_up(gql, world)
    result["setup"]["people"] = len(world.roster()["people"])
    for family in world.families:  # warm: every caller once (locations remembered)
        gql(family.caller["certNo"], QUERY)
    return settings, gql


# -- the gateway as a client sees it -------------------------------------------------------


class GraphQL:
    def __init__(self, url: str, settings: Settings) -> None:
        self.client = httpx.Client(base_url=url, timeout=30.0)
        self.settings = settings
        self._tokens: dict[str, str] = {}

    def token(self, cert_no: str) -> str:
        if cert_no not in self._tokens:
            self._tokens[cert_no] = mint_token(cert_no, self.settings.auth)
        return self._tokens[cert_no]

    def __call__(
        self, cert_no: str, query: str, variables: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        response = self.client.post(
            "/graphql",
            json={"query": query, "variables": variables or {}},
            headers={"authorization": f"Bearer {self.token(cert_no)}"},
        )
        answer: dict[str, Any] = response.json()
        if response.status_code != 200 or answer.get("errors"):
            raise RuntimeError(f"GraphQL failed: {response.status_code} {response.text[:800]}")
        return answer["data"]  # type: ignore[no-any-return]

    def payload(self, cert_no: str, query: str, variables: dict[str, Any]) -> dict[str, Any]:
        """The one mutation's payload, which must carry no refusal."""
        data = self(cert_no, query, variables)
        (payload,) = data.values()
        if payload.get("errors"):
            raise RuntimeError(f"refused: {payload['errors']} for {variables}")
        return payload  # type: ignore[no-any-return]


BIND = """mutation($input: BindMutualAidInput!) {
  bindMutualAid(input: $input) { binding { id status } errors { code field } } }"""
ADD = """mutation($input: AddKinshipMemberInput!) {
  addKinshipMember(input: $input) { link { id status } errors { code field } } }"""
RESPOND = """mutation($id: ID!) {
  respondToKinshipRequest(requestId: $id, accept: true) { link { id status } errors { code } } }"""
ACTIVATE = """mutation($id: ID!, $password: String!) {
  activateKinshipMember(memberId: $id, paymentPassword: $password) {
    link { id status } errors { code } } }"""


def set_up(gql: GraphQL, world: families.World) -> dict[str, int]:
    """Every family's bindings and kinship links, through the gateway's mutations."""
    made = {"bindings": 0, "kinship_links": 0}
    for family in world.families:
        cert = {p["key"]: p["certNo"] for p in family.people}
        name = {p["key"]: p["name"] for p in family.people}
        for bind in family.bindings:
            payload = gql.payload(
                cert[bind.authorizer],
                BIND,
                {
                    "input": {
                        "beneficiaryCertNo": cert[bind.beneficiary],
                        "beneficiaryName": name[bind.beneficiary],
                        "relation": bind.relation,
                        "commitmentSigned": bind.commitment,
                    }
                },
            )
            if payload["binding"]["status"] != "ACTIVE":
                raise RuntimeError(f"binding not active: {payload}")
            made["bindings"] += 1
        for add in family.kinship:
            link = gql.payload(
                cert[add.adder],
                ADD,
                {
                    "input": {
                        "memberCertNo": cert[add.member],
                        "memberName": name[add.member],
                        "relation": add.relation,
                        "channel": "APP",
                    }
                },
            )["link"]
            gql.payload(cert[add.member], RESPOND, {"id": link["id"]})
            active = gql.payload(
                cert[add.adder],
                ACTIVATE,
                {"id": link["id"], "password": families.PAYMENT_PASSWORD},
            )
            if active["link"]["status"] != "ACTIVE":
                raise RuntimeError(f"kinship link not active: {active}")
            made["kinship_links"] += 1
    return made


# -- measurements ----------------------------------------------------------------------------


def load(job: dict[str, Any]) -> dict[str, Any]:
    """One job of the load driver, in its own process."""
    done = subprocess.run(
        [sys.executable, "-m", "bench.load"],
        input=json.dumps(job).encode(),
        capture_output=True,
        cwd=ROOT,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"bench.load failed: {done.stderr.decode()[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def gateway_target(servers: Servers, tokens: list[str]) -> dict[str, Any]:
    return {"url": servers.gateway + "/graphql", "tokens": tokens, "body": {"query": QUERY}}


def baseline_target(servers: Servers, tokens: list[str]) -> dict[str, Any]:
    return {"url": servers.baseline + "/dashboard", "tokens": tokens, "body": None}


def upstream_counts(servers: Servers) -> dict[tuple[str, str], float]:
    text = httpx.get(servers.gateway + "/metrics").text
    counts: dict[tuple[str, str], float] = {}
    for family in text_string_to_metric_families(text):
        if family.name != "gongji_upstream_requests":
            continue
        for sample in family.samples:
            if sample.name.endswith("_total"):
                key = (sample.labels["province"], sample.labels["outcome"])
                counts[key] = sample.value
    return counts


def cpu_per_request(pid: int, target: dict[str, Any], requests: int) -> tuple[float, int]:
    """CPU milliseconds of process ``pid`` per request to ``target``: ``requests`` sent
    one at a time by the load driver, after 10 unmeasured (warm); and how many of them
    failed (a failed request costs less: say so)."""
    load({"kind": "count", "target": target, "concurrency": 1, "requests": 10})  # warm
    before = cpu_seconds(pid)
    outcome = load(
        {
            "kind": "count",
            "target": target,
            "concurrency": 1,
            "requests": requests,
            "warmup": 0,
        }
    )
    return (cpu_seconds(pid) - before) * 1000 / requests, int(outcome["errors"])


@contextlib.contextmanager
def sampling(pid: int, every: float = 0.25) -> Iterator[list[int]]:
    """VmRSS samples (KiB) of a process, taken in a thread while the block runs."""
    samples: list[int] = []
    done = threading.Event()

    def sample() -> None:
        while not done.wait(every):
            with contextlib.suppress(OSError):
                samples.append(proc_status(pid)["VmRSS"])

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield samples
    finally:
        done.set()
        thread.join()


def timeline(waves: list[list[profiling.Call]], took: float) -> dict[str, Any]:
    """A recorded dashboard's upstream requests, times from the first one's start."""
    origin = waves[0][0].start if waves else 0.0
    return {
        "dashboard_ms": took * 1000,
        "waves": [[c.to_json(origin) for c in wave] for wave in waves],
    }


def compare(gateway: Any, baseline: Any, path: str = "") -> list[str]:
    """Where two JSON documents differ (empty: equal)."""
    if isinstance(gateway, dict) and isinstance(baseline, dict):
        out = []
        for key in sorted(set(gateway) | set(baseline)):
            if key not in gateway or key not in baseline:
                out.append(f"{path}.{key}: only in {'gateway' if key in gateway else 'baseline'}")
            else:
                out += compare(gateway[key], baseline[key], f"{path}.{key}")
        return out
    if isinstance(gateway, list) and isinstance(baseline, list):
        if len(gateway) != len(baseline):
            return [f"{path}: {len(gateway)} items vs {len(baseline)}"]
        return [
            d
            for i, (a, b) in enumerate(zip(gateway, baseline, strict=True))
            for d in compare(a, b, f"{path}[{i}]")
        ]
    return [] if gateway == baseline else [f"{path}: {gateway!r} vs {baseline!r}"]


def run(args: argparse.Namespace) -> dict[str, Any]:
    plan = Plan.of(args)
    began = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="gongji-bench-"))
    servers = Servers(work=work, config=work / "gateway.toml")
    result = common.begin(
        "dashboard", args.quick, dataclasses.asdict(plan), common.tree_source(args.commit), QUERY
    )
    world = families.world(load_families=4)
    roster = work / "roster.json"
    codes = {cls.code: name for name, cls in adapter_classes().items()}
    try:
        settings, gql = start_and_set_up(servers, roster, world, result)
        assert servers.gateway_process is not None
        pid = servers.gateway_process.pid
        callers = [f.caller["certNo"] for f in world.load]
        tokens = [gql.token(c) for c in callers]
        sample = gql(callers[0], QUERY)
        result["dashboard_sample"] = {
            "family_members": len(sample["me"]["family"]),
            "provinces": sorted({m["province"]["code"] for m in sample["me"]["family"]}),
            "bindings_as_authorizer": len(sample["me"]["mutualAidBindings"]["asAuthorizer"]),
            "kinship_members": len(sample["me"]["kinshipMembers"]),
            "bytes": len(json.dumps(sample, ensure_ascii=False).encode()),
        }

        say("starting the baseline; checking it answers the same document")
        start_baseline(servers, copy_store(servers, work / "baseline"))
        differences: dict[str, list[str]] = {}
        for caller in callers:
            answer = httpx.post(
                servers.baseline + "/dashboard",
                headers={"authorization": f"Bearer {gql.token(caller)}"},
            ).json()
            diff = compare({"data": gql(caller, QUERY)}, answer)
            if diff:
                differences[caller[:6] + "…" + caller[-4:]] = diff[:10]
        result["equivalence"] = {"callers": len(callers), "differences": differences}

        say("recording one dashboard's upstream requests (in-process gateway, then baseline)")
        set_latency(servers, plan.latency_ms)
        recorded: dict[str, tuple[list[list[profiling.Call]], float]] = {}
        for side, where in (("gateway", "inprocess-record"), ("baseline", "baseline-record")):
            copy_store(servers, work / where)
            recorded[side] = asyncio.run(
                profiling.record(settings, work / where, tokens[0], QUERY, side)
            )
        set_latency(servers, 0)
        recorded_waves = recorded["gateway"][0]
        result["upstream_timeline"] = {
            "latency_ms": plan.latency_ms,
            **timeline(*recorded["gateway"]),
            "baseline": timeline(*recorded["baseline"]),
        }
        asked = {
            side: sorted(profiling.request_key(c) for wave in waves for c in wave)
            for side, (waves, _) in recorded.items()
        }
        result["same_requests"] = {
            "same": asked["gateway"] == asked["baseline"],
            "waves": {side: len(waves) for side, (waves, _) in recorded.items()},
            **{side: [list(key) for key in keys] for side, keys in asked.items()},
        }
        replay = [[c.request for c in wave] for wave in recorded_waves]

        say("overhead: gateway vs the same upstream requests made directly, 0 ms added")
        result["overhead"] = load(
            {
                "kind": "paired",
                "target": gateway_target(servers, tokens[:1]),
                "waves": replay,
                "requests": plan.overhead_pairs,
                "warmup": 20,
            }
        )
        say(f"fan-out: {plan.latency_ms:g} ms added upstream")
        set_latency(servers, plan.latency_ms)
        fanout: dict[str, Any] = {"latency_ms": plan.latency_ms}
        fanout["overhead_at_latency"] = load(
            {
                "kind": "paired",
                "target": gateway_target(servers, tokens[:1]),
                "waves": replay,
                "requests": plan.overhead_pairs_slow,
                "warmup": 2,
            }
        )
        for name, target in (
            ("gateway", gateway_target(servers, tokens)),
            ("baseline", baseline_target(servers, tokens)),
        ):
            fanout[name] = load(
                {
                    "kind": "count",
                    "target": target,
                    "concurrency": 1,
                    "requests": plan.fanout_requests,
                    "warmup": 2,
                }
            )
        set_latency(servers, 0)
        result["fanout"] = fanout

        say("CPU time per dashboard, the gateway's process and the baseline's")
        assert servers.baseline_process is not None
        cpu: dict[str, Any] = {"requests": plan.cpu_requests}
        for name, process, target in (
            ("gateway", servers.gateway_process, gateway_target(servers, tokens)),
            ("baseline", servers.baseline_process, baseline_target(servers, tokens)),
        ):
            cpu[f"{name}_ms"], cpu[f"{name}_errors"] = cpu_per_request(
                process.pid, target, plan.cpu_requests
            )
        result["cpu"] = cpu

        say("calls per dashboard as the family grows from 1 to 8 relatives")
        calls = []
        for size, family in sorted(world.by_size.items()):
            before = upstream_counts(servers)
            outcome = load(
                {
                    "kind": "count",
                    "target": gateway_target(servers, [gql.token(family.caller["certNo"])]),
                    "concurrency": 1,
                    "requests": plan.calls_requests,
                    "warmup": 0,
                }
            )
            after = upstream_counts(servers)
            per: dict[str, float] = {}
            outcomes: dict[str, float] = {}
            for (code, kind), value in after.items():
                delta = (value - before.get((code, kind), 0.0)) / plan.calls_requests
                if delta:
                    province = codes.get(code, code)
                    per[province] = per.get(province, 0.0) + delta
                    outcomes[kind] = outcomes.get(kind, 0.0) + delta
            calls.append(
                {
                    "relatives": size,
                    "provinces_of_family": family.provinces(),
                    "per_province": per,
                    "total": sum(per.values()),
                    "outcomes": outcomes,
                    "errors": outcome["errors"],
                }
            )
        result["calls"] = calls

        say(
            f"throughput: {plan.concurrency} concurrent clients, {plan.throughput_rounds} rounds"
            " of the gateway then the baseline"
        )
        throughput: dict[str, Any] = {}
        rounds: dict[str, list[dict[str, Any]]] = {"gateway": [], "baseline": []}
        rss: list[int] = []
        for _ in range(plan.throughput_rounds):
            with sampling(pid) as samples:
                rounds["gateway"].append(
                    closed(gateway_target(servers, tokens), plan, plan.throughput_s)
                )
            rss += samples
            rounds["baseline"].append(
                closed(baseline_target(servers, tokens), plan, plan.throughput_s)
            )
        for name, runs in rounds.items():
            throughput[name] = merged(runs)
        status = proc_status(pid)
        throughput["gateway_memory"] = {
            "peak_rss_kib": status["VmHWM"],
            "max_sampled_rss_kib": max(rss, default=0),
            "rss_after_kib": status["VmRSS"],
        }
        assert servers.baseline_process is not None
        status = proc_status(servers.baseline_process.pid)
        throughput["baseline_memory"] = {
            "peak_rss_kib": status["VmHWM"],
            "rss_after_kib": status["VmRSS"],
        }
        result["throughput"] = throughput

        say(
            f"memory: {plan.repeats} more runs of {plan.repeat_s:g} s through the gateway,"
            " each followed by one through the baseline (a control)"
        )
        repeats: list[dict[str, Any]] = []
        control: list[dict[str, Any]] = []
        assert servers.baseline_process is not None
        for i in range(plan.repeats):
            for process, target, into in (
                (servers.gateway_process, gateway_target(servers, tokens), repeats),
                (servers.baseline_process, baseline_target(servers, tokens), control),
            ):
                outcome = closed(target, plan, plan.repeat_s)
                time.sleep(1.0)
                status = proc_status(process.pid)
                into.append(
                    {
                        "run": i + 1,
                        "requests": outcome["requests"],
                        "rss_kib": status["VmRSS"],
                        "peak_rss_kib": status["VmHWM"],
                        "anon_kib": status.get("RssAnon", 0),
                        "file_kib": status.get("RssFile", 0),
                        "shmem_kib": status.get("RssShmem", 0),
                    }
                )
            say(
                f"  run {i + 1}: RSS gateway {repeats[-1]['rss_kib'] / 1024:.2f} MiB,"
                f" baseline {control[-1]['rss_kib'] / 1024:.2f} MiB"
            )
        result["memory"] = {
            "rss_before_kib": throughput["gateway_memory"],
            "runs": repeats,
            "baseline_runs": control,
        }

        say("profiling dashboards in-process (cProfile)")
        copy_store(servers, work / "inprocess-profile")
        result["profile"] = asyncio.run(
            profiling.profile(
                settings,
                work / "inprocess-profile",
                tokens[0],
                QUERY,
                plan.profile_requests,
                dump=work / "dashboard.prof" if args.keep else None,
            )
        )

        say(
            f"steady figure: function calls per dashboard, in-process, {plan.steady_runs} runs"
            " of the gateway and the baseline"
            + (f" (and callgrind, {plan.callgrind_requests} dashboards)" if args.callgrind else "")
        )
        result["steady"] = measure_steady(
            config=servers.config,
            store=copy_store(servers, work / "steady-store"),
            token=tokens[0],
            query=QUERY,
            work=work / "steady",
            runs=plan.steady_runs,
            requests=plan.steady_requests,
            callgrind_requests=plan.callgrind_requests,
            say=say,
        )
    finally:
        with contextlib.suppress(NameError):
            gql.client.close()
        servers.stop_all()
        common.clean_up(work, args.keep, say)
    result["source_at_end"] = common.tree_source(args.commit)
    common.end(result, began)
    result["verdicts"] = report.verdicts(result)
    return result


# -- the soak -----------------------------------------------------------------------------------


def served_dashboards(servers: Servers) -> float:
    """GraphQL operations the gateway has answered, whatever their kind and outcome
    (``gongji_graphql_requests_total`` at ``/metrics``, summed)."""
    text = httpx.get(servers.gateway + "/metrics").text
    found = [
        sample.value
        for family in text_string_to_metric_families(text)
        if family.name == "gongji_graphql_requests"
        for sample in family.samples
        if sample.name.endswith("_total")
    ]
    if not found:
        raise RuntimeError("no gongji_graphql_requests_total at the gateway's /metrics")
    return sum(found)


def soak(
    servers: Servers, tokens: list[str], seconds: float, every: float, clients: int
) -> dict[str, Any]:
    """A closed loop of ``clients`` dashboards through the served gateway for ``seconds``
    (one load-driver process), the gateway's RSS read from /proc every ``every`` seconds
    with the dashboards it has answered so far (from its /metrics)."""
    assert servers.gateway_process is not None
    pid = servers.gateway_process.pid
    outcome: dict[str, Any] = {}
    failed: list[Exception] = []

    def drive() -> None:
        try:
            outcome.update(
                load(
                    {
                        "kind": "closed",
                        "target": gateway_target(servers, tokens),
                        "concurrency": clients,
                        "warmup_s": 0,
                        "duration_s": seconds,
                    }
                )
            )
        except Exception as exc:  # reported by the main thread
            failed.append(exc)

    base = served_dashboards(servers)
    cpu0 = cpu_seconds(pid)
    samples: list[dict[str, Any]] = []

    def take(started: float) -> None:
        if servers.gateway_process is not None and servers.gateway_process.poll() is not None:
            raise RuntimeError(f"the gateway exited ({servers.gateway_process.returncode})")
        status = proc_status(pid)
        samples.append(
            {
                "t_s": round(time.perf_counter() - started, 2),
                "dashboards": int(served_dashboards(servers) - base),
                "rss_kib": status["VmRSS"],
                "anon_kib": status.get("RssAnon", 0),
                "file_kib": status.get("RssFile", 0),
                "cpu_s": round(cpu_seconds(pid) - cpu0, 2),
            }
        )

    thread = threading.Thread(target=drive, daemon=True)
    started = time.perf_counter()
    take(started)
    thread.start()
    tick = 1
    while thread.is_alive():
        thread.join(max(0.0, started + tick * every - time.perf_counter()))
        if thread.is_alive():
            take(started)
            say(
                f"  {samples[-1]['t_s']:5.0f} s: {samples[-1]['dashboards']:6d} dashboards,"
                f" RSS {samples[-1]['rss_kib'] / 1024:.2f} MiB"
            )
            tick += 1
    if failed:
        raise RuntimeError("the soak's load failed") from failed[0]
    take(started)  # the load has ended: the last count
    status = proc_status(pid)
    return {
        "seconds": seconds,
        "every_s": every,
        "concurrency": clients,
        "callers": len(tokens),
        "load": {k: v for k, v in outcome.items() if k != "latencies"},
        "samples": samples,
        "peak_rss_kib": status["VmHWM"],
        "analysis": report.soak_analysis(samples),
    }


def run_soak(args: argparse.Namespace) -> dict[str, Any]:
    """Only the soak: the processes started, the families set up, then steady load on a
    gateway that has served nothing else (its RSS from the start)."""
    seconds = args.soak if args.soak > 0 else SOAK_QUICK_S if args.quick else SOAK_S
    plan = {"soak_s": seconds, "every_s": args.soak_every, "concurrency": args.concurrency}
    began = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="gongji-bench-"))
    servers = Servers(work=work, config=work / "gateway.toml")
    result = common.begin(
        "dashboard-soak", args.quick, plan, common.tree_source(args.commit), QUERY
    )
    world = families.world(load_families=4)
    try:
        _, gql = start_and_set_up(servers, work / "roster.json", world, result)
        tokens = [gql.token(f.caller["certNo"]) for f in world.load]
        gql.client.close()
        say(
            f"soak: {args.concurrency} clients for {seconds:g} s, the gateway's RSS every"
            f" {args.soak_every:g} s"
        )
        result["soak"] = soak(servers, tokens, seconds, args.soak_every, args.concurrency)
    finally:
        servers.stop_all()
        common.clean_up(work, args.keep, say)
    result["source_at_end"] = common.tree_source(args.commit)
    common.end(result, began)
    result["verdicts"] = report.soak_verdicts(result)
    return result


def closed(target: dict[str, Any], plan: Plan, seconds: float) -> dict[str, Any]:
    return load(
        {
            "kind": "closed",
            "target": target,
            "concurrency": plan.concurrency,
            "warmup_s": plan.warmup_s,
            "duration_s": seconds,
            "keep_latencies": True,
        }
    )


def merged(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Rounds of one side: the median round's rate, every latency together."""
    latencies = [v for run in runs for v in run.pop("latencies")]
    return {
        "rps": statistics.median(run["rps"] for run in runs),
        "rounds_rps": [run["rps"] for run in runs],
        "requests": sum(run["requests"] for run in runs),
        "errors": sum(run["errors"] for run in runs),
        "error_samples": [e for run in runs for e in run["error_samples"]][:5],
        "latency": bench_load.summary(latencies),
    }


say = common.teller("bench")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="about 2 minutes, fewer samples")
    parser.add_argument("--out", type=Path, default=common.RESULTS)
    parser.add_argument("--concurrency", type=int, default=8, help="clients in the throughput run")
    parser.add_argument("--latency-ms", type=float, default=50.0, help="added for the fan-out")
    parser.add_argument("--repeats", type=int, help="runs for the memory check (3 quick, 5 full)")
    parser.add_argument("--repeat-seconds", type=float, help="seconds each (4 quick, 10 full)")
    parser.add_argument(
        "--keep", action="store_true", help="keep the work directory: logs, stores, cProfile data"
    )
    parser.add_argument(
        "--commit", help="the commit under test, when run from an exported tree (default: HEAD)"
    )
    parser.add_argument(
        "--soak",
        type=float,
        nargs="?",
        const=0.0,
        metavar="SECONDS",
        help=f"only the soak: steady load on the served gateway, its RSS sampled; SECONDS"
        f" (default {SOAK_S:g}, with --quick {SOAK_QUICK_S:g})",
    )
    parser.add_argument(
        "--soak-every", type=float, default=5.0, help="seconds between RSS samples (5)"
    )
    parser.add_argument(
        "--steady-runs", type=int, default=3, help="runs of the steady figure, each side (3)"
    )
    parser.add_argument(
        "--callgrind",
        type=int,
        nargs="?",
        const=20,
        metavar="K",
        help="the steady figure in instructions too: valgrind's callgrind over K dashboards"
        " (default 20) per run and side; about 1.5 to 3.5 minutes a job, two at a time",
    )
    args = parser.parse_args()
    result = run_soak(args) if args.soak is not None else run(args)
    common.published(result, report.write(result, args.out))
    if result.get("steady"):
        print(report.steady_summary(result["steady"]))


if __name__ == "__main__":
    main()

"""Soak: a mixed read/write load on the gateway while the provinces misbehave.

Starts the three sandbox provinces and the gateway as real processes on loopback,
then for ``--seconds`` runs, concurrently:

* readers: the family screen and ``me`` of roster people;
* binders: each a family that binds a relative, then unbinds them, over and over;
* a hospital cashier settling small bills.

Every write carries an idempotency key and is sent again with the same key until
the gateway says DONE (after SUBMITTED, a fault, or a dropped connection), as a
careful client would. Meanwhile a new fault is switched on at a random province
every ``--phase`` seconds (errors, dropped answers, garbled answers, latency, a
hang), and off again. At the end every fault is off, clients finish their writes,
and the reconciler settles what is left; then the gateway's records (its outbox)
are checked against the provinces' own:

* every binding and settlement at a province was made by exactly one recorded
  write (nothing doubled), and every recorded one is there (nothing lost);
* no write is left unresolved, and each family's binding is in the state its
  client was last told.

With ``--instances N`` (N > 1), N gateways share one PostgreSQL store (a fresh schema
on ``--store-url``'s server, or on a throwaway one started with ``scripts/postgres``),
with short leases so that a dead instance's writes are taken over within the run. The
clients spread over them, each to its own, and a client whose instance is down sends
to the next, as behind a load balancer. Unless ``--no-kill``, one instance is killed
(SIGKILL) about every 3 ``--phase``, at least once, at a moment it is sending writes,
and started again (the same port and config) after a short pause. The check then
reads the outbox from PostgreSQL, and also wants every write the killed instances were
sending settled by the others.

    .venv/bin/python -m bench.soak --seconds 180      # or: scripts/soak --seconds 180
    scripts/soak --instances 2 --seconds 300          # PostgreSQL, kills on
    scripts/soak --instances 3 --store-url postgresql://gongji@127.0.0.1:5432/gongji

Prints what was served, errors by code, the kills, and the check; exits 1 if the check
fails (2 if no PostgreSQL server can be had).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import os
import random
import re
import secrets
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from adapters.base import ProvinceAdapter
from adapters.hebei import HebeiAdapter
from adapters.henan import HenanAdapter
from adapters.jiangsu import JiangsuAdapter
from gateway.common.auth import Institution, mint_token
from gateway.ops.config import AuthSettings, StoreSettings
from sandbox.engine import load_roster
from sandbox.serve import free_port, spawn_gateway, spawn_sandbox, stop, wait_ready

ROOT = Path(__file__).resolve().parent.parent
ADAPTERS: dict[str, type[ProvinceAdapter]] = {
    "hebei": HebeiAdapter,
    "jiangsu": JiangsuAdapter,
    "henan": HenanAdapter,
}
# (authorizer, relative, relation): each pair binds and unbinds, again and again
PAIRS = [
    ("hb_wang_jianguo", "hb_li_xiuying", "SPOUSE"),
    ("hb_wang_jianguo", "hb_wang_lei", "CHILD"),
    ("hb_wang_jianguo", "hb_wang_deming", "PARENT"),
    ("hb_liu_yang", "hb_liu_yinuo", "CHILD"),
    ("js_chen_zhiqiang", "js_liu_fang", "SPOUSE"),  # stays pending: she must confirm
    ("js_chen_zhiqiang", "js_chen_chen", "CHILD"),
    ("hn_zhao_lei", "hn_zhao_zihan", "CHILD"),
]
READERS = ["hb_wang_jianguo", "hb_liu_yang", "js_chen_zhiqiang", "js_liu_fang", "hn_zhao_lei"]
PATIENTS = ["hb_wang_jing", "hb_wang_peng", "js_chen_chen", "hn_zhao_zihan"]
INSTITUTION = Institution("H00000001", "HOSPITAL")
FAULTS: list[dict[str, Any]] = [
    {"error_rate": 0.3},
    {"drop_rate": 0.3},  # carried out, the answer lost: the outbox's case
    {"malformed_rate": 0.2},
    {"latency_ms": 300, "jitter_ms": 300},
    {"hang": True},
    {},
]
# several instances: a dead one's leases run out this soon, and its pending writes are
# then resent by another's reconciler this long after they were recorded
LEASE_SECONDS = 2
PENDING_AFTER = 3
RECONCILED = re.compile(r"reconciler: (\d+) of (\d+) unresolved write\(s\) settled")

FAMILY = """{ me { name family {
  relative { name } insurance { status } mutualAid { verdict { state } } } } }"""
BIND = """mutation($i: BindMutualAidInput!) { bindMutualAid(input: $i) {
  binding { id status } errors { code } status } }"""
UNBIND = """mutation($id: ID!, $k: String) { unbindMutualAid(bindingId: $id, idempotencyKey: $k) {
  binding { id status } errors { code } status } }"""
SETTLE = """mutation($i: SettleInput!) { settle(input: $i) {
  settlement { id } errors { code } status } }"""


@dataclass
class Tally:
    served: collections.Counter[str] = field(default_factory=collections.Counter)
    outcomes: collections.Counter[str] = field(default_factory=collections.Counter)
    last_state: dict[tuple[str, str], str | None] = field(default_factory=dict)
    rerouted: int = 0  # requests sent to another instance, theirs refusing connections

    def count(self, kind: str, outcome: str) -> None:
        self.served[kind] += 1
        self.outcomes[outcome] += 1


@dataclass(frozen=True)
class Shared:
    """A PostgreSQL store the gateways share: the server's url and a schema of the run's."""

    url: str
    schema: str

    @property
    def where(self) -> str:
        """The server (its url without a password) and the schema, to print."""
        return f"{StoreSettings(url=self.url).safe_url()} (schema {self.schema})"


@dataclass
class Gateway:
    """One gateway instance: its port and data directory stay, its process changes."""

    index: int
    port: int
    data_dir: Path
    log: Path | None  # its stderr (several instances), else none kept
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def up(self) -> bool:
        return self.process is not None and self.process.poll() is None


class Cluster:
    """The provinces and the gateway(s), as processes on loopback."""

    def __init__(self, root: Path, instances: int = 1, shared: Shared | None = None) -> None:
        self.root = root
        self.shared = shared
        self.provinces: dict[str, str] = {}
        self.gateways: list[Gateway] = []
        self.config = root / "gongji.toml"
        self._instances = instances
        self._processes: list[subprocess.Popen[bytes]] = []

    @property
    def gateway(self) -> str:
        return self.gateways[0].url

    def start(self) -> None:
        starting = {}
        for name in ADAPTERS:  # all three at once, then each waited for
            port = free_port()
            process = spawn_sandbox(
                name,
                port,
                self.root / "provinces",
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            self._processes.append(process)
            starting[name] = (f"http://127.0.0.1:{port}", process)
        for name, (url, process) in starting.items():
            wait_ready(url, process=process)
            self.provinces[name] = url
        pending_after = 5 if self.shared is None else PENDING_AFTER
        lines = []
        if self.shared is not None:
            lines += [
                "[store]",
                f'url = "{self.shared.url}"',
                f'schema = "{self.shared.schema}"',
                f"lease_seconds = {LEASE_SECONDS}",
                "",
            ]
        lines += [
            "[resilience]",
            "reconcile_interval = 0.5",
            f"pending_after = {pending_after}",
            "",
        ]
        lines += ["[limits]", 'per_subject = "100000/minute"', 'per_address = "100000/minute"', ""]
        for name, url in self.provinces.items():
            lines += [
                f"[provinces.{name}]",
                f'base_url = "{url}"',
                "timeout = 2",
                "breaker_threshold = 5",
                "breaker_reset = 2",
                "",
            ]
        self.config.write_text("\n".join(lines), encoding="utf-8")
        for n in range(self._instances):
            if self._instances == 1:
                gateway = Gateway(n, free_port(), self.root / "gateway", None)
            else:
                data_dir = self.root / f"gateway-{n}"
                gateway = Gateway(n, free_port(), data_dir, self.root / f"gateway-{n}.log")
            self.gateways.append(gateway)
            self.spawn(gateway)
        for gateway in self.gateways:
            wait_ready(gateway.url, process=gateway.process, path="/readyz")

    def spawn(self, gateway: Gateway) -> None:
        """Start ``gateway``'s process (again): the same port, config and data directory."""
        # the config names the store, whatever the environment says
        env = {k: v for k, v in os.environ.items() if k != "GONGJI_STORE_URL"}
        if gateway.log is None:
            gateway.process = spawn_gateway(
                self.config,
                gateway.port,
                gateway.data_dir,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                env=env,
            )
            return
        with gateway.log.open("ab") as log:  # the child keeps its own copy
            gateway.process = spawn_gateway(
                self.config,
                gateway.port,
                gateway.data_dir,
                stdout=subprocess.DEVNULL,
                stderr=log,
                env=env,
            )

    async def restart(self, gateway: Gateway) -> None:
        self.spawn(gateway)
        await asyncio.to_thread(
            wait_ready, gateway.url, 30.0, process=gateway.process, path="/readyz"
        )

    def stop(self) -> None:
        for gateway in reversed(self.gateways):
            if gateway.process is not None:
                stop(gateway.process)
        for process in reversed(self._processes):
            stop(process)

    @contextlib.contextmanager
    def running(self) -> Iterator[Cluster]:
        try:
            self.start()
            yield self
        finally:
            self.stop()


class Client:
    """One client, sending to its own instance first: to the next when that one refuses
    connections (it is down), as a load balancer would."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        tally: Tally,
        people: dict[str, dict[str, Any]],
        urls: list[str],
        home: int = 0,
    ) -> None:
        self.http = http
        self.tally = tally
        self.auth = AuthSettings()
        self.people = people
        self.urls = urls[home % len(urls) :] + urls[: home % len(urls)]
        self.tokens: dict[str, str] = {}

    def token(self, key: str) -> str:
        if key not in self.tokens:
            self.tokens[key] = mint_token(self.people[key]["certNo"], self.auth)
        return self.tokens[key]

    async def post(
        self, kind: str, query: str, variables: dict[str, Any], token: str
    ) -> dict[str, Any] | None:
        """One request; counted by kind and outcome (ok, SUBMITTED, an error code, or
        the transport's failure). None when no GraphQL answer came back."""
        for n, url in enumerate(self.urls):
            try:
                response = await self.http.post(
                    f"{url}/graphql",
                    json={"query": query, "variables": variables},
                    headers={"Authorization": f"Bearer {token}"},
                )
                result: dict[str, Any] = response.json()
            except httpx.ConnectError as exc:
                if n + 1 < len(self.urls):  # down: the next instance
                    self.tally.rerouted += 1
                    continue
                self.tally.count(kind, type(exc).__name__)
                return None
            except (httpx.HTTPError, ValueError) as exc:
                self.tally.count(kind, type(exc).__name__)
                return None
            break
        errors = result.get("errors") or []
        data = result.get("data") or {}
        payload = next(iter(data.values()), None) if data else None
        if errors:
            outcome = str(errors[0].get("extensions", {}).get("code", "ERROR"))
        elif isinstance(payload, dict) and payload.get("status") == "SUBMITTED":
            outcome = "SUBMITTED"
        elif isinstance(payload, dict) and payload.get("errors"):
            outcome = "refused:" + payload["errors"][0]["code"]
        else:
            outcome = "ok"
        self.tally.count(kind, outcome)
        return result

    async def until_done(
        self, kind: str, query: str, variables: dict[str, Any], token: str, stop_at: float
    ) -> dict[str, Any] | None:
        """Send a write again, same key, until DONE (or ``stop_at`` passes: None)."""
        while time.monotonic() < stop_at:
            result = await self.post(kind, query, variables, token)
            data = (result or {}).get("data") or {}
            payload = next(iter(data.values()), None)
            if isinstance(payload, dict) and payload.get("status") == "DONE":
                return payload
            await asyncio.sleep(0.2)
        return None


async def reader(client: Client, until: float) -> None:
    while time.monotonic() < until:
        key = random.choice(READERS)  # noqa: S311 (load, not secrets)
        await client.post("read", FAMILY, {}, client.token(key))


async def binder(client: Client, pair: tuple[str, str, str], until: float, drain: float) -> None:
    authorizer, relative, relation = pair
    person = client.people[relative]
    token = client.token(authorizer)
    n = 0
    while time.monotonic() < until:
        n += 1
        given = {
            "beneficiaryCertNo": person["certNo"],
            "beneficiaryName": person["name"],
            "relation": relation,
            "commitmentSigned": True,
            "idempotencyKey": f"soak-{authorizer}-{relative}-b{n}",
        }
        done = await client.until_done("write", BIND, {"i": given}, token, drain)
        if done is None:
            return
        binding = done.get("binding")
        if binding is None:  # refused (e.g. still bound from before): try again later
            await asyncio.sleep(0.5)
            continue
        variables = {"id": binding["id"], "k": f"soak-{authorizer}-{relative}-u{n}"}
        undone = await client.until_done("write", UNBIND, variables, token, drain)
        client.tally.last_state[(authorizer, relative)] = binding["status"]
        if undone is None:
            return
        if undone.get("binding"):
            client.tally.last_state[(authorizer, relative)] = undone["binding"]["status"]


async def cashier(client: Client, until: float, drain: float) -> None:
    token = mint_token(
        "130102196001010011",
        client.auth,
        roles=frozenset({"INSTITUTION"}),
        institution=INSTITUTION,
    )
    n = 0
    while time.monotonic() < until:
        n += 1
        patient = client.people[random.choice(PATIENTS)]  # noqa: S311
        bill = {
            "patientCertNo": patient["certNo"],
            "medicalType": "OUTPATIENT",
            "totalAmount": "2.00",
            "fundPaid": "1.00",
            "idempotencyKey": f"soak-bill-{n}",
        }
        if await client.until_done("write", SETTLE, {"i": bill}, token, drain) is None:
            return


def stamp() -> str:
    return time.strftime("%H:%M:%S")


async def chaos(cluster: Cluster, until: float, phase: float) -> None:
    async with httpx.AsyncClient(timeout=5) as http:
        while time.monotonic() < until:
            province = random.choice(list(cluster.provinces))  # noqa: S311
            fault = random.choice(FAULTS)  # noqa: S311
            print(f"  {stamp()} {province}: {json.dumps(fault) or 'off'}")
            await http.put(f"{cluster.provinces[province]}/_faults", json=fault)
            await asyncio.sleep(min(phase, max(0.0, until - time.monotonic())))
            await http.delete(f"{cluster.provinces[province]}/_faults")


# -- the gateway's records -----------------------------------------------------------------


class Records:
    """The gateway's store, read as the soak needs it: SQLite's file (one instance), or
    the schema the instances share on PostgreSQL (one connection, kept for the run)."""

    def __init__(self, sqlite: Path | None = None, shared: Shared | None = None) -> None:
        self._sqlite = sqlite
        self._shared = shared
        self._conn: asyncpg.Connection | None = None
        self._lock = asyncio.Lock()

    @contextlib.asynccontextmanager
    async def open(self) -> AsyncIterator[Records]:
        if self._shared is not None:
            self._conn = await asyncpg.connect(
                self._shared.url, server_settings={"search_path": self._shared.schema}
            )
        try:
            yield self
        finally:
            if self._conn is not None:
                await self._conn.close()
                self._conn = None

    async def fetch(self, sql: str) -> list[tuple[Any, ...]]:
        if self._conn is None:
            assert self._sqlite is not None
            with contextlib.closing(sqlite3.connect(self._sqlite)) as db:
                return list(db.execute(sql).fetchall())
        async with self._lock:
            return [tuple(row) for row in await self._conn.fetch(sql)]


async def sending(records: Records) -> dict[int, set[str]]:
    """The writes each gateway process (by pid) holds the lease of: those it is sending."""
    held: dict[int, set[str]] = collections.defaultdict(set)
    for name, owner in await records.fetch(
        "SELECT name, owner FROM lease WHERE name LIKE 'outbox:%'"
    ):
        pid = str(owner).rsplit(":", 2)[-2]  # the owner is host:pid:random
        if pid.isdigit():
            held[int(pid)].add(str(name).removeprefix("outbox:"))
    return held


@dataclass
class Kills:
    kills: int = 0
    restarts: int = 0
    in_flight: set[str] = field(default_factory=set)  # writes the killed were sending


async def killer(
    cluster: Cluster, records: Records, kills: Kills, until: float, phase: float
) -> None:
    """SIGKILL one instance about every 3 ``phase`` (at least once), at a moment it is
    sending writes, at a random time in each slot of the load's first 80%; start it
    again after a short pause."""
    started = time.monotonic()
    span = until - started
    slots = max(1, round(span / (3 * phase)))
    for k in range(slots):
        at = started + span * (0.1 + 0.7 * (k + random.random()) / slots)  # noqa: S311
        await asyncio.sleep(max(0.0, at - time.monotonic()))
        if time.monotonic() >= until:
            return
        up = [g for g in cluster.gateways if g.up]
        random.shuffle(up)
        victim, writes = up[0], set[str]()
        # wait (a while) for an instance with writes in flight: take the first seen
        patience = min(until, time.monotonic() + 2 * phase)
        while time.monotonic() < patience and not writes:
            held = await sending(records)
            for gateway in up:
                assert gateway.process is not None
                if held.get(gateway.process.pid):
                    victim, writes = gateway, held[gateway.process.pid]
                    break
            else:
                await asyncio.sleep(0.02)
        assert victim.process is not None
        victim.process.kill()
        await asyncio.to_thread(victim.process.wait)
        kills.kills += 1
        kills.in_flight |= writes
        print(
            f"  {stamp()} gateway {victim.index}: killed (SIGKILL),"
            f" {len(writes)} write(s) in flight"
        )
        await asyncio.sleep(random.uniform(0.5, 1.5))  # noqa: S311
        await cluster.restart(victim)
        kills.restarts += 1
        print(f"  {stamp()} gateway {victim.index}: started again")


def reconciled(cluster: Cluster) -> dict[int, int]:
    """How many writes each instance's reconciler settled (its log says), all its
    processes together."""
    settled: dict[int, int] = {}
    for gateway in cluster.gateways:
        text = "" if gateway.log is None else gateway.log.read_text("utf-8", "replace")
        settled[gateway.index] = sum(int(m[1]) for m in RECONCILED.finditer(text))
    return settled


# -- the check ---------------------------------------------------------------------------


async def upstream(cluster: Cluster, people: dict[str, dict[str, Any]]) -> dict[str, set[str]]:
    """Every binding and settlement id the provinces hold for the soak's people."""
    certs = sorted(
        {people[k]["certNo"] for pair in PAIRS for k in pair[:2]}
        | {people[k]["certNo"] for k in PATIENTS}
    )
    held: dict[str, set[str]] = {"bindings": set(), "settlements": set()}
    for name, url in cluster.provinces.items():
        async with httpx.AsyncClient(base_url=url, timeout=10) as http:
            adapter = ADAPTERS[name](http)
            for b in await adapter.bindings_of(certs):
                held["bindings"].add(f"{adapter.code}:{b.id}")
            for s in await adapter.settlements_of(certs):
                held["settlements"].add(f"{adapter.code}:{s.id}")
    return held


async def recorded(records: Records) -> tuple[dict[str, set[str]], dict[str, int], int]:
    """The gateway's side: ids its answered writes made, rows by state, and how many
    answered writes there are per operation."""
    made: dict[str, set[str]] = {"bindings": set(), "settlements": set()}
    states = dict(await records.fetch("SELECT state, COUNT(*) FROM outbox GROUP BY state"))
    rows = await records.fetch(
        "SELECT operation, province, answer FROM outbox WHERE state = 'DONE'"
    )
    for operation, province, answer in rows:
        data = json.loads(answer)
        if operation == "BIND" and data["kind"] == "binding":
            made["bindings"].add(f"{province}:{data['value']['id']}")
        if operation == "SETTLE" and data["kind"] == "settlement":
            made["settlements"].add(f"{province}:{data['value']['id']}")
    return made, {str(k): int(v) for k, v in states.items()}, len(rows)


async def soak(
    seconds: float,
    phase: float,
    concurrency: int,
    root: Path,
    *,
    instances: int = 1,
    shared: Shared | None = None,
    kill: bool = False,
) -> int:
    tally = Tally()
    kills = Kills()
    cluster = Cluster(root, instances, shared)
    if shared is None:
        records = Records(sqlite=root / "gateway" / "gateway.sqlite3")
    else:
        records = Records(shared=shared)
    with cluster.running():
        people = {p["key"]: p for p in load_roster()["people"]}
        before = await upstream(cluster, people)
        if instances == 1 and shared is None:
            print(f"soak: {seconds:.0f} s against {cluster.gateway}, faults every {phase:.0f} s")
        else:
            listed = ", ".join(g.url for g in cluster.gateways)
            where = f"PostgreSQL {shared.where}" if shared else "SQLite"
            print(
                f"soak: {seconds:.0f} s against {instances} gateway(s) ({listed}) on {where},"
                f" faults every {phase:.0f} s, kills {'on' if kill else 'off'}"
            )
        urls = [g.url for g in cluster.gateways]
        started = time.monotonic()
        until = started + seconds
        drain = until + 60  # clients then finish what they started, faults off
        limits = httpx.Limits(max_connections=concurrency + len(PAIRS) + 2)
        async with (
            records.open(),
            httpx.AsyncClient(timeout=10, limits=limits) as http,
        ):
            homes = iter(range(concurrency + len(PAIRS) + 1))  # each client its instance

            def client() -> Client:
                return Client(http, tally, people, urls, next(homes))

            await asyncio.gather(
                chaos(cluster, until, phase),
                *([killer(cluster, records, kills, until, phase)] if kill else []),
                cashier(client(), until, drain),
                *(binder(client(), pair, until, drain) for pair in PAIRS),
                *(reader(client(), until) for _ in range(concurrency)),
            )
            elapsed = time.monotonic() - started
            # faults are off: the reconciler settles whatever is still unknown
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                _, states, _ = await recorded(records)
                if not states.get("PENDING") and not states.get("UNKNOWN"):
                    break
                await asyncio.sleep(0.5)
            made, states, answered = await recorded(records)
            final = dict(await records.fetch("SELECT id, state FROM outbox"))
        after = await upstream(cluster, people)
        live = await live_states(cluster, people)

    new = {kind: after[kind] - before[kind] for kind in after}
    problems = []
    for kind in ("bindings", "settlements"):
        doubled = new[kind] - made[kind]
        lost = made[kind] - after[kind]
        if doubled:
            problems.append(f"{len(doubled)} {kind} at the provinces no answered write made")
        if lost:
            problems.append(f"{len(lost)} recorded {kind} missing at the provinces")
    unresolved = states.get("PENDING", 0) + states.get("UNKNOWN", 0)
    if unresolved:
        problems.append(f"{unresolved} writes still unresolved")
    for pair, told in tally.last_state.items():
        if live.get(pair) != (told if told in ("ACTIVE", "PENDING_CONFIRMATION") else None):
            problems.append(f"{pair}: told {told}, the province holds {live.get(pair)}")
    left = sorted(w for w in kills.in_flight if final.get(w) not in ("DONE", "FAILED"))
    if left:
        problems.append(f"writes the killed instances were sending, not settled: {left}")

    total = sum(tally.served.values())
    print(
        f"served: {total} requests in {elapsed:.0f} s ({total / elapsed:.0f}/s):"
        f" {tally.served['read']} reads, {tally.served['write']} writes"
    )
    print("by outcome:")
    for outcome, n in tally.outcomes.most_common():
        print(f"  {outcome:32} {n}")
    if instances > 1 or kill:
        if instances > 1:
            print(f"sent to another instance, theirs down: {tally.rerouted} requests")
        print(
            f"kills: {kills.kills} (SIGKILL), restarts: {kills.restarts};"
            f" writes in flight at the kills: {len(kills.in_flight)},"
            f" settled since: {len(kills.in_flight) - len(left)}"
        )
        if instances > 1:
            by = ", ".join(f"gateway {n}: {k}" for n, k in reconciled(cluster).items())
            print(f"settled by each instance's reconciler (the rest: clients sending again): {by}")
    print(f"gateway outbox: {states}; {answered} writes answered")
    print(
        f"made during the soak: {len(new['bindings'])} bindings,"
        f" {len(new['settlements'])} settlements"
    )
    if problems:
        print("consistency: FAILED")
        for problem in problems:
            print(f"  - {problem}")
        return 1
    print(
        "consistency: OK (every binding and settlement at the provinces was made once by a"
        " recorded write; none missing; nothing unresolved; every family as last told)"
    )
    return 0


async def live_states(
    cluster: Cluster, people: dict[str, dict[str, Any]]
) -> dict[tuple[str, str], str | None]:
    """The live binding (if any) of each soak pair, as its province holds it."""
    found: dict[tuple[str, str], str | None] = {}
    by_cert = {p["certNo"]: k for k, p in people.items()}
    for name, url in cluster.provinces.items():
        async with httpx.AsyncClient(base_url=url, timeout=10) as http:
            adapter = ADAPTERS[name](http)
            authorizers = sorted({people[a]["certNo"] for a, _, _ in PAIRS})
            for b in await adapter.bindings_of(authorizers):
                pair = (
                    by_cert.get(b.authorizer.cert_no, ""),
                    by_cert.get(b.beneficiary.cert_no, ""),
                )
                if b.status.is_live:
                    found[pair] = b.status.value
    return found


# -- PostgreSQL --------------------------------------------------------------------------


class NoServer(RuntimeError):
    """No PostgreSQL server could be started."""


@contextlib.contextmanager
def throwaway_server() -> Iterator[str]:
    """A throwaway PostgreSQL server (scripts/postgres), stopped and removed at the end:
    its url."""
    where = Path(tempfile.mkdtemp(prefix="gongji-soak-pg-"))
    script = str(ROOT / "scripts" / "postgres")
    try:
        try:
            started = subprocess.run(  # noqa: S603 (our own script)
                [script, "start", str(where)],
                capture_output=True,
                text=True,
                timeout=180,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise NoServer(f"{script} start {where}: {exc}") from None
        if started.returncode != 0:
            said = "\n".join(started.stderr.strip().splitlines()[-12:])
            raise NoServer(f"{script} start {where} exited {started.returncode}:\n{said}")
        print(f"soak: a throwaway PostgreSQL server at {started.stdout.strip()}")
        yield started.stdout.strip()
    finally:
        subprocess.run(  # noqa: S603
            [script, "stop", str(where)],
            capture_output=True,
            timeout=120,
            check=False,
        )
        shutil.rmtree(where, ignore_errors=True)  # (a start that failed early)


async def make_schema(shared: Shared) -> None:
    """Make the run's schema before the instances start: each would make it if missing,
    but two doing so at the same moment may collide (``CREATE SCHEMA IF NOT EXISTS`` is
    not safe against a concurrent one: a unique violation), and then one fails to start."""
    conn = await asyncpg.connect(shared.url)
    try:
        await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{shared.schema}"')
    finally:
        await conn.close()


async def drop_schema(shared: Shared) -> None:
    """Remove the run's schema (a failure is only said: the run's outcome stands)."""
    try:
        conn = await asyncpg.connect(shared.url)
        try:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{shared.schema}" CASCADE')
        finally:
            await conn.close()
    except (OSError, asyncpg.PostgresError) as exc:
        print(f"soak: PostgreSQL {shared.where} left on the server: {exc}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.soak", description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=180.0, help="load duration (180)")
    parser.add_argument("--phase", type=float, default=10.0, help="seconds per fault (10)")
    parser.add_argument("--concurrency", type=int, default=4, help="concurrent readers (4)")
    parser.add_argument("--seed", type=int, help="random seed")
    parser.add_argument("--keep", type=Path, help="keep state here instead of a temp dir")
    parser.add_argument(
        "--instances",
        type=int,
        default=1,
        help="gateway instances (1: one on SQLite; more share PostgreSQL)",
    )
    parser.add_argument(
        "--store-url",
        help="a PostgreSQL server's url for the shared store (a fresh schema on it);"
        " none with --instances > 1: a throwaway server (scripts/postgres)",
    )
    parser.add_argument(
        "--kill",
        action=argparse.BooleanOptionalAction,
        help="SIGKILL an instance now and then, and start it again (on with --instances > 1)",
    )
    args = parser.parse_args(argv)
    if args.instances < 1:
        parser.error("--instances: 1 or more")
    if args.store_url is not None and not args.store_url.startswith(
        ("postgresql://", "postgres://")
    ):
        parser.error("--store-url: a postgresql:// url")
    kill = args.instances > 1 if args.kill is None else args.kill
    random.seed(args.seed)
    with contextlib.ExitStack() as stack:
        code = run(args, kill, stack)
    return code


def run(args: argparse.Namespace, kill: bool, stack: contextlib.ExitStack) -> int:
    """`main`'s work, with what it starts left to ``stack`` to stop."""
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
        root: Path = args.keep
    else:
        root = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="gongji-soak-")))
    shared = None
    if args.store_url is not None or args.instances > 1:
        url = args.store_url
        if url is None:
            try:
                url = stack.enter_context(throwaway_server())
            except NoServer as exc:
                print(
                    f"soak: --instances {args.instances} needs PostgreSQL: no --store-url was"
                    f" given, and a throwaway server could not be started ({exc})",
                    file=sys.stderr,
                )
                return 2
        shared = Shared(url, f"soak_{secrets.token_hex(4)}")
        try:
            asyncio.run(make_schema(shared))
        except (OSError, asyncpg.PostgresError) as exc:
            print(f"soak: PostgreSQL {shared.where}: {exc}", file=sys.stderr)
            return 2
        if args.store_url is not None and not args.keep:  # the server is not ours: tidy up
            stack.callback(lambda: asyncio.run(drop_schema(shared)))
    return asyncio.run(
        soak(
            args.seconds,
            args.phase,
            args.concurrency,
            root,
            instances=args.instances,
            shared=shared,
            kill=kill,
        )
    )


if __name__ == "__main__":
    # a SIGTERM stops the run as Ctrl-C does: processes and the throwaway server too
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    sys.exit(main())

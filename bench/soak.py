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

    .venv/bin/python -m bench.soak --seconds 180      # or: scripts/soak --seconds 180

Prints what was served, errors by code and the check; exits 1 if the check fails.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import random
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from adapters.base import ProvinceAdapter
from adapters.hebei import HebeiAdapter
from adapters.henan import HenanAdapter
from adapters.jiangsu import JiangsuAdapter
from gateway.common.auth import Institution, mint_token
from gateway.ops.config import AuthSettings
from sandbox.engine import load_roster
from sandbox.serve import free_port, spawn_gateway, spawn_sandbox, stop, wait_ready

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

    def count(self, kind: str, outcome: str) -> None:
        self.served[kind] += 1
        self.outcomes[outcome] += 1


class Cluster:
    """The provinces and the gateway, as processes on loopback."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.provinces: dict[str, str] = {}
        self.gateway = ""
        self._processes: list[subprocess.Popen[bytes]] = []

    def start(self) -> None:
        for name in ADAPTERS:
            port = free_port()
            url = f"http://127.0.0.1:{port}"
            process = spawn_sandbox(
                name,
                port,
                self.root / "provinces",
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            self._processes.append(process)
            wait_ready(url, process=process)
            self.provinces[name] = url
        config = self.root / "gongji.toml"
        lines = ["[resilience]", "reconcile_interval = 0.5", "pending_after = 5", ""]
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
        config.write_text("\n".join(lines), encoding="utf-8")
        port = free_port()
        process = spawn_gateway(
            config,
            port,
            self.root / "gateway",
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self._processes.append(process)
        self.gateway = f"http://127.0.0.1:{port}"
        wait_ready(self.gateway, process=process, path="/readyz")

    def stop(self) -> None:
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
    def __init__(self, http: httpx.AsyncClient, tally: Tally) -> None:
        self.http = http
        self.tally = tally
        self.auth = AuthSettings()
        self.people = {p["key"]: p for p in load_roster()["people"]}
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
        try:
            response = await self.http.post(
                "/graphql",
                json={"query": query, "variables": variables},
                headers={"Authorization": f"Bearer {token}"},
            )
            result: dict[str, Any] = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            self.tally.count(kind, type(exc).__name__)
            return None
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


async def chaos(cluster: Cluster, until: float, phase: float) -> None:
    async with httpx.AsyncClient(timeout=5) as http:
        while time.monotonic() < until:
            province = random.choice(list(cluster.provinces))  # noqa: S311
            fault = random.choice(FAULTS)  # noqa: S311
            print(f"  {time.strftime('%H:%M:%S')} {province}: {json.dumps(fault) or 'off'}")
            await http.put(f"{cluster.provinces[province]}/_faults", json=fault)
            await asyncio.sleep(min(phase, max(0.0, until - time.monotonic())))
            await http.delete(f"{cluster.provinces[province]}/_faults")


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


def recorded(store: Path) -> tuple[dict[str, set[str]], dict[str, int], int]:
    """The gateway's side: ids its answered writes made, rows by state, and how many
    answered writes there are per operation."""
    made: dict[str, set[str]] = {"bindings": set(), "settlements": set()}
    with contextlib.closing(sqlite3.connect(store)) as db:
        states = dict(db.execute("SELECT state, COUNT(*) FROM outbox GROUP BY state").fetchall())
        rows = db.execute(
            "SELECT operation, province, answer FROM outbox WHERE state = 'DONE'"
        ).fetchall()
    for operation, province, answer in rows:
        data = json.loads(answer)
        if operation == "BIND" and data["kind"] == "binding":
            made["bindings"].add(f"{province}:{data['value']['id']}")
        if operation == "SETTLE" and data["kind"] == "settlement":
            made["settlements"].add(f"{province}:{data['value']['id']}")
    return made, {str(k): int(v) for k, v in states.items()}, len(rows)


async def soak(seconds: float, phase: float, concurrency: int, root: Path) -> int:
    tally = Tally()
    cluster = Cluster(root)
    with cluster.running():
        people = {p["key"]: p for p in load_roster()["people"]}
        before = await upstream(cluster, people)
        print(f"soak: {seconds:.0f} s against {cluster.gateway}, faults every {phase:.0f} s")
        started = time.monotonic()
        until = started + seconds
        drain = until + 60  # clients then finish what they started, faults off
        limits = httpx.Limits(max_connections=concurrency + len(PAIRS) + 2)
        async with httpx.AsyncClient(base_url=cluster.gateway, timeout=10, limits=limits) as http:
            client = Client(http, tally)
            await asyncio.gather(
                chaos(cluster, until, phase),
                cashier(client, until, drain),
                *(binder(client, pair, until, drain) for pair in PAIRS),
                *(reader(client, until) for _ in range(concurrency)),
            )
            elapsed = time.monotonic() - started
            # faults are off: the reconciler settles whatever is still unknown
            store = root / "gateway" / "gateway.sqlite3"
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                _, states, _ = recorded(store)
                if not states.get("PENDING") and not states.get("UNKNOWN"):
                    break
                await asyncio.sleep(0.5)
        made, states, answered = recorded(store)
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

    total = sum(tally.served.values())
    print(
        f"served: {total} requests in {elapsed:.0f} s ({total / elapsed:.0f}/s):"
        f" {tally.served['read']} reads, {tally.served['write']} writes"
    )
    print("by outcome:")
    for outcome, n in tally.outcomes.most_common():
        print(f"  {outcome:32} {n}")
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.soak", description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=180.0, help="load duration (180)")
    parser.add_argument("--phase", type=float, default=10.0, help="seconds per fault (10)")
    parser.add_argument("--concurrency", type=int, default=4, help="concurrent readers (4)")
    parser.add_argument("--seed", type=int, help="random seed")
    parser.add_argument("--keep", type=Path, help="keep state here instead of a temp dir")
    args = parser.parse_args(argv)
    random.seed(args.seed)
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
        return asyncio.run(soak(args.seconds, args.phase, args.concurrency, args.keep))
    with tempfile.TemporaryDirectory(prefix="gongji-soak-") as root:
        return asyncio.run(soak(args.seconds, args.phase, args.concurrency, Path(root)))


if __name__ == "__main__":
    sys.exit(main())

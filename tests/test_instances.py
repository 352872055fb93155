"""Two gateway processes on one PostgreSQL store, as behind a load balancer.

Real processes on loopback: the sandbox provinces and two gateways, each started
by its own CLI, both given the same store (a schema of its own for each test, on the
test server: tests/stores.py). Checked against the provinces' own records:

- concurrent kinship adds and binds, split across both, keep every cap;
- one idempotency key sent to both at once gives one outcome;
- one instance killed (SIGKILL) in the middle of writes: the other finishes them once
  its leases run out, 0 lost and 0 doubled.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import json
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import websockets

from adapters.hebei import HebeiAdapter
from gateway.common.auth import mint_token
from gateway.ops.config import AuthSettings, StoreSettings
from gateway.provinces.federated import sandbox_names
from gateway.state.records import encode_cursor
from sandbox.serve import free_port, spawn_gateway, stop, wait_ready
from tests.conftest import WANG_EIGHT, person
from tests.stores import settings_on
from tests.test_kill import BIND, quiet, until
from tests.test_kill import provinces as provinces  # the three sandboxes (a fixture)

AUTHORIZER = "hb_wang_jianguo"
NINE = (*WANG_EIGHT, ("hb_wang_yue", "CHILD"))  # 王建国's relatives: Hebei binds eight
ADD = """mutation($i: AddKinshipMemberInput!) { addKinshipMember(input: $i) {
  link { id status } errors { code } } }"""
LEASE_SECONDS = 1.0  # a killed instance's leases run out this soon
PENDING_AFTER = 2.0  # then its pending writes are the other's to send


class Instances:
    """The two gateways' urls, and what each is."""

    def __init__(
        self, urls: list[str], processes: list[subprocess.Popen[bytes]], store: StoreSettings
    ) -> None:
        self.urls = urls
        self.processes = processes
        self.store = store

    @contextlib.asynccontextmanager
    async def clients(self, who: str) -> AsyncIterator[list[httpx.AsyncClient]]:
        token = mint_token(person(who)["certNo"], AuthSettings())
        headers = {"Authorization": f"Bearer {token}"}
        async with contextlib.AsyncExitStack() as stack:
            yield [
                await stack.enter_async_context(
                    httpx.AsyncClient(base_url=url, headers=headers, timeout=30)
                )
                for url in self.urls
            ]

    async def outbox(self) -> dict[str, int]:
        """The writes by state, read from the shared store."""
        assert self.store.url is not None
        conn = await asyncpg.connect(
            self.store.url, server_settings={"search_path": self.store.schema}
        )
        try:
            rows = await conn.fetch("SELECT state, COUNT(*) FROM outbox GROUP BY state")
        except asyncpg.UndefinedTableError:
            return {}
        finally:
            await conn.close()
        return {str(r[0]): int(r[1]) for r in rows}


@pytest.fixture
def instances(
    tmp_path: Path, provinces: dict[str, str], postgres_database: str
) -> Iterator[Instances]:
    store = settings_on(postgres_database)
    config = tmp_path / "gongji.toml"
    lines = [
        "[store]",
        f'url = "{store.url}"',
        f'schema = "{store.schema}"',
        f"lease_seconds = {LEASE_SECONDS}",
        "",
        "[resilience]",
        "reconcile_interval = 0.2",
        f"pending_after = {PENDING_AFTER}",
        "",
    ]
    for name, url in provinces.items():
        lines += [f"[provinces.{name}]", f'base_url = "{url}"', "timeout = 10", ""]
    config.write_text("\n".join(lines), encoding="utf-8")
    ports = [free_port(), free_port()]
    with contextlib.ExitStack() as stack:
        processes = [
            stack.enter_context(
                quiet(
                    spawn_gateway(
                        config, port, tmp_path / f"gateway-{n}", stderr=subprocess.DEVNULL
                    )
                )
            )
            for n, port in enumerate(ports)
        ]
        urls = [f"http://127.0.0.1:{port}" for port in ports]
        for url, process in zip(urls, processes, strict=True):
            wait_ready(url, process=process, path="/readyz")
        yield Instances(urls, processes, store)


def bind_input(relative: str, relation: str, key: str | None = None) -> dict[str, Any]:
    given: dict[str, Any] = {
        "beneficiaryCertNo": person(relative)["certNo"],
        "beneficiaryName": person(relative)["name"],
        "relation": relation,
    }
    if key is not None:
        given["idempotencyKey"] = key
    return {"i": given}


async def province_bindings(url: str) -> list[Any]:
    async with httpx.AsyncClient(base_url=url, timeout=30) as upstream:
        return [
            b
            for b in await HebeiAdapter(upstream).bindings_of([person(AUTHORIZER)["certNo"]])
            if b.authorizer.cert_no == person(AUTHORIZER)["certNo"]
        ]


async def test_binds_and_kinship_adds_split_across_two_instances_keep_every_cap(
    instances: Instances, provinces: dict[str, str]
) -> None:
    async with instances.clients(AUTHORIZER) as clients:
        answers = await asyncio.gather(
            *(
                clients[n % 2].post("/graphql", json={"query": BIND, "variables": bind_input(*kin)})
                for n, kin in enumerate(NINE)
            )
        )
    payloads = [a.json()["data"]["bindMutualAid"] for a in answers]
    assert sum(p["binding"] is not None for p in payloads) == 8, payloads
    assert [p["errors"] for p in payloads if p["binding"] is None] == [
        [{"code": "BINDING_LIMIT_REACHED"}]
    ]
    bound = await province_bindings(provinces["hebei"])
    assert len(bound) == 8
    assert len({b.beneficiary.cert_no for b in bound}) == 8

    # 2 adders per member: four adders at once, two through each instance
    adders = [
        ("hb_wang_jianguo", "PARENT"),
        ("hb_wang_lei", "GRANDPARENT"),
        ("hb_wang_jing", "GRANDPARENT"),
        ("hb_wang_peng", "GRANDPARENT"),
    ]
    member = person("hb_wang_deming")

    async def add(n: int, adder: str, relation: str) -> dict[str, Any]:
        variables = {
            "i": {
                "memberCertNo": member["certNo"],
                "memberName": member["name"],
                "relation": relation,
                "channel": "APP",
            }
        }
        async with instances.clients(adder) as clients:
            answer = await clients[n % 2].post(
                "/graphql", json={"query": ADD, "variables": variables}
            )
        added: dict[str, Any] = answer.json()["data"]["addKinshipMember"]
        return added

    added = await asyncio.gather(*(add(n, *a) for n, a in enumerate(adders)))
    assert sum(a["link"] is not None for a in added) == 2, added
    assert (
        sorted(e["code"] for a in added for e in a["errors"])
        == ["KINSHIP_MEMBER_LIMIT_REACHED"] * 2
    )

    # 5 members per adder: seven at once through both
    family = [
        ("hb_li_xiuying", "SPOUSE"),
        ("hb_zhao_guilan", "PARENT"),
        *[(k, "CHILD") for k, _ in NINE[3:8]],
    ]
    async with instances.clients(AUTHORIZER) as clients:
        answers = await asyncio.gather(
            *(
                clients[n % 2].post(
                    "/graphql",
                    json={
                        "query": ADD,
                        "variables": {
                            "i": {
                                "memberCertNo": person(k)["certNo"],
                                "memberName": person(k)["name"],
                                "relation": r,
                                "channel": "APP",
                            }
                        },
                    },
                )
                for n, (k, r) in enumerate(family)
            )
        )
    links = [a.json()["data"]["addKinshipMember"] for a in answers]
    had = added[0]["link"] is not None  # 王建国's add of 王德明 above, if it was one of the two
    assert sum(link["link"] is not None for link in links) == 5 - had, links


async def test_one_key_sent_to_both_instances_at_once_has_one_outcome(
    instances: Instances, provinces: dict[str, str]
) -> None:
    variables = bind_input("hb_wang_lei", "CHILD", key="both-at-once")
    async with instances.clients(AUTHORIZER) as clients:
        answers = await asyncio.gather(
            *(c.post("/graphql", json={"query": BIND, "variables": variables}) for c in clients)
        )
    payloads = [a.json()["data"]["bindMutualAid"] for a in answers]
    assert payloads[0] == payloads[1], payloads
    assert payloads[0]["binding"]["status"] == "ACTIVE"
    assert len(await province_bindings(provinces["hebei"])) == 1
    assert await instances.outbox() == {"DONE": 1}

    # a write of the gateway's own (the kinship registry): one outcome too
    member = person("hb_wang_jing")
    added = {
        "i": {
            "memberCertNo": member["certNo"],
            "memberName": member["name"],
            "relation": "CHILD",
            "channel": "APP",
            "idempotencyKey": "add-at-once",
        }
    }
    async with instances.clients(AUTHORIZER) as clients:
        answers = await asyncio.gather(
            *(c.post("/graphql", json={"query": ADD, "variables": added}) for c in clients)
        )
    links = [a.json()["data"]["addKinshipMember"] for a in answers]
    assert links[0] == links[1], links
    assert links[0]["link"]["status"] == "PENDING_CONSENT"


async def test_an_instance_killed_mid_writes_leaves_the_other_to_finish_them(
    instances: Instances, provinces: dict[str, str]
) -> None:
    first, second = instances.processes
    async with instances.clients(AUTHORIZER) as (to_first, to_second):
        # where he is insured is remembered first, as it would be in real use
        assert (await to_first.post("/graphql", json={"query": "{ me { name } }"})).is_success
        keys = {relative: f"kill-{relative}" for relative, _ in NINE[:8]}
        sent = [
            asyncio.create_task(
                to_first.post(
                    "/graphql",
                    json={"query": BIND, "variables": bind_input(r, rel, keys[r])},
                )
            )
            for r, rel in NINE[:8]
        ]
        await until(lambda: _pending_at_least(instances, 3), "three writes pending", every=0.05)
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
        answered = await asyncio.gather(*sent, return_exceptions=True)
        assert any(isinstance(a, BaseException) for a in answered), "nothing was in flight"

        # the second instance's reconciler takes the first's writes once its leases run
        # out: every recorded write is answered, none left pending
        async def settled() -> bool:
            left = await instances.outbox()
            return left.get("PENDING", 0) + left.get("UNKNOWN", 0) == 0

        await until(settled, "the second instance finished the first's writes", every=0.2)
        # the clients send each again, with its key, to the instance still up
        again = [
            (
                await to_second.post(
                    "/graphql", json={"query": BIND, "variables": bind_input(r, rel, keys[r])}
                )
            ).json()["data"]["bindMutualAid"]
            for r, rel in NINE[:8]
        ]
    assert second.poll() is None
    bound = await province_bindings(provinces["hebei"])
    by_relative = {b.beneficiary.cert_no: b.id for b in bound}
    assert len(by_relative) == len(bound), "a write was carried out twice"
    # every write is answered, as the province has it: 0 lost
    for payload, (relative, _) in zip(again, NINE[:8], strict=True):
        assert payload["binding"] is not None, payload
        node = base64.b64decode(payload["binding"]["id"]).decode()  # MutualAidBinding:13:ID
        assert node.rsplit(":", 1)[-1] == by_relative[person(relative)["certNo"]]
    assert len(bound) == 8
    assert await instances.outbox() == {"DONE": 8}


async def _pending_at_least(instances: Instances, count: int) -> bool:
    left = await instances.outbox()
    return left.get("PENDING", 0) >= count


def test_serve_with_two_workers_runs_two_processes_on_one_store(
    tmp_path: Path, postgres_database: str
) -> None:
    """``gongji serve --workers 2``: two processes on one port and one store, the sandbox
    provinces once each in processes of their own."""
    store = settings_on(postgres_database)
    config = tmp_path / "gongji.toml"
    config.write_text(f'[store]\nurl = "{store.url}"\nschema = "{store.schema}"\n', "utf-8")
    port = free_port()
    command = [sys.executable, "-m", "gateway.edge.cli", "--config", str(config), "serve"]
    command += ["--workers", "2", "--port", str(port), "--data-dir", str(tmp_path / "data")]
    served = subprocess.Popen(command, stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_ready(url, process=served, path="/readyz", timeout=60)
        token = mint_token(person(AUTHORIZER)["certNo"], AuthSettings())
        with httpx.Client(base_url=url, timeout=30) as client:
            for _ in range(10):
                answer = client.post(
                    "/graphql",
                    json={"query": "{ me { name } }"},
                    headers={"Authorization": f"Bearer {token}", "Connection": "close"},
                )
                assert answer.json() == {"data": {"me": {"name": "王建国"}}}
        workers = [c for c in children(served.pid) if "multiprocessing.spawn" in c]
        sandboxes = [c for c in children(served.pid) if " sandbox " in c]
    finally:
        stop(served)  # SIGTERM: the supervisor stops its workers and the sandboxes
    assert children(served.pid) == []
    assert len(workers) == 2, workers
    assert sorted(c.split(" sandbox ")[1].split()[0] for c in sandboxes) == sandbox_names()


def children(pid: int) -> list[str]:
    """The command lines of ``pid``'s child processes."""
    found = []
    for status in Path("/proc").glob("[0-9]*/status"):
        with contextlib.suppress(OSError):
            fields = dict(
                line.split(":\t", 1) for line in status.read_text().splitlines() if ":\t" in line
            )
            if fields.get("PPid", "").strip() == str(pid):
                command = (status.parent / "cmdline").read_bytes().replace(b"\0", b" ")
                found.append(command.decode(errors="replace"))
    return found


async def test_a_subject_s_rate_limit_counts_its_uses_on_both_instances(
    instances: Instances,
) -> None:
    """60 mutations a minute per subject (the default), whichever instance they reach:
    70 spread over both, 10 refused (counted per process, none would be)."""
    remove = (
        'mutation { removeKinshipMember(memberId: "S2luc2hpcExpbms6bm9uZQ") { errors { code } } }'
    )
    limited = 0
    async with instances.clients("hb_wang_lei") as clients:
        for start in range(0, 70, 10):
            answers = await asyncio.gather(
                *(
                    clients[n % 2].post("/graphql", json={"query": remove})
                    for n in range(start, start + 10)
                )
            )
            for answer in answers:
                codes = [e["extensions"]["code"] for e in answer.json().get("errors", [])]
                limited += codes == ["RATE_LIMITED"]
    assert limited == 10


async def test_an_event_raised_on_one_instance_reaches_a_subscriber_on_the_other(
    instances: Instances,
) -> None:
    """王静 subscribes on the second instance; 王建国 asks to add her (kinship) on the
    first. The event is in the shared store, and the first instance's NOTIFY wakes her
    subscription at once (its own poll is 30 s away)."""
    member = person("hb_wang_jing")
    token = mint_token(member["certNo"], AuthSettings())
    since_start = encode_cursor("events", f"0|{dt.datetime.now(dt.UTC).isoformat()}")
    ws_url = instances.urls[1].replace("http://", "ws://") + "/graphql"
    async with websockets.connect(ws_url, subprotocols=["graphql-transport-ws"]) as ws:
        init = {"type": "connection_init", "payload": {"authorization": f"Bearer {token}"}}
        await ws.send(json.dumps(init))
        assert json.loads(await asyncio.wait_for(ws.recv(), 10)) == {"type": "connection_ack"}
        query = "subscription($a: String) { familyEvents(after: $a) { kind kinship { status } } }"
        subscribe = {"query": query, "variables": {"a": since_start}}
        await ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": subscribe}))
        await asyncio.sleep(1.0)  # read what there was (nothing), now waiting
        added = {
            "i": {
                "memberCertNo": member["certNo"],
                "memberName": member["name"],
                "relation": "CHILD",
                "channel": "APP",
            }
        }
        async with instances.clients(AUTHORIZER) as (first, _):
            answer = await first.post("/graphql", json={"query": ADD, "variables": added})
        assert answer.json()["data"]["addKinshipMember"]["link"]["status"] == "PENDING_CONSENT"
        message = json.loads(await asyncio.wait_for(ws.recv(), 10))
    assert message["type"] == "next"
    assert message["payload"]["data"]["familyEvents"] == {
        "kind": "KINSHIP_REQUESTED",
        "kinship": {"status": "PENDING_CONSENT"},
    }

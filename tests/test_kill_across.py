"""A storm of SIGKILLs while bills are paid from a quota held in another province: each
settlement ends paid once in both provinces or in neither, and the money is conserved,
as both provinces' own records show.

Real processes on loopback, as in `tests.test_kill`: Hebei (which holds the quota)
answers slowly, so that kills land between the steps of the transfers (hold in Hebei,
settle in Jiangsu, confirm in Hebei). The gateway is killed again and again while an
institution keeps sending its bills, each under its own key; a last gateway finishes.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sqlite3
import subprocess
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx

from adapters.hebei import HebeiAdapter
from adapters.jiangsu import JiangsuAdapter
from gateway.common.auth import INSTITUTION, Institution, mint_token
from gateway.ops.config import AuthSettings
from sandbox.serve import free_port, spawn_gateway, stop, wait_ready
from tests.conftest import person
from tests.test_kill import gateway_config, outbox, provinces, until  # noqa: F401

SON, MOTHER = "hb_liu_tao", "js_zhang_shuzhen"
QUOTA = Decimal("1000.00")
BILLS = 12  # each a self-pay part of 50.00: 600.00 of the quota in all
KILLS = 4
BIND = """mutation($i: BindMutualAidInput!) { bindMutualAid(input: $i) {
  binding { id } errors { code } status } }"""
SETTLE = """mutation($i: SettleInput!) { settle(input: $i) {
  settlement { id mutualAidPaid cashDue } errors { code } status } }"""


def bill(n: int) -> dict[str, Any]:
    return {
        "i": {
            "patientCertNo": person(MOTHER)["certNo"],
            "medicalType": "OUTPATIENT",
            "totalAmount": "80.00",
            "fundPaid": "30.00",
            "idempotencyKey": f"storm-{n}",
        }
    }


def post(client: httpx.AsyncClient, query: str, variables: dict[str, Any]) -> Any:
    return client.post("/graphql", json={"query": query, "variables": variables})


def open_transfers(store: Path) -> int:
    return sum(n for step, n in transfers(store).items() if step != "DONE")


def transfers(store: Path) -> dict[str, int]:
    """The gateway's transfers by step, read from its store."""
    if not store.exists():
        return {}
    with contextlib.closing(sqlite3.connect(store, timeout=5)) as db:
        try:
            rows = db.execute("SELECT step, COUNT(*) FROM transfer GROUP BY step").fetchall()
        except sqlite3.OperationalError:
            return {}
    return {str(step): int(n) for step, n in rows}


async def test_a_storm_of_kills_during_transfers_loses_and_doubles_nothing(
    tmp_path: Path,
    provinces: dict[str, str],  # noqa: F811
) -> None:
    config = gateway_config(tmp_path, provinces)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    store = tmp_path / "gateway" / "gateway.sqlite3"
    auth = AuthSettings()
    son = {"Authorization": f"Bearer {mint_token(person(SON)['certNo'], auth)}"}
    cashier = mint_token(
        "130102196001010011",
        auth,
        roles=frozenset({INSTITUTION}),
        institution=Institution("H32010001", "HOSPITAL"),
    )
    hospital = {"Authorization": f"Bearer {cashier}"}

    def start() -> subprocess.Popen[bytes]:
        process = spawn_gateway(config, port, tmp_path / "gateway", stderr=subprocess.DEVNULL)
        wait_ready(url, process=process, path="/readyz")
        return process

    outcomes: dict[int, dict[str, Any]] = {}

    async def send_all(client: httpx.AsyncClient) -> None:
        """The institution sends every bill not yet answered DONE, again, by its key."""
        waiting = [n for n in range(BILLS) if n not in outcomes]
        answers = await asyncio.gather(
            *(
                client.post("/graphql", json={"query": SETTLE, "variables": bill(n)})
                for n in waiting
            ),
            return_exceptions=True,
        )
        for n, answer in zip(waiting, answers, strict=True):
            if isinstance(answer, BaseException) or not answer.is_success:
                continue
            payload = answer.json()["data"]["settle"]
            if payload["status"] == "DONE":
                outcomes[n] = payload

    first = await asyncio.to_thread(start)
    try:
        async with httpx.AsyncClient(base_url=url, headers=son, timeout=30) as client:
            given = {
                "beneficiaryCertNo": person(MOTHER)["certNo"],
                "beneficiaryName": person(MOTHER)["name"],
                "relation": "PARENT",
                "quota": str(QUOTA),
            }
            bound = await client.post("/graphql", json={"query": BIND, "variables": {"i": given}})
            assert bound.json()["data"]["bindMutualAid"]["errors"] == []
    finally:
        await asyncio.to_thread(stop, first)

    killed_mid_transfer = 0
    for round_ in range(KILLS):
        process = await asyncio.to_thread(start)
        try:
            async with httpx.AsyncClient(base_url=url, headers=hospital, timeout=30) as client:
                sending = asyncio.create_task(send_all(client))
                # killed while transfers are between steps (a different moment each round)
                wanted = 1 + round_ % 3
                await until(
                    lambda wanted=wanted, sending=sending: (
                        open_transfers(store) >= wanted or sending.done()
                    ),
                    "transfers under way",
                )
                await asyncio.sleep(0.1 * round_)
                killed_mid_transfer += any(k != "DONE" for k in transfers(store))
                process.send_signal(signal.SIGKILL)
                process.wait(timeout=10)
                with contextlib.suppress(Exception):
                    await sending
        finally:
            stop(process, kill=True)
    assert killed_mid_transfer >= 2, "the kills never caught a transfer between its steps"

    last = await asyncio.to_thread(start)  # its reconciler finishes what the others left
    try:
        async with httpx.AsyncClient(base_url=url, headers=hospital, timeout=30) as client:

            async def all_done() -> bool:
                await send_all(client)
                return len(outcomes) == BILLS

            await until(all_done, "every bill DONE", within=60, every=0.2)
            await until(
                lambda: set(transfers(store)) <= {"DONE"}, "every transfer finished", within=30
            )
    finally:
        await asyncio.to_thread(stop, last)

    # both provinces' own records
    async with (
        httpx.AsyncClient(base_url=provinces["hebei"], timeout=30) as hebei_client,
        httpx.AsyncClient(base_url=provinces["jiangsu"], timeout=30) as jiangsu_client,
    ):
        hebei, jiangsu = HebeiAdapter(hebei_client), JiangsuAdapter(jiangsu_client)
        holds = await hebei.holds_of([person(SON)["certNo"]])
        [binding] = await hebei.bindings_of([person(SON)["certNo"]])
        me = (await hebei.find_persons([person(SON)["certNo"]]))[person(SON)["certNo"]]
        settled = await jiangsu.settlements_of([person(MOTHER)["certNo"]])

    # every bill settled once in Jiangsu, none lost, none doubled
    keys = sorted(s.id for s in settled)
    assert len(settled) == BILLS, keys
    assert all(o["errors"] == [] for o in outcomes.values())
    # what Jiangsu paid from Hebei is what Hebei confirmed, hold by hold
    paid_there = {s.funding_hold: s.mutual_aid_paid for s in settled if s.funding_hold}
    confirmed_here = {h.id: h.used for h in holds if h.status.value == "CONFIRMED"}
    assert paid_there == confirmed_here
    assert all(h.status.value in ("CONFIRMED", "RELEASED") for h in holds)  # none left held
    assert all(s.mutual_aid_paid + s.cash_due == Decimal("50.00") for s in settled)
    # the money is conserved: the quota is what was granted less what was paid
    assert binding.quota is not None
    spent = sum(confirmed_here.values(), Decimal("0.00"))
    assert binding.quota.remaining == QUOTA - spent
    assert spent == sum((s.mutual_aid_paid for s in settled), Decimal("0.00"))
    assert me.balance == Decimal(person(SON)["accountBalance"]) - QUOTA

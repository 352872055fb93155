"""Subscriptions through the npm ``graphql-ws`` client, the one browser front ends use
(the playground too): `tests/graphql_ws_client.mjs` run by node against a gateway on a
loopback port, one JSON line per thing it sees."""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest

from gateway.common.auth import mint_token
from gateway.common.certno import mask_name
from gateway.ops.config import AuthSettings
from tests.conftest import ROOT, person
from tests.test_settlement import settle
from tests.test_subscriptions import RESPOND, Served, following, gateway

PLAYGROUND = ROOT / "playground"
CLIENT = ROOT / "tests" / "graphql_ws_client.mjs"
WAIT = 10  # seconds for any one line, or the client's exit
ANOTHER_GATEWAY = AuthSettings(secret="another-gateway-s-secret-at-least-32-bytes")


def node() -> str:
    found = shutil.which("node")
    if found is None:
        pytest.fail("Node.js is needed: run scripts/install (it installs it with the playground)")
    for package in ("graphql-ws", "ws"):
        if not (PLAYGROUND / "node_modules" / package / "package.json").is_file():
            pytest.fail(f"playground/node_modules/{package} is missing: run scripts/install")
    return found


@dataclass
class NpmClient:
    """The node client's process: its lines as they come."""

    process: asyncio.subprocess.Process

    async def line(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        async with asyncio.timeout(WAIT):
            raw = await self.process.stdout.readline()
        if not raw:  # it exited without saying why on stdout
            async with asyncio.timeout(WAIT):
                await self.process.wait()
            pytest.fail(f"the npm client exited ({self.process.returncode}): {await self.stderr()}")
        answer: dict[str, Any] = json.loads(raw)
        return answer

    async def event(self) -> dict[str, Any]:
        """The next ``familyEvents`` the client was sent."""
        answer = await self.line()
        assert "errors" not in answer, answer
        assert "data" in answer, answer
        event: dict[str, Any] = answer["data"]["familyEvents"]
        return event

    async def exited(self) -> int:
        async with asyncio.timeout(WAIT):
            return await self.process.wait()

    async def stderr(self) -> str:
        assert self.process.stderr is not None
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(1):
                return (await self.process.stderr.read()).decode(errors="replace")[-3000:]
        return ""


@contextlib.asynccontextmanager
async def npm_client(at: Served, token: str, count: int = 1) -> AsyncIterator[NpmClient]:
    """`graphql_ws_client.mjs` subscribed to ``familyEvents`` with ``token``, until
    ``count`` events; killed on the way out if it is still running."""
    process = await asyncio.create_subprocess_exec(
        node(),
        str(CLIENT),
        at.ws,
        token,
        str(count),
        str(PLAYGROUND),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        yield NpmClient(process)
    finally:
        if process.returncode is None:
            process.kill()
        async with asyncio.timeout(WAIT):
            await process.wait()


async def test_a_jiangsu_spouse_hears_she_is_invited_and_he_hears_her_answer() -> None:
    async with (
        gateway() as at,
        npm_client(at, at.gql.token("js_liu_fang")) as her,
        npm_client(at, at.gql.token("js_chen_zhiqiang")) as him,
    ):
        assert await her.line() == {"ready": True}
        assert await him.line() == {"ready": True}
        await following(at, 2)  # the server has both subscriptions
        bound = await at.gql.bind("js_chen_zhiqiang", "js_liu_fang", "SPOUSE")
        assert bound["binding"]["status"] == "PENDING_CONFIRMATION"

        invited = await her.event()
        assert invited["kind"] == "BINDING_INVITED"
        assert invited["binding"]["bindingId"] == bound["binding"]["id"]
        assert invited["binding"]["status"] == "PENDING_CONFIRMATION"
        assert invited["binding"]["authorizer"]["name"] == mask_name("陈志强")
        assert invited["binding"]["beneficiary"]["name"] == "刘芳"
        assert await her.exited() == 0  # the one event she waited for

        answer = await at.gql(
            RESPOND, {"id": invited["binding"]["bindingId"], "accept": True}, as_="js_liu_fang"
        )
        assert answer["data"]["respondToMutualAidBinding"]["binding"]["status"] == "ACTIVE"
        confirmed = await him.event()
        assert confirmed["kind"] == "BINDING_CONFIRMED"
        assert confirmed["binding"]["bindingId"] == bound["binding"]["id"]
        assert confirmed["binding"]["status"] == "ACTIVE"
        assert confirmed["binding"]["authorizer"]["name"] == "陈志强"
        assert confirmed["binding"]["beneficiary"]["name"] == mask_name("刘芳")
        assert await him.exited() == 0


async def test_an_authorizer_hears_through_the_npm_client_what_he_paid_for_her() -> None:
    async with gateway() as at:
        await at.gql.bind("hb_wang_jianguo", "hb_wang_jing", "CHILD")
        before = await at.gql("{ me { account { balance } } }", as_="hb_wang_jianguo")
        balance = Decimal(before["data"]["me"]["account"]["balance"])
        async with npm_client(at, at.gql.token("hb_wang_jianguo")) as him:
            assert await him.line() == {"ready": True}
            await following(at, 1)
            paid = await settle(at.gql, "hb_wang_jing", "100.00", "40.00", key="npm-bill-1")
            assert paid["settlement"]["mutualAidPaid"] == "60.00"

            event = await him.event()
            assert event["kind"] == "PAID_FOR_RELATIVE"
            assert event["payment"]["amount"] == "60.00"
            assert Decimal(event["payment"]["balanceAfter"]) == balance - Decimal("60.00")
            assert event["payment"]["patient"]["name"] == mask_name(person("hb_wang_jing")["name"])
            assert event["cursor"]
            assert await him.exited() == 0


@pytest.mark.parametrize(
    "token",
    [
        "not-a-token",
        mint_token(person("hb_wang_jianguo")["certNo"], ANOTHER_GATEWAY),
    ],
    ids=["garbage", "signed-elsewhere"],
)
async def test_the_npm_client_sees_a_connection_without_a_valid_token_closed_4403(
    token: str,
) -> None:
    async with gateway() as at, npm_client(at, token) as client:
        closed = await client.line()  # no "ready": the connection is never acknowledged
        assert closed == {"closed": 4403, "reason": "Forbidden"}
        assert await client.exited() == 0
        assert at.followers() == 0

"""Subscriptions end to end: a gateway served on a loopback port, clients that front
ends use (`gql`'s WebSocket transport, graphql-transport-ws), events raised by the
gateway's own writes."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import time
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import httpx
import pytest
import websockets
from gql import Client, GraphQLRequest
from gql.transport.websockets import WebsocketsTransport
from starlette.applications import Starlette

from gateway.common.auth import mint_token
from gateway.common.certno import mask_name
from gateway.edge.app import create_app
from gateway.ops.config import AuthSettings, Settings, Subscriptions
from tests.browser import served
from tests.conftest import GraphQL, person
from tests.test_readme import BLOCKS
from tests.test_settlement import settle

FOLLOW = BLOCKS["docs/frontend.md FamilyEvents"]  # the one the front-end guide shows

RESPOND = """mutation($id: ID!, $accept: Boolean!) {
  respondToMutualAidBinding(bindingId: $id, accept: $accept) {
    binding { status } errors { code }
  }
}"""


@dataclasses.dataclass
class Served:
    app: Starlette
    origin: str
    gql: GraphQL

    @property
    def ws(self) -> str:
        return self.origin.replace("http://", "ws://") + "/graphql"

    def followers(self) -> int:
        return int(self.app.state.services.events.followers)


@contextlib.asynccontextmanager
async def gateway(settings: Settings | None = None) -> AsyncIterator[Served]:
    settings = settings or Settings(data_dir=None)
    app = create_app(settings)
    async with served(app) as origin, httpx.AsyncClient(base_url=origin) as client:
        yield Served(app, origin, GraphQL(client, settings.auth))


class Follower:
    """One person's subscription through gql's WebSocket transport."""

    def __init__(self, at: Served, key: str, after: str | None = None) -> None:
        self.events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        transport = WebsocketsTransport(
            url=at.ws,
            init_payload={"authorization": f"Bearer {at.gql.token(key)}"},
            subprotocols=[WebsocketsTransport.GRAPHQLWS_SUBPROTOCOL],
        )
        self._task = asyncio.create_task(self._follow(Client(transport=transport), after))

    async def _follow(self, client: Client, after: str | None) -> None:
        async with client as session:
            request = GraphQLRequest(FOLLOW, variable_values={"after": after})
            async for result in session.subscribe(request):
                await self.events.put(result["familyEvents"])

    async def next(self) -> dict[str, Any]:
        return await asyncio.wait_for(self.events.get(), timeout=10)

    async def stop(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


async def following(at: Served, n: int) -> None:
    """Until ``n`` subscriptions follow events (a subscription sees what is raised after
    it starts: the test must not raise its events before)."""
    async with asyncio.timeout(10):
        while at.followers() < n:  # noqa: ASYNC110 (a count in another task: polled)
            await asyncio.sleep(0.01)


async def test_a_jiangsu_spouse_is_invited_as_he_binds_her_and_he_hears_her_answer() -> None:
    async with gateway() as at:
        her = Follower(at, "js_liu_fang")
        him = Follower(at, "js_chen_zhiqiang")
        await following(at, 2)
        bound = await at.gql.bind("js_chen_zhiqiang", "js_liu_fang", "SPOUSE")
        assert bound["binding"]["status"] == "PENDING_CONFIRMATION"

        invited = await her.next()
        assert invited["kind"] == "BINDING_INVITED"
        assert invited["binding"]["status"] == "PENDING_CONFIRMATION"
        assert invited["binding"]["authorizer"]["name"] == mask_name("陈志强")  # masked
        assert invited["binding"]["beneficiary"]["name"] == "刘芳"  # herself
        assert invited["binding"]["bindingId"] == bound["binding"]["id"]

        answered = await at.gql(
            RESPOND, {"id": invited["binding"]["bindingId"], "accept": True}, as_="js_liu_fang"
        )
        assert answered["data"]["respondToMutualAidBinding"]["binding"]["status"] == "ACTIVE"
        confirmed = await him.next()
        assert confirmed["kind"] == "BINDING_CONFIRMED"
        assert confirmed["binding"]["status"] == "ACTIVE"
        assert confirmed["binding"]["authorizer"]["name"] == "陈志强"
        assert confirmed["binding"]["beneficiary"]["name"] == mask_name("刘芳")
        assert her.events.empty()  # she asked nothing: the confirmation is his news
        await her.stop()
        await him.stop()


async def test_an_authorizer_hears_of_each_payment_and_gets_what_he_missed_by_its_cursor() -> None:
    async with gateway() as at:
        await at.gql.bind("hb_wang_jianguo", "hb_wang_jing", "CHILD")
        before = await at.gql("{ me { account { balance } } }", as_="hb_wang_jianguo")
        balance = before["data"]["me"]["account"]["balance"]
        him = Follower(at, "hb_wang_jianguo")
        await following(at, 1)
        paid = await settle(at.gql, "hb_wang_jing", "100.00", "40.00", key="bill-1")
        assert paid["settlement"]["mutualAidPaid"] == "60.00"
        first = await him.next()
        assert first["kind"] == "PAID_FOR_RELATIVE"
        assert first["payment"]["amount"] == "60.00"
        assert first["payment"]["patient"]["name"] == mask_name(person("hb_wang_jing")["name"])
        assert Decimal(first["payment"]["balanceAfter"]) == Decimal(balance) - Decimal("60.00")
        await him.stop()

        # away: the next bill is paid while nobody listens
        await settle(at.gql, "hb_wang_jing", "50.00", "20.00", key="bill-2")
        back = Follower(at, "hb_wang_jianguo", after=first["cursor"])
        missed = await back.next()
        assert (missed["kind"], missed["payment"]["amount"]) == ("PAID_FOR_RELATIVE", "30.00")
        await back.stop()


async def test_no_valid_token_is_refused_and_a_token_running_out_closes_the_connection() -> None:
    auth = AuthSettings(leeway_seconds=0)
    async with gateway(Settings(data_dir=None, auth=auth)) as at:
        async with websockets.connect(at.ws, subprotocols=["graphql-transport-ws"]) as ws:
            await ws.send(json.dumps({"type": "connection_init", "payload": {}}))
            with pytest.raises(websockets.ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 10)
        assert ws.close_code == 4403

        cert = person("js_liu_fang")["certNo"]
        short = mint_token(cert, auth, now=time.time() - auth.token_ttl_seconds + 1.5)
        async with websockets.connect(at.ws, subprotocols=["graphql-transport-ws"]) as ws:
            init = {"type": "connection_init", "payload": {"authorization": f"Bearer {short}"}}
            await ws.send(json.dumps(init))
            assert json.loads(await asyncio.wait_for(ws.recv(), 10)) == {"type": "connection_ack"}
            subscribe = {"id": "1", "type": "subscribe", "payload": {"query": FOLLOW}}
            await ws.send(json.dumps(subscribe))
            with pytest.raises(websockets.ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 10)
        assert (ws.close_code, ws.close_reason) == (4401, "Unauthorized: token expired")


async def test_a_production_gateway_runs_only_registered_subscriptions(tmp_path: Any) -> None:
    """Over WebSocket as over HTTP: a document not registered is refused with its code
    before it is parsed; a registered one runs by its id."""
    from gateway.edge.documents import Manifest, Operation, document_id

    manifest = tmp_path / "manifest.json"
    manifest.write_text(Manifest([Operation.of(FOLLOW)]).dumps(), encoding="utf-8")
    settings = Settings(data_dir=None, documents=manifest, free_documents=False)
    async with gateway(settings) as at:
        token = at.gql.token("hb_wang_jianguo")
        async with websockets.connect(at.ws, subprotocols=["graphql-transport-ws"]) as ws:
            init = {"type": "connection_init", "payload": {"authorization": f"Bearer {token}"}}
            await ws.send(json.dumps(init))
            assert json.loads(await asyncio.wait_for(ws.recv(), 10)) == {"type": "connection_ack"}
            probe = "subscription { familyEvents { kind binding { authorizer { certNo } } } }"
            await ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": {"query": probe}}))
            refused = json.loads(await asyncio.wait_for(ws.recv(), 10))
            assert (refused["id"], refused["type"]) == ("1", "error")
            assert refused["payload"][0]["extensions"] == {"code": "DOCUMENT_NOT_TRUSTED"}
            named = {"documentId": f"sha256:{document_id(FOLLOW)}", "variables": {}}
            await ws.send(json.dumps({"id": "2", "type": "subscribe", "payload": named}))
            await following(at, 1)  # the registered one runs


async def test_server_sent_events_carry_the_same_events() -> None:
    """GraphQL over SSE (``graphql-sse``, distinct connections): the token in the
    Authorization header, each event a ``next``."""
    async with gateway() as at, httpx.AsyncClient(base_url=at.origin, timeout=10) as client:
        await at.gql.bind("hb_wang_jianguo", "hb_wang_jing", "CHILD")
        headers = {
            "Authorization": f"Bearer {at.gql.token('hb_wang_jianguo')}",
            "Accept": "text/event-stream",
        }
        body = {"query": FOLLOW, "variables": {}}
        async with client.stream("POST", "/graphql", json=body, headers=headers) as stream:
            assert stream.status_code == 200
            assert stream.headers["content-type"].startswith("text/event-stream")
            await following(at, 1)
            await settle(at.gql, "hb_wang_jing", "100.00", "40.00", key="sse-1")
            lines = stream.aiter_lines()
            async with asyncio.timeout(10):
                async for line in lines:
                    if line.startswith("event:"):
                        assert line == "event: next"
                        data = json.loads((await anext(lines)).removeprefix("data:"))
                        break
    event = data["data"]["familyEvents"]
    assert (event["kind"], event["payment"]["amount"]) == ("PAID_FOR_RELATIVE", "60.00")


async def test_connections_are_limited_per_caller() -> None:
    limits = Subscriptions(per_subject=1)
    async with gateway(Settings(data_dir=None, subscriptions=limits)) as at:
        token = at.gql.token("hb_wang_jianguo")
        init = {"type": "connection_init", "payload": {"authorization": f"Bearer {token}"}}
        async with websockets.connect(at.ws, subprotocols=["graphql-transport-ws"]) as first:
            await first.send(json.dumps(init))
            assert json.loads(await asyncio.wait_for(first.recv(), 10)) == {
                "type": "connection_ack"
            }
            async with websockets.connect(at.ws, subprotocols=["graphql-transport-ws"]) as second:
                await second.send(json.dumps(init))
                with pytest.raises(websockets.ConnectionClosed):
                    await asyncio.wait_for(second.recv(), 10)
            assert second.close_code == 4429
        # the first one closed: a new one is let in
        async with websockets.connect(at.ws, subprotocols=["graphql-transport-ws"]) as third:
            await third.send(json.dumps(init))
            assert json.loads(await asyncio.wait_for(third.recv(), 10)) == {
                "type": "connection_ack"
            }


async def test_a_kinship_request_reaches_the_member_and_her_consent_reaches_the_adder() -> None:
    from tests.test_family import add

    async with gateway() as at:
        him = Follower(at, "hb_wang_jianguo")
        son = Follower(at, "hb_wang_hao")
        await following(at, 2)
        link = await add(at.gql, "hb_wang_jianguo", "hb_wang_hao", "CHILD")
        asked = await son.next()
        assert asked["kind"] == "KINSHIP_REQUESTED"
        assert asked["kinship"]["linkId"] == link
        assert asked["kinship"]["status"] == "PENDING_CONSENT"
        assert asked["kinship"]["adder"]["name"] == mask_name("王建国")
        consented = await at.gql(
            "mutation($id: ID!) { respondToKinshipRequest(requestId: $id, accept: true)"
            " { errors { code } } }",
            {"id": link},
            as_="hb_wang_hao",
        )
        assert consented["data"]["respondToKinshipRequest"]["errors"] == []
        answered = await him.next()
        assert (answered["kind"], answered["kinship"]["status"]) == ("KINSHIP_ANSWERED", "APPROVED")
        assert answered["kinship"]["member"]["name"] == mask_name("王浩")
        await him.stop()
        await son.stop()


async def test_a_connection_running_no_subscription_is_closed_when_idle() -> None:
    limits = Subscriptions(idle_seconds=0.5)
    async with gateway(Settings(data_dir=None, subscriptions=limits)) as at:
        token = at.gql.token("hb_wang_jianguo")
        init = {"type": "connection_init", "payload": {"authorization": f"Bearer {token}"}}
        async with websockets.connect(at.ws, subprotocols=["graphql-transport-ws"]) as ws:
            await ws.send(json.dumps(init))
            assert json.loads(await asyncio.wait_for(ws.recv(), 10)) == {"type": "connection_ack"}
            await ws.send(
                json.dumps({"id": "1", "type": "subscribe", "payload": {"query": FOLLOW}})
            )
            await asyncio.sleep(1.0)  # twice the idle time: following, so kept open
            await ws.send(json.dumps({"type": "ping"}))
            assert json.loads(await asyncio.wait_for(ws.recv(), 10)) == {"type": "pong"}
            await ws.send(json.dumps({"id": "1", "type": "complete"}))  # the client stops it
            with pytest.raises(websockets.ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 10)
        assert (ws.close_code, ws.close_reason) == (1000, "Idle: no subscription")


async def test_pages_of_other_origins_connect_only_where_allowed() -> None:
    allowed = Subscriptions(allowed_origins=("https://portal.example",))
    async with gateway(Settings(data_dir=None, subscriptions=allowed)) as at:
        for origin, let_in in (("https://portal.example", True), ("https://evil.example", False)):
            try:
                async with websockets.connect(
                    at.ws, subprotocols=["graphql-transport-ws"], origin=origin
                ) as ws:
                    await ws.send(json.dumps({"type": "connection_init", "payload": {}}))
                    await asyncio.wait_for(ws.recv(), 10)
                opened = True
            except websockets.InvalidStatus:
                opened = False
            except websockets.ConnectionClosed:
                opened = True  # let in, then refused for its missing token (4403)
            assert opened is let_in, origin


async def test_connections_are_limited_per_address() -> None:
    limits = Subscriptions(per_address=1)
    async with gateway(Settings(data_dir=None, subscriptions=limits)) as at:
        first = websockets.connect(at.ws, subprotocols=["graphql-transport-ws"])
        async with (
            first,
            websockets.connect(at.ws, subprotocols=["graphql-transport-ws"]) as second,
        ):
            with pytest.raises(websockets.ConnectionClosed):
                await asyncio.wait_for(second.recv(), 10)
        assert (second.close_code, second.close_reason) == (
            4429,
            "Too many connections from this address",
        )


@pytest.mark.parametrize(
    "bad",
    [
        {"per_subject": 0},
        {"per_address": True},
        {"per_connection": 1.5},
        {"retention_hours": 0},
        {"idle_seconds": -1},
        {"allowed_origins": [7]},
    ],
)
def test_subscription_limits_must_be_sensible(bad: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=r"subscriptions\."):
        Subscriptions(**bad)


async def test_pruning_that_fails_is_logged_and_tried_again(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    from gateway.state.events import Events

    tried = 0

    async def failing(self: Events, now: Any = None) -> int:
        nonlocal tried
        tried += 1
        raise OSError("the disk is full")

    monkeypatch.setattr(Events, "prune", failing)
    pruning = asyncio.create_task(Events(None).run_pruning(every=0.01))  # type: ignore[arg-type]
    await asyncio.sleep(0.1)
    pruning.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await pruning
    assert tried >= 2
    assert "events: pruning failed; tried again later" in caplog.text

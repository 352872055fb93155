"""Shandong's JSON-RPC envelope, read strictly: what the conformance kit cannot know of
this dialect (each answer below comes from a stand-in for the province, by respx)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
import respx
from adapters.base import (
    Binding,
    BindRequest,
    Guard,
    Refusal,
    RefusalCode,
    Relation,
    UpstreamContractError,
)
from sandbox.dialect import UnknownCall

from gongji_shandong.adapter import ShandongAdapter
from gongji_shandong.people import roster
from gongji_shandong.sandbox import DIALECT, ERRORS, create_app

BASE = "http://shandong.test"
PEOPLE = {p["key"]: p for p in roster()["people"]}
ME, FATHER = PEOPLE["sd_zhang_wei"], PEOPLE["sd_zhang_shan"]
Answer = Callable[[dict[str, Any]], Any]


def ask() -> BindRequest:
    return BindRequest(ME["certNo"], FATHER["certNo"], FATHER["name"], Relation.PARENT, True)


@pytest.fixture
async def stand_in() -> AsyncIterator[tuple[ShandongAdapter, list[Answer]]]:
    """An adapter whose province answers with the next of the answers given (each made
    from the request's JSON-RPC message)."""
    answers: list[Answer] = []

    def reply(request: httpx.Request) -> httpx.Response:
        message = json.loads(request.content)
        return httpx.Response(200, json=answers.pop(0)(message))

    async with (
        httpx.AsyncClient(base_url=BASE) as client,
        respx.mock(base_url=BASE) as router,
    ):
        router.post("/jsonrpc").mock(side_effect=reply)
        yield ShandongAdapter(client, guard=Guard(retries=0)), answers


def error(code: int, *, same_id: bool = True) -> Answer:
    return lambda m: {
        "jsonrpc": "2.0",
        "id": m["id"] if same_id else None,
        "error": {"code": code, "message": "x"},
    }


@pytest.mark.parametrize(
    "answer",
    [
        pytest.param(lambda m: {"jsonrpc": "2.0", "id": "another", "result": []}, id="another-id"),
        pytest.param(lambda m: {"jsonrpc": "1.0", "id": m["id"], "result": []}, id="version"),
        pytest.param(lambda m: {"id": m["id"], "result": []}, id="no-version"),
        pytest.param(lambda m: {"jsonrpc": "2.0", "result": []}, id="no-id"),
        pytest.param(lambda m: {"jsonrpc": "2.0", "id": m["id"]}, id="neither"),
        pytest.param(
            lambda m: {"jsonrpc": "2.0", "id": m["id"], "result": [], "error": {"code": 1}},
            id="both",
        ),
        pytest.param(lambda m: [{"jsonrpc": "2.0", "id": m["id"], "result": []}], id="a-batch"),
        pytest.param(
            lambda m: {"jsonrpc": "2.0", "id": m["id"], "error": {"code": "2005"}},
            id="code-not-an-integer",
        ),
        pytest.param(
            lambda m: {"jsonrpc": "2.0", "id": m["id"], "result": {"persons": []}},
            id="a-result-of-another-shape",
        ),
        pytest.param(error(-32601), id="no-such-method"),
        pytest.param(error(-32009), id="request-id-reused"),
        pytest.param(error(-32602, same_id=False), id="invalid-params-without-its-id"),
        pytest.param(error(2005), id="a-refusal-answering-a-read"),
    ],
)
async def test_an_answer_that_is_not_one_to_this_request_is_a_contract_error(
    stand_in: tuple[ShandongAdapter, list[Answer]], answer: Answer
) -> None:
    adapter, answers = stand_in
    answers.append(answer)
    with pytest.raises(UpstreamContractError) as caught:
        await adapter.find_persons([ME["certNo"]])
    assert caught.value.reached is True
    assert caught.value.province == "37"


@pytest.mark.parametrize(
    "answer",
    [
        pytest.param(error(-32700, same_id=False), id="parse-error"),
        pytest.param(error(-32600, same_id=False), id="invalid-request"),
        pytest.param(error(-32602), id="invalid-params"),
    ],
)
async def test_a_request_shandong_could_not_read_did_not_reach_it(
    stand_in: tuple[ShandongAdapter, list[Answer]], answer: Answer
) -> None:
    adapter, answers = stand_in
    answers.append(answer)
    with pytest.raises(UpstreamContractError) as caught:
        await adapter.bind(ask())
    assert caught.value.reached is False


async def test_each_business_code_is_the_refusal_it_means_and_no_other_is_guessed(
    stand_in: tuple[ShandongAdapter, list[Answer]],
) -> None:
    adapter, answers = stand_in
    code, _ = ERRORS["limit"]
    answers += [error(code), error(2999), error(-32000)]
    assert await adapter.bind(ask()) == Refusal(RefusalCode.BINDING_LIMIT_REACHED)
    for _ in range(2):
        with pytest.raises(UpstreamContractError):
            await adapter.bind(ask())


async def test_a_write_carries_its_request_id_in_params_and_a_fresh_json_rpc_id(
    stand_in: tuple[ShandongAdapter, list[Answer]],
) -> None:
    adapter, answers = stand_in
    seen: list[dict[str, Any]] = []

    def record(message: dict[str, Any]) -> dict[str, Any]:
        seen.append(message)
        return {"jsonrpc": "2.0", "id": message["id"], "error": {"code": 2007, "message": "重复"}}

    answers += [record, record]
    for _ in range(2):
        assert await adapter.bind(
            BindRequest(
                ME["certNo"], FATHER["certNo"], "张山", Relation.PARENT, True, request_id="R-1"
            )
        ) == Refusal(RefusalCode.DUPLICATE_BINDING)
    assert [m["method"] for m in seen] == ["binding.create"] * 2
    assert [m["params"]["requestId"] for m in seen] == ["R-1", "R-1"]
    assert seen[0]["id"] != seen[1]["id"]


def rpc(method: str, params: Any = None, **extra: Any) -> httpx.Request:
    body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": params or {}, **extra}
    return httpx.Request("POST", f"{BASE}/jsonrpc", json=body)


def test_the_dialect_tells_writes_from_reads_by_method_and_knows_no_other() -> None:
    assert DIALECT.is_write(rpc("binding.create", {"requestId": "R-9"}))
    assert DIALECT.request_id(rpc("binding.create", {"requestId": "R-9"})) == "R-9"
    assert not DIALECT.is_write(rpc("binding.list", {"requestId": "R-9"}))
    for unknown in (
        rpc("binding.delete"),
        httpx.Request("GET", f"{BASE}/jsonrpc"),
        httpx.Request("POST", f"{BASE}/jsonrpc", content=b"[]"),
        httpx.Request("POST", f"{BASE}/jsonrpc", content=b"{"),
    ):
        with pytest.raises(UnknownCall):
            DIALECT.is_write(unknown)


@pytest.fixture
async def sandbox() -> AsyncIterator[httpx.AsyncClient]:
    app = create_app()
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE) as client,
    ):
        yield client


async def test_the_sandbox_answers_json_rpc_faults_in_json_rpc(
    sandbox: httpx.AsyncClient,
) -> None:
    async def post(content: bytes) -> dict[str, Any]:
        response = await sandbox.post("/jsonrpc", content=content)
        assert response.status_code == 200
        answer: dict[str, Any] = response.json()
        assert answer["jsonrpc"] == "2.0"
        return answer

    assert (await post(b"{"))["error"]["code"] == -32700
    assert (await post(b"[]"))["error"]["code"] == -32600
    unknown = {"jsonrpc": "2.0", "id": "a", "method": "binding.delete", "params": {}}
    assert (await post(json.dumps(unknown).encode()))["error"]["code"] == -32601
    bad = {"jsonrpc": "2.0", "id": "b", "method": "person.find", "params": {"certNos": "x"}}
    assert (await post(json.dumps(bad).encode())) == {
        "jsonrpc": "2.0",
        "id": "b",
        "error": {"code": -32602, "message": "Invalid params: certNos: 'x'"},
    }


async def test_the_default_sandbox_is_seeded_with_shandongs_people(
    sandbox: httpx.AsyncClient,
) -> None:
    adapter = ShandongAdapter(sandbox)
    found = await adapter.find_persons([p["certNo"] for p in PEOPLE.values()])
    assert {p.cert_no for p in found.values()} == {
        p["certNo"] for p in PEOPLE.values() if p["insuredArea"].startswith("37")
    }
    assert isinstance(await adapter.bind(ask()), Binding)

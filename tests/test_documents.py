"""Trusted documents (`gateway.edge.documents`): in production only registered
operations run, named by ``documentId`` or Apollo's persisted-query extension; anything
else is refused with its code before what the client wrote is parsed."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from adapters.base import AdapterSettings
from gateway.edge.cli import main
from gateway.edge.documents import Manifest, Operation, document_id
from gateway.ops.config import DOCUMENTS, Settings
from tests.conftest import GraphQL, Sandboxes, gateway, province_codes
from tests.keys import AUTH

PROVINCES = "query Provinces {\n  provinces { code name }\n}\n"


@pytest.fixture
def manifest(tmp_path: Path) -> Path:
    path = tmp_path / "manifest.json"
    path.write_text(Manifest([Operation.of(PROVINCES)]).dumps(), "utf-8")
    return path


@pytest.fixture
async def production(manifest: Path) -> AsyncIterator[GraphQL]:
    boxes = Sandboxes()
    async with boxes:
        await boxes.start()
        settings = Settings(
            mode="production",
            data_dir=None,
            auth=AUTH,
            provinces={
                name: AdapterSettings(base_url=f"http://{name}") for name in boxes.transports
            },
            documents=manifest,
        )
        async with gateway(dict(boxes.transports), settings) as gql:
            yield gql


async def post(gql: GraphQL, body: dict[str, Any], **headers: str) -> Any:
    answer = await gql.client.post("/graphql", json=body, headers=headers)
    return answer.status_code, answer.json()


async def test_production_runs_a_registered_document_by_its_id(production: GraphQL) -> None:
    for named in (
        {"documentId": f"sha256:{document_id(PROVINCES)}"},
        {"documentId": document_id(PROVINCES)},
        {"extensions": {"persistedQuery": {"version": 1, "sha256Hash": document_id(PROVINCES)}}},
        {"query": PROVINCES},  # its very text: registered too
    ):
        status, body = await post(production, named)
        assert status == 200, body
        codes = [p["code"] for p in body["data"]["provinces"]]
        assert codes == sorted(province_codes())
        assert {"13", "32", "41"} <= set(codes)


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"documentId": "sha256:" + "0" * 64}, "PERSISTED_QUERY_NOT_FOUND"),
        ({"documentId": 42}, "PERSISTED_QUERY_NOT_FOUND"),
        (
            {"extensions": {"persistedQuery": {"version": 1, "sha256Hash": "f" * 64}}},
            "PERSISTED_QUERY_NOT_FOUND",
        ),
        ({"query": "{ provinces { code } }"}, "DOCUMENT_NOT_TRUSTED"),
        # not even parsed: a syntax error is never reported for it
        ({"query": "{ provinces { code "}, "DOCUMENT_NOT_TRUSTED"),
    ],
    ids=["unknown-id", "not-an-id", "unknown-hash", "free-form", "unparsed"],
)
async def test_production_refuses_what_is_not_registered_before_parsing_it(
    production: GraphQL, body: dict[str, Any], code: str
) -> None:
    status, answer = await post(production, body)
    assert status == 400
    assert "data" not in answer
    [error] = answer["errors"]
    assert error["extensions"] == {"code": code}
    status, english = await post(production, body, **{"accept-language": "en"})
    assert english["errors"][0]["message"] != error["message"]


async def test_the_sandbox_runs_free_documents_and_registered_ones(gql: GraphQL) -> None:
    assert "errors" not in await gql("{ provinces { code } }")
    registered = next(iter(Manifest.load(DOCUMENTS)))
    status, body = await post(gql, {"documentId": f"sha256:{registered.id}"})
    assert status == 200
    assert body.get("data") is not None or body["errors"][0]["extensions"]["code"] != (
        "PERSISTED_QUERY_NOT_FOUND"
    )


def test_production_without_a_manifest_does_not_start(tmp_path: Path) -> None:
    from gateway.edge.app import create_app

    settings = Settings(
        mode="production",
        data_dir=None,
        auth=AUTH,
        provinces={"hebei": AdapterSettings(base_url="http://hebei")},
        documents=tmp_path / "absent.json",
    )
    with pytest.raises(ValueError, match="gongji documents build"):
        create_app(settings)


def test_the_first_manifest_holds_what_the_docs_and_playground_show_and_validates(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["documents", "check"]) == 0
    assert "every one validates" in capsys.readouterr().out


def test_a_document_that_no_longer_validates_fails_the_check(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "manifest.json"
    stale = "query Gone {\n  provinces { nameThatWasRemoved }\n}\n"
    path.write_text(Manifest([Operation.of(PROVINCES), Operation.of(stale)]).dumps(), "utf-8")
    assert main(["documents", "check", "--manifest", str(path)]) == 1
    assert "Gone" in capsys.readouterr().err


def test_documents_are_registered_listed_and_their_ids_checked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "manifest.json"
    source = tmp_path / "me.graphql"
    source.write_text("query MyName {\n  me { name }\n}\n", "utf-8")
    assert main(["documents", "register", str(source), "--manifest", str(path)]) == 0
    assert main(["documents", "list", "--manifest", str(path)]) == 0
    listed = capsys.readouterr().out
    assert f"sha256:{document_id(source.read_text('utf-8'))}" in listed
    assert "MyName" in listed
    bad = tmp_path / "bad.graphql"
    bad.write_text("query Nope {\n  nothing\n}\n", "utf-8")
    assert main(["documents", "register", str(bad), "--manifest", str(path)]) == 1
    data = json.loads(path.read_text("utf-8"))
    data["operations"][0]["id"] = "0" * 64  # an id that is not its body's
    path.write_text(json.dumps(data), "utf-8")
    assert main(["documents", "list", "--manifest", str(path)]) == 2


async def test_the_audit_names_the_registered_document_a_request_ran(tmp_path: Path) -> None:
    from gateway.common.auth import ADMIN, mint_token
    from tests.conftest import person

    audit = "query AuditTrail {\n  auditLog(first: 5) { operation document }\n}\n"
    path = tmp_path / "manifest.json"
    path.write_text(Manifest([Operation.of(audit)]).dumps(), "utf-8")
    boxes = Sandboxes()
    async with boxes:
        await boxes.start()
        settings = Settings(data_dir=None, documents=path)
        async with gateway(dict(boxes.transports), settings) as gql:
            admin = mint_token(
                person("hb_wang_jianguo")["certNo"], gql.auth, roles=frozenset({ADMIN})
            )
            headers = {"authorization": f"Bearer {admin}"}
            await post(gql, {"documentId": f"sha256:{document_id(audit)}"}, **headers)
            await post(gql, {"query": audit}, **headers)  # the same text, sent as text
            status, body = await post(
                gql, {"documentId": f"sha256:{document_id(audit)}"}, **headers
            )
    assert status == 200, body
    assert body["data"]["auditLog"][:2] == [
        {"operation": "query", "document": None},  # sent as text
        {"operation": "query", "document": "AuditTrail"},
    ]

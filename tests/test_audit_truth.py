"""The audit log records what the gateway decided and whom it concerned, whatever the
client selected or sent alongside; and nothing the gateway keeps of a payment
password is cheaper to attack than its scrypt hash."""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

import pytest
from starlette.applications import Starlette

import gateway.state.replays
from gateway.common.auth import ADMIN, mint_token
from gateway.common.certno import check_character, mask_cert_no
from gateway.graph.kinship_schema import ACTIVATE as ACTIVATE_OPERATION
from gateway.ops.config import RateLimits, Settings
from gateway.rules.kinship import verify_password
from tests.conftest import GraphQL, person, stored

ADMIN_CERT = "11010119850101001" + check_character("11010119850101001")
AUDIT = """{ auditLog(first: 50) { seq operation fields targets channel outcome actor } }"""


async def audit(gql: GraphQL, settings: Settings) -> list[dict[str, Any]]:
    """The log, newest first (this read of it is logged after it is answered)."""
    token = mint_token(ADMIN_CERT, settings.auth, roles=frozenset({ADMIN}))
    result = await gql(AUDIT, token=token)
    assert "errors" not in result, result
    entries: list[dict[str, Any]] = result["data"]["auditLog"]
    return entries


def masked(key: str) -> str:
    return mask_cert_no(person(key)["certNo"])


def bind_input(key: str, **extra: Any) -> dict[str, Any]:
    return {
        "beneficiaryCertNo": person(key)["certNo"],
        "beneficiaryName": person(key)["name"],
        "relation": "CHILD",
        **extra,
    }


# -- the outcome: what was decided, not what was selected --------------------------------


@pytest.mark.parametrize(
    "selection",
    ["status", "__typename", "e: errors { code }", "idempotencyKey dryRun", "errors { code }"],
)
async def test_a_refused_unbind_is_logged_refused_whatever_is_selected(
    gql: GraphQL, settings: Settings, selection: str
) -> None:
    binding = (await gql.bind("hb_wang_jianguo", "hb_wang_jing", "CHILD"))["binding"]["id"]
    unbind = "mutation($id: ID!) { unbindMutualAid(bindingId: $id) { " + selection + " } }"
    # 李秀英 is not the authorizer: the gateway refuses her, FORBIDDEN
    answer = await gql(unbind, {"id": binding}, as_="hb_li_xiuying")
    assert "errors" not in answer, answer
    full = await gql(
        "mutation($id: ID!) { unbindMutualAid(bindingId: $id) { errors { code } } }",
        {"id": binding},
        as_="hb_li_xiuying",
    )
    assert full["data"]["unbindMutualAid"]["errors"] == [{"code": "FORBIDDEN"}]

    entries = await audit(gql, settings)
    assert [(e["fields"], e["outcome"], e["actor"]) for e in entries[:2]] == [
        (["unbindMutualAid"], "FORBIDDEN", masked("hb_li_xiuying")),
        (["unbindMutualAid"], "FORBIDDEN", masked("hb_li_xiuying")),
    ]
    assert entries[2]["outcome"] == "OK"  # the binding itself


async def test_each_of_two_mutations_is_judged_and_a_fault_is_logged_too(
    gql: GraphQL, settings: Settings
) -> None:
    binding = (await gql.bind("hb_wang_jianguo", "hb_wang_jing", "CHILD"))["binding"]["id"]
    both = """mutation($id: ID!, $i: BindMutualAidInput!) {
      a: unbindMutualAid(bindingId: $id) { status }
      b: bindMutualAid(input: $i) { status } }"""
    await gql(both, {"id": binding, "i": bind_input("hb_wang_lei")}, as_="hb_li_xiuying")
    anonymous = await gql(
        "mutation($id: ID!) { unbindMutualAid(bindingId: $id) { status } }", {"id": binding}
    )
    assert anonymous["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    entries = await audit(gql, settings)
    assert [(e["fields"], e["outcome"]) for e in entries[:2]] == [
        (["unbindMutualAid"], "UNAUTHENTICATED"),
        (["unbindMutualAid", "bindMutualAid"], "FORBIDDEN"),  # 李秀英 binds 王磊: OK
    ]


# -- the targets: the arguments of the fields that ran -----------------------------------


async def test_variables_the_operation_does_not_use_name_no_one(
    gql: GraphQL, settings: Settings
) -> None:
    response = await gql.client.post(
        "/graphql",
        json={
            "query": "mutation($i: BindMutualAidInput!) { bindMutualAid(input: $i) { status } }",
            "variables": {
                "i": bind_input("hb_wang_jing"),
                # sent, never declared: graphql ignores them, and so does the audit
                "junk": [person("hb_zhao_guilan")["certNo"], "HALL"],
                "more": {"certNo": person("js_liu_fang")["certNo"]},
            },
        },
        headers={"Authorization": f"Bearer {gql.token('hb_wang_jianguo')}"},
    )
    assert response.json()["data"]["bindMutualAid"]["status"] == "DONE"
    (entry, *_) = await audit(gql, settings)
    assert entry["fields"] == ["bindMutualAid"]
    assert entry["targets"] == [masked("hb_wang_jing")]
    assert entry["channel"] is None  # no channel was given to any field


async def test_a_field_that_did_not_run_names_no_one(gql: GraphQL, settings: Settings) -> None:
    document = """mutation($i: BindMutualAidInput!, $other: ID!, $no: Boolean!) {
      bindMutualAid(input: $i) { status }
      unbindMutualAid(bindingId: $other, channel: HALL) @include(if: $no) { status } }"""
    variables = {
        "i": bind_input("hb_wang_jing", channel="WECHAT"),
        "other": person("hb_zhao_guilan")["certNo"],
        "no": False,
    }
    result = await gql(document, variables, as_="hb_wang_jianguo")
    assert result["data"] == {"bindMutualAid": {"status": "DONE"}}
    (entry, *_) = await audit(gql, settings)
    assert (entry["fields"], entry["targets"], entry["channel"], entry["outcome"]) == (
        ["bindMutualAid"],
        [masked("hb_wang_jing")],
        "WECHAT",
        "OK",
    )


async def test_arguments_in_fragments_and_defaults_name_their_people(
    gql: GraphQL, settings: Settings
) -> None:
    jing = person("hb_wang_jing")
    through_fragment = (
        "mutation { ...B } fragment B on Mutation { bindMutualAid(input: {"
        f' beneficiaryCertNo: "{jing["certNo"]}", beneficiaryName: "{jing["name"]}",'
        " relation: CHILD, channel: APP }) { status } }"
    )
    assert "errors" not in await gql(through_fragment, as_="hb_wang_jianguo")
    by_default = (
        f'query($c: String = "{person("hb_wang_lei")["certNo"]}")'
        " { mutualAidDiagnosis(relativeCertNo: $c) { works } }"
    )
    assert "errors" not in await gql(by_default, as_="hb_wang_jianguo")
    diagnosis, binding, *_ = await audit(gql, settings)
    assert (binding["targets"], binding["channel"]) == ([masked("hb_wang_jing")], "APP")
    assert diagnosis["targets"] == [masked("hb_wang_lei")]


async def test_a_request_refused_before_it_ran_names_what_its_operation_names(
    gql: GraphQL, settings: Settings
) -> None:
    refused = await gql(
        "mutation($i: BindMutualAidInput!) { bindMutualAid(input: $i) { nosuch } }",
        {"i": bind_input("hb_wang_jing"), "junk": person("hb_zhao_guilan")["certNo"]},
        as_="hb_wang_jianguo",
    )
    assert refused["errors"][0]["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"
    (entry, *_) = await audit(gql, settings)
    assert (entry["fields"], entry["targets"], entry["outcome"]) == (
        ["bindMutualAid"],
        [masked("hb_wang_jing")],
        "GRAPHQL_VALIDATION_FAILED",
    )


# -- the payment password: nothing kept of it but its scrypt hash ------------------------

PASSWORD = "285714"
ACTIVATE = """mutation($id: ID!, $p: String!, $k: String) {
  activateKinshipMember(memberId: $id, paymentPassword: $p, idempotencyKey: $k) {
    link { id status } errors { code field } idempotencyKey } }"""


async def approved_link(gql: GraphQL) -> str:
    """王浩, added by 王建国 and consenting: the link's id, APPROVED."""
    hao = person("hb_wang_hao")
    added = await gql(
        "mutation($i: AddKinshipMemberInput!) { addKinshipMember(input: $i)"
        " { link { id status } errors { code } } }",
        {
            "i": {
                "memberCertNo": hao["certNo"],
                "memberName": hao["name"],
                "relation": "CHILD",
                "channel": "APP",
            }
        },
        as_="hb_wang_jianguo",
    )
    link: dict[str, Any] = added["data"]["addKinshipMember"]["link"]
    consented = await gql(
        "mutation($id: ID!) { respondToKinshipRequest(requestId: $id, accept: true)"
        " { link { status } } }",
        {"id": link["id"]},
        as_="hb_wang_hao",
    )
    assert consented["data"]["respondToKinshipRequest"]["link"]["status"] == "APPROVED"
    return str(link["id"])


def fast_derivations(password: str, keys: list[bytes]) -> set[str]:
    """What an attacker computes a million times a second per candidate password: plain
    hashes, and HMACs under every key the gateway holds, as hex."""
    found = set()
    for text in (password, "idempotency|" + password):
        found.add(hashlib.sha256(text.encode()).hexdigest())
        for key in keys:
            found.add(hmac.new(key, text.encode(), "sha256").hexdigest())
    return found


async def dump(app: Starlette) -> list[tuple[str, str, str]]:
    """Every column value of every row of every table: (table, column, value as text)."""
    store = app.state.services.store
    if store.dialect == "sqlite":
        listed = await stored(
            app,
            "SELECT m.name, c.name FROM sqlite_master m, pragma_table_info(m.name) c"
            " WHERE m.type = 'table'",
        )
    else:
        listed = await stored(
            app,
            "SELECT table_name, column_name FROM information_schema.columns"
            " WHERE table_schema = current_schema()",
        )
    tables: dict[str, list[str]] = {}
    for table, column in listed:
        tables.setdefault(table, []).append(column)
    values = []
    async with store.transaction() as db:
        for table, columns in tables.items():
            chosen = ", ".join(f'"{c}"' for c in columns)
            for row in await db.fetch(f'SELECT {chosen} FROM "{table}"'):  # noqa: S608
                for column, value in zip(columns, row, strict=True):
                    text = value.hex() if isinstance(value, bytes) else str(value)
                    values.append((table, column, text))
    return values


async def test_nothing_kept_of_an_activation_yields_the_password_to_a_fast_hash(
    gql: GraphQL, app: Starlette, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    fingerprints: list[tuple[str, dict[str, Any]]] = []
    real = gateway.state.replays.fingerprint

    def spied(operation: str, request: Any) -> str:
        fingerprints.append((operation, dict(request)))
        return real(operation, request)

    monkeypatch.setattr(gateway.state.replays, "fingerprint", spied)
    link_id = await approved_link(gql)
    done = await gql(ACTIVATE, {"id": link_id, "p": PASSWORD, "k": "act"}, as_="hb_wang_jianguo")
    assert done["data"]["activateKinshipMember"]["link"]["status"] == "ACTIVE"

    secret = settings.auth.secret.encode()
    voucher_key = hmac.new(secret, b"gongji kinship voucher", hashlib.sha256).hexdigest()
    derived = fast_derivations(PASSWORD, [secret, voucher_key.encode()])
    # the fingerprints of any request naming the link with one of them in it
    (operation, request) = next(f for f in fingerprints if f[0] == ACTIVATE_OPERATION)
    shaped = {
        real(operation, {**request, field: d})
        for d in derived | {PASSWORD}
        for field in ("password", "paymentPassword")
    }
    stored = await dump(app)
    hashes = [v for t, c, v in stored if (t, c) == ("kinship_link", "password_hash") and v]
    assert len(hashes) == 1
    assert hashes[0].startswith("scrypt$16384$8$1$")
    for table, column, value in stored:
        if (table, column) == ("kinship_link", "password_hash"):
            continue
        assert value != PASSWORD, (table, column)
        for secretish in derived | shaped:
            assert secretish not in value, (table, column)
    # what the request's fingerprint covers says nothing of the password
    assert json.dumps(request).find(PASSWORD) < 0
    assert not set(json.dumps(request).split('"')) & derived


async def test_the_same_key_with_another_password_replays_and_learns_nothing(
    gql: GraphQL, app: Starlette, monkeypatch: pytest.MonkeyPatch
) -> None:
    fingerprints: list[str] = []
    real = gateway.state.replays.fingerprint

    def spied(operation: str, request: Any) -> str:
        value = real(operation, request)
        if operation == ACTIVATE_OPERATION:
            fingerprints.append(value)
        return value

    monkeypatch.setattr(gateway.state.replays, "fingerprint", spied)
    link_id = await approved_link(gql)
    first = await gql(ACTIVATE, {"id": link_id, "p": PASSWORD, "k": "act"}, as_="hb_wang_jianguo")

    async def replay_rows() -> list[Any]:
        return await stored(app, "SELECT * FROM replay ORDER BY scope, idempotency_key")

    kept = await replay_rows()
    answers = [
        await gql(ACTIVATE, {"id": link_id, "p": other, "k": "act"}, as_="hb_wang_jianguo")
        for other in ("428613", PASSWORD, "975310")
    ]
    # whatever the password, the same answer: the first outcome, never a second activation
    assert all(a == first for a in answers), answers
    assert first["data"]["activateKinshipMember"]["link"]["status"] == "ACTIVE"
    assert len(set(fingerprints)) == 1  # the password is not part of the request's identity
    assert await replay_rows() == kept
    ((kept_hash,),) = await stored(
        app, "SELECT password_hash FROM kinship_link WHERE status = 'ACTIVE'"
    )
    assert verify_password(PASSWORD, kept_hash)


async def test_a_malformed_password_keeps_nothing_so_a_corrected_one_may_follow(
    gql: GraphQL, app: Starlette
) -> None:
    link_id = await approved_link(gql)
    weak = await gql(ACTIVATE, {"id": link_id, "p": "111111", "k": "act"}, as_="hb_wang_jianguo")
    assert weak["data"]["activateKinshipMember"]["errors"] == [
        {"code": "INVALID_PAYMENT_PASSWORD", "field": "paymentPassword"}
    ]
    fixed = await gql(ACTIVATE, {"id": link_id, "p": "428613", "k": "act"}, as_="hb_wang_jianguo")
    assert fixed["data"]["activateKinshipMember"]["link"]["status"] == "ACTIVE"


async def test_rows_an_earlier_version_kept_of_activations_are_dropped(
    gql: GraphQL, app: Starlette
) -> None:
    legacy = gateway.state.replays.fingerprint(
        "ACTIVATE_KINSHIP_MEMBER", {"link": "l", "password": "a keyed hash of six digits"}
    )
    await stored(
        app,
        "INSERT INTO replay (scope, idempotency_key, operation, fingerprint, outcome, at)"
        " VALUES ('130102197603150016', 'old', 'ACTIVATE_KINSHIP_MEMBER', ?, '{}', '')",
        (legacy,),
    )
    await approved_link(gql)  # the registry's first write of this process
    rows = await stored(app, "SELECT operation, fingerprint FROM replay")
    assert ("ACTIVATE_KINSHIP_MEMBER", legacy) not in rows
    assert {r[0] for r in rows} == {"ADD_KINSHIP_MEMBER", "RESPOND_TO_KINSHIP_REQUEST"}


class TestRateLimited:
    @pytest.fixture
    def settings(self) -> Settings:
        return Settings(data_dir=None, limits=RateLimits(per_subject="2/minute"))

    async def test_a_mutation_refused_for_its_rate_is_logged_with_whom_it_named(
        self, gql: GraphQL, settings: Settings
    ) -> None:
        bind = "mutation($i: BindMutualAidInput!) { bindMutualAid(input: $i) { status } }"
        given = bind_input("hb_wang_jing", dryRun=True)
        for _ in range(2):
            assert "errors" not in await gql(bind, {"i": given}, as_="hb_wang_jianguo")
        limited = await gql(bind, {"i": given}, as_="hb_wang_jianguo")
        assert limited["errors"][0]["extensions"]["code"] == "RATE_LIMITED"
        entries = await audit(gql, settings)
        assert [(e["fields"], e["targets"], e["outcome"]) for e in entries[:3]] == [
            (["bindMutualAid"], [masked("hb_wang_jing")], "RATE_LIMITED"),
            (["bindMutualAid"], [masked("hb_wang_jing")], "OK"),
            (["bindMutualAid"], [masked("hb_wang_jing")], "OK"),
        ]
        assert entries[0]["actor"] == masked("hb_wang_jianguo")
        # and counted as refused for its rate
        metrics = (await gql.client.get("/metrics")).text
        assert 'gongji_graphql_requests_total{operation="mutation",outcome="RATE_LIMITED"} 1.0' in (
            metrics
        )

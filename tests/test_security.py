"""Security: request limits, rate limits, and what production hides."""

from __future__ import annotations

from typing import Any

import jwt
import pytest

from adapters.base import AdapterSettings
from gateway.common.auth import ADMIN, Institution, mint_token
from gateway.common.certno import check_character
from gateway.graph.schema import build_schema
from gateway.graph.shape import Limits
from gateway.ops.config import RateLimits, Settings
from tests.conftest import GraphQL, Sandboxes, gateway, person
from tests.keys import AUTH


def code(result: dict[str, Any]) -> str:
    extensions: dict[str, Any] = result["errors"][0]["extensions"]
    return str(extensions["code"])


async def test_a_query_too_deep_is_refused() -> None:
    # no valid query of the graph reaches the limit of 10: shown with a limit of 4
    shallow = build_schema(limits=Limits(depth=4))
    deep = "{ me { family { kinship { iAdded { adder { name } } } } } }"
    result = await shallow.execute(deep, context_value=None)
    assert result.errors is not None
    assert result.errors[0].extensions == {"code": "QUERY_TOO_DEEP"}


async def test_too_many_aliases_are_refused(gql: GraphQL) -> None:
    many = "{ " + " ".join(f"p{i}: provinces {{ code }}" for i in range(21)) + " }"
    assert code(await gql(many)) == "TOO_MANY_ALIASES"
    twenty = "{ " + " ".join(f"p{i}: provinces {{ code }}" for i in range(20)) + " }"
    assert "errors" not in await gql(twenty)


async def test_too_many_tokens_are_refused(gql: GraphQL) -> None:
    huge = "{ provinces { " + "code " * 800 + "} }"
    assert code(await gql(huge)) == "TOO_MANY_TOKENS"


async def test_syntax_and_validation_errors_are_coded(gql: GraphQL) -> None:
    assert code(await gql("{ provinces { code }")) == "GRAPHQL_PARSE_FAILED"
    wrong = await gql("{ provinse { code } }")
    assert code(wrong) == "GRAPHQL_VALIDATION_FAILED"
    assert "Did you mean" in wrong["errors"][0]["message"]  # the sandbox helps


async def test_production_does_not_map_the_schema_through_suggestions() -> None:
    sandboxes = Sandboxes()
    async with sandboxes:
        await sandboxes.start()
        production = Settings(
            mode="production",
            data_dir=None,
            auth=AUTH,
            provinces={
                name: AdapterSettings(base_url=f"http://{name}") for name in sandboxes.transports
            },
            free_documents=True,  # a document not registered is refused unread otherwise
        )
        async with gateway(dict(sandboxes.transports), production) as gql:
            wrong = await gql("{ provinse { code } }")
    assert code(wrong) == "GRAPHQL_VALIDATION_FAILED"
    assert "Did you mean" not in wrong["errors"][0]["message"]


class TestRateLimits:
    @pytest.fixture
    def settings(self) -> Settings:
        return Settings(data_dir=None, limits=RateLimits(per_subject="3/minute"))

    async def test_mutations_and_the_diagnosis_are_limited_per_subject(self, gql: GraphQL) -> None:
        bind = (
            "mutation($i: BindMutualAidInput!)"
            " { bindMutualAid(input: $i) { errors { code field } } }"
        )
        given = {
            "beneficiaryCertNo": person("hb_li_fu")["certNo"],
            "beneficiaryName": person("hb_li_fu")["name"],
            "relation": "PARENT",
            "dryRun": True,
        }
        for _ in range(3):
            assert "errors" not in await gql(bind, {"i": given}, as_="hb_wang_jianguo")
        limited = await gql(bind, {"i": given}, as_="hb_wang_jianguo")
        assert code(limited) == "RATE_LIMITED"
        assert 0 < limited["errors"][0]["extensions"]["retryAfter"] <= 60
        assert limited["data"] is None
        # plain reads are not limited; the diagnosis is
        assert "errors" not in await gql("{ me { name } }", as_="hb_wang_jianguo")
        diagnose = "query($c: String!) { mutualAidDiagnosis(relativeCertNo: $c) { works } }"
        again = await gql(diagnose, {"c": person("hb_wang_jing")["certNo"]}, as_="hb_wang_jianguo")
        assert code(again) == "RATE_LIMITED"
        # someone else is not held back by him
        assert "errors" not in await gql(bind, {"i": given}, as_="hb_li_xiuying")


AUDIT = """{ auditLog(first: 20) { seq actor roles operation fields targets channel outcome
                                requestId client } }"""


async def test_the_audit_log_records_mutations_and_reads_of_others_for_admins(
    gql: GraphQL, settings: Settings
) -> None:
    jing = person("hb_wang_jing")
    bound = await gql(
        "mutation($i: BindMutualAidInput!) { bindMutualAid(input: $i) { errors { code field } } }",
        {
            "i": {
                "beneficiaryCertNo": jing["certNo"],
                "beneficiaryName": jing["name"],
                "relation": "CHILD",
                "channel": "WECHAT",
            }
        },
        as_="hb_wang_jianguo",
    )
    assert bound["data"]["bindMutualAid"]["errors"] == []
    refused = await gql(
        'query { mutualAidDiagnosis(relativeCertNo: "130102194905050017") { works } }',
        as_="hb_wang_jianguo",
    )
    assert "errors" not in refused
    await gql("{ provinces { code } }")  # nobody's data: not audited
    await gql("{ me { family { relation } } }", as_="hb_wang_lei")

    admin = mint_token(
        "11010119850101001" + check_character("11010119850101001"),
        settings.auth,
        roles=frozenset({ADMIN}),
    )
    entries = (await gql(AUDIT, token=admin))["data"]["auditLog"]
    assert [(e["operation"], e["fields"]) for e in entries] == [
        ("query", ["me"]),
        ("query", ["mutualAidDiagnosis"]),
        ("mutation", ["bindMutualAid"]),
    ]
    family, diagnosis, binding = entries
    assert binding["actor"] == "130102********0016"  # masked, like every ID number
    assert binding["targets"] == ["130102********0022"]
    assert (binding["channel"], binding["outcome"], binding["roles"]) == ("WECHAT", "OK", [])
    assert diagnosis["targets"] == ["130102********0017"]
    assert family["actor"] == "130102********0017"
    assert all(e["requestId"] for e in entries)
    # the reading of the log is itself on it; nobody but an admin reads it
    forbidden = await gql(AUDIT, as_="hb_wang_jianguo")
    assert code(forbidden) == "FORBIDDEN"
    latest = (await gql(AUDIT, token=admin))["data"]["auditLog"]
    assert [(e["fields"], e["outcome"], e["actor"]) for e in latest[:2]] == [
        (["auditLog"], "FORBIDDEN", "130102********0016"),
        (["auditLog"], "OK", "110101********0017"),
    ]


# -- every role against every operation it must not perform ------------------------------

ROLE_CERT = "11010119800505001X"  # staff: the same person's ID number under each role
OPERATIONS: dict[str, tuple[str, dict[str, Any], str]] = {
    # name: (document, variables, who may: INSURED or a role)
    "me": ("{ me { name } }", {}, "INSURED"),
    "bindMutualAid": (
        "mutation($i: BindMutualAidInput!) { bindMutualAid(input: $i) { errors { code field } } }",
        {
            "i": {
                "beneficiaryCertNo": "130102200106300022",
                "beneficiaryName": "王静",
                "relation": "CHILD",
            }
        },
        "INSURED",
    ),
    "unbindMutualAid": (
        'mutation { unbindMutualAid(bindingId: "x") { errors { code field } } }',
        {},
        "INSURED",
    ),
    "addKinshipMember": (
        "mutation($i: AddKinshipMemberInput!)"
        " { addKinshipMember(input: $i) { errors { code field } } }",
        {
            "i": {
                "memberCertNo": "130102200106300022",
                "memberName": "王静",
                "relation": "CHILD",
                "channel": "APP",
            }
        },
        "INSURED",
    ),
    "kinshipVoucher": (
        'mutation { kinshipVoucher(memberId: "x") { errors { code field } } }',
        {},
        "INSURED",
    ),
    "mutualAidDiagnosis": (
        'query { mutualAidDiagnosis(relativeCertNo: "130102200106300022") { works } }',
        {},
        "INSURED",
    ),
    "settle": (
        "mutation($i: SettleInput!) { settle(input: $i) { errors { code field } } }",
        {
            "i": {
                "patientCertNo": "130102200106300022",
                "medicalType": "OUTPATIENT",
                "totalAmount": "10.00",
                "fundPaid": "0",
                "idempotencyKey": "matrix",
            }
        },
        "INSTITUTION",
    ),
    "reverseSettlement": (
        'mutation { reverseSettlement(settlementId: "x", reason: "r") { errors { code field } } }',
        {},
        "INSTITUTION",
    ),
    "reviewKinshipRequest": (
        'mutation { reviewKinshipRequest(requestId: "x", approve: true)'
        " { errors { code field } } }",
        {},
        "REVIEWER",
    ),
    "kinshipReviewQueue": ("{ kinshipReviewQueue { id } }", {}, "REVIEWER"),
    "auditLog": ("{ auditLog { seq } }", {}, "ADMIN"),
    "respondToMutualAidBinding": (
        'mutation { respondToMutualAidBinding(bindingId: "x", accept: true)'
        " { errors { code field } } }",
        {},
        "INSURED",
    ),
    "respondToKinshipRequest": (
        'mutation { respondToKinshipRequest(requestId: "x", accept: true)'
        " { errors { code field } } }",
        {},
        "INSURED",
    ),
    "activateKinshipMember": (
        'mutation { activateKinshipMember(memberId: "x", paymentPassword: "285714")'
        " { errors { code field } } }",
        {},
        "INSURED",
    ),
    "removeKinshipMember": (
        'mutation { removeKinshipMember(memberId: "x") { errors { code field } } }',
        {},
        "INSURED",
    ),
    "kinshipUsage": ('{ kinshipUsage(memberId: "x") { errors { code field } } }', {}, "INSURED"),
    "family": ("{ me { family { relation } } }", {}, "INSURED"),
}


def denial(result: dict[str, Any]) -> str | None:
    """A refusal of the caller as such (a fault, or a payload's FORBIDDEN that names no
    input: a FORBIDDEN on an id is about the object, "no such one or not yours")."""
    for error in result.get("errors") or []:
        return str(error["extensions"]["code"])
    for payload in (result.get("data") or {}).values():
        if isinstance(payload, dict):
            for error in payload.get("errors") or []:
                if error["code"] == "FORBIDDEN" and error.get("field") is None:
                    return "FORBIDDEN"
    return None


def token_for(role: str, auth: Any) -> str | None:
    if role == "ANONYMOUS":
        return None
    if role == "INSURED":
        return mint_token("130102197603150016", auth)
    institution = Institution("H13010001", "HOSPITAL") if role == "INSTITUTION" else None
    return mint_token(ROLE_CERT, auth, roles=frozenset({role}), institution=institution)


@pytest.mark.parametrize("role", ["ANONYMOUS", "INSURED", "INSTITUTION", "REVIEWER", "ADMIN"])
@pytest.mark.parametrize("operation", sorted(OPERATIONS))
async def test_every_role_is_refused_every_operation_not_its_own(
    gql: GraphQL, settings: Settings, role: str, operation: str
) -> None:
    document, variables, allowed = OPERATIONS[operation]
    token = token_for(role, settings.auth)
    result = await gql(document, variables, token=token)
    if role == "ANONYMOUS":
        assert denial(result) == "UNAUTHENTICATED", result
    elif role == allowed:
        assert denial(result) is None, result
    else:
        assert denial(result) == "FORBIDDEN", result


async def test_a_query_too_costly_is_refused_before_it_runs(gql: GraphQL) -> None:
    page = "spendingRecords(role: AUTHORIZER, first: 100) { edges { node { amount settledAt"
    page += " patient { name certNo } payer { name certNo } status } } }"
    costly = "{ me { " + " ".join(f"r{i}: {page}" for i in range(8)) + " } }"
    result = await gql(costly, as_="hb_wang_jianguo")
    assert code(result) == "QUERY_TOO_COSTLY"
    assert result["data"] is None
    # the family screen and a page of records are well within
    cheap = "{ me { family { relative { name } mutualAid { verdict { state } } } " + page + " } }"
    assert "errors" not in await gql(cheap, as_="hb_wang_jianguo")


class TestNoWayAround:
    @pytest.fixture
    def settings(self) -> Settings:
        return Settings(data_dir=None, limits=RateLimits(per_subject="3/minute"))

    async def test_fragments_and_aliases_count_every_use(self, gql: GraphQL) -> None:
        diagnosis = 'mutualAidDiagnosis(relativeCertNo: "130102200106300022") { works }'
        through_fragment = "query { ...F } fragment F on Query { " + diagnosis + " }"
        for _ in range(3):
            assert "errors" not in await gql(through_fragment, as_="hb_wang_jianguo")
        assert code(await gql(through_fragment, as_="hb_wang_jianguo")) == "RATE_LIMITED"
        # four aliased diagnoses at once are four uses, over a limit of three
        aliased = "{ " + " ".join(f"d{i}: {diagnosis}" for i in range(4)) + " }"
        assert code(await gql(aliased, as_="hb_li_xiuying")) == "RATE_LIMITED"


async def test_the_operation_that_runs_is_the_one_audited(gql: GraphQL, settings: Settings) -> None:
    jing = person("hb_wang_jing")
    document = (
        "query Cover { provinces { code } }"
        " mutation Bind($i: BindMutualAidInput!) { bindMutualAid(input: $i) { errors { code } } }"
    )
    given = {
        "beneficiaryCertNo": jing["certNo"],
        "beneficiaryName": jing["name"],
        "relation": "CHILD",
    }
    response = await gql.client.post(
        "/graphql",
        json={"query": document, "variables": {"i": given}, "operationName": "Bind"},
        headers={"Authorization": f"Bearer {gql.token('hb_wang_jianguo')}"},
    )
    assert response.json()["data"]["bindMutualAid"]["errors"] == []
    # a refused mutation is on the log too
    refused = await gql("mutation { nosuchField }", as_="hb_wang_jianguo")
    assert code(refused) == "GRAPHQL_VALIDATION_FAILED"
    admin = mint_token(
        "11010119850101001" + check_character("11010119850101001"),
        settings.auth,
        roles=frozenset({ADMIN}),
    )
    entries = (await gql(AUDIT, token=admin))["data"]["auditLog"]
    assert [(e["fields"], e["outcome"]) for e in entries] == [
        (["nosuchField"], "GRAPHQL_VALIDATION_FAILED"),
        (["bindMutualAid"], "OK"),
    ]


async def test_queries_travel_by_post_only(gql: GraphQL) -> None:
    response = await gql.client.get(
        "/graphql", params={"query": "{ provinces { code } }"}, headers={"Accept": "*/*"}
    )
    # a client error, coded like every refusal of a request (a 500 would be a bug)
    assert response.status_code == 400
    body = response.json()
    assert "data" not in body
    assert [e["extensions"]["code"] for e in body["errors"]] == ["BAD_REQUEST"]


async def test_uploads_need_a_token_that_verifies(gql: GraphQL) -> None:
    response = await gql.client.post(
        "/graphql",
        data={"operations": "{}", "map": "{}"},
        files={"0": ("doc", b"%PDF-1.4", "application/pdf")},
        headers={"Authorization": "Bearer garbage"},
    )
    assert response.status_code == 401


async def test_one_person_whatever_the_case_of_the_check_character(
    gql: GraphQL, settings: Settings
) -> None:
    minted = mint_token("13010220121212002X", settings.auth)
    claims = jwt.decode(minted, options={"verify_signature": False})
    claims["sub"] = "13010220121212002x"
    token = jwt.encode(claims, settings.auth.secret, algorithm="HS256")
    result = await gql("{ me { certNo } }", token=token)
    assert result["data"]["me"]["certNo"] == "13010220121212002X"

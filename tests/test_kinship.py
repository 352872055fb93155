"""Kinship accounts (亲情账户) end to end, through the ASGI app, with roster people."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import gc
import hashlib
import hmac
import json
import re
import warnings
from typing import Any

import jwt
import pytest
from starlette.applications import Starlette

from gateway.common.auth import INSTITUTION, REVIEWER, Institution, mint_token
from gateway.common.certno import check_character
from gateway.common.ids import decode_id, encode_id
from gateway.ops.config import KinshipPolicy, Settings
from tests.conftest import NOWHERE, GraphQL, person, stored

VOUCHER_AUDIENCE = "gongji-kinship-voucher"
# A reviewer of the service: not in the roster, not insured anywhere we know.
REVIEWER_CERT = "11010119850101001" + check_character("11010119850101001")

FIELDS = "id status relation channel adder { name certNo } member { name certNo }"
FIELDS += " rejectionReason expectedDecision { minWorkingDays maxWorkingDays earliest latest }"
FIELDS += " documents { kind contentType size sha256 }"
LINK = f"link {{ {FIELDS} }}"
PAYLOAD = f"{{ {LINK} errors {{ code message field }} }}"

ADD = (
    f"mutation Add($input: AddKinshipMemberInput!) {{ addKinshipMember(input: $input) {PAYLOAD} }}"
)
RESPOND = (
    "mutation Respond($id: ID!, $accept: Boolean!) {"
    f" respondToKinshipRequest(requestId: $id, accept: $accept) {PAYLOAD} }}"
)
REVIEW = (
    "mutation Review($id: ID!, $approve: Boolean!, $reason: String) {"
    f" reviewKinshipRequest(requestId: $id, approve: $approve, reason: $reason) {PAYLOAD} }}"
)
ACTIVATE = (
    "mutation Activate($id: ID!, $password: String!) {"
    f" activateKinshipMember(memberId: $id, paymentPassword: $password) {PAYLOAD} }}"
)
REMOVE = f"mutation Remove($id: ID!) {{ removeKinshipMember(memberId: $id) {PAYLOAD} }}"
VOUCHER = """mutation Voucher($id: ID!, $area: String) {
  kinshipVoucher(memberId: $id, treatmentArea: $area) {
    voucher { code expiresAt qrSvg member { name certNo } insuranceOf { name certNo }
              memberInsurance { type status } memberInsuredArea { code name } treatmentArea
              remoteTreatmentRegistrationRequired selfPayFromMutualAid
              mutualAidPayer { name certNo } notes { code message } }
    errors { code message field }
  }
}"""
USAGE = """query Usage($id: ID!) {
  kinshipUsage(memberId: $id) { uses { at treatmentArea } errors { code message field } }
}"""
QUEUE = f"{{ kinshipReviewQueue {{ {FIELDS} }} }}"
ME = f"{{ me {{ certNo kinshipMembers {{ {FIELDS} }} addedMeAsMember {{ {FIELDS} }} }} }}"

PDF = b"%PDF-1.4\n% a synthetic document\n" + b"0" * 64
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
GOOD_PASSWORD = "285714"

Payload = dict[str, Any]
File = tuple[str, bytes, str, dict[str, Any]]  # (kind, content, declared type, what it records)


def new(key: str, relation: str, *, channel: str = "APP", **extra: Any) -> dict[str, Any]:
    p = person(key)
    return {
        "memberCertNo": p["certNo"],
        "memberName": p["name"],
        "relation": relation,
        "channel": channel,
        **extra,
    }


async def add(
    gql: GraphQL, adder: str, key: str, relation: str, *, lang: str | None = None, **extra: Any
) -> Payload:
    result = await gql(ADD, {"input": new(key, relation, **extra)}, as_=adder, lang=lang)
    assert "errors" not in result, result
    payload: Payload = result["data"]["addKinshipMember"]
    return payload


async def post_upload(
    gql: GraphQL, adder: str, key: str, relation: str, files: list[File], **extra: Any
) -> dict[str, Any]:
    """``addKinshipMember`` as a GraphQL multipart request (the upload spec): the result."""
    documents = [{"kind": kind, "file": None, **recorded} for kind, _, _, recorded in files]
    given = new(key, relation, documents=documents, **extra)
    operations = {"query": ADD, "variables": {"input": given}}
    mapping = {str(i): [f"variables.input.documents.{i}.file"] for i in range(len(files))}
    response = await gql.client.post(
        "/graphql",
        data={"operations": json.dumps(operations), "map": json.dumps(mapping)},
        files={
            str(i): (f"doc{i}", content, ctype) for i, (_, content, ctype, _) in enumerate(files)
        },
        headers={"Authorization": f"Bearer {gql.token(adder)}"},
    )
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def leaked_uploads() -> list[str]:
    """Collect garbage; the server's upload files that were never closed, as warned of."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        gc.collect()
    return [
        str(w.message)
        for w in caught
        if issubclass(w.category, ResourceWarning) and "SpooledTemporaryFile" in str(w.message)
    ]


async def upload(gql: GraphQL, adder: str, key: str, relation: str, files: list[File]) -> Payload:
    """``addKinshipMember`` with uploads: the payload."""
    result = await post_upload(gql, adder, key, relation, files)
    assert "errors" not in result, result
    payload: Payload = result["data"]["addKinshipMember"]
    return payload


def recording(key: str, relation: str) -> dict[str, Any]:
    return {"recordedCertNo": person(key)["certNo"], "recordedRelation": relation}


def birth_certificate(key: str, relation: str, content: bytes = PDF) -> File:
    return ("BIRTH_CERTIFICATE", content, "application/pdf", recording(key, relation))


def code(payload: Payload) -> str | None:
    return payload["errors"][0]["code"] if payload["errors"] else None


def refusal(payload: Payload) -> tuple[str, str | None]:
    """The one refusal of a payload that has no link, as (code, field)."""
    assert payload["link"] is None, payload
    assert len(payload["errors"]) == 1, payload
    error = payload["errors"][0]
    return error["code"], error["field"]


def linked(payload: Payload, status: str) -> dict[str, Any]:
    """The link of a payload without errors, checked to have ``status``."""
    assert payload["errors"] == [], payload
    link: dict[str, Any] = payload["link"]
    assert link["status"] == status, link
    return link


def masked(key: str) -> dict[str, str]:
    """How a roster person appears to someone else."""
    p = person(key)
    name, cert = p["name"], p["certNo"]
    name = name[0] + "*" if len(name) == 2 else name[0] + "*" * (len(name) - 2) + name[-1]
    return {"name": name, "certNo": cert[:6] + "*" * 8 + cert[-4:]}


def full(key: str) -> dict[str, str]:
    return {"name": person(key)["name"], "certNo": person(key)["certNo"]}


def reviewer(gql: GraphQL) -> str:
    return mint_token(REVIEWER_CERT, gql.auth, roles=frozenset({REVIEWER}))


async def mutate(
    gql: GraphQL, query: str, field: str, variables: dict[str, Any], **kw: Any
) -> Payload:
    result = await gql(query, variables, **kw)
    assert "errors" not in result, result
    payload: Payload = result["data"][field]
    return payload


async def respond(gql: GraphQL, actor: str, link_id: str, *, accept: bool = True) -> Payload:
    variables = {"id": link_id, "accept": accept}
    return await mutate(gql, RESPOND, "respondToKinshipRequest", variables, as_=actor)


async def review(
    gql: GraphQL, link_id: str, *, approve: bool, reason: str | None = None, token: str | None
) -> Payload:
    variables = {"id": link_id, "approve": approve, "reason": reason}
    return await mutate(gql, REVIEW, "reviewKinshipRequest", variables, token=token)


async def activate(
    gql: GraphQL, actor: str, link_id: str, password: str = GOOD_PASSWORD
) -> Payload:
    variables = {"id": link_id, "password": password}
    return await mutate(gql, ACTIVATE, "activateKinshipMember", variables, as_=actor)


async def remove(gql: GraphQL, actor: str, link_id: str) -> Payload:
    return await mutate(gql, REMOVE, "removeKinshipMember", {"id": link_id}, as_=actor)


async def voucher(gql: GraphQL, actor: str, link_id: str, area: str | None = None) -> Payload:
    variables = {"id": link_id, "area": area}
    return await mutate(gql, VOUCHER, "kinshipVoucher", variables, as_=actor)


async def usage(gql: GraphQL, actor: str, link_id: str) -> Payload:
    return await mutate(gql, USAGE, "kinshipUsage", {"id": link_id}, as_=actor)


async def bind_for_mutual_aid(gql: GraphQL, authorizer: str, child: str) -> Payload:
    """``bindMutualAid``: the authorizer lets their child spend their personal account."""
    return await gql.bind(authorizer, child, "CHILD")


async def me(gql: GraphQL, key: str) -> dict[str, Any]:
    result = await gql(ME, as_=key)
    assert "errors" not in result, result
    found: dict[str, Any] = result["data"]["me"]
    return found


async def consented(gql: GraphQL, adder: str, key: str, relation: str) -> dict[str, Any]:
    """An adult member added and consenting: the link, APPROVED."""
    link = linked(await add(gql, adder, key, relation), "PENDING_CONSENT")
    return linked(await respond(gql, key, link["id"]), "APPROVED")


async def active(gql: GraphQL, adder: str, key: str, relation: str) -> dict[str, Any]:
    link = await consented(gql, adder, key, relation)
    return linked(await activate(gql, adder, link["id"]), "ACTIVE")


# -- the limits: 5 members per adder, 2 adders per member --------------------------------

WANG_ADULTS = (
    ("hb_li_xiuying", "SPOUSE"),
    ("hb_wang_deming", "PARENT"),
    ("hb_zhao_guilan", "PARENT"),
    ("hb_wang_lei", "CHILD"),
    ("hb_wang_jing", "CHILD"),
)


async def test_an_adders_sixth_member_is_refused_pending_requests_included(gql: GraphQL) -> None:
    links = [
        linked(await add(gql, "hb_wang_jianguo", key, relation), "PENDING_CONSENT")
        for key, relation in WANG_ADULTS
    ]
    sixth = await add(gql, "hb_wang_jianguo", "hb_wang_peng", "CHILD")
    assert refusal(sixth) == ("KINSHIP_ADDER_LIMIT_REACHED", "memberCertNo")

    linked(await remove(gql, "hb_wang_jianguo", links[0]["id"]), "REMOVED")
    again = await add(gql, "hb_wang_jianguo", "hb_wang_peng", "CHILD")
    assert linked(again, "PENDING_CONSENT")["member"] == masked("hb_wang_peng")


async def test_approved_and_active_members_count_toward_the_adder_limit(gql: GraphQL) -> None:
    await active(gql, "hb_wang_jianguo", "hb_li_xiuying", "SPOUSE")
    await consented(gql, "hb_wang_jianguo", "hb_wang_deming", "PARENT")
    for key, relation in WANG_ADULTS[2:]:
        linked(await add(gql, "hb_wang_jianguo", key, relation), "PENDING_CONSENT")
    sixth = await add(gql, "hb_wang_jianguo", "hb_wang_peng", "CHILD")
    assert refusal(sixth) == ("KINSHIP_ADDER_LIMIT_REACHED", "memberCertNo")


async def test_a_members_third_adder_is_refused(gql: GraphQL) -> None:
    linked(await add(gql, "hb_wang_jianguo", "hb_wang_deming", "PARENT"), "PENDING_CONSENT")
    linked(await add(gql, "hb_wang_lei", "hb_wang_deming", "GRANDPARENT"), "PENDING_CONSENT")
    third = await add(gql, "hb_wang_jing", "hb_wang_deming", "GRANDPARENT")
    assert refusal(third) == ("KINSHIP_MEMBER_LIMIT_REACHED", "memberCertNo")


async def test_adding_the_same_relative_twice_is_refused(gql: GraphQL) -> None:
    linked(await add(gql, "hb_wang_jianguo", "hb_wang_lei", "CHILD"), "PENDING_CONSENT")
    twice = await add(gql, "hb_wang_jianguo", "hb_wang_lei", "CHILD", channel="WECHAT")
    assert refusal(twice) == ("KINSHIP_ALREADY_ADDED", "memberCertNo")


async def test_concurrent_adds_never_pass_the_adder_limit(gql: GraphQL) -> None:
    family = [*WANG_ADULTS, ("hb_wang_peng", "CHILD"), ("hb_wang_fang", "CHILD")]
    payloads = await asyncio.gather(
        *(add(gql, "hb_wang_jianguo", key, relation) for key, relation in family)
    )
    added = [p for p in payloads if p["link"] is not None]
    assert len(added) == 5
    assert (
        sorted(refusal(p) for p in payloads if p["link"] is None)
        == [("KINSHIP_ADDER_LIMIT_REACHED", "memberCertNo")] * 2
    )
    live = (await me(gql, "hb_wang_jianguo"))["kinshipMembers"]
    assert len(live) == 5
    assert {link["status"] for link in live} == {"PENDING_CONSENT"}


async def test_concurrent_adders_never_pass_the_member_limit(gql: GraphQL) -> None:
    adders = [
        ("hb_wang_jianguo", "PARENT"),
        ("hb_wang_lei", "GRANDPARENT"),
        ("hb_wang_jing", "GRANDPARENT"),
        ("hb_wang_peng", "GRANDPARENT"),
    ]
    payloads = await asyncio.gather(
        *(add(gql, adder, "hb_wang_deming", relation) for adder, relation in adders)
    )
    assert sum(p["link"] is not None for p in payloads) == 2
    assert [refusal(p) for p in payloads if p["link"] is None] == [
        ("KINSHIP_MEMBER_LIMIT_REACHED", "memberCertNo")
    ] * 2
    assert len((await me(gql, "hb_wang_deming"))["addedMeAsMember"]) == 2


# -- a minor (16 or younger): documents, and review when they disagree -------------------


async def test_a_minor_without_documents_is_refused(gql: GraphQL) -> None:
    payload = await add(gql, "hb_wang_jianguo", "hb_wang_yue", "CHILD")  # 王悦, 13
    assert refusal(payload) == ("DOCUMENT_REQUIRED", "documents")


async def test_a_sixteen_year_old_still_needs_documents(gql: GraphQL) -> None:
    payload = await add(gql, "js_chen_zhiqiang", "js_chen_chen", "CHILD")  # 陈晨, 16
    assert refusal(payload) == ("DOCUMENT_REQUIRED", "documents")


async def test_a_matching_birth_certificate_approves_a_minor_at_once(gql: GraphQL) -> None:
    document = birth_certificate("hb_wang_yue", "CHILD")
    link = linked(
        await upload(gql, "hb_wang_jianguo", "hb_wang_yue", "CHILD", [document]), "APPROVED"
    )
    assert link["expectedDecision"] is None
    assert link["adder"] == full("hb_wang_jianguo")
    assert link["member"] == masked("hb_wang_yue")
    assert link["documents"] == [
        {
            "kind": "BIRTH_CERTIFICATE",
            "contentType": "application/pdf",
            "size": len(PDF),
            "sha256": hashlib.sha256(PDF).hexdigest(),
        }
    ]
    # a minor does not answer for themselves
    assert refusal(await respond(gql, "hb_wang_yue", link["id"])) == (
        "INVALID_KINSHIP_STATE",
        "requestId",
    )


async def test_a_document_that_records_something_else_goes_to_review(gql: GraphQL) -> None:
    document = birth_certificate("hb_wang_yue", "SIBLING")
    payload = await upload(gql, "hb_wang_jianguo", "hb_wang_yue", "CHILD", [document])
    link = linked(payload, "PENDING_REVIEW")
    expected = link["expectedDecision"]
    assert (expected["minWorkingDays"], expected["maxWorkingDays"]) == (1, 2)
    earliest = dt.date.fromisoformat(expected["earliest"])
    latest = dt.date.fromisoformat(expected["latest"])
    today = dt.date.today()
    assert today <= earliest <= latest <= today + dt.timedelta(days=5)
    assert earliest.weekday() < 5
    assert latest.weekday() < 5
    assert earliest < latest  # two working days are later than one


async def test_a_document_of_someone_else_goes_to_review(gql: GraphQL) -> None:
    document = birth_certificate("hb_wang_fang", "CHILD")  # 王芳's, not 王悦's
    payload = await upload(gql, "hb_wang_jianguo", "hb_wang_yue", "CHILD", [document])
    linked(payload, "PENDING_REVIEW")


async def test_a_reviewer_rejects_only_with_a_reason_the_adder_then_sees(gql: GraphQL) -> None:
    document = birth_certificate("hb_wang_yue", "SIBLING")
    payload = await upload(gql, "hb_wang_jianguo", "hb_wang_yue", "CHILD", [document])
    link_id = linked(payload, "PENDING_REVIEW")["id"]
    token = reviewer(gql)

    queue = (await gql(QUEUE, token=token))["data"]["kinshipReviewQueue"]
    assert [(link["id"], link["status"]) for link in queue] == [(link_id, "PENDING_REVIEW")]
    assert queue[0]["member"] == {"name": "王悦", "certNo": person("hb_wang_yue")["certNo"]}

    for blank in (None, "", "   "):
        no_reason = await review(gql, link_id, approve=False, reason=blank, token=token)
        assert refusal(no_reason) == ("REASON_REQUIRED", "reason")

    reason = "出生医学证明记载的关系与申请不符"
    rejected = linked(
        await review(gql, link_id, approve=False, reason=reason, token=token), "REJECTED"
    )
    assert rejected["rejectionReason"] == reason
    assert rejected["expectedDecision"] is None

    seen = (await me(gql, "hb_wang_jianguo"))["kinshipMembers"]
    assert [(link["id"], link["status"], link["rejectionReason"]) for link in seen] == [
        (link_id, "REJECTED", reason)
    ]
    assert (await gql(QUEUE, token=token))["data"]["kinshipReviewQueue"] == []
    again = await review(gql, link_id, approve=True, token=token)
    assert refusal(again) == ("INVALID_KINSHIP_STATE", "requestId")
    # a rejected request no longer takes a place: the adder may try again, but a
    # reviewer sees it this time, however well the new document matches
    retry = await upload(
        gql, "hb_wang_jianguo", "hb_wang_yue", "CHILD", [birth_certificate("hb_wang_yue", "CHILD")]
    )
    linked(retry, "PENDING_REVIEW")


async def test_a_reviewer_may_not_decide_their_own_request(
    gql: GraphQL, settings: Settings
) -> None:
    payload = await upload(
        gql,
        "hb_wang_jianguo",
        "hb_wang_yue",
        "CHILD",
        [birth_certificate("hb_wang_yue", "SIBLING")],
    )
    link_id = linked(payload, "PENDING_REVIEW")["id"]
    for key in ("hb_wang_jianguo", "hb_wang_yue"):
        own = mint_token(person(key)["certNo"], settings.auth, roles=frozenset({REVIEWER}))
        decided = await review(gql, link_id, approve=True, token=own)
        assert refusal(decided) == ("FORBIDDEN", "requestId")


async def test_a_reviewer_approves_and_the_adder_may_activate(gql: GraphQL, app: Starlette) -> None:
    document = birth_certificate("hb_wang_yue", "SIBLING")
    payload = await upload(gql, "hb_wang_jianguo", "hb_wang_yue", "CHILD", [document])
    link_id = linked(payload, "PENDING_REVIEW")["id"]
    approved = linked(await review(gql, link_id, approve=True, token=reviewer(gql)), "APPROVED")
    assert approved["rejectionReason"] is None
    linked(await activate(gql, "hb_wang_jianguo", link_id), "ACTIVE")
    # the adder is told of the reviewer's decision (a subscription's event), once
    told = await app.state.services.events.after(person("hb_wang_jianguo")["certNo"], 0)
    assert [(e.kind.value, e.body["status"]) for e in told] == [("KINSHIP_REVIEWED", "APPROVED")]


async def test_only_a_reviewer_may_review(gql: GraphQL) -> None:
    document = birth_certificate("hb_wang_yue", "SIBLING")
    payload = await upload(gql, "hb_wang_jianguo", "hb_wang_yue", "CHILD", [document])
    link_id = linked(payload, "PENDING_REVIEW")["id"]
    for key in ("hb_wang_jianguo", "hb_wang_yue", "hb_li_xiuying"):
        token = gql.token(key)
        attempt = await review(gql, link_id, approve=True, token=token)
        assert refusal(attempt) == ("FORBIDDEN", None)  # the role, not the request

    result = await gql(QUEUE, as_="hb_wang_jianguo")
    assert result["data"] == {"kinshipReviewQueue": None}  # null at its path, nothing else lost
    assert [e["extensions"]["code"] for e in result["errors"]] == ["FORBIDDEN"]
    # and the request is still waiting, untouched
    queue = (await gql(QUEUE, token=reviewer(gql)))["data"]["kinshipReviewQueue"]
    assert [link["status"] for link in queue] == ["PENDING_REVIEW"]


async def test_the_review_queue_is_oldest_first(gql: GraphQL) -> None:
    first = await upload(
        gql,
        "hb_wang_jianguo",
        "hb_wang_yue",
        "CHILD",
        [birth_certificate("hb_wang_yue", "SIBLING")],
    )
    second = await upload(
        gql, "hb_liu_yang", "hb_liu_yinuo", "CHILD", [birth_certificate("hb_liu_yinuo", "SIBLING")]
    )
    ids = [linked(p, "PENDING_REVIEW")["id"] for p in (first, second)]
    queue = (await gql(QUEUE, token=reviewer(gql)))["data"]["kinshipReviewQueue"]
    assert [link["id"] for link in queue] == ids


# -- uploads ------------------------------------------------------------------------------


async def test_an_empty_file_is_refused(gql: GraphQL) -> None:
    document = birth_certificate("hb_wang_yue", "CHILD", content=b"")
    payload = await upload(gql, "hb_wang_jianguo", "hb_wang_yue", "CHILD", [document])
    assert refusal(payload) == ("DOCUMENT_EMPTY", "documents")


async def test_a_text_file_claiming_to_be_a_pdf_is_refused(gql: GraphQL) -> None:
    document = birth_certificate("hb_wang_yue", "CHILD", content=b"I am a birth certificate.\n")
    payload = await upload(gql, "hb_wang_jianguo", "hb_wang_yue", "CHILD", [document])
    assert refusal(payload) == ("DOCUMENT_TYPE_NOT_ALLOWED", "documents")


async def test_too_many_documents_are_refused(gql: GraphQL) -> None:
    documents = [birth_certificate("hb_wang_yue", "CHILD")] * 4  # the policy allows 3
    payload = await upload(gql, "hb_wang_jianguo", "hb_wang_yue", "CHILD", documents)
    assert refusal(payload) == ("TOO_MANY_DOCUMENTS", "documents")
    assert (await me(gql, "hb_wang_jianguo"))["kinshipMembers"] == []


async def test_a_stored_document_has_its_sniffed_type_size_and_hash(gql: GraphQL) -> None:
    documents = [
        birth_certificate("hb_wang_yue", "CHILD", content=PNG),  # a PNG sent as a PDF
        ("HOUSEHOLD_REGISTER", PDF, "image/png", recording("hb_wang_yue", "CHILD")),
        (
            "HOUSEHOLD_REGISTER",
            b"\xff\xd8\xff\xe0jfif",
            "text/plain",
            recording("hb_wang_yue", "CHILD"),
        ),
    ]
    payload = await upload(gql, "hb_wang_jianguo", "hb_wang_yue", "CHILD", documents)
    link = linked(payload, "APPROVED")
    assert link["documents"] == [
        {
            "kind": kind,
            "contentType": stored,
            "size": len(content),
            "sha256": hashlib.sha256(content).hexdigest(),
        }
        for (kind, content, _, _), stored in zip(
            documents, ["image/png", "application/pdf", "image/jpeg"], strict=True
        )
    ]
    listed = (await me(gql, "hb_wang_jianguo"))["kinshipMembers"]
    assert listed[0]["documents"] == link["documents"]


async def test_uploaded_files_are_closed_once_answered(gql: GraphQL) -> None:
    leaked_uploads()  # anything earlier is not this test's
    accepted = [
        birth_certificate("hb_wang_yue", "CHILD"),
        birth_certificate("hb_wang_yue", "CHILD"),
    ]
    refused = [birth_certificate("hb_wang_fang", "CHILD", content=b"")]
    first = await post_upload(gql, "hb_wang_jianguo", "hb_wang_yue", "CHILD", accepted)
    second = await post_upload(gql, "hb_li_xiuying", "hb_wang_fang", "CHILD", refused)
    assert linked(first["data"]["addKinshipMember"], "APPROVED")
    assert refusal(second["data"]["addKinshipMember"]) == ("DOCUMENT_EMPTY", "documents")
    leaked = leaked_uploads()
    assert leaked == [], f"{len(leaked)} uploaded files left for the garbage collector to close"


async def test_an_id_number_with_a_lowercase_x_names_the_same_member(gql: GraphQL) -> None:
    lower = person("hb_wang_yue")["certNo"].lower()  # 王悦's ends in X
    recorded = {"recordedCertNo": lower, "recordedRelation": "CHILD"}
    documents = [("HOUSEHOLD_REGISTER", PDF, "application/pdf", recorded)]
    first = await post_upload(
        gql, "hb_wang_jianguo", "hb_wang_yue", "CHILD", documents, memberCertNo=lower
    )
    again = await post_upload(gql, "hb_wang_jianguo", "hb_wang_yue", "CHILD", documents)
    leaked_uploads()
    assert linked(first["data"]["addKinshipMember"], "APPROVED")["member"] == masked("hb_wang_yue")
    assert refusal(again["data"]["addKinshipMember"]) == ("KINSHIP_ALREADY_ADDED", "memberCertNo")


async def test_an_older_member_may_be_added_with_the_household_register(gql: GraphQL) -> None:
    documents = [("HOUSEHOLD_REGISTER", PNG, "image/png", recording("hb_wang_hao", "CHILD"))]
    payload = await upload(gql, "hb_wang_jianguo", "hb_wang_hao", "CHILD", documents)
    # instead of his consent: a reviewer, however well the register's claims match
    link = linked(payload, "PENDING_REVIEW")
    assert [d["kind"] for d in link["documents"]] == ["HOUSEHOLD_REGISTER"]


class TestASmallDocumentLimit:
    """The document size limit is configuration: 100 bytes here."""

    @pytest.fixture
    def settings(self) -> Settings:
        return Settings(data_dir=None, kinship=KinshipPolicy(max_document_bytes=100))

    async def test_a_file_over_the_limit_is_refused(self, gql: GraphQL) -> None:
        content = PDF + b"0" * (101 - len(PDF))
        document = birth_certificate("hb_wang_yue", "CHILD", content=content)
        payload = await upload(gql, "hb_wang_jianguo", "hb_wang_yue", "CHILD", [document])
        assert refusal(payload) == ("DOCUMENT_TOO_LARGE", "documents")

    async def test_a_file_at_the_limit_is_accepted(self, gql: GraphQL) -> None:
        content = PDF + b"0" * (100 - len(PDF))
        document = birth_certificate("hb_wang_yue", "CHILD", content=content)
        payload = await upload(gql, "hb_wang_jianguo", "hb_wang_yue", "CHILD", [document])
        assert linked(payload, "APPROVED")["documents"][0]["size"] == 100


# -- an older member consents themselves -------------------------------------------------


async def test_an_adult_consents_with_their_own_token(gql: GraphQL) -> None:
    added = await add(gql, "hb_wang_jianguo", "hb_wang_hao", "CHILD")  # 王浩, 17
    link = linked(added, "PENDING_CONSENT")
    assert link["member"] == {"name": "王*", "certNo": "130102********0018"}
    assert link["expectedDecision"] is None

    for other in ("hb_wang_jianguo", "hb_li_xiuying"):
        assert refusal(await respond(gql, other, link["id"])) == ("FORBIDDEN", "requestId")

    accepted = linked(await respond(gql, "hb_wang_hao", link["id"]), "APPROVED")
    assert accepted["member"] == full("hb_wang_hao")  # the caller sees themselves in full
    assert accepted["adder"] == masked("hb_wang_jianguo")
    twice = await respond(gql, "hb_wang_hao", link["id"], accept=False)
    assert refusal(twice) == ("INVALID_KINSHIP_STATE", "requestId")


async def test_a_declined_request_no_longer_counts(gql: GraphQL) -> None:
    link = linked(await add(gql, "hb_wang_jianguo", "hb_wang_hao", "CHILD"), "PENDING_CONSENT")
    declined = linked(await respond(gql, "hb_wang_hao", link["id"], accept=False), "DECLINED")
    assert declined["id"] == link["id"]
    assert refusal(await activate(gql, "hb_wang_jianguo", link["id"])) == (
        "INVALID_KINSHIP_STATE",
        "memberId",
    )
    # neither a duplicate nor one of the member's two adders any more
    linked(await add(gql, "hb_wang_jianguo", "hb_wang_hao", "CHILD"), "PENDING_CONSENT")
    linked(await add(gql, "hb_li_xiuying", "hb_wang_hao", "CHILD"), "PENDING_CONSENT")
    third = await add(gql, "hb_wang_lei", "hb_wang_hao", "SIBLING")
    assert refusal(third) == ("KINSHIP_MEMBER_LIMIT_REACHED", "memberCertNo")


async def test_a_declined_request_frees_the_adders_place(gql: GraphQL) -> None:
    links = [
        linked(await add(gql, "hb_wang_jianguo", key, relation), "PENDING_CONSENT")
        for key, relation in WANG_ADULTS
    ]
    linked(await respond(gql, "hb_wang_lei", links[3]["id"], accept=False), "DECLINED")
    linked(await add(gql, "hb_wang_jianguo", "hb_wang_peng", "CHILD"), "PENDING_CONSENT")


# -- across provinces -------------------------------------------------------------------


async def test_kinship_crosses_provinces_where_mutual_aid_did_not_before_2026(
    gql_2025: GraphQL,
) -> None:
    gql = gql_2025
    link = linked(await add(gql, "hb_liu_yang", "js_zhang_shuzhen", "PARENT"), "PENDING_CONSENT")
    assert link["member"] == masked("js_zhang_shuzhen")
    bound = await gql.bind("hb_liu_yang", "js_zhang_shuzhen", "PARENT")
    assert bound["binding"] is None
    assert [e["code"] for e in bound["errors"]] == ["CROSS_PROVINCE_NOT_ALLOWED"]
    # the member, in Jiangsu, consents
    linked(await respond(gql, "js_zhang_shuzhen", link["id"]), "APPROVED")


# -- activation -------------------------------------------------------------------------


async def test_a_newborn_whose_insurance_is_pending_cannot_be_activated(gql: GraphQL) -> None:
    document = birth_certificate("hn_zhao_xiaobao", "CHILD")
    payload = await upload(gql, "hn_zhao_lei", "hn_zhao_xiaobao", "CHILD", [document])
    link = linked(payload, "APPROVED")
    attempt = await activate(gql, "hn_zhao_lei", link["id"])
    assert refusal(attempt) == ("MEMBER_INSURANCE_NOT_EFFECTIVE", "memberId")
    assert (await me(gql, "hn_zhao_lei"))["kinshipMembers"][0]["status"] == "APPROVED"


async def test_only_the_adder_activates_and_only_once_approved(gql: GraphQL) -> None:
    link = linked(await add(gql, "hb_wang_jianguo", "hb_wang_hao", "CHILD"), "PENDING_CONSENT")
    early = await activate(gql, "hb_wang_jianguo", link["id"])
    assert refusal(early) == ("INVALID_KINSHIP_STATE", "memberId")
    linked(await respond(gql, "hb_wang_hao", link["id"]), "APPROVED")
    for other in ("hb_wang_hao", "hb_li_xiuying"):
        assert refusal(await activate(gql, other, link["id"])) == ("FORBIDDEN", "memberId")
    linked(await activate(gql, "hb_wang_jianguo", link["id"]), "ACTIVE")
    again = await activate(gql, "hb_wang_jianguo", link["id"])
    assert refusal(again) == ("INVALID_KINSHIP_STATE", "memberId")


async def test_concurrent_activations_activate_once(gql: GraphQL) -> None:
    link = await consented(gql, "hb_wang_jianguo", "hb_wang_hao", "CHILD")
    payloads = await asyncio.gather(
        *(activate(gql, "hb_wang_jianguo", link["id"]) for _ in range(3))
    )
    assert sorted(p["link"]["status"] for p in payloads if p["link"]) == ["ACTIVE"]
    assert [refusal(p) for p in payloads if p["link"] is None] == [
        ("INVALID_KINSHIP_STATE", "memberId")
    ] * 2


@pytest.mark.parametrize(
    "password",
    ["123456", "654321", "111111", "12345", "1234567", "abcdef", "28571a", "２８５７１４"],
)
async def test_a_weak_or_malformed_payment_password_is_refused(gql: GraphQL, password: str) -> None:
    link = await consented(gql, "hb_wang_jianguo", "hb_wang_hao", "CHILD")
    attempt = await activate(gql, "hb_wang_jianguo", link["id"], password)
    assert refusal(attempt) == ("INVALID_PAYMENT_PASSWORD", "paymentPassword")


async def test_the_payment_password_is_stored_hashed(gql: GraphQL, app: Starlette) -> None:
    link = await consented(gql, "hb_wang_jianguo", "hb_wang_hao", "CHILD")
    activated = linked(await activate(gql, "hb_wang_jianguo", link["id"], GOOD_PASSWORD), "ACTIVE")
    assert activated["id"] == link["id"]
    rows = await stored(app, "SELECT password_hash FROM kinship_link WHERE status = 'ACTIVE'")
    assert len(rows) == 1
    (kept_hash,) = rows[0]
    assert kept_hash.startswith("scrypt$")
    assert GOOD_PASSWORD not in kept_hash
    everything = repr(await stored(app, "SELECT * FROM kinship_link"))
    assert GOOD_PASSWORD not in everything.replace(kept_hash, "")


# -- the voucher ----------------------------------------------------------------------


async def test_the_voucher_is_for_an_active_adder_only(gql: GraphQL) -> None:
    link = await consented(gql, "hb_wang_jianguo", "hb_wang_hao", "CHILD")
    for other in ("hb_li_xiuying", "hb_wang_hao"):  # a stranger to the link, the member
        payload = await voucher(gql, other, link["id"])
        assert payload["voucher"] is None
        assert [(e["code"], e["field"]) for e in payload["errors"]] == [("FORBIDDEN", "memberId")]
    denied = await usage(gql, "hb_li_xiuying", link["id"])
    assert denied["uses"] == []
    assert [e["code"] for e in denied["errors"]] == ["FORBIDDEN"]
    early = await voucher(gql, "hb_wang_jianguo", link["id"])
    assert early["voucher"] is None
    assert code(early) == "INVALID_KINSHIP_STATE"
    assert (await usage(gql, "hb_wang_jianguo", link["id"])) == {"uses": [], "errors": []}

    linked(await activate(gql, "hb_wang_jianguo", link["id"]), "ACTIVE")
    linked(await remove(gql, "hb_wang_hao", link["id"]), "REMOVED")
    ended = await voucher(gql, "hb_wang_jianguo", link["id"])
    assert code(ended) == "INVALID_KINSHIP_STATE"


async def test_the_voucher_names_no_one_and_pays_with_the_members_insurance(
    gql: GraphQL, settings: Settings
) -> None:
    link = await active(gql, "hb_liu_yang", "js_zhang_shuzhen", "PARENT")
    payload = await voucher(gql, "hb_liu_yang", link["id"], "130600")
    assert payload["errors"] == []
    shown = payload["voucher"]

    # signed with a key of its own: the bearer-token secret does not verify it
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(
            shown["code"], settings.auth.secret, algorithms=["HS256"], audience=VOUCHER_AUDIENCE
        )
    key = hmac.new(settings.auth.secret.encode(), b"gongji kinship voucher", "sha256").hexdigest()
    claims = jwt.decode(shown["code"], key, algorithms=["HS256"], audience=VOUCHER_AUDIENCE)
    # nor is it a bearer token
    as_bearer = await gql("{ me { name } }", token=shown["code"])
    assert as_bearer["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    text = json.dumps(claims, ensure_ascii=False)
    for key in ("hb_liu_yang", "js_zhang_shuzhen"):
        assert person(key)["certNo"] not in text
        assert person(key)["name"] not in text
        assert person(key)["certNo"][:6] + "19" not in shown["code"]
    assert 0 < claims["exp"] - claims["iat"] <= 300
    assert dt.datetime.fromisoformat(shown["expiresAt"]).timestamp() == claims["exp"]
    assert "<svg" in shown["qrSvg"]

    assert shown["member"] == masked("js_zhang_shuzhen")
    assert shown["insuranceOf"] == masked("js_zhang_shuzhen")
    assert shown["memberInsurance"] == {"type": "RESIDENT", "status": "ACTIVE"}
    assert shown["memberInsuredArea"]["code"] == "320100"
    assert shown["treatmentArea"] == "130600"
    assert shown["remoteTreatmentRegistrationRequired"] is True
    assert shown["selfPayFromMutualAid"] is False
    assert shown["mutualAidPayer"] is None
    assert [n["code"] for n in shown["notes"]] == [
        "KINSHIP_IS_NOT_MUTUAL_AID",
        "REMOTE_TREATMENT_REGISTRATION",
    ]
    assert all(n["message"] for n in shown["notes"])


async def test_the_voucher_treats_by_default_where_the_adder_is_insured(gql: GraphQL) -> None:
    link = await active(gql, "hb_liu_yang", "js_zhang_shuzhen", "PARENT")
    shown = (await voucher(gql, "hb_liu_yang", link["id"]))["voucher"]
    assert shown["treatmentArea"] == "130600"  # 刘洋's own
    assert shown["remoteTreatmentRegistrationRequired"] is True
    at_home = (await voucher(gql, "hb_liu_yang", link["id"], "320100"))["voucher"]
    assert at_home["remoteTreatmentRegistrationRequired"] is False
    assert [n["code"] for n in at_home["notes"]] == ["KINSHIP_IS_NOT_MUTUAL_AID"]


async def test_mutual_aid_pays_the_self_pay_part_when_also_bound(gql: GraphQL) -> None:
    bound = await bind_for_mutual_aid(gql, "hb_wang_jianguo", "hb_wang_hao")
    assert bound["errors"] == []
    assert bound["binding"]["status"] == "ACTIVE"  # Hebei: no confirmation needed

    link = await active(gql, "hb_wang_jianguo", "hb_wang_hao", "CHILD")
    shown = (await voucher(gql, "hb_wang_jianguo", link["id"]))["voucher"]
    assert shown["selfPayFromMutualAid"] is True
    assert shown["mutualAidPayer"] == full("hb_wang_jianguo")  # the caller, unmasked
    assert shown["insuranceOf"] == masked("hb_wang_hao")  # still the member's insurance
    assert shown["treatmentArea"] == "130100"
    assert shown["remoteTreatmentRegistrationRequired"] is False
    assert [n["code"] for n in shown["notes"]] == ["MUTUAL_AID_PAYS_SELF_PAY"]


async def test_a_mutual_aid_binding_of_someone_else_pays_but_not_from_the_adders_account(
    gql: GraphQL,
) -> None:
    """The national rule: whoever is bound to the member with a balance pays, whoever
    shows the code; the adder's own account pays only through a binding of theirs."""
    # 李秀英 binds 王浩 for mutual aid; 王建国 only has the kinship link
    bound = await bind_for_mutual_aid(gql, "hb_li_xiuying", "hb_wang_hao")
    assert bound["binding"]["status"] == "ACTIVE"
    link = await active(gql, "hb_wang_jianguo", "hb_wang_hao", "CHILD")
    shown = (await voucher(gql, "hb_wang_jianguo", link["id"]))["voucher"]
    assert shown["selfPayFromMutualAid"] is True
    assert shown["mutualAidPayer"] == masked("hb_li_xiuying")  # his wife: 1200.00
    assert [n["code"] for n in shown["notes"]] == ["KINSHIP_IS_NOT_MUTUAL_AID"]


async def test_the_voucher_names_the_bound_authorizer_with_the_largest_balance(
    gql: GraphQL,
) -> None:
    # both parents bind 王浩: 王建国 has 3200.00, 李秀英 1200.00
    for parent in ("hb_wang_jianguo", "hb_li_xiuying"):
        assert (await bind_for_mutual_aid(gql, parent, "hb_wang_hao"))["errors"] == []
    hers = await active(gql, "hb_li_xiuying", "hb_wang_hao", "CHILD")
    shown = (await voucher(gql, "hb_li_xiuying", hers["id"]))["voucher"]
    assert shown["selfPayFromMutualAid"] is True
    assert shown["mutualAidPayer"] == masked("hb_wang_jianguo")  # not the adder
    # her own binding and balance: her account would pay, were it the largest
    assert [n["code"] for n in shown["notes"]] == ["MUTUAL_AID_PAYS_SELF_PAY"]

    his = await consented(gql, "hb_wang_jianguo", "hb_wang_hao", "CHILD")
    linked(await activate(gql, "hb_wang_jianguo", his["id"]), "ACTIVE")
    shown = (await voucher(gql, "hb_wang_jianguo", his["id"]))["voucher"]
    assert shown["mutualAidPayer"] == full("hb_wang_jianguo")


async def test_an_emptied_adder_bound_beside_a_funded_authorizer_is_told_so(
    gql: GraphQL,
) -> None:
    # 李秀英 alone binds 王浩, and a bill empties her account (1200.00 of 1300.00)
    assert (await bind_for_mutual_aid(gql, "hb_li_xiuying", "hb_wang_hao"))["errors"] == []
    cashier = mint_token(
        "11010119900101001" + check_character("11010119900101001"),
        gql.auth,
        roles=frozenset({INSTITUTION}),
        institution=Institution("H13010001", "HOSPITAL"),
    )
    settled = await gql(
        "mutation($i: SettleInput!) { settle(input: $i) { settlement { mutualAidPaid } } }",
        {
            "i": {
                "patientCertNo": person("hb_wang_hao")["certNo"],
                "medicalType": "OUTPATIENT",
                "totalAmount": "1300.00",
                "fundPaid": "0.00",
                "idempotencyKey": "empty-her-account",
            }
        },
        token=cashier,
    )
    assert settled["data"]["settle"]["settlement"] == {"mutualAidPaid": "1200.00"}, settled
    # then 王建国 binds him too: his account pays now, not hers
    assert (await bind_for_mutual_aid(gql, "hb_wang_jianguo", "hb_wang_hao"))["errors"] == []
    link = await active(gql, "hb_li_xiuying", "hb_wang_hao", "CHILD")
    shown = (await voucher(gql, "hb_li_xiuying", link["id"]))["voucher"]
    assert shown["selfPayFromMutualAid"] is True
    assert shown["mutualAidPayer"] == masked("hb_wang_jianguo")
    assert [n["code"] for n in shown["notes"]] == ["MUTUAL_AID_NO_BALANCE"]


async def test_usage_lists_each_voucher_newest_first_for_the_two_sides(gql: GraphQL) -> None:
    link = await active(gql, "hb_liu_yang", "js_zhang_shuzhen", "PARENT")
    for area in ("130600", "320100", "130100"):
        assert (await voucher(gql, "hb_liu_yang", link["id"], area))["errors"] == []
    used = await usage(gql, "hb_liu_yang", link["id"])
    assert used["errors"] == []
    assert [u["treatmentArea"] for u in used["uses"]] == ["130100", "320100", "130600"]
    times = [dt.datetime.fromisoformat(u["at"]) for u in used["uses"]]
    assert times == sorted(times, reverse=True)
    assert (await usage(gql, "js_zhang_shuzhen", link["id"])) == used  # the member sees them
    denied = await usage(gql, "hb_wang_jianguo", link["id"])
    assert denied["uses"] == []
    assert [(e["code"], e["field"]) for e in denied["errors"]] == [("FORBIDDEN", "memberId")]


async def test_the_voucher_checks_the_treatment_area_and_the_adders_balance(gql: GraphQL) -> None:
    link = await active(gql, "hb_liu_yang", "js_zhang_shuzhen", "PARENT")
    bad = await voucher(gql, "hb_liu_yang", link["id"], "not-an-area")
    assert [(e["code"], e["field"]) for e in bad["errors"]] == [
        ("INVALID_AREA_CODE", "treatmentArea")
    ]
    # 刘洋 binds his daughter for mutual aid, but his personal account is empty
    bound = await bind_for_mutual_aid(gql, "hb_liu_yang", "hb_liu_yinuo")
    assert bound["binding"]["status"] == "ACTIVE"
    payload = await upload(
        gql, "hb_liu_yang", "hb_liu_yinuo", "CHILD", [birth_certificate("hb_liu_yinuo", "CHILD")]
    )
    mine = linked(payload, "APPROVED")
    linked(await activate(gql, "hb_liu_yang", mine["id"]), "ACTIVE")
    shown = (await voucher(gql, "hb_liu_yang", mine["id"]))["voucher"]
    assert shown["selfPayFromMutualAid"] is False
    assert shown["mutualAidPayer"] is None
    assert [n["code"] for n in shown["notes"]] == ["MUTUAL_AID_NO_BALANCE"]


# -- removing, and both sides of a person -----------------------------------------------


async def test_the_member_removes_the_link(gql: GraphQL) -> None:
    link = await active(gql, "hb_wang_jianguo", "hb_wang_lei", "CHILD")
    stranger = await remove(gql, "hb_li_xiuying", link["id"])
    assert refusal(stranger) == ("FORBIDDEN", "memberId")
    removed = linked(await remove(gql, "hb_wang_lei", link["id"]), "REMOVED")
    assert removed["id"] == link["id"]
    again = await remove(gql, "hb_wang_jianguo", link["id"])
    assert refusal(again) == ("INVALID_KINSHIP_STATE", "memberId")
    listed = (await me(gql, "hb_wang_jianguo"))["kinshipMembers"]
    assert [(x["id"], x["status"]) for x in listed] == [(link["id"], "REMOVED")]
    # the place is free again
    linked(await add(gql, "hb_wang_jianguo", "hb_wang_lei", "CHILD"), "PENDING_CONSENT")


async def test_the_adder_withdraws_a_pending_request(gql: GraphQL) -> None:
    link = linked(await add(gql, "hb_wang_jianguo", "hb_wang_hao", "CHILD"), "PENDING_CONSENT")
    linked(await remove(gql, "hb_wang_jianguo", link["id"]), "REMOVED")
    late = await respond(gql, "hb_wang_hao", link["id"])
    assert refusal(late) == ("INVALID_KINSHIP_STATE", "requestId")


async def test_an_unknown_or_foreign_id_finds_nothing(gql: GraphQL) -> None:
    link = linked(await add(gql, "hb_wang_jianguo", "hb_wang_lei", "CHILD"), "PENDING_CONSENT")
    decoded = decode_id(link["id"], "KinshipLink")
    assert decoded is not None
    raw = decoded[1]
    for bogus in (
        "nothing",
        encode_id("KinshipLink", "gateway", "nope"),
        encode_id("KinshipLink", "hebei", raw),  # the right link, claimed by a province
        encode_id("MutualAidBinding", "gateway", raw),  # the right link, as another kind
        raw,
    ):
        assert refusal(await respond(gql, "hb_wang_lei", bogus)) == ("FORBIDDEN", "requestId")
        assert refusal(await remove(gql, "hb_wang_jianguo", bogus)) == ("FORBIDDEN", "memberId")
    linked(await respond(gql, "hb_wang_lei", link["id"]), "APPROVED")


async def test_a_person_both_adds_and_is_added(gql: GraphQL) -> None:
    as_member = linked(await add(gql, "hb_wang_jianguo", "hb_wang_lei", "CHILD"), "PENDING_CONSENT")
    as_adder = linked(
        await add(gql, "hb_wang_lei", "hb_wang_deming", "GRANDPARENT"), "PENDING_CONSENT"
    )
    found = await me(gql, "hb_wang_lei")
    assert found["certNo"] == person("hb_wang_lei")["certNo"]

    [mine] = found["kinshipMembers"]
    assert mine["id"] == as_adder["id"]
    assert mine["relation"] == "GRANDPARENT"
    assert mine["adder"] == full("hb_wang_lei")
    assert mine["member"] == masked("hb_wang_deming")

    [theirs] = found["addedMeAsMember"]
    assert theirs["id"] == as_member["id"]
    assert theirs["relation"] == "CHILD"
    assert theirs["adder"] == masked("hb_wang_jianguo")
    assert theirs["member"] == full("hb_wang_lei")

    grandfather = await me(gql, "hb_wang_deming")
    assert grandfather["kinshipMembers"] == []
    assert [x["adder"] for x in grandfather["addedMeAsMember"]] == [masked("hb_wang_lei")]


# -- refusals, in Chinese by default and in English when asked ---------------------------

CJK = re.compile(r"[\u4e00-\u9fff]")


@pytest.mark.parametrize(
    ("adder", "given", "expected"),
    [
        pytest.param(
            "hb_wang_jianguo",
            new("hb_wang_jianguo", "SPOUSE"),
            ("KINSHIP_SELF_NOT_ALLOWED", "memberCertNo"),
            id="self",
        ),
        pytest.param(
            "hb_wang_jianguo",
            {**new("hb_wang_lei", "CHILD"), "memberCertNo": "130102199904110018"},
            ("INVALID_CERT_NO", "memberCertNo"),
            id="bad-check-character",
        ),
        pytest.param(
            "hb_wang_jianguo",
            {**new("hb_wang_lei", "CHILD"), "memberName": "王雷"},
            ("PERSON_INFO_MISMATCH", "memberName"),
            id="wrong-name",
        ),
        pytest.param(
            "hb_wang_jianguo",
            new(NOWHERE, "SIBLING"),
            ("PERSON_INFO_MISMATCH", "memberName"),  # like a wrong name: no oracle
            id="insured-nowhere-served",
        ),
        pytest.param(
            "hb_wang_jianguo",
            new("hb_wang_deming", "CHILD"),  # he is 王建国's father
            ("RELATION_NOT_VERIFIED", "relation"),
            id="contradicted-relation",
        ),
        pytest.param(
            "hb_wang_jianguo",
            new("hb_sun_qiang", "SIBLING"),  # no relation on record, and no document
            ("RELATION_NOT_VERIFIED", "relation"),
            id="unknown-relation",
        ),
        pytest.param(
            "hb_wang_jianguo",
            new("hb_li_fu", "PARENT_IN_LAW"),
            ("RELATION_NOT_ALLOWED", "relation"),
            id="parent-in-law",
        ),
    ],
)
async def test_refusals_are_chinese_by_default_and_english_when_asked(
    gql: GraphQL, adder: str, given: dict[str, Any], expected: tuple[str, str]
) -> None:
    payloads = []
    for lang in (None, "zh-CN", "en"):
        result = await gql(ADD, {"input": given}, as_=adder, lang=lang)
        assert "errors" not in result, result
        payload = result["data"]["addKinshipMember"]
        assert refusal(payload) == expected
        payloads.append(payload["errors"][0]["message"])
    default, chinese, english = payloads
    assert default == chinese
    assert CJK.search(default), default
    assert not CJK.search(english), english
    assert english.isascii()
    assert (await me(gql, adder))["kinshipMembers"] == []


async def test_a_duplicate_is_refused_in_either_language(gql: GraphQL) -> None:
    linked(await add(gql, "hb_wang_jianguo", "hb_wang_lei", "CHILD"), "PENDING_CONSENT")
    zh = await add(gql, "hb_wang_jianguo", "hb_wang_lei", "CHILD")
    en = await add(gql, "hb_wang_jianguo", "hb_wang_lei", "CHILD", lang="en")
    assert refusal(zh) == refusal(en) == ("KINSHIP_ALREADY_ADDED", "memberCertNo")
    assert zh["errors"][0]["message"] == "已添加该亲属,或添加申请正在处理中"
    assert en["errors"][0]["message"] == (
        "You have already added this relative, or the request is in progress."
    )


async def test_a_limit_refusal_says_so_in_english(gql: GraphQL) -> None:
    for key, relation in WANG_ADULTS:
        linked(await add(gql, "hb_wang_jianguo", key, relation), "PENDING_CONSENT")
    en = await add(gql, "hb_wang_jianguo", "hb_wang_peng", "CHILD", lang="en")
    assert refusal(en) == ("KINSHIP_ADDER_LIMIT_REACHED", "memberCertNo")
    assert "5" in en["errors"][0]["message"]
    assert en["errors"][0]["message"].isascii()


async def test_the_review_queue_refuses_in_the_callers_language(gql: GraphQL) -> None:
    zh = await gql(QUEUE, as_="hb_wang_jianguo")
    en = await gql(QUEUE, as_="hb_wang_jianguo", lang="en")
    assert zh["errors"][0]["extensions"]["code"] == en["errors"][0]["extensions"]["code"]
    assert CJK.search(zh["errors"][0]["message"])
    assert en["errors"][0]["message"].isascii()


async def test_kinship_needs_a_signed_in_caller(gql: GraphQL) -> None:
    result = await gql(ADD, {"input": new("hb_wang_lei", "CHILD")})
    assert result["data"] is None
    assert [e["extensions"]["code"] for e in result["errors"]] == ["UNAUTHENTICATED"]


# -- the size of what may be sent --------------------------------------------------------


async def test_uploads_need_a_token_before_a_byte_is_read(gql: GraphQL) -> None:
    response = await gql.client.post(
        "/graphql",
        data={"operations": "{}", "map": "{}"},
        files={"0": ("doc", PDF, "application/pdf")},
    )
    assert response.status_code == 401
    assert response.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"


async def test_a_body_over_the_limit_is_refused_unread(gql: GraphQL, settings: Settings) -> None:
    policy = settings.kinship
    too_much = b"0" * (policy.max_documents * policy.max_document_bytes + 1024 * 1024 + 1)
    response = await gql.client.post(
        "/graphql",
        content=too_much,
        headers={
            "Content-Type": "multipart/form-data; boundary=x",
            "Authorization": f"Bearer {gql.token('hb_wang_jianguo')}",
        },
    )
    assert response.status_code == 413
    assert response.json()["errors"][0]["extensions"]["code"] == "REQUEST_TOO_LARGE"


async def test_a_body_must_say_how_long_it_is(gql: GraphQL) -> None:
    async def chunks() -> Any:
        yield b'{"query": "{ provinces { code } }"}'

    response = await gql.client.post(
        "/graphql", content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 411
    assert response.json()["errors"][0]["extensions"]["code"] == "LENGTH_REQUIRED"


async def test_reviewers_see_the_people_the_claims_and_the_file(gql: GraphQL) -> None:
    document = birth_certificate("hb_wang_yue", "SIBLING")  # claims another relation
    payload = await upload(gql, "hb_wang_jianguo", "hb_wang_yue", "CHILD", [document])
    linked(payload, "PENDING_REVIEW")
    wanted = "{ kinshipReviewQueue { adder { name certNo } member { name certNo }"
    wanted += " documents { recordedCertNo recordedRelation contentType dataUrl } } }"

    queue = (await gql(wanted, token=reviewer(gql)))["data"]["kinshipReviewQueue"]
    assert queue[0]["adder"] == {"name": "王建国", "certNo": person("hb_wang_jianguo")["certNo"]}
    assert queue[0]["member"] == {"name": "王悦", "certNo": person("hb_wang_yue")["certNo"]}
    shown = queue[0]["documents"][0]
    assert shown["recordedCertNo"] == person("hb_wang_yue")["certNo"]
    assert shown["recordedRelation"] == "SIBLING"
    prefix = "data:application/pdf;base64,"
    assert shown["dataUrl"].startswith(prefix)
    assert base64.b64decode(shown["dataUrl"][len(prefix) :]) == PDF

    # the adder sees his request, the claims masked, and no file
    mine = "{ me { kinshipMembers { member { certNo } documents { recordedCertNo dataUrl } } } }"
    seen = (await gql(mine, as_="hb_wang_jianguo"))["data"]["me"]["kinshipMembers"][0]
    assert seen["member"]["certNo"] == "130102********002X"
    assert seen["documents"] == [{"recordedCertNo": "130102********002X", "dataUrl": None}]


# -- idempotency keys: the registry's writes, once per key -----------------------------------

KEYED_VOUCHER = """mutation($id: ID!, $k: String) {
  kinshipVoucher(memberId: $id, idempotencyKey: $k) { voucher { code } errors { code field }
  idempotencyKey } }"""
KEYED_REMOVE = """mutation($id: ID!, $k: String) {
  removeKinshipMember(memberId: $id, idempotencyKey: $k) { link { status } errors { code }
  idempotencyKey } }"""


async def test_a_repeated_key_returns_the_registrys_first_outcome(gql: GraphQL) -> None:
    first = await add(gql, "hb_wang_jianguo", "hb_wang_hao", "CHILD", idempotencyKey="add-hao")
    again = await add(gql, "hb_wang_jianguo", "hb_wang_hao", "CHILD", idempotencyKey="add-hao")
    assert linked(first, "PENDING_CONSENT")["id"] == linked(again, "PENDING_CONSENT")["id"]
    other = await add(gql, "hb_wang_jianguo", "hb_wang_lei", "CHILD", idempotencyKey="add-hao")
    assert [(e["code"], e["field"]) for e in other["errors"]] == [
        ("IDEMPOTENCY_KEY_REUSED", "idempotencyKey")
    ]
    fresh = await add(gql, "hb_wang_jianguo", "hb_wang_lei", "CHILD")
    assert linked(fresh, "PENDING_CONSENT")["id"] != first["link"]["id"]
    listed = await gql(ME, as_="hb_wang_jianguo")
    assert len(listed["data"]["me"]["kinshipMembers"]) == 2  # 王浩 once, 王磊 once

    link = linked(await respond(gql, "hb_wang_hao", first["link"]["id"]), "APPROVED")
    linked(await activate(gql, "hb_wang_jianguo", link["id"]), "ACTIVE")
    shown = [
        (await gql(KEYED_VOUCHER, {"id": link["id"], "k": k}, as_="hb_wang_jianguo"))["data"][
            "kinshipVoucher"
        ]
        for k in ("v1", "v1", "v2")
    ]
    assert shown[0] == shown[1]  # the same code again, not a second one
    assert shown[2]["voucher"]["code"] != shown[0]["voucher"]["code"]
    assert len((await usage(gql, "hb_wang_jianguo", link["id"]))["uses"]) == 2

    removed = [
        (await gql(KEYED_REMOVE, {"id": link["id"], "k": "rm"}, as_="hb_wang_hao"))["data"][
            "removeKinshipMember"
        ]
        for _ in range(2)
    ]
    assert (
        removed[0]
        == removed[1]
        == {
            "link": {"status": "REMOVED"},
            "errors": [],
            "idempotencyKey": "rm",
        }
    )


async def test_a_weak_payment_password_keeps_nothing_under_its_key(
    gql: GraphQL,
) -> None:
    """A password refused for its form is refused before the key keeps anything, so the
    corrected one may follow under the same key (nothing derived from a password is
    kept under a key: tests/test_audit_truth.py)."""
    activate_keyed = """mutation($id: ID!, $p: String!, $k: String) {
      activateKinshipMember(memberId: $id, paymentPassword: $p, idempotencyKey: $k) {
        link { status } errors { code field } } }"""
    link = await consented(gql, "hb_wang_jianguo", "hb_wang_hao", "CHILD")
    weak = await gql(
        activate_keyed, {"id": link["id"], "p": "111111", "k": "act"}, as_="hb_wang_jianguo"
    )
    assert weak["data"]["activateKinshipMember"]["errors"][0]["code"] == "INVALID_PAYMENT_PASSWORD"
    fixed = await gql(
        activate_keyed, {"id": link["id"], "p": "428613", "k": "act"}, as_="hb_wang_jianguo"
    )
    assert fixed["data"]["activateKinshipMember"]["link"]["status"] == "ACTIVE"
    again = await gql(
        activate_keyed, {"id": link["id"], "p": "428613", "k": "act-2"}, as_="hb_wang_jianguo"
    )
    assert again["data"]["activateKinshipMember"]["errors"][0]["code"] == "INVALID_KINSHIP_STATE"


async def test_a_registry_write_refused_for_its_key_says_so_under_that_key(gql: GraphQL) -> None:
    link = linked(await add(gql, "hb_wang_jianguo", "hb_wang_hao", "CHILD"), "PENDING_CONSENT")
    bad = await gql(KEYED_REMOVE, {"id": link["id"], "k": "has space"}, as_="hb_wang_jianguo")
    refused = bad["data"]["removeKinshipMember"]
    assert refused["errors"] == [{"code": "INVALID_IDEMPOTENCY_KEY"}]
    assert refused["idempotencyKey"] == "has space"
    assert refused["link"] is None
    await gql(KEYED_REMOVE, {"id": link["id"], "k": "rm-1"}, as_="hb_wang_jianguo")
    other = linked(await add(gql, "hb_wang_jianguo", "hb_wang_lei", "CHILD"), "PENDING_CONSENT")
    reused = await gql(KEYED_REMOVE, {"id": other["id"], "k": "rm-1"}, as_="hb_wang_jianguo")
    assert reused["data"]["removeKinshipMember"]["errors"] == [{"code": "IDEMPOTENCY_KEY_REUSED"}]
    assert reused["data"]["removeKinshipMember"]["idempotencyKey"] == "rm-1"

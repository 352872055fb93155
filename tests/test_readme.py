"""The README, followed as a front-end developer follows it in their first ten minutes.

`test_the_readme_walk_runs_top_to_bottom_on_one_fresh_world` walks every row of the
three "Try" tables of README.md's "Walk through it", in order, against one fresh gateway
(its sandbox provinces in-process). The README is the source: its rows are read from it
(a row without a step here, or a step without its row, fails), the people, ID numbers,
relations and amounts come from the row's text, every code or status the row's Expect
column names must come back while its step runs, and every "`field` `amount`" it
promises is the settlement's. A step is one small function keyed by its row's title:
when a row changes, its step is the one place to change.

`test_every_shown_operation_runs` runs each ```graphql block of README.md and
docs/frontend.md as someone it is for (`SHOWN`, keyed by the operation's name).
"""

from __future__ import annotations

import datetime as dt
import json
import re
import tomllib
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from graphql import OperationDefinitionNode, parse

from gateway.common.auth import ADMIN, INSTITUTION, REVIEWER, Institution, mint_token
from gateway.common.certno import mask_cert_no, mask_name
from gateway.ops.config import Settings
from gateway.provinces.federated import adapter_classes
from tests.conftest import PEOPLE, ROOT, GraphQL, gateway, person, province_codes

README = ROOT / "README.md"
FRONTEND = ROOT / "docs" / "frontend.md"
STAFF = {
    p["key"]: p
    for p in tomllib.loads((ROOT / "playground" / "personas.toml").read_text("utf-8"))["persona"]
}

# -- reading the README ----------------------------------------------------------------------

# The "Try" tables of the walk, in the order they come.
MUTUAL_AID, KINSHIP, SETTLEMENT = TABLES = ("mutual aid", "kinship", "settlement")
RELATIONS = (
    "SPOUSE",
    "PARENT_IN_LAW",
    "PARENT",
    "CHILD_IN_LAW",
    "CHILD",
    "SIBLING",
    "GRANDPARENT",
    "GRANDCHILD",
)
NAMED = re.compile(r"([\u4e00-\u9fff]{2,4}) `(\d{17}[\dX])`")  # 王悦 `13010220121212002X`
CODE = re.compile(r"`([A-Z][A-Z_]+)`")  # `ACTIVE`, `BINDING_LIMIT_REACHED`
MONEY = re.compile(r"`(\d+\.\d\d)`")
CLAIM = re.compile(r"`([a-zA-Z]+)` `(\d+\.\d\d)`")  # `mutualAidPaid` `200.00`
NAMES = {p["name"] for p in PEOPLE.values()}
# the longest first: no name is found inside another
NAME = re.compile("|".join(sorted(NAMES, key=len, reverse=True)))
RELATION = re.compile(r"\b(" + "|".join(RELATIONS) + r")\b")


def walk_section(text: str) -> str:
    start = text.index("\n## Walk through it\n")
    return text[start : text.index("\n## ", start + 1)]


@dataclass(frozen=True)
class Row:
    """One row of a "Try" table: Try (its title), As, Do (or Variables), Expect."""

    table: str
    title: str
    as_: str
    do: str
    expect: str

    @property
    def key(self) -> tuple[str, str]:
        return (self.table, self.title)

    @property
    def text(self) -> str:
        return " | ".join((self.as_, self.do, self.expect))

    def says(self, *words: str) -> None:
        """The row mentions each of ``words`` (the people and relations a step uses)."""
        missing = [w for w in words if w not in self.text]
        assert not missing, f"{self.title!r} does not say {missing}: {self.text}"

    def codes(self) -> list[str]:
        """The codes and statuses the Expect column names."""
        return CODE.findall(self.expect)

    def claims(self) -> dict[str, str]:
        """What the Expect column says a settlement's fields are (`cashDue` `400.00`)."""
        return dict(CLAIM.findall(self.expect))

    @staticmethod
    def amounts(cell: str) -> list[str]:
        return MONEY.findall(cell)

    @staticmethod
    def relatives(cell: str) -> list[tuple[str, str]]:
        """The people a cell names, each with the first relation written after them:
        "parents 王德明 `...` and 赵桂兰 `...` PARENT" is both PARENT."""
        found = []
        for match in NAME.finditer(cell):
            relation = RELATION.search(cell, match.end())
            assert relation is not None, f"no relation after {match[0]} in {cell!r}"
            found.append((match[0], relation[1]))
        return found


def walk_rows(text: str) -> list[Row]:
    """The rows of the walk's "Try" tables, in order."""
    tables: list[list[list[str]]] = []
    current: list[list[str]] | None = None
    for line in walk_section(text).splitlines():
        if line.startswith("| Try |"):
            current = []
            tables.append(current)
        elif current is not None and line.startswith("|"):
            if not line.startswith("|---"):
                current.append([cell.strip() for cell in line.strip().strip("|").split("|")])
        else:
            current = None
    assert len(tables) == len(TABLES), f"expected the {TABLES} tables, found {len(tables)}"
    rows = []
    for name, table in zip(TABLES, tables, strict=True):
        for cells in table:
            assert len(cells) == 4, f"a row of four cells: {cells}"
            rows.append(Row(name, *cells))
    return rows


def people_named(text: str) -> dict[str, str]:
    """Each name the walk gives with an ID number (王悦 `13010220121212002X`): the number."""
    found: dict[str, str] = {}
    for name, cert_no in NAMED.findall(walk_section(text)):
        assert found.setdefault(name, cert_no) == cert_no, f"{name}: two ID numbers"
    return found


def staff_token_command(text: str, role: str) -> re.Match[str]:
    """The README's ``gongji token ... --role ROLE`` command for a staff token."""
    found = re.search(rf"gongji token (\d{{17}}[\dX]) --role {role}(?: --institution (\w+))?", text)
    assert found is not None, f"the README shows no token command for {role}"
    return found


def blocks_of(text: str) -> list[str]:
    """The ```graphql blocks of a Markdown text."""
    found: list[str] = re.findall(r"^```graphql\n(.*?)^```", text, re.M | re.S)
    return found


def graphql_blocks() -> Iterator[tuple[str, str]]:
    """``(key, source)`` of every ```graphql block of README.md and docs/frontend.md; the
    key is the file and the operation's name (or, unnamed, its place and first line)."""
    for path in (README, FRONTEND):
        for index, source in enumerate(blocks_of(path.read_text("utf-8"))):
            names = [
                d.name.value
                for d in parse(source).definitions
                if isinstance(d, OperationDefinitionNode) and d.name is not None
            ]
            where = names[0] if len(names) == 1 else f"#{index}: {source.splitlines()[0][:40]}"
            yield f"{path.relative_to(ROOT)} {where}", source


# -- the walk --------------------------------------------------------------------------------

BIND = "mutation Bind"  # the README's own operation (its block starts so)
RECORDS = "query Records"
RESPOND = """mutation($id: ID!) {
  respondToMutualAidBinding(bindingId: $id, accept: true) { binding { id status } errors { code } }
}"""
LINK = "{ link { id status } errors { code field } }"
ADD = f"mutation($input: AddKinshipMemberInput!) {{ addKinshipMember(input: $input) {LINK} }}"
CONSENT = f"mutation($id: ID!) {{ respondToKinshipRequest(requestId: $id, accept: true) {LINK} }}"
QUEUE = "{ kinshipReviewQueue { id status adder { certNo } member { certNo } } }"
REVIEW = f"mutation($id: ID!) {{ reviewKinshipRequest(requestId: $id, approve: true) {LINK} }}"
ACTIVATE = f"""mutation($id: ID!, $password: String!) {{
  activateKinshipMember(memberId: $id, paymentPassword: $password) {LINK}
}}"""
VOUCHER = """mutation($id: ID!) {
  kinshipVoucher(memberId: $id) { voucher { code expiresAt } errors { code field } }
}"""
SETTLEMENT_FIELDS = """settlement { id status selfPay ownAccountPaid mutualAidPaid
  mutualAidPayer { name } cashDue patientBalanceAfter mutualAidPayerBalanceAfter }
  errors { code field }"""
SETTLE = f"mutation($input: SettleInput!) {{ settle(input: $input) {{ {SETTLEMENT_FIELDS} }} }}"
REVERSE = f"""mutation($id: ID!, $reason: String!) {{
  reverseSettlement(settlementId: $id, reason: $reason) {{ {SETTLEMENT_FIELDS} }}
}}"""
DIAGNOSIS = """query($relative: String!) {
  mutualAidDiagnosis(relativeCertNo: $relative) { works payer { name } reasons { code } }
}"""
BALANCE = "{ me { account { balance } } }"
PDF = b"%PDF-1.4\n% a synthetic birth certificate\n" + b"0" * 64


def uppercase(value: Any) -> Iterator[str]:
    """Every code-like string in an answer (statuses, error codes, reasons)."""
    if isinstance(value, dict):
        for inner in value.values():
            yield from uppercase(inner)
    elif isinstance(value, list):
        for inner in value:
            yield from uppercase(inner)
    elif isinstance(value, str) and re.fullmatch(r"[A-Z][A-Z_]+", value):
        yield value


def refused(payload: dict[str, Any]) -> str:
    """The one code a write was refused with."""
    errors = payload["errors"]
    assert len(errors) == 1, payload
    code: str = errors[0]["code"]
    return code


def done(payload: dict[str, Any], what: str = "binding") -> dict[str, Any]:
    """What a write that was not refused made (``binding``, ``link``, ``settlement``)."""
    assert payload["errors"] == [], payload
    made: dict[str, Any] = payload[what]
    return made


@dataclass
class Walk:
    """One fresh world, the README's people in it, and what earlier rows left behind."""

    gql: GraphQL
    text: str
    certs: dict[str, str] = field(default_factory=dict)
    seen: set[str] = field(default_factory=set)  # the codes the current row has met
    settled: dict[str, Any] | None = None  # the current row's last settlement
    kept: dict[str, Any] = field(default_factory=dict)  # for the rows after

    def __post_init__(self) -> None:
        self.certs = people_named(self.text)
        self.blocks = blocks_of(self.text)
        hospital = staff_token_command(self.text, INSTITUTION)
        self.hospital = mint_token(
            hospital[1],
            self.gql.auth,
            roles=frozenset({INSTITUTION}),
            institution=Institution(hospital[2], "HOSPITAL"),
        )
        reviewer = staff_token_command(self.text, REVIEWER)
        self.reviewer = mint_token(reviewer[1], self.gql.auth, roles=frozenset({REVIEWER}))
        self.password = re.findall(r'paymentPassword: "(\d+)"', self.text)[0]

    def cert(self, name: str) -> str:
        assert name in self.certs, f"the README never gives {name}'s ID number"
        return self.certs[name]

    def token(self, name: str) -> str:
        key = next(k for k, p in PEOPLE.items() if p["certNo"] == self.cert(name))
        return self.gql.token(key)

    def block(self, opening: str) -> str:
        """The README's ```graphql block that starts with ``opening``."""
        found = [b for b in self.blocks if b.startswith(opening)]
        assert len(found) == 1, f"the README shows no one block {opening!r}"
        return found[0]

    async def run(
        self, query: str, variables: dict[str, Any] | None = None, *, as_: str | None = None
    ) -> dict[str, Any]:
        """The operation as ``as_`` (a name, or a staff token): its data, without errors."""
        token = self.token(as_) if as_ is not None and as_ in NAMES else as_
        result = await self.gql(query, variables, token=token)
        assert "errors" not in result, result
        data: dict[str, Any] = result["data"]
        self.seen.update(uppercase(data))
        return data

    async def bind(
        self, row: Row, authorizer: str, relative: str, relation: str, **extra: Any
    ) -> dict[str, Any]:
        row.says(authorizer, relative, relation)
        given = {
            "beneficiaryCertNo": self.cert(relative),
            "beneficiaryName": relative,
            "relation": relation,
            **extra,
        }
        data = await self.run(self.block(BIND), {"input": given}, as_=authorizer)
        payload: dict[str, Any] = data["bindMutualAid"]
        return payload

    async def add(
        self,
        row: Row,
        adder: str,
        member: str,
        relation: str,
        *,
        channel: str = "APP",
        recorded: str | None = None,
    ) -> dict[str, Any]:
        """``addKinshipMember``; with ``recorded``, a birth certificate recording the
        member as that relation, uploaded (a GraphQL multipart request)."""
        row.says(adder, member, relation, *([recorded] if recorded else []))
        given: dict[str, Any] = {
            "memberCertNo": self.cert(member),
            "memberName": member,
            "relation": relation,
            "channel": channel,
        }
        if recorded is None:
            data = await self.run(ADD, {"input": given}, as_=adder)
        else:
            given["documents"] = [
                {
                    "kind": "BIRTH_CERTIFICATE",
                    "file": None,
                    "recordedCertNo": self.cert(member),
                    "recordedRelation": recorded,
                }
            ]
            operations = {"query": ADD, "variables": {"input": given}}
            response = await self.gql.client.post(
                "/graphql",
                data={
                    "operations": json.dumps(operations),
                    "map": json.dumps({"0": ["variables.input.documents.0.file"]}),
                },
                files={"0": ("birth-certificate.pdf", PDF, "application/pdf")},
                headers={"Authorization": f"Bearer {self.token(adder)}"},
            )
            assert response.status_code == 200, response.text
            result = response.json()
            assert "errors" not in result, result
            data = result["data"]
            self.seen.update(uppercase(data))
        payload: dict[str, Any] = data["addKinshipMember"]
        return payload

    async def settle(self, row: Row, patient: str, total: str, fund: str, key: str) -> Any:
        row.says(patient, total, fund)
        given = {
            "patientCertNo": self.cert(patient),
            "medicalType": "OUTPATIENT",
            "totalAmount": total,
            "fundPaid": fund,
            "idempotencyKey": key,
        }
        data = await self.run(SETTLE, {"input": given}, as_=self.hospital)
        self.settled = done(data["settle"], "settlement")
        return self.settled

    async def balance(self, name: str) -> Decimal:
        data = await self.run(BALANCE, as_=name)
        return Decimal(data["me"]["account"]["balance"])


Step = Callable[[Walk, Row], Awaitable[None]]
STEPS: dict[tuple[str, str], Step] = {}


def step(table: str, title: str) -> Callable[[Step], Step]:
    """The step that does what the row titled ``title`` of ``table`` says."""

    def register(function: Step) -> Step:
        assert (table, title) not in STEPS, f"two steps for {title!r}"
        STEPS[table, title] = function
        return function

    return register


# -- the mutual-aid table: bind a relative ------------------------------------------------


@step(MUTUAL_AID, "Hebei's cap of 8")
async def hebei_cap(walk: Walk, row: Row) -> None:
    *eight, ninth = row.relatives(row.do)
    assert len(eight) == 8
    for relative, relation in eight:
        bound = await walk.bind(row, "王建国", relative, relation)
        assert done(bound)["status"] == "ACTIVE", (relative, bound)
    assert refused(await walk.bind(row, "王建国", *ninth)) == "BINDING_LIMIT_REACHED"


@step(MUTUAL_AID, "A parent-in-law")
async def parent_in_law(walk: Walk, row: Row) -> None:
    [(relative, relation)] = row.relatives(row.do)
    assert refused(await walk.bind(row, "王建国", relative, relation)) == "RELATION_NOT_ALLOWED"


@step(MUTUAL_AID, "Jiangsu spouse confirms")
async def jiangsu_spouse(walk: Walk, row: Row) -> None:
    [(spouse, relation)] = row.relatives(row.do)
    row.says("`commitmentSigned: true`")
    asked = done(await walk.bind(row, "陈志强", spouse, relation, commitmentSigned=True))
    assert asked["status"] == "PENDING_CONFIRMATION"
    answer = await walk.run(RESPOND, {"id": asked["id"]}, as_=spouse)
    assert done(answer["respondToMutualAidBinding"])["status"] == "ACTIVE"


@step(MUTUAL_AID, "Jiangsu without the letter")
async def jiangsu_no_letter(walk: Walk, row: Row) -> None:
    [(child, relation)] = row.relatives(row.do)
    row.says("`commitmentSigned: false`")
    unsigned = await walk.bind(row, "陈志强", child, relation, commitmentSigned=False)
    assert refused(unsigned) == "COMMITMENT_REQUIRED"


@step(MUTUAL_AID, "Henan single binding")
async def henan_single(walk: Walk, row: Row) -> None:
    [(child, relation)] = row.relatives(row.do)
    assert done(await walk.bind(row, "赵磊", child, relation))["status"] == "ACTIVE"
    assert refused(await walk.bind(row, "孙丽", child, relation)) == "ALREADY_BOUND"


@step(MUTUAL_AID, "Henan same city only")
async def henan_same_city(walk: Walk, row: Row) -> None:
    [(father, relation)] = row.relatives(row.do)
    assert refused(await walk.bind(row, "赵磊", father, relation)) == "CROSS_AREA_NOT_ALLOWED"


@step(MUTUAL_AID, "Across provinces")
async def across_provinces(walk: Walk, row: Row) -> None:
    [son] = NAME.findall(row.as_)
    [(mother, relation)] = row.relatives(row.do)
    [balance] = row.amounts(row.as_)
    [quota] = re.findall(r'quota: "(\d+\.\d\d)"', row.do)
    assert await walk.balance(son) == Decimal(balance)
    assert refused(await walk.bind(row, son, mother, relation)) == "QUOTA_REQUIRED"
    made = done(await walk.bind(row, son, mother, relation, quota=quota))
    assert made["status"] == "ACTIVE"
    assert made["quota"] == {"granted": quota, "remaining": quota}
    assert (made["province"]["code"], made["beneficiaryProvince"]["code"]) == ("13", "32")
    after = Decimal(balance) - Decimal(quota)
    assert f"`{after}`" in row.expect
    assert await walk.balance(son) == after
    # the era before: another world, on the date the row names
    day = dt.date.fromisoformat(re.findall(r"--policy-date (\S+)`", row.expect)[0])
    async with gateway({}, Settings(data_dir=None, policy_date=day)) as before:
        old = Walk(before, walk.text)
        assert refused(await old.bind(row, son, mother, relation, quota=quota)) == (
            "CROSS_PROVINCE_NOT_ALLOWED"
        )
    walk.seen.add("CROSS_PROVINCE_NOT_ALLOWED")


# -- the kinship table: add a member -------------------------------------------------------


@step(KINSHIP, "A 17-year-old consents")
async def kinship_consents(walk: Walk, row: Row) -> None:
    [(son, relation)] = row.relatives(row.do)
    channel = re.findall(r"channel (\w+)", row.do)[0]
    asked = done(await walk.add(row, "王建国", son, relation, channel=channel), "link")
    assert asked["status"] == "PENDING_CONSENT"
    consent = await walk.run(CONSENT, {"id": asked["id"]}, as_=son)
    assert done(consent["respondToKinshipRequest"], "link")["status"] == "APPROVED"
    row.says(walk.password)
    active = await walk.run(ACTIVATE, {"id": asked["id"], "password": walk.password}, as_="王建国")
    assert done(active["activateKinshipMember"], "link")["status"] == "ACTIVE"
    voucher = await walk.run(VOUCHER, {"id": asked["id"]}, as_="王建国")
    assert done(voucher["kinshipVoucher"], "voucher")["code"]


@step(KINSHIP, "A 13-year-old needs a document")
async def kinship_document(walk: Walk, row: Row) -> None:
    [(daughter, relation)] = row.relatives(row.do)
    bare = await walk.add(row, "王建国", daughter, relation)
    assert refused(bare) == "DOCUMENT_REQUIRED"
    shown = await walk.add(row, "王建国", daughter, relation, recorded=relation)
    assert done(shown, "link")["status"] == "APPROVED"
    # the mother's certificate records something else: a reviewer decides
    other = await walk.add(row, "李秀英", daughter, relation, recorded="GRANDCHILD")
    waiting = done(other, "link")
    assert waiting["status"] == "PENDING_REVIEW"
    queue = (await walk.run(QUEUE, as_=walk.reviewer))["kinshipReviewQueue"]
    assert [q["id"] for q in queue] == [waiting["id"]]
    assert queue[0]["member"]["certNo"] == walk.cert(daughter)  # unmasked, for the reviewer
    approved = await walk.run(REVIEW, {"id": waiting["id"]}, as_=walk.reviewer)
    assert done(approved["reviewKinshipRequest"], "link")["status"] == "APPROVED"


@step(KINSHIP, "Across provinces")
async def kinship_across_provinces(walk: Walk, row: Row) -> None:
    [(mother, relation)] = row.relatives(row.do)
    added = done(await walk.add(row, "刘洋", mother, relation), "link")
    assert added["status"] == "PENDING_CONSENT"


@step(KINSHIP, "The newborn")
async def kinship_newborn(walk: Walk, row: Row) -> None:
    [(baby, relation)] = row.relatives(row.do)
    added = done(await walk.add(row, "赵磊", baby, relation, recorded=relation), "link")
    assert added["status"] == "APPROVED"
    active = await walk.run(ACTIVATE, {"id": added["id"], "password": walk.password}, as_="赵磊")
    assert refused(active["activateKinshipMember"]) == "MEMBER_INSURANCE_NOT_EFFECTIVE"


@step(KINSHIP, "The limits")
async def kinship_limits(walk: Walk, row: Row) -> None:
    *five, sixth = row.relatives(row.do)
    assert len(five) == 5
    for member, relation in five:
        added = done(await walk.add(row, "王磊", member, relation), "link")
        assert added["status"] == "PENDING_CONSENT", member
    assert refused(await walk.add(row, "王磊", *sixth)) == "KINSHIP_ADDER_LIMIT_REACHED"
    second = done(await walk.add(row, "王静", "王芳", "SIBLING"), "link")
    assert second["status"] == "PENDING_CONSENT"
    third = await walk.add(row, "王鹏", "王芳", "SIBLING")
    assert refused(third) == "KINSHIP_MEMBER_LIMIT_REACHED"


# -- the settlement table: the hospital settles, the family reads --------------------------


@step(SETTLEMENT, "The son of two")
async def son_of_two(walk: Walk, row: Row) -> None:
    for parent in ("陈志强", "刘芳"):
        bound = await walk.bind(row, parent, "陈晨", "CHILD", commitmentSigned=True)
        assert done(bound)["status"] == "ACTIVE", parent
    total, fund = row.amounts(row.do)
    paid = await walk.settle(row, "陈晨", total, fund, "readme-son-of-two")
    assert paid["mutualAidPayer"] == {"name": "陈*强"}
    untouched = row.amounts(row.expect)[-1]
    assert await walk.balance("刘芳") == Decimal(untouched)  # never a second authorizer


@step(SETTLEMENT, "An empty account")
async def empty_account(walk: Walk, row: Row) -> None:
    assert done(await walk.bind(row, "刘洋", "刘一诺", "CHILD"))["status"] == "ACTIVE"
    total, fund = row.amounts(row.do)
    paid = await walk.settle(row, "刘一诺", total, fund, "readme-empty-account")
    assert paid["mutualAidPayer"] is None
    row.says(f'relativeCertNo: "{walk.cert("刘一诺")}"')
    why = await walk.run(DIAGNOSIS, {"relative": walk.cert("刘一诺")}, as_="刘洋")
    assert why["mutualAidDiagnosis"]["reasons"] == [{"code": "BALANCE_ZERO"}]


@step(SETTLEMENT, "Own account first")
async def own_account_first(walk: Walk, row: Row) -> None:
    row.says("王建国 bound 王磊")  # in the cap row: 王建国 still has all his balance
    total, fund = row.amounts(row.do)
    paid = await walk.settle(row, "王磊", total, fund, "readme-own-account-first")
    assert paid["mutualAidPayer"] == {"name": "王*国"}
    assert paid["patientBalanceAfter"] == "0.00"
    walk.kept["王磊's bill"] = paid


@step(SETTLEMENT, "A retry")
async def retry(walk: Walk, row: Row) -> None:
    total, fund = row.amounts(row.do)
    [charged] = row.amounts(row.expect)
    before = await walk.balance("王建国")
    first = await walk.settle(row, "王静", total, fund, "readme-retry")
    again = await walk.settle(row, "王静", total, fund, "readme-retry")
    assert again == first
    assert await walk.balance("王建国") == before - Decimal(charged)
    walk.kept["王静's bill"] = first


@step(SETTLEMENT, "A mistake")
async def mistake(walk: Walk, row: Row) -> None:
    bill = walk.kept["王磊's bill"]
    row.says("王磊's bill", "王建国")
    own, back = (Decimal(a) for a in row.amounts(row.expect))
    before = await walk.balance("王建国")
    reason = {"id": bill["id"], "reason": "收费录入错误"}
    undone = await walk.run(REVERSE, reason, as_=walk.hospital)
    assert done(undone["reverseSettlement"], "settlement")["status"] == "REVERSED"
    twice = await walk.run(REVERSE, reason, as_=walk.hospital)
    assert refused(twice["reverseSettlement"]) == "SETTLEMENT_ALREADY_REVERSED"
    assert await walk.balance("王磊") == own
    assert await walk.balance("王建国") == before + back


@step(SETTLEMENT, "What did I pay?")
async def what_did_i_pay(walk: Walk, row: Row) -> None:
    row.says("`Records`")
    me = (await walk.run(walk.block(RECORDS), as_="王建国"))["me"]
    spending = me["spendingRecords"]
    newest_first = [(e["node"]["amount"], e["node"]["status"]) for e in spending["edges"]]
    wang_jing, wang_lei = walk.kept["王静's bill"], walk.kept["王磊's bill"]
    assert newest_first == [
        (wang_jing["mutualAidPaid"], "SETTLED"),
        (wang_lei["mutualAidPaid"], "REVERSED"),
    ]
    granted = me["authorizationRecords"]
    assert [e["node"]["event"] for e in granted["edges"]] == ["CREATED"] * 8  # the cap row
    moments = [e["node"]["at"] for e in granted["edges"]]
    assert moments == sorted(moments, reverse=True)
    for connection in (spending, granted):
        cursors = [e["cursor"] for e in connection["edges"]]
        assert all(cursors)
        assert len(set(cursors)) == len(cursors)
        assert connection["pageInfo"] == {"hasNextPage": False, "endCursor": cursors[-1]}


def test_the_walk_names_roster_people_and_the_playgrounds_staff() -> None:
    text = README.read_text("utf-8")
    for name, cert_no in people_named(text).items():
        assert name in NAMES, f"{name} is not in fixtures/roster.json"
        found = next(p for p in PEOPLE.values() if p["name"] == name)
        assert found["certNo"] == cert_no, f"{name}: the roster says {found['certNo']}"
    hospital = staff_token_command(text, INSTITUTION)
    cashier = STAFF["hospital_cashier"]
    assert (hospital[1], hospital[2]) == (cashier["cert_no"], cashier["institution"]["code"])
    assert staff_token_command(text, REVIEWER)[1] == STAFF["reviewer_zhou"]["cert_no"]


def test_every_row_of_the_walk_has_a_step_and_every_step_a_row() -> None:
    rows = [row.key for row in walk_rows(README.read_text("utf-8"))]
    assert len(set(rows)) == len(rows), "two rows of a table with one title"
    assert [k for k in rows if k not in STEPS] == [], "rows of the README without a step"
    assert [k for k in STEPS if k not in rows] == [], "steps without a row in the README"


async def test_the_readme_walk_runs_top_to_bottom_on_one_fresh_world(tmp_path: Path) -> None:
    """As a newcomer would: `gongji serve`'s embedded defaults on a new data directory
    (the store and the sandbox provinces in files, seeded from the roster)."""
    async with gateway({}, Settings(data_dir=tmp_path / "data")) as gql:
        await walk_the_readme(gql)
    sandboxes = sorted(p.stem for p in (tmp_path / "data").glob("sandbox/*.sqlite3"))
    # one file per installed province, not memory (the gateway's own store: on its backend)
    assert sandboxes == sorted(adapter_classes())
    assert {"hebei", "jiangsu", "henan"} <= set(sandboxes)


async def walk_the_readme(gql: GraphQL) -> None:
    text = README.read_text("utf-8")
    walk = Walk(gql, text)
    for row in walk_rows(text):
        walk.seen, walk.settled = set(), None
        if row.key not in STEPS:
            pytest.fail(f"the README's row {row.key} has no step here")
        await STEPS[row.key](walk, row)
        missing = [code for code in row.codes() if code not in walk.seen]
        assert not missing, f"{row.title!r} expects {missing}, never answered"
        if row.claims():
            assert walk.settled is not None, f"{row.title!r}: no settlement to check"
            found = {name: walk.settled[name] for name in row.claims()}
            assert found == row.claims(), f"{row.title!r}"


# -- every operation the README and the front-end guide show -------------------------------


@dataclass(frozen=True)
class Shown:
    """How to run a shown operation: as whom (a roster or staff persona key, or nobody),
    with which variables, and what its answer must be."""

    as_: str | None
    check: Callable[[dict[str, Any]], None]
    variables: dict[str, Any] = field(default_factory=dict)


def masked(key: str) -> tuple[str, str]:
    """A roster person as anyone else sees them: ``("李*英", "130102********0029")``."""
    return mask_name(person(key)["name"]), mask_cert_no(person(key)["certNo"])


def check_provinces(data: dict[str, Any]) -> None:
    """The rules the walk's rows rely on."""
    rules = {p["code"]: p["policy"] for p in data["provinces"]}
    assert set(rules) == province_codes()
    assert (rules["13"]["maxRelatives"], rules["13"]["crossCity"]) == (8, True)
    assert (rules["32"]["spouseConfirmation"], rules["32"]["commitmentRequired"]) == (True, True)
    assert (rules["41"]["singleBinding"], rules["41"]["crossCity"]) == (True, False)
    for policy in rules.values():
        assert {"SPOUSE", "PARENT", "CHILD"} <= set(policy["allowedRelations"])
        assert "PARENT_IN_LAW" not in policy["allowedRelations"]


def check_me(data: dict[str, Any]) -> None:
    me, wang = data["me"], person("hb_wang_jianguo")
    assert (me["certNo"], me["name"]) == (wang["certNo"], wang["name"])  # the caller: unmasked
    assert me["insuredArea"]["code"] == wang["insuredArea"]
    assert me["insurance"] == {"type": "EMPLOYEE", "status": "ACTIVE"}
    assert me["account"] == {"balance": wang["accountBalance"]}
    assert me["mutualAidBindings"] == {"asAuthorizer": [], "asBeneficiary": []}


def check_bind(data: dict[str, Any]) -> None:
    payload = data["bindMutualAid"]
    binding = done(payload)
    assert (binding["status"], binding["relation"]) == ("ACTIVE", "SPOUSE")
    assert binding["province"] == {"code": "13"}
    name, cert_no = masked("hb_li_xiuying")  # anyone but the caller appears masked
    assert binding["beneficiary"] == {"name": name, "certNo": cert_no}
    assert binding["authorizer"]["name"] == "王建国"


def check_bind_across(data: dict[str, Any]) -> None:
    binding = done(data["bindMutualAid"])
    assert binding["status"] == "ACTIVE"
    assert binding["quota"] == {"granted": "1000.00", "remaining": "1000.00"}
    assert binding["province"] == {"code": "13"}
    assert binding["beneficiaryProvince"] == {"code": "32", "name": "江苏省"}


def check_premium(data: dict[str, Any]) -> None:
    # run on a fresh world: he has not bound his father there, as the guide says he must
    assert data["payResidentPremium"]["errors"] == [
        {"code": "NOT_BOUND", "message": "您尚未为该亲属开通家庭共济", "field": "beneficiaryCertNo"}
    ]


def check_records(data: dict[str, Any]) -> None:
    for connection in data["me"].values():  # a fresh world: nothing yet
        assert connection == {"edges": [], "pageInfo": {"hasNextPage": False, "endCursor": None}}


def check_family(data: dict[str, Any]) -> None:
    family = data["me"]["family"]
    # masked, two can share a number (李福, 王磊: 130102********0017), not with the name too
    shown = [(f["relative"]["name"], f["relative"]["certNo"]) for f in family]
    assert len(set(shown)) == len(shown), "every relative appears once"
    relative = dict(zip(shown, family, strict=True))
    assert relative[masked("hb_li_xiuying")]["relation"] == "SPOUSE"
    in_law = relative[masked("hb_li_fu")]
    assert in_law["relation"] == "PARENT_IN_LAW"
    assert in_law["mutualAid"]["verdict"]["state"] == "NOT_POSSIBLE"
    assert in_law["kinship"]["verdict"]["state"] == "NOT_POSSIBLE"
    for f in family:  # the states the guide's table lists
        mutual_aid, kinship = f["mutualAid"]["verdict"], f["kinship"]["verdict"]
        assert mutual_aid["state"] in {"BOUND", "PENDING_CONFIRMATION", "CAN_BIND", "NOT_POSSIBLE"}
        assert kinship["state"] in {
            "ADDED",
            "APPROVED",
            "PENDING_CONSENT",
            "PENDING_REVIEW",
            "CAN_ADD",
            "NOT_POSSIBLE",
        }
        assert mutual_aid["message"]
        assert kinship["message"]


def check_kinship_members(data: dict[str, Any]) -> None:
    assert data["me"] == {"kinshipMembers": [], "addedMeAsMember": []}  # a fresh world


SHOWN: dict[str, Shown] = {
    "README.md Provinces": Shown(None, check_provinces),
    "README.md Me": Shown("hb_wang_jianguo", check_me),
    "README.md Bind": Shown(
        "hb_wang_jianguo",
        check_bind,
        {
            "input": {
                "beneficiaryCertNo": person("hb_li_xiuying")["certNo"],
                "beneficiaryName": person("hb_li_xiuying")["name"],
                "relation": "SPOUSE",
            }
        },
    ),
    "README.md Records": Shown("hb_wang_jianguo", check_records),
    "docs/frontend.md Family": Shown("hb_wang_jianguo", check_family),
    "docs/frontend.md KinshipMembers": Shown("hb_wang_jianguo", check_kinship_members),
    "docs/frontend.md PayPremium": Shown(
        "hb_wang_jianguo",
        check_premium,
        {
            "input": {
                "beneficiaryCertNo": person("hb_wang_deming")["certNo"],
                "year": 2026,
                "idempotencyKey": "premium-2026-wang-deming",
            }
        },
    ),
    "docs/frontend.md BindAcross": Shown(
        "hb_liu_tao",
        check_bind_across,
        {
            "input": {
                "beneficiaryCertNo": person("js_zhang_shuzhen")["certNo"],
                "beneficiaryName": person("js_zhang_shuzhen")["name"],
                "relation": "PARENT",
                "quota": "1000.00",
            }
        },
    ),
}
BLOCKS = dict(graphql_blocks())
# Shown subscriptions: each is the document tests/test_subscriptions.py follows end to
# end over WebSocket and SSE (a subscription over a plain POST never answers).
SUBSCRIBED = {"docs/frontend.md FamilyEvents"}


def persona_token(gql: GraphQL, key: str | None) -> str | None:
    """A token for a roster person or a playground staff persona (its role, its institution)."""
    if key is None:
        return None
    if key in PEOPLE:
        return gql.token(key)
    staff = STAFF[key]
    roles = frozenset({staff["role"]})
    assert roles <= {ADMIN, INSTITUTION, REVIEWER}
    where = staff.get("institution")
    institution = Institution(where["code"], where["kind"]) if where else None
    return mint_token(staff["cert_no"], gql.auth, roles=roles, institution=institution)


def test_every_shown_operation_has_a_way_to_run_it() -> None:
    ways = SHOWN.keys() | SUBSCRIBED
    assert [k for k in BLOCKS if k not in ways] == [], "shown operations without an entry"
    assert [k for k in ways if k not in BLOCKS] == [], "entries of no shown operation"


def test_every_shown_subscription_is_the_one_followed_end_to_end() -> None:
    from tests.test_subscriptions import FOLLOW

    assert [k for k in BLOCKS if BLOCKS[k].lstrip().startswith("subscription")] == sorted(
        SUBSCRIBED
    )
    assert all(BLOCKS[k] == FOLLOW for k in SUBSCRIBED)


@pytest.mark.parametrize("key", [k for k in BLOCKS if k not in SUBSCRIBED])
async def test_every_shown_operation_runs(gql: GraphQL, key: str) -> None:
    shown = SHOWN.get(key)
    if shown is None:
        pytest.fail(f"{key}: say in SHOWN whom it runs as and what it answers")
    result = await gql(BLOCKS[key], shown.variables, token=persona_token(gql, shown.as_))
    assert "errors" not in result, result
    shown.check(result["data"])

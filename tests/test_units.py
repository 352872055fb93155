from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import logging
import types
from decimal import Decimal
from pathlib import Path
from typing import Any

import jwt
import pytest
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from adapters.base import (
    MedicalType,
    Party,
    Policy,
    Refusal,
    RefusalCode,
    Relation,
    Settlement,
    parse_money,
    policy_in_force,
)
from gateway.common.auth import INSTITUTION, Institution, InvalidToken, mint_token, verify_token
from gateway.common.beijing import china_date
from gateway.common.certno import (
    birth_date,
    check_character,
    is_valid,
    mask_cert_no,
    mask_name,
    mask_phone,
    normalize,
)
from gateway.common.channels import Channel
from gateway.common.ids import decode_id, encode_id
from gateway.common.messages import preferred_language
from gateway.common.refusals import GatewayCode
from gateway.ops.config import AuthSettings, KinshipPolicy, Settings
from gateway.ops.logs import MaskingFormatter, mask_cert_nos
from gateway.provinces.federated import Provinces, adapter_classes
from gateway.rules import documents, kinship
from tests.browser import served
from tests.conftest import ROSTER
from tests.doubles import Ledger
from tests.keys import AUTH as KEYS_AUTH
from tests.keys import JWKS_FILE, provider_token


def test_every_roster_id_number_is_valid() -> None:
    assert all(is_valid(p["certNo"]) for p in ROSTER["people"])


@pytest.mark.parametrize(
    "cert_no",
    [
        "13010219760315001",  # 17 characters
        "1301021976031500167",  # 19 characters
        "130102197602300016",  # February 30th
        "130602209901010014",  # born in 2099
        "130602000101010019",  # born in year 1
        "130102197603150017",  # wrong check character
        "13010219760315001X",  # X where 6 belongs
        "1301021976031５0016",  # a full-width digit
        "",
    ],
)
def test_malformed_id_numbers_are_refused(cert_no: str) -> None:
    assert not is_valid(cert_no)


def test_a_lowercase_x_check_character_is_the_same_number() -> None:
    assert is_valid(normalize(" 13010220121212002x "))
    assert birth_date("13010220121212002X") == dt.date(2012, 12, 12)


def test_personal_data_is_masked_the_same_way_everywhere() -> None:
    assert mask_cert_no("130102197603150016") == "130102********0016"
    assert mask_name("王建国") == "王*国"
    assert mask_name("王磊") == "王*"
    assert mask_name("欧阳娜娜") == "欧**娜"
    assert mask_phone("13800000000") == "138****0000"


@pytest.mark.parametrize(
    ("header", "lang"),
    [
        (None, "zh"),
        ("en", "en"),
        ("en-US,en;q=0.9", "en"),
        ("zh-CN,zh;q=0.9,en;q=0.8", "zh"),
        ("zh;q=0.5, en;q=0.8", "en"),
        ("fr", "zh"),
        ("en;q=bogus", "zh"),
    ],
)
def test_english_only_when_the_request_prefers_it(header: str | None, lang: str) -> None:
    assert preferred_language(header) == lang


def test_refusal_codes_are_the_provinces_and_the_gateways_each_with_messages() -> None:
    """A province's vocabulary holds only what a province may answer; the gateway's own
    codes are its own; the graph's ErrorCode is both, every code with both messages."""
    from gateway.common.messages import REFUSAL_CODES, refusal_message
    from gateway.graph.schema import schema

    province = {c.value for c in RefusalCode}
    gateway = {c.value for c in GatewayCode}
    assert not province & gateway
    assert {c.value for c in REFUSAL_CODES} == province | gateway
    assert len(REFUSAL_CODES) == len(province) + len(gateway)
    listed = schema.as_str().split("enum ErrorCode {", 1)[1].split("}", 1)[0].split()
    assert set(listed) == province | gateway
    for code in REFUSAL_CODES:
        zh, en = refusal_message(code, "zh"), refusal_message(code, "en")
        assert zh
        assert en != zh


def test_global_ids_round_trip_and_garbage_decodes_to_nothing() -> None:
    gid = encode_id("MutualAidBinding", "13", "HB00000001")
    assert decode_id(gid, "MutualAidBinding") == ("13", "HB00000001")
    assert decode_id(gid, "KinshipLink") is None
    assert decode_id("not-an-id!", "MutualAidBinding") is None
    assert decode_id(encode_id("MutualAidBinding", "", "x"), "MutualAidBinding") is None


def test_money_never_passes_through_float() -> None:
    assert str(parse_money("3200")) == "3200.00"
    with pytest.raises(ValueError, match="money"):
        parse_money(3200.0)
    with pytest.raises(ValueError, match="finite"):
        parse_money("NaN")


def test_the_policy_in_force_is_the_latest_one_already_effective() -> None:
    old = Policy(effective_from=dt.date(2023, 1, 1))
    new = Policy(effective_from=dt.date(2027, 1, 1), cross_province=True)
    assert policy_in_force([new, old], dt.date(2026, 11, 23)) is old
    assert policy_in_force([new, old], dt.date(2027, 1, 1)) is new
    with pytest.raises(LookupError):
        policy_in_force([new], dt.date(2026, 1, 1))


def test_a_policy_allows_one_relative_at_least_and_reads_its_overrides() -> None:
    with pytest.raises(ValueError, match="max_relatives"):
        Policy(effective_from=dt.date(2024, 1, 1), max_relatives=0)
    one = Policy(effective_from=dt.date(2024, 1, 1), max_relatives=1)
    changed = one.with_changes(
        effective_from="2026-01-09", allowed_relations=["SIBLING", Relation.SPOUSE]
    )
    assert changed.effective_from == dt.date(2026, 1, 9)
    assert changed.allowed_relations == frozenset({Relation.SIBLING, Relation.SPOUSE})
    assert changed.max_relatives == 1
    assert one.with_changes(cross_city=True) == dataclasses.replace(one, cross_city=True)


def _settlement(**amounts: object) -> Settlement:
    fields: dict[str, object] = {
        "total": Decimal("300.00"),
        "fund_paid": Decimal("100.00"),
        "self_pay": Decimal("200.00"),
        "own_account_paid": Decimal("50.00"),
        "mutual_aid_paid": Decimal("120.00"),
        "mutual_aid_payer": Party("130102197603150016", "王建国"),
        "cash_due": Decimal("30.00"),
        **amounts,
    }
    return Settlement(
        id="S1",
        institution_code="H13010001",
        patient=Party("130102197807020029", "李秀英"),
        medical_type=MedicalType.OUTPATIENT,
        patient_balance_after=None,
        payer_balance_after=None,
        settled_at=dt.datetime(2026, 11, 23, 8, 0, tzinfo=dt.UTC),
        **fields,  # type: ignore[arg-type]
    )


def test_a_settlement_adds_up_or_is_not_made() -> None:
    """What every province's answer must satisfy (an answer that breaks it is a contract
    error): no negative part, fund and self-pay make the total, own account, mutual aid
    and cash make the self-pay part, and mutual aid paid has its payer and only then."""
    assert _settlement().cash_due == Decimal("30.00")
    nobody = {"mutual_aid_paid": Decimal(0), "mutual_aid_payer": None, "cash_due": Decimal(150)}
    assert _settlement(**nobody).mutual_aid_payer is None
    zero = Decimal(0)
    parts = ("total", "fund_paid", "self_pay", "own_account_paid", "mutual_aid_paid", "cash_due")
    for part in parts:  # each part below zero is refused before the sums are weighed
        with pytest.raises(ValueError, match="negative"):
            _settlement(**{part: Decimal("-0.01")})
    with pytest.raises(ValueError, match="total"):
        _settlement(total=Decimal("300.01"))
    with pytest.raises(ValueError, match="self-pay part"):
        _settlement(cash_due=Decimal("30.01"))
    with pytest.raises(ValueError, match="payer"):  # paid, nobody paying
        _settlement(mutual_aid_payer=None)
    with pytest.raises(ValueError, match="payer"):  # a payer who paid nothing
        _settlement(mutual_aid_paid=zero, cash_due=Decimal(150))


def test_a_policy_change_is_a_configuration_change(tmp_path: Path) -> None:
    config = tmp_path / "gongji.toml"
    config.write_text(
        """
data_dir = "state"
mode = "production"
[auth]
issuer = "test"
jwks_file = "JWKS"
[provinces.henan]
timeout = 1.5
[provinces.henan.policy]
max_relatives = 6
allowed_relations = ["SPOUSE", "PARENT", "CHILD", "GRANDPARENT"]
[[provinces.hebei.policies]]
effective_from = 2027-01-01
max_relatives = 8
cross_city = true
cross_province = true
""".replace("JWKS", str(JWKS_FILE)),
        encoding="utf-8",
    )
    settings = Settings.load(config, environ={"GONGJI_JWT_SECRET": "s" * 40})
    assert settings.data_dir == Path("state")
    assert settings.auth.secret == "s" * 40
    assert settings.auth.issuer == "test"
    henan = settings.provinces["henan"]
    assert henan.timeout == 1.5
    assert henan.policy_overrides["max_relatives"] == 6
    (future,) = settings.provinces["hebei"].extra_policies
    assert future.cross_province
    assert future.effective_from == dt.date(2027, 1, 1)
    assert (
        Relation.GRANDPARENT
        in Policy(effective_from=dt.date(2023, 1, 1))
        .with_changes(allowed_relations=["GRANDPARENT"])
        .allowed_relations
    )


def test_unknown_province_settings_are_refused(tmp_path: Path) -> None:
    config = tmp_path / "gongji.toml"
    config.write_text('[provinces.hebei]\nbase_ulr = "http://typo"\n', encoding="utf-8")
    with pytest.raises(ValueError, match="base_ulr"):
        Settings.load(config, environ={})


def test_two_adapters_may_not_claim_the_same_province() -> None:
    class Fake:
        code = "13"

    with pytest.raises(ValueError, match="13"):
        Provinces([Fake(), Fake()])  # type: ignore[list-item]


def test_log_lines_never_carry_a_full_id_number() -> None:
    record = logging.LogRecord(
        "httpx",
        logging.INFO,
        __file__,
        1,
        "HTTP Request: GET %s",
        ("http://js/api/v1/persons?certNos=130102197603150016%2C32030219810915002X",),
        None,
    )
    line = MaskingFormatter("%(message)s").format(record)
    assert line == (
        "HTTP Request: GET http://js/api/v1/persons?certNos=130102********0016%2C320302********002X"
    )
    assert mask_cert_nos("order 1234567890123456789012 /persons/13010220121212002x/r") == (
        "order 1234567890123456789012 /persons/130102********002x/r"
    )


# -- kinship building blocks -------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"", GatewayCode.DOCUMENT_EMPTY),
        (b"%PDF-1.7 ...", "application/pdf"),
        (b"\x89PNG\r\n\x1a\n....", "image/png"),
        (b"\xff\xd8\xff\xe0....", "image/jpeg"),
        (b"GIF89a....", GatewayCode.DOCUMENT_TYPE_NOT_ALLOWED),
        (b"<html>%PDF-", GatewayCode.DOCUMENT_TYPE_NOT_ALLOWED),
        (b"%PDF-" + b"x" * 20, GatewayCode.DOCUMENT_TOO_LARGE),
    ],
)
def test_documents_are_judged_by_their_bytes(content: bytes, expected: object) -> None:
    assert documents.check(content, max_bytes=20) == expected


@pytest.mark.parametrize(
    ("password", "ok"),
    [
        ("285714", True),
        ("100200", True),
        ("123456", False),
        ("654321", False),
        ("888888", False),
        ("12345", False),
        ("1234567", False),
        ("12a456", False),
        ("１２８５７４", False),  # full-width digits
    ],
)
def test_payment_passwords(password: str, ok: bool) -> None:
    assert kinship.password_ok(password) is ok


def test_payment_passwords_are_salted_slow_hashes() -> None:
    first, second = kinship.hash_password("285714"), kinship.hash_password("285714")
    assert first.startswith("scrypt$16384$8$1$")
    assert first != second
    assert "285714" not in first
    assert kinship.verify_password("285714", first)
    assert not kinship.verify_password("285715", first)


@pytest.mark.parametrize(
    ("day", "n", "expected"),
    [
        (dt.date(2026, 11, 23), 1, dt.date(2026, 11, 24)),  # Monday → Tuesday
        (dt.date(2026, 11, 27), 1, dt.date(2026, 11, 30)),  # Friday → Monday
        (dt.date(2026, 11, 28), 2, dt.date(2026, 12, 1)),  # Saturday → Tuesday
    ],
)
def test_working_days(day: dt.date, n: int, expected: dt.date) -> None:
    assert kinship.add_working_days(day, n) == expected


def test_ages_from_id_numbers() -> None:
    born = "130102201212120028"[:17]
    cert = born + check_character(born)
    assert kinship.age_on(cert, dt.date(2026, 12, 11)) == 13
    assert kinship.age_on(cert, dt.date(2026, 12, 12)) == 14


def test_relations_have_inverses() -> None:
    for relation in Relation:
        assert relation.inverse.inverse is relation
    assert Relation.GRANDPARENT.inverse is Relation.GRANDCHILD
    assert Relation.SPOUSE.inverse is Relation.SPOUSE


def test_kinship_policy_from_configuration(tmp_path: Path) -> None:
    config = tmp_path / "gongji.toml"
    config.write_text(
        '[kinship]\nmax_members = 4\nallowed_relations = ["SPOUSE", "CHILD"]\n'
        "review_working_days = [2, 3]\n",
        encoding="utf-8",
    )
    policy = Settings.load(config, environ={}).kinship
    assert policy.max_members == 4
    assert policy.allowed_relations == {Relation.SPOUSE, Relation.CHILD}
    assert policy.review_working_days == (2, 3)
    assert policy.max_adders == 2


def test_tokens_carry_only_known_roles() -> None:
    auth = AuthSettings()
    with pytest.raises(ValueError, match="unknown roles"):
        mint_token("130102197603150016", auth, roles=frozenset({"ROOT"}))
    forged = jwt.encode(
        {
            "sub": "130102197603150016",
            "iss": auth.issuer,
            "aud": auth.audience,
            "iat": 1,
            "exp": 2**40,
            "roles": ["REVIEWER", "ROOT"],
        },
        auth.secret,
        algorithm="HS256",
    )
    assert verify_token(forged, auth).roles == {"REVIEWER"}
    bad = jwt.encode(
        {
            "sub": "130102197603150016",
            "iss": auth.issuer,
            "aud": auth.audience,
            "iat": 1,
            "exp": 2**40,
            "roles": "REVIEWER",
        },
        auth.secret,
        algorithm="HS256",
    )
    with pytest.raises(InvalidToken):
        verify_token(bad, auth)


def test_review_days_count_from_the_beijing_date() -> None:
    # Monday 07:00 in Beijing is still Sunday in UTC: one working day is Tuesday, not Monday
    created = dt.datetime(2026, 11, 22, 23, 0, tzinfo=dt.UTC)
    assert china_date(created) == dt.date(2026, 11, 23)
    link = kinship.KinshipLink(
        id="x",
        adder=Party("130102197603150016", "王建国"),
        member=Party("13010220121212002X", "王悦"),
        relation=Relation.CHILD,
        channel=Channel.APP,
        status=kinship.LinkStatus.PENDING_REVIEW,
        created_at=created,
    )
    assert link.expected_decision(KinshipPolicy()) == (dt.date(2026, 11, 24), dt.date(2026, 11, 25))


def test_institution_tokens_name_their_institution() -> None:
    auth = AuthSettings()
    hospital = Institution("H13010001", "HOSPITAL")
    token = mint_token(
        "130102197603150016", auth, roles=frozenset({INSTITUTION}), institution=hospital
    )
    caller = verify_token(token, auth)
    assert caller.institution == hospital
    assert caller.roles == {INSTITUTION}
    with pytest.raises(ValueError, match="go together"):
        mint_token("130102197603150016", auth, roles=frozenset({INSTITUTION}))
    with pytest.raises(ValueError, match="go together"):
        mint_token("130102197603150016", auth, institution=hospital)
    with pytest.raises(ValueError, match="one of"):
        Institution("H1", "CLINIC")
    with pytest.raises(ValueError, match="letters and digits"):
        Institution("H 1", "HOSPITAL")


@pytest.mark.parametrize("named", [None, "H1", {"code": "H1"}, {"code": "H 1", "kind": "HOSPITAL"}])
def test_an_institution_role_without_a_valid_institution_is_refused(named: object) -> None:
    auth = AuthSettings()
    claims: dict[str, object] = {
        "sub": "130102197603150016",
        "iss": auth.issuer,
        "aud": auth.audience,
        "iat": 1,
        "exp": 2**40,
        "roles": ["INSTITUTION"],
    }
    if named is not None:
        claims["institution"] = named
    with pytest.raises(InvalidToken, match="institution"):
        verify_token(jwt.encode(claims, auth.secret, algorithm="HS256"), auth)


def test_production_tokens_are_verified_with_the_providers_public_keys() -> None:
    token = provider_token("130102197603150016", roles=["REVIEWER"])
    assert verify_token(token, KEYS_AUTH).roles == {"REVIEWER"}
    # the development secret's tokens are worthless there, and so is a public key used as
    # an HS256 secret (no algorithm confusion)
    with pytest.raises(InvalidToken):
        verify_token(mint_token("130102197603150016", AuthSettings()), KEYS_AUTH)
    unsigned = jwt.encode(
        {"sub": "130102197603150016"}, "x" * 40, algorithm="HS256", headers={"kid": "test-2026"}
    )
    with pytest.raises(InvalidToken):
        verify_token(unsigned, KEYS_AUTH)
    no_kid = jwt.encode({"sub": "130102197603150016"}, "x" * 40, algorithm="HS256")
    with pytest.raises(InvalidToken, match="kid"):
        verify_token(no_kid, KEYS_AUTH)


async def test_production_keys_may_come_from_a_jwks_url() -> None:
    keys = JWKS_FILE.read_text()

    async def jwks(request: Any) -> PlainTextResponse:
        return PlainTextResponse(keys, media_type="application/json")

    async with served(Starlette(routes=[Route("/jwks.json", jwks)])) as origin:
        auth = AuthSettings(secret=KEYS_AUTH.secret, jwks_url=f"{origin}/jwks.json")
        token = provider_token("130102197603150016", auth)
        caller = await asyncio.to_thread(verify_token, token, auth)
    assert caller.cert_no == "130102197603150016"


def test_the_policy_in_force_is_the_one_of_the_beijing_date(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """At 23:30 UTC on the eve of a policy's date, it is already that date in Beijing:
    the new policy applies, whatever zone the server keeps."""
    import adapters.policy
    from adapters.base import Policy, ProvinceAdapter

    eve = dt.datetime(2026, 12, 31, 23, 30, tzinfo=dt.UTC)

    class Frozen(dt.datetime):
        @classmethod
        def now(cls, tz: dt.tzinfo | None = None) -> Frozen:  # type: ignore[override]
            return eve.astimezone(tz)  # type: ignore[return-value]

    monkeypatch.setattr(
        adapters.policy, "dt", types.SimpleNamespace(**{**vars(dt), "datetime": Frozen})
    )
    adapter = next(iter(adapter_classes().values()))
    old = adapter.policies[0]
    new = dataclasses.replace(old, effective_from=dt.date(2027, 1, 1), max_relatives=7)
    province: ProvinceAdapter = adapter(None, policies=[old, new])  # type: ignore[arg-type]
    assert province.policy() == new
    assert province.policy(dt.date(2026, 12, 31)) == old
    assert isinstance(new, Policy)


def test_the_breaker_opens_probes_one_at_a_time_and_closes() -> None:
    from adapters.breaker import Breaker, BreakerState, Refused

    now = [0.0]
    breaker = Breaker(threshold=2, reset=10.0, clock=lambda: now[0])
    assert breaker.admit() is False
    breaker.failed(False)
    breaker.succeeded(False)  # a success in between: the count starts again
    breaker.failed(breaker.admit())
    assert breaker.state is BreakerState.CLOSED
    breaker.failed(breaker.admit())  # two in a row
    assert breaker.state is BreakerState.OPEN
    with pytest.raises(Refused):
        breaker.admit()
    now[0] = 10.0
    assert breaker.state is BreakerState.HALF_OPEN
    probe = breaker.admit()
    assert probe is True
    with pytest.raises(Refused):  # one probe at a time
        breaker.admit()
    breaker.released(probe)  # neither (a cancelled probe): the next request probes
    probe = breaker.admit()
    breaker.failed(probe)  # the probe failed: open again, for another `reset`
    assert breaker.state is BreakerState.OPEN
    now[0] = 19.9
    with pytest.raises(Refused):
        breaker.admit()
    now[0] = 20.0
    breaker.succeeded(breaker.admit())
    assert breaker.state is BreakerState.CLOSED
    breaker.failed(breaker.admit())
    assert breaker.state is BreakerState.CLOSED  # the count started again at closing


async def test_a_province_that_binds_only_inside_itself_refuses_to_move_money_across() -> None:
    """What a province gets without implementing the cross-province part: every write
    of it refused as not supported, every read of it empty (and nothing sent)."""
    province = Ledger({}, [])
    unsupported = Refusal(RefusalCode.SETTLEMENT_NOT_SUPPORTED)
    assert await province.hold_quota("B1", amount=Decimal("1.00"), reference="r") == unsupported
    assert await province.confirm_hold("H1", used=Decimal("1.00"), payment_ref="p") == unsupported
    assert await province.release_hold("H1") == unsupported
    assert await province.refund_hold("H1") == unsupported
    assert await province.holds_of(["1"]) == ()
    assert await province.registration_changes(0) == ()

"""Every adapter reads the cross-province answers defensively: an answer of its own
province with any one value changed (a wrong type, a stray word, nothing at all) is
either still understood or a contract error, never a crash of another kind and never
a value that says something else than the province did.

Each operation is done once for real through the sandbox; then its answer comes back
again with one leaf changed, for every leaf (writes go under the same request id, so
the province only repeats itself).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterator
from decimal import Decimal
from typing import Any

import httpx
from defusedxml import ElementTree as SafeET

from adapters.base import (
    Binding,
    Funding,
    MedicalType,
    PremiumRequest,
    ProvinceAdapter,
    QuotaHold,
    SettleRequest,
    UpstreamContractError,
    new_request_id,
)
from conformance.suite import Province, province  # noqa: F401
from tests.test_conformance_across import (
    YEAR,
    across,
    ask,
    elsewhere,
    premium_pair,
    resident,
)

Call = Callable[[], Awaitable[Any]]
WRONG: tuple[Any, ...] = (None, "？", 7, ["x"], {"x": 1})


def json_leaves(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    if isinstance(value, dict):
        for key, inner in value.items():
            yield from json_leaves(inner, (*path, key))
    elif isinstance(value, list):
        for i, inner in enumerate(value):
            yield from json_leaves(inner, (*path, i))
    else:
        yield path


def json_set(value: Any, path: tuple[Any, ...], new: Any) -> Any:
    copy = json.loads(json.dumps(value))
    inner = copy
    for step in path[:-1]:
        inner = inner[step]
    inner[path[-1]] = new
    return copy


def tampered_bodies(body: bytes) -> Iterator[bytes]:
    """The answer with one leaf changed, for each leaf and each kind of wrong value."""
    text = body.decode("utf-8")
    if text.lstrip().startswith("<"):
        root = SafeET.fromstring(text)
        count = sum(1 for _ in root.iter())
        for index in range(count):
            for wrong in ("", "？", "-1"):
                copy = SafeET.fromstring(text)
                element = list(copy.iter())[index]
                if len(element):  # only leaves
                    continue
                element.text = wrong
                yield b'<?xml version="1.0" encoding="UTF-8"?>' + SafeET.tostring(
                    copy, encoding="unicode"
                ).encode("utf-8")
        return
    answer = json.loads(text)
    for path in json_leaves(answer):
        if path and path[-1] in ("infcode", "code"):
            continue  # the envelope's verdict: another test's matter
        for wrong in WRONG:
            yield json.dumps(json_set(answer, path, wrong), ensure_ascii=False).encode()


async def survives(place: Province, call: Call) -> tuple[int, int]:
    """Do ``call`` for real, then again against every tampered copy of its answer:
    how many copies were tried, and how many of them were contract errors."""
    first = await call()
    real = place.sandbox.side_effect
    seen: list[httpx.Response] = []

    async def recording(request: httpx.Request) -> httpx.Response:
        response: httpx.Response = await real(request)  # type: ignore[misc, operator]
        await response.aread()
        seen.append(response)
        return response

    place.sandbox.side_effect = recording
    again = await call()
    place.sandbox.side_effect = real
    assert again == first  # the province repeats itself
    answer = seen[-1]
    tried = refused = 0
    for body in tampered_bodies(answer.content):

        def tamper(request: httpx.Request, body: bytes = body) -> httpx.Response:
            return httpx.Response(
                answer.status_code,
                content=body,
                headers={"content-type": answer.headers.get("content-type", "")},
            )

        place.sandbox.side_effect = tamper
        try:
            result = await call()
        except UpstreamContractError:
            refused += 1
        else:
            assert type(result) is type(first), result
        finally:
            place.sandbox.side_effect = real
        tried += 1
    return tried, refused


async def test_a_tampered_answer_is_understood_or_a_contract_error(
    province: Province,  # noqa: F811
) -> None:
    adapter: ProvinceAdapter = province.adapter
    relative = across(province.code)
    bound = await adapter.bind(ask(relative, request_id=new_request_id()))
    assert isinstance(bound, Binding)
    rid = new_request_id()
    held = await adapter.hold_quota(
        bound.id, amount=Decimal("100.00"), reference="T1", request_id=rid
    )
    assert isinstance(held, QuotaHold)
    patient, payer = resident(province.code), elsewhere(province.code)
    funding = Funding(payer["insuredArea"][:2], payer["certNo"], Decimal("100.00"), "XXH1")
    bill = SettleRequest(
        institution_code="H00000001",
        idempotency_key="tampered-1",
        patient_cert_no=patient["certNo"],
        medical_type=MedicalType.OUTPATIENT,
        total=Decimal("250.00"),
        fund_paid=Decimal("100.00"),
        request_id=new_request_id(),
        funding=funding,
    )
    pair = premium_pair(province)
    premium = PremiumRequest(
        resident(province.code)["certNo"],
        YEAR,
        payer["certNo"],
        request_id=new_request_id(),
        funding=Funding(funding.province, funding.payer, Decimal("999.00"), "XXH2"),
    )
    back_office = "/backoffice/registrations"
    moved = await adapter.client.post(
        back_office, json={"certNo": pair.authorizer["certNo"], "toProvince": None}
    )
    assert moved.status_code == 200
    confirm_rid = new_request_id()
    calls: dict[str, Call] = {
        "hold_quota": lambda: adapter.hold_quota(
            bound.id, amount=Decimal("100.00"), reference="T1", request_id=rid
        ),
        "holds_of": lambda: adapter.holds_of([relative.authorizer["certNo"]]),
        "bindings_of": lambda: adapter.bindings_of([relative.authorizer["certNo"]]),
        "settle": lambda: adapter.settle(bill),
        "premium_of": lambda: adapter.premium_of(pair.beneficiary["certNo"], YEAR),
        "pay_premium": lambda: adapter.pay_premium(premium),
        "registration_changes": lambda: adapter.registration_changes(0),
        "confirm_hold": lambda: adapter.confirm_hold(
            held.id, used=Decimal("60.00"), payment_ref="S1", request_id=confirm_rid
        ),
    }
    tried = {name: await survives(province, call) for name, call in calls.items()}
    # every answer has values the adapter depends on: tampering with them is noticed
    assert all(refused > 0 for _, refused in tried.values()), tried


def test_tampering_changes_one_leaf_at_a_time() -> None:
    body = json.dumps({"a": {"b": 1, "c": [2]}}).encode()
    copies = [json.loads(b) for b in tampered_bodies(body)]
    assert len(copies) == 2 * len(WRONG)
    assert {"a": {"b": None, "c": [2]}} in copies
    assert {"a": {"b": 1, "c": ["？"]}} in copies

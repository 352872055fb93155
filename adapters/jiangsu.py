"""Jiangsu (江苏): REST resources in a ``{code, msg, data}`` wrapper, camelCase fields.

``code`` 0 is success; business refusals come with HTTP 200 and codes 40001-40013
(see `_REFUSALS`); any other code (40000 malformed request, 40400, 40500, ...) is
a contract fault. A spouse binding waits for the spouse's confirmation (`respond`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote

from adapters.base import (
    Area,
    Binding,
    BindingStatus,
    BindRequest,
    CivilRelative,
    InsuranceStatus,
    InsuranceType,
    Party,
    Person,
    Policy,
    ProvinceAdapter,
    Refusal,
    RefusalCode,
    Relation,
    parse_money,
    text,
)

_BASE = "/api/v1"
_AUTHORIZATIONS = f"{_BASE}/mutual-aid/authorizations"

_INSURANCE_TYPE = {"EMPLOYEE": InsuranceType.EMPLOYEE, "RESIDENT": InsuranceType.RESIDENT}
_INSURANCE_STATUS = {
    "NORMAL": InsuranceStatus.ACTIVE,
    "SUSPENDED": InsuranceStatus.SUSPENDED,
    "TERMINATED": InsuranceStatus.TERMINATED,
    "NOT_EFFECTIVE": InsuranceStatus.PENDING,
}
_RELATION_WORD = {
    Relation.SPOUSE: "SPOUSE",
    Relation.PARENT: "FATHER_OR_MOTHER",
    Relation.CHILD: "SON_OR_DAUGHTER",
    Relation.PARENT_IN_LAW: "SPOUSE_PARENT",
    Relation.CHILD_IN_LAW: "CHILD_SPOUSE",
    Relation.SIBLING: "SIBLING",
    Relation.GRANDPARENT: "GRANDPARENT",
    Relation.GRANDCHILD: "GRANDCHILD",
}
_RELATION = {v: k for k, v in _RELATION_WORD.items()}
_STATE = {
    "WAIT_CONFIRM": BindingStatus.PENDING_CONFIRMATION,
    "EFFECTIVE": BindingStatus.ACTIVE,
    "REJECTED": BindingStatus.DECLINED,
    "CANCELLED": BindingStatus.UNBOUND,
}
_REFUSALS: dict[int, RefusalCode] = {
    40001: RefusalCode.PERSON_NOT_FOUND,
    40002: RefusalCode.PERSON_INFO_MISMATCH,
    40003: RefusalCode.NOT_EMPLOYEE_INSURED,
    40004: RefusalCode.BENEFICIARY_NOT_INSURED,
    40005: RefusalCode.RELATION_NOT_ALLOWED,
    40006: RefusalCode.RELATION_NOT_VERIFIED,
    40007: RefusalCode.CROSS_AREA_NOT_ALLOWED,
    40008: RefusalCode.BINDING_LIMIT_REACHED,
    40009: RefusalCode.ALREADY_BOUND,
    40010: RefusalCode.DUPLICATE_BINDING,
    40011: RefusalCode.COMMITMENT_REQUIRED,
    40012: RefusalCode.FORBIDDEN,
    40013: RefusalCode.INVALID_BINDING_STATE,
}


class JiangsuAdapter(ProvinceAdapter):
    code = "32"
    name = "江苏省"
    policies = (
        Policy(
            effective_from=dt.date(2023, 1, 1),
            max_relatives=5,
            cross_city=True,
            spouse_confirmation=True,
            commitment_required=True,
        ),
    )

    async def _request(self, method: str, url: str, **kwargs: Any) -> tuple[int, Any]:
        """Send one request; returns ``(code, data)`` from the wrapper."""
        what = f"{method} {url}"
        response = await self._call(method, url, **kwargs)
        with self._reading(what):
            answer = response.json()
            if not isinstance(answer, dict):
                raise TypeError("answer is not an object")
            code = answer["code"]
            if not isinstance(code, int) or isinstance(code, bool):
                raise TypeError(f"code is not an integer: {code!r}")
            data = answer["data"]
        if code == 0 and not response.is_success:
            raise self._contract_error(f"{what}: code 0 with HTTP {response.status_code}")
        return code, data

    async def _ok(self, method: str, url: str, **kwargs: Any) -> list[Any]:
        code, data = await self._request(method, url, **kwargs)
        if code != 0:
            raise self._contract_error(f"{method} {url}: unexpected code {code}")
        if not isinstance(data, list):
            raise self._contract_error(f"{method} {url}: data is not a list")
        return data

    async def _write(self, url: str, body: dict[str, Any]) -> Binding | Refusal:
        code, data = await self._request("POST", url, json=body)
        if code != 0:
            refused = _REFUSALS.get(code)
            if refused is None:
                raise self._contract_error(f"POST {url}: unknown code {code}")
            return Refusal(refused)
        with self._reading(f"POST {url}"):
            return _binding(data)

    async def find_persons(self, cert_nos: Sequence[str]) -> Mapping[str, Person]:
        if not cert_nos:
            return {}
        url = f"{_BASE}/persons"
        data = await self._ok("GET", url, params={"certNos": ",".join(cert_nos)})
        found: dict[str, Person] = {}
        with self._reading(f"GET {url}"):
            for item in data:
                area, balance = item["insuredArea"], item["accountBalance"]
                person = Person(
                    cert_no=text(item["certNo"]),
                    name=text(item["name"]),
                    area=Area(text(area["code"]), text(area["name"])),
                    insurance_type=_INSURANCE_TYPE[item["insuranceType"]],
                    insurance_status=_INSURANCE_STATUS[item["insuranceStatus"]],
                    balance=None if balance is None else parse_money(balance),
                    phone=item.get("phone"),
                )
                found[person.cert_no] = person
        return found

    async def relatives(self, cert_no: str) -> Sequence[CivilRelative]:
        url = f"{_BASE}/persons/{quote(cert_no, safe='')}/relatives"
        data = await self._ok("GET", url)
        with self._reading(f"GET {url}"):
            return [
                CivilRelative(text(r["certNo"]), text(r["name"]), _RELATION[r["relation"]])
                for r in data
            ]

    async def bindings_of(self, cert_nos: Sequence[str]) -> Sequence[Binding]:
        if not cert_nos:
            return []
        data = await self._ok("GET", _AUTHORIZATIONS, params={"certNos": ",".join(cert_nos)})
        with self._reading(f"GET {_AUTHORIZATIONS}"):
            return [_binding(b) for b in data]

    async def bind(self, request: BindRequest) -> Binding | Refusal:
        return await self._write(
            _AUTHORIZATIONS,
            {
                "authorizerCertNo": request.authorizer_cert_no,
                "beneficiaryCertNo": request.beneficiary_cert_no,
                "beneficiaryName": request.beneficiary_name,
                "relation": _RELATION_WORD[request.relation],
                "commitmentSigned": request.commitment_signed,
            },
        )

    async def unbind(self, binding_id: str, *, actor: str) -> Binding | Refusal:
        url = f"{_AUTHORIZATIONS}/{quote(binding_id, safe='')}/cancellation"
        return await self._write(url, {"certNo": actor})

    async def respond(self, binding_id: str, *, actor: str, accept: bool) -> Binding | Refusal:
        url = f"{_AUTHORIZATIONS}/{quote(binding_id, safe='')}/confirmation"
        return await self._write(url, {"certNo": actor, "accept": accept})


def _binding(raw: Any) -> Binding:
    created = dt.datetime.fromisoformat(text(raw["createdAt"]))
    if created.tzinfo is None:
        raise ValueError(f"createdAt without offset: {raw['createdAt']!r}")
    authorizer, beneficiary = raw["authorizer"], raw["beneficiary"]
    return Binding(
        id=text(raw["authId"]),
        authorizer=Party(text(authorizer["certNo"]), text(authorizer["name"])),
        beneficiary=Party(text(beneficiary["certNo"]), text(beneficiary["name"])),
        relation=_RELATION[raw["relation"]],
        status=_STATE[raw["state"]],
        created_at=created,
    )

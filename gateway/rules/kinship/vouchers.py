"""The member's e-voucher as the adder shows it: a short-lived signed code, its QR
image, and what the adder is told with it (whose money pays the self-pay part: by
mutual aid, the national rule of `adapters.payer`)."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field

import jwt
import segno

from adapters.base import (
    Party,
    bound_authorizers,
    choose_payer,
)
from gateway.common.refusals import GatewayCode
from gateway.ops.config import AuthSettings
from gateway.provinces.directory import Directory, Located
from gateway.rules.kinship.links import KinshipLink
from gateway.rules.kinship.registry import Registry
from gateway.rules.mutual_aid import MutualAid
from gateway.state.outcome import Outcome

VOUCHER_AUDIENCE = "gongji-kinship-voucher"


@dataclass(frozen=True, slots=True, kw_only=True)
class Voucher:
    """What the adder shows when accompanying the member: the member's own code."""

    code: str
    expires_at: dt.datetime
    qr_svg: str
    link: KinshipLink
    member: Located
    treatment_area: str
    remote_registration_required: bool
    # who pays the self-pay part by mutual aid, by the national rule (`adapters.payer`):
    # of the authorizers actively bound to the member, the largest balance; not always
    # the adder
    mutual_aid_payer: Party | None
    notes: Sequence[str] = field(default=())


VoucherOutcome = Outcome[Voucher]


@dataclass(frozen=True, slots=True)
class Use:
    at: dt.datetime
    treatment_area: str


def area_ok(area: str) -> bool:
    """A 6-digit area code (GB/T 2260)."""
    return len(area) == 6 and area.isascii() and area.isdigit()


def notes(*, adder_bound: bool, adder_funded: bool, remote: bool) -> list[str]:
    """What the adder is told: whether their own mutual aid pays for the member (a
    kinship link alone does not), and whether to register remote treatment first."""
    if adder_bound and adder_funded:
        told = ["MUTUAL_AID_PAYS_SELF_PAY"]
    elif adder_bound:
        told = ["MUTUAL_AID_NO_BALANCE"]
    else:
        told = ["KINSHIP_IS_NOT_MUTUAL_AID"]
    if remote:
        told.append("REMOTE_TREATMENT_REGISTRATION")
    return told


class _Signer:
    """Signs voucher codes with a key of their own, derived from the signing secret:
    whoever checks vouchers never holds what signs bearer tokens."""

    def __init__(self, auth: AuthSettings, ttl_seconds: int) -> None:
        self._issuer = auth.issuer
        self._ttl = dt.timedelta(seconds=ttl_seconds)
        self._key = hmac.new(
            auth.secret.encode(), b"gongji kinship voucher", hashlib.sha256
        ).hexdigest()

    def issue(self, link_id: str) -> tuple[str, dt.datetime, dt.datetime]:
        """A new code for the link: the code, when issued and when it expires."""
        issued = dt.datetime.now(dt.UTC).replace(microsecond=0)
        expires = issued + self._ttl
        code = jwt.encode(
            {
                "typ": "kinship-voucher",
                "sub": link_id,  # no personal data in the code itself
                "aud": VOUCHER_AUDIENCE,
                "iss": self._issuer,
                "iat": issued,
                "exp": expires,
                "jti": uuid.uuid4().hex,
            },
            self._key,
            algorithm="HS256",
        )
        return code, issued, expires


def qr_svg(code: str) -> str:
    """The code as a QR image (inline SVG markup)."""
    return segno.make(code, error="m").svg_inline(scale=4)


class Vouchers:
    """Issues the codes of active links and records each one shown."""

    def __init__(
        self,
        registry: Registry,
        directory: Directory,
        mutual_aid: MutualAid,
        auth: AuthSettings,
        ttl_seconds: int,
    ) -> None:
        self._registry = registry
        self._directory = directory
        self._mutual_aid = mutual_aid
        self._signer = _Signer(auth, ttl_seconds)

    async def issue(self, link: KinshipLink, treatment_area: str | None) -> VoucherOutcome:
        """A new code of ``link`` (active: the caller checked) for its adder."""
        actor = link.adder.cert_no
        people = await self._directory.locate([actor, link.member.cert_no])
        member = people.get(link.member.cert_no)
        if member is None or not member.person.is_in_force:
            return VoucherOutcome.refused(GatewayCode.MEMBER_INSURANCE_NOT_EFFECTIVE, "memberId")
        adder = people.get(actor)
        area = treatment_area or (adder.person.area.code if adder else member.person.area.code)
        if not area_ok(area):
            return VoucherOutcome.refused(GatewayCode.INVALID_AREA_CODE, "treatmentArea")
        authorizers, payer = await self._mutual_aid_for(member, people)
        adder_bound = adder is not None and any(p.cert_no == actor for p in authorizers)
        funded = adder_bound and adder is not None and (adder.person.balance or 0) > 0
        remote = area != member.person.area.code

        code, issued, expires = self._signer.issue(link.id)
        await self._registry.record_use(link.id, issued, area)
        return VoucherOutcome(
            value=Voucher(
                code=code,
                expires_at=expires,
                qr_svg=qr_svg(code),
                link=link,
                member=member,
                treatment_area=area,
                remote_registration_required=remote,
                mutual_aid_payer=payer,
                notes=notes(adder_bound=adder_bound, adder_funded=funded, remote=remote),
            )
        )

    async def _mutual_aid_for(
        self, member: Located, known: dict[str, Located]
    ) -> tuple[list[Party], Party | None]:
        """The authorizers actively bound to the member, and the one of them who pays by
        mutual aid (`adapters.payer`). ``known``: people located already (their
        balances); the others are located here."""
        cert_no = member.person.cert_no
        held = await self._mutual_aid.bindings_of(cert_no, member.adapter)
        authorizers = bound_authorizers((b for b, _ in held), cert_no)
        unknown = [p.cert_no for p in authorizers if p.cert_no not in known]
        found = {**known, **(await self._directory.locate(unknown) if unknown else {})}
        candidates = [
            (p, found[p.cert_no].person.balance if p.cert_no in found else None)
            for p in authorizers
        ]
        return authorizers, choose_payer(None, None, candidates)

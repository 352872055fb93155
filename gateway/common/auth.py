"""Bearer tokens: who the caller is."""

from __future__ import annotations

import datetime as dt
import functools
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt

from gateway.common.certno import is_valid, normalize
from gateway.ops.config import AuthSettings

_ALGORITHM = "HS256"


# Roles a token may carry besides being an insured person.
REVIEWER = "REVIEWER"  # reviews kinship documents
INSTITUTION = "INSTITUTION"  # a designated hospital or pharmacy: settles bills
ADMIN = "ADMIN"  # operations: reads the audit log
ROLES = frozenset({REVIEWER, INSTITUTION, ADMIN})
INSTITUTION_KINDS = ("HOSPITAL", "PHARMACY")


@dataclass(frozen=True, slots=True)
class Institution:
    """A designated medical institution (定点医药机构), as its token names it."""

    code: str
    kind: str  # HOSPITAL or PHARMACY

    def __post_init__(self) -> None:
        if not (self.code and self.code.isascii() and self.code.isalnum() and len(self.code) <= 32):
            raise ValueError("an institution code is 1 to 32 letters and digits")
        if self.kind not in INSTITUTION_KINDS:
            raise ValueError(f"an institution is one of {', '.join(INSTITUTION_KINDS)}")


@dataclass(frozen=True, slots=True)
class Caller:
    """Who is asking: an ID number (the person, or the staff member acting), roles,
    and for the INSTITUTION role the institution they act for."""

    cert_no: str
    roles: frozenset[str] = frozenset()
    institution: Institution | None = None
    expires: dt.datetime | None = None  # when the token runs out


class InvalidToken(Exception):
    pass


def mint_token(
    cert_no: str,
    settings: AuthSettings,
    *,
    now: float | None = None,
    roles: frozenset[str] = frozenset(),
    institution: Institution | None = None,
) -> str:
    cert_no = normalize(cert_no)
    if not is_valid(cert_no):
        raise ValueError("not a valid ID number")
    if not roles <= ROLES:
        raise ValueError(f"unknown roles: {sorted(roles - ROLES)}")
    if (INSTITUTION in roles) != (institution is not None):
        raise ValueError("the INSTITUTION role and an institution go together")
    issued = int(now if now is not None else time.time())
    claims: dict[str, object] = {
        "sub": cert_no,
        "iss": settings.issuer,
        "aud": settings.audience,
        "iat": issued,
        "nbf": issued,
        "exp": issued + settings.token_ttl_seconds,
    }
    if roles:
        claims["roles"] = sorted(roles)
    if institution is not None:
        claims["institution"] = {"code": institution.code, "kind": institution.kind}
    return jwt.encode(claims, settings.secret, algorithm=_ALGORITHM)


# With public keys: only these (never HS256, so a public key can never act as a secret).
ASYMMETRIC = ("RS256", "ES256")


@functools.lru_cache(maxsize=8)
def _key_set(path: Path) -> jwt.PyJWKSet:
    return jwt.PyJWKSet.from_json(path.read_text(encoding="utf-8"))


@functools.lru_cache(maxsize=8)
def _key_client(url: str) -> jwt.PyJWKClient:
    return jwt.PyJWKClient(url, cache_keys=True, lifespan=300, timeout=5)


def _verification_key(token: str, settings: AuthSettings) -> tuple[Any, list[str]]:
    """The key that must have signed ``token``, and the algorithms it may use."""
    if settings.jwks_file is not None:
        kid = jwt.get_unverified_header(token).get("kid")
        if not isinstance(kid, str):
            raise InvalidToken("no kid in the header")
        try:
            return _key_set(settings.jwks_file)[kid].key, list(ASYMMETRIC)
        except KeyError as exc:
            raise InvalidToken("no key with that kid") from exc
    if settings.jwks_url is not None:
        return _key_client(settings.jwks_url).get_signing_key_from_jwt(token).key, list(ASYMMETRIC)
    return settings.secret, [_ALGORITHM]


def verify_token(token: str, settings: AuthSettings) -> Caller:
    """The caller a token names, if it verifies. With `jwks_url` the key set may be
    fetched (a blocking call): run it in a thread."""
    try:
        key, algorithms = _verification_key(token, settings)
        claims = jwt.decode(
            token,
            key,
            algorithms=algorithms,
            audience=settings.audience,
            issuer=settings.issuer,
            leeway=settings.leeway_seconds,
            options={"require": ["sub", "exp", "iat"]},
        )
    except jwt.PyJWTError as exc:
        raise InvalidToken(type(exc).__name__) from exc
    if "typ" in claims:  # a voucher or any other signed thing is never a bearer token
        raise InvalidToken("not a bearer token")
    subject = claims["sub"]
    if not isinstance(subject, str) or not is_valid(normalize(subject)):
        raise InvalidToken("subject is not an ID number")
    subject = normalize(subject)  # one person, one key: 002x and 002X alike
    roles = claims.get("roles", [])
    if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
        raise InvalidToken("roles is not a list of names")
    granted = frozenset(roles) & ROLES
    institution = None
    if INSTITUTION in granted:
        named = claims.get("institution")
        try:
            institution = Institution(code=named["code"], kind=named["kind"])  # type: ignore[index]
        except (TypeError, KeyError, ValueError) as exc:
            raise InvalidToken("the INSTITUTION role without a valid institution") from exc
    try:
        expires = dt.datetime.fromtimestamp(claims["exp"] + settings.leeway_seconds, dt.UTC)
    except (OverflowError, ValueError, OSError):  # beyond any date: never, in practice
        expires = dt.datetime.max.replace(tzinfo=dt.UTC)
    return Caller(cert_no=subject, roles=granted, institution=institution, expires=expires)


def bearer(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()

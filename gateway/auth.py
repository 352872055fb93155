"""Bearer tokens: who the caller is."""

from __future__ import annotations

import time
from dataclasses import dataclass

import jwt

from gateway.certno import is_valid, normalize
from gateway.config import AuthSettings

_ALGORITHM = "HS256"


@dataclass(frozen=True, slots=True)
class Caller:
    cert_no: str


class InvalidToken(Exception):
    pass


def mint_token(cert_no: str, settings: AuthSettings, *, now: float | None = None) -> str:
    cert_no = normalize(cert_no)
    if not is_valid(cert_no):
        raise ValueError("not a valid ID number")
    issued = int(now if now is not None else time.time())
    claims = {
        "sub": cert_no,
        "iss": settings.issuer,
        "aud": settings.audience,
        "iat": issued,
        "nbf": issued,
        "exp": issued + settings.token_ttl_seconds,
    }
    return jwt.encode(claims, settings.secret, algorithm=_ALGORITHM)


def verify_token(token: str, settings: AuthSettings) -> Caller:
    try:
        claims = jwt.decode(
            token,
            settings.secret,
            algorithms=[_ALGORITHM],
            audience=settings.audience,
            issuer=settings.issuer,
            leeway=settings.leeway_seconds,
            options={"require": ["sub", "exp", "iat"]},
        )
    except jwt.PyJWTError as exc:
        raise InvalidToken(type(exc).__name__) from exc
    subject = claims["sub"]
    if not isinstance(subject, str) or not is_valid(subject):
        raise InvalidToken("subject is not an ID number")
    return Caller(cert_no=subject)


def bearer(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()

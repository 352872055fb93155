"""Requests: how large their headers and bodies, and uploads only from someone signed in.

Starlette parses a multipart form (GraphQL uploads) whole, before any resolver
runs, and puts no limit on file parts. So before the app reads a byte, this
middleware refuses headers too many or too large (431), a body that does not
declare its length (411), one longer than its kind allows (413: a JSON request
gets ``[limits] max_json_bytes``, an upload room for its documents), and a
multipart body without a bearer token that verifies (401). The server holds a
body to its declared length. Each refusal is a GraphQL error with a code.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from graphql import GraphQLError
from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.common.auth import InvalidToken, bearer, verify_token
from gateway.common.headers import weighted
from gateway.common.messages import Language, fault_message, preferred_language
from gateway.ops.config import AuthSettings, RateLimits

# Requests refused at the HTTP edge, before anything of GraphQL runs: each a GraphQL
# error with a code, answered with its status.
_STATUS_CODES = {
    400: "BAD_REQUEST",
    401: "UNAUTHENTICATED",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    406: "NOT_ACCEPTABLE",
    411: "LENGTH_REQUIRED",
    413: "REQUEST_TOO_LARGE",
    415: "UNSUPPORTED_MEDIA_TYPE",
    431: "HEADERS_TOO_LARGE",
}


JSON = "application/json"
GRAPHQL_RESPONSE_JSON = "application/graphql-response+json"
# The status of a request that was not executed, when the client takes
# application/graphql-response+json (GraphQL over HTTP); any other code is 400.
_REQUEST_STATUS = {"RATE_LIMITED": 429, "INTERNAL_ERROR": 500, "AUDIT_UNAVAILABLE": 503}


def negotiate(accept: str | None) -> str | None:
    """The media type to answer in: ``application/graphql-response+json`` when the
    client accepts it at least as much as ``application/json``; ``application/json``
    when it sends no Accept header or accepts it (or any type); None when it accepts
    neither (406)."""
    if not accept:
        return JSON
    best: str | None = None
    best_q = 0.0
    for token, q in weighted(accept):
        if token == GRAPHQL_RESPONSE_JSON:
            media = GRAPHQL_RESPONSE_JSON
        elif token in (JSON, "application/*", "*/*"):
            media = JSON  # wildcards: the media type every GraphQL client reads
        else:
            continue
        if q > best_q or (q == best_q and q > 0 and media == GRAPHQL_RESPONSE_JSON):
            best, best_q = media, q
    return best


def request_status(errors: Sequence[GraphQLError]) -> int:
    """The HTTP status of a request refused before it ran, from its first error's code."""
    code = (errors[0].extensions or {}).get("code") if errors else None
    return _REQUEST_STATUS.get(str(code), 400)


def request_error(
    status: int, lang: Language, media: str = JSON, code: str | None = None
) -> JSONResponse:
    """A request refused before any GraphQL ran: ``{"errors": [...]}`` with a code (by
    the status, unless given) and a message in the client's language, and no ``data``
    (nothing was executed)."""
    code = code or _STATUS_CODES.get(status, "BAD_REQUEST")
    error = {"message": fault_message(code, lang), "extensions": {"code": code}}
    return JSONResponse({"errors": [error]}, status_code=status, media_type=media)


class BodyLimit:
    def __init__(
        self, app: ASGIApp, *, max_upload_bytes: int, limits: RateLimits, auth: AuthSettings
    ) -> None:
        self.app = app
        self.max_upload_bytes = max_upload_bytes
        self.limits = limits
        self.auth = auth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            refusal = await self._refusal(scope)
            if refusal is not None:
                await refusal(scope, receive, send)
                return
        await self.app(scope, receive, send)

    async def _refusal(self, scope: Scope) -> JSONResponse | None:
        raw: list[tuple[bytes, bytes]] = scope["headers"]
        headers = Headers(scope=scope)
        lang = preferred_language(headers.get("accept-language"))
        size = sum(len(name) + len(value) for name, value in raw)
        if len(raw) > self.limits.max_headers or size > self.limits.max_header_bytes:
            return request_error(431, lang)
        if scope["method"] not in ("POST", "PUT", "PATCH"):
            return None
        length = headers.get("content-length", "")
        if not length.isdigit():
            return request_error(411, lang)
        multipart = headers.get("content-type", "").startswith("multipart/")
        limit = self.max_upload_bytes if multipart else self.limits.max_json_bytes
        if int(length) > limit:
            return request_error(413, lang)
        if multipart and not await self._signed_in(headers):
            return request_error(401, lang)
        return None

    async def _signed_in(self, headers: Headers) -> bool:
        """The bearer token verifies, in every key mode, before a byte of the body is
        read (a key set fetched from ``jwks_url`` is fetched off the event loop)."""
        token = bearer(headers.get("authorization"))
        if token is None:
            return False
        try:
            if self.auth.jwks_url is not None:
                await asyncio.to_thread(verify_token, token, self.auth)
            else:
                verify_token(token, self.auth)
        except InvalidToken:
            return False
        return True

"""Request bodies: how large, and uploads only from someone signed in.

Starlette parses a multipart form (GraphQL uploads) whole, before any resolver
runs, and puts no limit on file parts. So before the app reads a byte, this
middleware refuses a body that does not declare its length (411), one longer
than ``max_bytes`` (413), and a multipart body without a bearer token (401).
The server holds a body to its declared length.
"""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.auth import InvalidToken, bearer, verify_token
from gateway.config import AuthSettings


def _error(code: str, message: str, status: int) -> JSONResponse:
    return JSONResponse(
        {"data": None, "errors": [{"message": message, "extensions": {"code": code}}]},
        status_code=status,
    )


class BodyLimit:
    def __init__(self, app: ASGIApp, *, max_bytes: int, auth: AuthSettings) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.auth = auth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] in ("POST", "PUT", "PATCH"):
            refusal = self._refusal(Headers(scope=scope))
            if refusal is not None:
                await refusal(scope, receive, send)
                return
        await self.app(scope, receive, send)

    def _refusal(self, headers: Headers) -> JSONResponse | None:
        length = headers.get("content-length", "")
        if not length.isdigit():
            return _error("LENGTH_REQUIRED", "send the body with a Content-Length", 411)
        if int(length) > self.max_bytes:
            return _error("REQUEST_TOO_LARGE", "the request body is too large", 413)
        multipart = headers.get("content-type", "").startswith("multipart/")
        if multipart and not self._signed_in(headers):
            return _error("UNAUTHENTICATED", "sign in to upload", 401)
        return None

    def _signed_in(self, headers: Headers) -> bool:
        token = bearer(headers.get("authorization"))
        if token is None:
            return False
        if self.auth.jwks_url is not None:
            return True  # verified (off the event loop) before anything is done with it
        try:
            verify_token(token, self.auth)
        except InvalidToken:
            return False
        return True

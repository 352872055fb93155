"""The playground, sandbox mode only: GraphiQL served by the gateway itself,
personas to act as, and example operations.

Every file the page loads comes from ``playground/dist/``, which the install
step assembles from the npm lock (``playground/package-lock.json``); nothing is
fetched from another origin, and the page's Content-Security-Policy says so to
the browser. Personas are the roster's synthetic people; their tokens come from
``POST /playground/personas/{key}/token``, a route that exists only here.
``GET /playground/world`` says where the sandbox world is kept and the command
that starts it over (`gateway.state.reset`); the page shows it by the examples.
"""

from __future__ import annotations

import json
import mimetypes
import os
import shlex
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import NotModifiedResponse, PathLike, StaticFiles
from starlette.types import Scope

from gateway.common.auth import ROLES, Institution, mint_token
from gateway.common.headers import weighted
from gateway.ops.config import AuthSettings
from gateway.provinces.federated import Provinces

# Everything from this origin; styles inline (GraphiQL sets them), fonts and
# icons as data: URLs (GraphiQL's stylesheet inlines its fonts).
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data:",
        "font-src 'self' data:",
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    ]
)
_SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
}
_PAGE_HEADERS = {**_SECURITY_HEADERS, "Cache-Control": "no-cache"}
PAGE = "index.html"

INSURED = "INSURED"  # a roster person's persona: no role beyond being insured

_NOT_BUILT = """<!doctype html><meta charset="utf-8"><title>Gongji playground</title>
<p>The playground's files are not built. Run <code>scripts/install</code>
(it needs Node.js and npm), then reload. The graph itself answers POST /graphql.</p>
"""


@dataclass(frozen=True, slots=True, kw_only=True)
class Persona:
    """Someone to act as: a roster person (role ``INSURED``), or staff with a role."""

    key: str
    role: str
    name: str
    cert_no: str
    notes: str
    area_code: str | None = None
    area_name: str | None = None
    insurance_type: str | None = None
    insurance_status: str | None = None
    institution: Institution | None = None  # for the INSTITUTION role

    @classmethod
    def from_roster(cls, person: Mapping[str, Any]) -> Persona:
        return cls(
            key=person["key"],
            role=INSURED,
            name=person["name"],
            cert_no=person["certNo"],
            area_code=person["insuredArea"],
            area_name=person["insuredAreaName"],
            insurance_type=person["insuranceType"],
            insurance_status=person["insuranceStatus"],
            notes=person.get("notes") or "",
        )

    @classmethod
    def staff(cls, entry: Mapping[str, Any]) -> Persona:
        if entry["role"] not in ROLES:
            raise ValueError(f"persona {entry['key']}: unknown role {entry['role']!r}")
        institution = None
        if "institution" in entry:
            named = entry["institution"]
            institution = Institution(code=named["code"], kind=named["kind"])
        return cls(
            key=entry["key"],
            role=entry["role"],
            name=entry["name"],
            cert_no=entry["cert_no"],
            notes=entry.get("notes", ""),
            institution=institution,
        )

    @property
    def roles(self) -> frozenset[str]:
        return frozenset() if self.role == INSURED else frozenset({self.role})

    def as_json(self, provinces: Provinces) -> dict[str, Any]:
        adapter = provinces.for_area(self.area_code) if self.area_code else None
        province = None if adapter is None else {"code": adapter.code, "name": adapter.name}
        return {
            "key": self.key,
            "role": self.role,
            "name": self.name,
            # synthetic people, shown in full so developers can copy them into variables
            "certNo": self.cert_no,
            "area": None
            if self.area_code is None
            else {"code": self.area_code, "name": self.area_name},
            "province": province,
            "insurance": None
            if self.insurance_type is None
            else {"type": self.insurance_type, "status": self.insurance_status},
            "notes": self.notes,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class Example:
    """An operation the playground opens in a tab, with the persona to pick."""

    title: str
    persona: Persona | None
    query: str
    variables: str = ""
    headers: str = ""

    @property
    def document(self) -> str:
        """The query, after a first line saying whom to act as."""
        if self.persona is None:
            who = "# Any persona, or none."
        else:
            who = f"# Pick the persona {self.persona.name} ({self.persona.notes})."
        return f"{who}\n{self.query.strip()}\n"

    def as_json(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "persona": None if self.persona is None else self.persona.key,
            "query": self.document,
            "variables": self.variables.strip(),
            "headers": self.headers.strip(),
        }


def accepts_gzip(accept_encoding: str | None) -> bool:
    q = dict(weighted(accept_encoding))
    return q.get("gzip", q.get("*", 0.0)) > 0


class Assets(StaticFiles):
    """The built files, under the page's security headers.

    For ``X`` it sends ``X.gz`` (which the build writes for the large files) to
    a client that accepts gzip. A browser revalidates each file on every load
    (``no-cache``: a rebuild is seen at once, an unchanged file is a 304). The
    page itself is served at /graphql only.
    """

    async def check_config(self) -> None:
        try:
            await super().check_config()  # asked again on each request until it passes
        except RuntimeError as exc:
            raise HTTPException(503, "the playground is not built: run scripts/install") from exc

    async def get_response(self, path: str, scope: Scope) -> Response:
        if path == PAGE:
            raise HTTPException(status_code=404)
        return await super().get_response(path, scope)

    def file_response(
        self,
        full_path: PathLike,
        stat_result: os.stat_result,
        scope: Scope,
        status_code: int = 200,
    ) -> Response:
        request_headers = Headers(scope=scope)
        headers = {**_SECURITY_HEADERS, "Cache-Control": "no-cache", "Vary": "Accept-Encoding"}
        gzipped = Path(f"{os.fspath(full_path)}.gz")
        if accepts_gzip(request_headers.get("accept-encoding")) and gzipped.is_file():
            response: Response = FileResponse(
                gzipped,
                status_code=status_code,
                stat_result=os.stat(gzipped),
                headers={**headers, "Content-Encoding": "gzip"},
                media_type=mimetypes.guess_type(full_path)[0],
            )
        else:
            response = FileResponse(
                full_path, status_code=status_code, stat_result=stat_result, headers=headers
            )
        if self.is_not_modified(response.headers, request_headers):
            return NotModifiedResponse(response.headers)
        return response


def world(data_dir: Path | None) -> dict[str, str | None]:
    """Where the sandbox world is kept, and the command that starts it over
    (`gateway.state.reset`, run while the gateway is stopped); both ``None`` for a world in
    memory, which a restart renews."""
    if data_dir is None:
        return {"dataDir": None, "reset": None}
    where = str(data_dir.absolute())
    return {"dataDir": where, "reset": f"gongji reset --data-dir {shlex.quote(where)}"}


def load_personas(roster: Path | None, staff: Path | None = None) -> dict[str, Persona]:
    """The roster's people, then staff (``personas.toml``: ``[[persona]]`` with a role)."""
    people = [] if roster is None else json.loads(roster.read_text(encoding="utf-8"))["people"]
    personas = [Persona.from_roster(p) for p in people]
    if staff is not None:
        personas += [Persona.staff(e) for e in tomllib.loads(staff.read_text("utf-8"))["persona"]]
    return {p.key: p for p in personas}


def load_examples(path: Path, personas: Mapping[str, Persona]) -> list[Example]:
    """``examples.toml``: ``[[example]]`` tables of title, persona, query, variables."""
    examples = []
    for entry in tomllib.loads(path.read_text(encoding="utf-8"))["example"]:
        entry = dict(entry)
        key = entry.pop("persona", None)
        if key is not None and key not in personas:
            raise ValueError(f"{path.name}: example {entry.get('title')!r}: no persona {key!r}")
        examples.append(Example(persona=None if key is None else personas[key], **entry))
    return examples


class Playground:
    """The routes of the playground; the app mounts them in sandbox mode only."""

    def __init__(
        self,
        root: Path,
        roster: Path,
        auth: AuthSettings,
        more: Sequence[Mapping[str, Any]] = (),
    ) -> None:
        """Personas: ``roster``'s people, then those of ``more`` (the sandboxes' own
        people, a province installed from a package of its own among them) it lacks,
        then the staff."""
        self.dist = root / "dist"
        self.auth = auth
        personas = load_personas(roster)
        for person in more:
            if person["key"] not in personas:
                personas[person["key"]] = Persona.from_roster(person)
        personas.update(load_personas(None, root / "personas.toml"))
        self.personas = personas
        self.examples = load_examples(root / "examples.toml", self.personas)

    @property
    def built(self) -> bool:
        return (self.dist / PAGE).is_file()

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/playground/personas", self.list_personas),
            Route("/playground/personas/{key}/token", self.persona_token, methods=["POST"]),
            Route("/playground/examples", self.list_examples),
            Route("/playground/world", self.world),
            Mount("/playground", app=Assets(directory=self.dist, check_dir=False)),
        ]

    async def page(self, request: Request) -> Response:
        if not self.built:
            return HTMLResponse(_NOT_BUILT, status_code=503, headers=_PAGE_HEADERS)
        return FileResponse(self.dist / PAGE, headers=_PAGE_HEADERS)

    async def list_personas(self, request: Request) -> Response:
        provinces: Provinces = request.app.state.services.provinces
        return JSONResponse([p.as_json(provinces) for p in self.personas.values()])

    async def persona_token(self, request: Request) -> Response:
        persona = self.personas.get(request.path_params["key"])
        if persona is None:
            return JSONResponse({"error": "no such persona"}, status_code=404)
        token = mint_token(
            persona.cert_no, self.auth, roles=persona.roles, institution=persona.institution
        )
        return JSONResponse(
            {"token": token, "expiresIn": self.auth.token_ttl_seconds},
            headers={"Cache-Control": "no-store"},
        )

    async def list_examples(self, request: Request) -> Response:
        return JSONResponse([e.as_json() for e in self.examples])

    async def world(self, request: Request) -> Response:
        return JSONResponse(world(request.app.state.services.settings.data_dir))

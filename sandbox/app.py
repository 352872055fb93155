"""What every sandbox dialect shares: the app shell, its lifespan and its storage."""

from __future__ import annotations

import contextlib
import datetime as dt
import re
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from sandbox.engine import ProvinceSystem, Versions
from sandbox.faults import FaultMiddleware, Faults, set_faults

# What no province stores as text: the characters XML cannot carry (Henan's parser
# refuses them in its own way), which the JSON provinces refuse as invalid input.
_NOT_TEXT = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def sandbox_app(
    name: str,
    rules: Versions,
    routes: Sequence[BaseRoute],
    *,
    data_dir: Path | None = None,
    roster: dict[str, Any] | None = None,
    faults: Faults | None = None,
    policy_date: dt.date | None = None,
) -> Starlette:
    """A Starlette app for one province; its state lives in ``data_dir/NAME.sqlite3``.

    With no ``data_dir`` the state is in memory (tests). The database is opened in
    the app's lifespan: whoever mounts the app in-process enters
    ``app.router.lifespan_context(app)`` first.

    Every sandbox app carries fault mode (`sandbox.faults`): ``faults`` are its
    settings at start (default: off); ``set_faults(app, ...)`` or ``PUT /_faults``
    change them later. ``rules``: the province's versions of its rules; the one in
    force on ``policy_date`` (today in Beijing by default) applies.
    """

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        path = data_dir / "sandbox" / f"{name}.sqlite3" if data_dir else None
        system = await ProvinceSystem.open(rules, path=path, roster=roster, policy_date=policy_date)
        app.state.system = system
        try:
            yield
        finally:
            await system.close()

    back_office = Route("/backoffice/registrations", _move_registration, methods=["POST"])
    app = Starlette(routes=[*routes, back_office], lifespan=lifespan)
    app.add_middleware(FaultMiddleware, state=app.state)
    set_faults(app, faults)
    return app


async def _move_registration(request: Request) -> Response:
    """The province's back office (not the gateway's dialect): ``{"certNo", "toProvince"}``
    moves a person's registration to another province (its two-digit code) or ends it
    (``toProvince`` null); the dialect's change feed then reports it."""
    try:
        body = await request.json()
        cert_no, to = body["certNo"], body.get("toProvince")
        if not isinstance(cert_no, str) or not (to is None or isinstance(to, str)):
            raise TypeError
        change = await system_of(request).move_registration(cert_no, to_province=to)
    except LookupError:
        return JSONResponse({"error": "not insured here"}, status_code=404)
    except (ValueError, TypeError):
        return JSONResponse({"error": "certNo and toProvince, please"}, status_code=400)
    return JSONResponse(change)


def system_of(request: Request) -> ProvinceSystem:
    system: ProvinceSystem = request.app.state.system
    return system


def unreadable_text(value: Any) -> bool:
    """Whether any string in a request's JSON ``value`` holds a character no province
    stores (a control character but tab and line breaks, or a noncharacter): a JSON
    dialect refuses such a request as malformed, as Henan's XML parser does."""
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            if _NOT_TEXT.search(item):
                return True
        elif isinstance(item, dict):
            pending += [*item.keys(), *item.values()]
        elif isinstance(item, list):
            pending += item
    return False

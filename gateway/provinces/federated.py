"""The table of provinces: adapters loaded from entry points, each with its one client.

This is the one place the set of provinces is assembled. It names none: the
``gongji.adapters`` entry points declare them, configuration says how to reach
each, and a province without a ``base_url`` is served by the in-process sandbox
registered under the same name in ``gongji.sandboxes``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import importlib
from collections.abc import AsyncIterator, Callable, Collection, Iterator, Mapping
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import httpx

from adapters.base import AdapterSettings, ProvinceAdapter

ADAPTER_GROUP = "gongji.adapters"
SANDBOX_GROUP = "gongji.sandboxes"


class Provinces(Mapping[str, ProvinceAdapter]):
    """Adapters by province code; duplicate codes are refused."""

    def __init__(self, adapters: list[ProvinceAdapter]) -> None:
        self._by_code: dict[str, ProvinceAdapter] = {}
        for adapter in adapters:
            if adapter.code in self._by_code:
                raise ValueError(f"two adapters claim province code {adapter.code}")
            self._by_code[adapter.code] = adapter

    def __getitem__(self, code: str) -> ProvinceAdapter:
        return self._by_code[code]

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._by_code))

    def __len__(self) -> int:
        return len(self._by_code)

    def for_area(self, area_code: str) -> ProvinceAdapter | None:
        return self._by_code.get(area_code[:2])


def adapter_classes() -> dict[str, type[ProvinceAdapter]]:
    found: dict[str, type[ProvinceAdapter]] = {}
    for ep in entry_points(group=ADAPTER_GROUP):
        cls = ep.load()
        if not (isinstance(cls, type) and issubclass(cls, ProvinceAdapter)):
            raise TypeError(f"entry point {ep.name} is not a ProvinceAdapter")
        found[ep.name] = cls
    return found


def sandbox_factory(name: str) -> Any:
    for ep in entry_points(group=SANDBOX_GROUP, name=name):
        return ep.load()
    raise LookupError(f"no sandbox named {name!r}")


def sandbox_names() -> list[str]:
    return sorted(ep.name for ep in entry_points(group=SANDBOX_GROUP))


def sandbox_roster(name: str) -> dict[str, Any] | None:
    """The people the sandbox ``name`` names as its own (its module's ``roster()``, in
    the roster format of `sandbox.engine`); None if it names none."""
    for ep in entry_points(group=SANDBOX_GROUP, name=name):
        named = getattr(importlib.import_module(ep.module), "roster", None)
        return named() if callable(named) else None
    raise LookupError(f"no sandbox named {name!r}")


def sandbox_people() -> list[dict[str, Any]]:
    """The people the installed sandboxes are seeded with, for those that name them
    (`sandbox_roster`), each once."""
    people: dict[str, dict[str, Any]] = {}
    for name in sandbox_names():
        for person in (sandbox_roster(name) or {"people": []})["people"]:
            people.setdefault(person["key"], person)
    return list(people.values())


@contextlib.asynccontextmanager
async def open_provinces(
    settings: Mapping[str, AdapterSettings],
    *,
    data_dir: Path | None,
    disabled: Collection[str] = (),
    transports: Mapping[str, httpx.AsyncBaseTransport] | None = None,
    sandboxes: bool = True,
    measure: Callable[[str, httpx.AsyncBaseTransport], httpx.AsyncBaseTransport] | None = None,
    policy_date: dt.date | None = None,
) -> AsyncIterator[Provinces]:
    """Build every adapter with its pooled client; close them all on exit.

    ``transports`` replaces the network for named provinces (tests inject respx
    or fault transports here). ``sandboxes=False`` (production) refuses a
    province without a ``base_url`` instead of running its sandbox in-process.
    ``policy_date``: the date whose rules every province applies (None: today).
    """
    transports = transports or {}
    async with contextlib.AsyncExitStack() as stack:
        adapters: list[ProvinceAdapter] = []
        for name, cls in sorted(adapter_classes().items()):
            if name in disabled:
                continue
            conf = settings.get(name) or AdapterSettings(base_url="")
            if policy_date is not None:
                conf = dataclasses.replace(conf, policy_date=policy_date)
            transport = transports.get(name)
            if not (conf.base_url or sandboxes):
                raise ValueError(
                    f"province {name}: production mode needs its base_url"
                    f" ([provinces.{name}] base_url, or enabled = false)"
                )
            if transport is None and not conf.base_url:
                app = sandbox_factory(name)(data_dir=data_dir, policy_date=policy_date)
                await stack.enter_async_context(app.router.lifespan_context(app))
                # a sandbox crash is the province failing, not the gateway
                transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
            if not conf.base_url:
                conf = dataclasses.replace(conf, base_url=f"http://{name}.sandbox")
            if transport is None:
                transport = conf.network()
            if measure is not None:
                transport = measure(cls.code, transport)
            client = conf.make_client(transport)
            stack.push_async_callback(client.aclose)
            adapter = cls.configured(client, conf)
            _check(name, adapter)
            adapters.append(adapter)
        yield Provinces(adapters)


def _check(name: str, adapter: ProvinceAdapter) -> None:
    """Refuse to start with a province whose declared rules cannot work."""
    try:
        policy = adapter.policy()
    except LookupError as exc:
        raise ValueError(f"province {name}: {exc}; declare a policy in force today") from exc
    if policy.spouse_confirmation and type(adapter).respond is ProvinceAdapter.respond:
        raise ValueError(
            f"province {name}: its policy asks spouses to confirm, but the adapter"
            " does not implement respond()"
        )

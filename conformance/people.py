"""The people the scenarios are staged with: those each province's sandbox is seeded with.

A sandbox module names its people with ``roster()`` (the `sandbox.engine` roster
format: ``people`` and ``relations``); without one, it is seeded with the repository's
roster (`sandbox.engine.load_roster`). The suite seeds every sandbox with the union of
them all (`ROSTER`: a province's people may include a relative insured in another), and
picks each scenario's people from it by the adapter's area-code prefix and policy.
A scenario that finds nobody fails with `Missing`: what the province's people must
include.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any, NoReturn, TypeVar

import pytest

from gateway.provinces.federated import sandbox_roster
from sandbox.engine import load_roster

T = TypeVar("T")

# Which provinces the suite runs for (names, comma-separated; unset: all installed).
CHOSEN = "GONGJI_CONFORMANCE"


def chosen(name: str) -> bool:
    wanted = os.environ.get(CHOSEN, "").strip()
    return not wanted or name in {n.strip() for n in wanted.split(",")}


@dataclass(frozen=True)
class Missing:
    """A scenario a province's people cannot stage: it fails, saying what they lack."""

    province: str
    needs: str

    def fail(self) -> NoReturn:
        pytest.fail(
            f"province {self.province}: its sandbox's people cannot stage this scenario;"
            f" they must include {self.needs} (roster(), docs/adding-a-province.md)",
            pytrace=False,
        )


def need(value: T | Missing) -> T:
    """``value``, or the scenario fails for what is missing."""
    if isinstance(value, Missing):
        value.fail()
    return value


def roster_of(name: str) -> dict[str, Any]:
    """The people the sandbox ``name`` is seeded with: its own, else the shared roster."""
    return sandbox_roster(name) or load_roster()


def _union() -> tuple[dict[str, dict[str, Any]], list[dict[str, str]]]:
    people: dict[str, dict[str, Any]] = {}
    relations: list[dict[str, str]] = []
    seen: set[tuple[str, str, str]] = set()
    for ep in sorted(entry_points(group="gongji.sandboxes"), key=lambda ep: ep.name):
        if not chosen(ep.name):
            continue
        roster = roster_of(ep.name)
        for person in roster["people"]:
            people.setdefault(person["key"], person)
        for relation in roster["relations"]:
            fact = (relation["a"], relation["b"], relation["kind"])
            if fact not in seen:
                seen.add(fact)
                relations.append(relation)
    return people, relations


PEOPLE, CIVIL_RELATIONS = _union()
# Every sandbox of the suite is seeded with everyone: a relative a province's people
# name who is insured in another province is insured there too, as the real systems
# would have them (the civil record is one, and national).
ROSTER: dict[str, Any] = {"people": list(PEOPLE.values()), "relations": CIVIL_RELATIONS}

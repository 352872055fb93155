"""A province's mutual-aid rules as data: dated `Policy` values, and the one in force on
a Beijing date. A rule change is a new value with its effective date (configuration
can add one, or change a declared one: `AdapterSettings`), never a code path."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from adapters.vocabulary import Relation

# The relations the seed-era rules allow (2021-2023): spouse, parents and children.
CORE_FAMILY = frozenset({Relation.SPOUSE, Relation.PARENT, Relation.CHILD})
# Near relatives (近亲属) as the Civil Code defines them (art. 1045), which mutual aid
# may cover from 2024 on (国办发〔2024〕38号): the core family, siblings, grandparents
# and grandchildren. In-laws are not among them.
NEAR_RELATIVES = CORE_FAMILY | {Relation.SIBLING, Relation.GRANDPARENT, Relation.GRANDCHILD}


@dataclass(frozen=True, slots=True)
class Policy:
    """A province's mutual-aid rules from ``effective_from`` on. Data, not code paths."""

    effective_from: dt.date
    max_relatives: int = 5
    cross_city: bool = False
    cross_province: bool = False
    spouse_confirmation: bool = False
    single_binding: bool = False
    commitment_required: bool = False
    allowed_relations: frozenset[Relation] = CORE_FAMILY
    # An account may pay a bound relative's resident premium (2024 on).
    premium_payment: bool = False

    def __post_init__(self) -> None:
        if self.max_relatives < 1:
            raise ValueError("max_relatives must be at least 1")

    def with_changes(self, **changes: Any) -> Policy:
        """A copy with some rules changed (for configuration overrides)."""
        if "allowed_relations" in changes:
            changes["allowed_relations"] = frozenset(
                Relation(r) if isinstance(r, str) else r for r in changes["allowed_relations"]
            )
        if isinstance(changes.get("effective_from"), str):
            changes["effective_from"] = dt.date.fromisoformat(changes["effective_from"])
        return replace(self, **changes)


# China keeps one time zone and no daylight saving: a policy takes effect on a Beijing date.
CHINA = dt.timezone(dt.timedelta(hours=8), "Asia/Shanghai")


def china_date(moment: dt.datetime | None = None) -> dt.date:
    """The Beijing date of ``moment`` (now by default), whatever the server's zone."""
    return (moment or dt.datetime.now(dt.UTC)).astimezone(CHINA).date()


def policy_in_force(policies: Sequence[Policy], on: dt.date) -> Policy:
    """The policy with the latest ``effective_from`` on or before ``on``."""
    in_force = [p for p in policies if p.effective_from <= on]
    if not in_force:
        raise LookupError(f"no policy in force on {on.isoformat()}")
    return max(in_force, key=lambda p: p.effective_from)

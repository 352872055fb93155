"""Synthetic families for the dashboard benchmark, in the format of fixtures/roster.json.

Each family has a caller (a Hebei employee with a balance) and 1 to 8 relatives,
taken in this order so that from 3 relatives on the family spans all three
provinces and each province holds bindings:

====  ===========  ==============================  =======================================
 #    relation     insured                          set up through the gateway
====  ===========  ==============================  =======================================
 1    SPOUSE       Hebei 130100, employee           caller binds them (ACTIVE); they add
                                                    the caller as a kinship member
 2    PARENT       Jiangsu 320100, employee          caller adds them (kinship)
 3    PARENT       Henan 410100, employee            caller adds them (kinship)
 4    CHILD (21)   Hebei 130200 (cross-city)         caller binds them
 5    SIBLING      Jiangsu 320100 (child of #2)      #2 binds them in Jiangsu; kinship
 6    SIBLING      Henan 410100 (child of #3)        #3 binds them in Henan; kinship
 7    CHILD (13)   Hebei 130100                      caller binds them
 8    GRANDPARENT  Jiangsu 320500 (mother of #2)     caller adds them (kinship)
====  ===========  ==============================  =======================================

Every kinship link is consented to by the member (APPROVED) and activated (ACTIVE).
ID numbers are valid GB 11643 numbers (check character from `gateway.common.certno`).

    .venv/bin/python -m bench.families --out roster.json   # the roster alone
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.common.certno import check_character, is_valid

AREAS = {
    "130100": "河北省石家庄市",
    "130200": "河北省唐山市",
    "320100": "江苏省南京市",
    "320500": "江苏省苏州市",
    "410100": "河南省郑州市",
}
PROVINCE_OF_AREA = {"13": "hebei", "32": "jiangsu", "41": "henan"}
MAX_RELATIVES = 8
PAYMENT_PASSWORD = "285714"  # noqa: S105 (a sandbox payment password, as in the README)

_SURNAMES = "王李张刘陈杨赵黄周吴徐孙胡朱高林何郭马罗"
_GIVEN = "建国秀英志强丽华明伟芳敏静磊洋勇艳杰娟涛超平刚桂兰"


@dataclass(frozen=True, slots=True)
class Slot:
    """One place in a family: who they are to the caller and where they are insured."""

    role: str  # key suffix
    relation: str  # to the caller, as the civil record will say
    area: str
    employee: bool
    male: bool
    age: int
    balance: str | None = None


SLOTS: tuple[Slot, ...] = (
    Slot("spouse", "SPOUSE", "130100", True, False, 45, "1500.00"),
    Slot("father", "PARENT", "320100", True, True, 72, "2800.00"),
    Slot("mother", "PARENT", "410100", True, False, 70, "900.00"),
    Slot("son", "CHILD", "130200", False, True, 21),
    Slot("sister", "SIBLING", "320100", False, False, 44),
    Slot("brother", "SIBLING", "410100", False, True, 40),
    Slot("daughter", "CHILD", "130100", False, False, 13),
    Slot("grandmother", "GRANDPARENT", "320500", False, False, 93),
)
CALLER = Slot("caller", "SELF", "130100", True, True, 47, "3200.00")


@dataclass(frozen=True, slots=True)
class Bind:
    """``authorizer`` binds ``beneficiary`` (keys) with ``relation`` (theirs to the authorizer)."""

    authorizer: str
    beneficiary: str
    relation: str
    commitment: bool = False


@dataclass(frozen=True, slots=True)
class KinshipAdd:
    adder: str
    member: str
    relation: str  # the member's relation to the adder


@dataclass(slots=True)
class Family:
    index: int
    size: int
    caller: dict[str, Any]
    relatives: list[dict[str, Any]]
    relations: list[dict[str, str]]
    bindings: list[Bind] = field(default_factory=list)
    kinship: list[KinshipAdd] = field(default_factory=list)

    @property
    def people(self) -> list[dict[str, Any]]:
        return [self.caller, *self.relatives]

    def person(self, key: str) -> dict[str, Any]:
        return next(p for p in self.people if p["key"] == key)

    def provinces(self) -> list[str]:
        """The provinces insuring someone of the family (the caller included)."""
        return sorted({PROVINCE_OF_AREA[p["insuredArea"][:2]] for p in self.people})


def cert_no(area: str, born: dt.date, serial: int, male: bool) -> str:
    """A valid 18-character ID number; ``serial`` (0..499) makes it unique per date."""
    seq = serial * 2 + (1 if male else 0)
    if not 0 <= seq <= 999:
        raise ValueError("serial out of range")
    first17 = f"{area[:4]}02{born:%Y%m%d}{seq:03d}"
    number = first17 + check_character(first17)
    assert is_valid(number), number
    return number


def _person(family: int, slot: Slot, position: int, as_of: dt.date) -> dict[str, Any]:
    # ``slot.age`` years and a few weeks before ``as_of``, distinct per family
    anniversary = dt.date(as_of.year - slot.age, as_of.month, min(as_of.day, 28))
    born = anniversary - dt.timedelta(days=20 + family + position)
    surname = _SURNAMES[family % len(_SURNAMES)] if slot.relation != "SPOUSE" else "李"
    given = _GIVEN[(family * 7 + position * 3) % len(_GIVEN)]
    given2 = _GIVEN[(family * 5 + position * 11 + 1) % len(_GIVEN)]
    return {
        "key": f"bench_f{family:02d}_{slot.role}",
        "certNo": cert_no(slot.area, born, family * 10 + position, slot.male),
        "name": f"{surname}{given}{given2}",
        "gender": "M" if slot.male else "F",
        "birthDate": born.isoformat(),
        "insuredArea": slot.area,
        "insuredAreaName": AREAS[slot.area],
        "insuranceType": "EMPLOYEE" if slot.employee else "RESIDENT",
        "insuranceStatus": "ACTIVE",
        "accountBalance": slot.balance,
        "phone": f"139{family:04d}{position:04d}",
        "notes": f"bench family {family}: {slot.role} ({slot.relation} of the caller)",
    }


def family(index: int, size: int, as_of: dt.date) -> Family:
    """Family ``index`` with the first ``size`` relatives of `SLOTS`."""
    if not 1 <= size <= MAX_RELATIVES:
        raise ValueError(f"a family has 1 to {MAX_RELATIVES} relatives")
    caller = _person(index, CALLER, 0, as_of)
    slots = SLOTS[:size]
    relatives = [_person(index, slot, i + 1, as_of) for i, slot in enumerate(slots)]
    key = {slot.role: p["key"] for slot, p in zip(slots, relatives, strict=True)}
    key["caller"] = caller["key"]
    cert = {p["key"]: p["certNo"] for p in [caller, *relatives]}

    def has(*roles: str) -> bool:
        return all(r in key for r in roles)

    relations: list[dict[str, str]] = []

    def fact(kind: str, a: str, b: str) -> None:
        relations.append({"kind": kind, "a": cert[key[a]], "b": cert[key[b]]})

    if has("spouse"):
        fact("SPOUSE", "caller", "spouse")
    for parent in ("father", "mother"):
        if has(parent):
            fact("PARENT_OF", parent, "caller")
    for child in ("son", "daughter"):
        if has(child):
            fact("PARENT_OF", "caller", child)
    if has("sister"):
        fact("PARENT_OF", "father", "sister")
    if has("brother"):
        fact("PARENT_OF", "mother", "brother")
    if has("grandmother"):
        fact("PARENT_OF", "grandmother", "father")

    made = Family(index, size, caller, relatives, relations)
    plan_binds = [
        ("caller", "spouse", "SPOUSE", False),
        ("caller", "son", "CHILD", False),
        ("caller", "daughter", "CHILD", False),
        ("father", "sister", "CHILD", True),  # Jiangsu: the commitment letter
        ("mother", "brother", "CHILD", False),  # Henan: single binding, same city
    ]
    for auth, bene, relation, commitment in plan_binds:
        if has(auth, bene):
            made.bindings.append(Bind(key[auth], key[bene], relation, commitment))
    plan_kinship = [
        ("spouse", "caller", "SPOUSE"),
        ("caller", "father", "PARENT"),
        ("caller", "mother", "PARENT"),
        ("caller", "sister", "SIBLING"),
        ("caller", "brother", "SIBLING"),
        ("caller", "grandmother", "GRANDPARENT"),
    ]
    for adder, member, relation in plan_kinship:
        if has(adder, member):
            made.kinship.append(KinshipAdd(key[adder], key[member], relation))
    return made


@dataclass(slots=True)
class World:
    """The families of one benchmark run: ``by_size[n]`` has ``n`` relatives, and
    ``load`` are the callers the throughput run rotates over (all of size 8)."""

    as_of: dt.date
    by_size: dict[int, Family]
    load: list[Family]

    @property
    def families(self) -> list[Family]:
        seen: dict[int, Family] = {f.index: f for f in [*self.by_size.values(), *self.load]}
        return [seen[i] for i in sorted(seen)]

    def roster(self) -> dict[str, Any]:
        people = [p for f in self.families for p in f.people]
        relations = [r for f in self.families for r in f.relations]
        certs = [p["certNo"] for p in people]
        if len(set(certs)) != len(certs):
            raise AssertionError("duplicate ID numbers in the bench roster")
        return {
            "about": "Synthetic families for bench/dashboard.py (bench/families.py). No real"
            " person. ID numbers follow GB 11643-1999.",
            "asOf": self.as_of.isoformat(),
            "areas": AREAS,
            "people": people,
            "relations": relations,
        }


def world(load_families: int = 4, as_of: dt.date | None = None) -> World:
    """Families of 1..8 relatives (indexes 1..8), and ``load_families`` families of 8:
    the one of size 8 and more (indexes 9...)."""
    as_of = as_of or dt.date.today()
    by_size = {n: family(n, n, as_of) for n in range(1, MAX_RELATIVES + 1)}
    load = [by_size[MAX_RELATIVES]]
    load += [family(MAX_RELATIVES + i, MAX_RELATIVES, as_of) for i in range(1, load_families)]
    return World(as_of, by_size, load)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--load-families", type=int, default=4)
    args = parser.parse_args()
    roster = world(args.load_families).roster()
    args.out.write_text(json.dumps(roster, ensure_ascii=False, indent=1), encoding="utf-8")
    print(f"{len(roster['people'])} people written to {args.out}")


if __name__ == "__main__":
    main()

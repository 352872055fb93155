"""Shandong's own people (illustrative), in `sandbox.engine`'s roster format: whom the
conformance kit stages its scenarios with for province 37 (`conformance.people`), seeded
with the shared national civil record (`gongji_shandong.sandbox.roster`).

Nobody here is in the repository's shared roster and nobody there is related to anyone
here, so the other provinces' civil records stay as they are when this package is
installed beside them. ID numbers are valid (GB 11643: the check character is computed
as `sandbox.engine.scenario_family` computes it).
"""

from __future__ import annotations

from typing import Any

JINAN, QINGDAO = ("370100", "山东省济南市"), ("370200", "山东省青岛市")
SHIJIAZHUANG = ("130100", "河北省石家庄市")  # another province's: the kit seeds every sandbox
CHENGDU = ("510100", "四川省成都市")  # a province no adapter serves

_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_CHECK = "10X98765432"


def cert_no(birthplace: str, born: str, order: int) -> str:
    """A valid GB 11643 ID number: the six-digit birthplace, the birth date, a three-digit
    order (odd for a man, even for a woman) and the check character."""
    body = f"{birthplace}{born.replace('-', '')}{order:03d}"
    total = sum(int(digit) * weight for digit, weight in zip(body, _WEIGHTS, strict=True))
    return body + _CHECK[total % 11]


# key, name, birthplace, birth date, order, insured area, employee's balance (None:
# resident insurance), insurance status, phone, what the person is there for
_PEOPLE: tuple[tuple[str, str, str, str, int, tuple[str, str], str | None, str, str, str], ...] = (
    (
        "sd_zhang_wei",
        "张伟",
        "370102",
        "1975-04-12",
        31,
        JINAN,
        "4200.00",
        "ACTIVE",
        "13900000370",
        "Shandong employee with six near relatives insured in Shandong: the fifth binding"
        " breaks the cap of 4; the richer of the two parents who may pay for 张小雨",
    ),
    (
        "sd_liu_fang",
        "刘芳",
        "370203",
        "1977-09-03",
        42,
        QINGDAO,
        "2600.00",
        "ACTIVE",
        "13900000371",
        "张伟's spouse, insured in Qingdao (another city: Shandong binds across cities);"
        " no confirmation in Shandong; the poorer parent of 张小雨",
    ),
    (
        "sd_zhang_shan",
        "张山",
        "370102",
        "1948-01-20",
        11,
        JINAN,
        None,
        "ACTIVE",
        "13900000372",
        "张伟's father, resident insurance (no account): the first relative to bind",
    ),
    (
        "sd_wang_xiulan",
        "王秀兰",
        "370102",
        "1950-06-18",
        22,
        JINAN,
        None,
        "ACTIVE",
        "13900000373",
        "张伟's mother, resident insurance",
    ),
    (
        "sd_zhang_xiaoyu",
        "张小雨",
        "370102",
        "2005-11-30",
        24,
        JINAN,
        None,
        "ACTIVE",
        "13900000374",
        "child of 张伟 and 刘芳, resident insurance: both parents may pay for her",
    ),
    (
        "sd_zhang_xiaolei",
        "张小磊",
        "370102",
        "2010-02-14",
        15,
        JINAN,
        None,
        "ACTIVE",
        "13900000375",
        "child of 张伟 and 刘芳, resident insurance",
    ),
    (
        "sd_zhang_min",
        "张敏",
        "370102",
        "1979-07-07",
        26,
        QINGDAO,
        "1800.00",
        "ACTIVE",
        "13900000376",
        "张伟's sister (a near relative from the 2024 rules), an employee in Qingdao",
    ),
    (
        "sd_zhang_feng",
        "张峰",
        "370102",
        "1973-02-09",
        19,
        SHIJIAZHUANG,
        None,
        "ACTIVE",
        "13900000381",
        "张伟's brother, insured in Hebei: a relative across provinces (from the 2026 rules"
        " bound with a quota)",
    ),
    (
        "sd_liu_changhai",
        "刘长海",
        "370203",
        "1951-03-05",
        37,
        QINGDAO,
        None,
        "ACTIVE",
        "13900000377",
        "刘芳's father: 张伟's parent-in-law, on the civil record but never bindable",
    ),
    (
        "sd_liu_qiang",
        "刘强",
        "370203",
        "1981-12-01",
        53,
        CHENGDU,
        "1500.00",
        "ACTIVE",
        "13900000378",
        "刘芳's brother, insured in Sichuan (no adapter serves it): someone the kit's"
        " people include who is insured elsewhere",
    ),
    (
        "sd_zhao_lei",
        "赵磊",
        "370102",
        "1983-08-08",
        71,
        JINAN,
        "900.00",
        "ACTIVE",
        "13900000379",
        "insured in Jinan, related to nobody here: the stranger a claim of kinship fails for",
    ),
    (
        "sd_sun_li",
        "孙丽",
        "370102",
        "1966-10-10",
        84,
        JINAN,
        None,
        "SUSPENDED",
        "13900000380",
        "resident whose insurance lapsed (断缴): a patient the province refuses to settle for",
    ),
)

# (kind, a, b) by key: SPOUSE, or PARENT_OF (a is b's parent)
_RELATIONS = (
    ("SPOUSE", "sd_zhang_wei", "sd_liu_fang"),
    ("PARENT_OF", "sd_zhang_shan", "sd_zhang_wei"),
    ("PARENT_OF", "sd_wang_xiulan", "sd_zhang_wei"),
    ("PARENT_OF", "sd_zhang_shan", "sd_zhang_min"),
    ("PARENT_OF", "sd_wang_xiulan", "sd_zhang_min"),
    ("PARENT_OF", "sd_zhang_shan", "sd_zhang_feng"),
    ("PARENT_OF", "sd_wang_xiulan", "sd_zhang_feng"),
    ("SPOUSE", "sd_zhang_shan", "sd_wang_xiulan"),
    ("PARENT_OF", "sd_zhang_wei", "sd_zhang_xiaoyu"),
    ("PARENT_OF", "sd_liu_fang", "sd_zhang_xiaoyu"),
    ("PARENT_OF", "sd_zhang_wei", "sd_zhang_xiaolei"),
    ("PARENT_OF", "sd_liu_fang", "sd_zhang_xiaolei"),
    ("PARENT_OF", "sd_liu_changhai", "sd_liu_fang"),
    ("PARENT_OF", "sd_liu_changhai", "sd_liu_qiang"),
)


def roster() -> dict[str, Any]:
    """Shandong's people and their civil record (a new dict each time)."""
    people = []
    for key, name, place, born, order, (area, area_name), balance, status, phone, notes in _PEOPLE:
        people.append(
            {
                "key": key,
                "certNo": cert_no(place, born, order),
                "name": name,
                "gender": "M" if order % 2 else "F",
                "birthDate": born,
                "insuredArea": area,
                "insuredAreaName": area_name,
                "insuranceType": "RESIDENT" if balance is None else "EMPLOYEE",
                "insuranceStatus": status,
                "accountBalance": balance,
                "phone": phone,
                "notes": notes,
            }
        )
    by_key = {p["key"]: p["certNo"] for p in people}
    relations = [{"kind": kind, "a": by_key[a], "b": by_key[b]} for kind, a, b in _RELATIONS]
    return {
        "about": "Shandong's people (gongji-shandong, illustrative)",
        "people": people,
        "relations": relations,
    }

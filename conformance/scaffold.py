"""``gongji new-province``: a new province's package, made from the example out of tree.

The example (examples/shandong: a JSON-RPC 2.0 dialect, its rules, its people, its tests
and its check script) is copied with its names changed: the package, the entry points'
name, the province's code and Chinese name, its two cities, and its people's keys. What
comes out installs beside gongji, type-checks with ``mypy --strict`` and passes the kit
as it is; then make the adapter and the sandbox speak your province's own dialect, and
its rules and people yours (docs/adding-a-province.md).

    python -m conformance.scaffold guangdong --code 44 --title 广东 \\
        --city 440100:广州市 --city 440300:深圳市 --out ../gongji-guangdong
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

TEMPLATE = Path(__file__).resolve().parent.parent / "examples" / "shandong"
SKIP = {"__pycache__", ".ruff_cache", ".mypy_cache", ".pytest_cache"}


def words(
    name: str, code: str, title: str, cities: Sequence[tuple[str, str]]
) -> list[tuple[str, str]]:
    """What the example's words become, longest first (so none is changed twice)."""
    (first, first_name), (second, second_name) = cities
    return [
        ('("370100", "山东省济南市")', f'("{first}", "{title}省{first_name}")'),
        ('("370200", "山东省青岛市")', f'("{second}", "{title}省{second_name}")'),
        ("gongji-shandong", f"gongji-{name}"),
        ("gongji_shandong", f"gongji_{name}"),
        ("Shandong", name.capitalize()),
        ("shandong", name),
        ("山东", title),
        ('id_prefix="SD"', f'id_prefix="{name[:2].upper()}"'),
        ('"sd_', f'"{name}_'),
        ("JINAN", "FIRST_CITY"),
        ("QINGDAO", "SECOND_CITY"),
        # the check script finds gongji's repository beside the example; from elsewhere
        ('repo="$(cd "$here/../.." && pwd)"', f'repo="${{GONGJI_REPO:-{TEMPLATE.parent.parent}}}"'),
    ]


CODE = re.compile(r'(?<=["\s(])37(?=["\s,.)])')  # the province code, not 370102 or 1937
# A birthplace in the province ("370102"): the new one's, so that its people's ID numbers
# are their own (two provinces made from one example must not share a person).
BIRTHPLACE = re.compile(r'"37([0-9]{4})"')


def make(
    name: str,
    code: str,
    title: str,
    cities: Sequence[tuple[str, str]],
    out: Path,
    template: Path = TEMPLATE,
) -> Path:
    """The new province's package at ``out`` (which must not exist)."""
    if not re.fullmatch(r"[a-z][a-z0-9]*", name):
        raise ValueError(f"{name!r}: a province's name is lower-case letters and digits")
    if not re.fullmatch(r"[1-9][0-9]", code):
        raise ValueError(f"{code!r}: a province's code is two digits (GB/T 2260)")
    if len(cities) != 2 or not all(re.fullmatch(rf"{code}[0-9]{{4}}", c) for c, _ in cities):
        raise ValueError(f"two cities of province {code} (--city {code}0100:名称)")
    if not template.is_dir():
        raise FileNotFoundError(
            f"the template {template} is not here: install gongji from its repository"
            " (pip install -e), where examples/ lives"
        )
    if out.exists():
        raise FileExistsError(f"{out} exists: choose a new directory")
    changes = words(name, code, title, cities)
    for source in sorted(template.rglob("*")):
        relative = source.relative_to(template)
        if SKIP & set(relative.parts) or source.is_dir():
            continue
        target = out / Path(*(part.replace("shandong", name) for part in relative.parts))
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            text = source.read_text("utf-8")
        except UnicodeDecodeError:
            shutil.copy2(source, target)
            continue
        for old, new in changes:
            text = text.replace(old, new)
        text = BIRTHPLACE.sub(lambda m: f'"{code}{m.group(1)}"', text)
        target.write_text(CODE.sub(code, text), "utf-8")
        shutil.copymode(source, target)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="gongji new-province", description=__doc__)
    parser.add_argument("name", help="the entry points' name, e.g. guangdong")
    parser.add_argument("--code", required=True, help="the province's code, e.g. 44")
    parser.add_argument("--title", required=True, help="its Chinese name, e.g. 广东")
    parser.add_argument(
        "--city",
        action="append",
        required=True,
        metavar="CODE:NAME",
        help="one of two cities where its people are insured, e.g. 440100:广州市",
    )
    parser.add_argument("--out", type=Path, help="where (default: ./gongji-NAME)")
    args = parser.parse_args(argv)
    cities = [tuple(c.split(":", 1)) for c in args.city]
    try:
        made = make(
            args.name,
            args.code,
            args.title,
            [(c[0], c[1]) for c in cities if len(c) == 2],
            args.out or Path(f"gongji-{args.name}"),
        )
    except (ValueError, FileNotFoundError, FileExistsError) as exc:
        print(f"gongji new-province: {exc}", file=sys.stderr)
        return 2
    print(f"made {made}: pip install -e {made}, then gongji conformance --province {args.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

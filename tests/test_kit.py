"""`gongji conformance`: the kit run as an integrator runs it, on a province installed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.edge.cli import main

ROOT = Path(__file__).resolve().parent.parent


def test_the_kit_runs_on_the_province_named_and_passes_pytest_s_options_on(
    capfd: pytest.CaptureFixture[str],
) -> None:
    status = main(
        ["conformance", "--province", "henan", "-q", "-p", "no:randomly", "-k", "dialect"]
    )
    out = capfd.readouterr().out
    assert status == 0, out
    assert "passed" in out
    assert main(["conformance", "--province", "henan", "--collect-only", "-q"]) == 0
    collected = [line for line in capfd.readouterr().out.splitlines() if "::" in line]
    assert collected
    provinces = {"hebei", "jiangsu", "henan"}
    named = [line for line in collected if any(p in line for p in provinces)]
    assert named
    assert all("henan" in line for line in named)  # the province asked for, no other


def test_the_kit_refuses_a_province_not_installed(capfd: pytest.CaptureFixture[str]) -> None:
    assert main(["conformance", "--province", "atlantis"]) == 2
    assert "no province atlantis is installed" in capfd.readouterr().err


def test_only_the_kit_passes_options_on() -> None:
    with pytest.raises(SystemExit):
        main(["migrate", "-x"])


def test_a_new_province_s_package_is_made_from_the_example_and_type_checks(
    tmp_path: Path,
) -> None:
    """`gongji new-province`: the example with its names changed, nothing of Shandong
    left in the code, and ``mypy --strict`` as the rest (installing it and running the
    kit on it is examples/shandong/check's, in a venv of its own)."""
    out = tmp_path / "gongji-guangdong"
    assert new_guangdong(out) == 0
    package = out / "gongji_guangdong"
    code = "\n".join(p.read_text("utf-8") for p in sorted(package.glob("*.py")))
    assert 'code = "44"' in code
    assert 'name = "广东省"' in code
    assert '("440100", "广东省广州市")' in code
    for gone in ("shandong", "Shandong", "山东", '"37"', "sd_", '"3701'):
        assert gone not in code, gone
    # its people are its own: no ID number of the example's
    made = _people(package.parent, "gongji_guangdong")
    example = _people(ROOT / "examples" / "shandong", "gongji_shandong")
    assert made
    assert not made & example
    pyproject = (out / "pyproject.toml").read_text("utf-8")
    assert 'guangdong = "gongji_guangdong.adapter:GuangdongAdapter"' in pyproject
    checked = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", str(package)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout
    # a second time, or a name that is no name, is refused
    assert new_guangdong(out) == 2
    assert main(["new-province", "Guang-Dong", "--code", "44", "--title", "广东", *CITIES]) == 2


CITIES = ["--city", "440100:广州市", "--city", "440300:深圳市"]


def new_guangdong(out: Path) -> int:
    """`gongji new-province` for Guangdong, made at ``out``: its exit status."""
    return main(
        ["new-province", "guangdong", "--code", "44", "--title", "广东", *CITIES, "--out", str(out)]
    )


def _people(root: Path, package: str) -> set[str]:
    """The ID numbers of a province package's people (its ``people.roster()``)."""
    found = subprocess.run(
        [
            sys.executable,
            "-c",
            f"import json, {package}.people as p;"
            " print(json.dumps([x['certNo'] for x in p.roster()['people']]))",
        ],
        cwd=root,
        capture_output=True,
        text=True,
        check=True,
    )
    return set(json.loads(found.stdout))

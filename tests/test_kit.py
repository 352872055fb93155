"""`gongji conformance`: the kit run as an integrator runs it, on a province installed."""

from __future__ import annotations

import pytest

from gateway.edge.cli import main


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

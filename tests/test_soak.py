"""The soak script itself, run briefly: real processes, faults on and off, and its
consistency check between the gateway's records and the provinces' (bench/soak.py)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bench import soak


def test_a_short_soak_serves_through_faults_and_stays_consistent(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = soak.main(["--seconds", "3", "--phase", "1", "--seed", "7", "--keep", str(tmp_path)])
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert "consistency: OK" in printed
    served = next(line for line in printed.splitlines() if line.startswith("served:"))
    assert int(served.split()[1]) > 0


def test_two_instances_on_postgresql_stay_consistent_through_a_kill(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], postgres_database: str
) -> None:
    args = ["--instances", "2", "--seconds", "6", "--phase", "1", "--seed", "7"]
    code = soak.main([*args, "--keep", str(tmp_path), "--store-url", postgres_database])
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert "consistency: OK" in printed
    kills = re.search(
        r"^kills: (\d+) .*in flight at the kills: (\d+), settled since: (\d+)$",
        printed,
        re.MULTILINE,
    )
    assert kills is not None, printed
    assert int(kills[1]) >= 1, printed  # an instance was killed...
    assert int(kills[2]) >= 1, printed  # ...while sending writes, which others finished
    assert kills[3] == kills[2], printed

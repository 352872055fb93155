"""The soak script itself, run briefly: real processes, faults on and off, and its
consistency check between the gateway's records and the provinces' (bench/soak.py)."""

from __future__ import annotations

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

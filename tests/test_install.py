"""The pinned locks install with the stock pip of a new venv (pip 23.2.1).

That pip, in ``--require-hashes`` mode, takes a requirement with extras
(``coverage[toml]>=7.10.6``, asked for by pytest-cov) as one that is not pinned
unless the lock pins it with the same extras (``coverage[toml]==7.17.3``). So
every extra that a locked package asks of another locked package must be in the
lock, and the runtime lock must agree with the development lock.
"""

from __future__ import annotations

import re
from importlib import metadata
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
PIN = re.compile(r"^([A-Za-z0-9._-]+)(?:\[([^\]]*)\])?==([^\s;\\]+)", re.MULTILINE)


def read_lock(name: str) -> dict[str, tuple[set[str], str]]:
    """Each pinned name with the extras it is pinned with and its version."""
    pins: dict[str, tuple[set[str], str]] = {}
    for match in PIN.finditer((ROOT / name).read_text()):
        extras = {e.strip() for e in (match[2] or "").split(",") if e.strip()}
        pins[canonicalize_name(match[1])] = (extras, match[3])
    return pins


def asked_extras(pins: dict[str, tuple[set[str], str]]) -> dict[str, set[str]]:
    """The extras that the locked packages (and the project) ask of each other."""
    env = default_environment()
    asked: dict[str, set[str]] = {}
    for name, (extras, _version) in pins.items():
        try:
            requires = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue  # not for this platform (a marker left it out of this venv)
        for line in requires:
            requirement = Requirement(line)
            active = [{**env, "extra": extra} for extra in extras or {""}]
            if requirement.marker and not any(requirement.marker.evaluate(e) for e in active):
                continue
            if requirement.extras:
                key = canonicalize_name(requirement.name)
                asked.setdefault(key, set()).update(requirement.extras)
    return asked


def test_every_extra_asked_for_is_pinned_with_it() -> None:
    pins = read_lock("requirements-dev.lock")
    pins["gongji"] = ({"dev"}, "")
    missing = {
        name: sorted(extras - pins[name][0])
        for name, extras in asked_extras(pins).items()
        if name in pins and not extras <= pins[name][0]
    }
    assert missing == {}, f"pin these with their extras (pip-compile --no-strip-extras): {missing}"


def test_the_runtime_lock_is_the_dev_lock_without_the_tools() -> None:
    runtime = read_lock("requirements.lock")
    dev = read_lock("requirements-dev.lock")
    assert {name: dev.get(name) for name in runtime} == runtime
    tools = {"pytest", "mypy", "ruff", "playwright", "hypothesis", "respx", "coverage"}
    assert tools <= dev.keys()
    assert not tools & runtime.keys()


def test_the_locks_name_no_machine_local_index() -> None:
    for name in ("requirements.lock", "requirements-dev.lock"):
        text = (ROOT / name).read_text()
        assert "--find-links" not in text
        assert "--extra-index-url" not in text

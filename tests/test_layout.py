"""The house's rules, read from the imports: the gateway knows `adapters.base` only,
never a province's module, and each of its rooms uses only the rooms below it
(`gateway/__init__.py` lists them)."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# Lowest first: a room may use itself and the rooms before it.
ROOMS = ("ops", "common", "state", "provinces", "rules", "graph", "edge")
# What an adapter may use of its own package: the public surface and what it is made of.
BASE = {
    "base",
    "vocabulary",
    "policy",
    "payer",
    "faults",
    "transport",
    "guard",
    "adapter",
    "breaker",
    "shaping",
    "coalescing",
}


def imports(path: Path) -> Iterator[tuple[int, str]]:
    """Every module ``path`` imports (lazily or under TYPE_CHECKING too), as dotted names."""
    for node in ast.walk(ast.parse(path.read_text("utf-8"))):
        if isinstance(node, ast.Import):
            yield from ((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.lineno, node.module
            for alias in node.names:  # `from gateway import common` names a room too
                yield node.lineno, f"{node.module}.{alias.name}"


def room(path: Path) -> str:
    return path.relative_to(ROOT / "gateway").parts[0]


def rank(room: list[str]) -> int:
    """Where a room stands (-1: not a room, as the package itself)."""
    return ROOMS.index(room[0]) if room and room[0] in ROOMS else -1


def gateway_modules() -> list[Path]:
    return sorted(
        p
        for p in (ROOT / "gateway").rglob("*.py")
        if len(p.relative_to(ROOT / "gateway").parts) > 1
    )


def test_every_gateway_module_is_in_a_room() -> None:
    loose = [p.name for p in (ROOT / "gateway").glob("*.py") if p.name != "__init__.py"]
    assert loose == []
    assert {room(p) for p in gateway_modules()} == set(ROOMS)


@pytest.mark.parametrize("path", gateway_modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_a_gateway_module_uses_adapters_base_and_the_rooms_below_its_own(path: Path) -> None:
    own = ROOMS.index(room(path))
    wrong = []
    for line, name in imports(path):
        parts = name.split(".")
        if parts[0] == "adapters" and len(parts) > 1 and parts[1] != "base":
            wrong.append(f"line {line}: {name} (the gateway knows adapters.base only)")
        elif (
            parts[0] == "gateway"
            and parts[1:2]
            and parts[1] in ROOMS
            and ROOMS.index(parts[1]) > own
        ):
            wrong.append(f"line {line}: {name} (a room above {room(path)})")
    assert wrong == []


@pytest.mark.parametrize("path", sorted((ROOT / "adapters").glob("*.py")), ids=lambda p: p.name)
def test_an_adapter_uses_only_its_base_never_another_province_nor_the_gateway(
    path: Path,
) -> None:
    wrong = []
    for line, name in imports(path):
        parts = name.split(".")
        if parts[0] == "gateway" or (
            parts[0] == "adapters" and parts[1:2] and parts[1] not in {*BASE, path.stem}
        ):
            wrong.append(f"line {line}: {name}")
    assert wrong == []


def test_idempotency_keys_are_made_by_the_write_path_only() -> None:
    """`gateway.state.writes` makes a key when the client sends none; a resolver or a
    rule that made its own would answer under a key the write path never kept."""
    makers = [
        str(path.relative_to(ROOT))
        for path in gateway_modules()
        if room(path) != "state" and "new_key" in path.read_text("utf-8")
    ]
    assert makers == []

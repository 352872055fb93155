"""The benchmarks name the tree they measured: `git status --porcelain` read as ``XY path``."""

from __future__ import annotations

import pytest

from bench import common

# A status whose first column is a space (modified in the work tree only) comes first:
# stripping the output before slicing once cut the first letter off its path.
STATUS = (
    " M gateway/graph/schema.py\n"
    "M  gateway/graph/shape.py\n"
    "MM docs/frontend.md\n"
    " D gateway/old.py\n"
    "R  gateway/a.py -> gateway/b.py\n"
    " M bench/abuse.py\n"
    "?? notes.txt\n"
)


def test_porcelain_lines_are_status_then_path_from_the_fourth_column() -> None:
    assert common.porcelain(STATUS) == [
        (" M", "gateway/graph/schema.py"),
        ("M ", "gateway/graph/shape.py"),
        ("MM", "docs/frontend.md"),
        (" D", "gateway/old.py"),
        ("R ", "gateway/b.py"),
        (" M", "bench/abuse.py"),
        ("??", "notes.txt"),
    ]


def test_the_source_names_every_file_changed_outside_bench_whole(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    asked: list[tuple[str, ...]] = []

    def git(*args: str) -> str:
        asked.append(args)
        if args[0] == "status":
            return STATUS
        return "abc1234\n"

    monkeypatch.setattr(common, "git", git)
    assert common.source(None) == {
        "commit": "abc1234",
        "tree": "git working tree",
        "uncommitted": [
            "gateway/graph/schema.py",
            "gateway/graph/shape.py",
            "docs/frontend.md",
            "gateway/old.py",
            "gateway/b.py",
            "notes.txt",
        ],
    }
    assert ("status", "--porcelain", "--untracked-files=no") in asked
    assert common.source("deadbeef")["commit"] == "deadbeef"


def test_an_exported_tree_is_named_by_the_commit_given(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(common, "git", lambda *args: "")
    assert common.source("f6076dd") == {
        "commit": "f6076dd",
        "tree": "exported tree (not a git checkout)",
        "uncommitted": [],
    }

"""``gongji reset``: start the sandbox world over, while the gateway is stopped.

A sandbox world is what a data directory holds: the gateway's store
(``gateway.sqlite3``) and the state of the provinces it runs in-process
(``sandbox/NAME.sqlite3``). Each is seeded from the roster when it is missing, so
removing them (with SQLite's ``-wal``, ``-shm`` and ``-journal`` files) makes the
next start a fresh world. Nothing else in the directory is touched; the gateway's
lock file stays (see `gateway.state.store`).

It refuses (exit status 2), and removes nothing:

- in production mode: that store holds writes owed to real provinces;
- while a gateway holds the directory (its lock, `gateway.state.store.lock_data_dir`);
  the lock is held while the files go, so no gateway starts on half a world;
- a directory with a gateway store and no sandbox state: its provinces live
  elsewhere (a production gateway's directory, or sandboxes run apart), and
  removing the store alone would not make a fresh world.

A sandbox run apart (``gongji sandbox NAME --data-dir DIR``) takes no lock: stop it
before resetting its directory.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TextIO

from gateway.ops.config import Settings
from gateway.state.store import DataDirInUse, lock_data_dir, unlock_data_dir

STORE = "gateway.sqlite3"
SANDBOXES = "sandbox"  # the in-process provinces' state: sandbox/NAME.sqlite3
_SQLITE_FILES = ("", "-wal", "-shm", "-journal")  # a database and what SQLite keeps by it


class ResetRefused(RuntimeError):
    """The directory is not a sandbox world this command may start over."""


def world_files(data_dir: Path) -> list[Path]:
    """The files of the sandbox world in ``data_dir`` that exist, store first."""
    names = [f"{STORE}{suffix}" for suffix in _SQLITE_FILES]
    sandboxes = data_dir / SANDBOXES
    if sandboxes.is_dir():
        databases = sorted(p.name for p in sandboxes.glob("*.sqlite3") if p.is_file())
        names += [f"{SANDBOXES}/{db}{suffix}" for db in databases for suffix in _SQLITE_FILES]
    return [data_dir / name for name in names if (data_dir / name).is_file()]


def reset_world(data_dir: Path, *, production: bool = False) -> list[Path]:
    """Remove the sandbox world in ``data_dir``: the files removed (none: it was fresh).

    Raises `ResetRefused` in production mode or for a directory whose provinces are
    not in it, `DataDirInUse` while a gateway holds it.
    """
    if production:
        raise ResetRefused(
            "production mode has no sandbox world: its store holds writes owed to the"
            " provinces, and is never reset"
        )
    if not data_dir.is_dir():
        return []
    lock = lock_data_dir(data_dir)  # DataDirInUse while a gateway runs on it
    try:
        files = world_files(data_dir)
        has_store = (data_dir / STORE).is_file()
        if has_store and not any(f.parent.name == SANDBOXES for f in files):
            raise ResetRefused(
                f"{data_dir} holds a gateway store but no sandbox state ({SANDBOXES}/*.sqlite3):"
                " its provinces are elsewhere (a production gateway's directory, or sandboxes"
                " run apart), and removing the store alone would not start the world over"
            )
        for path in files:
            path.unlink()
        return files
    finally:
        unlock_data_dir(lock)


def run(settings: Settings, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """The ``reset`` command: its exit status (0 done, 2 refused). It says what it did
    on ``out``, why it would not on ``err`` (default: standard output and error)."""
    out = out or sys.stdout
    err = err or sys.stderr
    data_dir = settings.data_dir
    if settings.store.shared:
        print(
            f"gongji reset: the gateway's state is in the shared store"
            f" {settings.store.safe_url()} (schema {settings.store.schema}), which reset"
            " leaves alone: reset starts over the embedded world (SQLite in the data"
            " directory). Drop that schema yourself to start a shared one over.",
            file=err,
        )
        return 2
    if data_dir is None:
        print("gongji reset: this world is in memory; a restart is a fresh one", file=out)
        return 0
    try:
        removed = reset_world(data_dir, production=settings.production)
    except (ResetRefused, DataDirInUse, OSError) as exc:
        print(f"gongji reset: {exc}", file=err)
        return 2
    where = data_dir.resolve()
    if not removed:
        print(f"Nothing to reset in {where}: the next start seeds a fresh world.", file=out)
    else:
        names = ", ".join(str(p.relative_to(data_dir)) for p in removed)
        print(
            f"Reset the sandbox world in {where} (removed {names}).\n"
            "The next `gongji serve` seeds a fresh one from the roster.",
            file=out,
        )
    return 0

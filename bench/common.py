"""What the benchmarks that start their own processes share (`bench.dashboard`,
`bench.abuse`): the tree and machine under test, /proc readings, progress lines, the
report's common parts, and writing ``NAME-DATE-TIME[-quick].md`` and ``.json``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
LOOPBACK = "127.0.0.1"
RESULTS = ROOT / "bench" / "results"


# -- the tree and the machine under test ----------------------------------------------------


def git(*args: str) -> str:
    """git's standard output in ROOT, as it is (empty when git fails)."""
    done = subprocess.run(  # noqa: S603
        ["git", *args],  # noqa: S607 (git from PATH)
        capture_output=True,
        cwd=ROOT,
        check=False,
    )
    return done.stdout.decode()


def porcelain(text: str) -> list[tuple[str, str]]:
    """``git status --porcelain`` (v1) lines as (status, path): ``XY path``, the status
    in columns 0-1 (either may be a space), the path from column 3; for a rename or a
    copy (``XY old -> new``) the new path."""
    found = []
    for line in text.splitlines():
        status, path = line[:2], line[3:]
        if not path:
            continue
        if "R" in status or "C" in status:
            path = path.split(" -> ", 1)[-1]
        found.append((status, path))
    return found


def changed(untracked: bool = False) -> list[tuple[str, str]]:
    """(status, path) of every file changed outside bench/ (untracked ones too, if so)."""
    text = git("status", "--porcelain", f"--untracked-files={'all' if untracked else 'no'}")
    return [(status, path) for status, path in porcelain(text) if not path.startswith("bench/")]


def source(commit: str | None, changes: list[tuple[str, str]] | None = None) -> dict[str, Any]:
    """The commit under test, whether this is a git checkout, and the files changed
    outside bench/ (the benchmarks' own changes do not change what they measure):
    ``changes`` (from `changed`), or the tracked ones."""
    head = git("rev-parse", "--short", "HEAD").strip()
    return {
        "commit": commit or head or "unknown",
        "tree": "git working tree" if head else "exported tree (not a git checkout)",
        "uncommitted": [path for _, path in (changed() if changes is None else changes)],
    }


def tree_source(commit: str | None) -> dict[str, Any]:
    """`source` with untracked files too, the full commit (``git rev-parse HEAD``) and a
    digest of the changes outside bench/, which names the tree under test while others
    edit it."""
    status = changed(untracked=True)
    found = source(commit, status)
    found["commit_full"] = git("rev-parse", "HEAD").strip() or "unknown"
    if status:
        changes = git("diff", "HEAD", "--", *(name for kind, name in status if kind != "??"))
        digest = hashlib.sha256(changes.encode())
        for kind, name in status:
            if kind == "??":
                with contextlib.suppress(OSError):
                    digest.update((ROOT / name).read_bytes())
        found["uncommitted_sha256"] = digest.hexdigest()[:16]
    return found


def machine() -> dict[str, Any]:
    model = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    memory = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                memory = f"{int(line.split()[1]) // 1024} MiB"
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "memory": memory,
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "load_average_at_start": list(os.getloadavg()),
    }


# -- /proc -------------------------------------------------------------------------------------


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS, VmHWM (peak) and RSS by kind (RssAnon, RssFile, RssShmem), in KiB,
    from /proc/PID/status."""
    found: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile", "RssShmem"):
            found[key] = int(value.split()[0])
    return found


def cpu_seconds(pid: int) -> float:
    """User and system CPU time a process (all its threads) has used, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


# -- a run -------------------------------------------------------------------------------------


def teller(name: str) -> Callable[[str], None]:
    """``say(what)``: a progress line on stderr, seconds since this call."""
    t0 = time.perf_counter()

    def say(what: str) -> None:
        print(f"[{name} {time.perf_counter() - t0:5.0f} s] {what}", file=sys.stderr, flush=True)

    return say


def begin(
    bench: str, quick: bool, plan: dict[str, Any], source: dict[str, Any], query: str
) -> dict[str, Any]:
    """A result's head: which benchmark, when, how much, where and what."""
    started = dt.datetime.now().astimezone()
    return {
        "bench": bench,
        "date": started.date().isoformat(),
        "started": started.isoformat(timespec="seconds"),
        "quick": quick,
        "plan": plan,
        "machine": machine(),
        "source": source,
        "query": query,
    }


def end(result: dict[str, Any], began: float) -> None:
    """How long the run took (since ``time.perf_counter()`` was ``began``), the load after."""
    result["duration_s"] = time.perf_counter() - began
    result["machine"]["load_average_at_end"] = list(os.getloadavg())


def clean_up(work: Path, keep: bool, say: Callable[[str], None]) -> None:
    """The work directory removed, or kept (and said so) with ``--keep``."""
    if keep:
        say(f"kept {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)


def write(
    result: dict[str, Any], out: Path, markdown: Callable[[dict[str, Any]], str]
) -> list[Path]:
    """``BENCH-DATE-TIME[-quick].md`` and ``.json`` into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.fromisoformat(result["started"]).strftime("%Y%m%d-%H%M%S")
    name = f"{result['bench']}-{stamp}{'-quick' if result['quick'] else ''}"
    as_json = out / f"{name}.json"
    as_md = out / f"{name}.md"
    as_json.write_text(json.dumps(result, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    as_md.write_text(markdown(result), encoding="utf-8")
    return [as_md, as_json]


def published(result: dict[str, Any], paths: list[Path]) -> None:
    """A verdict line per target, and the files written, on stdout."""
    print(summary(result))
    for path in paths:
        print(f"written: {path}")


# -- the reports' common parts -----------------------------------------------------------------


def verdict(ok: bool | None) -> str:
    return "WARN" if ok is None else "PASS" if ok else "FAIL"


def load_average(values: list[float]) -> str:
    return " / ".join(f"{v:.2f}" for v in values)


def ms(value: float) -> str:
    return f"{value:.2f}"


def latency_row(name: str, s: dict[str, Any]) -> str:
    return (
        f"| {name} | {s['n']} | {ms(s['p50_ms'])} | {ms(s['p90_ms'])} | {ms(s['p99_ms'])}"
        f" | {ms(s['mean_ms'])} | {ms(s['max_ms'])} |"
    )


def commit_line(src: dict[str, Any], detail: str = "") -> str:
    """The report's line on the tree under test; ``detail`` follows the count of
    uncommitted files, when there are any."""
    if src["uncommitted"]:
        return (
            f"- commit `{src['commit']}`, with uncommitted changes to"
            f" {len(src['uncommitted'])} files outside bench/{detail}"
        )
    tree = src.get("tree", "git working tree")
    return f"- commit `{src['commit']}` ({tree}, no uncommitted changes)"


def machine_line(m: dict[str, Any]) -> str:
    return (
        f"- machine: {m['cpu']}, {m['cores']} cores, {m['memory']}; {m['implementation']}"
        f" {m['python']} on {m['platform']}; load average (1, 5, 15 min) at start"
        f" {load_average(m['load_average_at_start'])},"
        f" at end {load_average(m['load_average_at_end'])}"
    )


def targets(verdicts: list[dict[str, Any]]) -> list[str]:
    """The report's table of targets, a line each."""
    lines = ["## Targets", "", "| target | goal | measured | |", "|---|---|---|---|"]
    for v in verdicts:
        lines.append(f"| {v['target']} | {v['goal']} | {v['measured']} | {verdict(v['pass'])} |")
    return lines


def summary(result: dict[str, Any]) -> str:
    rows = [
        f"{verdict(v['pass'])}  {v['target']}: {v['measured']} (goal {v['goal']})"
        for v in result["verdicts"]
    ]
    return "\n".join(rows)


class Jobs:
    """A benchmark module's ``--job`` processes (``python -m MODULE --job``, the job as a
    JSON line on stdin, its result as one on stdout): started, waited for with a time
    limit, and stopped at the end whatever happened."""

    def __init__(self, module: str) -> None:
        self.module = module
        self.running: list[subprocess.Popen[bytes]] = []

    def start(self, job: dict[str, Any]) -> subprocess.Popen[bytes]:
        process = subprocess.Popen(  # noqa: S603 (this interpreter, a module of ours)
            [sys.executable, "-m", self.module, "--job"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=ROOT,
        )
        self.running.append(process)
        assert process.stdin is not None
        process.stdin.write(json.dumps(job).encode() + b"\n")
        process.stdin.flush()
        return process

    def finish(self, process: subprocess.Popen[bytes], timeout: float) -> dict[str, Any]:
        """Close its stdin (a job that reads until then stops), wait for its result."""
        try:
            out, err = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()
            raise RuntimeError(f"a {self.module} job took more than {timeout:.0f} s") from None
        finally:
            self.running.remove(process)
        if process.returncode != 0:
            raise RuntimeError(f"a {self.module} job failed: {err.decode()[-2000:]}")
        result: dict[str, Any] = json.loads(out)
        return result

    def run(self, job: dict[str, Any], timeout: float) -> dict[str, Any]:
        return self.finish(self.start(job), timeout)

    def stop_all(self) -> None:
        for process in self.running:
            if process.poll() is None:
                process.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.communicate(timeout=10)
        self.running.clear()


def stop_cleanly_on_sigterm() -> None:
    """A SIGTERM becomes `SystemExit`, so that the benchmark's finally blocks stop the
    processes and servers it started."""

    def terminated(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, terminated)

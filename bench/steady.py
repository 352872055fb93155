"""A steady figure: the work a dashboard takes, counted rather than timed.

* **Function calls per dashboard**: cProfile over N warm dashboards, the total of
  pstats (primitive and recursive calls, ``Stats.total_calls``) divided by N.
* **Instructions per dashboard** (optional, ``--callgrind``): valgrind's callgrind
  over K warm dashboards, divided by K. Collection is on only inside
  ``sys.call_tracing``, which the job wraps the K dashboards in
  (``--collect-atstart=no --toggle-collect=sys_call_tracing``): start-up, imports,
  warm-up and shutdown are not counted.

Both for the gateway (`gateway.edge.app.create_app`, its provinces over real HTTP, as
served) and for the hand-written baseline (`bench.baseline.create_app`), each in a
fresh interpreter (``python -m bench.steady --job``, the job as JSON on stdin, its
result as JSON on stdout), requests sent through `httpx.ASGITransport` (no uvicorn),
the sandboxes served as in the rest of the benchmark, 0 ms added. Each job starts
from a fresh copy of the same store and opens the same caller's dashboard (`warmup`
unmeasured first: connections, remembered locations, cached civil records). The
reconciler and the change-feed reads are set an hour apart, so that only
dashboards are counted.

A count does not move with the machine's load as times do: what moves it is the
code (and the upstream requests a dashboard makes), which is what it is for. It
still moves a little with timing: an answer that arrives while the event loop is
busy saves it a turn.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import cProfile
import dataclasses
import hashlib
import json
import os
import pstats
import re
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from bench.common import ROOT

SIDES = ("gateway", "baseline")
QUIET_S = 3600.0  # the reconciler and change-feed reads: not within a measurement
VALGRIND = "valgrind"
_TOTALS = re.compile(rb"^(?:summary|totals):\s*(\d+)", re.MULTILINE)


# -- the job, in its own interpreter ------------------------------------------------------


def job(spec: dict[str, Any], since: float) -> dict[str, Any]:
    """``spec["warmup"]`` dashboards, then ``spec["requests"]`` measured: under cProfile
    (``measure: "cprofile"``) or inside ``sys.call_tracing`` (``"callgrind"``). ``since``:
    when the process started (before it imported the tree)."""
    from gateway.ops.config import Settings  # here: a job imports what it runs

    settings = Settings.load(Path(spec["config"]))
    settings = dataclasses.replace(
        settings,
        resilience=dataclasses.replace(
            settings.resilience, reconcile_interval=QUIET_S, registration_interval=QUIET_S
        ),
    )
    store = Path(spec["store"])
    if spec["side"] == "gateway":
        from gateway.edge.app import create_app

        app: Any = create_app(dataclasses.replace(settings, data_dir=store.parent))
        path, body = "/graphql", json.dumps({"query": spec["query"]}).encode()
    else:
        from bench import baseline

        app = baseline.create_app(settings, store)
        path, body = "/dashboard", b""
    headers = {"authorization": f"Bearer {spec['token']}", "content-type": "application/json"}

    loop = asyncio.new_event_loop()
    ready: asyncio.Future[None] = loop.create_future()
    stop = asyncio.Event()

    async def host() -> None:
        """The app's lifespan, entered and left in one task of its own while the
        measurements run in others, one ``run_until_complete`` each."""
        async with app.router.lifespan_context(app):
            ready.set_result(None)
            await stop.wait()

    hosting = loop.create_task(host())
    loop.run_until_complete(ready)
    client = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://steady.bench"
    )
    failures: list[str] = []

    async def dashboards(n: int) -> None:
        for _ in range(n):
            response = await client.post(path, content=body, headers=headers)
            answer = response.json()
            if response.status_code != 200 or answer.get("errors") or not answer.get("data"):
                failures.append(f"HTTP {response.status_code}: {response.text[:300]}")

    requests = int(spec["requests"])
    loop.run_until_complete(dashboards(int(spec["warmup"])))
    code = code_digest(since)  # the modules are loaded now
    out: dict[str, Any] = {"side": spec["side"], "requests": requests}
    started = time.perf_counter()
    if spec["measure"] == "cprofile":
        profiler = cProfile.Profile()
        profiler.enable()
        loop.run_until_complete(dashboards(requests))
        profiler.disable()
        if spec.get("dump"):
            profiler.dump_stats(spec["dump"])  # kept with the work directory (--keep)
        stats = pstats.Stats(profiler)
        out["total_calls"] = stats.total_calls  # type: ignore[attr-defined]
        out["primitive_calls"] = stats.prim_calls  # type: ignore[attr-defined]
    else:
        sys.call_tracing(loop.run_until_complete, (dashboards(requests),))
    out["wall_s"] = time.perf_counter() - started
    out["failures"] = len(failures)
    out["failure_samples"] = failures[:3]
    end = code_digest(since)
    out["code"] = sorted({code[0], end[0]})  # two: a file changed while it ran
    # a file written after the job started: which version it loaded is not known
    out["changed_while_running"] = sorted(set(code[1]) | set(end[1]))
    loop.run_until_complete(client.aclose())
    stop.set()
    loop.run_until_complete(hosting)
    loop.close()
    return out


def code_digest(since: float) -> tuple[str, list[str]]:
    """A digest of the source files of every module loaded from this tree (the gateway,
    the adapters, the baseline, ...), as they are now: which code a job ran, while others
    may be editing the tree; and those of them written after ``since`` (a time.time())."""
    digest = hashlib.sha256()
    written = []
    files = set()
    for module in list(sys.modules.values()):
        name = getattr(module, "__file__", None)
        path = Path(name).resolve() if name else None
        if path and path.is_relative_to(ROOT) and "site-packages" not in path.parts:
            files.add(path)
    for path in sorted(files):
        digest.update(str(path.relative_to(ROOT)).encode() + b"\0")
        with contextlib.suppress(OSError):
            digest.update(path.read_bytes())
            if path.stat().st_mtime > since:
                written.append(str(path.relative_to(ROOT)))
    return f"{len(files)} files, {digest.hexdigest()[:12]}", written


# -- running the jobs ---------------------------------------------------------------------


ATTEMPTS = 3  # a job that fails (the tree mid-edit: an import or name error) is tried again
RETRY_AFTER_S = 60.0


def _run(
    command: list[str], spec: dict[str, Any], env: dict[str, str] | None, timeout: float
) -> dict[str, Any]:
    for attempt in range(1, ATTEMPTS + 1):
        done = subprocess.run(  # noqa: S603 (our interpreter and module, or valgrind on it)
            command,
            input=json.dumps(spec).encode(),
            capture_output=True,
            cwd=ROOT,
            env=env,
            timeout=timeout,
            check=False,
        )
        if done.returncode == 0:
            break
        if attempt == ATTEMPTS:
            raise RuntimeError(f"bench.steady job failed: {done.stderr.decode()[-2000:]}")
        error = done.stderr.decode().strip().splitlines()[-1:] or ["?"]
        print(
            f"bench.steady: a {spec['side']} job failed ({error[0][:200]}); again in"
            f" {RETRY_AFTER_S:g} s",
            file=sys.stderr,
            flush=True,
        )
        time.sleep(RETRY_AFTER_S)
    lines = done.stdout.decode().strip().splitlines()
    result: dict[str, Any] = json.loads(lines[-1])
    if result["failures"]:
        raise RuntimeError(f"{spec['side']}: failed dashboards: {result['failure_samples']}")
    return result


def _calls(spec: dict[str, Any]) -> dict[str, Any]:
    out = _run([sys.executable, "-m", "bench.steady", "--job"], spec, None, 600)
    out["calls_per_dashboard"] = out["total_calls"] / out["requests"]
    out["primitive_calls_per_dashboard"] = out["primitive_calls"] / out["requests"]
    return out


def _instructions(spec: dict[str, Any], out_file: Path) -> dict[str, Any]:
    command = [
        VALGRIND,
        "--tool=callgrind",
        "--collect-atstart=no",
        "--toggle-collect=sys_call_tracing",
        f"--callgrind-out-file={out_file}",
        sys.executable,
        "-m",
        "bench.steady",
        "--job",
    ]
    # the same hash seed each time: the tables' layouts, and so their probes, the same
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    started = time.perf_counter()
    out = _run(command, spec, env, 1800)
    totals = _TOTALS.search(out_file.read_bytes())
    if totals is None:
        raise RuntimeError(f"no totals in {out_file}")
    out["instructions"] = int(totals[1])
    out["instructions_per_dashboard"] = out["instructions"] / out["requests"]
    out["valgrind_s"] = time.perf_counter() - started
    return out


def callgrind_available() -> bool:
    return shutil.which(VALGRIND) is not None


def measure(
    *,
    config: Path,
    store: Path,
    token: str,
    query: str,
    work: Path,
    runs: int = 3,
    requests: int = 50,
    warmup: int = 5,
    callgrind_requests: int = 0,
    say: Callable[[str], None] = lambda _: None,
) -> dict[str, Any]:
    """``runs`` measurements of each side, each in a fresh process from a fresh copy of
    ``store`` (a gateway store file); with ``callgrind_requests`` > 0, as many under
    callgrind too (two at a time: instructions do not depend on the cores)."""
    work.mkdir(parents=True, exist_ok=True)
    copies = 0

    def spec(side: str, measure: str, n: int) -> dict[str, Any]:
        nonlocal copies
        copies += 1
        fresh = work / f"{side}-{measure}-{copies}"
        fresh.mkdir()
        shutil.copyfile(store, fresh / "gateway.sqlite3")
        return {
            "side": side,
            "measure": measure,
            "config": str(config),
            "store": str(fresh / "gateway.sqlite3"),
            "token": token,
            "query": query,
            "warmup": warmup,
            "requests": n,
            "dump": str(fresh / "calls.prof") if measure == "cprofile" else None,
        }

    result: dict[str, Any] = {"runs": runs, "requests": requests, "warmup": warmup}
    calls: dict[str, list[dict[str, Any]]] = {side: [] for side in SIDES}
    for i in range(runs):
        for side in SIDES:
            calls[side].append(_calls(spec(side, "cprofile", requests)))
        say(
            f"  run {i + 1}: calls per dashboard: gateway"
            f" {calls['gateway'][-1]['calls_per_dashboard']:,.1f}, baseline"
            f" {calls['baseline'][-1]['calls_per_dashboard']:,.1f}"
        )
    result["calls"] = {side: _figure(runs_, "calls_per_dashboard") for side, runs_ in calls.items()}
    result["calls_ratio"] = _ratio(result["calls"])
    if callgrind_requests <= 0:
        return _same_code(result)
    if not callgrind_available():
        result["instructions_skipped"] = "valgrind not found"
        return _same_code(result)
    say(f"  callgrind: {runs} × 2 jobs of {callgrind_requests} dashboards, two at a time")
    jobs = [
        (side, spec(side, "callgrind", callgrind_requests)) for _ in range(runs) for side in SIDES
    ]
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        futures = [
            (side, pool.submit(_instructions, s, Path(s["store"]).parent / "callgrind.out"))
            for side, s in jobs
        ]
        counted: dict[str, list[dict[str, Any]]] = {side: [] for side in SIDES}
        try:
            for side, future in futures:
                counted[side].append(future.result())
        except RuntimeError as exc:  # optional: the calls stand without it
            for _, future in futures:
                future.cancel()
            result["instructions_skipped"] = str(exc)[-1500:]
            return _same_code(result)
    result["callgrind_requests"] = callgrind_requests
    result["instructions"] = {
        side: _figure(runs_, "instructions_per_dashboard") for side, runs_ in counted.items()
    }
    result["instructions_ratio"] = _ratio(result["instructions"])
    return _same_code(result)


def _same_code(result: dict[str, Any]) -> dict[str, Any]:
    """Whether the runs of each kind (calls, instructions) and side ran the same code
    (`code_digest`, after the warm-up and again at the end of each job): the runs it
    compares. (The calls and the instructions are not compared with each other.)"""
    code = {
        kind: {
            side: sorted({d for run in fig["runs"] for d in run["code"]})
            for side, fig in (result.get(kind) or {}).items()
        }
        for kind in ("calls", "instructions")
        if result.get(kind)
    }
    written = sorted(
        {
            name
            for kind in ("calls", "instructions")
            for fig in (result.get(kind) or {}).values()
            for run in fig["runs"]
            for name in run.get("changed_while_running", [])
        }
    )
    result["code"] = code
    result["changed_while_running"] = written
    result["same_code"] = not written and all(
        len(d) == 1 for sides in code.values() for d in sides.values()
    )
    return result


def _figure(runs: list[dict[str, Any]], key: str) -> dict[str, Any]:
    values = [r[key] for r in runs]
    median = statistics.median(values)
    return {
        "values": values,
        "median": median,
        "spread": (max(values) - min(values)) / median if median else 0.0,
        "runs": runs,
    }


def _ratio(figures: dict[str, dict[str, Any]]) -> float:
    base = figures["baseline"]["median"]
    return float(figures["gateway"]["median"] / base) if base else float("nan")


def main() -> None:
    if sys.argv[1:] != ["--job"]:
        raise SystemExit("usage: python -m bench.steady --job < JOB.json (bench.dashboard runs it)")
    since = time.time()
    spec = json.loads(sys.stdin.read())
    with contextlib.redirect_stdout(sys.stderr):  # whatever the app prints: not the result
        result = job(spec, since)
    print(json.dumps(result))


if __name__ == "__main__":
    main()

"""The dashboard benchmark's report: pass/fail per target, Markdown and JSON."""

from __future__ import annotations

import itertools
import json
import math
import statistics
from pathlib import Path
from typing import Any

from bench import common
from bench.common import latency_row, ms

# The targets of issue 7.
OVERHEAD_P50_MS = 2.0
FANOUT_RATIO = 1.2
THROUGHPUT_SHARE = 0.5
# "No growth": RSS after the last repeated run at most this much above the first.
GROWTH_KIB = 2048
GROWTH_SHARE = 0.02
# The soak: "levelled" when, over the last third of the soak, RSS grows by less than
# this per 1,000 dashboards (both from the third's first sample to its last, and by
# the least-squares slope of its samples): 0.05 MiB is about 50 bytes a dashboard.
LEVEL_MIB_PER_1000 = 0.05


def _calls_constant(calls: list[dict[str, Any]]) -> tuple[bool, str]:
    """Per province: the same number of requests for every family it insures someone of."""
    seen: dict[str, set[float]] = {}
    for row in calls:
        for province in row["provinces_of_family"]:
            seen.setdefault(province, set()).add(round(row["per_province"].get(province, 0.0), 2))
    varying = {p: sorted(v) for p, v in seen.items() if len(v) > 1}
    if varying:
        return False, "varies: " + ", ".join(f"{p} {v}" for p, v in sorted(varying.items()))
    return True, ", ".join(f"{p} {next(iter(v)):g}" for p, v in sorted(seen.items()))


def verdicts(result: dict[str, Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []

    def add(name: str, target: str, measured: str, ok: bool | None) -> None:
        out.append({"target": name, "goal": target, "measured": measured, "pass": ok})

    overhead = result["overhead"]["overhead"]
    add(
        "overhead p50",
        f"≤ {OVERHEAD_P50_MS:g} ms",
        f"p50 {overhead['p50_ms']:.2f} ms, p99 {overhead['p99_ms']:.2f} ms",
        overhead["p50_ms"] <= OVERHEAD_P50_MS,
    )
    fanout = result["fanout"]
    ratio = fanout["gateway"]["latency"]["p50_ms"] / fanout["latency_ms"]
    base_ratio = fanout["baseline"]["latency"]["p50_ms"] / fanout["latency_ms"]
    add(
        f"fan-out ratio at {fanout['latency_ms']:g} ms",
        f"≤ {FANOUT_RATIO:g}",
        f"{ratio:.2f} (baseline {base_ratio:.2f})",
        ratio <= FANOUT_RATIO,
    )
    constant, detail = _calls_constant(result["calls"])
    add("upstream calls per query, 1 to 8 relatives", "constant per province", detail, constant)
    eq = result["equivalence"]
    add(
        "baseline answers the same JSON (the comparison holds)",
        "equal, field by field",
        f"equal for {eq['callers']} callers"
        if not eq["differences"]
        else f"differs for {len(eq['differences'])} of {eq['callers']} callers",
        not eq["differences"],
    )
    same = result.get("same_requests")  # reports from before it was recorded have none
    if same is not None:
        add(
            "baseline makes the gateway's upstream requests (one warm dashboard)",
            "the same requests, naming the same people",
            f"{len(same['gateway'])} and {len(same['baseline'])} requests in"
            f" {same['waves']['gateway']} and {same['waves']['baseline']} waves"
            + ("; the same" if same["same"] else "; **they differ**"),
            same["same"],
        )
    gw = result["throughput"]["gateway"]["rps"]
    base = result["throughput"]["baseline"]["rps"]
    share = gw / base if base else math.nan
    add(
        "throughput",
        f"≥ {THROUGHPUT_SHARE:g} × baseline",
        f"{gw:.0f} vs {base:.0f} req/s ({share:.2f} ×)",
        share >= THROUGHPUT_SHARE,
    )
    runs = result["memory"]["runs"]
    rss = [r["rss_kib"] for r in runs]
    first, last = rss[0], rss[-1]
    allowed = max(GROWTH_KIB, first * GROWTH_SHARE)
    rising = len(rss) > 2 and all(b > a for a, b in itertools.pairwise(rss))
    measured = f"{first / 1024:.1f} → {last / 1024:.1f} MiB over {len(runs)} runs" + (
        f", rising every run ({(last - first) / 1024 / (len(rss) - 1):+.2f} MiB/run)"
        if rising
        else f" ({(last - first) / 1024:+.2f} MiB)"
    )
    control = [r["rss_kib"] for r in result["memory"].get("baseline_runs") or []]
    if len(control) > 1:
        per_run = (control[-1] - control[0]) / 1024 / (len(control) - 1)
        measured += f"; the baseline (control) {per_run:+.2f} MiB/run"
    # within the tolerance but rising every run: not a pass, not proven a leak
    add(
        "memory across repeated runs",
        f"no growth (at most {allowed / 1024:.1f} MiB, and not rising run after run)",
        measured,
        None if rising and last - first <= allowed else last - first <= allowed,
    )
    return out


LATENCY_HEAD = (
    "| | n | p50 ms | p90 ms | p99 ms | mean ms | max ms |\n|---|---|---|---|---|---|---|"
)


def markdown(result: dict[str, Any]) -> str:
    m, plan = result["machine"], result["plan"]
    lines = [
        f"# Family dashboard benchmark, {result['date']}{' (quick)' if result['quick'] else ''}",
        "",
        *tree_lines(result),
        common.machine_line(m),
        f"- everything on 127.0.0.1: three sandbox provinces, the gateway, the baseline, and"
        f" the load driver, each its own process; {result['duration_s']:.0f} s in all",
        f"- families: {result['setup']['people']} synthetic people,"
        f" {result['setup']['bindings']} bindings and {result['setup']['kinship_links']}"
        " kinship links made through the gateway's mutations; the dashboard of a family of 8"
        f" shows {result['dashboard_sample']['family_members']} relatives in province codes"
        f" {', '.join(result['dashboard_sample']['provinces'])}"
        f" ({result['dashboard_sample']['bytes']} bytes of JSON)",
        "",
        *common.targets(result["verdicts"]),
    ]

    over = result["overhead"]
    lines += [
        "",
        "## 1. Overhead (0 ms added upstream)",
        "",
        f"One request at a time, {over['requests']} pairs: a dashboard through the gateway,"
        f" then the same {over['upstream_requests']} upstream requests sent directly to the"
        f" sandboxes by the load driver, in the same {over['waves']} waves the gateway sends"
        " them in (recorded from an in-process gateway; each wave concurrently, the waves one"
        " after another), alternating which goes first. The overhead is the difference within"
        " each pair: what the gateway adds to the upstream work it must wait for.",
        "",
        LATENCY_HEAD,
        latency_row("through the gateway", over["through"]),
        latency_row("the same upstream requests, direct", over["direct"]),
        latency_row("**overhead** (pairwise difference)", over["overhead"]),
    ]
    slow = result["fanout"]["overhead_at_latency"]
    lines += [
        "",
        f"The same at {result['fanout']['latency_ms']:g} ms added upstream"
        f" ({slow['requests']} pairs):",
        "",
        LATENCY_HEAD,
        latency_row("through the gateway", slow["through"]),
        latency_row("the same upstream requests, direct", slow["direct"]),
        latency_row("**overhead** (pairwise difference)", slow["overhead"]),
    ]

    fan = result["fanout"]
    latency = fan["latency_ms"]
    lines += [
        "",
        f"## 2. Fan-out ({latency:g} ms added to every upstream request)",
        "",
        "One request at a time; the ratio is the median dashboard time over the added latency"
        " (1.0: every upstream request at once, in one round trip).",
        "",
        "| | n | p50 ms | p99 ms | ratio (p50 / latency) |",
        "|---|---|---|---|---|",
    ]
    for name in ("gateway", "baseline"):
        s = fan[name]["latency"]
        lines.append(
            f"| {name} | {s['n']} | {ms(s['p50_ms'])} | {ms(s['p99_ms'])}"
            f" | {s['p50_ms'] / latency:.2f} |"
        )
    direct = fan["overhead_at_latency"]["direct"]
    lines.append(
        f"| the gateway's upstream requests, direct in its waves | {direct['n']}"
        f" | {ms(direct['p50_ms'])} | {ms(direct['p99_ms'])}"
        f" | {direct['p50_ms'] / latency:.2f} |"
    )
    timeline = result["upstream_timeline"]
    sides = [("gateway", timeline)]
    if "baseline" in timeline:
        sides.append(("baseline", timeline["baseline"]))
    lines += [
        "",
        f"The upstream requests of one warm dashboard (family of 8) at"
        f" {timeline['latency_ms']:g} ms, in-process ("
        + ", ".join(f"{side} {t['dashboard_ms']:.0f} ms in all" for side, t in sides)
        + "):",
        "",
        "| side | wave | province | request | start ms | end ms |",
        "|---|---|---|---|---|---|",
    ]
    for side, t in sides:
        for i, wave in enumerate(t["waves"], 1):
            for call in wave:
                lines.append(
                    f"| {side} | {i} | {call['province']} | {call['kind']}"
                    f" | {call['start_ms']:.1f} | {call['end_ms']:.1f} |"
                )
    same = result.get("same_requests")
    if same is not None:
        lines += [
            "",
            "What each request asks (province, kind, the ID numbers it names by field;"
            " request ids and times left out): "
            + (
                "**the same** for the gateway and the baseline."
                if same["same"]
                else "**they differ**: "
                + json.dumps(
                    {"gateway": same["gateway"], "baseline": same["baseline"]},
                    ensure_ascii=False,
                )[:1500]
            ),
        ]
    cpu = result.get("cpu")  # reports from before it was measured have none
    if cpu:
        lines += [
            "",
            f"CPU time per dashboard ({cpu['requests']} one at a time, 0 ms added; user and"
            " system time of the process and its threads, from /proc): the gateway"
            f" {cpu['gateway_ms']:.1f} ms, the baseline {cpu['baseline_ms']:.1f} ms (which"
            " builds the same JSON by hand from the same upstream requests);"
            f" errors: {cpu.get('gateway_errors', 0)} and {cpu.get('baseline_errors', 0)}."
            " With the machine's cores shared by the sandboxes, the gateway and the load"
            " driver, the gateway's CPU time, not waiting, is what its overhead is made of.",
        ]

    lines += [
        "",
        "## 3. Upstream requests per dashboard, by family size",
        "",
        "Counted by the gateway's `gongji_upstream_requests_total{province,outcome}` at"
        " `/metrics`, before and after"
        f" {plan['calls_requests']} dashboards of each family, divided by"
        f" {plan['calls_requests']}. Relatives 1 to 8 are added in the order of"
        " `bench/families.py` (spouse Hebei, father Jiangsu, mother Henan, ...).",
        "",
        "| relatives | provinces of the family | hebei | jiangsu | henan | total | outcomes |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in result["calls"]:
        per = row["per_province"]
        outcomes = ", ".join(f"{k} {v:g}" for k, v in sorted(row["outcomes"].items()))
        lines.append(
            f"| {row['relatives']} | {', '.join(row['provinces_of_family'])}"
            f" | {per.get('hebei', 0):g} | {per.get('jiangsu', 0):g} | {per.get('henan', 0):g}"
            f" | {row['total']:g} | {outcomes} |"
        )

    tp = result["throughput"]
    lines += [
        "",
        f"## 4. Throughput ({plan['concurrency']} concurrent clients, 0 ms added)",
        "",
        f"A closed loop: {plan['concurrency']} clients in one load-driver process, each sending"
        f" the next dashboard when the last is answered, {plan['warmup_s']:g} s of warm-up then"
        f" {plan['throughput_s']:g} s measured; {plan['throughput_rounds']} rounds, the gateway"
        " then the baseline in each (req/s: the median round; latencies: all rounds together),"
        " rotating over"
        f" {result['equivalence']['callers']} callers (families of 8). The baseline is"
        " `bench/baseline.py`: Starlette + httpx, the same adapters, the same upstream"
        " requests (civil records kept, one `read_family` per province), the same JSON.",
        "",
        "| | requests | req/s | req/s by round | p50 ms | p90 ms | p99 ms | errors |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name in ("gateway", "baseline"):
        run = tp[name]
        s = run["latency"]
        by_round = ", ".join(f"{r:.1f}" for r in run.get("rounds_rps", []))
        lines.append(
            f"| {name} | {run['requests']} | {run['rps']:.1f} | {by_round} | {ms(s['p50_ms'])}"
            f" | {ms(s['p90_ms'])} | {ms(s['p99_ms'])} | {run['errors']} |"
        )
    eq = result["equivalence"]
    lines += [
        "",
        f"Same document: the baseline's answer equals the gateway's for {eq['callers']} callers"
        if not eq["differences"]
        else f"Same document: **differences** for {len(eq['differences'])} of {eq['callers']}"
        f" callers: {json.dumps(eq['differences'], ensure_ascii=False)[:1500]}",
    ]

    mem = result["memory"]
    before = mem["rss_before_kib"]
    lines += [
        "",
        "## 5. Memory of the gateway process",
        "",
        f"During the throughput run: peak RSS (VmHWM) {before['peak_rss_kib'] / 1024:.1f} MiB,"
        f" largest sampled RSS {before['max_sampled_rss_kib'] / 1024:.1f} MiB, RSS after"
        f" {before['rss_after_kib'] / 1024:.1f} MiB (the baseline's process, for comparison:"
        f" peak {result['throughput']['baseline_memory']['peak_rss_kib'] / 1024:.1f} MiB)."
        f" Then {len(mem['runs'])} more runs of"
        f" {plan['repeat_s']:g} s, RSS read from /proc one second after each:",
        "",
        "| run | requests | RSS MiB | of which anonymous / file / shared MiB | peak RSS MiB |",
        "|---|---|---|---|---|",
    ]
    for run in mem["runs"]:
        lines.append(
            f"| {run['run']} | {run['requests']} | {run['rss_kib'] / 1024:.2f}"
            f" | {run['anon_kib'] / 1024:.2f} / {run['file_kib'] / 1024:.2f}"
            f" / {run['shmem_kib'] / 1024:.2f} | {run['peak_rss_kib'] / 1024:.2f} |"
        )
    control = mem.get("baseline_runs") or []
    if control:
        lines += [
            "",
            "The baseline's process, run after each of those as a control (the same uvicorn,"
            " logging, httpx clients and SQLite audit row per request, without GraphQL and"
            " the gateway's services):",
            "",
            "| run | requests | RSS MiB | of which anonymous / file / shared MiB |",
            "|---|---|---|---|",
        ]
        for run in control:
            lines.append(
                f"| {run['run']} | {run['requests']} | {run['rss_kib'] / 1024:.2f}"
                f" | {run['anon_kib'] / 1024:.2f} / {run['file_kib'] / 1024:.2f}"
                f" / {run['shmem_kib'] / 1024:.2f} |"
            )

    prof = result["profile"]
    lines += [
        "",
        "## Where the gateway's time goes (cProfile, in-process)",
        "",
        f"{prof['requests']} dashboards one at a time through `httpx.ASGITransport` (no"
        " uvicorn), provinces over real HTTP with 0 ms added:"
        f" {prof['wall_ms_per_request_median_unprofiled']:.1f} ms per dashboard (median)"
        f" without the profiler, {prof['wall_ms_per_request_profiled']:.1f} ms under it"
        " (it slows Python code, not the waits: read shares, not milliseconds). Self time"
        " per dashboard by component (a built-in such as `getattr` counts for its callers):",
        "",
        "| component | self ms per dashboard | share |",
        "|---|---|---|",
    ]
    for row in prof["components"]:
        if row["share"] >= 0.005:
            lines.append(f"| {row['component']} | {row['self_ms']:.2f} | {row['share']:.0%} |")
    lines += [
        "",
        "Top functions by self time (per dashboard; for a coroutine, cProfile counts every"
        " resumption as a call):",
        "",
        "| function | calls | self ms | cumulative ms |",
        "|---|---|---|---|",
    ]
    for row in prof["top_self"][:20]:
        lines.append(
            f"| `{row['function']}` | {row['calls_per_request']:g} | {row['self_ms']:.3f}"
            f" | {row['cumulative_ms']:.3f} |"
        )
    lines += [
        "",
        "Top functions by cumulative time (per dashboard):",
        "",
        "| function | calls | self ms | cumulative ms |",
        "|---|---|---|---|",
    ]
    for row in prof["top_cumulative"][:30]:
        lines.append(
            f"| `{row['function']}` | {row['calls_per_request']:g} | {row['self_ms']:.3f}"
            f" | {row['cumulative_ms']:.3f} |"
        )
    lines += steady_lines(result.get("steady"))
    lines += ["", "## The query", "", "```graphql", result["query"], "```", ""]
    return "\n".join(lines)


def tree_lines(result: dict[str, Any]) -> list[str]:
    """The tree under test, and whether it changed during the run (others editing it)."""
    src, end = result["source"], result.get("source_at_end")
    lines = [common.commit_line(src)]
    digest = src.get("uncommitted_sha256")
    if digest:
        lines[0] += f" (digest `{digest}`)"
    if end is not None and (end["commit"], end.get("uncommitted_sha256")) != (
        src["commit"],
        digest,
    ):
        lines.append(
            f"- **the tree changed during the run**: at the end commit `{end['commit']}`,"
            f" {len(end['uncommitted'])} files changed (digest"
            f" `{end.get('uncommitted_sha256', 'none')}`); the served gateway ran the tree as"
            " it was when it started"
        )
    return lines


def steady_lines(steady: dict[str, Any] | None) -> list[str]:
    """The steady figure's section (none in reports from before it was measured)."""
    if not steady:
        return []
    if "error" in steady:
        return [
            "",
            "## The steady figure: work per dashboard, counted",
            "",
            "Not measured: a job failed (after 3 attempts a minute apart):",
            "",
            "```",
            steady["error"],
            "```",
        ]
    calls = steady["calls"]
    lines = [
        "",
        "## The steady figure: work per dashboard, counted",
        "",
        f"Function calls per dashboard: cProfile over {steady['requests']} warm dashboards"
        f" (after {steady['warmup']} unmeasured), pstats' total (primitive and recursive"
        f" calls) divided by {steady['requests']}; each run a fresh process from a fresh"
        " copy of the same store, the same caller (family of 8), requests through"
        " `httpx.ASGITransport` (no uvicorn), the provinces over real HTTP with 0 ms added,"
        " the reconciler and change-feed reads an hour apart (`bench/steady.py`). A count,"
        " not a time: it moves with the code, not with the machine's load.",
        "",
        "| | " + " | ".join(f"run {i + 1}" for i in range(steady["runs"])) + " | median"
        " | spread (max − min) / median | primitive calls per dashboard (median) |",
        "|---|" + "---|" * (steady["runs"] + 3),
    ]
    for side in ("gateway", "baseline"):
        fig = calls[side]
        primitive = statistics.median(r["primitive_calls_per_dashboard"] for r in fig["runs"])
        lines.append(
            f"| {side} | "
            + " | ".join(f"{v:,.1f}" for v in fig["values"])
            + f" | **{fig['median']:,.1f}** | {fig['spread']:.2%} | {primitive:,.1f} |"
        )
    lines += ["", f"Gateway / baseline: **{steady['calls_ratio']:.2f} ×** (medians)."]
    instructions = steady.get("instructions")
    if instructions:
        lines += [
            "",
            f"Instructions per dashboard (valgrind's callgrind, {steady['callgrind_requests']}"
            " warm dashboards a run, counted only while they ran, `PYTHONHASHSEED=0`):",
            "",
            "| | " + " | ".join(f"run {i + 1}" for i in range(steady["runs"])) + " | median"
            " | spread |",
            "|---|" + "---|" * (steady["runs"] + 2),
        ]
        for side in ("gateway", "baseline"):
            fig = instructions[side]
            lines.append(
                f"| {side} | "
                + " | ".join(f"{v / 1e6:,.2f} M" for v in fig["values"])
                + f" | **{fig['median'] / 1e6:,.2f} M** | {fig['spread']:.2%} |"
            )
        lines += ["", f"Gateway / baseline: **{steady['instructions_ratio']:.2f} ×** (medians)."]
    elif steady.get("instructions_skipped"):
        lines += [
            "",
            "Instructions (callgrind): not measured:",
            "",
            "```",
            steady["instructions_skipped"],
            "```",
        ]
    code = steady.get("code") or {}
    digests = {
        kind: ", ".join(f"{side} `{'`, `'.join(d)}`" for side, d in sides.items())
        for kind, sides in code.items()
    }
    kinds = {"calls": "calls", "instructions": "instructions"}
    if steady.get("same_code"):
        lines += [
            "",
            "Every run of a side, for each figure, ran the same code (a digest of the source"
            " files of the modules it loaded from the tree, taken after the warm-up and at the"
            " end): " + "; ".join(f"{kinds[kind]}: {text}" for kind, text in digests.items()) + ".",
        ]
        if len({tuple(map(tuple, sides.values())) for sides in code.values()}) > 1:
            lines[-1] += (
                " The instructions' runs ran other code than the calls' (the tree changed"
                " between them): compare each figure's runs, not the two figures."
            )
    elif code:
        written = steady.get("changed_while_running") or []
        lines += [
            "",
            "**The code changed while these ran** (others editing the tree): "
            + "; ".join(f"{kinds[kind]}: {text}" for kind, text in digests.items())
            + (
                f"; written while a job ran (which version it loaded is not known):"
                f" {', '.join(f'`{w}`' for w in written)}"
                if written
                else ""
            )
            + ". A difference between runs of the same figure may be the code's.",
        ]
    return lines


def steady_summary(steady: dict[str, Any]) -> str:
    """The steady figure on one line per kind, every run."""
    if "error" in steady:
        return "STEADY  not measured: a job failed (see the report)"

    def line(name: str, figures: dict[str, Any], ratio: float, scale: float, unit: str) -> str:
        sides = "; ".join(
            f"{side} {' / '.join(f'{v / scale:,.2f}' for v in figures[side]['values'])}"
            f" (spread {figures[side]['spread']:.2%})"
            for side in ("gateway", "baseline")
        )
        return f"STEADY  {name} per dashboard{unit}: {sides}; gateway / baseline {ratio:.2f} ×"

    out = [line("function calls", steady["calls"], steady["calls_ratio"], 1, "")]
    if steady.get("instructions"):
        out.append(
            line("instructions", steady["instructions"], steady["instructions_ratio"], 1e6, ", M")
        )
    if not steady.get("same_code", True):
        out.append("STEADY  the code changed while the runs ran: see the report")
    return "\n".join(out)


# -- the soak (`--soak`) -------------------------------------------------------------------------


def _slope(xs: list[float], ys: list[float]) -> float:
    """Least-squares slope of ys over xs (0 when xs do not vary)."""
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx if sxx else 0.0


def _third(samples: list[dict[str, Any]]) -> dict[str, Any]:
    first, last = samples[0], samples[-1]
    dashboards = last["dashboards"] - first["dashboards"]
    growth = (last["rss_kib"] - first["rss_kib"]) / 1024
    slope = _slope(
        [float(s["dashboards"]) for s in samples], [s["rss_kib"] / 1024 for s in samples]
    )
    return {
        "from_s": first["t_s"],
        "to_s": last["t_s"],
        "samples": len(samples),
        "dashboards": dashboards,
        "rss_from_mib": first["rss_kib"] / 1024,
        "rss_to_mib": last["rss_kib"] / 1024,
        "growth_mib": growth,
        "growth_mib_per_1000": growth / dashboards * 1000 if dashboards else math.nan,
        "slope_mib_per_1000": slope * 1000,
    }


def soak_analysis(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """RSS growth over the soak's first and last thirds (by sample: the sample on each
    boundary belongs to both thirds it ends and starts) and the verdict: "levelled" when
    the last third grows by less than `LEVEL_MIB_PER_1000` MiB per 1,000 dashboards,
    from its first sample to its last and by its samples' slope."""
    if len(samples) < 4:
        raise ValueError("a soak needs at least 4 samples: make it longer, or sample more often")
    k = max(1, round((len(samples) - 1) / 3))
    first, last = _third(samples[: k + 1]), _third(samples[-(k + 1) :])
    levelled = (
        last["dashboards"] > 0
        and last["growth_mib_per_1000"] < LEVEL_MIB_PER_1000
        and last["slope_mib_per_1000"] < LEVEL_MIB_PER_1000
    )
    rss = [s["rss_kib"] for s in samples]
    rose = max((i for i in range(1, len(rss)) if rss[i] > max(rss[:i])), default=0)
    return {
        "threshold_mib_per_1000": LEVEL_MIB_PER_1000,
        # the last sample above every one before it: RSS has not gone higher since
        "last_rise": {"t_s": samples[rose]["t_s"], "dashboards": samples[rose]["dashboards"]},
        "rss_start_mib": samples[0]["rss_kib"] / 1024,
        "rss_end_mib": samples[-1]["rss_kib"] / 1024,
        "rss_max_mib": max(s["rss_kib"] for s in samples) / 1024,
        "dashboards": samples[-1]["dashboards"],
        "first_third": first,
        "last_third": last,
        "verdict": "levelled" if levelled else "still growing",
    }


def soak_verdicts(result: dict[str, Any]) -> list[dict[str, Any]]:
    a = result["soak"]["analysis"]
    last = a["last_third"]
    return [
        {
            "target": "memory under steady load (soak)",
            "goal": f"levelled: the last third grows < {a['threshold_mib_per_1000']:g} MiB"
            " per 1,000 dashboards",
            "measured": f"{a['rss_start_mib']:.1f} → {a['rss_end_mib']:.1f} MiB over"
            f" {a['dashboards']:,} dashboards; last third {last['growth_mib_per_1000']:+.3f}"
            f" MiB per 1,000 (slope {last['slope_mib_per_1000']:+.3f}): {a['verdict']}",
            # not levelled within the run is not proof of a leak: WARN, not FAIL
            "pass": True if a["verdict"] == "levelled" else None,
        }
    ]


def soak_markdown(result: dict[str, Any]) -> str:
    m, soak = result["machine"], result["soak"]
    a, run = soak["analysis"], soak["load"]
    lines = [
        f"# Family dashboard soak, {result['date']}{' (quick)' if result['quick'] else ''}",
        "",
        *tree_lines(result),
        common.machine_line(m),
        f"- everything on 127.0.0.1: three sandbox provinces, the gateway (`gongji serve`)"
        f" and the load driver, each its own process; {result['duration_s']:.0f} s in all",
        f"- families: {result['setup']['people']} synthetic people,"
        f" {result['setup']['bindings']} bindings and {result['setup']['kinship_links']}"
        " kinship links made through the gateway's mutations",
        "",
        *common.targets(result["verdicts"]),
        "",
        "## The soak",
        "",
        f"A closed loop of {soak['concurrency']} clients (one load-driver process) sending"
        f" `dashboard.QUERY` for {soak['seconds']:g} s, rotating over {soak['callers']}"
        " callers (families of 8), 0 ms added upstream, to a gateway that had served only"
        " the set-up and one dashboard per family. Every"
        f" {soak['every_s']:g} s: the gateway's VmRSS (RssAnon, RssFile) from"
        " `/proc/PID/status`, and the GraphQL operations it has answered since the start"
        " (`gongji_graphql_requests_total` at `/metrics`).",
        "",
        f"{run.get('requests', 0):,} dashboards in {run.get('wall_s', 0):.0f} s"
        f" ({run.get('rps', 0):.1f} a second), {run.get('errors', 0)} errors; p50"
        f" {run['latency']['p50_ms']:.1f} ms, p99 {run['latency']['p99_ms']:.1f} ms. Peak"
        f" RSS (VmHWM) {soak['peak_rss_kib'] / 1024:.1f} MiB.",
        "",
        "| | from s | to s | dashboards | RSS from MiB | RSS to MiB | growth MiB"
        " | per 1,000 dashboards | slope per 1,000 |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, key in (("first third", "first_third"), ("last third", "last_third")):
        t = a[key]
        lines.append(
            f"| {name} | {t['from_s']:.0f} | {t['to_s']:.0f} | {t['dashboards']:,}"
            f" | {t['rss_from_mib']:.2f} | {t['rss_to_mib']:.2f} | {t['growth_mib']:+.2f}"
            f" | {t['growth_mib_per_1000']:+.3f} | {t['slope_mib_per_1000']:+.3f} |"
        )
    rose = a["last_rise"]
    lines += [
        "",
        f"Verdict: **{a['verdict']}** (levelled: the last third below"
        f" {a['threshold_mib_per_1000']:g} MiB per 1,000 dashboards, both ways). RSS last"
        f" rose above its earlier highest at {rose['t_s']:.0f} s ({rose['dashboards']:,}"
        f" dashboards) and did not exceed it over the remaining"
        f" {a['dashboards'] - rose['dashboards']:,} dashboards.",
        "",
        "The samples:",
        "",
        "| s | dashboards | RSS MiB | anonymous MiB | file MiB | CPU s |",
        "|---|---|---|---|---|---|",
    ]
    for smp in soak["samples"]:
        lines.append(
            f"| {smp['t_s']:.1f} | {smp['dashboards']:,} | {smp['rss_kib'] / 1024:.2f}"
            f" | {smp['anon_kib'] / 1024:.2f} | {smp['file_kib'] / 1024:.2f}"
            f" | {smp['cpu_s']:.1f} |"
        )
    lines += ["", "## The query", "", "```graphql", result["query"], "```", ""]
    return "\n".join(lines)


def write(result: dict[str, Any], out: Path) -> list[Path]:
    if result["bench"] == "dashboard-soak":
        return common.write(result, out, soak_markdown)
    return common.write(result, out, markdown)

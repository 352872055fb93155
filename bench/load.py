"""The load driver: a separate process that sends requests and times them.

Reads one job (JSON) on stdin and prints one result (JSON) on stdout:

``{"kind": "closed", "target": T, "concurrency": C, "warmup_s": W, "duration_s": D}``
    C workers send requests back to back (a closed loop) for W seconds unmeasured,
    then D seconds measured: every latency is kept, percentiles are exact.
``{"kind": "count", "target": T, "concurrency": C, "requests": N, "warmup": M}``
    the same with a number of requests instead of a time.
``{"kind": "paired", "target": T, "waves": [...], "requests": N, "warmup": M}``
    one at a time, alternating a dashboard through ``target`` with a direct replay of
    the upstream requests it makes (``waves``: lists of recorded requests, each wave
    sent concurrently, the waves one after another): the floor the dashboard
    cannot go below, and the overhead above it, request by request.

A target is ``{"url", "tokens": [...], "body": <JSON or null>}``: requests go to
``url`` by POST with ``Authorization: Bearer <token>``, the tokens taken in turn.
Every answer must be HTTP 200 with ``data`` and no ``errors``: anything else counts
as an error (and its first few are reported).
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import math
import sys
import time
from collections.abc import Sequence
from typing import Any

import httpx


def percentile(values: Sequence[float], p: float) -> float:
    """The exact nearest-rank percentile of all values (no histogram, no sampling)."""
    if not values:
        return math.nan
    ranked = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ranked)))
    return ranked[rank - 1]


def summary(latencies: Sequence[float]) -> dict[str, Any]:
    """Milliseconds."""
    ms = [v * 1000 for v in latencies]
    return {
        "n": len(ms),
        "mean_ms": sum(ms) / len(ms) if ms else math.nan,
        "min_ms": min(ms, default=math.nan),
        "p50_ms": percentile(ms, 50),
        "p90_ms": percentile(ms, 90),
        "p99_ms": percentile(ms, 99),
        "max_ms": max(ms, default=math.nan),
    }


class Target:
    def __init__(self, spec: dict[str, Any], client: httpx.AsyncClient) -> None:
        self.url: str = spec["url"]
        self.body = json.dumps(spec.get("body")).encode() if spec.get("body") else b"{}"
        self._headers = itertools.cycle(
            [
                {"authorization": f"Bearer {token}", "content-type": "application/json"}
                for token in spec["tokens"]
            ]
        )
        self.client = client
        self.errors = 0
        self.samples: list[str] = []

    async def send(self) -> float:
        """Seconds for one request; an error counts and is timed too."""
        headers = next(self._headers)
        started = time.perf_counter()
        try:
            response = await self.client.post(self.url, content=self.body, headers=headers)
            elapsed = time.perf_counter() - started
            ok = response.status_code == 200
            if ok:
                answer = response.json()
                ok = isinstance(answer, dict) and answer.get("data") and not answer.get("errors")
            if not ok:
                self._error(f"HTTP {response.status_code}: {response.text[:300]}")
        except httpx.HTTPError as exc:
            elapsed = time.perf_counter() - started
            self._error(repr(exc))
        return elapsed

    def _error(self, what: str) -> None:
        self.errors += 1
        if len(self.samples) < 5:
            self.samples.append(what)


def _client(concurrency: int) -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    return httpx.AsyncClient(limits=limits, timeout=httpx.Timeout(60.0))


async def closed(job: dict[str, Any]) -> dict[str, Any]:
    concurrency = int(job["concurrency"])
    async with _client(concurrency) as client:
        target = Target(job["target"], client)
        latencies: list[float] = []
        measuring = False
        deadline = 0.0
        count_based = job["kind"] == "count"
        remaining = int(job.get("warmup", 0))

        async def worker() -> None:
            nonlocal remaining
            while True:
                if count_based:
                    if remaining <= 0:
                        return
                    remaining -= 1
                elif time.perf_counter() >= deadline:
                    return
                elapsed = await target.send()
                if measuring:
                    latencies.append(elapsed)

        if count_based:
            await asyncio.gather(*(worker() for _ in range(concurrency)))
            target.errors, target.samples = 0, []
            measuring, remaining = True, int(job["requests"])
            started = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(concurrency)))
        else:
            deadline = time.perf_counter() + float(job["warmup_s"])
            await asyncio.gather(*(worker() for _ in range(concurrency)))
            target.errors, target.samples = 0, []
            measuring = True
            started = time.perf_counter()
            deadline = started + float(job["duration_s"])
            await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - started
    extra = {"latencies": latencies} if job.get("keep_latencies") else {}
    return {
        **extra,
        "concurrency": concurrency,
        "wall_s": wall,
        "requests": len(latencies),
        "rps": len(latencies) / wall if wall else math.nan,
        "errors": target.errors,
        "error_samples": target.samples,
        "latency": summary(latencies),
    }


def _request(raw: dict[str, Any]) -> tuple[str, str, dict[str, str], bytes]:
    return raw["method"], raw["url"], raw["headers"], base64.b64decode(raw["body"])


async def paired(job: dict[str, Any]) -> dict[str, Any]:
    waves = [[_request(r) for r in wave] for wave in job["waves"]]
    async with _client(8) as client:
        target = Target(job["target"], client)

        async def direct() -> float:
            started = time.perf_counter()
            for wave in waves:
                answers = await asyncio.gather(
                    *(
                        client.request(method, url, headers=headers, content=body)
                        for method, url, headers, body in wave
                    )
                )
                for answer in answers:
                    if answer.status_code >= 500:
                        target._error(f"direct: HTTP {answer.status_code}")
            return time.perf_counter() - started

        for _ in range(int(job.get("warmup", 0))):
            await target.send()
            await direct()
        target.errors, target.samples = 0, []
        through: list[float] = []
        floor: list[float] = []
        for i in range(int(job["requests"])):
            # alternate the order: neither side always runs on a just-warmed path
            if i % 2:
                floor.append(await direct())
                through.append(await target.send())
            else:
                through.append(await target.send())
                floor.append(await direct())
    overhead = [a - b for a, b in zip(through, floor, strict=True)]
    return {
        "requests": len(through),
        "errors": target.errors,
        "error_samples": target.samples,
        "through": summary(through),
        "direct": summary(floor),
        "overhead": summary(overhead),
        "upstream_requests": sum(len(w) for w in waves),
        "waves": len(waves),
    }


async def run(job: dict[str, Any]) -> dict[str, Any]:
    if job["kind"] in ("closed", "count"):
        return await closed(job)
    if job["kind"] == "paired":
        return await paired(job)
    raise ValueError(f"unknown job kind {job['kind']!r}")


def main() -> None:
    job = json.load(sys.stdin)
    result = asyncio.run(run(job))
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()

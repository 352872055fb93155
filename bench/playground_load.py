"""How long the playground takes to load on loopback, in headless Chromium.

Starts the sandbox-mode gateway on a free loopback port and opens /graphql in
a fresh browser context each round (an empty cache: every asset is fetched),
then once more in the same context (a warm cache), and measures from
navigation to the load event and to the persona list on screen.

    .venv/bin/python -m bench.playground_load [--rounds N]

Prints one JSON line; results are recorded in bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics

from playwright.async_api import Page, expect

from gateway.edge.app import create_app
from gateway.ops.config import Settings
from tests.browser import chromium, served


async def load(page: Page, url: str) -> tuple[float, float]:
    """Seconds from navigation to the load event, and to the personas on screen.

    Both by the browser's own clock: the page marks ``gongji:personas-shown``.
    """
    await page.goto(url)
    await expect(page.locator("[data-persona=hb_wang_jianguo]")).to_be_visible(timeout=30_000)
    loaded, shown = await page.evaluate(
        """() => [
            performance.getEntriesByType("navigation")[0].loadEventEnd,
            performance.getEntriesByName("gongji:personas-shown")[0].startTime,
        ]"""
    )
    return loaded / 1000, shown / 1000


async def main(rounds: int) -> dict[str, object]:
    cold: list[tuple[float, float]] = []
    warm: list[tuple[float, float]] = []
    async with served(create_app(Settings(data_dir=None))) as origin, chromium() as browser:
        url = f"{origin}/graphql"
        await (await browser.new_page()).goto(url)  # the browser's own first start
        for _ in range(rounds):
            context = await browser.new_context()
            page = await context.new_page()
            cold.append(await load(page, url))
            warm.append(await load(page, url))
            await context.close()
        version = browser.version
    result: dict[str, object] = {"bench": "playground_load", "rounds": rounds}
    for cache, times in (("cold", cold), ("warm", warm)):
        for i, what in enumerate(("load_event", "personas_shown")):
            values = [t[i] for t in times]
            result[f"{cache}_{what}_median_ms"] = round(statistics.median(values) * 1000)
            result[f"{cache}_{what}_max_ms"] = round(max(values) * 1000)
    return {
        **result,
        "chromium": version,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "python": platform.python_version(),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    print(json.dumps(asyncio.run(main(parser.parse_args().rounds)), ensure_ascii=False))

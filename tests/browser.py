"""A gateway on a loopback port, and Debian's browsers, for the browser tests and bench/."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

import uvicorn
from playwright.async_api import Browser, async_playwright
from starlette.types import ASGIApp

CHROMIUM = Path(os.environ.get("GONGJI_CHROMIUM", "/usr/bin/chromium"))
FIREFOX = Path(os.environ.get("GONGJI_FIREFOX", "/usr/bin/firefox-esr"))
# Without the background-networking flags Chromium dials Google's hosts at start.
FLAGS = [
    *(["--no-sandbox"] if os.geteuid() == 0 else []),  # Chromium's sandbox refuses root
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@contextlib.asynccontextmanager
async def served(app: ASGIApp) -> AsyncIterator[str]:
    """``app`` served by uvicorn on a free loopback port, in this event loop: its origin."""
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=0, log_config=None, lifespan="on")
    )
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            if task.done():
                raise RuntimeError("the server did not start") from task.exception()
            await asyncio.sleep(0.02)
        port = server.servers[0].sockets[0].getsockname()[1]
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


@contextlib.asynccontextmanager
async def chromium(executable: Path = CHROMIUM) -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=executable, args=FLAGS)
        try:
            yield browser
        finally:
            await browser.close()

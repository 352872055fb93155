"""The playground in real browsers, headless, from Debian's packages.

Chromium is driven by Playwright; Firefox by puppeteer-core over WebDriver BiDi
(`playground/tests/firefox.mjs`): neither downloads a browser. The gateway runs
on a loopback port in this event loop. The browser may reach that origin only:
every other request is aborted and recorded, and the test fails if there was
one. Screenshots go to ``test-artifacts/``.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, Route, expect

from gateway.app import create_app
from gateway.config import PLAYGROUND_DIR, AuthSettings, Settings
from tests.browser import CHROMIUM, FIREFOX, chromium, served
from tests.conftest import ROOT

ARTIFACTS = ROOT / "test-artifacts"
TTL = 62  # seconds: the page renews a persona's token after TTL - 60


@pytest.fixture
async def origin() -> AsyncIterator[str]:
    """The sandbox-mode gateway on a free loopback port; its tokens live 62 s."""
    settings = Settings(data_dir=None, auth=AuthSettings(token_ttl_seconds=TTL))
    async with served(create_app(settings)) as origin:
        yield origin


def installed(browser: Path) -> Path:
    if not browser.exists():
        pytest.fail(f"no browser at {browser}: run scripts/install-system (as root)")
    return browser


@pytest.fixture
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with chromium(installed(CHROMIUM)) as browser:
        yield browser


class Watched:
    """A page whose requests off the origin are aborted, and whose errors are kept."""

    def __init__(self, page: Page, origin: str) -> None:
        self.page = page
        self.origin = origin
        self.elsewhere: list[str] = []
        self.errors: list[str] = []
        page.on("pageerror", lambda exc: self.errors.append(f"page error: {exc}"))
        page.on(
            "console",
            lambda msg: self.errors.append(f"console: {msg.text}") if msg.type == "error" else None,
        )

    async def guard(self, route: Route) -> None:
        url = route.request.url
        if url.startswith(self.origin + "/") or url.startswith("data:"):
            await route.continue_()
        else:
            self.elsewhere.append(url)
            await route.abort("blockedbyclient")


async def open_playground(browser: Browser, origin: str) -> Watched:
    context = await browser.new_context(viewport={"width": 1440, "height": 900}, locale="zh-CN")
    watched = Watched(await context.new_page(), origin)
    await context.route("**/*", watched.guard)
    return watched


async def test_pick_a_persona_run_an_example_see_the_result(
    browser: Browser, origin: str, artifacts: Path
) -> None:
    watched = await open_playground(browser, origin)
    page = watched.page

    started = time.perf_counter()
    await page.goto(f"{origin}/graphql")
    await expect(page.locator("[data-persona=js_chen_zhiqiang]")).to_be_visible()
    loaded = time.perf_counter() - started

    # the persona: the logo says whom we act as, the next requests carry the token
    await page.locator("[data-persona=js_chen_zhiqiang]").click()
    await expect(page.locator("[data-logo-persona=js_chen_zhiqiang]")).to_have_text("as 陈志强")

    # an example tab: Jiangsu's spouse binding waits for her confirmation
    await page.locator(".graphiql-tab", has_text="JiangsuSpouse").click()
    await expect(page.locator(".graphiql-editor-tool")).to_contain_text("刘芳")  # variables
    await page.locator(".graphiql-execute-button").click()
    result = page.locator(".result-window")
    await expect(result).to_contain_text("PENDING_CONFIRMATION")
    await expect(result).to_contain_text("320302********002X")  # she is masked

    await page.screenshot(path=artifacts / "playground.png")
    summary = {"page_load_seconds": round(loaded, 3), "chromium": browser.version}
    await asyncio.to_thread((artifacts / "playground.json").write_text, json.dumps(summary))
    assert watched.elsewhere == []
    assert watched.errors == []


async def test_examples_panel_and_a_remembered_persona(
    browser: Browser, origin: str, artifacts: Path
) -> None:
    watched = await open_playground(browser, origin)
    page = watched.page
    await page.goto(f"{origin}/graphql")
    await page.locator("[data-persona=hn_zhao_lei]").click()
    await expect(page.locator("[data-logo-persona=hn_zhao_lei]")).to_be_visible()

    # after a reload the persona is still chosen
    await page.reload()
    await expect(page.locator("[data-logo-persona=hn_zhao_lei]")).to_have_text("as 赵磊")

    # a minute before the token expires (TTL - 60 s) the page fetches a fresh one
    async with page.expect_request(
        lambda r: r.url.endswith("/playground/personas/hn_zhao_lei/token"), timeout=10_000
    ):
        pass

    # the Examples panel opens an example in a new tab
    tabs = page.locator(".graphiql-tab")
    before = await tabs.count()
    await page.get_by_role("button", name="Show Examples").click()
    await page.locator("[data-panel=examples] button", has_text="Who am I").click()
    await expect(tabs).to_have_count(before + 1)
    await expect(page.locator(".graphiql-query-editor")).to_contain_text("mutualAidBindings")
    await page.locator(".graphiql-execute-button").click()
    await expect(page.locator(".result-window")).to_contain_text("赵磊")

    await page.screenshot(path=artifacts / "playground-examples.png")
    assert watched.elsewhere == []
    assert watched.errors == []


async def test_the_playground_works_in_firefox(origin: str, artifacts: Path) -> None:
    firefox = installed(FIREFOX)
    node = shutil.which("node")
    assert node, "Node.js is needed (scripts/install needs it too)"
    process = await asyncio.create_subprocess_exec(
        node,
        str(PLAYGROUND_DIR / "tests" / "firefox.mjs"),
        origin,
        str(artifacts / "playground-firefox.png"),
        env={**os.environ, "GONGJI_FIREFOX": str(firefox)},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=120)
    assert process.returncode == 0, err.decode()[-3000:]

    outcome = json.loads(out.decode().splitlines()[-1])
    assert outcome["elsewhere"] == []
    assert outcome["errors"] == []
    assert '"name": "王建国"' in outcome["result"]
    assert '"balance": "3200.00"' in outcome["result"]

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

import httpx
import pytest
from graphql import OperationDefinitionNode, parse, print_ast
from playwright.async_api import Browser, Locator, Page, Route, expect

from gateway.edge.app import create_app
from gateway.ops.config import PLAYGROUND_DIR, AuthSettings, Settings
from tests.browser import CHROMIUM, FIREFOX, chromium, served
from tests.conftest import ROOT, GraphQL
from tests.test_settlement import settle

ARTIFACTS = ROOT / "test-artifacts"
OPENED_AT_FIRST = 4  # examples opened as tabs on a first visit (playground.js)
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


async def show_examples(page: Page) -> None:
    await page.get_by_role("button", name="Show Examples").click()
    await expect(page.locator("[data-panel=examples]")).to_be_visible()


def example_button(page: Page, title: str) -> Locator:
    """The Examples panel's button for the example called ``title``."""
    return page.locator(f"[data-example={json.dumps(title, ensure_ascii=False)}]")


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

    # a first visit opens a few examples as tabs, and they fit in the tab bar
    await expect(page.locator(".graphiql-tab")).to_have_count(OPENED_AT_FIRST)
    await expect(page.locator(".graphiql-tab").first).to_contain_text("Provinces")
    bar = page.locator(".graphiql-tabs")
    assert await bar.evaluate("e => e.scrollWidth <= e.clientWidth"), "the tabs overflow"

    # the persona: the logo says whom we act as, the next requests carry the token
    await page.locator("[data-persona=js_chen_zhiqiang]").click()
    await expect(page.locator("[data-logo-persona=js_chen_zhiqiang]")).to_have_text("as 陈志强")

    # the rest are in the Examples panel: Jiangsu's spouse binding waits for her
    await show_examples(page)
    await example_button(page, "Jiangsu: bind a spouse (she must confirm)").click()
    await expect(page.locator(".graphiql-tab")).to_have_count(OPENED_AT_FIRST + 1)
    await expect(page.locator("[data-persona-bar]")).to_have_attribute(
        "data-persona-bar", "matches"
    )
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


async def test_an_example_acts_as_its_persona_in_one_click(
    browser: Browser, origin: str, artifacts: Path
) -> None:
    watched = await open_playground(browser, origin)
    page = watched.page
    await page.goto(f"{origin}/graphql")
    await expect(page.locator("[data-persona=hb_wang_jianguo]")).to_be_visible()
    persona_bar = page.locator("[data-persona-bar]")

    # any persona will do for the provinces' rules
    await expect(persona_bar).to_have_attribute("data-persona-bar", "any")

    # "Who am I" is 王建国's; anonymous, the bar says so and offers to act as him
    await page.locator(".graphiql-tab", has_text="Me").click()
    await expect(persona_bar).to_have_attribute("data-persona-bar", "differs")
    await expect(persona_bar).to_contain_text("This example is for 王建国")
    await expect(persona_bar).to_contain_text("you act as anonymous")
    await page.screenshot(path=artifacts / "playground-persona-offer.png")
    async with page.expect_request(lambda r: r.url.endswith("/personas/hb_wang_jianguo/token")):
        await page.locator("[data-act-as=hb_wang_jianguo]").click()
    await expect(persona_bar).to_have_attribute("data-persona-bar", "matches")
    await expect(page.locator("[data-logo-persona=hb_wang_jianguo]")).to_have_text("as 王建国")
    await expect(page.locator("[data-act-as]")).to_have_count(0)
    await page.locator(".graphiql-execute-button").click()
    await expect(page.locator(".result-window")).to_contain_text("王建国")

    # an example opened from the panel for someone else: the bar names both, one click
    await show_examples(page)
    await example_button(page, "Jiangsu: the spouse sees the request").click()
    await expect(persona_bar).to_have_attribute("data-persona-bar", "differs")
    await expect(persona_bar).to_contain_text("This example is for 刘芳")
    await expect(persona_bar).to_contain_text("you act as 王建国")
    await page.locator("[data-act-as=js_liu_fang]").click()
    await expect(persona_bar).to_have_attribute("data-persona-bar", "matches")
    await expect(page.locator("[data-logo-persona=js_liu_fang]")).to_have_text("as 刘芳")
    await page.locator(".graphiql-execute-button").click()
    await expect(page.locator(".result-window")).to_contain_text('"name": "刘芳"')
    await page.screenshot(path=artifacts / "playground-persona.png")

    # back on 王建国's tab the bar follows the tab: it offers him again
    await page.locator(".graphiql-tab", has_text="HebeiCap").click()
    await expect(persona_bar).to_have_attribute("data-example-persona", "hb_wang_jianguo")
    await expect(persona_bar).to_have_attribute("data-persona-bar", "differs")
    # and the panel marks the example shown (one of 王建国's four)
    shown = page.locator("[data-panel=examples] [aria-current=true]")
    await expect(shown).to_have_attribute("data-example", "Hebei: eight relatives, then the cap")
    # a tab of one's own has no bar
    await page.locator(".graphiql-tab-add").click()
    await expect(persona_bar).to_have_count(0)
    # the panel takes you to an example's tab when it is open, rather than open another
    tabs = await page.locator(".graphiql-tab").count()
    await example_button(page, "Who am I, and whom have I bound?").click()
    await expect(page.locator(".graphiql-tab-active")).to_contain_text("Me")
    await expect(page.locator(".graphiql-tab")).to_have_count(tabs)
    await expect(page.locator("[data-reset-hint]")).to_contain_text("restart it")  # in memory

    assert watched.elsewhere == []
    assert watched.errors == []


# Every lint mark in the query, variables and headers editors, once GraphiQL has the
# schema and has typed the variables of the query shown as it declares them (`types`;
# the linter lags a tab change by 100 ms): CodeMirror's own API (`performLint`,
# `getAllMarks`); the message is the lint addon's annotation.
DIAGNOSTICS = """([query, types]) => {
  const [q, v, headers] = ['.graphiql-query-editor', '.graphiql-editor-tool']
    .flatMap((s) => [...document.querySelectorAll(`${s} .CodeMirror`)])
    .map((e) => e.CodeMirror);
  const typed = v.getOption('lint').variableToType || {};
  const ready = q.getValue() === query && q.getOption('lint').schema
    && Object.entries(types).every(([name, type]) => String(typed[name]) === type);
  if (!ready) return null;
  return [['query', q], ['variables', v], ['headers', headers]].flatMap(([where, editor]) => {
    editor.performLint();
    return editor.getAllMarks()
      .filter((mark) => String(mark.className).includes('CodeMirror-lint-mark'))
      .map((mark) => `${where}: ${mark.__annotation ? mark.__annotation.message : mark.className}`);
  });
}"""


async def diagnostics(page: Page, query: str, variables: str | None = None) -> list[str]:
    """The lint marks on ``query`` (in the query editor), after ``variables`` are set."""
    if variables is not None:
        await page.evaluate(
            "(text) => document.querySelector('.graphiql-editor-tool .CodeMirror')"
            ".CodeMirror.setValue(text)",
            variables,
        )
    types = {
        d.variable.name.value: print_ast(d.type)
        for op in parse(query).definitions
        if isinstance(op, OperationDefinitionNode)
        for d in op.variable_definitions or ()
    }
    found = await page.wait_for_function(DIAGNOSTICS, arg=[query, types])
    marks: list[str] = await found.json_value()
    return marks


async def test_no_shipped_example_shows_a_diagnostic(browser: Browser, origin: str) -> None:
    watched = await open_playground(browser, origin)
    page = watched.page
    await page.goto(f"{origin}/graphql")
    await expect(page.locator("[data-persona=hb_wang_jianguo]")).to_be_visible()
    examples = await (await page.request.get(f"{origin}/playground/examples")).json()
    await show_examples(page)

    found = {}
    for example in examples:
        await example_button(page, example["title"]).click()
        found[example["title"]] = await diagnostics(page, example["query"])
    assert found == {example["title"]: [] for example in examples}

    # The linter is on: a variable missing its required field is reported, alone. A
    # field with a default may be left out (commitmentSigned and dryRun default to
    # false; the linter GraphiQL ships took a false default for none: build.mjs).
    parent_in_law = next(e for e in examples if e["title"].startswith("Hebei: a parent-in-law"))
    # (last: an edit is kept in its tab's state after a debounce, which a click on
    # the example before then would find still holding the wrong variables)
    await example_button(page, parent_in_law["title"]).click()
    wrong = '{ "input": { "beneficiaryCertNo": "130102194905050017", "beneficiaryName": "李福" } }'
    assert await diagnostics(page, parent_in_law["query"], wrong) == [
        'variables: Object of type "BindMutualAidInput" is missing required field "relation".'
    ]
    assert await diagnostics(page, parent_in_law["query"], parent_in_law["variables"]) == []

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
    await show_examples(page)
    await page.locator("[data-panel=examples] button", has_text="Henan: same city only").click()
    await expect(tabs).to_have_count(before + 1)
    await expect(page.locator(".graphiql-query-editor")).to_contain_text("HenanCrossCity")
    await expect(page.locator("[data-persona-bar]")).to_have_attribute(
        "data-persona-bar", "matches"
    )
    await page.locator(".graphiql-execute-button").click()
    await expect(page.locator(".result-window")).to_contain_text("CROSS_AREA_NOT_ALLOWED")

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


SUBSCRIBE = """subscription Follow {
  familyEvents { kind payment { amount patient { name } } }
}"""


async def test_a_subscription_in_the_playground_sees_an_event_arrive(
    browser: Browser, artifacts: Path
) -> None:
    """A subscription goes over graphql-transport-ws with the persona's token: 王建国,
    who bound 王静 as his child, sees the bill a hospital settles for her."""
    settings = Settings(data_dir=None, auth=AuthSettings(token_ttl_seconds=TTL))
    app = create_app(settings)
    async with served(app) as origin, httpx.AsyncClient(base_url=origin) as client:
        gql = GraphQL(client, settings.auth)
        await gql.bind("hb_wang_jianguo", "hb_wang_jing", "CHILD")
        events = app.state.services.events

        async def followers(n: int) -> None:
            async with asyncio.timeout(10):
                while events.followers != n:  # noqa: ASYNC110 (a count in the gateway)
                    await asyncio.sleep(0.02)

        watched = await open_playground(browser, origin)
        page = watched.page
        sockets: list[str] = []  # (WebSockets are not routed through the guard)
        page.on("websocket", lambda socket: sockets.append(socket.url))
        await page.goto(f"{origin}/graphql")
        await page.locator("[data-persona=hb_wang_jianguo]").click()
        await expect(page.locator("[data-logo-persona=hb_wang_jianguo]")).to_have_text("as 王建国")
        await page.locator(".graphiql-tab-add").click()
        await page.evaluate(
            "(text) => document.querySelector('.graphiql-query-editor .CodeMirror')"
            ".CodeMirror.setValue(text)",
            SUBSCRIBE,
        )
        await page.locator(".graphiql-execute-button").click()
        await followers(1)  # subscribed, over the WebSocket

        paid = await settle(gql, "hb_wang_jing", "100.00", "40.00", key="playground-bill")
        assert paid["settlement"]["mutualAidPaid"] == "60.00"
        result = page.locator(".result-window")
        await expect(result).to_contain_text("PAID_FOR_RELATIVE")
        await expect(result).to_contain_text('"amount": "60.00"')
        await page.screenshot(path=artifacts / "playground-subscription.png")

        # Stop ends it on the gateway too
        await page.locator(".graphiql-execute-button").click()
        await followers(0)

        # anonymous, the gateway refuses the connection, and the pane says why
        await page.get_by_role("button", name="Sign out").click()
        await expect(page.locator("[data-logo-persona]")).to_have_text("anonymous")
        await page.locator(".graphiql-execute-button").click()
        await expect(result).to_contain_text("4403")
        await expect(result).to_contain_text("pick a persona")

        ws = origin.replace("http://", "ws://") + "/graphql"
        assert sockets, "no WebSocket was opened"
        assert set(sockets) == {ws}, sockets  # the page's own origin
        assert watched.elsewhere == []
        assert watched.errors == []

"""The playground in sandbox mode, and its absence in production mode."""

from __future__ import annotations

import dataclasses
import io
import json
import re
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from graphql import parse, validate
from starlette.applications import Starlette

from adapters.base import AdapterSettings
from gateway.common.auth import verify_token
from gateway.edge.app import create_app
from gateway.edge.cli import main as gongji
from gateway.edge.playground import (
    CONTENT_SECURITY_POLICY,
    accepts_gzip,
    load_examples,
    load_personas,
)
from gateway.graph.schema import schema
from gateway.ops.config import PLAYGROUND_DIR, AuthSettings, Settings
from gateway.provinces.federated import (
    adapter_classes,
    open_provinces,
    sandbox_names,
    sandbox_people,
)
from gateway.state.reset import reset_world, world_files
from gateway.state.reset import run as reset_world_command
from gateway.state.store import LOCK_FILE
from tests.conftest import NOWHERE, PEOPLE, ROOT, ROSTER, GraphQL, Sandboxes, gateway
from tests.keys import AUTH, JWKS_FILE, SECRET

PLACEHOLDER = "paste the id here"
INTROSPECTION = "{ __schema { queryType { name } } }"


@pytest.fixture
async def http(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://gateway"
    ) as client:
        yield client


def page_assets(html: str) -> list[str]:
    return re.findall(r'(?:src|href)="([^"]+)"', html)


async def test_a_browser_opening_graphql_gets_the_playground(http: httpx.AsyncClient) -> None:
    response = await http.get("/graphql", headers={"Accept": "text/html"})

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    policy = response.headers["content-security-policy"]
    assert policy == CONTENT_SECURITY_POLICY
    directives = dict(d.split(" ", 1) for d in policy.split("; "))
    assert directives["default-src"] == directives["script-src"] == "'self'"
    assert directives["connect-src"] == "'self'"
    assert directives["frame-ancestors"] == "'none'"
    assert not any(w in policy for w in ("http", "*", "unsafe-eval")), policy
    assert "/playground/playground.js" in response.text
    assert (await http.get("/")).headers["location"] == "/graphql"


async def test_every_asset_of_the_page_comes_from_the_gateway(http: httpx.AsyncClient) -> None:
    html = (await http.get("/graphql", headers={"Accept": "text/html"})).text
    assets = [a for a in page_assets(html) if not a.startswith("data:")]

    assert len(assets) == 8  # three stylesheets, five scripts
    for asset in assets:
        assert asset.startswith("/playground/"), asset  # same origin, no CDN
        response = await http.get(asset)
        assert response.status_code == 200, asset
        kind = "text/css" if asset.endswith(".css") else "text/javascript"
        assert response.headers["content-type"].startswith(kind), asset
        assert len(response.content) > 1000, asset
    # no stylesheet reaches for a font or image elsewhere (GraphiQL inlines its fonts)
    for asset in (a for a in assets if a.endswith(".css")):
        urls = re.findall(r"url\(([^)]*)\)", (await http.get(asset)).text)
        assert all(u.strip("'\"").startswith("data:") for u in urls), asset


async def test_the_page_is_served_only_where_its_headers_are(http: httpx.AsyncClient) -> None:
    assert (await http.get("/playground/index.html")).status_code == 404
    script = await http.get("/playground/playground.js")
    assert script.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert script.headers["x-content-type-options"] == "nosniff"


@pytest.mark.parametrize(
    ("accept_encoding", "gzip"),
    [
        ("gzip", True),
        ("br, gzip;q=0.5", True),
        ("*", True),
        ("gzip;q=0", False),
        ("gzip;q=0, *", False),
        ("identity", False),
        ("", False),
        ("gzip;q=x", False),
    ],
)
def test_gzip_only_to_those_who_take_it(accept_encoding: str, gzip: bool) -> None:
    assert accepts_gzip(accept_encoding) is gzip


async def test_assets_are_sent_compressed_and_revalidated(http: httpx.AsyncClient) -> None:
    path = "/playground/vendor/graphiql.min.js"
    zipped = await http.get(path, headers={"Accept-Encoding": "gzip"})
    plain = await http.get(path, headers={"Accept-Encoding": "identity"})

    assert zipped.headers["content-encoding"] == "gzip"
    assert int(zipped.headers["content-length"]) < len(plain.content) / 2
    assert zipped.content == plain.content  # httpx decompressed it
    assert zipped.headers["content-type"].startswith("text/javascript")
    assert "content-encoding" not in plain.headers
    for response in (zipped, plain):
        assert response.headers["cache-control"] == "no-cache"
        assert response.headers["vary"] == "Accept-Encoding"
    again = await http.get(
        path, headers={"Accept-Encoding": "gzip", "If-None-Match": zipped.headers["etag"]}
    )
    assert again.status_code == 304


async def test_personas_are_the_roster_with_their_provinces(http: httpx.AsyncClient) -> None:
    personas = {p["key"]: p for p in (await http.get("/playground/personas")).json()}

    staff = {"reviewer_zhou", "hospital_cashier", "pharmacy_cashier", "admin_wu"}
    # the roster, and the people the sandboxes are seeded with beyond it (a province
    # installed from a package of its own brings its people this way)
    seeded = {p["key"] for p in sandbox_people()}
    assert seeded - set(PEOPLE)  # Jiangsu's and Henan's scenario families
    assert set(personas) == set(PEOPLE) | seeded | staff
    assert personas["js_scenario_1"]["province"]["code"] == "32"
    reviewer = personas["reviewer_zhou"]
    assert reviewer["role"] == "REVIEWER"
    assert reviewer["insurance"] is None
    assert reviewer["province"] is None
    wang = personas["hb_wang_jianguo"]
    assert wang["name"] == "王建国"
    assert wang["province"] == {"code": "13", "name": "河北省"}
    assert wang["insurance"] == {"type": "EMPLOYEE", "status": "ACTIVE"}
    assert wang["role"] == "INSURED"
    assert "cap of 8" in wang["notes"]
    # insured in Nanjing whatever her ID number says; Guangdong is not federated
    assert personas["js_zhang_shuzhen"]["province"]["code"] == "32"
    assert personas[NOWHERE]["province"] is None


async def test_a_persona_token_is_a_token_for_that_person(
    http: httpx.AsyncClient, settings: Settings
) -> None:
    response = await http.post("/playground/personas/js_liu_fang/token")

    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    caller = verify_token(response.json()["token"], settings.auth)
    assert caller.cert_no == PEOPLE["js_liu_fang"]["certNo"]
    assert (await http.post("/playground/personas/nobody/token")).status_code == 404
    # only POST mints (a GET falls through to the static files, which have no such file)
    assert (await http.get("/playground/personas/js_liu_fang/token")).status_code == 404


def test_every_example_is_valid_against_the_schema() -> None:
    personas = load_personas(ROOT / "fixtures" / "roster.json", PLAYGROUND_DIR / "personas.toml")
    examples = load_examples(PLAYGROUND_DIR / "examples.toml", personas)

    assert len(examples) >= 10
    for example in examples:
        errors = validate(schema.graphql_schema, parse(example.document))
        assert not errors, (example.title, errors)
        for text in (example.variables, example.headers):
            assert not text or isinstance(json.loads(text), dict), example.title
        first_line = example.document.splitlines()[0]
        assert first_line.startswith("#"), example.title
        if example.persona is not None:
            assert example.persona.name in first_line


def test_an_example_naming_an_unknown_persona_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "examples.toml"
    path.write_text('[[example]]\ntitle = "x"\npersona = "nobody"\nquery = "{ me { name } }"\n')

    with pytest.raises(ValueError, match="nobody"):
        load_examples(path, load_personas(ROOT / "fixtures" / "roster.json"))


def outcome(result: dict[str, Any]) -> list[str]:
    """Each field's refusal code, or the status of what it made, or "ok" for a read."""
    assert "errors" not in result, result
    summary = []
    for value in result["data"].values():
        if not isinstance(value, dict) or "errors" not in value:
            summary.append("ok")
        elif value["errors"]:
            summary.append(value["errors"][0]["code"])
        else:
            made = value.get("binding") or value.get("link") or value.get("settlement")
            summary.append(made["status"] if made else "ok")
    return summary


# What the examples' comments promise, run in order on a fresh sandbox.
PROMISED = {
    "The provinces and their rules": ["ok"],
    "Who am I, and whom have I bound?": ["ok"],
    "Hebei: eight relatives, then the cap": ["ACTIVE"] * 8 + ["BINDING_LIMIT_REACHED"],
    "Hebei: a parent-in-law is not an allowed relation": ["RELATION_NOT_ALLOWED"],
    "Jiangsu: bind a spouse (she must confirm)": ["PENDING_CONFIRMATION"],
    "Jiangsu: the spouse sees the request": ["ok"],
    "Jiangsu: the spouse confirms": ["ACTIVE"],
    "Jiangsu: no commitment letter": ["COMMITMENT_REQUIRED"],
    "Henan: one family only (he binds their daughter)": ["ACTIVE"],
    "Henan: one family only (then she tries)": ["ALREADY_BOUND"],
    "Henan: same city only": ["CROSS_AREA_NOT_ALLOWED"],
    "Across provinces: more than the balance, in English": ["QUOTA_ABOVE_BALANCE"],
    "Unbind": ["UNBOUND"],
    "Across provinces: a quota": ["ACTIVE"],
    "Premium: his father's resident premium": ["ok"],
    "Kinship: add a 17-year-old (he consents himself)": ["PENDING_CONSENT"],
    "Kinship: the member sees the request": ["ok"],
    "Kinship: the member consents": ["APPROVED"],
    "Kinship: activate his e-voucher": ["ACTIVE"],
    "Kinship: show his code": ["ok"],
    "Kinship: a 13-year-old needs a document": ["DOCUMENT_REQUIRED"],
    "Kinship: across provinces (no quota)": ["PENDING_CONSENT"],
    "Kinship: the review queue": ["ok"],
    "Diagnosis: why can't my family use my account?": ["ok"],
    "Dry run: what would binding do?": ["ok"],
    "Settlement: a hospital bill for 王静 (her father pays)": ["SETTLED"],
    "Settlement: reverse it the same day": ["REVERSED"],
    "Records: what my account paid for my family": ["ok"],
    "The family screen": ["ok"],
}


async def test_every_example_does_what_it_says_as_its_persona(
    http: httpx.AsyncClient, gql: GraphQL
) -> None:
    examples = (await http.get("/playground/examples")).json()
    assert [e["title"] for e in examples] == list(PROMISED)

    last_id = ""
    for example in examples:
        variables = example["variables"].replace(PLACEHOLDER, last_id)
        headers = json.loads(example["headers"] or "{}")
        if example["persona"]:
            minted = await http.post(f"/playground/personas/{example['persona']}/token")
            headers["Authorization"] = f"Bearer {minted.json()['token']}"
        response = await http.post(
            "/graphql",
            json={"query": example["query"], "variables": json.loads(variables or "{}")},
            headers=headers,
        )
        result = response.json()
        assert outcome(result) == PROMISED[example["title"]], example["title"]
        last_id = (re.findall(r'"id": "([^"]+)"', json.dumps(result)) or [last_id])[-1]
        if headers.get("Accept-Language") == "en":
            message = next(iter(result["data"].values()))["errors"][0]["message"]
            assert message.isascii(), message


async def test_an_unbuilt_playground_says_how_to_build_it(tmp_path: Path) -> None:
    shutil.copy(PLAYGROUND_DIR / "examples.toml", tmp_path)
    shutil.copy(PLAYGROUND_DIR / "personas.toml", tmp_path)
    app = create_app(Settings(data_dir=None, playground_dir=tmp_path))
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as client,
    ):
        response = await client.get("/graphql", headers={"Accept": "text/html"})

        asset = await client.get("/playground/playground.js")

    assert response.status_code == 503
    assert "scripts/install" in response.text
    assert asset.status_code == 503


def test_the_variables_linter_lets_a_field_with_a_default_be_left_out() -> None:
    # GraphiQL's linter took `commitmentSigned: Boolean! = false` for a field without a
    # default (it tested the default's truth); the build corrects it (build.mjs), and
    # tests/test_browser.py checks no shipped example shows a diagnostic.
    linter = (PLAYGROUND_DIR / "dist" / "vendor" / "graphiql.min.js").read_text("utf-8")
    missing = (
        r"(&&!|&&void 0===)\w+\.defaultValue&&\w+\.push\(\[\w+,`Object of type \"\$\{\w+\}\" is"
    )
    tests = [m.group(1) for m in re.finditer(missing, linter)]
    assert tests == ["&&void 0==="], "playground/dist is stale: run scripts/install"


async def test_the_playground_says_how_to_start_the_world_over(tmp_path: Path) -> None:
    in_memory = create_app(Settings(data_dir=None))
    on_disk = create_app(Settings(data_dir=tmp_path / "var"))
    async with (
        in_memory.router.lifespan_context(in_memory),
        on_disk.router.lifespan_context(on_disk),
    ):
        for app, world in [
            (in_memory, {"dataDir": None, "reset": None}),
            (
                on_disk,
                {
                    "dataDir": str(tmp_path / "var"),
                    "reset": f"gongji reset --data-dir {tmp_path / 'var'}",
                },
            ),
        ]:
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
                assert (await client.get("/playground/world")).json() == world


HENAN_BIND = next(
    e
    for e in load_examples(
        PLAYGROUND_DIR / "examples.toml",
        load_personas(ROOT / "fixtures" / "roster.json", PLAYGROUND_DIR / "personas.toml"),
    )
    if e.title.startswith("Henan: one family only (he binds")
)


async def bind_their_daughter(settings: Settings) -> list[str]:
    """Henan's example: 赵磊 binds 赵子涵, on a gateway started and stopped around it."""
    app = create_app(settings)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as client,
    ):
        result = await GraphQL(client, settings.auth)(
            HENAN_BIND.document, json.loads(HENAN_BIND.variables), as_="hn_zhao_lei"
        )
    return outcome(result)


@pytest.mark.sqlite
async def test_reset_starts_the_sandbox_world_over(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data_dir = tmp_path / "var"
    settings = Settings(data_dir=data_dir)
    assert await bind_their_daughter(settings) == ["ACTIVE"]
    assert await bind_their_daughter(settings) == ["DUPLICATE_BINDING"]  # the world is kept

    # what a killed gateway leaves by its databases goes with them; nothing else does
    (data_dir / "gateway.sqlite3-wal").write_bytes(b"")
    (data_dir / "sandbox" / "henan.sqlite3-shm").write_bytes(b"")
    (data_dir / "notes.txt").write_text("mine")

    assert gongji(["reset", "--data-dir", str(data_dir)]) == 0

    said = capsys.readouterr().out
    removed = set(said.split("(removed ", 1)[1].split(")", 1)[0].split(", "))
    # the store and what SQLite leaves beside it, and every installed province's world
    assert {"gateway.sqlite3", "gateway.sqlite3-wal", "sandbox/henan.sqlite3-shm"} <= removed
    assert {f"sandbox/{name}.sqlite3" for name in sandbox_names()} <= removed
    assert sorted(p.name for p in data_dir.rglob("*.sqlite3*")) == []
    assert (data_dir / "notes.txt").read_text() == "mine"
    assert (data_dir / LOCK_FILE).exists()  # the lock file stays (gateway.state.store)
    assert await bind_their_daughter(settings) == ["ACTIVE"]  # a fresh world


@pytest.mark.sqlite
async def test_reset_refuses_while_a_gateway_holds_the_directory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = Settings(data_dir=tmp_path / "var")
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        before = world_files(tmp_path / "var")
        assert reset_world_command(settings) == 2
        assert world_files(tmp_path / "var") == before
    assert "in use" in capsys.readouterr().err
    assert reset_world_command(settings) == 0  # stopped: now it may


@pytest.mark.sqlite
async def test_reset_refuses_what_is_not_a_sandbox_world(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # in production mode, whatever the directory holds
    await bind_their_daughter(Settings(data_dir=tmp_path))
    before = world_files(tmp_path)
    assert reset_world_command(dataclasses.replace(production(), data_dir=tmp_path)) == 2
    assert "production mode has no sandbox world" in capsys.readouterr().err
    # a gateway store whose provinces are elsewhere (not run in-process)
    for path in (tmp_path / "sandbox").iterdir():
        path.unlink()
    assert reset_world_command(Settings(data_dir=tmp_path)) == 2
    assert "no sandbox state" in capsys.readouterr().err
    assert world_files(tmp_path) == before[:1] == [tmp_path / "gateway.sqlite3"]


def test_reset_leaves_a_shared_store_alone_and_says_so(tmp_path: Path) -> None:
    from gateway.ops.config import StoreSettings
    from gateway.state.reset import run

    (tmp_path / "sandbox").mkdir()
    (tmp_path / "sandbox" / "hebei.sqlite3").write_bytes(b"")
    store = StoreSettings(url="postgresql://gongji:secret@db.example:5432/gongji", schema="world")
    out, err = io.StringIO(), io.StringIO()
    assert run(Settings(data_dir=tmp_path, store=store), out, err) == 2
    said = err.getvalue()
    assert "postgresql://gongji@db.example:5432/gongji" in said  # the password left out
    assert "secret" not in said
    assert "schema world" in said
    assert (tmp_path / "sandbox" / "hebei.sqlite3").exists()  # nothing removed


def test_reset_of_nothing_changes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert reset_world(tmp_path / "absent") == []
    assert not (tmp_path / "absent").exists()  # not made to be reset
    assert reset_world_command(Settings(data_dir=None)) == 0
    assert "in memory" in capsys.readouterr().out
    assert gongji(["reset", "--data-dir", str(tmp_path)]) == 0
    assert "Nothing to reset" in capsys.readouterr().out


def production(**changes: Any) -> Settings:
    """Production, its documents free by setting: what it does with any document (only
    registered ones run by default: tests/test_documents.py)."""
    return Settings(
        mode="production",
        data_dir=None,
        auth=AUTH,
        provinces={name: AdapterSettings(base_url=f"http://{name}") for name in adapter_classes()},
        free_documents=True,
        **changes,
    )


async def test_production_serves_neither_the_playground_nor_personas() -> None:
    sandboxes = Sandboxes()
    async with sandboxes:
        await sandboxes.start()
        app = create_app(production(), transports=dict(sandboxes.transports))
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://gw"
            ) as client,
        ):
            page = await client.get("/graphql", headers={"Accept": "text/html"})
            assert page.status_code == 404
            assert "graphiql" not in page.text.lower()
            for path in ("/", "/playground/personas", "/playground/examples", "/playground/world"):
                assert (await client.get(path)).status_code == 404, path
            asset = await client.get("/playground/vendor/graphiql.min.js")
            assert asset.status_code == 404
            token = await client.post("/playground/personas/hb_wang_jianguo/token")
            assert token.status_code == 404
            # the graph still answers, but not introspection
            gql = GraphQL(client, AUTH)
            assert (await gql("{ provinces { code } }"))["data"]["provinces"]
            refused = await gql(INTROSPECTION)
            assert "introspection has been disabled" in refused["errors"][0]["message"]
            assert (await gql("{ me { name } }", as_="hn_zhao_lei"))["data"]["me"]["name"]


@pytest.mark.parametrize(
    ("settings", "allowed"),
    [
        (Settings(data_dir=None), True),
        (Settings(data_dir=None, introspection=False), False),
        (production(), False),
        (production(introspection=True), True),
    ],
)
async def test_introspection_follows_the_settings(settings: Settings, allowed: bool) -> None:
    sandboxes = Sandboxes()
    async with sandboxes:
        await sandboxes.start()
        async with gateway(dict(sandboxes.transports), settings) as gql:
            result = await gql(INTROSPECTION)
    if allowed:
        assert result["data"]["__schema"]["queryType"]["name"] == "Query"
    else:
        assert "introspection has been disabled" in result["errors"][0]["message"]


def test_production_needs_public_keys_and_a_secret_of_its_own() -> None:
    with pytest.raises(ValueError, match="jwks_file or jwks_url"):
        Settings(mode="production", auth=AuthSettings(secret=SECRET))
    with pytest.raises(ValueError, match="signing secret of its own"):
        Settings(mode="production", auth=AuthSettings(jwks_file=JWKS_FILE))
    with pytest.raises(ValueError, match="32 bytes"):
        Settings(mode="production", auth=AuthSettings(secret="short", jwks_file=JWKS_FILE))
    with pytest.raises(ValueError, match="mode must be one of"):
        Settings(mode="staging")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="sandbox mode signs its own tokens"):
        Settings(auth=AuthSettings(jwks_file=JWKS_FILE))


def test_a_secret_of_its_own_is_refused_in_sandbox_mode() -> None:
    # the playground would mint tokens signed with it for anyone who asks
    with pytest.raises(ValueError, match='set mode = "production"'):
        Settings(auth=AuthSettings(secret=SECRET))


async def test_production_refuses_a_province_without_its_address() -> None:
    settings = production()
    without = {**settings.provinces, "henan": AdapterSettings(base_url="")}
    with pytest.raises(ValueError, match="henan: production mode needs its base_url"):
        async with open_provinces(without, data_dir=None, sandboxes=False):
            pass


def test_mode_and_playground_settings_load_from_toml_and_environment(tmp_path: Path) -> None:
    config = tmp_path / "gongji.toml"
    config.write_text(
        f'mode = "production"\n[auth]\nsecret = "{SECRET}"\njwks_file = "{JWKS_FILE}"\n'
        "[graphql]\nintrospection = true\n"
        '[playground]\ndir = "pg"\nroster = "people.json"\n'
    )

    loaded = Settings.load(config, environ={})
    assert loaded.production
    assert loaded.allows_introspection
    assert loaded.playground_dir == Path("pg")
    assert loaded.roster == Path("people.json")
    assert Settings.load(environ={}).mode == "sandbox"
    assert not Settings.load(environ={}).production
    with pytest.raises(ValueError, match="sandbox mode signs its own tokens"):
        Settings.load(config, environ={"GONGJI_MODE": "sandbox"})  # with production keys
    with pytest.raises(ValueError, match="mode must be one of"):
        Settings.load(environ={"GONGJI_MODE": "prod"})
    config.write_text('[graphql]\nintrospection = "false"\n')
    with pytest.raises(ValueError, match="true or false"):
        Settings.load(config, environ={})
    config.write_text("[playground]\ncolour = 1\n")
    with pytest.raises(ValueError, match="colour"):
        Settings.load(config, environ={})


def test_the_roster_fixture_is_the_one_personas_come_from() -> None:
    assert len(load_personas(ROOT / "fixtures" / "roster.json")) == len(ROSTER["people"])

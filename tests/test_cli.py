from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest

import gateway.edge.cli
from gateway.common.auth import verify_token
from gateway.edge.cli import build_parser, faults_from_args, main
from gateway.graph.schema import schema
from gateway.ops.config import AuthSettings
from gateway.provinces.federated import sandbox_factory, sandbox_names
from sandbox.faults import OFF, Faults, faults_of
from tests.conftest import ROOT


def test_token_prints_a_jwt_for_the_id_number(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["token", "13010220121212002x"]) == 0
    token = capsys.readouterr().out.strip()
    auth = AuthSettings()
    claims = jwt.decode(token, auth.secret, algorithms=["HS256"], audience=auth.audience)
    assert claims["sub"] == "13010220121212002X"
    assert claims["iss"] == auth.issuer


def test_token_carries_roles(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["token", "130102197603150016", "--role", "REVIEWER"]) == 0
    caller = verify_token(capsys.readouterr().out.strip(), AuthSettings())
    assert caller.roles == frozenset({"REVIEWER"})


def test_token_for_an_institution(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["token", "130102197603150016", "--role", "INSTITUTION", "--institution", "P1"]
    assert main([*args, "--institution-kind", "PHARMACY"]) == 0
    caller = verify_token(capsys.readouterr().out.strip(), AuthSettings())
    assert caller.institution is not None
    assert (caller.institution.code, caller.institution.kind) == ("P1", "PHARMACY")


def test_token_refuses_an_invalid_id_number(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["token", "130102197603150017"]) == 2
    assert "not a valid ID number" in capsys.readouterr().err


def test_export_schema_writes_the_sdl(tmp_path: Path) -> None:
    assert main(["export-schema", "--output", str(tmp_path / "s.graphql")]) == 0
    assert (tmp_path / "s.graphql").read_text("utf-8") == schema.as_str() + "\n"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _wait(url: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args} exited with {proc.returncode}")
        try:
            httpx.get(url, timeout=0.5)
            return
        except httpx.TransportError:
            time.sleep(0.1)
    raise TimeoutError(url)


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A Hebei sandbox over HTTP, and the gateway configured to reach it over HTTP."""
    sandbox_port, gateway_port = _free_port(), _free_port()
    config = tmp_path / "gongji.toml"
    config.write_text(
        f'[provinces.hebei]\nbase_url = "http://127.0.0.1:{sandbox_port}"\ntimeout = 3.0\n',
        encoding="utf-8",
    )
    gongji = [sys.executable, "-m", "gateway.edge.cli"]
    procs = [
        subprocess.Popen(
            [*gongji, "sandbox", "hebei", "--port", str(sandbox_port), "--data-dir", str(tmp_path)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        ),
        subprocess.Popen(
            [
                *gongji,
                "--config",
                str(config),
                "serve",
                "--port",
                str(gateway_port),
                "--data-dir",
                str(tmp_path),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        ),
    ]
    try:
        _wait(f"http://127.0.0.1:{sandbox_port}/", procs[0])
        _wait(f"http://127.0.0.1:{gateway_port}/healthz", procs[1])
        yield f"http://127.0.0.1:{gateway_port}", tmp_path
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(timeout=10)


def test_the_gateway_reaches_a_province_served_over_http(
    servers: tuple[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    url, data_dir = servers
    main(["token", "130102197603150016"])
    token = capsys.readouterr().out.strip()
    answer = httpx.post(
        f"{url}/graphql",
        json={"query": "{ me { name account { balance } province { code } } }"},
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    ).json()
    assert answer == {
        "data": {
            "me": {"name": "王建国", "account": {"balance": "3200.00"}, "province": {"code": "13"}}
        }
    }
    assert (data_dir / "sandbox" / "hebei.sqlite3").exists()
    assert (data_dir / "gateway.sqlite3").exists()


def test_sandbox_fault_flags_parse_into_the_settings() -> None:
    args = build_parser().parse_args(["sandbox", "hebei"])
    assert faults_from_args(args) == OFF
    args = build_parser().parse_args(
        [
            "sandbox",
            "jiangsu",
            "--latency-ms",
            "25",
            "--jitter-ms",
            "10",
            "--error-rate",
            "0.1",
            "--drop-rate",
            "0.05",
            "--malformed-rate",
            "0.02",
            "--hang",
            "--fault-path",
            "/api",
            "--fault-path",
            "/x",
            "--fault-seed",
            "7",
        ]
    )
    assert faults_from_args(args) == Faults(
        latency_ms=25,
        jitter_ms=10,
        error_rate=0.1,
        drop_rate=0.05,
        malformed_rate=0.02,
        hang=True,
        paths=("/api", "/x"),
        seed=7,
    )


def test_sandbox_refuses_invalid_faults_and_rosters(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["sandbox", "hebei", "--data-dir", str(tmp_path), "--error-rate", "1.5"]) == 2
    assert "error_rate must be a number from 0 to 1" in capsys.readouterr().err
    missing = tmp_path / "missing.json"
    assert main(["sandbox", "hebei", "--data-dir", str(tmp_path), "--roster", str(missing)]) == 2
    assert "missing.json" in capsys.readouterr().err


def test_sandbox_serves_with_the_faults_and_roster_asked_for(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    roster = tmp_path / "families.json"
    roster.write_text((ROOT / "fixtures" / "roster.json").read_text("utf-8"), encoding="utf-8")
    made: dict[str, Any] = {}
    served: list[Any] = []

    def factory(name: str) -> Any:
        def create(**kwargs: Any) -> Any:
            made.update(kwargs)
            return sandbox_factory(name)(**kwargs)

        return create

    monkeypatch.setattr(gateway.edge.cli, "sandbox_factory", factory)
    monkeypatch.setattr(gateway.edge.cli.uvicorn, "run", lambda app, **_: served.append(app))
    argv = ["sandbox", "henan", "--data-dir", str(tmp_path), "--roster", str(roster)]
    assert main([*argv, "--drop-rate", "0.5", "--latency-ms", "5"]) == 0
    assert faults_of(served[0]) == Faults(drop_rate=0.5, latency_ms=5)
    assert made["roster"] == json.loads(roster.read_text("utf-8"))
    assert "fault mode" in capsys.readouterr().out


# -- the store: migrations, several workers ----------------------------------------------


def test_migrate_brings_a_release_01_store_up_and_then_has_nothing_to_do(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import sqlite3

    from gateway.state.migrations import LATEST

    old = sqlite3.connect(tmp_path / "gateway.sqlite3")
    old.executescript((ROOT / "fixtures" / "stores" / "release-0.1.sql").read_text("utf-8"))
    old.close()
    assert main(["migrate", "--data-dir", str(tmp_path)]) == 0
    said = capsys.readouterr().out
    assert f"at migration {LATEST}" in said
    assert "applied now: " + ", ".join(str(v) for v in range(1, LATEST + 1)) in said
    assert main(["migrate", "--data-dir", str(tmp_path)]) == 0
    assert "applied now: none" in capsys.readouterr().out


def test_migrate_refuses_a_store_a_later_release_made(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["migrate", "--data-dir", str(tmp_path)]) == 0
    import sqlite3

    with sqlite3.connect(tmp_path / "gateway.sqlite3") as db:
        db.execute("INSERT INTO schema_version VALUES (999, 'later', '2030-01-01')")
    capsys.readouterr()
    assert main(["migrate", "--data-dir", str(tmp_path)]) == 2
    assert "migration 999" in capsys.readouterr().err


def test_several_workers_need_a_shared_store(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["serve", "--workers", "2", "--data-dir", str(tmp_path)]) == 2
    said = capsys.readouterr().err
    assert "SQLite serves one process" in said
    assert "[store] url" in said


def test_serve_workers_starts_the_sandboxes_once_and_tells_each_worker_where(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """In-process, with uvicorn and the sandbox processes stood in for: what
    ``serve --workers`` starts, and what each worker is told (tests/test_instances.py
    runs it for real)."""
    import sandbox.serve

    started: list[tuple[str, int]] = []
    stopped: list[str] = []
    served: dict[str, Any] = {}

    class Child:
        def __init__(self, name: str) -> None:
            self.name = name

    def spawn(name: str, port: int, data_dir: Path, extra: Any = (), **_: Any) -> Child:
        assert data_dir == tmp_path
        assert list(extra) == ["--policy-date", "2025-06-01"]
        started.append((name, port))
        return Child(name)

    def run(app: str, **options: Any) -> None:
        served.update(options, app=app)
        # what a worker process would build, from what its parent told it
        worker = gateway.edge.cli.worker_settings()
        served["urls"] = {n: s.base_url for n, s in worker.provinces.items()}
        served["worker_app"] = type(gateway.edge.cli.worker_app()).__name__

    monkeypatch.setattr(sandbox.serve, "spawn_sandbox", spawn)
    monkeypatch.setattr(sandbox.serve, "wait_ready", lambda url, process: None)
    monkeypatch.setattr(sandbox.serve, "stop", lambda child: stopped.append(child.name))
    monkeypatch.setattr(gateway.edge.cli.uvicorn, "run", run)
    monkeypatch.setenv("GONGJI_STORE_URL", "postgresql://gongji@127.0.0.1:1/gongji")
    monkeypatch.setenv(gateway.edge.cli.WORKER, "")  # what serve sets: undone after
    args = ["serve", "--workers", "3", "--port", "8123", "--data-dir", str(tmp_path)]
    assert main([*args, "--policy-date", "2025-06-01"]) == 0
    names = sorted(n for n, _ in started)
    assert names == sandbox_names()  # each installed sandbox province, once
    assert {"hebei", "henan", "jiangsu"} <= set(names)
    assert sorted(stopped) == names  # stopped when the workers are
    assert served["app"] == "gateway.edge.cli:worker_app"
    assert (served["factory"], served["workers"], served["port"]) == (True, 3, 8123)
    assert served["urls"] == {n: f"http://127.0.0.1:{p}" for n, p in started}
    assert served["worker_app"] == "Starlette"
    assert "3 workers on postgresql://gongji@127.0.0.1:1/gongji" in capsys.readouterr().out


def test_migrate_says_why_when_the_server_cannot_be_reached(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("GONGJI_STORE_URL", f"postgresql://gongji:pw@127.0.0.1:{port}/gongji")
    assert main(["migrate"]) == 2
    said = capsys.readouterr().err
    assert said.startswith("gongji migrate:")
    assert "pw" not in said

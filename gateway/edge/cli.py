"""``gongji``: serve the gateway, mint sandbox tokens, run a sandbox province, start the
sandbox world over, migrate the store, export the SDL."""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import importlib.util
import json
import math
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import uvicorn

from gateway.common.auth import INSTITUTION_KINDS, ROLES, Institution, mint_token
from gateway.ops import logs
from gateway.ops.config import Settings
from gateway.provinces.federated import sandbox_factory, sandbox_names

RESET_HELP = "start the sandbox world over (the gateway stopped): the next start seeds it afresh"
GC_YOUNG = 5000  # the collector's first threshold while serving

if TYPE_CHECKING:
    from starlette.applications import Starlette

    from sandbox.faults import Faults


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gongji", description=__doc__)
    parser.add_argument("--config", type=Path, help="a TOML file (see docs/configuration.md)")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the gateway (the playground at /graphql)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--data-dir", type=Path, help="state directory (default ./var)")
    serve.add_argument(
        "--workers",
        type=int,
        default=1,
        metavar="N",
        help="N gateway processes on one port (needs a shared store: [store] url)",
    )
    serve.add_argument(
        "--policy-date",
        type=dt.date.fromisoformat,
        metavar="YYYY-MM-DD",
        help="sandbox mode: apply the provinces' rules in force on this date (default: today)",
    )

    token = commands.add_parser("token", help="print a sandbox token for an ID number")
    token.add_argument("cert_no")
    token.add_argument(
        "--role", action="append", default=[], choices=sorted(ROLES), help="a role to carry"
    )
    token.add_argument("--institution", help="the institution code (with --role INSTITUTION)")
    token.add_argument(
        "--institution-kind", default="HOSPITAL", choices=INSTITUTION_KINDS, help="its kind"
    )

    sandbox = commands.add_parser("sandbox", help="run one sandbox province over HTTP")
    sandbox.add_argument("province", choices=sandbox_names())
    sandbox.add_argument("--host", default="127.0.0.1")
    sandbox.add_argument("--port", type=int, default=9000)
    sandbox.add_argument("--data-dir", type=Path, help="state directory (default ./var)")
    sandbox.add_argument(
        "--roster", type=Path, help="the people to seed a fresh state with (default: the fixtures)"
    )
    sandbox.add_argument(
        "--policy-date",
        type=dt.date.fromisoformat,
        metavar="YYYY-MM-DD",
        help="apply the province's rules in force on this date (default: today)",
    )
    add_fault_arguments(sandbox)

    documents = commands.add_parser(
        "documents", help="the registered operations (trusted documents) the apps may run"
    )
    documents.add_argument(
        "action",
        choices=("list", "check", "build", "register"),
        help="list them; check each still validates and the manifest is the docs' own;"
        " build it from the playground and the docs; register more from .graphql files",
    )
    documents.add_argument("files", nargs="*", type=Path, help="register: .graphql files")
    documents.add_argument("--manifest", type=Path, help="default: [graphql] documents")

    migrate = commands.add_parser(
        "migrate", help="bring the store's tables up to this release (serve does it too)"
    )
    migrate.add_argument("--data-dir", type=Path, help="state directory (default ./var)")

    reset = commands.add_parser("reset", help=RESET_HELP, description=RESET_HELP)
    reset.add_argument("--data-dir", type=Path, help="state directory (default ./var)")

    kit = commands.add_parser(
        "conformance",
        help="run the conformance kit on installed provinces (pytest's options may follow)",
        description="Run the conformance suite (the conformance package) on the provinces"
        " installed: each adapter against its own sandbox. Needs the kit's extra:"
        " pip install 'gongji[kit]'.",
    )
    kit.add_argument(
        "--province",
        action="append",
        default=[],
        metavar="NAME",
        help="a province by its entry points' name (again for more; default: every one)",
    )
    # what follows (-x, -k EXPR, -n 2, ...) is pytest's: `main` passes it on

    commands.add_parser(
        "new-province",
        help="make a new province's package from the example out of tree (NAME --code"
        " NN --title 名称 --city CODE:名称 --city CODE:名称 [--out DIR]; --help for more)",
        add_help=False,  # its own options: `main` passes them on (conformance.scaffold)
    )

    export = commands.add_parser("export-schema", help="print the GraphQL SDL")
    export.add_argument("--output", type=Path)
    return parser


# The commands whose other options are another program's: pytest's, the scaffold's.
PASSING_ON = ("conformance", "new-province")


def conformance(provinces: Sequence[str], pytest_args: Sequence[str]) -> int:
    """The kit's suite in a pytest of its own, on ``provinces`` (default: all)."""
    installed = sandbox_names()
    unknown = [name for name in provinces if name not in installed]
    if unknown:
        print(
            f"gongji conformance: no province {', '.join(unknown)} is installed"
            f" (installed: {', '.join(installed)})",
            file=sys.stderr,
        )
        return 2
    if importlib.util.find_spec("pytest") is None or importlib.util.find_spec("respx") is None:
        print(
            "gongji conformance: install the kit first: pip install 'gongji[kit]'", file=sys.stderr
        )
        return 2
    command = [
        sys.executable,
        *("-m", "pytest", "-p", "no:cacheprovider", "-o", "asyncio_mode=auto"),
        *("--pyargs", "conformance.suite", *pytest_args),
    ]
    env = {**os.environ, "GONGJI_CONFORMANCE": ",".join(provinces)}
    return subprocess.call(command, env=env)  # noqa: S603 (this interpreter, the kit)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    if rest and args.command not in PASSING_ON:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    try:
        settings = Settings.load(
            args.config,
            data_dir=getattr(args, "data_dir", None),
            policy_date=getattr(args, "policy_date", None),
        )
    except ValueError as exc:
        print(f"gongji: {exc}", file=sys.stderr)
        return 2
    logs.configure(fmt=settings.logs_as)

    if args.command == "serve":
        return serve(args, settings)
    elif args.command == "conformance":
        return conformance(args.province, rest)
    elif args.command == "new-province":
        scaffold = [sys.executable, "-m", "conformance.scaffold", *rest]
        return subprocess.call(scaffold)  # noqa: S603 (this interpreter, the kit)
    elif args.command == "token":
        try:
            institution = (
                Institution(args.institution, args.institution_kind) if args.institution else None
            )
            roles = frozenset(args.role)
            print(mint_token(args.cert_no, settings.auth, roles=roles, institution=institution))
        except ValueError as exc:
            print(f"gongji token: {exc}", file=sys.stderr)
            return 2
    elif args.command == "sandbox":
        from sandbox.engine import load_roster
        from sandbox.faults import set_faults

        try:
            faults = faults_from_args(args)
            roster = load_roster(args.roster) if args.roster else None
        except (OSError, ValueError) as exc:
            print(f"gongji sandbox: {exc}", file=sys.stderr)
            return 2
        app = sandbox_factory(args.province)(
            data_dir=settings.data_dir, roster=roster, policy_date=args.policy_date
        )
        set_faults(app, faults)
        url = f"http://{args.host}:{args.port}"
        note = f"fault mode {json.dumps(faults.to_json())}" if faults.active else "no faults"
        print(f"Sandbox {args.province} on {url} ({note}; {url}/_faults changes them)")
        uvicorn.run(app, host=args.host, port=args.port, log_config=None)
    elif args.command == "migrate":
        return migrate(settings)
    elif args.command == "documents":
        return documents(args, settings)
    elif args.command == "reset":
        from gateway.state.reset import run as reset_world

        return reset_world(settings)
    elif args.command == "export-schema":
        from gateway.graph.schema import schema

        sdl = schema.as_str() + "\n"
        if args.output:
            args.output.write_text(sdl, encoding="utf-8")
        else:
            sys.stdout.write(sdl)
    return 0


WORKER = "GONGJI_WORKER"  # what `serve --workers` tells each worker process (JSON)


def serve(args: argparse.Namespace, settings: Settings) -> int:
    from gateway.edge.app import create_app, embeds_sandboxes
    from gateway.ops import tracing
    from gateway.state.store import DataDirInUse, check_data_dir

    if args.workers < 1:
        print("gongji serve: --workers is 1 or more", file=sys.stderr)
        return 2
    if args.workers > 1 and not settings.store.shared:
        print(
            f"gongji serve: --workers {args.workers} needs a store the processes share:"
            " SQLite serves one process. Set [store] url (or GONGJI_STORE_URL) to a"
            " postgresql:// url (docs/deployment.md)",
            file=sys.stderr,
        )
        return 2
    if settings.data_dir is not None and (not settings.store.shared or embeds_sandboxes(settings)):
        try:  # one process per data directory: say so before anything starts
            check_data_dir(settings.data_dir)
        except (DataDirInUse, OSError) as exc:
            print(f"gongji serve: {exc}", file=sys.stderr)
            return 2
    if args.workers > 1:
        return serve_workers(args, settings)

    provider = tracing.configure(settings.tracing)

    what = "GraphQL" if settings.production else "playground and GraphQL"
    url = f"http://{args.host}:{args.port}/graphql"
    print(f"Gongji ({settings.mode}): {what} on {url}  (data in {settings.data_dir})")
    app = create_app(settings)
    # What is loaded by now (modules, the schema) lives as long as the process: kept
    # out of the collector's full passes. Young objects are collected after GC_YOUNG
    # net allocations instead of 700 (a family dashboard leaves about 650): about
    # once every eight dashboards instead of about once each (bench/RESULTS.md).
    gc.collect()  # what is already garbage is not frozen with the rest
    gc.freeze()
    gc.set_threshold(GC_YOUNG, *gc.get_threshold()[1:])
    try:
        uvicorn.run(app, **served(args, settings))
    finally:
        if provider is not None:
            provider.shutdown()  # the last spans go out
    return 0


def served(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    """How uvicorn serves the gateway, one process or several."""
    proxies = settings.limits.trusted_proxies
    return {
        "host": args.host,
        "port": args.port,
        "log_config": None,
        # SIGTERM: stop accepting, let requests in flight finish (then the lifespan
        # stops the reconciler); a write cut off here is answered SUBMITTED and
        # resumed at the next start
        "timeout_graceful_shutdown": math.ceil(settings.resilience.shutdown_grace),
        # X-Forwarded-For and -Proto only from the proxies named in [limits]: by
        # default uvicorn believes them from loopback, where any local client could
        # forge its address (the rate limit per address, the audit's client)
        "proxy_headers": bool(proxies),
        "forwarded_allow_ips": list(proxies),
    }


def serve_workers(args: argparse.Namespace, settings: Settings) -> int:
    """``--workers N``: N processes on one port (uvicorn's supervisor), one store. In
    sandbox mode each sandbox province runs once, in a process of its own, for all of
    them (in-process, each worker would have a province of its own)."""

    from sandbox.serve import free_port, spawn_sandbox, stop, wait_ready

    urls: dict[str, str] = {}
    children: list[subprocess.Popen[bytes]] = []
    if not settings.production:
        data_dir = settings.data_dir or Path("var")
        dated = [] if settings.policy_date is None else ["--policy-date", str(settings.policy_date)]
        for name in sandbox_names():
            conf = settings.provinces.get(name)
            if name in settings.disabled or (conf is not None and conf.base_url):
                continue
            port = free_port(args.host)
            children.append(spawn_sandbox(name, port, data_dir, dated, host=args.host))
            urls[name] = f"http://{args.host}:{port}"
    try:
        for url, child in zip(urls.values(), children, strict=True):
            wait_ready(url, process=child)
        os.environ[WORKER] = json.dumps(
            {
                "config": None if args.config is None else str(args.config),
                "data_dir": None if settings.data_dir is None else str(settings.data_dir),
                "policy_date": getattr(args, "policy_date", None) and args.policy_date.isoformat(),
                "sandboxes": urls,
            }
        )
        worker_settings()  # a worker's settings fail here first, said once
        what = "GraphQL" if settings.production else "playground and GraphQL"
        url = f"http://{args.host}:{args.port}/graphql"
        print(
            f"Gongji ({settings.mode}): {what} on {url}, {args.workers} workers on"
            f" {settings.store.safe_url()}"
        )
        uvicorn.run(
            "gateway.edge.cli:worker_app",
            factory=True,
            workers=args.workers,
            **served(args, settings),
        )
    finally:
        for child in children:
            stop(child)
    return 0


def worker_settings() -> Settings:
    """A worker's settings: as its parent loaded them, the sandboxes at their urls."""
    import dataclasses

    from gateway.ops.config import province_settings

    told = json.loads(os.environ[WORKER])
    settings = Settings.load(
        None if told["config"] is None else Path(told["config"]),
        data_dir=None if told["data_dir"] is None else Path(told["data_dir"]),
        policy_date=None
        if told["policy_date"] is None
        else dt.date.fromisoformat(told["policy_date"]),
    )
    provinces = dict(settings.provinces)
    for name, url in told["sandboxes"].items():
        conf = provinces.get(name)
        provinces[name] = (
            province_settings(name, {"base_url": url})
            if conf is None
            else dataclasses.replace(conf, base_url=url)
        )
    return dataclasses.replace(settings, provinces=provinces)


def worker_app() -> Starlette:
    """One worker of ``serve --workers`` (uvicorn calls this in each process)."""
    from gateway.edge.app import create_app

    settings = worker_settings()
    logs.configure(fmt=settings.logs_as)
    return create_app(settings)


def documents(args: argparse.Namespace, settings: Settings) -> int:
    """``gongji documents``: see `gateway.edge.documents`."""
    from gateway.edge.documents import Manifest, Operation, shown
    from gateway.graph.schema import schema
    from gateway.ops.config import DOCUMENTS

    path: Path = args.manifest or settings.documents
    root = DOCUMENTS.parent.parent  # the project: its playground and docs
    try:
        manifest = Manifest.load(path) if path.exists() else Manifest()
        if args.action == "build":
            manifest = Manifest(shown(root))
        elif args.action == "register":
            manifest = manifest.with_(Operation.of(f.read_text("utf-8")) for f in args.files)
    except (OSError, ValueError) as exc:  # graphql's GraphQLSyntaxError is a ValueError too
        print(f"gongji documents: {exc}", file=sys.stderr)
        return 2
    if args.action in ("build", "register"):
        problems = manifest.problems(schema._schema)
        if problems:
            print("gongji documents: not registered, they do not validate:", file=sys.stderr)
            print("\n".join(f"  {p}" for p in problems), file=sys.stderr)
            return 1
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(manifest.dumps(), encoding="utf-8")
        print(f"{len(manifest)} documents in {path}")
        return 0
    if args.action == "list":
        for op in manifest:
            print(f"sha256:{op.id}  {op.type:<8} {op.name}")
        return 0
    problems = manifest.problems(schema._schema)  # check
    if args.manifest is None and path == DOCUMENTS:
        missing = [op.name or op.id for op in shown(root) if manifest.get(op.id) is None]
        problems += [
            f"{name}: shown in the docs or the playground, not registered" for name in missing
        ]
    if problems:
        print("\n".join(problems), file=sys.stderr)
        return 1
    print(f"{len(manifest)} documents in {path}: every one validates")
    return 0


def migrate(settings: Settings) -> int:
    """Bring the store's tables up to this release and say what was done."""
    import asyncio

    import asyncpg

    from gateway.state.backend import open_store
    from gateway.state.migrations import LATEST, StoreTooNew
    from gateway.state.store import DataDirInUse

    async def run() -> list[int]:
        async with open_store(settings.store, settings.data_dir) as store:
            return store.migrated

    try:
        applied = asyncio.run(run())
    except (DataDirInUse, StoreTooNew, OSError, asyncpg.PostgresError) as exc:
        # (OSError: a server that cannot be reached; PostgresError: one that refuses)
        print(f"gongji migrate: {exc}", file=sys.stderr)
        return 2
    done = ", ".join(map(str, applied)) if applied else "none"
    print(f"store {settings.store.safe_url()}: at migration {LATEST} (applied now: {done})")
    return 0


def add_fault_arguments(parser: argparse.ArgumentParser) -> None:
    """The fault-mode flags of ``gongji sandbox`` (see docs/configuration.md)."""
    group = parser.add_argument_group("fault mode (all off by default)")
    group.add_argument(
        "--latency-ms", type=float, default=0.0, metavar="N", help="delay every request"
    )
    group.add_argument(
        "--jitter-ms", type=float, default=0.0, metavar="N", help="plus a random 0..N ms"
    )
    group.add_argument(
        "--error-rate", type=float, default=0.0, metavar="F", help="answer 503 (0..1)"
    )
    group.add_argument(
        "--drop-rate",
        type=float,
        default=0.0,
        metavar="F",
        help="handle the request, then close the connection unanswered (0..1)",
    )
    group.add_argument(
        "--malformed-rate",
        type=float,
        default=0.0,
        metavar="F",
        help="handle the request, answer garbage with status 200 (0..1)",
    )
    group.add_argument(
        "--hang", action="store_true", help="answer nothing until PUT /_faults says otherwise"
    )
    group.add_argument(
        "--fault-path",
        action="append",
        default=[],
        metavar="PREFIX",
        help="apply faults only to paths starting so (repeatable; default: all)",
    )
    group.add_argument(
        "--fault-seed", type=int, metavar="N", help="seed the rates' random generator"
    )


def faults_from_args(args: argparse.Namespace) -> Faults:
    """The `Faults` the fault-mode flags ask for; `ValueError` when they are invalid."""
    from sandbox.faults import Faults

    return Faults(
        latency_ms=args.latency_ms,
        jitter_ms=args.jitter_ms,
        error_rate=args.error_rate,
        drop_rate=args.drop_rate,
        malformed_rate=args.malformed_rate,
        hang=args.hang,
        paths=tuple(args.fault_path),
        seed=args.fault_seed,
    )


if __name__ == "__main__":
    raise SystemExit(main())

"""``gongji``: serve the gateway, mint sandbox tokens, run a sandbox province, export the SDL."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import uvicorn

from gateway import logs
from gateway.auth import INSTITUTION_KINDS, ROLES, Institution, mint_token
from gateway.config import Settings
from gateway.provinces import sandbox_factory, sandbox_names


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="gongji", description=__doc__)
    parser.add_argument("--config", type=Path, help="a TOML file (see docs/configuration.md)")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the gateway (the playground at /graphql)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--data-dir", type=Path, help="state directory (default ./var)")

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

    export = commands.add_parser("export-schema", help="print the GraphQL SDL")
    export.add_argument("--output", type=Path)

    args = parser.parse_args(argv)
    settings = Settings.load(args.config, data_dir=getattr(args, "data_dir", None))
    logs.configure()

    if args.command == "serve":
        from gateway.app import create_app

        what = "GraphQL" if settings.production else "playground and GraphQL"
        url = f"http://{args.host}:{args.port}/graphql"
        print(f"Gongji ({settings.mode}): {what} on {url}  (data in {settings.data_dir})")
        uvicorn.run(create_app(settings), host=args.host, port=args.port, log_config=None)
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
        app = sandbox_factory(args.province)(data_dir=settings.data_dir)
        uvicorn.run(app, host=args.host, port=args.port, log_config=None)
    elif args.command == "export-schema":
        from gateway.schema import schema

        sdl = schema.as_str() + "\n"
        if args.output:
            args.output.write_text(sdl, encoding="utf-8")
        else:
            sys.stdout.write(sdl)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

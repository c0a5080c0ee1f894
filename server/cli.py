"""``inspectd``: the command line. The only place that configures logging."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import ssl
import sys
from collections.abc import Sequence
from pathlib import Path

from aiohttp import web

from inference import InferenceError

from .settings import Settings, SettingsError, load_settings

__all__ = ["main"]

logger = logging.getLogger("inspectd")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="inspectd",
        description="Real-time video inspection and support service.",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the service (embedded defaults if unset)")
    serve.add_argument("--host", help="listen address (INSPECT_HOST, default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="listen port (INSPECT_PORT, default 8080)")
    serve.add_argument("--data-dir", type=Path, help="state directory (INSPECT_DATA_DIR, ./var)")
    serve.add_argument(
        "--tls-self-signed",
        action="store_true",
        help="serve HTTPS with a self-signed certificate (phones need HTTPS for the camera)",
    )
    serve.add_argument("--cert", type=Path, help="TLS certificate file (PEM)")
    serve.add_argument("--key", type=Path, help="TLS private key file (PEM)")
    serve.add_argument(
        "--demo",
        action="store_true",
        help="create a demo agent and a demo return case on first start and print the links",
    )

    user = commands.add_parser("add-user", help="create a staff account")
    user.add_argument("username")
    user.add_argument("--role", choices=("agent", "reviewer", "admin"), default="agent")
    user.add_argument("--name", help="display name (default: the username)")
    user.add_argument("--password", help="password (asked for when omitted)")

    commands.add_parser(
        "eval",
        add_help=False,
        help="score a grading model: accuracy, confusion matrix, per-damage AUROC, calibration"
        " (inspectd eval [MODEL] [DIR]; DIR holds A/ B/ C/ D/ photo folders)",
    ).add_argument("args", nargs=argparse.REMAINDER)
    commands.add_parser(
        "train",
        add_help=False,
        help="fine-tune the grading model on your own labelled photos (inspectd train DIR"
        " --out model.onnx); needs the train extra: pip install -e '.[train]'",
    ).add_argument("args", nargs=argparse.REMAINDER)

    token = commands.add_parser("add-token", help="create an API bearer token for an integration")
    token.add_argument("name")
    token.add_argument("--role", choices=("agent", "reviewer", "admin"), default="admin")
    return parser


def _settings_for(args: argparse.Namespace) -> Settings:
    settings = load_settings()
    overrides: dict[str, object] = {}
    for flag, name in (("host", "host"), ("port", "port"), ("data_dir", "data_dir")):
        value = getattr(args, flag, None)
        if value is not None:
            overrides[name] = value
    if getattr(args, "tls_self_signed", False):
        overrides["tls_self_signed"] = True
    if getattr(args, "cert", None) is not None or getattr(args, "key", None) is not None:
        overrides["tls_cert"] = args.cert
        overrides["tls_key"] = args.key
    return settings.with_overrides(**overrides) if overrides else settings


def _ssl_context(settings: Settings) -> ssl.SSLContext | None:
    from .tls import local_names, self_signed_certificate, ssl_context

    if settings.tls_cert is not None and settings.tls_key is not None:
        return ssl_context(settings.tls_cert, settings.tls_key)
    if settings.tls_self_signed:
        hosts = ["localhost", "127.0.0.1", settings.host, *local_names()]
        cert, key = self_signed_certificate(settings.data_dir, hosts)
        return ssl_context(cert, key)
    return None


async def _serve(settings: Settings, demo: bool) -> None:
    from .app import create_app
    from .demo import seed_demo

    app = await create_app(settings)
    runner = web.AppRunner(app, shutdown_timeout=settings.shutdown_timeout_s)
    await runner.setup()
    site = web.TCPSite(runner, settings.host, settings.port, ssl_context=_ssl_context(settings))
    await site.start()
    logger.info("listening on %s", settings.base_url)
    if demo:
        for line in await seed_demo(app):
            print(line, flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        await stop.wait()
    finally:
        logger.info("shutting down")
        await runner.cleanup()


async def _add_user(settings: Settings, args: argparse.Namespace) -> None:
    import getpass

    from .app import open_state

    password = args.password or getpass.getpass(f"password for {args.username}: ")
    async with open_state(settings) as state:
        user = await state.auth.create_user(
            args.username, password, name=args.name or args.username, role=args.role
        )
    print(f"created {user.role} {user.username}")


async def _add_token(settings: Settings, args: argparse.Namespace) -> None:
    from .app import open_state

    async with open_state(settings) as state:
        token, _token_id = await state.auth.create_api_token(args.name, role=args.role)
    print(token)


def _model_tool(command: str, argv: list[str]) -> int:
    """``eval`` and ``train`` run the training package's own command lines."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if command == "eval":
        from inference.training.evaluate import main as evaluate

        return evaluate(argv)
    try:
        from inference.training.train import main_train_folder
    except ImportError as exc:
        print(
            f"inspectd train needs the train extra ({exc.name} is missing):"
            " pip install -e '.[train]'",
            file=sys.stderr,
        )
        return 2
    return main_train_folder(argv)


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments and arguments[0] in ("eval", "train"):
        # Their own parsers own every option, --help included.
        return _model_tool(arguments[0], arguments[1:])
    args = _parser().parse_args(arguments)
    try:
        settings = _settings_for(args)
    except SettingsError as exc:
        print(f"inspectd: invalid setting {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=settings.log_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # aioice/aiortc log every STUN transaction at INFO.
    logging.getLogger("aioice").setLevel(logging.WARNING)
    try:
        if args.command == "serve":
            asyncio.run(_serve(settings, args.demo))
        elif args.command == "add-user":
            asyncio.run(_add_user(settings, args))
        elif args.command == "add-token":
            asyncio.run(_add_token(settings, args))
    except KeyboardInterrupt:
        return 130
    except OSError as exc:
        print(f"inspectd: {exc}", file=sys.stderr)
        return 1
    except InferenceError as exc:
        # A model that breaks the contract, or an unavailable provider: refuse to start.
        print(f"inspectd: grading model: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

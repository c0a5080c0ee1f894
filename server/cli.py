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

from evidence import CredentialsError
from inference import InferenceError
from server.access_log import MaskingAccessLogger
from server.settings import Settings, SettingsError, load_settings
from server.storage.database import SchemaTooNew

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
    serve.add_argument(
        "--workers",
        type=_workers,
        default=1,
        metavar="N",
        help="serving processes on this host and port (default 1; 0 or auto: one per core);"
        " more than one needs INSPECT_REDIS_URL, and INSPECT_MEDIA_PORTS is split between them",
    )
    serve.add_argument(
        "--media-ports", metavar="MIN-MAX", help="UDP ports for media (INSPECT_MEDIA_PORTS)"
    )
    # Set by the supervisor of --workers on each worker it starts: its index.
    serve.add_argument("--worker", type=int, help=argparse.SUPPRESS)

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

    worker = commands.add_parser(
        "worker",
        help="grade frames for the nodes of a deployment: take them from Redis"
        " (INSPECT_REDIS_URL), run the model here (a GPU host), send the results back",
    )
    worker.add_argument("--redis-url", help="Redis shared with the nodes (INSPECT_REDIS_URL)")
    worker.add_argument(
        "--model", type=Path, help="ONNX model (INSPECT_MODEL_PATH; default shipped)"
    )
    worker.add_argument(
        "--provider",
        choices=("auto", "tensorrt", "cuda", "cpu"),
        help="execution provider (INSPECT_INFERENCE_PROVIDER, default auto: TensorRT, CUDA, CPU)",
    )
    worker.add_argument(
        "--stale-s",
        type=float,
        default=5.0,
        help="skip frames older than this many seconds (default 5): a late grade is useless",
    )

    token = commands.add_parser("add-token", help="create an API bearer token for an integration")
    token.add_argument("name")
    token.add_argument(
        "--role",
        choices=("integration", "agent", "reviewer", "admin"),
        default="integration",
        help="integration (default: create cases, mint join links, read cases) or a staff role;"
        " admin only when the integration must manage accounts",
    )

    commands.add_parser(
        "migrate",
        help="bring the database (INSPECT_DATABASE_URL, else SQLite under the data directory)"
        " to this version's schema; a node also does this when it starts",
    )
    move = commands.add_parser(
        "migrate-data",
        help="copy an embedded install (SQLite) into PostgreSQL, verify it and say what was copied",
    )
    move.add_argument(
        "--from", dest="source", type=Path, required=True, help="the SQLite file (var/inspect.db)"
    )
    move.add_argument(
        "--to", dest="target", required=True, help="postgresql://user:password@host/db (empty)"
    )
    move.add_argument("--schema", help="the PostgreSQL schema to fill (default: search_path)")

    disable = commands.add_parser(
        "disable-user",
        help="disable a staff account: its sessions end and it can no longer sign in",
    )
    disable.add_argument("username")
    disable.add_argument("--enable", action="store_true", help="enable the account again")
    return parser


def _workers(text: str) -> int:
    from server.supervisor import parse_workers

    try:
        return parse_workers(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _settings_for(args: argparse.Namespace) -> Settings:
    settings = load_settings()
    overrides: dict[str, object] = {}
    if getattr(args, "worker", None):
        overrides["rtsp_pull"] = False  # worker 0 pulls the RTSP cameras, once
    for flag, name in (
        ("host", "host"),
        ("port", "port"),
        ("data_dir", "data_dir"),
        ("media_ports", "media_ports"),
    ):
        value = getattr(args, flag, None)
        if value is not None:
            overrides[name] = value
    for flag, name in (("redis_url", "redis_url"), ("model", "model_path")):
        value = getattr(args, flag, None)
        if value is not None:
            overrides[name] = value
    if getattr(args, "provider", None) is not None:
        overrides["inference_provider"] = args.provider
    if getattr(args, "tls_self_signed", False):
        overrides["tls_self_signed"] = True
    if getattr(args, "cert", None) is not None or getattr(args, "key", None) is not None:
        overrides["tls_cert"] = args.cert
        overrides["tls_key"] = args.key
    return settings.with_overrides(**overrides) if overrides else settings


def _ssl_context(settings: Settings) -> ssl.SSLContext | None:
    from server.tls import local_names, self_signed_certificate, ssl_context

    if settings.tls_cert is not None and settings.tls_key is not None:
        return ssl_context(settings.tls_cert, settings.tls_key)
    if settings.tls_self_signed:
        hosts = ["localhost", "127.0.0.1", settings.host, *local_names()]
        cert, key = self_signed_certificate(settings.data_dir, hosts)
        return ssl_context(cert, key)
    return None


async def _serve(settings: Settings, demo: bool, worker: int | None = None) -> None:
    from server.app import create_app
    from server.demo import seed_demo

    app = await create_app(settings, worker=worker or 0)
    runner = web.AppRunner(
        app, shutdown_timeout=settings.shutdown_timeout_s, access_log_class=MaskingAccessLogger
    )
    await runner.setup()
    site = web.TCPSite(
        runner,
        settings.host,
        settings.port,
        ssl_context=_ssl_context(settings),
        # The workers of --workers N share the port; the kernel spreads the connections.
        reuse_port=worker is not None,
    )
    await site.start()
    if worker is None:
        logger.info("listening on %s", settings.base_url)
    else:
        logger.info("worker %d listening on %s", worker, settings.base_url)
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


async def _prepare(settings: Settings) -> None:
    """Create what every worker would race to create: schema, secret and signing keys."""
    from server.app import open_state
    from server.wiring.storage import open_archive

    async with open_state(settings):
        pass
    archive = await open_archive(settings)
    await archive.aclose()


def _supervise(settings: Settings, args: argparse.Namespace) -> int:
    """``serve --workers N`` (N > 1): start and watch the workers (server/supervisor.py)."""
    from server.supervisor import (
        Supervisor,
        WorkerSpec,
        check_workers,
        media_port_slices,
        worker_argv,
    )

    count: int = args.workers
    check_workers(settings, count)
    _ssl_context(settings)  # the self-signed certificate, once
    asyncio.run(_prepare(settings))
    flags = ["--host", settings.host, "--port", str(settings.port)]
    flags += ["--data-dir", str(settings.data_dir)]
    if settings.tls_cert is not None and settings.tls_key is not None:
        flags += ["--cert", str(settings.tls_cert), "--key", str(settings.tls_key)]
    elif settings.tls_self_signed:
        flags.append("--tls-self-signed")
    specs = []
    for index, ports in enumerate(media_port_slices(settings.media_port_range, count)):
        extra = ["--media-ports", ports] if ports is not None else []
        if args.demo and index == 0:
            extra.append("--demo")
        specs.append(WorkerSpec(index, worker_argv(index, [*flags, *extra])))
    logger.info("starting %d workers on %s", count, settings.base_url)
    supervisor = Supervisor(specs, stop_timeout_s=settings.shutdown_timeout_s + 5.0)
    return asyncio.run(supervisor.run())


async def _worker(settings: Settings, stale_s: float) -> None:
    from redis import asyncio as aioredis

    from inference import BatcherMetrics, Grader, InferenceWorker, RemoteKeys
    from server.metrics import Metrics
    from server.wiring.grading import DEFAULT_MODEL

    if not settings.redis_url:
        raise SettingsError(
            "INSPECT_REDIS_URL", "a worker needs Redis: --redis-url or the variable"
        )
    loop = asyncio.get_running_loop()
    grader = await loop.run_in_executor(
        None,
        lambda: Grader.load(
            settings.model_path or DEFAULT_MODEL,
            providers=settings.inference_provider,
            intra_op_threads=settings.inference_threads,
        ),
    )
    logger.info("worker model %s on %s", grader.info.version, grader.provider)
    client = aioredis.from_url(settings.redis_url)
    worker = InferenceWorker(
        client,
        grader,
        keys=RemoteKeys(settings.redis_prefix),
        max_batch=settings.batch_max,
        max_delay_ms=settings.batch_delay_ms,
        stale_s=stale_s,
        metrics=BatcherMetrics(Metrics().registry),
    )
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, worker.stop)
    try:
        await worker.run()
    finally:
        await worker.aclose()
        await client.aclose()
        logger.info("worker stopped: %s", worker.stats)


async def _add_user(settings: Settings, args: argparse.Namespace) -> None:
    import getpass

    from server.app import open_state

    password = args.password or getpass.getpass(f"password for {args.username}: ")
    async with open_state(settings) as state:
        user = await state.accounts.create_user(
            args.username, password, name=args.name or args.username, role=args.role
        )
    print(f"created {user.role} {user.username}")


async def _add_token(settings: Settings, args: argparse.Namespace) -> None:
    from server.app import open_state

    async with open_state(settings) as state:
        token, _token_id = await state.accounts.create_api_token(args.name, role=args.role)
    print(token)


async def _disable_user(settings: Settings, args: argparse.Namespace) -> int:
    from server.app import open_state
    from server.errors import DomainError

    async with open_state(settings) as state:
        user = await state.accounts.find_user(args.username)
        if user is None:
            print(f"inspectd: no user {args.username!r}", file=sys.stderr)
            return 1
        try:
            user = await state.accounts.update_user(user.id, disabled=not args.enable)
        except DomainError as exc:
            print(f"inspectd: {exc.message}", file=sys.stderr)
            return 1
    print(f"{'disabled' if user.disabled else 'enabled'} {user.username}")
    return 0


async def _migrate(settings: Settings) -> None:
    from server.wiring.migrate import migrate

    print(await migrate(settings))


async def _migrate_data(args: argparse.Namespace) -> int:
    from server.wiring.migrate import MigrationError, migrate_data

    try:
        copied = await migrate_data(args.source, args.target, schema=args.schema)
    except MigrationError as exc:
        print(f"inspectd: migrate-data: {exc}", file=sys.stderr)
        return 1
    print(copied.describe())
    return 0


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
            if args.worker is None and args.workers > 1:
                return _supervise(settings, args)
            asyncio.run(_serve(settings, args.demo, args.worker))
        elif args.command == "add-user":
            asyncio.run(_add_user(settings, args))
        elif args.command == "add-token":
            asyncio.run(_add_token(settings, args))
        elif args.command == "disable-user":
            return asyncio.run(_disable_user(settings, args))
        elif args.command == "worker":
            asyncio.run(_worker(settings, args.stale_s))
        elif args.command == "migrate":
            asyncio.run(_migrate(settings))
        elif args.command == "migrate-data":
            return asyncio.run(_migrate_data(args))
    except KeyboardInterrupt:
        return 130
    except SettingsError as exc:
        print(f"inspectd: invalid setting {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"inspectd: {exc}", file=sys.stderr)
        return 1
    except SchemaTooNew as exc:
        print(f"inspectd: refusing to start: {exc}", file=sys.stderr)
        return 2
    except CredentialsError as exc:
        # INSPECT_C2PA_CERT and INSPECT_C2PA_KEY that do not make a signer.
        print(f"inspectd: content credentials: {exc}", file=sys.stderr)
        return 2
    except InferenceError as exc:
        # A model that breaks the contract, or an unavailable provider: refuse to start.
        print(f"inspectd: grading model: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

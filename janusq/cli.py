"""`janusq`: run (all-in-one local service), serve (API), worker, migrate."""
from __future__ import annotations

import argparse
import logging
import os
import sys

from jobs.settings import QUEUES, Settings, SettingsError, load_settings


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = load_settings(**_overrides(args))
    except SettingsError as exc:
        print(f"janusq: {exc}", file=sys.stderr)
        return 2
    return args.handler(settings, args) or 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="janusq", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="API + one worker on embedded defaults (SQLite, local files)")
    run.set_defaults(handler=_run)
    serve = commands.add_parser("serve", help="the HTTP API under gunicorn")
    serve.set_defaults(handler=_serve)
    worker = commands.add_parser("worker", help="a GPU worker (one per GPU)")
    worker.add_argument("--queues", default=",".join(QUEUES), help="comma-separated: generate,understand")
    worker.add_argument("--device", help="auto, cpu, cuda or cuda:N (overrides JANUS_DEVICE)")
    worker.set_defaults(handler=_worker)
    migrate = commands.add_parser("migrate", help="apply database migrations")
    migrate.set_defaults(handler=_migrate)
    return parser


def _overrides(args) -> dict:
    return {"device": args.device} if getattr(args, "device", None) else {}


def _migrate(settings: Settings, _args) -> int:
    from jobs.migrate import upgrade

    upgrade(settings.database)
    logging.getLogger("janusq").info("database at head")
    return 0


def _serve(settings: Settings, _args) -> int:
    from janusq.processes import gunicorn_argv

    prepare_model(settings)  # the API reads the checkpoint's tokenizer to check prompt lengths
    os.execvp(sys.executable, gunicorn_argv(settings))


def _worker(settings: Settings, args) -> int:
    queues = [name.strip() for name in args.queues.split(",") if name.strip()]
    unknown = sorted(set(queues) - set(QUEUES))
    if unknown or not queues:
        print(f"janusq: invalid --queues: {args.queues!r} (choose from {', '.join(QUEUES)})", file=sys.stderr)
        return 2
    prepare_model(settings)
    from worker.celery_app import create_worker_app

    app = create_worker_app(settings)
    app.worker_main(["worker", "--loglevel=INFO", "--pool=prefork", "--concurrency=1",
                     f"--queues={','.join(queues)}", f"--hostname=janus-{os.getpid()}@%h",
                     "--without-gossip", "--without-mingle"])
    return 0


def prepare_model(settings: Settings) -> None:
    """The tiny checkpoint is built on first use (offline, deterministic)."""
    if settings.is_tiny_model:
        from janus_model import ensure_tiny_checkpoint

        ensure_tiny_checkpoint(settings.model_source)


def _run(settings: Settings, _args) -> int:
    from janusq.processes import run_all_in_one

    _migrate(settings, None)
    prepare_model(settings)
    return run_all_in_one(settings)

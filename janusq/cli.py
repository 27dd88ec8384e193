"""`janusq`: run (all-in-one local service), serve (API), worker, workers (who is there), sweeper,
migrate, keys (API keys), webhooks (a tenant's signing secret), bench, convert (DeepSeek's
original checkpoints to transformers' format); and submit and jobs, the client of a running service."""
from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import TYPE_CHECKING

from janusq.client import cli as client_cli

if TYPE_CHECKING:
    from jobs.settings import Settings
# The server's modules are imported where used, after the client commands are handed over: those
# run on a laptop with the client alone, and start in half the time without pydantic-settings.


BENCH_MODES = ("--queue", "--api", "--fleet")
LOCAL_TENANT = "local"  # jobs.models.LOCAL_OWNER, without importing SQLAlchemy for every command


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] and argv[0] in client_cli.COMMANDS:  # a client of a running service: no server settings
        return client_cli.main(argv)
    from jobs.settings import SettingsError, load_settings

    if argv[:1] == ["bench"] and not set(BENCH_MODES) & set(argv):
        if {"-h", "--help"} & set(argv):
            print(_parser().bench_parser.format_help())  # the other modes, then the model bench's own options
            print("Without --queue, --api or --fleet, `janusq bench` is the model benchmark:\n")
        return _bench_model(argv[1:])
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)  # a line per plugin, every start
    # Progress bars of weight loading and saving go to the logs as WARNING lines: not wanted there.
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    try:
        settings = load_settings(**_overrides(args))
    except SettingsError as exc:
        print(f"janusq: {exc}", file=sys.stderr)
        return 2
    try:
        return args.handler(settings, args) or 0
    except _user_errors() as exc:
        print(f"janusq: {_first_line(exc, settings)}", file=sys.stderr)
        return 1


def _user_errors() -> tuple[type[Exception], ...]:
    """Errors that are the user's to fix (a bad name, an unknown key, no database): one line."""
    from sqlalchemy.exc import OperationalError, ProgrammingError

    from janus_model.convert.formats import CheckpointFormatError
    from jobs.keys import ApiKeyError

    # CheckpointFormatError: JANUS_MODEL names an original-format folder that cannot be converted.
    return ApiKeyError, OperationalError, ProgrammingError, CheckpointFormatError


def _first_line(exc: Exception, settings: Settings) -> str:
    from sqlalchemy.exc import DBAPIError

    from jobs.oneline import first_line

    if isinstance(exc, DBAPIError):
        reason = first_line(exc.orig)
        if _missing_table(exc):
            return f"database {settings.database_label} has no jobs tables (has `janusq migrate` been run?): {reason}"
        return f"cannot use the database {settings.database_label} (JANUS_DATABASE_URL): {reason}"
    return first_line(exc)


def _missing_table(exc) -> bool:
    """PostgreSQL's undefined table, or SQLite's "no such table": the schema was never migrated."""
    code = getattr(exc.orig, "sqlstate", None)
    return code == "42P01" or "no such table" in str(exc.orig)


def _parser() -> argparse.ArgumentParser:
    from jobs.settings import QUEUES

    parser = argparse.ArgumentParser(prog="janusq", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="API + one worker on embedded defaults (SQLite, local files)")
    run.set_defaults(handler=_run)
    serve = commands.add_parser("serve", help="the HTTP API under gunicorn")
    serve.set_defaults(handler=_serve)
    worker = commands.add_parser("worker", help="a worker; with --gpus one per GPU, supervised")
    worker.add_argument("--queues", default=",".join(QUEUES), help="comma-separated: generate,understand")
    worker.add_argument("--device", help="auto, cpu, cuda or cuda:N (overrides JANUS_DEVICE)")
    several = worker.add_mutually_exclusive_group()
    several.add_argument("--gpus", help="all, a count, or indices like 0,2,5: one worker process per GPU, "
                                        "each pinned to its GPU, restarted if it dies")
    several.add_argument("--replicas", type=int, help="N supervised workers on this machine's device "
                                                      "(the CPU, or a simulated model)")
    worker.add_argument("--name", help="this worker's name (its Celery node is NAME@host)")
    worker.set_defaults(handler=_worker)
    workers = commands.add_parser("workers", help="the workers: status, device, queues, current batch")
    workers.add_argument("--json", action="store_true", help="a JSON array, as GET /v1/workers gives it")
    workers.set_defaults(handler=_workers)
    sweeper = commands.add_parser("sweeper", help="the sweeper alone: republishes lost messages and takes "
                                                  "back expired leases (every worker runs one too)")
    sweeper.set_defaults(handler=_sweeper)
    migrate = commands.add_parser("migrate", help="apply database migrations")
    migrate.set_defaults(handler=_migrate)
    _add_keys_commands(commands)
    _add_webhooks_commands(commands)
    parser.bench_parser = _add_bench_command(commands)  # `janusq bench --help` prints it too
    _add_convert_command(commands)
    client_cli.add_commands(commands)  # listed in the help; main() hands them over before this parser
    return parser


def _add_convert_command(commands) -> None:
    convert = commands.add_parser("convert", help="convert DeepSeek's original-format Janus-1.3B / Janus-Pro "
                                                  "checkpoint folder SRC into a transformers-format folder DST")
    convert.add_argument("src", metavar="SRC", help="the downloaded original checkpoint (model_type multi_modality)")
    convert.add_argument("dst", metavar="DST", help="a new folder for the converted checkpoint (JANUS_MODEL=DST)")
    convert.add_argument("--family", choices=("janus", "janus-pro"),
                         help="conversation format: janus (1.3B: User/Assistant) or janus-pro (<|User|>/<|Assistant|>);"
                              " by default read from SRC's path or model card")
    convert.add_argument("--shard-gb", type=float, default=2.0, help="largest safetensors file written (GB)")
    convert.set_defaults(handler=_convert)


def _convert(_settings: Settings, args) -> int:
    from janus_model.convert import CheckpointFormatError, convert_checkpoint
    from jobs.oneline import first_line

    try:
        done = convert_checkpoint(args.src, args.dst, family=args.family, max_shard_bytes=int(args.shard_gb * 1e9))
    except CheckpointFormatError as exc:
        print(f"janusq: {first_line(exc)}", file=sys.stderr)
        return 2
    logging.getLogger("janusq").info("converted %s (%s, %d tensors) into %s: serve it with JANUS_MODEL=%s",
                                     done.source, done.family, done.tensors, done.target, done.target)
    return 0


def _add_keys_commands(commands) -> None:
    keys = commands.add_parser("keys", help="API keys: create, list, revoke")
    actions = keys.add_subparsers(dest="keys_command", required=True)
    create = actions.add_parser("create", help="create a key and print it (shown only this once)")
    create.add_argument("--name", required=True, help="what the key is for, e.g. ci or alice-laptop")
    create.add_argument("--tenant", help="whose jobs it sees and makes (default: the name, a tenant of its own)")
    create.add_argument("--admin", action="store_true",
                        help="an operator's key: it may also list the workers (GET /v1/workers)")
    create.set_defaults(handler=_keys_create)
    listing = actions.add_parser("list", help="every key, without secrets")
    listing.set_defaults(handler=_keys_list)
    revoke = actions.add_parser("revoke", help="revoke a key at once")
    revoke.add_argument("key", metavar="ID_OR_PREFIX", help="the key's id or its prefix (jq_...)")
    revoke.set_defaults(handler=_keys_revoke)


def _add_webhooks_commands(commands) -> None:
    webhooks = commands.add_parser("webhooks", help="webhooks: a tenant's signing secret")
    actions = webhooks.add_subparsers(dest="webhooks_command", required=True)
    secret = actions.add_parser("secret", help="print the tenant's webhook signing secret (whsec_...) alone on "
                                               "one line, creating it if it has none")
    secret.add_argument("--tenant", default=LOCAL_TENANT,
                        help=f"whose secret (default {LOCAL_TENANT}: the tenant of every job when auth is off)")
    secret.add_argument("--rotate", action="store_true",
                        help="replace it with a new one: deliveries are signed with the new one from now on")
    secret.set_defaults(handler=_webhooks_secret)


def _webhooks_secret(settings: Settings, args) -> int:
    from jobs.webhooks import signing

    with _keys_session(settings) as session:
        made = signing.rotate_secret if args.rotate else signing.tenant_secret
        secret = made(session, args.tenant)
    print(secret)  # alone on stdout: SECRET=$(janusq webhooks secret --tenant acme)
    return 0


def _add_bench_command(commands) -> argparse.ArgumentParser:
    from janusq import bench_api, bench_fleet, bench_queue

    bench = commands.add_parser("bench", help="model benchmark (stock vs engine; see `janusq bench --help`); "
                                              "--queue: dispatch latency and gaps per broker; "
                                              "--api: submit and poll throughput against bare Flask; "
                                              "--fleet: a simulated fleet of W workers",
                                description="Benchmarks. --queue, --api and --fleet pick one; without "
                                            "them, the model benchmark (its options are listed below).")
    which = bench.add_mutually_exclusive_group()
    which.add_argument("--queue", action="store_true",
                       help="start a worker per broker (embedded, Redis) and time what the queue adds to a job")
    which.add_argument("--api", action="store_true",
                       help="start the API (PostgreSQL, Redis) and a bare Flask app under the same gunicorn "
                            "settings; submit and poll throughput and latency per client count")
    bench_queue.add_arguments(bench.add_argument_group("--queue options"))
    bench_api.add_arguments(bench.add_argument_group("--api options"))
    which.add_argument("--fleet", action="store_true",
                       help="W simulated workers behind the API, PostgreSQL, Redis and S3: a Poisson stream of "
                            "mixed jobs, one JSON line per fleet size (scaling, latency, database, lost/duplicated)")
    bench_fleet.add_arguments(bench.add_argument_group("--fleet options"))
    bench.set_defaults(handler=_bench)
    return bench


def _bench(settings: Settings, args) -> int:
    if args.api:
        from janusq import bench_api

        return bench_api.main(settings, args)
    if args.fleet:
        from janusq import bench_fleet

        return bench_fleet.main(args)
    if args.queue:
        from janusq import bench_queue

        return bench_queue.main(settings, args)
    return _bench_model([])


def _bench_model(argv: list[str]) -> int:
    """`janusq bench [options]`: the model benchmark (janus_model/bench.py; --help lists options).

    Its options are its own (it also runs alone on a bare GPU machine), so they are passed
    through untouched; the tiny checkpoint defaults to the one JANUS_DATA_DIR holds.
    """
    from janus_model.bench import main as bench_main
    from jobs.settings import load_settings

    if not any(arg.startswith("--checkpoint") for arg in argv) and not {"-h", "--help"} & set(argv):
        settings = load_settings(model="tiny")
        prepare_model(settings)
        argv = ["--checkpoint", settings.model_source, *argv]
    return bench_main(argv)


def _overrides(args) -> dict:
    return {"device": args.device} if getattr(args, "device", None) else {}


def _sweeper(settings: Settings, _args) -> int:
    """For deployments whose workers are not up yet (scaled to zero, still loading): queued jobs
    whose message was lost are published again meanwhile. The database lock keeps one sweeping."""
    import signal
    import threading

    from worker.celery_app import delivery_loop, sweeper_loop

    check_database(settings)
    loop, deliveries = sweeper_loop(settings), delivery_loop(settings)
    stop = threading.Event()
    for number in (signal.SIGTERM, signal.SIGINT):
        signal.signal(number, lambda *_: stop.set())
    loop.start()
    deliveries.start()  # webhooks too: with the workers scaled to zero, finished jobs' deliveries still go
    logging.getLogger("janusq").info("sweeper %s: every %.1f s (one sweeper at a time holds the lock)",
                                     loop.name, settings.sweep_interval)
    while not stop.wait(1.0):
        pass
    loop.stop()
    deliveries.stop()
    return 0


def _migrate(settings: Settings, _args) -> int:
    from jobs.migrate import upgrade

    upgrade(settings.database)
    logging.getLogger("janusq").info("database at head")
    return 0


def _serve(settings: Settings, _args) -> int:
    from janusq.processes import gunicorn_argv

    log_auth_mode(settings)
    prepare_model(settings)  # the API reads the checkpoint's tokenizer to check prompt lengths
    os.execvp(sys.executable, gunicorn_argv(settings))


def _worker(settings: Settings, args) -> int:
    from jobs.settings import QUEUES, redact_url

    queues = [name.strip() for name in args.queues.split(",") if name.strip()]
    unknown = sorted(set(queues) - set(QUEUES))
    if unknown or not queues:
        print(f"janusq: invalid --queues: {args.queues!r} (choose from {', '.join(QUEUES)})", file=sys.stderr)
        return 2
    if args.gpus or args.replicas is not None:
        return _supervise(settings, args, ",".join(queues))
    check_database(settings)  # unreachable or unmigrated: one line and exit 1, never "ready"
    prepare_model(settings, convert=True)
    from worker.celery_app import create_worker_app

    app = create_worker_app(settings)
    logging.getLogger("janusq").info("worker: queues %s, model %s on %s, broker %s, database %s",
                                     ",".join(queues), settings.model, settings.device,
                                     redact_url(settings.broker), settings.database_label)
    # --quiet: that line instead of Celery's 25-line banner.
    app.worker_main(["--quiet", "worker", "--loglevel=INFO", "--pool=prefork", "--concurrency=1",
                     f"--queues={','.join(queues)}", f"--hostname={args.name or f'janus-{os.getpid()}'}@%h",
                     "--without-gossip", "--without-mingle"])
    # Celery does not hand back its exit code: a worker whose model would not load must still
    # exit non-zero, so that a supervisor or orchestrator acts on it.
    from worker.model_gate import MODEL_FAILED_EXIT

    return MODEL_FAILED_EXIT if app.janus_gate.failed.is_set() else 0


def _supervise(settings: Settings, args, queues: str) -> int:
    from janusq.supervisor import Supervisor, SupervisorError, gpu_children, replica_children

    try:
        children = gpu_children(args.gpus, queues) if args.gpus else replica_children(args.replicas, queues)
    except SupervisorError as exc:
        print(f"janusq: {exc}", file=sys.stderr)
        return 2  # a bad --gpus is the first thing to say, before the database is asked
    check_database(settings)
    prepare_model(settings, convert=True)  # once here, not in every child at the same time
    return Supervisor(children).run()


def prepare_model(settings: Settings, convert: bool = False) -> None:
    """The tiny checkpoint is built on first use (offline, deterministic); with `convert` (workers),
    an original-format JANUS_MODEL folder is converted once into the data dir."""
    if settings.is_tiny_model:
        from janus_model import ensure_tiny_checkpoint

        ensure_tiny_checkpoint(settings.model_source)
    elif convert:
        from worker.runtime import checkpoint_path

        # In a spawned process: this one forks workers later, and torch must not have run here.
        checkpoint_path(settings, fresh_process=True)


def check_database(settings: Settings) -> None:
    """Reaches the database and its jobs table now: main turns a failure into one line."""
    from sqlalchemy import select

    from jobs.db import Database
    from jobs.models import Job

    database = Database(settings.database, pooled=False)
    with database.session() as session:
        session.execute(select(Job.id).limit(1))
    database.dispose()


def log_auth_mode(settings: Settings) -> None:
    log = logging.getLogger("janusq")
    if settings.auth_enabled:
        log.info("auth is on (JANUS_AUTH=%s): /v1 requests need Authorization: Bearer <key>; "
                 "create one with `janusq keys create --name NAME`", settings.auth)
    else:
        log.warning("auth is OFF (JANUS_AUTH=%s) because the API listens on loopback %s only: "
                    "every local client is tenant 'local'; set JANUS_AUTH=on to require API keys",
                    settings.auth, settings.host)


def _keys_session(settings: Settings):
    from jobs.db import Database

    return Database(settings.database).session()


def _keys_create(settings: Settings, args) -> int:
    from jobs import keys

    with _keys_session(settings) as session:
        new = keys.create_key(session, args.name, args.tenant, admin=args.admin)
        record = new.record
    # The key alone on stdout (KEY=$(janusq keys create ...)); what it is on stderr.
    print(new.secret)
    kind = "admin API key" if record.admin else "API key"
    print(f"created {kind} {record.id} (prefix {record.prefix}, name {record.name}, tenant "
          f"{record.tenant}); it is shown only this once and only its hash is stored", file=sys.stderr)
    return 0


def _keys_list(settings: Settings, _args) -> int:
    from jobs import keys

    with _keys_session(settings) as session:
        records = keys.list_keys(session)
    print(f"{'ID':32}  {'PREFIX':11}  {'NAME':20}  {'TENANT':20}  {'ROLE':6}  {'CREATED':20}  STATUS")
    for record in records:
        status = f"revoked {_stamp(record.revoked_at)}" if record.revoked_at else "active"
        role = "admin" if record.admin else "tenant"
        print(f"{record.id:32}  {record.prefix:11}  {record.name:20}  {record.tenant:20}  {role:6}  "
              f"{_stamp(record.created_at):20}  {status}")
    return 0


def _keys_revoke(settings: Settings, args) -> int:
    from jobs import keys

    with _keys_session(settings) as session:
        record, revoked = keys.revoke_key(session, args.key)
    state = "revoked" if revoked else "was already revoked"
    print(f"API key {record.id} (prefix {record.prefix}, name {record.name}) {state}")
    return 0


def _workers(settings: Settings, args) -> int:
    import json

    from jobs import workers
    from jobs.db import Database
    from jobs.models import utcnow

    with Database(settings.database).session() as session:
        rows = [workers.worker_to_dict(worker, utcnow()) for worker in workers.list_workers(session)]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'NAME':28}  {'STATUS':8}  {'DEVICE':16}  {'MODEL':16}  {'QUEUES':19}  {'PID':>7}  "
          f"{'STARTED':20}  {'SEEN':>7}  BATCH")
    for row in rows:
        print(f"{row['name']:28}  {row['status']:8}  {row['device']:16}  {row['model']:16}  "
              f"{','.join(row['queues']):19}  {row['pid']:>7}  {row['started_at'][:19] + 'Z':20}  "
              f"{row['seconds_since_seen']:>6.1f}s  {_batch_summary(row['batch'])}")
    return 0


def _batch_summary(batch: dict | None) -> str:
    if not batch:
        return "-"
    return f"{batch['id']} {batch['type']} x{batch['size']}: {' '.join(batch['jobs'])}"


def _stamp(value) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%SZ") if value else ""


def _run(settings: Settings, _args) -> int:
    from janusq.processes import run_all_in_one

    logging.getLogger("alembic").setLevel(logging.WARNING)  # `janusq migrate` lists the steps; run needs one line
    _migrate(settings, None)
    prepare_model(settings, convert=True)  # before its worker starts, which would otherwise convert
    return run_all_in_one(settings)

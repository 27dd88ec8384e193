"""One settings object, read from JANUS_* environment variables and validated at start."""
from __future__ import annotations

import difflib
import ipaddress
import logging
import os
from collections.abc import Mapping
from functools import cached_property
from pathlib import Path
from typing import Literal
from urllib.parse import urlparse, urlsplit, urlunsplit

from pydantic import Field, ValidationError, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

log = logging.getLogger(__name__)

TINY_MODEL = "tiny"
QUEUES = ("generate", "understand")
LOOPBACK_NAMES = ("localhost",)
DATABASE_SCHEMES = {"postgres": "postgresql+psycopg", "postgresql": "postgresql+psycopg",
                    "postgresql+psycopg": "postgresql+psycopg", "sqlite": "sqlite"}
# A guessable HMAC key would let anyone sign image URLs; 32 characters of `openssl rand -hex` are 128 bits.
MIN_SIGNING_KEY_CHARS = 32
DATABASE_EXAMPLES = "postgresql://user:password@host:5432/db or sqlite:////path/janus.db"
# JANUS_* variables that are not server settings: the client's (JANUS_URL, JANUS_API_KEY) and the
# test suite's (JANUS_TEST_*).
NOT_SETTINGS = frozenset({"JANUS_URL", "JANUS_API_KEY"})
NOT_SETTINGS_PREFIXES = ("JANUS_TEST_", "JANUS_BENCH_")  # read by tests and benchmarks, not the service


class SettingsError(ValueError):
    """A bad configuration value; the message is one line naming the variable."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="JANUS_", extra="ignore", frozen=True)

    data_dir: Path = Path("var")
    # Empty means "the embedded default under data_dir" (SQLite, kombu's SQLAlchemy
    # transport, a local folder), so `make run` needs no server.
    database_url: str = ""
    broker_url: str = ""
    storage_url: str = ""
    s3_endpoint_url: str | None = None
    # The address clients use for presigned URLs when it differs from the workers' (MinIO in compose).
    s3_public_url: str | None = None

    # Database connections (each counts against the server's max_connections; README, "Scaling
    # out"). An API process keeps up to db_pool_size open and opens up to db_max_overflow more
    # under load; a worker's pool process, which runs one batch at a time, the worker_ ones.
    # The worker's main process (heartbeats, sweeper) holds none between its periodic writes.
    db_pool_size: int | None = Field(default=None, ge=1, le=256)  # None: one per API thread
    db_max_overflow: int = Field(default=5, ge=0, le=100)
    worker_db_pool_size: int = Field(default=1, ge=1, le=100)
    worker_db_max_overflow: int = Field(default=1, ge=0, le=100)

    model: str = TINY_MODEL
    device: str = "auto"
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    api_workers: int = Field(default=2, ge=1, le=64)
    api_threads: int = Field(default=8, ge=1, le=256)
    # gunicorn's worker class. gthread: a thread per request in flight, so a request held open
    # (Prefer: wait) holds one of api_threads; gevent: a greenlet per request, so held requests
    # cost memory rather than threads (README, "Waiting without starving the API").
    api_worker_class: Literal["gthread", "gevent"] = "gthread"
    # gevent only: requests one API process serves at once (gunicorn's --worker-connections).
    api_connections: int = Field(default=1000, ge=10, le=100_000)
    # Requests one API process holds open waiting for a job; a wait beyond them is declined at
    # once (202, no Preference-Applied). None: half the threads (gthread) or of the connections
    # (gevent), so the other routes always keep the rest.
    max_waiting_requests: int | None = Field(default=None, ge=0, le=100_000)
    # Longest a client may ask POST /v1/jobs to wait for the result (Prefer: wait=N).
    max_wait_seconds: int = Field(default=60, ge=0, le=600)

    max_upload_bytes: int = Field(default=20 * 1024 * 1024, ge=1024)
    max_image_pixels: int = Field(default=4096 * 4096, ge=64 * 64)
    max_prompt_chars: int = Field(default=4000, ge=1)
    # Seconds a signed image URL stays valid (S3's presigned ones, and the API's own for local storage).
    url_ttl: int = Field(default=900, ge=1, le=7 * 24 * 3600)
    # The HMAC key of the API's signed image URLs. Empty: a random key generated once and kept in
    # the database, so every API process (on any machine) signs and verifies with the same one.
    url_signing_key: str = Field(default="", repr=False)
    # Retention: a finished job's stored files (images, uploaded input) are deleted this many
    # seconds after it finished, by the sweeper (0: kept until the job is deleted).
    result_ttl: int = Field(default=7 * 24 * 3600, ge=0)

    # soft < hard < broker visibility timeout, so a job that overruns is stopped by its
    # worker before the broker would hand the message to a second worker.
    job_soft_time_limit: int = Field(default=1500, ge=1)
    job_time_limit: int = Field(default=1800, ge=2)
    visibility_timeout: int = Field(default=3600, ge=3)
    progress_interval: float = Field(default=0.5, gt=0, le=60)

    # Job events (GET /v1/jobs/<id>/events, jobs/events.py): on Redis each job's events are a
    # stream capped at events_max_length entries (the oldest dropped first) that expires
    # events_ttl seconds after its last event; in the embedded database, rows older than
    # events_ttl are deleted by the sweeper. A stream with nothing to say sends a comment every
    # events_heartbeat seconds, so that proxies keep it open.
    events_ttl: int = Field(default=3600, ge=10, le=30 * 24 * 3600)
    events_max_length: int = Field(default=1000, ge=10, le=1_000_000)
    events_heartbeat: float = Field(default=15, gt=0, le=300)
    # Preview JPEGs per image of a generate job, published as `preview` events (0: none).
    previews: int = Field(default=8, ge=0, le=64)

    # API keys (`janusq keys`). auto: required unless the API listens on loopback only; off is
    # refused on any other address, so a reachable API never runs without keys.
    auth: Literal["on", "off", "auto"] = "auto"
    # Each API process remembers a key it has verified for this long, so a request costs no
    # database lookup for its key; a revoked key is refused by every process within this time
    # (0: look every request's key up, revocation at once).
    api_key_cache_seconds: float = Field(default=5, ge=0, le=300)
    # Requests per minute per API key (0: no limit); counted in Redis so that the limit holds
    # across API processes and machines.
    rate_limit_per_minute: int = Field(default=600, ge=0)
    # Where the counts live; empty: the broker when it is Redis, else each API process counts
    # on its own (the embedded `make run` mode, loopback only).
    rate_limit_redis_url: str = ""
    # Queued + running jobs one tenant may have at once (0: no limit).
    max_unfinished_jobs: int = Field(default=1000, ge=0)

    # Cross-job batching in the worker: queued jobs of one type are claimed together up to these
    # caps (images of generate jobs, count of understand jobs); a larger job still runs alone.
    max_batch_images: int = Field(default=32, ge=1)
    max_batch_answers: int = Field(default=8, ge=1)

    # Delivery. A running job's worker renews its lease every lease_seconds/3; the sweeper (one
    # at a time, in a worker) requeues a job whose lease expired, and publishes again a queued
    # job not claimed requeue_after seconds after its last publish. A job gets max_attempts
    # runs; a transient failure (storage, database, out of memory) waits retry_backoff seconds,
    # doubled each attempt, before the next.
    lease_seconds: float = Field(default=60, gt=0)
    requeue_after: float = Field(default=30, gt=0)
    sweep_interval: float = Field(default=5, gt=0)
    max_attempts: int = Field(default=3, ge=1, le=100)
    retry_backoff: float = Field(default=5, ge=0)
    # Each worker updates its row in the `workers` table this often (one UPDATE a beat); one
    # silent for three beats shows as gone (jobs/workers.py).
    heartbeat_seconds: float = Field(default=5, gt=0, le=300)

    # Webhooks (jobs/webhooks/). A webhook whose host resolves to a private, loopback or
    # link-local address is refused (at create and again at each delivery) unless allowed here.
    # A receiver must answer within webhook_timeout seconds; a failed delivery is tried again
    # after webhook_retry_backoff seconds, doubled each attempt (at most an hour apart), until
    # webhook_retry_seconds after the event. webhook_concurrency: deliveries in flight at once.
    webhook_allow_private: bool = False
    webhook_timeout: float = Field(default=10, gt=0, le=120)
    webhook_retry_backoff: float = Field(default=5, gt=0, le=3600)
    webhook_retry_seconds: float = Field(default=24 * 3600, ge=0, le=30 * 24 * 3600)
    webhook_concurrency: int = Field(default=8, ge=1, le=256)

    # The decode engine. CUDA graphs: the decode step is captured per batch-size bucket and
    # attention window, and replayed (CUDA devices only). compile: torch.compile the decoder's
    # elementwise kernels at worker start; unset means on CUDA, off on a CPU. The compiled
    # kernels are cached under data_dir/torchinductor, so a restarted worker reuses them.
    cuda_graphs: bool = True
    compile: bool | None = None
    # Batches are planned against this share of the device's memory (host RAM on a CPU), less
    # the weights; a job that does not fit is split into chunks. batch_memory_mb, when set,
    # replaces the measurement with a fixed budget.
    gpu_memory_fraction: float = Field(default=0.9, gt=0, le=1)
    batch_memory_mb: int = Field(default=0, ge=0)

    @field_validator("device")
    @classmethod
    def _check_device(cls, value: str) -> str:
        ok = value in ("auto", "cpu", "cuda") or (
            value.startswith("cuda:") and value[5:].isdigit()
        )
        if not ok:
            raise ValueError("must be auto, cpu, cuda or cuda:N")
        return value

    @field_validator("model")
    @classmethod
    def _check_model(cls, value: str) -> str:
        from janus_model.simulated import is_simulated, parse_spec  # torch-free

        if is_simulated(value):
            parse_spec(value)  # an unknown profile or option is refused at start, in one line
        return value

    @field_validator("database_url")
    @classmethod
    def _check_database(cls, value: str) -> str:
        return normalize_database_url(value) if value else value

    @field_validator("storage_url")
    @classmethod
    def _check_storage(cls, value: str) -> str:
        if value and urlparse(value).scheme not in ("file", "s3"):
            raise ValueError("must be file:///path or s3://bucket/prefix")
        if value.startswith("s3://") and not urlparse(value).netloc:
            raise ValueError("s3 URL needs a bucket: s3://bucket/prefix")
        if value.startswith("file:") and not value.startswith("file:///"):
            raise ValueError("a folder must be given as file:///absolute/path")
        return value

    @field_validator("url_signing_key")
    @classmethod
    def _check_signing_key(cls, value: str) -> str:
        if value and len(value) < MIN_SIGNING_KEY_CHARS:
            raise ValueError(f"must be at least {MIN_SIGNING_KEY_CHARS} characters (e.g. `openssl rand -hex 32`), "
                             "or unset to keep a generated one in the database")
        return value

    @field_validator("rate_limit_redis_url")
    @classmethod
    def _check_rate_limit_redis(cls, value: str) -> str:
        if value and urlparse(value).scheme not in ("redis", "rediss", "unix"):
            raise ValueError("must be a redis://, rediss:// or unix:// URL")
        return value

    @field_validator("auth")
    @classmethod
    def _check_auth(cls, value: str, info: ValidationInfo) -> str:
        host = info.data.get("host")
        if value == "off" and host is not None and not is_loopback(host):
            raise ValueError(f"off is refused when the API listens on {host!r}, beyond loopback; "
                             "use on (or auto) and create keys with `janusq keys create`")
        return value

    @model_validator(mode="after")
    def _check_time_limits(self) -> "Settings":
        if not self.job_soft_time_limit < self.job_time_limit < self.visibility_timeout:
            raise ValueError(
                "JANUS_JOB_SOFT_TIME_LIMIT < JANUS_JOB_TIME_LIMIT < JANUS_VISIBILITY_TIMEOUT must hold"
            )
        return self

    @cached_property
    def data_path(self) -> Path:
        return self.data_dir.resolve()

    @property
    def database(self) -> str:
        return self.database_url or f"sqlite:///{self.data_path / 'janus.db'}"

    @property
    def api_db_pool_size(self) -> int:
        """Connections an API process keeps open: one per gunicorn thread unless set."""
        return self.db_pool_size or self.api_threads

    @property
    def waiting_capacity(self) -> int:
        """Requests an API process may hold open waiting (api/waits.py)."""
        if self.max_waiting_requests is not None:
            return self.max_waiting_requests
        return max(1, (self.api_threads if self.api_worker_class == "gthread" else self.api_connections) // 2)

    @property
    def database_label(self) -> str:
        """The database URL without its password, for messages and logs."""
        return redact_url(self.database)

    @property
    def broker(self) -> str:
        return self.broker_url or f"sqla+sqlite:///{self.data_path / 'broker.db'}"

    @property
    def storage(self) -> str:
        return self.storage_url or f"file://{self.data_path / 'storage'}"

    @property
    def model_source(self) -> str:
        """What janus_model loads: a folder or a hub id; `tiny` lives under data_dir."""
        if self.model == TINY_MODEL:
            return str(self.data_path / "models" / "janus-tiny")
        return self.model

    @property
    def is_tiny_model(self) -> bool:
        return self.model == TINY_MODEL

    @property
    def is_simulated_model(self) -> bool:
        """`simulated:<profile>`: a model that sleeps instead of computing (janus_model/simulated.py)."""
        from janus_model.simulated import is_simulated  # torch-free

        return is_simulated(self.model)

    @property
    def auth_enabled(self) -> bool:
        """Whether requests to /v1 need an API key."""
        return self.auth == "on" or (self.auth == "auto" and not is_loopback(self.host))

    @property
    def events_redis(self) -> str | None:
        """The Redis that carries job events (the broker's); None: the database's job_events table."""
        return self.broker if urlparse(self.broker).scheme in ("redis", "rediss") else None

    @property
    def rate_limit_redis(self) -> str | None:
        """The Redis that holds rate-limit counts; None: count in each process."""
        if self.rate_limit_redis_url:
            return self.rate_limit_redis_url
        return self.broker if urlparse(self.broker).scheme in ("redis", "rediss") else None


def normalize_database_url(url: str) -> str:
    """`postgres://` and `postgresql://` (what most hosts hand out) mean PostgreSQL through psycopg,
    the driver this project installs; the migrations are tested on PostgreSQL and SQLite only."""
    scheme, separator, rest = url.partition("://")
    if not separator:
        raise ValueError(f"must be a URL such as {DATABASE_EXAMPLES}")
    scheme = DATABASE_SCHEMES.get(scheme.lower())
    if scheme is None:
        raise ValueError(f"unsupported database {url.partition('://')[0]}://; use {DATABASE_EXAMPLES}")
    return f"{scheme}://{rest}"


def redact_url(url: str) -> str:
    """The URL without its password, for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def unknown_variables(environ: Mapping[str, str]) -> list[str]:
    """JANUS_* variables that no setting reads (a typo), each with the closest setting's name."""
    known = {f"JANUS_{name.upper()}" for name in Settings.model_fields} | NOT_SETTINGS
    lines = []
    for name in sorted(key for key in environ if key.upper().startswith("JANUS_")):
        if name.upper() in known or name.upper().startswith(NOT_SETTINGS_PREFIXES):
            continue
        close = difflib.get_close_matches(name.upper(), sorted(known), n=1, cutoff=0.8)
        lines.append(f"{name} is not a setting" + (f" (did you mean {close[0]}?)" if close else ""))
    return lines


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 and localhost; 0.0.0.0 and any other address are reachable from outside."""
    host = host.strip().strip("[]").lower()
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def load_settings(**overrides) -> Settings:
    """Read the environment (plus overrides); a bad value raises SettingsError in one line, and
    an unknown JANUS_* variable (a typo that would otherwise be silently ignored) is a warning."""
    for line in unknown_variables(os.environ):
        log.warning("%s", line)
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise SettingsError(_one_line(exc)) from None


def _one_line(exc: ValidationError) -> str:
    error = exc.errors()[0]
    field = ".".join(str(part) for part in error["loc"])
    name = f"JANUS_{field.upper()}" if field else "JANUS_* settings"
    message = error["msg"].removeprefix("Value error, ")  # pydantic's prefix says nothing to a user
    return f"invalid {name}: {message}"

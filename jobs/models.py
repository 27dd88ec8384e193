"""Database models. The schema itself is owned by Alembic (migrations/)."""
from __future__ import annotations

import uuid
from datetime import datetime, timezone

from sqlalchemy import JSON, Boolean, DateTime, Float, Index, Integer, SmallInteger, String, Text, false, text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

LOCAL_OWNER = "local"


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def new_job_id() -> str:
    return uuid.uuid4().hex


class UTCDateTime(TypeDecorator):
    """Timezone-aware UTC datetimes on every backend (SQLite drops the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetime given; use utcnow()")
        return value.astimezone(timezone.utc) if value is not None else None

    def process_result_value(self, value, dialect):
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value


class Base(DeclarativeBase):
    pass


class Job(Base):
    __tablename__ = "jobs"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_job_id)
    # Tenant that owns the job: its API key's tenant, or "local" when auth is off.
    owner: Mapped[str] = mapped_column(String(64), default=LOCAL_OWNER)
    type: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))
    params: Mapped[dict] = mapped_column(JSON)
    input_key: Mapped[str | None] = mapped_column(String(255))
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    worker: Mapped[str | None] = mapped_column(String(255))
    result: Mapped[dict | None] = mapped_column(JSON)
    error_code: Mapped[str | None] = mapped_column(String(64))
    error_message: Mapped[str | None] = mapped_column(Text)
    # Measured by the worker's own clock, so /metrics can aggregate them in SQL on any backend.
    run_seconds: Mapped[float | None] = mapped_column(Float)
    step_seconds: Mapped[float | None] = mapped_column(Float)
    # Idempotent create: the same key (per owner) returns this job instead of a new one,
    # provided the request is the same (request_hash), else the API answers 409.
    idempotency_key: Mapped[str | None] = mapped_column(String(255))
    request_hash: Mapped[str | None] = mapped_column(String(64))
    # POST /v1/jobs/<id>/retry: the job this one retries, and whether the seed was chosen by the
    # service (a retry then gets a new one) rather than given by the client (a retry keeps it).
    retry_of: Mapped[str | None] = mapped_column(String(32))
    random_seed: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # Lifecycle (migration 0008): a deadline (queued past it: expired; running: canceled), the
    # claim priority (0 low, 1 normal, 2 high), and when retention deleted the stored files.
    deadline_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    priority: Mapped[int] = mapped_column(SmallInteger, default=1, server_default="1")
    result_expired_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Webhooks (migration 0010, jobs/webhooks/): where to POST the job's events, which events
    # (start, progress, completed), and the API address it was created through, for the absolute
    # links in a delivery's body (a worker sending it knows no request).
    webhook: Mapped[str | None] = mapped_column(Text)
    webhook_events: Mapped[list | None] = mapped_column(JSON)
    webhook_root: Mapped[str | None] = mapped_column(Text)
    # Delivery (jobs/states.py, jobs/sweeper.py): a running job's worker renews its lease; a
    # queued job may be claimed from available_at (retry backoff) and was last handed to the
    # broker at published_at (the sweeper publishes again when that gets old).
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    available_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    published_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (
        Index("ix_jobs_owner_created", "owner", "created_at", "id"),
        Index("ix_jobs_status_type", "status", "type"),
        Index("ux_jobs_owner_idempotency_key", "owner", "idempotency_key", unique=True),
        # The per-tenant cap counts a tenant's unfinished jobs on every create (jobs/limits.py):
        # an index range over those alone, however many finished jobs the tenant has.
        Index("ix_jobs_owner_status", "owner", "status"),
        # Fair share (worker/claims.py) asks when each tenant with queued jobs last had one
        # started: one index probe per tenant instead of a scan of its finished jobs.
        Index("ix_jobs_owner_started", "owner", "started_at"),
        # The claim order ranks queued jobs within (type, tenant, priority) by age: read from
        # this index in that order, with no sort, and only queued rows in it.
        Index("ix_jobs_queued_claim", "type", "owner", "priority", "created_at", "id",
              postgresql_where=text("status = 'queued'"), sqlite_where=text("status = 'queued'")),
        # Retention (jobs/retention.py): finished jobs whose files are still stored, oldest first.
        Index("ix_jobs_retention", "finished_at", postgresql_where=text("result_expired_at IS NULL"),
              sqlite_where=text("result_expired_at IS NULL")),
    )


class ApiKey(Base):
    """An API key: only a hash of the secret is kept (see jobs/keys.py); the prefix is for display."""

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    tenant: Mapped[str] = mapped_column(String(64))
    prefix: Mapped[str] = mapped_column(String(16))
    key_hash: Mapped[str] = mapped_column(String(64))
    # An operator's key: it may also see the cluster (GET /v1/workers), not only its tenant's jobs.
    admin: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (
        Index("ux_api_keys_key_hash", "key_hash", unique=True),
        Index("ux_api_keys_prefix", "prefix", unique=True),
    )


class ServiceSecret(Base):
    """A secret every process of the service must share (the image URL signing key: jobs/url_signing.py)."""

    __tablename__ = "service_secrets"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Lock(Base):
    """A named lease: whoever holds an unexpired row is the one (e.g. the one sweeper)."""

    __tablename__ = "locks"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str] = mapped_column(String(255))
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Worker(Base):
    """A worker's heartbeat row (jobs/heartbeat.py writes it, jobs/workers.py reads it).

    One row per Celery node (e.g. `gpu0@host`): a restarted worker with the same name takes
    its row over. `beat_seconds` is the writer's own interval, so readers judge "gone" by it
    whatever their own settings say.
    """

    __tablename__ = "workers"

    name: Mapped[str] = mapped_column(String(255), primary_key=True)
    host: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    device: Mapped[str] = mapped_column(String(128))
    model: Mapped[str] = mapped_column(String(255))
    queues: Mapped[list] = mapped_column(JSON)
    state: Mapped[str] = mapped_column(String(16))  # running, draining or stopped (as the worker last said)
    beat_seconds: Mapped[float] = mapped_column(Float)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime)
    stopped_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The batch it runs now: {"id", "type", "jobs": [ids], "size", "started_at"}; null when idle.
    batch: Mapped[dict | None] = mapped_column(JSON)


class WorkerBatch(Base):
    """One row per batch a worker started: what /metrics' batch-size histogram counts."""

    __tablename__ = "worker_batches"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    batch_id: Mapped[str] = mapped_column(String(32))
    worker: Mapped[str] = mapped_column(String(255))
    type: Mapped[str] = mapped_column(String(16))
    jobs: Mapped[int] = mapped_column(Integer)
    # Rows the model ran: images (generate) or answers (understand), the units of the batch caps.
    size: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)


class DeletedJobCount(Base):
    """How many jobs of a type were deleted in each status (jobs/retention.delete_job): /metrics
    adds them to the live rows' counts, so its job counters never fall when a job is deleted
    (Prometheus would read a fall as a counter reset). Deletions are rare: one row per
    (type, status), bumped in the deleting transaction."""

    __tablename__ = "deleted_job_counts"

    type: Mapped[str] = mapped_column(String(16), primary_key=True)
    status: Mapped[str] = mapped_column(String(16), primary_key=True)
    count: Mapped[int] = mapped_column(Integer, default=0)


class JobEvent(Base):
    """One event of a job's stream (jobs/events.py), where events live in the database: the
    embedded configuration (SQLite, no Redis). The id orders a job's events and is the SSE id."""

    __tablename__ = "job_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(String(32))
    kind: Mapped[str] = mapped_column(String(16))
    data: Mapped[dict] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (
        Index("ix_job_events_job_id", "job_id", "id"),
        Index("ix_job_events_created_at", "created_at"),
    )


class WebhookSecret(Base):
    """A tenant's webhook signing secret, `whsec_<base64>` (jobs/webhooks/signing.py). Kept in the
    clear: the deliverer needs it to sign, unlike an API key, which is only ever compared."""

    __tablename__ = "webhook_secrets"

    tenant: Mapped[str] = mapped_column(String(64), primary_key=True)
    secret: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class WebhookDelivery(Base):
    """The webhook outbox: one row per event to deliver, committed with the job's transition
    (jobs/states.py) and sent by the delivery loop (jobs/webhooks/delivery.py). Its id is the
    `webhook-id` header, the same on every attempt. `snapshot` is the job row as the transition
    left it, so the body shows the job at the event and is the same bytes on every retry."""

    __tablename__ = "webhook_deliveries"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    job_id: Mapped[str] = mapped_column(String(32))
    owner: Mapped[str] = mapped_column(String(64))  # whose secret signs it
    event: Mapped[str] = mapped_column(String(16))  # start, progress or completed
    url: Mapped[str] = mapped_column(Text)
    snapshot: Mapped[dict] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16))  # pending, delivered or failed (gave up)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    status_code: Mapped[int | None] = mapped_column(Integer)  # of the last attempt
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # When the next attempt is due; while an attempt is under way, when it counts as abandoned.
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (
        Index("ix_webhook_deliveries_job", "job_id", "created_at"),
        # The deliverer's poll: due pending rows only, however many finished ones there are.
        Index("ix_webhook_deliveries_due", "next_attempt_at",
              postgresql_where=text("status = 'pending'"), sqlite_where=text("status = 'pending'")),
    )

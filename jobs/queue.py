"""The Celery configuration that the API (publisher) and the workers (consumers) share.

Messages carry the job id only; everything else lives in the job row.
"""
from __future__ import annotations

from urllib.parse import urlsplit

from celery import Celery
from kombu import Queue
from kombu.transport import redis as kombu_redis

from jobs import embedded_broker
from jobs.settings import QUEUES, Settings

TASK_NAME = "janus.run_job"
RETRY_POLICY = {"max_retries": 2, "interval_start": 0.2, "interval_step": 0.5}


class BrokerUnavailable(RuntimeError):
    pass


def celery_config(settings: Settings) -> dict:
    if settings.broker.startswith(embedded_broker.SCHEME):
        # The SQLAlchemy transport would hand transport options to create_engine.
        broker = {**embedded_broker.celery_broker_settings(settings.broker), "broker_transport_options": {}}
    else:
        broker = {"broker_url": settings.broker,
                  "broker_transport_options": {"visibility_timeout": settings.visibility_timeout}}
    return {
        **broker,
        "broker_connection_retry_on_startup": True,
        "broker_connection_timeout": 4,
        "task_queues": [Queue(name) for name in QUEUES],
        "task_default_queue": QUEUES[0],
        "task_create_missing_queues": False,
        "task_serializer": "json",
        "accept_content": ["json"],
        "task_ignore_result": True,
        # At-least-once: ack after the task finishes; a worker that dies gives it back.
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "task_soft_time_limit": settings.job_soft_time_limit,
        "task_time_limit": settings.job_time_limit,
        # A child loads the model after the fork; give it time before it counts as dead.
        "worker_proc_alive_timeout": 600,
        "worker_hijack_root_logger": False,
        "worker_send_task_events": False,
    }


def make_celery(settings: Settings, name: str = "janusq") -> Celery:
    app = Celery(name, set_as_current=False)
    app.conf.update(celery_config(settings))
    return app


class _PublishingRedisChannel(kombu_redis.Channel):
    """kombu's Redis channel, reusing one redis-py client for its publishes.

    The stock channel builds a new client object for every message it sends (redis-py fills
    about 170 response callbacks into each), a fifth of a publish's CPU. A client is thread-safe
    (each command takes a connection from the shared pool), so one per channel will do.
    """

    def _create_client(self, asynchronous=False):
        if asynchronous:
            return super()._create_client(asynchronous=True)
        if self._publishing_client is None:
            self._publishing_client = super()._create_client()
        return self._publishing_client

    _publishing_client = None


class _PublishingRedisTransport(kombu_redis.Transport):
    Channel = _PublishingRedisChannel


class Publisher:
    """Publishes job ids to the queue named after the job type."""

    def __init__(self, settings: Settings):
        self._app = make_celery(settings, name="janusq-api")
        if urlsplit(settings.broker).scheme in ("redis", "rediss"):
            self._app.conf.broker_transport = _PublishingRedisTransport

    def publish(self, job_id: str, job_type: str) -> None:
        if job_type not in QUEUES:
            raise ValueError(f"unknown job type {job_type!r}")
        try:
            self._app.send_task(
                TASK_NAME, args=[job_id], queue=job_type,
                retry=True, retry_policy=RETRY_POLICY,
                # Given, not computed: Celery's safe repr of the arguments is a fifth of a publish.
                argsrepr=f"['{job_id}']", kwargsrepr="{}", ignore_result=True,
            )
        except Exception as exc:  # kombu raises many transport-specific types
            raise BrokerUnavailable(f"broker unreachable: {exc}") from exc

    def check(self) -> None:
        """Raise BrokerUnavailable unless a connection to the broker can be made."""
        try:
            with self._app.connection_for_write() as connection:
                connection.ensure_connection(max_retries=1, timeout=3)
        except Exception as exc:
            raise BrokerUnavailable(f"broker unreachable: {exc}") from exc

"""GET /v1/workers (admin keys only) and the worker, queue and batch figures of /metrics."""
from __future__ import annotations

from datetime import timedelta

import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import delete, select

from jobs import keys
from jobs.heartbeat import HeartbeatRow, WorkerIdentity
from jobs.models import DeletedJobCount, Job, Worker, WorkerBatch, utcnow
from tests.api.conftest import bearer


@pytest.fixture
def clean(pg):
    """No workers, batches or jobs left by other tests of this module's database."""
    with pg.session() as session:
        for table in (Worker, WorkerBatch, Job, DeletedJobCount):
            session.execute(delete(table))
    return pg


def admin_key(pg) -> str:
    with pg.session() as session:
        return keys.create_key(session, "operator", admin=True).secret


def register(pg, name: str, beat: float = 5.0) -> HeartbeatRow:
    row = HeartbeatRow(pg, name)
    row.register(WorkerIdentity(name=name, host="host-a", pid=7, device="cuda:0", model="tiny",
                                queues=("generate",), beat_seconds=beat))
    row.report_ready("cuda:0")
    return row


def test_an_admin_key_lists_the_workers(make_api, clean):
    api = make_api()
    busy = register(clean, "gpu0@host-a")
    register(clean, "gpu1@host-a")
    with busy.batch("b1", "generate", ["j1", "j2"], 8):
        response = api.client.get("/v1/workers", headers=bearer(admin_key(clean)))
    assert response.status_code == 200, response.json
    workers = {worker["name"]: worker for worker in response.json["data"]}
    assert set(workers) == {"gpu0@host-a", "gpu1@host-a"}
    assert workers["gpu0@host-a"]["status"] == "busy" and workers["gpu1@host-a"]["status"] == "idle"
    assert workers["gpu0@host-a"]["batch"]["jobs"] == ["j1", "j2"] and workers["gpu1@host-a"]["batch"] is None
    assert set(workers["gpu1@host-a"]) == {
        "name", "status", "host", "pid", "device", "model", "queues", "started_at", "last_seen_at",
        "seconds_since_seen", "heartbeat_seconds", "stopped_at", "batch"}
    assert workers["gpu1@host-a"]["queues"] == ["generate"] and workers["gpu1@host-a"]["device"] == "cuda:0"


def test_other_keys_get_403_and_no_key_401(make_api, new_key, clean):
    api = make_api()
    register(clean, "gpu0@host-a")
    forbidden = api.client.get("/v1/workers", headers=bearer(new_key()))
    assert forbidden.status_code == 403 and forbidden.mimetype == "application/json"
    assert forbidden.json == {"error": {"code": "forbidden", "field": "Authorization",
                                        "message": forbidden.json["error"]["message"]}}
    assert "--admin" in forbidden.json["error"]["message"]
    assert api.client.get("/v1/workers").status_code == 401
    # An admin key still works for its own tenant's jobs, like any other key.
    assert api.client.get("/v1/jobs", headers=bearer(admin_key(clean))).status_code == 200


def test_with_auth_off_on_loopback_it_is_open(make_api, clean):
    api = make_api(auth="auto", host="127.0.0.1")
    register(clean, "gpu0@host-a")
    response = api.client.get("/v1/workers")
    assert response.status_code == 200 and [w["name"] for w in response.json["data"]] == ["gpu0@host-a"]


def metric(text: str, name: str, **labels) -> float:
    """One sample's value from Prometheus text, by name and labels."""
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return sample.value
    raise AssertionError(f"{name} {labels} not in /metrics")


def test_metrics_count_workers_by_status_and_batches_by_size(make_api, clean):
    api = make_api()
    busy = register(clean, "gpu0@host-a")
    register(clean, "gpu1@host-a")
    register(clean, "gpu2@host-a").stop()
    with busy.batch("b1", "generate", ["j1", "j2"], 8):
        text = api.client.get("/metrics").get_data(as_text=True)
    assert metric(text, "janus_workers", status="busy") == 1
    assert metric(text, "janus_workers", status="idle") == 1
    assert metric(text, "janus_workers", status="stopped") == 1
    assert metric(text, "janus_workers", status="gone") == 0
    assert metric(text, "janus_batch_size_count", type="generate") == 1
    assert metric(text, "janus_batch_size_sum", type="generate") == 8
    assert metric(text, "janus_batch_size_bucket", type="generate", le="4.0") == 0
    assert metric(text, "janus_batch_size_bucket", type="generate", le="8.0") == 1
    with busy.batch("b2", "understand", ["j3"], 1):
        pass
    text = api.client.get("/metrics").get_data(as_text=True)
    assert metric(text, "janus_workers", status="busy") == 0 and metric(text, "janus_workers", status="idle") == 2
    assert metric(text, "janus_batch_size_count", type="understand") == 1


def test_job_counters_never_fall_when_jobs_are_deleted(make_api, clean):
    """Prometheus reads a counter that falls as a reset (rate() would spike): a deleted job stays
    counted as submitted and finished; the running gauge does drop."""
    from jobs.retention import delete_job

    api = make_api()
    for status in ("succeeded", "succeeded", "running", "failed"):
        add_job(clean, "generate", status, created_ago=60, waited=1)
    before = api.client.get("/metrics").get_data(as_text=True)
    services = api.app.extensions["janus"]
    with clean.session() as session:
        ids = {status: session.scalars(select(Job.id).where(Job.status == status)).first()
               for status in ("succeeded", "running", "failed")}
    for job_id in ids.values():
        assert delete_job(services.db, services.storage, job_id)
    after = api.client.get("/metrics").get_data(as_text=True)
    for name, labels in (("janus_jobs_submitted_total", {"type": "generate"}),
                         ("janus_jobs_finished_total", {"type": "generate", "status": "succeeded"}),
                         ("janus_jobs_finished_total", {"type": "generate", "status": "failed"})):
        assert metric(after, name, **labels) == metric(before, name, **labels)
    assert metric(before, "janus_jobs_submitted_total", type="generate") == 4
    assert metric(before, "janus_jobs_running", type="generate") == 1
    assert metric(after, "janus_jobs_running", type="generate") == 0
    # The running job was deleted while it ran (only flagged to stop): submitted, never finished.
    assert metric(after, "janus_jobs_finished_total", type="generate", status="canceled") == 0
    add_job(clean, "generate", "succeeded", created_ago=5, waited=1)  # a later job adds on top
    assert metric(api.client.get("/metrics").get_data(as_text=True), "janus_jobs_submitted_total",
                  type="generate") == 5


def test_deleted_jobs_are_counted_on_sqlite_too(tmp_path):
    from api.metrics import render_metrics
    from jobs.db import Database
    from jobs.migrate import upgrade
    from jobs.retention import count_deleted

    url = f"sqlite:///{tmp_path / 'janus.db'}"
    upgrade(url)
    db = Database(url)
    for _ in range(2):
        with db.session() as session:
            count_deleted(session, "understand", "succeeded")
    text = render_metrics(db).decode()
    db.dispose()
    assert metric(text, "janus_jobs_finished_total", type="understand", status="succeeded") == 2
    assert metric(text, "janus_jobs_submitted_total", type="understand") == 2


def add_job(pg, job_type: str, status: str, created_ago: float, waited: float | None = None) -> None:
    now = utcnow()
    created = now - timedelta(seconds=created_ago)
    started = created + timedelta(seconds=waited) if waited is not None else None
    with pg.session() as session:
        session.add(Job(type=job_type, status=status, params={}, created_at=created, started_at=started))


def test_metrics_give_the_oldest_queued_age_and_queue_waits(make_api, clean):
    api = make_api()
    add_job(clean, "generate", "queued", created_ago=30)
    add_job(clean, "generate", "queued", created_ago=5)
    add_job(clean, "generate", "succeeded", created_ago=100, waited=0.3)
    add_job(clean, "generate", "failed", created_ago=100, waited=45)
    add_job(clean, "understand", "running", created_ago=100, waited=2)  # not final yet: not counted
    text = api.client.get("/metrics").get_data(as_text=True)
    assert 30 <= metric(text, "janus_queue_oldest_age_seconds", type="generate") < 40
    assert metric(text, "janus_queue_oldest_age_seconds", type="understand") == 0
    assert metric(text, "janus_queue_depth", type="generate") == 2
    assert metric(text, "janus_queue_wait_seconds_count", type="generate") == 2
    assert metric(text, "janus_queue_wait_seconds_sum", type="generate") == pytest.approx(45.3, abs=0.01)
    assert metric(text, "janus_queue_wait_seconds_bucket", type="generate", le="0.5") == 1
    assert metric(text, "janus_queue_wait_seconds_bucket", type="generate", le="30.0") == 1
    assert metric(text, "janus_queue_wait_seconds_bucket", type="generate", le="60.0") == 2
    with pytest.raises(AssertionError):
        metric(text, "janus_queue_wait_seconds_count", type="understand")


def test_queue_waits_are_computed_on_sqlite_too(tmp_path):
    """`make run`'s database: the seconds between two timestamps are SQL of SQLite's own."""
    from api.metrics import render_metrics
    from jobs.db import Database
    from jobs.migrate import upgrade

    url = f"sqlite:///{tmp_path / 'janus.db'}"
    upgrade(url)
    db = Database(url)
    add_job(db, "understand", "succeeded", created_ago=60, waited=2.5)
    add_job(db, "understand", "queued", created_ago=12)
    text = render_metrics(db).decode()
    db.dispose()
    assert metric(text, "janus_queue_wait_seconds_sum", type="understand") == pytest.approx(2.5, abs=0.01)
    assert metric(text, "janus_queue_wait_seconds_bucket", type="understand", le="5.0") == 1
    assert 12 <= metric(text, "janus_queue_oldest_age_seconds", type="understand") < 20

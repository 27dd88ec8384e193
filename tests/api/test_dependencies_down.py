"""With a dependency down the API answers 503 JSON naming it, and recovers when it returns."""
from __future__ import annotations

import pytest
from sqlalchemy import create_engine, select

from api.app import create_app
from jobs.migrate import upgrade
from jobs.models import Job
from tests.s3server import free_port

DEAD_PORT = free_port()  # nothing listens here


@pytest.fixture
def database_url(tmp_path):
    url = f"sqlite:///{tmp_path / 'janus.db'}"
    upgrade(url)
    return url


def _app(tmp_path, tiny_checkpoint, **overrides):
    defaults = {"data_dir": tmp_path, "model": str(tiny_checkpoint)}
    return create_app(**{**defaults, **overrides}).test_client()


def _rows(database_url):
    with create_engine(database_url).connect() as connection:
        return connection.execute(select(Job.status, Job.error_code)).all()


def test_readyz_names_broker_and_storage_when_down(tmp_path, tiny_checkpoint, database_url):
    client = _app(tmp_path, tiny_checkpoint, database_url=database_url,
                  broker_url=f"redis://127.0.0.1:{DEAD_PORT}/0", storage_url="s3://bucket/x",
                  s3_endpoint_url=f"http://127.0.0.1:{DEAD_PORT}")
    response = client.get("/readyz")
    assert response.status_code == 503
    body = response.json
    assert body["checks"]["database"] == "ok"
    assert body["checks"]["broker"].startswith("down") and body["checks"]["storage"].startswith("down")
    assert "broker" in body["error"]["message"] and "storage" in body["error"]["message"]


def test_database_down_is_503_json(tmp_path, tiny_checkpoint):
    client = _app(tmp_path, tiny_checkpoint, database_url=f"postgresql+psycopg://postgres@127.0.0.1:{DEAD_PORT}/x")
    listing = client.get("/v1/jobs")
    assert listing.status_code == 503 and listing.json["error"]["field"] == "database"
    ready = client.get("/readyz")
    assert ready.status_code == 503 and ready.json["checks"]["database"].startswith("down")


def test_broker_down_still_accepts_the_job_for_the_sweeper_to_publish(tmp_path, tiny_checkpoint, database_url):
    client = _app(tmp_path, tiny_checkpoint, database_url=database_url,
                  broker_url=f"redis://127.0.0.1:{DEAD_PORT}/0")
    response = client.post("/v1/jobs", json={"type": "generate", "prompt": "p"})
    # The committed row is the promise: the job is accepted and waits, marked unpublished, for
    # the sweeper to publish it when the broker is back (tests/faults covers that part).
    assert response.status_code == 202 and response.json["status"] == "queued"
    assert _rows(database_url) == [("queued", None)]
    assert _published_at(database_url) == [None]


def test_unreadable_model_is_503_and_creates_nothing(tmp_path, database_url):
    client = create_app(data_dir=tmp_path, database_url=database_url,
                        model=str(tmp_path / "no-such-checkpoint")).test_client()
    response = client.post("/v1/jobs", json={"type": "generate", "prompt": "p"})
    assert response.status_code == 503 and response.json["error"]["field"] == "model"
    assert _rows(database_url) == []


def _published_at(database_url):
    with create_engine(database_url).connect() as connection:
        return connection.execute(select(Job.published_at)).scalars().all()

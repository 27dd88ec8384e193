from __future__ import annotations

import pytest

from tests.s3server import DUMMY_AWS_ENV, MotoServer


@pytest.fixture(scope="session", autouse=True)
def aws_test_env(tmp_path_factory):
    """Dummy credentials, and no profile or config file of the machine's user leaking in."""
    empty = tmp_path_factory.mktemp("aws") / "none"
    with pytest.MonkeyPatch.context() as mp:
        for name, value in DUMMY_AWS_ENV.items():
            mp.setenv(name, value)
        for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_REGION", "AWS_ENDPOINT_URL"):
            mp.delenv(name, raising=False)
        mp.setenv("AWS_CONFIG_FILE", str(empty))
        mp.setenv("AWS_SHARED_CREDENTIALS_FILE", str(empty))
        mp.setenv("AWS_EC2_METADATA_DISABLED", "true")
        yield


@pytest.fixture(scope="session")
def moto_server(aws_test_env):
    with MotoServer() as server:
        yield server


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request, tmp_path):
    """A migrated database of each kind, emptied afterwards (jobs, locks, workers, batches, webhooks)."""
    from jobs.db import Database
    from jobs.migrate import upgrade
    from jobs.models import Job, JobEvent, Lock, WebhookDelivery, WebhookSecret, Worker, WorkerBatch

    url = f"sqlite:///{tmp_path / 'jobs.db'}" if request.param == "sqlite" else request.getfixturevalue("postgres_url")
    upgrade(url)
    database = Database(url)
    yield database
    with database.session() as session:
        session.query(Job).delete()
        session.query(Lock).delete()
        session.query(Worker).delete()
        session.query(WorkerBatch).delete()
        session.query(JobEvent).delete()
        session.query(WebhookDelivery).delete()
        session.query(WebhookSecret).delete()
    database.engine.dispose()

"""`janusq webhooks secret` (one line, stable until --rotate) and `janusq sweeper` sending webhook
deliveries with no worker running."""
from __future__ import annotations

import base64
import os
import signal
import subprocess
import sys

from jobs import service, states
from jobs.db import Database
from jobs.migrate import upgrade
from tests.pgdb import fresh_database
from tests.webhook_receiver import Receiver, readme_verifier


def _janusq(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "janusq", *args], env={**os.environ, **env},
                          capture_output=True, text=True, timeout=60)


def test_secret_is_one_line_stable_until_rotated(tmp_path):
    env = {"JANUS_DATA_DIR": str(tmp_path)}
    upgrade(f"sqlite:///{tmp_path / 'janus.db'}")
    first = _janusq(env, "webhooks", "secret")
    assert first.returncode == 0, first.stderr
    lines = first.stdout.splitlines()
    assert len(lines) == 1 and lines[0].startswith("whsec_")
    assert len(base64.b64decode(lines[0].removeprefix("whsec_"))) == 32
    assert _janusq(env, "webhooks", "secret", "--tenant", "local").stdout == first.stdout  # local: the default
    rotated = _janusq(env, "webhooks", "secret", "--rotate").stdout
    assert rotated != first.stdout and len(rotated.splitlines()) == 1
    assert _janusq(env, "webhooks", "secret").stdout == rotated
    other = _janusq(env, "webhooks", "secret", "--tenant", "acme").stdout
    assert other not in (first.stdout, rotated)


def test_secret_without_a_migrated_database_is_one_line_of_error(tmp_path):
    done = _janusq({"JANUS_DATA_DIR": str(tmp_path)}, "webhooks", "secret")
    assert done.returncode == 1 and done.stdout == ""
    assert len(done.stderr.strip().splitlines()) == 1 and "janusq migrate" in done.stderr


def test_the_sweeper_alone_delivers_webhooks(tmp_path, redis_url):
    with fresh_database("janusq_hooks_sweeper") as database_url, Receiver() as receiver:
        db = Database(database_url)
        with db.session() as session:
            job_id = service.add_job(session, "generate", {"prompt": "p", "seed": 1}, webhook=receiver.url,
                                     webhook_events=["completed"], webhook_root="http://api:8000").id
        with db.session() as session:
            states.transition(session, job_id, states.CANCELED, only_from={states.QUEUED})
        db.dispose()
        env = {**os.environ, "JANUS_DATABASE_URL": database_url, "JANUS_BROKER_URL": redis_url,
               "JANUS_DATA_DIR": str(tmp_path), "JANUS_WEBHOOK_ALLOW_PRIVATE": "true"}
        process = subprocess.Popen([sys.executable, "-m", "janusq", "sweeper"], env=env,
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            [request] = receiver.wait_for(lambda received: received, timeout=60)
        finally:
            process.send_signal(signal.SIGTERM)
            output = process.communicate(timeout=30)[0]
        assert process.returncode == 0, output
        secret = _janusq({"JANUS_DATABASE_URL": database_url}, "webhooks", "secret").stdout.strip()
        assert readme_verifier()(secret, request.headers, request.body)
        assert request.json["status"] == "canceled"
        assert request.json["urls"]["self"] == f"http://api:8000/v1/jobs/{job_id}"

"""`janusq sweeper` alone, against real PostgreSQL and Redis: a job whose message was lost is
published again with no worker running, and SIGTERM stops it cleanly."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import redis as redis_lib

from jobs import service
from jobs.db import Database
from jobs.models import Job
from tests.pgdb import fresh_database


def test_the_sweeper_alone_republishes_a_lost_message_and_stops_on_sigterm(tmp_path, redis_url):
    with fresh_database("janusq_sweeper") as database_url:
        db = Database(database_url)
        with db.session() as session:
            job_id = service.add_job(session, "generate", {"prompt": "p", "seed": 1}).id  # never published
        env = {**os.environ, "JANUS_DATABASE_URL": database_url, "JANUS_BROKER_URL": redis_url,
               "JANUS_DATA_DIR": str(tmp_path), "JANUS_SWEEP_INTERVAL": "0.2", "JANUS_REQUEUE_AFTER": "1"}
        process = subprocess.Popen([sys.executable, "-m", "janusq", "sweeper"], env=env,
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            broker = redis_lib.Redis.from_url(redis_url)
            deadline = time.monotonic() + 60
            while broker.llen("generate") == 0 and time.monotonic() < deadline and process.poll() is None:
                time.sleep(0.2)
            assert broker.llen("generate") >= 1, "no message was published"
            with db.session() as session:
                assert session.get(Job, job_id).published_at is not None
        finally:
            process.send_signal(signal.SIGTERM)
            output = process.communicate(timeout=30)[0]
        db.dispose()
        assert process.returncode == 0, output
        assert "sweeper" in output and "now sweeping" in output

"""Batch progress: one write per interval for all the jobs of a batch, cancels seen per job."""
from __future__ import annotations

import time

from sqlalchemy import select

from jobs import service, states
from jobs.models import Job
from worker.claims import BatchLimits, claim_next_batch
from worker.progress import BatchProgress


def running_jobs(db, count: int) -> list[str]:
    with db.session() as session:
        ids = [service.add_job(session, "understand", {"question": "q", "seed": 1}).id for _ in range(count)]
    with db.session() as session:
        assert len(claim_next_batch(session, "understand", "w", BatchLimits(answers=count))) == count
    return ids


def progress_of(db) -> dict[str, float]:
    with db.session() as session:
        return dict(session.execute(select(Job.id, Job.progress)).all())


def test_one_write_covers_the_whole_batch_and_a_cancel_stops_only_its_job(database):
    ids = running_jobs(database, 3)
    reporters = BatchProgress.reporters(database, ids, interval=0.2)
    with database.session() as session:
        assert states.request_cancel(session, ids[1])
    assert reporters[ids[0]](10, 100) is True  # the first call writes for everyone
    assert progress_of(database) == {ids[0]: 0.1, ids[1]: 0.0, ids[2]: 0.0}
    assert reporters[ids[1]].stopped  # seen before its own first step
    assert reporters[ids[1]](1, 100) is False and reporters[ids[2]](50, 100) is True
    assert progress_of(database)[ids[2]] == 0.0  # within the interval: nothing written
    time.sleep(0.25)
    assert reporters[ids[2]](60, 100) is True
    assert progress_of(database) == {ids[0]: 0.1, ids[1]: 0.0, ids[2]: 0.6}
    assert reporters[ids[1]](2, 100) is False  # stays stopped


def test_a_lone_reporter_still_works_on_its_own(database):
    from worker.progress import ProgressReporter

    [job_id] = running_jobs(database, 1)
    reporter = ProgressReporter(database, job_id, 0.01)
    assert reporter(576, 576) is True and progress_of(database)[job_id] == 0.99
    assert reporter.seconds_per_step() > 0 and reporter.elapsed() > 0

"""Heartbeat rows on SQLite and PostgreSQL: registered, beaten, showing a batch, stopped, gone."""
from __future__ import annotations

import threading
import time
from datetime import timedelta

from sqlalchemy import delete, func, select, update

from jobs.heartbeat import FORGET_AFTER, HeartbeatLoop, HeartbeatRow, WorkerIdentity
from jobs.models import Worker, WorkerBatch, utcnow
from jobs.workers import GONE_AFTER_BEATS, count_by_status, list_workers, status_of, worker_to_dict


def identity(name="gpu0@host-a", beat=5.0, **fields) -> WorkerIdentity:
    values = {"name": name, "host": "host-a", "pid": 4242, "device": "auto", "model": "tiny",
              "queues": ("generate", "understand"), "beat_seconds": beat, **fields}
    return WorkerIdentity(**values)


def row_of(db, name="gpu0@host-a") -> Worker:
    with db.session() as session:
        return session.get(Worker, name)


def ready(db, name="gpu0@host-a", **fields) -> HeartbeatRow:
    """A registered worker whose model has loaded."""
    row = HeartbeatRow(db, name)
    row.register(identity(name=name, **fields))
    row.report_ready("cpu")
    return row


def test_register_writes_who_the_worker_is_then_the_model_makes_it_ready(db):
    me = identity()
    HeartbeatRow(db, me.name).register(me)
    row = row_of(db)
    assert (row.host, row.pid, row.device, row.model, row.queues) == ("host-a", 4242, "auto", "tiny",
                                                                      ["generate", "understand"])
    assert row.state == "starting" and row.beat_seconds == 5.0 and row.batch is None
    assert row.started_at == me.started_at and row.last_seen_at >= me.started_at
    shown = worker_to_dict(row)
    assert shown["status"] == "starting" and shown["name"] == "gpu0@host-a" and shown["stopped_at"] is None
    HeartbeatRow(db, me.name).report_ready("cuda:0 (CUDA_VISIBLE_DEVICES=5)")
    row = row_of(db)
    assert row.device == "cuda:0 (CUDA_VISIBLE_DEVICES=5)" and worker_to_dict(row)["status"] == "idle"


def test_a_restarted_worker_takes_its_row_over(db):
    first = HeartbeatRow(db, "gpu0@host-a")
    first.register(identity())
    with first.batch("b1", "generate", ["j1"], 4):
        pass
    first.stop()
    HeartbeatRow(db, "gpu0@host-a").register(identity(pid=5151, device="cuda:0"))
    row = row_of(db)
    assert (row.pid, row.device, row.state, row.stopped_at, row.batch) == (5151, "cuda:0", "starting", None, None)
    with db.session() as session:
        assert session.execute(select(func.count()).select_from(Worker)).scalar_one() == 1


def test_a_batch_shows_while_it_runs_and_is_counted(db):
    heartbeat = ready(db)
    with heartbeat.batch("abc123", "generate", ["j1", "j2"], 12):
        row = row_of(db)
        assert status_of(row, utcnow()) == "busy"
        shown = worker_to_dict(row)["batch"]
        assert shown["id"] == "abc123" and shown["jobs"] == ["j1", "j2"] and shown["size"] == 12
        assert shown["type"] == "generate" and shown["started_at"].endswith("Z")
    assert row_of(db).batch is None and status_of(row_of(db), utcnow()) == "idle"
    with db.session() as session:
        [counted] = session.execute(select(WorkerBatch)).scalars()
    assert (counted.batch_id, counted.worker, counted.type, counted.jobs, counted.size) == \
        ("abc123", "gpu0@host-a", "generate", 2, 12)


def test_a_batch_that_raises_is_cleared_too(db):
    heartbeat = HeartbeatRow(db, "gpu0@host-a")
    heartbeat.register(identity())
    try:
        with heartbeat.batch("b2", "understand", ["j3"], 1):
            raise RuntimeError("the model failed")
    except RuntimeError:
        pass
    assert row_of(db).batch is None


def test_a_new_process_clears_the_batch_its_predecessor_left(db):
    heartbeat = ready(db)
    with db.session() as session:  # as if the pool process died mid-batch
        session.execute(update(Worker).values(batch={"id": "x", "type": "generate", "jobs": ["j"], "size": 1,
                                                     "started_at": "2026-01-01T00:00:00Z"}))
    heartbeat.report_ready("cpu")
    assert row_of(db).batch is None and row_of(db).state == "running"


def test_a_model_loaded_while_draining_leaves_it_draining(db):
    heartbeat = HeartbeatRow(db, "gpu0@host-a")
    heartbeat.register(identity())
    assert heartbeat.beat("draining")
    heartbeat.report_ready("cpu")
    assert row_of(db).state == "draining" and row_of(db).device == "cpu"


def test_silence_longer_than_three_beats_is_gone_and_a_clean_stop_is_stopped(db):
    heartbeat = ready(db, beat=2.0)
    seen = row_of(db).last_seen_at
    assert status_of(row_of(db), seen + timedelta(seconds=GONE_AFTER_BEATS * 2.0 - 0.1)) == "idle"
    assert status_of(row_of(db), seen + timedelta(seconds=GONE_AFTER_BEATS * 2.0 + 0.1)) == "gone"
    assert heartbeat.beat("draining")
    assert status_of(row_of(db), utcnow()) == "draining"
    heartbeat.stop()
    row = row_of(db)
    assert status_of(row, utcnow() + timedelta(days=0.5)) == "stopped" and row.stopped_at is not None


def test_counts_by_status(db):
    for index, beat in enumerate((5.0, 5.0, 5.0, 0.01, 5.0)):
        ready(db, f"w{index}", beat=beat)
    HeartbeatRow(db, "w5").register(identity(name="w5"))
    with HeartbeatRow(db, "w0").batch("b", "generate", ["j"], 1):
        HeartbeatRow(db, "w1").stop()
        HeartbeatRow(db, "w4").beat("draining")
        time.sleep(0.1)  # w3 beats every 0.01 s: silent for 0.1 s, it is gone
        with db.session() as session:
            counts = count_by_status(list_workers(session))
    assert counts == {"starting": 1, "busy": 1, "idle": 1, "draining": 1, "gone": 1, "stopped": 1}


def wait_until(check, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not check() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert check()


def test_the_loop_beats_says_when_the_model_is_ready_and_says_stopped(db):
    loaded = threading.Event()
    loop = HeartbeatLoop(HeartbeatRow(db, "gpu0@host-a"), identity(beat=0.05), model_ready=loaded.is_set)
    assert loop.register()
    first = row_of(db).last_seen_at
    loop.start()
    wait_until(lambda: row_of(db).last_seen_at > first)
    assert row_of(db).state == "starting"  # beating while the model loads: not gone
    loaded.set()
    wait_until(lambda: row_of(db).state == "running")
    loop.draining()
    wait_until(lambda: row_of(db).state == "draining")
    loop.stop()
    assert row_of(db).state == "stopped"


def test_a_vanished_row_is_registered_again(db):
    loop = HeartbeatLoop(HeartbeatRow(db, "gpu0@host-a"), identity())
    loop.tick()
    assert row_of(db) is not None
    with db.session() as session:
        session.execute(delete(Worker))
    loop.tick()
    assert row_of(db).state == "running"  # its model is ready (the default here): not starting again


def test_rows_unheard_of_for_a_day_are_forgotten_when_a_worker_starts(db):
    HeartbeatRow(db, "old@host").register(identity(name="old@host"))
    HeartbeatRow(db, "recent@host").register(identity(name="recent@host"))
    with db.session() as session:
        session.execute(update(Worker).where(Worker.name == "old@host")
                        .values(last_seen_at=utcnow() - FORGET_AFTER - timedelta(minutes=1)))
    HeartbeatRow(db, "new@host").register(identity(name="new@host"))
    with db.session() as session:
        assert [worker.name for worker in list_workers(session)] == ["new@host", "recent@host"]

"""The executor in-process with the tiny model, a real database and a local folder."""
from __future__ import annotations

import io

import pytest
from PIL import Image
from sqlalchemy import select

from jobs import service, states
from jobs.models import Job
from jobs.storage import LocalStorage
from worker.claims import BatchLimits
from worker.executor import Executor


def png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (40, 30), (10, 200, 90)).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture
def storage(tmp_path):
    return LocalStorage(tmp_path / "storage")


def add_generate(db, prompt="a fox", num_images=1) -> str:
    with db.session() as session:
        return service.add_job(session, "generate", {"prompt": prompt, "num_images": num_images,
                                                     "cfg_weight": 5.0, "temperature": 1.0, "seed": 3}).id


def add_understand(db, storage, image: bytes | None = None) -> str:
    with db.session() as session:
        job = service.add_job(session, "understand", {"question": "What is it?", "max_new_tokens": 2,
                                                      "temperature": 0.0, "top_p": 0.95, "seed": 1})
        job.input_key = f"jobs/{job.id}/input"
        storage.put(job.input_key, png() if image is None else image, "image/png")
        return job.id


def jobs_by_id(db) -> dict[str, Job]:
    with db.session() as session:
        return {job.id: job for job in session.execute(select(Job)).scalars()}


class Saboteur:
    """The tiny model, but a batch holding the prompt "poison" fails as a whole (a device fault
    one job causes), and a callback can run before each batch call (a cancel arriving mid-batch)."""

    def __init__(self, model, before=None):
        self.model, self.before, self.calls = model, before, []

    def generate_images_batch(self, requests):
        self.calls.append([r.prompt for r in requests])
        if self.before:
            self.before()
        if any(r.prompt == "poison" for r in requests):
            raise RuntimeError("device fault")
        return self.model.generate_images_batch(requests)

    def answer_batch(self, requests):
        self.calls.append([r.question for r in requests])
        return self.model.answer_batch(requests)

    @property
    def served_settings(self):
        return self.model.served_settings


# Long enough that only an empty queue ends a drain: on a loaded 2-core machine three tiny jobs
# have taken over a minute, and a 60 s drain then left the last one queued.
DRAIN_ALL = 900


def executor(database, storage, model, **kwargs) -> Executor:
    return Executor(database, storage, lambda: model, "test-worker", 0.2, **kwargs)


def test_queued_jobs_run_as_one_batch_each_with_its_own_result(database, storage, tiny_model):
    ids = [add_generate(database, f"prompt {i}", num_images=1 + i) for i in range(3)]
    model = Saboteur(tiny_model)
    assert executor(database, storage, model).run(ids[1]) == "succeeded"
    assert model.calls == [["prompt 0", "prompt 1", "prompt 2"]]  # in claim order, whichever the message named
    jobs = jobs_by_id(database)
    batch_ids = {jobs[i].result["batch"]["id"] for i in ids}
    assert len(batch_ids) == 1
    for index, job_id in enumerate(ids):
        job = jobs[job_id]
        assert job.status == "succeeded" and job.progress == 1.0 and job.run_seconds > 0
        assert job.result["batch"]["jobs"] == 3 and job.result["batch"]["images"] == 6
        assert [image["key"] for image in job.result["images"]] == [f"jobs/{job_id}/{n}.png" for n in range(index + 1)]
        assert all(storage.exists(image["key"]) for image in job.result["images"])
        # What the checkpoint chose beyond the params: the tiny one is Janus-Pro-shaped.
        assert job.result["model"] == {"prompt_format": "<|User|>: {prompt}\n\n<|Assistant|>:<begin_of_image>"}


def test_a_failing_batch_is_rerun_job_by_job_so_only_the_culprit_fails(database, storage, tiny_model):
    good, bad, other = (add_generate(database, prompt) for prompt in ("good", "poison", "other"))
    model = Saboteur(tiny_model)
    executor(database, storage, model).run(good)
    assert model.calls == [["good", "poison", "other"], ["good"], ["poison"], ["other"]]
    jobs = jobs_by_id(database)
    assert jobs[good].status == jobs[other].status == "succeeded"
    assert jobs[bad].status == "failed" and jobs[bad].error_code == "model_error"
    assert "device fault" in jobs[bad].error_message and jobs[bad].result is None


def test_a_job_with_an_unreadable_input_fails_alone(database, storage, tiny_model):
    good = add_understand(database, storage)
    corrupt = add_understand(database, storage, image=png()[:40])
    missing = add_understand(database, storage)
    storage.delete_prefix(f"jobs/{missing}/")
    model = Saboteur(tiny_model)
    assert executor(database, storage, model).run(corrupt) == "failed"
    assert model.calls == [["What is it?"]]  # only the good job reached the model
    jobs = jobs_by_id(database)
    assert jobs[good].status == "succeeded" and isinstance(jobs[good].result["text"], str)
    assert jobs[good].result["batch"]["jobs"] == 3
    for job_id in (corrupt, missing):
        assert jobs[job_id].status == "failed" and jobs[job_id].error_code == "model_error"


def test_a_job_canceled_mid_batch_ends_canceled_and_the_rest_succeed(database, storage, tiny_model):
    ids = [add_generate(database, f"p{i}") for i in range(3)]

    def cancel_the_middle_one():
        with database.session() as session:
            assert states.request_cancel(session, ids[1])  # running: flagged, stops at its next step

    executor(database, storage, Saboteur(tiny_model, before=cancel_the_middle_one)).run(ids[0])
    jobs = jobs_by_id(database)
    assert [jobs[i].status for i in ids] == ["succeeded", "canceled", "succeeded"]
    assert jobs[ids[1]].result is None and not jobs[ids[1]].cancel_requested
    assert not storage.exists(f"jobs/{ids[1]}/0.png")


def test_after_its_batch_the_task_drains_the_queue_batch_by_batch(database, storage, tiny_model):
    ids = [add_understand(database, storage) for _ in range(5)]
    model = Saboteur(tiny_model)
    run = executor(database, storage, model, limits=BatchLimits(images=4, answers=2), drain_seconds=DRAIN_ALL)
    assert run.run(ids[0]) == "succeeded"
    assert [len(call) for call in model.calls] == [2, 2, 1]
    jobs = jobs_by_id(database)
    assert all(jobs[i].status == "succeeded" for i in ids)
    assert len({jobs[i].result["batch"]["id"] for i in ids}) == 3
    # Their messages arrive afterwards and are dropped.
    assert all(run.run(i) == "skipped" for i in ids)


def test_draining_stops_when_the_worker_shuts_down_or_time_is_up(database, storage, tiny_model):
    ids = [add_understand(database, storage) for _ in range(3)]
    model = Saboteur(tiny_model)
    executor(database, storage, model, limits=BatchLimits(answers=1), drain_seconds=DRAIN_ALL,
             should_stop=lambda: True).run(ids[0])
    executor(database, storage, model, limits=BatchLimits(answers=1), drain_seconds=0).run(ids[1])
    jobs = jobs_by_id(database)
    assert [jobs[i].status for i in ids] == ["succeeded", "succeeded", "queued"]


def test_a_stale_message_still_takes_the_jobs_queued_since(database, storage, tiny_model):
    first, second = add_understand(database, storage), add_understand(database, storage)
    run = executor(database, storage, tiny_model, drain_seconds=DRAIN_ALL)
    assert run.run(first) == "succeeded"  # took `second` along
    late = add_understand(database, storage)  # queued behind `second`'s stale message
    assert run.run(second) == "skipped"
    assert jobs_by_id(database)[late].status == "succeeded"
    assert run.run("no-such-job") == "skipped"


def test_draining_serves_every_type_of_the_worker_oldest_first(database, storage, tiny_model):
    first = add_understand(database, storage)
    add_generate(database)
    add_understand(database, storage)  # queued after the generate job, so it runs after it
    model = Saboteur(tiny_model)
    limits = BatchLimits(answers=1)
    executor(database, storage, model, limits=limits, drain_seconds=DRAIN_ALL, job_types=("generate", "understand")).run(first)
    assert model.calls == [["What is it?"], ["a fox"], ["What is it?"]]
    assert all(job.status == "succeeded" for job in jobs_by_id(database).values())


def test_each_batch_shows_on_the_heartbeat_row_while_it_runs(database, storage, tiny_model):
    from jobs.heartbeat import HeartbeatRow, WorkerIdentity
    from jobs.models import Worker, WorkerBatch

    heartbeat = HeartbeatRow(database, "gpu0@test")
    heartbeat.register(WorkerIdentity(name="gpu0@test", host="test", pid=1, device="cpu", model="tiny",
                                      queues=("generate",), beat_seconds=5))
    seen = []

    def look():
        with database.session() as session:
            seen.append(session.get(Worker, "gpu0@test").batch)

    ids = [add_generate(database, f"fox {index}", num_images=2) for index in range(2)]
    executor(database, storage, Saboteur(tiny_model, before=look), heartbeat=heartbeat).run(ids[0])
    assert seen and seen[0]["jobs"] == ids and seen[0]["size"] == 4 and seen[0]["type"] == "generate"
    with database.session() as session:
        assert session.get(Worker, "gpu0@test").batch is None
        [batch] = session.execute(select(WorkerBatch)).scalars()
    assert (batch.jobs, batch.size, batch.batch_id) == (2, 4, seen[0]["id"])
    assert jobs_by_id(database)[ids[0]].result["batch"]["id"] == batch.batch_id

"""A job deleted (DELETE /v1/jobs/<id>) while a worker runs it leaves nothing in storage:
whether the worker sees it at a checkpoint or only after it has stored the images."""
from __future__ import annotations

from jobs.retention import delete_job
from tests.worker.test_executor import Saboteur, add_generate, executor, jobs_by_id, storage  # noqa: F401


class DeletesAfterTheModel(Saboteur):
    """The tiny model, but the named job is deleted after the model answered and before the worker
    stores the images: the window after a job's last checkpoint (VQ decoding, storing)."""

    def __init__(self, model, database, storage, job_id):
        super().__init__(model)
        self.database, self.storage, self.job_id = database, storage, job_id

    def generate_images_batch(self, requests):
        outcomes = super().generate_images_batch(requests)
        assert delete_job(self.database, self.storage, self.job_id)
        return outcomes


def stored_keys(storage) -> set[str]:
    return {str(path.relative_to(storage.root)) for path in storage.root.rglob("*") if path.is_file()}


def test_a_job_deleted_after_its_last_checkpoint_has_its_images_cleaned_up(database, storage, tiny_model):
    kept, deleted = add_generate(database, "kept", num_images=2), add_generate(database, "deleted", num_images=2)
    model = DeletesAfterTheModel(tiny_model, database, storage, deleted)
    executor(database, storage, model).run(kept)
    assert model.calls == [["kept", "deleted"]]  # one batch: the deleted job's images were made
    jobs = jobs_by_id(database)
    assert deleted not in jobs and jobs[kept].status == "succeeded"
    assert stored_keys(storage) == {f"jobs/{kept}/0.png", f"jobs/{kept}/1.png"}


def test_a_job_deleted_before_the_batch_stops_at_its_first_checkpoint(database, storage, tiny_model):
    kept, deleted = add_generate(database, "kept"), add_generate(database, "deleted")
    model = Saboteur(tiny_model, before=lambda: delete_job(database, storage, deleted))
    assert executor(database, storage, model).run(kept) == "succeeded"
    assert set(jobs_by_id(database)) == {kept}
    assert stored_keys(storage) == {f"jobs/{kept}/0.png"}

"""Storing a job's outcome: PNGs under jobs/<id>/<index>.png, or the answer text."""
from __future__ import annotations

import io

from jobs.storage import Storage
from worker.claims import GENERATE, Claimed


def store_result(job: Claimed, outcome, storage: Storage) -> dict:
    """The job's result row; images are written to storage first (StorageError fails the job)."""
    if job.type == GENERATE:
        return {"images": store_images(job.id, outcome, storage)}
    return {"text": outcome}


def store_images(job_id: str, images, storage: Storage) -> list[dict]:
    stored = []
    for index, image in enumerate(images):
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        key = f"jobs/{job_id}/{index}.png"
        storage.put(key, buffer.getvalue(), "image/png")
        stored.append({"key": key, "width": image.width, "height": image.height, "content_type": "image/png"})
    return stored

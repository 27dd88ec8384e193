"""Turning a claimed job into the model's request; a job whose input cannot be read fails alone."""
from __future__ import annotations

import io

from jobs.storage import Storage
from worker.claims import GENERATE, Claimed

UNDERSTAND = "understand"


def model_request(job: Claimed, storage: Storage, progress, previews: int = 0):
    """An ImageRequest or AnswerRequest for `job`; raises what made its input unusable.
    `previews`: per image of a generate job, handed to the progress reporter (its events)."""
    # Imported here: janus_model.requests pulls in torch, which the Celery parent process never needs.
    from janus_model.requests import AnswerRequest, ImageRequest

    p = job.params
    if job.type == GENERATE:
        return ImageRequest(prompt=p["prompt"], num_images=p["num_images"], cfg_weight=p["cfg_weight"],
                            temperature=p["temperature"], seed=p["seed"], progress=progress,
                            previews=previews, on_preview=getattr(progress, "preview", None))
    if job.type == UNDERSTAND:
        return AnswerRequest(image=load_input_image(job, storage), question=p["question"],
                             max_new_tokens=p["max_new_tokens"], temperature=p["temperature"],
                             top_p=p["top_p"], seed=p["seed"], progress=progress,
                             on_text=getattr(progress, "partial_text", None))
    raise ValueError(f"unknown job type {job.type!r}")


def load_input_image(job: Claimed, storage: Storage):
    from PIL import Image

    if not job.input_key:
        raise ValueError(f"job {job.id} has no input image")
    image = Image.open(io.BytesIO(storage.get(job.input_key)))
    return image.convert("RGB")  # decodes fully here, so a truncated file fails this job now

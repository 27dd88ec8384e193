"""The Python client of the janusq service: `from janusq.client import Client`.

    client = Client()                       # $JANUS_URL (else http://127.0.0.1:8000), $JANUS_API_KEY
    job = client.generate("a red fox in the snow", num_images=4, seed=7)
    job.images                              # [b"\\x89PNG...", ...]  (pil=True: PIL images)
    client.understand("photo.png", "What is in this picture?").answer

    handle = client.submit("generate", prompt="a lighthouse", num_images=2)
    for event in handle.events():           # status, progress, preview, output ..., completed
        ...
    handle.wait(timeout=120); handle.cancel(); handle.refresh()
    for job in client.jobs.list(status="succeeded", limit=50): ...

Every call that returns a job returns a Job (janusq/client/job.py lists its fields). Errors are
JanusError subclasses carrying the API's `code`, `status` and `message` (janusq/client/errors.py).

It imports nothing of the server (no torch, Flask, Celery, SQLAlchemy or pydantic): it needs
only urllib3, and Pillow for pil=True.
"""
from janusq.client.client import Client, Jobs
from janusq.client.errors import (
    BadRequestError,
    ConflictError,
    ConnectionFailedError,
    ForbiddenError,
    GoneError,
    JanusError,
    JobFailedError,
    NotFoundError,
    RateLimitedError,
    UnauthorizedError,
    UnavailableError,
    ValidationError,
    WaitTimeoutError,
)
from janusq.client.handle import JobHandle
from janusq.client.job import Job, JobError, Timings
from janusq.client.sse import Event
from janusq.client.webhooks import WebhookVerificationError, verify_webhook

__all__ = [
    "BadRequestError", "Client", "ConflictError", "ConnectionFailedError", "Event", "ForbiddenError", "GoneError",
    "JanusError", "Job", "JobError", "JobFailedError", "JobHandle", "Jobs", "NotFoundError", "RateLimitedError",
    "Timings", "UnauthorizedError", "UnavailableError", "ValidationError", "WaitTimeoutError",
    "WebhookVerificationError", "verify_webhook",
]

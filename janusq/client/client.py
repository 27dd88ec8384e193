"""Client: the service's API from Python (see janusq/client/__init__.py for a tour)."""
from __future__ import annotations

import io
import os
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Union

from janusq.client.handle import JobHandle
from janusq.client.http import Backoff, Transport
from janusq.client.job import Job

# Where `janusq run` (and `make run`) serve: JANUS_HOST and JANUS_PORT's defaults.
DEFAULT_URL = "http://127.0.0.1:8000"
USER_AGENT = "janusq-client/0.1"
# The API holds a `Prefer: wait` request at most JANUS_MAX_WAIT_SECONDS (60 by default) and
# caps what it is asked for to that; a longer job is then followed on its event stream.
PREFER_WAIT_SECONDS = 60
if TYPE_CHECKING:
    from PIL.Image import Image as PILImage
ImageInput = Union[str, os.PathLike, bytes, "PILImage"]  # a path, the file's bytes, or a PIL image


class Client:
    """`url` defaults to $JANUS_URL, else http://127.0.0.1:8000 (`janusq run`); `api_key` to
    $JANUS_API_KEY (needed when the service runs with auth on). 429 and 503 answers are retried
    up to `max_retries` times, after the Retry-After they carry, at most `max_backoff` seconds."""

    def __init__(self, url: str | None = None, api_key: str | None = None, *, timeout: float = 30.0,
                 max_retries: int = 5, max_backoff: float = 30.0):
        self.url = (url or os.environ.get("JANUS_URL") or DEFAULT_URL).rstrip("/")
        api_key = api_key if api_key is not None else os.environ.get("JANUS_API_KEY")
        self.backoff = Backoff(retries=max_retries, cap=max_backoff)
        self.transport = Transport(self.url, api_key, timeout, self.backoff, USER_AGENT)
        self.jobs = Jobs(self)

    def __repr__(self) -> str:
        return f"Client({self.url!r})"

    def sleep(self, seconds: float) -> None:
        self.backoff.sleep(seconds)

    # -- the two things Janus does ---------------------------------------------------------
    def generate(self, prompt: str, num_images: int = 4, *, cfg_weight: float | None = None,
                 temperature: float | None = None, seed: int | None = None, pil: bool = False,
                 timeout: float | None = None, **options: Any) -> Job:
        """Text to images: the succeeded Job with `images` (PNG bytes, or PIL images with `pil`).
        Raises JobFailedError if it fails, WaitTimeoutError after `timeout` seconds. `options`:
        priority, deadline_seconds, webhook, webhook_events (see README's API section)."""
        handle = self.submit("generate", prompt=prompt, num_images=num_images, cfg_weight=cfg_weight,
                             temperature=temperature, seed=seed, wait=_prefer_wait(timeout), **options)
        handle.wait(timeout)
        handle.raise_for_failure()
        handle.images(pil=pil)
        return handle.job

    def understand(self, image: ImageInput, question: str, *, max_new_tokens: int | None = None,
                   temperature: float | None = None, top_p: float | None = None, seed: int | None = None,
                   timeout: float | None = None, **options: Any) -> Job:
        """A question about an image (a path, bytes, or a PIL image): the succeeded Job, its
        `answer` the text. Raises JobFailedError if it fails, WaitTimeoutError after `timeout`."""
        handle = self.submit("understand", image=image, question=question, max_new_tokens=max_new_tokens,
                             temperature=temperature, top_p=top_p, seed=seed, wait=_prefer_wait(timeout),
                             **options)
        handle.wait(timeout)
        return handle.raise_for_failure()

    def submit(self, kind: str, *, image: ImageInput | None = None, wait: int = 0,
               idempotency_key: str | None = None, **params: Any) -> JobHandle:
        """Creates a job ("generate" or "understand", with the API's fields as keywords; None
        means the API's default) and returns its handle at once, or after up to `wait` seconds
        if it finishes by then. Every submit carries an Idempotency-Key (a fresh one unless
        given), so retrying it after a lost answer never makes a second job."""
        headers = {"Idempotency-Key": idempotency_key or uuid.uuid4().hex}
        if wait:
            headers["Prefer"] = f"wait={int(wait)}"
        body = {"type": kind, **{key: value for key, value in params.items() if value is not None}}
        request = {"headers": headers, "retry_connect": True, "timeout": self.transport.timeout + wait}
        if image is not None:
            request["fields"] = {**{k: _form_value(v) for k, v in body.items()}, "image": image_part(image)}
        else:
            request["json_body"] = body
        return JobHandle(self, Job.from_api(self.transport.json("POST", "/v1/jobs", **request)))

    # -- plumbing shared by jobs and handles -------------------------------------------------
    def download(self, url: str, pil: bool = False):
        """An image URL of a job's result: its bytes, or a PIL image with `pil` (needs Pillow)."""
        data = self.transport.request("GET", url, headers={"Accept": "image/*"}, retry_connect=True).data
        if not pil:
            return data
        from PIL import Image  # only here: the client itself needs no Pillow

        image = Image.open(io.BytesIO(data))
        image.load()
        return image

    def open_events(self, job_id: str, last_event_id: str | None, read_timeout: float):
        """The job's event stream, unread; None for a 204 (nothing after `last_event_id`)."""
        headers = {"Accept": "text/event-stream"}
        if last_event_id:
            headers["Last-Event-ID"] = last_event_id
        response = self.transport.stream(f"/v1/jobs/{job_id}/events", headers, read_timeout)
        if response.status == 204:
            response.close()
            return None
        return response


class Jobs:
    """`client.jobs`: the job history and single jobs by id."""

    def __init__(self, client: Client):
        self._client = client

    def get(self, job_id: str) -> Job:
        return Job.from_api(self._client.transport.json("GET", f"/v1/jobs/{job_id}", retry_connect=True))

    def handle(self, job_id: str) -> JobHandle:
        """A handle on an existing job (to wait for it, follow its events, cancel it)."""
        return JobHandle(self._client, self.get(job_id))

    def cancel(self, job_id: str) -> Job:
        return Job.from_api(self._client.transport.json("POST", f"/v1/jobs/{job_id}/cancel"))

    def list(self, *, status: str | None = None, kind: str | None = None, limit: int | None = None,
             page_size: int = 20) -> Iterator[Job]:
        """Your jobs, newest first, fetched a page at a time as you iterate (the API's cursor
        paging); at most `limit` of them (all when None)."""
        query = {"status": status, "type": kind, "limit": str(min(page_size, limit or page_size, 100))}
        cursor, seen = None, 0
        while True:
            fields = {key: value for key, value in {**query, "cursor": cursor}.items() if value}
            page = self._client.transport.json("GET", "/v1/jobs", query=fields, retry_connect=True)
            for data in page["data"]:
                if limit is not None and seen >= limit:
                    return
                seen += 1
                yield Job.from_api(data)
            cursor = page.get("next_cursor")
            if not cursor or (limit is not None and seen >= limit):
                return


def image_part(image: ImageInput) -> tuple[str, bytes, str]:
    """A multipart file part from a path, bytes or a PIL image (sent as PNG); the API reads the
    format from the bytes themselves."""
    if isinstance(image, (bytes, bytearray, memoryview)):
        return ("image", bytes(image), "application/octet-stream")
    if isinstance(image, (str, os.PathLike)):
        path = Path(image)
        return (path.name, path.read_bytes(), "application/octet-stream")
    if hasattr(image, "save"):  # a PIL image, without importing Pillow to ask
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        return ("image.png", buffer.getvalue(), "image/png")
    raise TypeError(f"image must be a path, bytes or a PIL image, not {type(image).__name__}")


def _form_value(value: Any) -> str:
    # Multipart fields are text; the API converts them to its field types (lists: comma-separated).
    if isinstance(value, (list, tuple)):
        return ",".join(str(item) for item in value)
    return str(value)


def _prefer_wait(timeout: float | None) -> int:
    return PREFER_WAIT_SECONDS if timeout is None else max(0, min(PREFER_WAIT_SECONDS, int(timeout)))



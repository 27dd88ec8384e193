"""JobHandle: a submitted job to wait for, follow, cancel or refresh."""
from __future__ import annotations

import time
from typing import TYPE_CHECKING, Iterator

from janusq.client.errors import JobFailedError, WaitTimeoutError
from janusq.client.job import Job
from janusq.client.sse import COMPLETED, Event, JobEvents

if TYPE_CHECKING:
    from janusq.client.client import Client

# The API sends a `: ping` every JANUS_EVENTS_HEARTBEAT seconds (15 by default) on a quiet stream;
# a stream silent much longer than that is taken for a dead connection and reopened.
STREAM_READ_TIMEOUT = 60.0


class JobHandle:
    """`job` is the Job as last seen; refresh(), wait() and events() bring it up to date."""

    def __init__(self, client: "Client", job: Job):
        self._client, self.job = client, job

    @property
    def id(self) -> str:
        return self.job.id

    def __repr__(self) -> str:
        return f"JobHandle({self.job.id!r}, status={self.job.status!r})"

    def refresh(self) -> Job:
        self.job = self._client.jobs.get(self.id)
        return self.job

    def cancel(self) -> Job:
        """Cancels it: a queued job at once, a running one at its next checkpoint (status still
        `running` until then). A finished job raises ConflictError."""
        self.job = self._client.jobs.cancel(self.id)
        return self.job

    def events(self, last_event_id: str | None = None) -> Iterator[Event]:
        """The job's events (server-sent events) as they happen: its history first, then live,
        ending with the `completed` event (data: the job as JSON; `job` is updated from it).
        A dropped connection is reopened with Last-Event-ID: no event is lost or repeated."""
        for event in self._events(last_event_id, None, heartbeats=False):
            yield event

    def wait(self, timeout: float | None = None) -> Job:
        """The finished job (whichever way it ended: check `job.status`, or use raise_for_failure).
        WaitTimeoutError after `timeout` seconds; the job goes on."""
        if self.job.done:
            return self.job
        deadline = None if timeout is None else time.monotonic() + timeout
        for event in self._events(None, deadline, heartbeats=True):
            if event is not None and event.type == COMPLETED:
                return self.job
            if deadline is not None and time.monotonic() >= deadline:
                break
        if self.refresh().done:  # finished just as the time ran out
            return self.job
        raise WaitTimeoutError(self.job, timeout or 0)

    def images(self, pil: bool = False) -> list:
        """The images of a succeeded generate job: PNG bytes, or PIL images with `pil`."""
        self.job.images = [self._client.download(url, pil=pil) for url in self.job.image_urls]
        return self.job.images

    def raise_for_failure(self) -> Job:
        """The job if it succeeded; JobFailedError (carrying it) if it failed, was canceled or expired."""
        if self.job.done and not self.job.succeeded:
            raise JobFailedError(self.job)
        return self.job

    def _events(self, last_event_id, deadline, heartbeats) -> Iterator[Event | None]:
        def open_stream(after: str | None):
            read_timeout = STREAM_READ_TIMEOUT
            if deadline is not None:  # wake for the deadline even on a silent stream
                read_timeout = max(0.1, min(read_timeout, deadline - time.monotonic()))
            return self._client.open_events(self.id, after, read_timeout)

        for event in JobEvents(open_stream, self._client.sleep, last_event_id, heartbeats):
            if event is not None and event.type == COMPLETED and isinstance(event.data, dict):
                self.job = Job.from_api(event.data)
            yield event

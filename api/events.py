"""GET /v1/jobs/<id>/events: a job's events as server-sent events (text/event-stream).

The stream sends the job's events from the event log (jobs/events.py) as they happen, each with
its id, then `completed` (the job exactly as GET /v1/jobs/<id> returns it) and closes. A client
reconnecting with Last-Event-ID gets the events after that one; a client connecting after the job
finished gets the history and `completed` at once. Another tenant's job is a 404.

While it waits a stream holds no database connection and makes no query: it parks on one Event
that two per-process watchers set, the event watcher (api/event_watch.py: the job has new events)
and the wait room's (api/waits.py: the job finished, read from the database, which ends a stream
even if the worker died before its last events reached Redis). A stream takes a place in the wait
room, so streams and `Prefer: wait` requests together stay under the per-process cap; a stream
beyond it is declined: it sends the events so far (and `completed` if the job has finished), then
a `retry:` hint and closes, and the client reconnects with Last-Event-ID as after any drop.
"""
from __future__ import annotations

import json
import threading
import time
from datetime import timedelta
from functools import partial
from typing import Callable

from flask import Blueprint, Response, g, request

from api.auth import authenticate
from api.errors import ApiError
from api.routes import job_out
from api.services import Services, services
from jobs import service, states
from jobs.events import STATUS, Event, InvalidEventId
from jobs.models import utcnow

events_api = Blueprint("events_api", __name__)
events_api.before_request(authenticate)

COMPLETED_ID = "completed"  # the id of the last event; reconnecting after it is answered 204
# How long after a job finished (as the database says) its stream waits for the job's final
# `status` event, appended to Redis just after the commit, before it sends `completed` anyway.
FINAL_EVENT_GRACE = timedelta(seconds=2)
RECONNECT_MILLISECONDS = 2000  # sent as `retry:`: how soon an EventSource reconnects after a drop


@events_api.get("/v1/jobs/<job_id>/events")
def job_events(job_id: str):
    svc = services()
    if request.accept_mimetypes.best_match(["text/event-stream"]) is None:
        raise ApiError.of("not_acceptable", "this resource is only sent as text/event-stream", "Accept")
    after = _last_event_id(svc)
    job = service.read_job(svc.db, job_id, owner=g.tenant)
    if job is None:
        raise ApiError.of("not_found", f"no job {job_id}")
    if after == COMPLETED_ID:  # the client has it all: 204 tells an EventSource to stop reconnecting
        return Response(status=204)
    # `completed` shows the job exactly as GET /v1/jobs/<id> does.
    render = partial(job_out, svc, root=request.host_url.rstrip("/"))
    stream = JobStream(svc, job, after, render)
    return Response(iter(stream), mimetype="text/event-stream",
                    headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


def _last_event_id(svc: Services) -> str | None:
    """Last-Event-ID (an EventSource sends it on reconnecting), or ?last_event_id= for clients
    that cannot set headers."""
    text = request.headers.get("Last-Event-ID") or request.args.get("last_event_id")
    if not text or text == COMPLETED_ID:
        return text or None
    try:
        return svc.db.events.check_id(text.strip())
    except InvalidEventId as exc:
        raise ApiError.of("validation_error", str(exc), "Last-Event-ID") from None


class JobStream:
    """One client's stream of one job's events; iterating it yields the response's chunks."""

    def __init__(self, svc: Services, job, after: str | None, render: Callable[[object], dict],
                 until: float | None = None):
        """`until`: a time.monotonic() after which the stream gives up on a job still going (None:
        never; a subclass says how, see timed_out)."""
        self.svc, self.job, self.after, self.render, self.until = svc, job, after, render, until
        self.log = svc.db.events
        self.final_status_seen = False

    def __iter__(self):
        yield self.opening()  # also sends the headers at once
        with self.svc.waits.place() as placed:
            yield from (self._follow() if placed else self._declined())

    # What goes out, overridden by api/openai_compat.py's stream of chat.completion.chunk events.
    def opening(self) -> str:
        return f"retry: {RECONNECT_MILLISECONDS}\n\n"

    def send(self, event: Event):
        yield sse(event.id, event.kind, event.data)

    def complete(self, job):
        yield sse(COMPLETED_ID, "completed", self.render(job))

    def timed_out(self):
        return iter(())

    def _declined(self):
        """Over the process's cap: what there is now, then the client comes back for the rest."""
        yield from self._new_events()
        if self.job.status in states.TERMINAL:
            yield from self._completed(self.job)
        else:
            yield ": declined: this API process holds as many streams as it may; reconnect\n\n"

    def _follow(self):
        job_id, bell = self.job.id, threading.Event()
        finished = self.job if self.job.status in states.TERMINAL else None
        self.svc.event_watch.watch(job_id, bell, self.after)
        if finished is None:
            self.svc.waits.watch(job_id, bell)
        try:
            while True:
                bell.clear()  # before reading: whatever comes after the read sets it again
                yield from self._new_events()
                finished = finished or self.svc.waits.finished(job_id)
                if self.final_status_seen or (finished is not None and self._grace_over(finished, bell)):
                    yield from self._completed(finished)
                    return
                if self.until is not None and time.monotonic() >= self.until:
                    yield from self.timed_out()
                    return
                if not bell.wait(self._heartbeat()):
                    yield ": ping\n\n"
        finally:
            self.svc.event_watch.unwatch(job_id, bell)
            if self.job.status not in states.TERMINAL:
                self.svc.waits.unwatch(job_id, bell)

    def _new_events(self):
        for event in self.log.read(self.job.id, self.after):
            yield from self.send(event)
            self.after = event.id
            self.final_status_seen = self.final_status_seen or _is_final_status(event)

    def _grace_over(self, finished, bell: threading.Event) -> bool:
        """Whether to end without the job's final `status` event: when it has had its time to
        arrive (it may never: the worker died between its commit and Redis), else wait for it."""
        left = (finished.finished_at + FINAL_EVENT_GRACE - utcnow()).total_seconds() if finished.finished_at else 0
        if left <= 0:
            return True
        bell.wait(left)
        return False

    def _completed(self, finished):
        job = service.read_job(self.svc.db, self.job.id, owner=self.job.owner) or finished
        if job is not None:
            yield from self.complete(job)

    def _heartbeat(self) -> float:
        """Seconds to park before a `: ping`; no longer than the time left before `until`."""
        beat = self.svc.settings.events_heartbeat
        return beat if self.until is None else max(0.0, min(beat, self.until - time.monotonic()))


def _is_final_status(event: Event) -> bool:
    return event.kind == STATUS and event.data.get("status") in states.TERMINAL


def sse(event_id: str, kind: str, data: dict) -> str:
    """One server-sent event (the JSON has no newlines, so one data line)."""
    return f"id: {event_id}\nevent: {kind}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"

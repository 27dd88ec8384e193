"""One watcher per API process for the job events its open streams wait for (api/events.py).

A stream parks on an Event; this watcher asks the event log, in one call for every job streamed
by this process, which of them have new events, and sets their streams' Events; each stream then
reads its own job's new events. On Redis the call is one XREAD BLOCK over the streamed jobs'
streams (answered as soon as any has news, or after BLOCK_SECONDS); on the embedded database it
is one query every TableEventLog.NEWS_INTERVAL. With no stream open the watcher waits and asks
nothing. Like api/waits.py, under gevent the watcher is a greenlet and the streams greenlets.
"""
from __future__ import annotations

import logging
import os
import threading
import time

from jobs.oneline import first_line

log = logging.getLogger(__name__)
# How long one XREAD waits for news: a stream opened meanwhile is watched from the next one on
# (its own first read covers what came before), so this bounds the delay of its first news.
BLOCK_SECONDS = 0.25
RETRY_AFTER_FAILURE_SECONDS = 1.0


class EventWatch:
    def __init__(self, event_log, block_seconds: float = BLOCK_SECONDS):
        self.log, self.block_seconds = event_log, block_seconds
        self._lock = threading.Lock()
        self._bells: dict[str, set[threading.Event]] = {}
        self._known: dict[str, str] = {}  # per job: the newest event id the watcher has seen
        self._someone_watches = threading.Event()
        self._watcher_pid: int | None = None
        self._failing = False

    def watch(self, job_id: str, bell: threading.Event, after: str | None) -> None:
        """Set `bell` whenever the job has events after those seen so far. Register before reading
        the job's events: anything appended after that read rings the bell."""
        with self._lock:
            self._bells.setdefault(job_id, set()).add(bell)
            self._known.setdefault(job_id, after or self.log.START)
            self._someone_watches.set()
            if self._watcher_pid != os.getpid():  # started in the serving process, after any fork
                self._watcher_pid = os.getpid()
                threading.Thread(target=self._watch, name="janus-event-watcher", daemon=True).start()

    def unwatch(self, job_id: str, bell: threading.Event) -> None:
        with self._lock:
            bells = self._bells.get(job_id, set())
            bells.discard(bell)
            if not bells:
                self._bells.pop(job_id, None)
                self._known.pop(job_id, None)

    @property
    def watched(self) -> int:
        return len(self._bells)

    def _watch(self) -> None:
        while True:
            self._someone_watches.wait()
            known = self._snapshot()
            if not known:
                continue
            try:
                news = self.log.news(known, self.block_seconds)
            except Exception as exc:  # noqa: BLE001 - the watcher must outlive Redis or the database
                self._note_failure(exc)
                time.sleep(RETRY_AFTER_FAILURE_SECONDS)
                continue
            if self._failing:
                self._failing = False
                log.info("event watcher: the event log answers again")
            self._ring(news)

    def _snapshot(self) -> dict[str, str]:
        with self._lock:
            if not self._bells:
                self._someone_watches.clear()
            return dict(self._known)

    def _ring(self, news: dict[str, str]) -> None:
        with self._lock:
            for job_id, head in news.items():
                if job_id in self._bells:  # not unwatched meanwhile
                    self._known[job_id] = head
                    for bell in self._bells[job_id]:
                        bell.set()

    def _note_failure(self, exc: Exception) -> None:
        # Streams then only send heartbeats; the wait room still ends them when their job finishes.
        if not self._failing:
            self._failing = True
            log.warning("event watcher: cannot read the event log (%s); retrying every %.0f s",
                        first_line(exc),
                        RETRY_AFTER_FAILURE_SECONDS)

"""Fault injection for the fault tests; inert unless JANUS_TEST_CRASH_ON_PROMPT is set.

A generate job whose prompt equals that variable kills its worker process outright, as a
segfault in native code would: no exception, no cleanup, no result. This is the poison job of
tests/faults; the variable is read from the environment only, never from settings or requests.
"""
from __future__ import annotations

import logging
import os

log = logging.getLogger(__name__)

CRASH_EXIT_CODE = 70


def crash_if_poisoned(batch) -> None:
    poison = os.environ.get("JANUS_TEST_CRASH_ON_PROMPT")
    if not poison:
        return
    for job in batch:
        if job.params.get("prompt") == poison:
            log.error("fault injection: job %s is poison; killing this worker process", job.id)
            os._exit(CRASH_EXIT_CODE)

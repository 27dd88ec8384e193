"""Racing threads for tests of what must hold when several threads arrive at once."""
from __future__ import annotations

import threading
from typing import Callable


def all_at_once(action: Callable[[], object], count: int) -> tuple[list, list[Exception]]:
    """Runs `action` on `count` threads released together (a barrier); their results, and what
    they raised (any exception is a finding, reported by the caller's assertion)."""
    results, failures, start = [], [], threading.Barrier(count)

    def run():
        start.wait()
        try:
            results.append(action())
        except Exception as exc:  # noqa: BLE001 - handed to the caller
            failures.append(exc)

    threads = [threading.Thread(target=run) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results, failures

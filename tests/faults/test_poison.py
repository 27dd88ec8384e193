"""Fault 6: a poison job (it kills its worker every time) fails after its attempts; others go on."""
from __future__ import annotations

import time

from tests.faults.conftest import figure, wait_rows

POISON = "poison pill"


def run_burst(stack, database_url, prompts: list[str]) -> tuple[float, dict]:
    started = time.monotonic()
    job_ids = [stack.submit(type="generate", prompt=prompt, num_images=1, seed=index).json()["id"]
               for index, prompt in enumerate(prompts)]
    done = wait_rows(database_url, job_ids, lambda r: r.status in ("succeeded", "failed"), timeout=180, stack=stack)
    return time.monotonic() - started, {row.params["prompt"]: row for row in done.values()}


def test_a_poison_job_fails_after_its_attempts_and_the_others_keep_going(make_stack, database_url):
    stack = make_stack(workers=2, worker_env={"JANUS_TEST_CRASH_ON_PROMPT": POISON}, max_batch_images=4)
    stack.wait(stack.submit(type="generate", prompt="warm-up", num_images=1).json()["id"])
    normal = [f"normal {index}" for index in range(8)]

    baseline_seconds, _ = run_burst(stack, database_url, normal)
    poisoned_seconds, rows = run_burst(stack, database_url, [POISON] + normal)

    poison = rows.pop(POISON)
    figure(f"poison job: failed ({poison.error_code}) after {poison.attempts} attempts; 8 other jobs took "
           f"{poisoned_seconds:.1f} s beside it vs {baseline_seconds:.1f} s without it "
           f"({8 / poisoned_seconds:.2f} vs {8 / baseline_seconds:.2f} jobs/s)")
    assert poison.status == "failed" and poison.error_code == "attempts_exhausted" and poison.attempts == 3
    assert {row.status for row in rows.values()} == {"succeeded"}
    # Each of its crashes costs a worker a restart and its batch-mates one retry, never more.
    assert max(row.attempts for row in rows.values()) <= 2

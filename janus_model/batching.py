"""Many jobs, few batches: plan which images/answers run together, run them, hand back outcomes.

A job bigger than what fits in memory is split across consecutive batches (its images keep
their own seeds, so the split does not change them). Each job keeps its own progress callback:
a job whose callback says stop leaves the batch (its rows finish as ballast, their output is
dropped) while the others go on.
"""

from dataclasses import dataclass


@dataclass(frozen=True)
class Slice:
    request: int  # index into the caller's request list
    start: int  # first image / answer of that request in this batch
    count: int


def plan_batches(sizes: list[int], capacity: int) -> list[list[Slice]]:
    """Pack requests of `sizes` samples, in order, into batches of at most `capacity` samples."""
    if capacity < 1:
        raise ValueError("capacity must be at least 1")
    batches: list[list[Slice]] = []
    current: list[Slice] = []
    room = capacity
    for request, size in enumerate(sizes):
        start = 0
        while start < size:
            if room == 0:
                batches.append(current)
                current, room = [], capacity
            count = min(room, size - start)
            current.append(Slice(request, start, count))
            start += count
            room -= count
    if current:
        batches.append(current)
    return batches


@dataclass
class JobProgress:
    """One job's progress across the batches it spans, and whether it asked to stop."""

    callback: object
    total: int  # steps of the whole job
    offset: int = 0  # steps done in its earlier batches
    stopped: bool = False

    def report(self, done_in_batch: int) -> None:
        if self.stopped or self.callback is None:
            return
        if self.callback(self.offset + done_in_batch, self.total) is False:
            self.stopped = True


def batch_counts(batches: list[list[Slice]], requests: int) -> list[int]:
    counts = [0] * requests
    for batch in batches:
        for part in batch:
            counts[part.request] += 1
    return counts


def step_reporter(jobs: list[JobProgress], batch: list[Slice], steps_for):
    """on_step for one batch: report to each job in it; False once every one of them stopped."""
    members = [jobs[part.request] for part in batch]

    def on_step(done: int) -> bool:
        for part, job in zip(batch, members):
            job.report(min(done, steps_for(part)))
        return not all(job.stopped for job in members)

    return on_step


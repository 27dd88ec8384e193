"""The figures of one `janusq bench --fleet` run, computed from the jobs' own rows.

- completed_jobs_per_s: jobs finished per second in the steady window (the offer, less its first
  WARM_UP share while queues form). A batch that straddles an edge of the window counts for the
  share of its span inside it, so one long batch more or less does not swing the figure.
- ideal_jobs_per_s: W x one worker's rate, computed (not measured) from the profile at the batch
  sizes the run really had: the batches' jobs over the model time the profile gives those
  batches (x the scale). So completed / ideal (scaling_efficiency) is the share of the workers'
  time in the window spent inside the simulated model; the rest is the queue's cost (claims,
  messages, database writes, storage, idle waits) and this machine's.
- dispatch: on one worker, a batch's end -> its next batch's start while that batch's jobs were
  already queued (time the queue adds between jobs); queue_wait: a job's created -> started.
- lost: accepted jobs that did not end succeeded. duplicated: jobs an image of which was stored
  twice (versions in the S3 bucket) or that ran to completion on a worker that had lost them.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from types import SimpleNamespace

from janusq.bench_queue import back_to_back_gaps, percentile

WARM_UP = 0.1


@dataclass
class Observed:
    offered: object  # fleet_load.Offered
    rows: list[dict]
    waited_s: float
    commits: int
    peak_db_connections: int
    peak_server_connections: int
    max_connections: int
    memory: dict
    stored_versions: dict[str, int]
    lost_race_jobs: set[str]
    killed: list[int] = field(default_factory=list)
    cores: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Batch:
    jobs: int
    start: float
    end: float
    model_s: float


def report(observed: Observed, *, workers: int, profile, model: str, rate: float, options) -> dict:
    offered = observed.offered
    duration = offered.ended - offered.started
    window = (offered.started + WARM_UP * duration, offered.ended)
    batches = batches_of(observed.rows, profile, options.scale)
    credited, model_time = _in_window(batches, window)
    window_s = window[1] - window[0]
    completed = credited / window_s
    one_worker = credited / model_time if model_time else 0.0
    succeeded = {row["id"] for row in observed.rows if row["status"] == "succeeded"}
    duplicated = _duplicated(observed)
    waits = [_ms(row["started_at"], row["created_at"]) for row in observed.rows if row["started_at"]]
    return {
        "bench": "fleet", "workers": workers, "model": model, "storage": options.storage,
        "faults": options.faults, "duration_s": round(duration, 1),
        "offered_jobs_per_s": round(rate, 3), "accepted": len(offered.accepted), "refused": len(offered.refused),
        "completed_jobs_per_s": round(completed, 3), "ideal_jobs_per_s": round(workers * one_worker, 3),
        "ideal_basis": "computed: W x the profile's rate at this run's batch sizes",
        "scaling_efficiency": round(completed / (workers * one_worker), 3) if one_worker else None,
        "mean_batch_jobs": round(sum(b.jobs for b in batches) / len(batches), 2) if batches else None,
        "dispatch_p50_ms": percentile(dispatch_gaps(observed.rows), 50),
        "dispatch_p99_ms": percentile(dispatch_gaps(observed.rows), 99),
        "queue_wait_p50_ms": percentile(waits, 50), "queue_wait_p99_ms": percentile(waits, 99),
        "submit_p50_ms": percentile(offered.submit_ms, 50), "submit_p99_ms": percentile(offered.submit_ms, 99),
        "db_commits_per_s": round(observed.commits / duration, 1),
        "db_connections_peak": observed.peak_db_connections,
        "server_connections_peak": observed.peak_server_connections, "max_connections": observed.max_connections,
        "lost": len(set(offered.accepted) - succeeded), "unfinished": _unfinished(observed, succeeded),
        "duplicated": len(duplicated),
        "retried_jobs": sum(1 for row in observed.rows if (row["attempts"] or 0) > 1),
        "workers_killed": len(observed.killed), "drain_s": round(observed.waited_s, 1), **observed.memory,
        "cpu_cores": observed.cores,
    }


def _unfinished(observed: Observed, succeeded: set[str]) -> dict[str, int]:
    """How the lost jobs ended (or where they were stuck), by status; `missing`: no row at all."""
    statuses = {row["id"]: row["status"] for row in observed.rows}
    counts: dict[str, int] = {}
    for job_id in set(observed.offered.accepted) - succeeded:
        status = statuses.get(job_id, "missing")
        counts[status] = counts.get(status, 0) + 1
    return counts


def batches_of(rows: list[dict], profile, scale: float) -> list[Batch]:
    """The batches succeeded jobs ran in, with their span and the profile's model time."""
    grouped: dict[str, list[dict]] = {}
    for row in rows:
        if row["status"] == "succeeded" and row["started_at"] and row["finished_at"]:
            grouped.setdefault(((row["result"] or {}).get("batch") or {}).get("id") or row["id"], []).append(row)
    batches = []
    for members in grouped.values():
        if members[0]["type"] == "generate":
            model_s = profile.image_batch_seconds(sum(row["params"]["num_images"] for row in members))
        else:
            model_s = profile.answer_batch_seconds(len(members), max(row["params"]["max_new_tokens"] for row in members))
        batches.append(Batch(len(members), min(row["started_at"] for row in members).timestamp(),
                             max(row["finished_at"] for row in members).timestamp(), model_s * scale))
    return batches


def _in_window(batches: list[Batch], window: tuple[float, float]) -> tuple[float, float]:
    """(jobs credited to the window, model seconds credited to it), each batch by its overlap."""
    jobs = model = 0.0
    for batch in batches:
        overlap = min(batch.end, window[1]) - max(batch.start, window[0])
        if overlap <= 0:
            continue
        share = overlap / max(batch.end - batch.start, 1e-9)
        jobs += batch.jobs * share
        model += batch.model_s * share
    return jobs, model


def dispatch_gaps(rows: list[dict]) -> list[float]:
    by_worker: dict[str, list] = {}
    for row in rows:
        if row["status"] == "succeeded":
            by_worker.setdefault(row["worker"] or "", []).append(SimpleNamespace(**row))
    return [gap for members in by_worker.values() for gap in back_to_back_gaps(members)]


def _duplicated(observed: Observed) -> set[str]:
    twice_stored = {key.split("/")[-2] for key, versions in observed.stored_versions.items() if versions > 1}
    return twice_stored | set(observed.lost_race_jobs)


def _ms(later: datetime, earlier: datetime) -> float:
    return (later - earlier).total_seconds() * 1000

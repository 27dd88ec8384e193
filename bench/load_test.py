#!/usr/bin/env python3
"""Loopback load test: bounded clients submit jobs for a bounded time, then every accepted job
must reach a final state (succeeded, failed, canceled or expired) within the drain timeout.

Reports submit latency (p50, p99, max), errors by HTTP status, throughput, how the accepted
jobs ended, their end-to-end time, and how many were lost (accepted, then never final). The
exit status is 0 only if nothing was lost, no submit failed and no job failed.

    janusq run &                                        # or any running stack
    python bench/load_test.py --clients 8 --duration 10
    JANUS_API_KEY=jq_... python bench/load_test.py --url http://127.0.0.1:8000

With auth on, the key's rate limit (JANUS_RATE_LIMIT_PER_MINUTE, 600 by default) counts every
submit and poll: give the stack under test a higher limit (0: none), or the 429s are the figure.
A run that fills the tenant's JANUS_MAX_UNFINISHED_JOBS (1000) gets 429s too; fewer clients or
a shorter --duration keep the queue below it.

Standard library only, so it runs with any Python 3.11.
"""
from __future__ import annotations

import argparse
import base64
import itertools
import json
import os
import struct
import sys
import threading
import time
import urllib.error
import urllib.request
import zlib
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime

TERMINAL = {"succeeded", "failed", "canceled", "expired"}


def tiny_png(size: int = 16) -> bytes:
    """A solid-colour RGB PNG, made without Pillow."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    rows = b"".join(b"\0" + b"\x80\x20\x20" * size for _ in range(size))
    header = struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows))
            + chunk(b"IEND", b""))


def job_body(job_type: str, num_images: int, max_new_tokens: int, index: int) -> dict:
    if job_type == "mixed":  # one generate job in ten: image jobs are far slower on a CPU
        job_type = "generate" if index % 10 == 9 else "understand"
    if job_type == "generate":
        return {"type": "generate", "prompt": f"load test {index}", "num_images": num_images}
    image = "data:image/png;base64," + base64.b64encode(tiny_png()).decode()
    return {"type": "understand", "question": f"load test {index}?", "image": image,
            "max_new_tokens": max_new_tokens}


class Api:
    def __init__(self, url: str, key: str | None, timeout: float):
        self.url = url.rstrip("/")
        self.headers = {"Content-Type": "application/json"}
        if key:
            self.headers["Authorization"] = f"Bearer {key}"
        self.timeout = timeout

    def call(self, method: str, path: str, body: dict | None = None) -> tuple[int, dict, dict]:
        """(status, JSON body, headers); status 0 when the connection itself failed."""
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.url + path, data=data, method=method, headers=self.headers)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return response.status, json.loads(response.read() or b"{}"), dict(response.headers)
        except urllib.error.HTTPError as error:
            try:
                payload = json.loads(error.read() or b"{}")
            except ValueError:
                payload = {}
            return error.code, payload, dict(error.headers)
        except (urllib.error.URLError, OSError, TimeoutError) as error:
            return 0, {"error": {"message": str(error)}}, {}


@dataclass
class Tally:
    lock: threading.Lock = field(default_factory=threading.Lock)
    latencies: list[float] = field(default_factory=list)  # seconds, accepted submits only
    accepted: list[str] = field(default_factory=list)
    errors: Counter = field(default_factory=Counter)  # HTTP status (0: no connection) -> count
    error_samples: dict = field(default_factory=dict)
    submitted: int = 0


def submit_loop(api: Api, args, tally: Tally, deadline: float, next_index) -> None:
    while time.monotonic() < deadline:
        index = next_index()
        if args.max_jobs and index >= args.max_jobs:
            return
        body = job_body(args.type, args.num_images, args.max_new_tokens, index)
        started = time.perf_counter()
        status, payload, headers = api.call("POST", "/v1/jobs", body)
        elapsed = time.perf_counter() - started
        with tally.lock:
            tally.submitted += 1
            if status in (200, 202) and payload.get("id"):
                tally.latencies.append(elapsed)
                tally.accepted.append(payload["id"])
            else:
                tally.errors[status] += 1
                tally.error_samples.setdefault(status, payload.get("error"))
        if status == 429:  # back off as asked, within the test's time
            time.sleep(min(float(headers.get("Retry-After", 1)), max(0.0, deadline - time.monotonic())))
        elif args.pause:
            time.sleep(args.pause)


def drain(api: Api, job_ids: list[str], timeout: float) -> tuple[dict[str, dict], list[str]]:
    """Poll until every job is final or the timeout passes: (final jobs by id, ids never final)."""
    finished: dict[str, dict] = {}
    pending = list(job_ids)
    deadline = time.monotonic() + timeout
    while pending and time.monotonic() < deadline:
        still = []
        for job_id in pending:
            status, job, headers = api.call("GET", f"/v1/jobs/{job_id}")
            if status == 200 and job.get("status") in TERMINAL:
                finished[job_id] = job
            else:
                still.append(job_id)  # not final yet, a 404 (lost row) or a failed poll
                if status == 429:
                    time.sleep(min(float(headers.get("Retry-After", 1)), max(0.0, deadline - time.monotonic())))
        pending = still
        if pending:
            time.sleep(0.5)
    return finished, pending


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0-100); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, min(len(ordered), int(-(-q * len(ordered) // 100))))
    return ordered[rank - 1]


def _seconds_between(job: dict, start: str, end: str) -> float | None:
    if not job.get(start) or not job.get(end):
        return None
    parse = lambda stamp: datetime.fromisoformat(stamp.replace("Z", "+00:00"))  # noqa: E731
    return (parse(job[end]) - parse(job[start])).total_seconds()


def run(args) -> dict:
    api = Api(args.url, args.key or os.environ.get("JANUS_API_KEY"), args.request_timeout)
    tally = Tally()
    indexes = itertools.count()

    def next_index() -> int:
        with tally.lock:
            return next(indexes)

    started = time.monotonic()
    deadline = started + args.duration
    threads = [threading.Thread(target=submit_loop, args=(api, args, tally, deadline, next_index), daemon=True)
               for _ in range(args.clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    submit_seconds = time.monotonic() - started
    finished, lost = drain(api, tally.accepted, args.drain_timeout)
    drain_seconds = time.monotonic() - started - submit_seconds
    outcomes = Counter(job["status"] for job in finished.values())
    end_to_end = [s for s in (_seconds_between(j, "created_at", "finished_at") for j in finished.values())
                  if s is not None]
    ms = lambda value: round(value * 1000, 1) if value is not None else None  # noqa: E731
    return {
        "url": args.url, "type": args.type, "clients": args.clients, "duration_s": args.duration,
        "submitted": tally.submitted, "accepted": len(tally.accepted),
        "errors": sum(tally.errors.values()), "errors_by_status": {str(k): v for k, v in tally.errors.items()},
        "error_samples": {str(k): v for k, v in tally.error_samples.items()},
        "submit_rate_per_s": round(tally.submitted / submit_seconds, 1) if submit_seconds else None,
        "submit_latency_ms": {"p50": ms(percentile(tally.latencies, 50)), "p99": ms(percentile(tally.latencies, 99)),
                              "max": ms(max(tally.latencies) if tally.latencies else None)},
        "outcomes": dict(outcomes), "lost": len(lost), "lost_ids": lost[:20],
        "drain_s": round(drain_seconds, 1),
        "end_to_end_s": {"p50": percentile(end_to_end, 50), "p99": percentile(end_to_end, 99)},
    }


def report(result: dict) -> str:
    latency = result["submit_latency_ms"]
    lines = [
        f"load test: {result['clients']} clients x {result['duration_s']} s of {result['type']} jobs "
        f"against {result['url']}",
        f"  submitted {result['submitted']} ({result['submit_rate_per_s']}/s), accepted {result['accepted']}, "
        f"errors {result['errors']} {result['errors_by_status'] or ''}".rstrip(),
        f"  submit latency ms: p50 {latency['p50']}  p99 {latency['p99']}  max {latency['max']}",
        f"  outcomes: {result['outcomes']}; lost {result['lost']} (drained in {result['drain_s']} s)",
        f"  end-to-end s (created -> finished): p50 {result['end_to_end_s']['p50']}  "
        f"p99 {result['end_to_end_s']['p99']}",
    ]
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--key", help="API key (default: $JANUS_API_KEY; none when auth is off)")
    parser.add_argument("--clients", type=int, default=8, help="concurrent submitting clients (1-256)")
    parser.add_argument("--duration", type=float, default=10, help="seconds of submitting (at most 3600)")
    parser.add_argument("--max-jobs", type=int, default=0, help="stop submitting after this many (0: no cap)")
    parser.add_argument("--pause", type=float, default=0.0, help="seconds each client waits between submits")
    parser.add_argument("--type", choices=("understand", "generate", "mixed"), default="understand",
                        help="understand jobs are quick on the tiny model; generate ones take seconds on a CPU")
    parser.add_argument("--num-images", type=int, default=1)
    parser.add_argument("--max-new-tokens", type=int, default=4)
    parser.add_argument("--drain-timeout", type=float, default=600, help="seconds to wait for jobs to finish")
    parser.add_argument("--request-timeout", type=float, default=30)
    parser.add_argument("--json", action="store_true", help="print only the JSON result")
    args = parser.parse_args(argv)
    if not 1 <= args.clients <= 256 or not 0 < args.duration <= 3600:
        parser.error("--clients must be 1-256 and --duration in (0, 3600]")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    result = run(args)
    if not args.json:
        print(report(result))
    print(json.dumps(result, sort_keys=True))
    failed = result["outcomes"].get("failed", 0)
    return 0 if result["lost"] == 0 and result["errors"] == 0 and failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())

"""`janusq worker --gpus all|N|0,2,5` and `--replicas N`: one worker process each, supervised.

Each child is a whole `janusq worker` (its own Celery worker, named gpu<i>@host or w<i>@host),
started with CUDA_VISIBLE_DEVICES already set, so torch in that process only ever sees its own
GPU (as cuda:0). The parent never starts CUDA: it counts GPUs through NVML.

- A child that dies (a crash, or a model that would not load) is restarted after a backoff
  that doubles up to MAX_BACKOFF_SECONDS, and resets once a child has run STABLE_SECONDS.
- SIGTERM or SIGINT: every child gets SIGTERM and finishes the batch in hand (Celery's warm
  shutdown), and the parent exits 0 when all have.
- A second signal: every child's process group is killed at once. Their jobs are not lost: the
  sweeper requeues them when their leases expire.
"""
from __future__ import annotations

import logging
import os
import signal
import subprocess
import time
from dataclasses import dataclass, field

from janusq.processes import janusq_argv

log = logging.getLogger("janusq.supervisor")

FIRST_BACKOFF_SECONDS = 1.0
MAX_BACKOFF_SECONDS = 300.0
STABLE_SECONDS = 60.0
POLL_SECONDS = 0.2


class SupervisorError(Exception):
    """A request the supervisor cannot carry out (bad --gpus, no CUDA): one line for the user."""


@dataclass
class Child:
    name: str
    env: dict[str, str]
    argv: list[str]
    process: subprocess.Popen | None = None
    started: float = 0.0
    backoff: float = FIRST_BACKOFF_SECONDS
    restart_at: float | None = None
    restarts: int = field(default=0)

    def start(self) -> None:
        self.process = subprocess.Popen(self.argv, env=self.env, start_new_session=True)
        self.started, self.restart_at = time.monotonic(), None
        log.info("worker %s started (pid %d)", self.name, self.process.pid)

    def signal(self, signum: int, group: bool = False) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        try:
            if group:
                os.killpg(self.process.pid, signum)
            else:
                self.process.send_signal(signum)
        except ProcessLookupError:
            pass


def gpu_indices(spec: str) -> list[str]:
    """CUDA_VISIBLE_DEVICES values, one per child, for `--gpus all`, `--gpus N` or `--gpus 0,2,5`."""
    visible = _visible_gpu_ids()
    if not visible:
        raise SupervisorError("--gpus needs CUDA, and no CUDA device is visible here "
                              "(use --replicas N to run workers on the CPU)")
    spec = spec.strip().lower()
    if spec == "all":
        return visible
    if spec.isdigit() and "," not in spec:
        count = int(spec)
        if not 1 <= count <= len(visible):
            raise SupervisorError(f"--gpus {spec}: {len(visible)} GPU(s) are visible here")
        return visible[:count]
    try:
        chosen = [int(part) for part in spec.split(",") if part.strip()]
    except ValueError:
        raise SupervisorError(f"--gpus {spec!r}: use all, a count, or indices like 0,2,5") from None
    bad = [index for index in chosen if not 0 <= index < len(visible)]
    if bad or not chosen or len(set(chosen)) != len(chosen):
        raise SupervisorError(f"--gpus {spec}: indices must be distinct and below {len(visible)}")
    return [visible[index] for index in chosen]


def _visible_gpu_ids() -> list[str]:
    # NVML counts devices without creating a CUDA context in this process.
    os.environ.setdefault("PYTORCH_NVML_BASED_CUDA_CHECK", "1")
    import torch

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    inherited = [part.strip() for part in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if part.strip()]
    # Indices are relative to what this process sees; a child needs the ids the driver knows.
    return inherited[:count] if inherited else [str(index) for index in range(count)]


def gpu_children(spec: str, queues: str) -> list[Child]:
    children = []
    for position, device_id in enumerate(gpu_indices(spec)):
        env = {**os.environ, "CUDA_VISIBLE_DEVICES": device_id, "JANUS_DEVICE": "cuda"}
        name = f"gpu{position}"
        children.append(Child(name, env, janusq_argv("worker", f"--queues={queues}", f"--name={name}")))
    return children


def replica_children(count: int, queues: str) -> list[Child]:
    if count < 1:
        raise SupervisorError(f"--replicas {count}: at least 1")
    return [Child(f"w{index}", dict(os.environ), janusq_argv("worker", f"--queues={queues}", f"--name=w{index}"))
            for index in range(count)]


class Supervisor:
    def __init__(self, children: list[Child]):
        self.children = children
        self.signals = 0

    def run(self) -> int:
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._on_signal)
        for child in self.children:
            child.start()
        try:
            while not self._finished():
                self._tend()
                time.sleep(POLL_SECONDS)
        finally:
            self._kill_all()
        return 0

    def _on_signal(self, signum, _frame) -> None:
        self.signals += 1
        if self.signals == 1:
            log.info("stopping: each worker finishes its batch (signal again to stop at once)")
            for child in self.children:
                child.signal(signal.SIGTERM)
        else:
            log.warning("stopping now: killing every worker; running jobs return to the queue when their leases expire")
            for child in self.children:
                child.signal(signal.SIGKILL, group=True)

    def _finished(self) -> bool:
        return self.signals > 0 and all(child.process is None or child.process.poll() is not None
                                        for child in self.children)

    def _tend(self) -> None:
        """Restart children that died, each after its backoff; none once we are stopping."""
        now = time.monotonic()
        for child in self.children:
            if self.signals:
                continue
            code = child.process.poll() if child.process else None
            if code is not None and child.restart_at is None:
                if now - child.started >= STABLE_SECONDS:
                    child.backoff = FIRST_BACKOFF_SECONDS
                log.warning("worker %s exited with code %s; restarting in %.0f s", child.name, code, child.backoff)
                child.restart_at = now + child.backoff
                child.backoff = min(child.backoff * 2, MAX_BACKOFF_SECONDS)
            elif child.restart_at is not None and now >= child.restart_at:
                child.restarts += 1
                child.start()

    def _kill_all(self) -> None:
        """Nothing outlives the supervisor (an exception here, or children of children)."""
        for child in self.children:
            child.signal(signal.SIGKILL, group=True)
            if child.process is not None:
                child.process.wait()

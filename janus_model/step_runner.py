"""Runs the decode step of one batch shape: eagerly, compiled, or replayed from a CUDA graph.

A CUDA graph records the step's kernels once and replays them with one launch, which removes the
Python and launch overhead that dominates a small-batch decode step. It needs every tensor at a
fixed address, hence StepState. Graphs and their states are kept per bucket (batch size, cache
length) and reused by every later batch of that shape; all graphs share one memory pool, since
only one batch runs at a time.
"""

import logging
from collections import OrderedDict
from functools import partial

import torch

from janus_model.decode_step import StepState, decode_step

log = logging.getLogger(__name__)


class StepRunner:
    def __init__(self, mode, state: StepState, step, graph_pool=None):
        self.mode, self.state, self.step = mode, state, step
        self.graph = None
        if graph_pool is not None:
            self.graph = capture(partial(step, mode, state), graph_pool)

    def __call__(self) -> None:
        if self.graph is not None:
            self.graph.replay()
        else:
            self.step(self.mode, self.state)


def capture(step, pool) -> torch.cuda.CUDAGraph:
    """Warm the step up on a side stream (allocations, lazy cache init, autotuning), then record it."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(2):
            step()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph, pool=pool):
        step()
    return graph


def compiled(step):
    """torch.compile with fixed shapes: one specialisation per bucket, each warmed when first built."""
    # Each bucket is a recompile; the default limit (8) would silently fall back to eager.
    torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 64)
    return torch.compile(step, dynamic=False)


class RunnerCache:
    """Runners by (mode, samples, cache length), least recently used dropped past `max_bytes` of cache."""

    def __init__(self, device: torch.device, cuda_graphs: bool, compile_step: bool, keep: bool,
                 max_bytes: int | None = None):
        self.device = device
        self.cuda_graphs = cuda_graphs
        # Unbucketed runners hold a cache sized to one batch and are cheap to build: not kept.
        self.keep = keep
        self.step = compiled(decode_step) if compile_step else decode_step
        self.max_bytes = max_bytes
        self.pool = torch.cuda.graph_pool_handle() if self.cuda_graphs else None
        self.runners: OrderedDict[tuple, StepRunner] = OrderedDict()

    def get(self, mode, samples: int, cache_length: int, cache_bytes: int) -> StepRunner:
        key = (type(mode).__name__, samples, cache_length)
        runner = self.runners.pop(key, None)
        if runner is None:
            self._make_room(cache_bytes)
            state = StepState(mode, samples, cache_length, self.device)
            runner = StepRunner(mode, state, self.step, self.pool)
            if self.cuda_graphs:
                log.info("captured decode step for %s x%d, cache %d", key[0], samples, cache_length)
        if self.keep:
            runner.cache_bytes = cache_bytes
            self.runners[key] = runner
        return runner

    def _make_room(self, incoming: int) -> None:
        if self.max_bytes is None:
            return
        while self.runners and sum(r.cache_bytes for r in self.runners.values()) + incoming > self.max_bytes:
            self.runners.popitem(last=False)

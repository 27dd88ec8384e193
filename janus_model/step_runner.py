"""Runs the decode steps of one batch shape: eagerly, or replayed from CUDA graphs.

A CUDA graph records the step's kernels once and replays them with one launch, which removes the
Python and launch overhead that dominates a small-batch decode step. It needs every tensor at a
fixed address (decode_step's buffers) and fixed shapes, so a shape (mode, batch size, top-p or
not) gets one graph per attention window: attention reads the cache up to the live prefix rounded
up to WINDOW positions, not the whole cache. All graphs share one memory pool, since only one
batch runs at a time.

A capture that fails (a driver or library that cannot be captured) must not fail the jobs: that
shape then runs eagerly, with one warning.
"""

import logging
from functools import partial

import torch

from janus_model.decode_step import StepState, decode_step

log = logging.getLogger(__name__)

WINDOW = 64  # attention window granularity, in cache positions


def window_for(position: int, length: int) -> int:
    """Columns a step writing at `position` must attend to, rounded up to WINDOW, within the cache."""
    return min(-(-(position + 1) // WINDOW) * WINDOW, length)


def windows(length: int) -> list[int]:
    return sorted({window_for(position, length) for position in range(0, length, WINDOW)} | {length})


class StepRunner:
    """Decode steps for one (mode, samples, top-p) shape on its state; `run(position)` does one."""

    def __init__(self, mode, state: StepState, decoder, top_p: bool, graph_pool=None, capture=None):
        self.label = f"{mode.name} x{state.samples}{' top-p' if top_p else ''}"
        self.state = state
        self.step = partial(decode_step, mode, state, decoder, top_p=top_p)
        self.graphs: dict[int, torch.cuda.CUDAGraph] = {}
        if graph_pool is not None:
            self._capture_all(capture or capture_graph, graph_pool)

    def run(self, position: int) -> None:
        window = window_for(position, self.state.length)
        graph = self.graphs.get(window)
        if graph is not None:
            graph.replay()
        else:
            self.step(window=window)

    def _capture_all(self, capture, pool) -> None:
        """One graph per window, before the batch's prompt pass (capturing runs the step, which
        writes into the state; the prompt pass then starts the batch from a clean state)."""
        try:
            for window in windows(self.state.length):
                self.state.rewind()
                self.graphs[window] = capture(partial(self.step, window=window), pool)
        except Exception as exc:  # noqa: BLE001 - any capture failure: serve this shape eagerly
            self.graphs.clear()
            _recover_from_failed_capture()
            log.warning("CUDA graph capture failed for %s (%s: %s); this batch shape runs eagerly", self.label,
                        type(exc).__name__, str(exc).splitlines()[0] if str(exc) else "")
        self.state.rewind()


def capture_graph(step, pool) -> torch.cuda.CUDAGraph:
    """Warm the step up on a side stream (allocations, lazy init, compilation), then record it."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        step()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph, pool=pool):
        step()
    return graph


def _recover_from_failed_capture() -> None:
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        try:
            torch.cuda.synchronize()
        except Exception:  # noqa: BLE001 - a sticky error will surface on the eager step instead
            pass

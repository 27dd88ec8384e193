"""The bandwidth floor of a decode workload, and the device's copy bandwidth to compute it with.

Decoding is memory-bound: each step reads every weight it uses once (for the whole batch) and the
keys and values written so far. The floor of a workload is those bytes, summed over its steps,
over the bandwidth the device really reaches in a large device-to-device copy (bytes read plus
bytes written), measured in the same run. No implementation can beat it by much; the benchmark
prints each measurement's fraction of it.

Counted: every forward pass (the prompt pass and each decode step) reads the decoder layers, the
final norm and the mode's head (the generation head and aligner, or the LM head); each decode
step reads the live prefix of the cache (each row's keys and values up to its new position).
Not counted: embedding-table rows, the vision encoder and the VQ decoder (once per job, not per
token), and activations; so the floor is a slight underestimate: the real floor is higher.
"""

import time
from dataclasses import dataclass

import torch

COPY_BYTES = 2 * 10**9  # well past any cache, small next to the models
COPY_REPEATS = 10


def copy_bandwidth(device: torch.device) -> float:
    """Bytes per second moved by a large device-to-device copy, reads plus writes (median)."""
    size = COPY_BYTES if device.type == "cuda" else COPY_BYTES // 8
    source = torch.randint(0, 255, (size,), dtype=torch.uint8, device=device)
    target = torch.empty_like(source)
    for _ in range(3):
        target.copy_(source)
    times = [_timed_copy(source, target) for _ in range(COPY_REPEATS)]
    del source, target
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return 2 * size / sorted(times)[len(times) // 2]


def _timed_copy(source: torch.Tensor, target: torch.Tensor) -> float:
    if source.device.type != "cuda":
        started = time.perf_counter()
        target.copy_(source)
        return time.perf_counter() - started
    begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    begin.record()
    target.copy_(source)
    end.record()
    end.synchronize()
    return begin.elapsed_time(end) / 1000


def module_bytes(modules) -> int:
    return sum(parameter.numel() * parameter.element_size() for module in modules for parameter in module.parameters())


@dataclass(frozen=True)
class BatchShape:
    """One planned batch: its real rows (padding not counted), their prompt length, its passes."""

    rows: int
    prompt_tokens: int
    passes: int  # forward passes: the prompt pass plus each decode step


def weight_bytes_per_pass(model, mode) -> int:
    language_model = model.model.language_model
    return module_bytes([language_model.layers, language_model.norm, *mode.head_modules()])


def floor_bytes(batch: BatchShape, weights_per_pass: int, kv_bytes_per_position: int) -> int:
    """Weights once per pass, plus each decode step's live keys and values."""
    first, last = batch.prompt_tokens + 1, batch.prompt_tokens + batch.passes - 1  # live lengths, steps 1..
    live_positions = (first + last) * (last - first + 1) // 2 if last >= first else 0
    return batch.passes * weights_per_pass + batch.rows * live_positions * kv_bytes_per_position


def floor_seconds(batches: list[BatchShape], weights_per_pass: int, kv_bytes_per_position: int,
                  bandwidth: float) -> float:
    return sum(floor_bytes(batch, weights_per_pass, kv_bytes_per_position) for batch in batches) / bandwidth

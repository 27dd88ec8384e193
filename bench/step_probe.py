"""Where a Janus-1.3B decode step's time goes, one part at a time, against the bandwidth each needs.

    python3 bench/step_probe.py          # on a GPU; prints one JSON line per part and shape

Times (CUDA-graph replay of 24 calls, like one step's layers) the four projections at small
batch, and attention over a 640-position window through each SDPA backend that accepts the call,
and reports each as GB/s of the bytes it must read. Run it before choosing what to fuse next.
"""

import json

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

HIDDEN, INTERMEDIATE, HEADS, HEAD_DIM, LAYERS, WINDOW = 2048, 5632, 16, 128, 24, 640


def replay_seconds(function, repeats: int = 20) -> float:
    """Seconds per call: `function` 24 times in one graph (a step's layers), replayed."""
    for _ in range(2):
        function()
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for _ in range(LAYERS):
            function()
    graph.replay()
    begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    begin.record()
    for _ in range(repeats):
        graph.replay()
    end.record()
    end.synchronize()
    return begin.elapsed_time(end) / 1000 / repeats / LAYERS


def report(part: str, rows: int, seconds: float, bytes_read: int, **extra) -> None:
    print(json.dumps({"bench": "step_probe", "part": part, "rows": rows, "us": round(seconds * 1e6, 2),
                      "gb_per_s": round(bytes_read / seconds / 1e9, 1), **extra}), flush=True)


def projections(rows: int) -> None:
    x = torch.randn(rows, 1, HIDDEN, device="cuda", dtype=torch.bfloat16)
    for name, out, inp in (("qkv", 3 * HIDDEN, HIDDEN), ("o", HIDDEN, HIDDEN), ("gate_up", 2 * INTERMEDIATE, HIDDEN),
                           ("down", HIDDEN, INTERMEDIATE)):
        weight = torch.randn(out, inp, device="cuda", dtype=torch.bfloat16)
        source = x if inp == HIDDEN else torch.randn(rows, 1, inp, device="cuda", dtype=torch.bfloat16)
        report(f"linear_{name}", rows, replay_seconds(lambda: F.linear(source, weight)), weight.numel() * 2)


def attention(rows: int) -> None:
    q = torch.randn(rows, HEADS, 1, HEAD_DIM, device="cuda", dtype=torch.bfloat16)
    cache = torch.randn(2, rows, HEADS, WINDOW + 32, HEAD_DIM, device="cuda", dtype=torch.bfloat16)
    keys, values = cache[0, :, :, :WINDOW], cache[1, :, :, :WINDOW]
    mask = torch.zeros(rows, 1, 1, WINDOW, device="cuda", dtype=torch.bfloat16)
    kv_bytes = 2 * rows * HEADS * WINDOW * HEAD_DIM * 2
    for backend in (SDPBackend.EFFICIENT_ATTENTION, SDPBackend.CUDNN_ATTENTION, SDPBackend.MATH):
        try:
            with sdpa_kernel(backend):
                seconds = replay_seconds(lambda: F.scaled_dot_product_attention(q, keys, values, attn_mask=mask))
            report("attention_masked", rows, seconds, kv_bytes, backend=backend.name)
        except Exception as exc:  # noqa: BLE001 - a backend that refuses the call is a finding too
            print(json.dumps({"bench": "step_probe", "part": "attention_masked", "rows": rows,
                              "backend": backend.name, "error": str(exc).splitlines()[0][:200]}), flush=True)
    # The engine's mask is a strided view [R, 1, 1, window] of a persistent [R, L] mask: does
    # cuDNN still take it? (In the engine it was not picked; the contiguous mask above is.)
    persistent = torch.zeros(rows, WINDOW + 32, device="cuda", dtype=torch.bfloat16)
    strided = persistent[:, None, None, :WINDOW]
    for backend in (SDPBackend.CUDNN_ATTENTION, SDPBackend.EFFICIENT_ATTENTION):
        try:
            with sdpa_kernel(backend):
                seconds = replay_seconds(lambda: F.scaled_dot_product_attention(q, keys, values, attn_mask=strided))
            report("attention_strided_mask", rows, seconds, kv_bytes, backend=backend.name)
        except Exception as exc:  # noqa: BLE001
            print(json.dumps({"bench": "step_probe", "part": "attention_strided_mask", "rows": rows,
                              "backend": backend.name, "error": str(exc).splitlines()[0][:200]}), flush=True)
    with sdpa_kernel(SDPBackend.FLASH_ATTENTION):  # no mask: the bound a varlen kernel could reach
        seconds = replay_seconds(lambda: F.scaled_dot_product_attention(q, keys, values))
    report("attention_unmasked", rows, seconds, kv_bytes, backend="FLASH_ATTENTION")


def copy_bandwidth() -> float:
    source = torch.empty(2 * 10**9, dtype=torch.uint8, device="cuda")
    target = torch.empty_like(source)
    target.copy_(source)
    begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    begin.record()
    for _ in range(10):
        target.copy_(source)
    end.record()
    end.synchronize()
    return 2 * source.numel() * 10 / (begin.elapsed_time(end) / 1000)


if __name__ == "__main__":
    print(json.dumps({"bench": "step_probe", "device": torch.cuda.get_device_name(),
                      "copy_gb_per_s": round(copy_bandwidth() / 1e9, 1)}), flush=True)
    for rows in (2, 32, 64):
        projections(rows)
        attention(rows)

"""The decoder's elementwise pieces: eager reference math, and the same math through torch.compile.

Each function is written exactly as transformers' Llama layers compute it (same operations, same
order, float32 inside the norm), so the eager versions reproduce transformers' numbers; they are
what the CPU parity tests run. On a GPU each eager function is several kernels (a norm is seven,
rotary ten); compiled, each becomes one fused kernel, which is most of what makes a decode step
at batch 1-2 fast (the step is bound by kernel count there, not bandwidth).

Compilation uses dynamic shapes, so one compile serves every batch size, prompt width and
attention window: warm-up compiles a handful of small functions once, not a graph per bucket.
"""

import logging
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

log = logging.getLogger(__name__)


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """LlamaRMSNorm: float32 statistics, the result cast back before the weight."""
    dtype = x.dtype
    x32 = x.to(torch.float32)
    variance = x32.pow(2).mean(-1, keepdim=True)
    return weight * (x32 * torch.rsqrt(variance + eps)).to(dtype)


def add_rms_norm(residual: torch.Tensor, delta: torch.Tensor, weight: torch.Tensor,
                 eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The residual add that ends one block and the norm that starts the next, in one pass."""
    summed = residual + delta
    return summed, rms_norm(summed, weight, eps)


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def split_rotate(qkv: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, heads: int,
                 kv_heads: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """[R, T, (H + 2 KVH) * D] fused projection -> q [R, H, T, D], k and v [R, KVH, T, D], q and k rotated.

    cos, sin: [R, T, D], the rotary table rows of each token's position.
    """
    rows, length, _ = qkv.shape
    head_dim = cos.shape[-1]
    q, k, v = qkv.view(rows, length, heads + 2 * kv_heads, head_dim).transpose(1, 2).split(
        [heads, kv_heads, kv_heads], dim=1)
    cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)
    return q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin, v


def swiglu(gate_up: torch.Tensor) -> torch.Tensor:
    """silu(gate) * up over the fused [.., 2 * I] projection."""
    gate, up = gate_up.chunk(2, dim=-1)
    return F.silu(gate) * up


@dataclass(frozen=True)
class Kernels:
    rms_norm: Callable
    add_rms_norm: Callable
    split_rotate: Callable
    swiglu: Callable
    compiled: bool


EAGER = Kernels(rms_norm, add_rms_norm, split_rotate, swiglu, compiled=False)


def compiled_kernels() -> Kernels:
    """The same functions through torch.compile (dynamic shapes; compiled on first call).

    The KV-cache write stays outside: compiled in (a mutation of a view of the arena), inductor
    copied the cache instead of writing in place, and steps ran 2-4x slower (BENCHMARKS.md)."""
    # Batch size, prompt width and window vary; without this each would count as a recompile,
    # and past the default limit dynamo silently falls back to eager.
    torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 64)

    def build(function):
        return torch.compile(function, dynamic=True, fullgraph=True)

    return Kernels(build(rms_norm), build(add_rms_norm), build(split_rotate), build(swiglu), compiled=True)


def working_kernels(wanted: bool, probe: Callable[[Kernels], None]) -> Kernels:
    """Compiled kernels when wanted and `probe` runs them; else eager, with one warning saying why."""
    if not wanted:
        return EAGER
    kernels = compiled_kernels()
    try:
        probe(kernels)
    except Exception as exc:  # noqa: BLE001 - any compiler failure means: serve eagerly
        log.warning("torch.compile failed (%s: %s); the decoder runs eagerly", type(exc).__name__,
                    str(exc).splitlines()[0] if str(exc) else "")
        return EAGER
    return kernels

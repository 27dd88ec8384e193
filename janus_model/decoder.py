"""Janus' language model (a Llama decoder) run on its own weights, shaped for fast decoding.

transformers' LlamaModel is the reference and loads the weights; this runs the same arithmetic
with what a decode step needs and a general-purpose forward does not offer:
- fused projections: q, k and v are one matrix product, gate and up another. The fused weights
  are the only copy: the transformers modules are re-pointed at row slices of them, so stock
  generate() still works on the same memory;
- one KV arena (janus_model.kv_arena) written in place at a device-side index, so a CUDA graph
  can replay the step without Python;
- attention over a window of the cache (the live prefix rounded up), not the whole cache;
- an additive mask the caller keeps across steps, not rebuilt in every layer;
- the residual add fused with the next norm, and the elementwise pieces compiled when asked
  (janus_model.kernels).
"""

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from janus_model.kernels import EAGER, Kernels

ATTENTION_KINDS = ("sdpa", "cudnn", "eager")
# "cudnn": SDPA asked for cuDNN's kernel first, with a contiguous mask. Alone (bench/step_probe.py)
# it read a masked decode window 2-3x faster than the memory-efficient kernel SDPA picks by
# itself; inside the engine, asked with the strided mask view, SDPA did not take it. Not yet
# measured in the engine with the contiguous mask: a variant for the next GPU run (bench/gpu.sh).
CUDNN_FIRST = [SDPBackend.CUDNN_ATTENTION, SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH]


class FusedLayer:
    def __init__(self, layer: nn.Module):
        attention, mlp = layer.self_attn, layer.mlp
        self.qkv_weight, self.qkv_bias = fuse_rows([attention.q_proj, attention.k_proj, attention.v_proj])
        self.gate_up_weight, self.gate_up_bias = fuse_rows([mlp.gate_proj, mlp.up_proj])
        self.o_proj, self.down_proj = attention.o_proj, mlp.down_proj
        self.input_norm = layer.input_layernorm.weight
        self.post_attention_norm = layer.post_attention_layernorm.weight


class FusedDecoder:
    def __init__(self, language_model: nn.Module, kernels: Kernels = EAGER, attention: str = "sdpa"):
        config = language_model.config
        if getattr(config, "hidden_act", "silu") != "silu":
            raise ValueError(f"the decoder supports silu MLPs, this model uses {config.hidden_act!r}")
        if attention not in ATTENTION_KINDS:
            raise ValueError(f"attention must be one of {ATTENTION_KINDS}, got {attention!r}")
        self.layers = [FusedLayer(layer) for layer in language_model.layers]
        self.final_norm = language_model.norm.weight
        self.eps = config.rms_norm_eps
        self.heads = config.num_attention_heads
        self.kv_heads = config.num_key_value_heads
        self.head_dim = getattr(config, "head_dim", None) or config.hidden_size // self.heads
        self.scale = self.head_dim ** -0.5
        self.cos, self.sin = rotary_tables(language_model, config.max_position_embeddings)
        self.kernels = kernels
        self.attention = attention

    def __call__(self, x: torch.Tensor, positions: torch.LongTensor, kv: torch.Tensor, write_at: torch.LongTensor,
                 mask: torch.Tensor, window: int) -> torch.Tensor:
        """x [R, T, D] embeddings at `positions` [R, T] -> final-normed hidden states [R, T, D].

        kv: the arena view [layers, 2, R_cap, KVH, L_cap, D]; this batch uses its first R rows.
        write_at: [T] cache columns the new keys and values go to (a device tensor: graphs advance it).
        mask: [R, 1, T, window] additive (0 or -inf) over the first `window` columns of the cache.
        """
        rows = x.shape[0]
        cos, sin = self.cos[positions], self.sin[positions]
        if self.attention == "cudnn":
            mask = mask.contiguous()  # once a step, not per layer
        # Compiled kernels for decode steps only: a prompt pass runs once a batch, and compiling
        # its shapes too would double the compile time for nothing measurable.
        kernels = self.kernels if x.shape[1] == 1 else EAGER
        residual, hidden = x, kernels.rms_norm(x, self.layers[0].input_norm, self.eps)
        for index, layer in enumerate(self.layers):
            cache = kv[index, :, :rows]
            attended = self._attend(kernels, layer, hidden, cos, sin, cache, write_at, mask, window)
            residual, hidden = kernels.add_rms_norm(residual, layer.o_proj(attended), layer.post_attention_norm,
                                                    self.eps)
            mixed = layer.down_proj(kernels.swiglu(F.linear(hidden, layer.gate_up_weight, layer.gate_up_bias)))
            following = self.layers[index + 1].input_norm if index + 1 < len(self.layers) else self.final_norm
            residual, hidden = kernels.add_rms_norm(residual, mixed, following, self.eps)
        return hidden

    def _attend(self, kernels, layer: FusedLayer, hidden, cos, sin, cache, write_at, mask, window) -> torch.Tensor:
        rows, length, _ = hidden.shape
        qkv = F.linear(hidden, layer.qkv_weight, layer.qkv_bias)
        q, k, v = kernels.split_rotate(qkv, cos, sin, self.heads, self.kv_heads)
        cache[0].index_copy_(2, write_at, k)
        cache[1].index_copy_(2, write_at, v)
        keys, values = cache[0, :, :, :window], cache[1, :, :, :window]
        out = self._attention(q, keys, values, mask)
        return out.transpose(1, 2).reshape(rows, length, self.heads * self.head_dim)

    def _attention(self, q, keys, values, mask) -> torch.Tensor:
        if self.attention == "eager":
            # transformers' eager attention: float32 softmax over explicit scores.
            keys, values = _repeat_kv(keys, self.heads // self.kv_heads), _repeat_kv(values, self.heads // self.kv_heads)
            scores = torch.matmul(q, keys.transpose(2, 3)) * self.scale + mask
            weights = scores.softmax(dim=-1, dtype=torch.float32).to(q.dtype)
            return torch.matmul(weights, values)
        grouped = {"enable_gqa": True} if self.kv_heads != self.heads else {}
        if self.attention == "cudnn":
            with sdpa_kernel(CUDNN_FIRST, set_priority=True):
                return F.scaled_dot_product_attention(q, keys, values, attn_mask=mask, scale=self.scale, **grouped)
        return F.scaled_dot_product_attention(q, keys, values, attn_mask=mask, scale=self.scale, **grouped)


def fuse_rows(linears: list[nn.Linear]) -> tuple[torch.Tensor, torch.Tensor | None]:
    """One [sum of outputs, inputs] weight for linears that share an input, and its bias.

    The modules are re-pointed at row slices of the fused weight, so there is one copy in memory.
    A second engine over the same model finds them fused already and reuses the weight.
    """
    weights = [linear.weight for linear in linears]
    fused = getattr(linears[0], "janusq_fused_weight", None)
    # Outside inference mode: a Parameter cannot be re-pointed at an inference tensor.
    with torch.inference_mode(False), torch.no_grad():
        if fused is None or not _are_rows_of(weights, fused):
            fused = torch.cat([weight.detach() for weight in weights])
            start = 0
            for linear in linears:
                rows = linear.weight.shape[0]
                linear.weight.data = fused[start:start + rows]
                start += rows
            linears[0].janusq_fused_weight = fused
        biases = [linear.bias for linear in linears]
        bias = None if biases[0] is None else torch.cat([b.detach() for b in biases])
    return fused, bias


def _are_rows_of(weights: list[torch.Tensor], fused: torch.Tensor) -> bool:
    start = 0
    for weight in weights:
        if weight.data_ptr() != fused[start:].data_ptr():
            return False
        start += weight.shape[0]
    return start == fused.shape[0]


def rotary_tables(language_model: nn.Module, positions: int) -> tuple[torch.Tensor, torch.Tensor]:
    """[positions, D] cos and sin, computed by the model's own rotary module (same values it uses)."""
    device, dtype = language_model.norm.weight.device, language_model.norm.weight.dtype
    probe = torch.empty((), device=device, dtype=dtype)
    with torch.inference_mode():
        cos, sin = language_model.rotary_emb(probe, torch.arange(positions, device=device).unsqueeze(0))
    return cos[0].clone(), sin[0].clone()


def _repeat_kv(states: torch.Tensor, groups: int) -> torch.Tensor:
    return states if groups == 1 else states.repeat_interleave(groups, dim=1)

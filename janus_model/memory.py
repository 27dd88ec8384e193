"""How many images or answers fit in one batch, from a memory budget.

The budget is JANUS_BATCH_MEMORY_MB when set, else JANUS_GPU_MEMORY_FRACTION of the device
(host RAM on a CPU) less what is already allocated (the weights), capped by what the driver
reports free. A fixed reserve comes off it (the VQ decoder's activations, the graphs' working
memory); the rest holds the KV arena. A sample costs its KV cache, exactly (its real length:
prompt + new tokens), plus working memory for logits, noise and the prompt pass, with a margin.
"""

import os
from dataclasses import dataclass

import torch

from janus_model.sampling import NOISE_BLOCK_STEPS

WORKING_MEMORY_MARGIN = 1.25
# Activation bytes per output pixel in the VQ decoder (128 channels at full size, a few alive).
VQ_DECODE_BYTES_PER_PIXEL_ELEMENT = 128 * 6
# Step intermediates in the graph pool, cuBLAS workspaces, the rotary tables: small, bounded.
GPU_WORKING_RESERVE = 256 * 2**20


@dataclass(frozen=True)
class MemoryPolicy:
    fraction: float = 0.9
    explicit_mb: int = 0  # 0: measure

    def budget_bytes(self, device: torch.device) -> int:
        if self.explicit_mb:
            return self.explicit_mb * 2**20
        if device.type == "cuda":
            return cuda_budget(device, self.fraction)
        return int(host_memory_bytes() * self.fraction)


def cuda_budget(device: torch.device, fraction: float) -> int:
    free, total = torch.cuda.mem_get_info(device)
    allocated = torch.cuda.memory_allocated(device)
    cached_free = torch.cuda.memory_reserved(device) - allocated
    return max(0, min(int(total * fraction) - allocated, free + cached_free))


def host_memory_bytes() -> int:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def fixed_reserve_bytes(device: torch.device, element_size: int, vq_decode_chunk: int) -> int:
    """What the budget keeps back from the KV arena: VQ decoding and the steps' working memory."""
    if device.type != "cuda":
        return 0
    return vq_decode_chunk * vq_decode_bytes_per_image(384, 384, element_size) + GPU_WORKING_RESERVE


def bytes_per_sample(mode, kv_bytes_per_position: int, cache_length: int, prompt_width: int,
                     hidden_size: int, element_size: int) -> int:
    """Memory one image (two rows) or one answer (one row) needs while its batch decodes."""
    rows = mode.rows_per_sample
    cache = rows * cache_length * kv_bytes_per_position  # exact: the arena holds no more
    sampling = (NOISE_BLOCK_STEPS + 6) * mode.vocab_size * 4  # noise block, logits, top-p sort
    prompt_pass = rows * prompt_width * hidden_size * element_size * 12  # activations, attention
    return int(cache + (sampling + prompt_pass) * WORKING_MEMORY_MARGIN)


def vq_decode_bytes_per_image(height: int, width: int, element_size: int) -> int:
    return height * width * VQ_DECODE_BYTES_PER_PIXEL_ELEMENT * element_size

"""One KV cache buffer for the whole engine, shared by every batch shape and both modes.

A batch of R rows over L positions uses a view [layers, 2 (keys, values), R_cap, heads, L_cap,
head_dim] of one flat allocation, where (R_cap, L_cap) is the mode's layout: the largest batch
and cache length that mode has needed so far. Smaller batches use its first R rows, shorter caches
its first L columns, so a CUDA graph captured on the layout serves all of them. Only one batch
runs at a time, so image and text layouts can share the same memory.

The allocation is exact (rows x positions x bytes per position of the largest layout): nothing
is rounded up, and nothing is kept per bucket.
"""

import torch


class KVArena:
    def __init__(self, config, dtype: torch.dtype, device: torch.device):
        self.layers = config.num_hidden_layers
        self.kv_heads = config.num_key_value_heads
        self.head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
        self.dtype, self.device = dtype, device
        self.storage: torch.Tensor | None = None

    @property
    def elements_per_position(self) -> int:
        """Elements one row needs per position: keys and values of every layer."""
        return self.layers * 2 * self.kv_heads * self.head_dim

    def bytes_per_position(self) -> int:
        return self.elements_per_position * torch.empty((), dtype=self.dtype).element_size()

    def allocated_bytes(self) -> int:
        return 0 if self.storage is None else self.storage.numel() * self.storage.element_size()

    def fits(self, rows: int, length: int) -> bool:
        return self.storage is not None and rows * length * self.elements_per_position <= self.storage.numel()

    def grow(self, rows: int, length: int) -> None:
        """Make room for a rows x length layout. The old buffer must have no users left: its
        memory is given back before the new one is taken, so the two never coexist."""
        self.release()
        # Zeros, not empty: attention gives masked columns weight 0, and 0 * NaN (a stray bit
        # pattern in fresh memory) would still poison the output.
        self.storage = torch.zeros(rows * length * self.elements_per_position, dtype=self.dtype, device=self.device)

    def view(self, rows: int, length: int) -> torch.Tensor:
        """[layers, 2, rows, kv_heads, length, head_dim] over the start of the buffer."""
        if not self.fits(rows, length):
            raise ValueError(f"the KV arena has no room for {rows} rows x {length} positions")
        used = rows * length * self.elements_per_position
        return self.storage[:used].view(self.layers, 2, rows, self.kv_heads, length, self.head_dim)

    def release(self) -> None:
        self.storage = None
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

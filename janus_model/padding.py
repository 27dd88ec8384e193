"""Left padding and attention masks for a batch of prompts of different lengths.

Prompts are right-aligned so every row's last prompt token sits at the same column and new
tokens are written at one shared cache position. Each row keeps its own positions (0 at its first
real token), so a prompt sees the same rotary positions alone or padded inside a batch.
"""

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class PaddedPrompts:
    ids: torch.LongTensor  # [R, L] left-padded with pad_id
    valid: torch.BoolTensor  # [R, L] False on padding
    lengths: torch.LongTensor  # [R] real prompt lengths

    @property
    def width(self) -> int:
        return self.ids.shape[1]

    def position_ids(self) -> torch.LongTensor:
        """[R, L]: 0.. along each row's real tokens; padding gets 0 (it is masked anyway)."""
        return (self.valid.long().cumsum(dim=1) - 1).clamp(min=0)


def left_pad(prompts: list[torch.LongTensor], pad_id: int, width: int | None = None) -> PaddedPrompts:
    """Stack 1-D prompts into [R, width] (width defaults to the longest prompt)."""
    longest = max(len(prompt) for prompt in prompts)
    width = longest if width is None else width
    if width < longest:
        raise ValueError(f"width {width} is shorter than the longest prompt ({longest})")
    device = prompts[0].device
    ids = torch.full((len(prompts), width), pad_id, dtype=torch.long, device=device)
    valid = torch.zeros((len(prompts), width), dtype=torch.bool, device=device)
    for row, prompt in enumerate(prompts):
        ids[row, width - len(prompt):] = prompt
        valid[row, width - len(prompt):] = True
    lengths = torch.tensor([len(prompt) for prompt in prompts], dtype=torch.long, device=device)
    return PaddedPrompts(ids, valid, lengths)


def prefill_mask(valid: torch.BoolTensor, cache_length: int) -> torch.BoolTensor:
    """[R, 1, L, cache_length] boolean mask for the prompt pass: causal, padding keys hidden.

    A padding query may see only itself: a row with nothing to attend to would turn softmax into
    NaN, and NaN keys in the cache poison later steps even where they are masked out (0 * NaN).
    """
    rows, width = valid.shape
    device = valid.device
    query = torch.arange(width, device=device).unsqueeze(-1)
    key = torch.arange(cache_length, device=device).unsqueeze(0)
    causal = key <= query  # [L, C]; columns past the prompt are all False
    own_column = key == query
    keys_valid = torch.zeros((rows, cache_length), dtype=torch.bool, device=device)
    keys_valid[:, :width] = valid
    mask = (causal.unsqueeze(0) & keys_valid.unsqueeze(1)) | own_column.unsqueeze(0)
    return mask.unsqueeze(1)


def round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple

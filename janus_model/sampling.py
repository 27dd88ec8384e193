"""Choosing the next token for a batch of rows, each with its own temperature, top-p and seed.

Sampling is the Gumbel-max trick: argmax(logits / T + g) with g = -log(-log(u)), u uniform, picks
token i with probability softmax(logits / T)_i, exactly as multinomial sampling does. Unlike
`torch.multinomial` it needs no generator inside the step, so the step can be captured in a CUDA
graph: the noise is drawn outside, per row, from that row's own seeded generator. A row's draws
therefore depend only on its seed, never on which other rows share the batch.

Greedy rows (temperature 0) get zero noise and an inverse temperature of 1: argmax(logits), the
very value transformers' greedy search picks.
"""

import torch

# Steps of noise drawn per call to a row's generator: few calls, bounded memory.
NOISE_BLOCK_STEPS = 32


def row_seed(job_seed: int, index: int) -> int:
    """The seed of a job's index-th image (or answer): fixed by the job, not by the batch."""
    return (job_seed * 1_000_003 + index * 7919 + 1) % (2**63 - 1)


def choose_tokens(
    logits: torch.Tensor,
    inverse_temperature: torch.Tensor,
    noise: torch.Tensor,
    top_p: torch.Tensor | None = None,
) -> torch.LongTensor:
    """[R, V] float logits -> [R] token ids. inverse_temperature [R, 1]; noise [R, V]; top_p [R, 1]."""
    scaled = logits * inverse_temperature
    if top_p is not None:
        scaled = keep_top_p(scaled, top_p)
    return (scaled + noise).argmax(dim=-1)


def keep_top_p(scaled: torch.Tensor, top_p: torch.Tensor) -> torch.Tensor:
    """Nucleus filter, per row: drop the least likely tokens whose total probability is <= 1 - top_p.

    The most likely token always stays, so a greedy row's argmax is untouched.
    """
    ascending, order = scaled.sort(dim=-1)
    cumulative = ascending.softmax(dim=-1).cumsum(dim=-1)
    drop_sorted = cumulative <= (1 - top_p)
    drop_sorted[:, -1] = False
    drop = drop_sorted.scatter(1, order, drop_sorted)
    return scaled.masked_fill(drop, float("-inf"))


class NoiseStreams:
    """Gumbel noise for every row of a batch, one seeded generator per sampled row.

    `fill(out)` writes the next step's noise into a fixed [R, V] buffer (the CUDA graph reads it
    there). Rows with seed None (greedy or padding) stay zero.
    """

    def __init__(self, seeds: list[int | None], vocab_size: int, device: torch.device):
        self.device = device
        self.vocab_size = vocab_size
        self.rows = [index for index, seed in enumerate(seeds) if seed is not None]
        self.generators = [torch.Generator(device=device).manual_seed(seeds[row]) for row in self.rows]
        self.block = torch.empty((len(self.rows), NOISE_BLOCK_STEPS, vocab_size), device=device)
        self.position = NOISE_BLOCK_STEPS
        self.row_index = torch.tensor(self.rows, dtype=torch.long, device=device)

    def fill(self, out: torch.Tensor) -> None:
        if not self.rows:
            return
        if self.position == NOISE_BLOCK_STEPS:
            self._draw_block()
        out.index_copy_(0, self.row_index, self.block[:, self.position])
        self.position += 1

    def _draw_block(self) -> None:
        for slot, generator in enumerate(self.generators):
            uniform = torch.rand((NOISE_BLOCK_STEPS, self.vocab_size), generator=generator, device=self.device)
            # clamp keeps log() finite; a u that small would never win the argmax anyway
            self.block[slot] = -torch.log(-torch.log(uniform.clamp_(min=1e-20)))
        self.position = 0


def inverse_temperatures(temperatures: list[float], device: torch.device) -> torch.Tensor:
    """[R, 1]: 1/T for sampled rows, 1 for greedy rows (whose noise is zero)."""
    values = [1.0 / t if t > 0 else 1.0 for t in temperatures]
    return torch.tensor(values, dtype=torch.float32, device=device).unsqueeze(-1)

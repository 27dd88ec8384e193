"""How long a simulated decode step takes: seconds per step as a function of the batch's rows.

Source: our own engine's H200 figures (BENCHMARKS.md, "Runs", run 2: the default engine, CUDA
graphs + compiled kernels + SDPA, bf16, 2026-11-27), each with its bandwidth floor per step
(floor_s / forward passes). No H100 was measured; an H100 curve is derived from the H200 one:

    step_h100(rows) = step_h200(rows) + floor_h200(rows) * (H200_COPY / H100_COPY - 1)

i.e. the memory traffic of a step (its floor) takes longer by the ratio of the two cards' copy
bandwidths (4.23 TB/s measured on the H200 in those runs, about 3.0 TB/s on an H100 according to
../shared/notes/perf-baseline.md), while the rest of the step (launch latency and the kernels'
gap to the floor) stays the same: both cards are the same GH100 die at the same clocks.

Between measured batch sizes the curve is interpolated linearly; beyond them (and where only one
size was measured) each extra row costs its floor: the keys and values it reads per step.
Figures marked "estimate" were not measured on any card; the docstring of each profile says which.
"""
from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass

H200_COPY_BYTES_PER_S = 4.23e12  # BENCHMARKS.md run 2, copy_tb_per_s (reads + writes)
H100_COPY_BYTES_PER_S = 3.0e12  # perf-baseline.md, "H100 floors"
IMAGE_TOKENS = 576  # decode steps per image
ROWS_PER_IMAGE = 2  # classifier-free guidance: a conditional and an unconditional row
GENERATION_PASSES = IMAGE_TOKENS + 1  # the prompt pass, then one pass per image token
# Average live cache positions per step: generation reads 32 prompt + 0..576 image positions;
# understanding reads a 616-token prompt (576 of them the image) + 0..128 answer tokens.
GENERATION_LIVE_POSITIONS = 320
UNDERSTANDING_LIVE_POSITIONS = 680


@dataclass(frozen=True)
class Anchor:
    """One measured (or estimated) H200 point: rows in the batch, seconds a step, floor a step."""

    rows: int
    step_s: float
    floor_s: float


@dataclass(frozen=True)
class StepCurve:
    """Seconds per decode step by rows, on the target card (piecewise linear)."""

    points: tuple[tuple[int, float], ...]  # (rows, seconds), rows ascending
    per_row_s: float  # the slope outside the measured range

    def seconds(self, rows: int) -> float:
        rows = max(rows, 1)
        sizes = [size for size, _ in self.points]
        first, last = self.points[0], self.points[-1]
        if rows <= first[0]:
            return max(first[1] - (first[0] - rows) * self.per_row_s, 1e-6)
        if rows >= last[0]:
            return last[1] + (rows - last[0]) * self.per_row_s
        upper = bisect_left(sizes, rows)
        (low_rows, low_s), (high_rows, high_s) = self.points[upper - 1], self.points[upper]
        return low_s + (high_s - low_s) * (rows - low_rows) / (high_rows - low_rows)


def derive_curve(anchors: list[Anchor], kv_bytes_per_position: int, live_positions: int,
                 bandwidth_ratio: float) -> StepCurve:
    """The target card's curve from H200 anchors; bandwidth_ratio = H200 copy / target copy."""
    def on_target(anchor: Anchor) -> float:
        return anchor.step_s + anchor.floor_s * (bandwidth_ratio - 1)

    per_row_floor_h200 = kv_bytes_per_position * live_positions / H200_COPY_BYTES_PER_S
    return StepCurve(tuple((anchor.rows, on_target(anchor)) for anchor in anchors),
                     per_row_s=per_row_floor_h200 * bandwidth_ratio)


@dataclass(frozen=True)
class Profile:
    """A model on a card: what one simulated worker's batches cost."""

    name: str
    generation: StepCurve  # rows = 2 per image
    understanding: StepCurve  # rows = answers in the batch
    generation_prefill_s: float  # the prompt pass of an image batch (whole batch)
    understanding_prefill_s: float  # the prompt pass (image encoder + 616 tokens), per answer
    vq_decode_s: float  # codes -> pixels, per image
    context_length: int
    source: str

    def image_batch_seconds(self, images: int) -> float:
        """The model's time for one batch of `images` images (no overhead of the worker)."""
        rows = ROWS_PER_IMAGE * images
        return (self.generation_prefill_s + IMAGE_TOKENS * self.generation.seconds(rows)
                + images * self.vq_decode_s)

    def answer_batch_seconds(self, answers: int, new_tokens: int) -> float:
        return answers * self.understanding_prefill_s + new_tokens * self.understanding.seconds(answers)


# -- Janus-1.3B (24 layers, 2048 wide: 196,608 bytes of keys and values per cached position) -------
KV_1_3B = 24 * 2 * 2048 * 2
GENERATION_1_3B = [  # BENCHMARKS.md run 2: 1 image, one 16-image job, four 8-image jobs
    Anchor(2, 1.652e-3, 0.364274 / GENERATION_PASSES),
    Anchor(32, 2.259e-3, 0.620755 / GENERATION_PASSES),
    Anchor(64, 3.124e-3, 0.899465 / GENERATION_PASSES),
]
UNDERSTANDING_1_3B = [Anchor(1, 1.730e-3, 0.091311 / 129)]  # run 2: 616 + 128 tokens, 129 passes

# -- Janus-Pro-7B (30 layers, 4096 wide: 491,520 bytes a position; ~12.3 GB of weights a pass) -----
KV_7B = 30 * 2 * 4096 * 2
WEIGHTS_7B_PASS = 12.3e9  # from its measured floor: 3.5 ms x 4.23 TB/s less 16 rows of cache
REMAINDER_7B = 5.081e-3 - 4.043358 / (2 * GENERATION_PASSES)  # measured step less its floor
FLOOR_7B_UNDERSTAND = (WEIGHTS_7B_PASS + KV_7B * UNDERSTANDING_LIVE_POSITIONS) / H200_COPY_BYTES_PER_S
GENERATION_7B = [Anchor(16, 5.081e-3, 4.043358 / (2 * GENERATION_PASSES))]  # run 2: 16 images as 8 + 8
UNDERSTANDING_7B = [Anchor(1, REMAINDER_7B + FLOOR_7B_UNDERSTAND, FLOOR_7B_UNDERSTAND)]  # estimate

VQ_DECODE_S = 0.0176 / 2  # run 2: two images decode together in 17.6 ms (the same VQ model in both)
GENERATION_PREFILL_S = 0.0144  # run 2: time to first token of the 16-image job
UNDERSTANDING_PREFILL_1_3B_S = 0.0206  # run 2: time to first token, 616-token prompt
UNDERSTANDING_PREFILL_7B_S = UNDERSTANDING_PREFILL_1_3B_S * 7.0 / 1.6  # estimate: compute-bound, by size
CONTEXT_LENGTH = 16384  # max_position_embeddings of both checkpoints


def _profile(name: str, card_ratio: float, generation: list[Anchor], understanding: list[Anchor], kv: int,
             understanding_prefill_s: float, source: str) -> Profile:
    return Profile(
        name=name,
        generation=derive_curve(generation, kv, GENERATION_LIVE_POSITIONS, card_ratio),
        understanding=derive_curve(understanding, kv, UNDERSTANDING_LIVE_POSITIONS, card_ratio),
        generation_prefill_s=GENERATION_PREFILL_S, understanding_prefill_s=understanding_prefill_s,
        vq_decode_s=VQ_DECODE_S, context_length=CONTEXT_LENGTH, source=source)


H100 = H200_COPY_BYTES_PER_S / H100_COPY_BYTES_PER_S
PROFILES: dict[str, Profile] = {profile.name: profile for profile in (
    _profile("h100-janus-1.3b", H100, GENERATION_1_3B, UNDERSTANDING_1_3B, KV_1_3B, UNDERSTANDING_PREFILL_1_3B_S,
             "H200 engine figures (BENCHMARKS.md run 2) scaled to an H100 by copy bandwidth"),
    _profile("h100-janus-pro-7b", H100, GENERATION_7B, UNDERSTANDING_7B, KV_7B, UNDERSTANDING_PREFILL_7B_S,
             "H200 engine figure for 16 images (BENCHMARKS.md run 2) scaled to an H100 by copy bandwidth; "
             "understanding and prefill estimated from its floor"),
    _profile("h200-janus-1.3b", 1.0, GENERATION_1_3B, UNDERSTANDING_1_3B, KV_1_3B, UNDERSTANDING_PREFILL_1_3B_S,
             "H200 engine figures (BENCHMARKS.md run 2)"),
    _profile("h200-janus-pro-7b", 1.0, GENERATION_7B, UNDERSTANDING_7B, KV_7B, UNDERSTANDING_PREFILL_7B_S,
             "H200 engine figure for 16 images (BENCHMARKS.md run 2); understanding and prefill estimated"),
)}

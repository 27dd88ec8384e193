"""The decode engine: one per loaded model; batches of images or answers run through it.

On a GPU each batch is padded up to a bucket (batch size from BATCH_BUCKETS, prompt width to a
multiple of PROMPT_WIDTH_STEP) so that a handful of CUDA graphs, captured once per bucket and
kept, serve every batch. On a CPU nothing is padded and the same step runs eagerly.
"""

import bisect
import logging
from dataclasses import dataclass

import torch
from transformers import JanusForConditionalGeneration

from janus_model.decode_step import ImageMode, TextMode, kv_bytes_per_position
from janus_model.memory import MemoryPolicy, bytes_per_sample, vq_decode_bytes_per_image
from janus_model.padding import round_up
from janus_model.step_runner import RunnerCache

log = logging.getLogger(__name__)

BATCH_BUCKETS = (1, 2, 4, 8, 12, 16, 24, 32, 48, 64, 96, 128)
PROMPT_WIDTH_STEP = 32
NEW_TOKEN_STEP = 64
# A typical generation prompt (format + a sentence or two) fits this width; warm-up uses it.
TYPICAL_PROMPT_WIDTH = 64
VQ_DECODE_MAX_CHUNK = 4


@dataclass(frozen=True)
class EngineOptions:
    cuda_graphs: bool = True  # used only on CUDA devices
    compile: bool = False
    # Pad batches to bucket shapes and keep one step runner per bucket. None: exactly when CUDA
    # graphs are in use (they need fixed shapes); tests turn it on for the CPU.
    bucketed: bool | None = None
    memory: MemoryPolicy = MemoryPolicy()


class DecodeEngine:
    def __init__(self, model: JanusForConditionalGeneration, options: EngineOptions = EngineOptions()):
        self.model = model
        self.options = options
        self.device = model.device
        self.image_mode = ImageMode(model)
        self.text_mode = TextMode(model)
        self.image_token_count = model.config.vision_config.num_image_tokens
        self.pad_token_id = model.generation_config.pad_token_id
        self.eos_token_ids = torch.tensor(_as_list(model.generation_config.eos_token_id), device=self.device)
        graphs = options.cuda_graphs and self.device.type == "cuda"
        self.padded = graphs if options.bucketed is None else options.bucketed
        # Measured once, with the weights loaded: kept graphs' caches then count against it.
        self.budget = options.memory.budget_bytes(self.device)
        self.runners = RunnerCache(self.device, graphs, options.compile, keep=self.padded, max_bytes=self.budget)

    # ---- shapes -----------------------------------------------------------------------------

    def batch_bucket(self, samples: int) -> int:
        if not self.padded or samples > BATCH_BUCKETS[-1]:
            return samples
        return BATCH_BUCKETS[bisect.bisect_left(BATCH_BUCKETS, samples)]

    def prompt_width(self, longest: int) -> int:
        return round_up(longest, PROMPT_WIDTH_STEP) if self.padded else longest

    def new_token_room(self, longest: int) -> int:
        return round_up(longest, NEW_TOKEN_STEP) if self.padded else longest

    def runner(self, mode, samples: int, cache_length: int):
        cache_bytes = samples * mode.rows_per_sample * cache_length * kv_bytes_per_position(mode)
        return self.runners.get(mode, samples, cache_length, cache_bytes)

    # ---- capacity ---------------------------------------------------------------------------

    def image_capacity(self, longest_prompt: int) -> int:
        """How many images one batch may hold (at least 1: a single image is never refused here)."""
        width = self.prompt_width(longest_prompt)
        per_image = self._per_sample(self.image_mode, width, width + self.image_token_count)
        return self._fit(per_image)

    def answer_capacity(self, longest_prompt: int, max_new_tokens: int) -> int:
        width = self.prompt_width(longest_prompt)
        per_answer = self._per_sample(self.text_mode, width, width + self.new_token_room(max_new_tokens))
        return self._fit(per_answer)

    def vq_decode_chunk(self, height: int = 384, width: int = 384) -> int:
        # A few images at a time: decoding is ~4 ms an image on a GPU, but its full-size
        # activations (~150 MB an image in bf16) would otherwise dominate a batch's peak memory.
        per_image = vq_decode_bytes_per_image(height, width, self._element_size())
        return max(1, min(VQ_DECODE_MAX_CHUNK, self.budget // per_image))

    def _per_sample(self, mode, width: int, cache_length: int) -> int:
        return bytes_per_sample(mode, kv_bytes_per_position(mode), cache_length, width,
                                self.model.config.text_config.hidden_size, self._element_size())

    def _fit(self, per_sample: int) -> int:
        fit = max(1, self.budget // per_sample)
        if self.padded and fit >= BATCH_BUCKETS[0]:
            # Never plan a batch whose bucket would not fit.
            fit = BATCH_BUCKETS[max(0, bisect.bisect_right(BATCH_BUCKETS, fit) - 1)] if fit <= BATCH_BUCKETS[-1] else fit
        return int(fit)

    def _element_size(self) -> int:
        return torch.empty((), dtype=self.model.dtype).element_size()

    # ---- warm-up ----------------------------------------------------------------------------

    def warm_up(self, max_images: int) -> list[int]:
        """Capture (and compile) the image step of every bucket up to max_images; returns the buckets."""
        if not self.padded:
            return []
        capacity = self.image_capacity(TYPICAL_PROMPT_WIDTH)
        buckets = [size for size in BATCH_BUCKETS if size <= min(max_images, capacity)]
        for size in buckets:
            self.runner(self.image_mode, size, TYPICAL_PROMPT_WIDTH + self.image_token_count)
        log.info("decode step ready for image batches of %s", buckets)
        return buckets


def _as_list(value) -> list[int]:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]

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
PROMPT_WIDTH_STEP = 64  # coarse, so that most prompts land on a shape warm-up captured
MIN_NEW_TOKEN_ROOM = 64  # answers get room for 64, 128, 256, ... new tokens: few shapes to capture
# What warm-up captures: a generation prompt of a sentence or two, and an understanding prompt
# (576 image tokens + a question) with the API's default answer length.
TYPICAL_PROMPT_WIDTH = 64
TYPICAL_QUESTION_WIDTH = 576 + 64
TYPICAL_ANSWER_TOKENS = 256
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
        if not self.padded:
            return longest
        room = MIN_NEW_TOKEN_ROOM
        while room < longest:
            room *= 2
        return room

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
        fit = int(max(1, self.budget // per_sample))
        if self.padded and fit <= BATCH_BUCKETS[-1]:
            # A batch is padded up to its bucket: plan none whose bucket would not fit.
            fit = BATCH_BUCKETS[bisect.bisect_right(BATCH_BUCKETS, fit) - 1]
        return fit

    def _element_size(self) -> int:
        return torch.empty((), dtype=self.model.dtype).element_size()

    # ---- warm-up ----------------------------------------------------------------------------

    @torch.inference_mode()
    def warm_up(self, max_images: int, max_answers: int) -> list[tuple[str, int]]:
        """Capture (and compile) the step of every batch bucket up to the worker's caps, for
        typical prompt shapes, before the first job; returns the (mode, batch size) pairs."""
        if not self.padded:
            return []
        image_cache = TYPICAL_PROMPT_WIDTH + self.image_token_count
        answer_cache = TYPICAL_QUESTION_WIDTH + self.new_token_room(TYPICAL_ANSWER_TOKENS)
        plans = [(self.image_mode, image_cache, min(max_images, self.image_capacity(TYPICAL_PROMPT_WIDTH))),
                 (self.text_mode, answer_cache,
                  min(max_answers, self.answer_capacity(TYPICAL_QUESTION_WIDTH, TYPICAL_ANSWER_TOKENS)))]
        ready = []
        for mode, cache_length, largest in plans:
            for size in (size for size in BATCH_BUCKETS if size <= largest):
                self.runner(mode, size, cache_length)
                ready.append((type(mode).__name__, size))
        log.info("decode steps ready: %s", ready)
        return ready


def _as_list(value) -> list[int]:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]

"""The decode engine: one per loaded model; batches of images or answers run through it.

On a GPU each batch is padded up to a batch-size bucket (BATCH_BUCKETS) so that a handful of
step shapes, their CUDA graphs captured once and kept, serve every batch; prompt widths and
answer lengths are not rounded (a graph depends on the KV arena's layout and the attention
window, not on where the prompt ends). On a CPU nothing is padded and the same step runs eagerly.
"""

import bisect
import logging
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass

import torch
from transformers import JanusForConditionalGeneration

from janus_model.decode_step import ImageMode, ModeBuffers, TextMode
from janus_model.decoder import FusedDecoder
from janus_model.kernels import Kernels, working_kernels
from janus_model.kv_arena import KVArena
from janus_model.memory import MemoryPolicy, bytes_per_sample, fixed_reserve_bytes, vq_decode_bytes_per_image
from janus_model.step_runner import StepRunner

log = logging.getLogger(__name__)

BATCH_BUCKETS = (1, 2, 4, 8, 12, 16, 24, 32, 48, 64, 96, 128)
# What warm-up captures: a generation prompt of a sentence or two, and an understanding prompt
# (576 image tokens + a question) with the API's default answer length. Longer ones grow the
# layout once and are captured then.
TYPICAL_PROMPT_WIDTH = 64
TYPICAL_QUESTION_WIDTH = 576 + 64
TYPICAL_ANSWER_TOKENS = 256
VQ_DECODE_MAX_CHUNK = 2


@dataclass(frozen=True)
class EngineOptions:
    cuda_graphs: bool = True  # used only on CUDA devices
    # torch.compile the decoder's elementwise kernels. None: on CUDA (1.4-1.7x faster steps,
    # BENCHMARKS.md), not on a CPU (a long compile at start for little).
    compile: bool | None = None
    # Pad batches to bucket sizes and keep one step runner per bucket. None: exactly when CUDA
    # graphs are in use (they need fixed shapes); tests turn it on for the CPU.
    bucketed: bool | None = None
    attention: str = "sdpa"  # "cudnn": SDPA asked for cuDNN first; "eager": transformers' eager arithmetic
    memory: MemoryPolicy = MemoryPolicy()
    # Debugging aid (and the GPU smoke test): any host-device synchronisation inside a decode
    # loop raises, instead of silently stalling the GPU every step.
    forbid_sync: bool = False


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
        self.graphs = options.cuda_graphs and self.device.type == "cuda"
        self.padded = self.graphs if options.bucketed is None else options.bucketed
        language_model = model.model.language_model
        self.decoder = FusedDecoder(language_model, attention=options.attention)
        self.decoder.kernels = working_kernels(self._compiles(options.compile), self._probe_kernels)
        self.arena = KVArena(language_model.config, model.dtype, self.device)
        # Measured once, with the weights loaded: the KV arena and working memory count against it.
        self.budget = options.memory.budget_bytes(self.device)
        self.kv_budget = max(0, self.budget - fixed_reserve_bytes(self.device, self._element_size(),
                                                                  VQ_DECODE_MAX_CHUNK))
        self.pool = None  # see _graph_pool
        self.buffers: dict[str, ModeBuffers] = {}
        self.runners: dict[tuple, StepRunner] = {}

    def _compiles(self, wanted: bool | None) -> bool:
        return self.device.type == "cuda" if wanted is None else wanted

    def decode_loop(self):
        """Context for a batch's decode loop (after its prompt pass): see EngineOptions.forbid_sync."""
        return forbid_device_sync() if self.options.forbid_sync and self.device.type == "cuda" else nullcontext()

    # ---- shapes -----------------------------------------------------------------------------

    def batch_bucket(self, samples: int) -> int:
        if not self.padded or samples > BATCH_BUCKETS[-1]:
            return samples
        return BATCH_BUCKETS[bisect.bisect_left(BATCH_BUCKETS, samples)]

    def runner(self, mode, samples: int, cache_length: int, top_p: bool = False) -> StepRunner:
        """The step runner of a batch of `samples` (a bucket size) needing `cache_length` positions."""
        buffers = self._buffers_for(mode, samples, cache_length)
        key = (mode.name, samples, top_p)
        runner = self.runners.get(key)
        if runner is None:
            runner = StepRunner(mode, buffers.state(mode, samples), self.decoder, top_p, self._graph_pool())
            if self.graphs:
                log.info("captured decode steps for %s: %d windows", runner.label, len(runner.graphs))
            if self.padded:
                self.runners[key] = runner
        return runner

    def _graph_pool(self):
        """The memory pool the graphs share. A pool dies with its last graph and its handle must not
        be used again (the allocator asserts), so a new one starts whenever no graph is alive."""
        if not self.graphs:
            return None
        if self.pool is None or not self.runners:
            self.pool = torch.cuda.graph_pool_handle()
        return self.pool

    def _buffers_for(self, mode, samples: int, length: int) -> ModeBuffers:
        """The mode's buffers, laid out anew (dropping its runners) when this batch does not fit."""
        current = self.buffers.get(mode.name)
        if current is not None and current.samples >= samples and current.length >= length:
            return current
        if current is not None:
            samples_wanted, length_wanted = max(samples, current.samples), max(length, current.length)
            if self._kv_bytes(mode, samples_wanted, length_wanted) > self.kv_budget:
                samples_wanted, length_wanted = samples, length  # the union would not fit: this batch's shape
            samples, length = samples_wanted, length_wanted
        self._drop(mode.name)
        rows = samples * mode.rows_per_sample
        if not self.arena.fits(rows, length):
            self._drop(*list(self.buffers))  # every view of the old arena goes before it does
            self.arena.grow(rows, length)
        buffers = ModeBuffers(mode, samples, length, self.arena.view(rows, length))
        self.buffers[mode.name] = buffers
        return buffers

    def _drop(self, *mode_names: str) -> None:
        for name in mode_names:
            self.buffers.pop(name, None)
        for key in [key for key in self.runners if key[0] in mode_names]:
            del self.runners[key]

    def release(self) -> None:
        """Drop every runner, graph and the KV arena (the benchmark measures each set from here)."""
        self.runners.clear()
        self.buffers.clear()
        self.arena.release()

    # ---- capacity ---------------------------------------------------------------------------

    def image_capacity(self, longest_prompt: int) -> int:
        """How many images one batch may hold (at least 1: a single image is never refused here)."""
        per_image = self._per_sample(self.image_mode, longest_prompt, longest_prompt + self.image_token_count)
        return self._fit(per_image)

    def answer_capacity(self, longest_prompt: int, max_new_tokens: int) -> int:
        return self._fit(self._per_sample(self.text_mode, longest_prompt, longest_prompt + max_new_tokens))

    def vq_decode_chunk(self, height: int = 384, width: int = 384) -> int:
        # A couple of images at a time: decoding is a few ms an image on a GPU, but its full-size
        # activations (~150 MB an image in bf16) would otherwise dominate a batch's peak memory.
        per_image = vq_decode_bytes_per_image(height, width, self._element_size())
        free = self.budget - self.arena.allocated_bytes()
        return max(1, min(VQ_DECODE_MAX_CHUNK, free // per_image))

    def _kv_bytes(self, mode, samples: int, length: int) -> int:
        return samples * mode.rows_per_sample * length * self.arena.bytes_per_position()

    def _per_sample(self, mode, width: int, cache_length: int) -> int:
        return bytes_per_sample(mode, self.arena.bytes_per_position(), cache_length, width,
                                self.model.config.text_config.hidden_size, self._element_size())

    def _fit(self, per_sample: int) -> int:
        fit = int(max(1, self.kv_budget // per_sample))
        if self.padded and fit <= BATCH_BUCKETS[-1]:
            # A batch is padded up to its bucket: plan none whose bucket would not fit.
            fit = BATCH_BUCKETS[bisect.bisect_right(BATCH_BUCKETS, fit) - 1]
        return fit

    def _element_size(self) -> int:
        return torch.empty((), dtype=self.model.dtype).element_size()

    # ---- warm-up ----------------------------------------------------------------------------

    @torch.inference_mode()
    def warm_up(self, max_images: int, max_answers: int) -> list[tuple[str, int]]:
        """Capture the steps of every batch bucket up to the worker's caps (and compile the
        kernels, when asked), for typical prompt shapes, before the first job; returns the
        (mode, batch size) pairs. Text steps are captured with and without top-p."""
        if not self.padded:
            return []
        image_length = TYPICAL_PROMPT_WIDTH + self.image_token_count
        answer_length = TYPICAL_QUESTION_WIDTH + TYPICAL_ANSWER_TOKENS
        plans = [(self.image_mode, image_length, min(max_images, self.image_capacity(TYPICAL_PROMPT_WIDTH)), [False]),
                 (self.text_mode, answer_length,
                  min(max_answers, self.answer_capacity(TYPICAL_QUESTION_WIDTH, TYPICAL_ANSWER_TOKENS)), [True, False])]
        ready = []
        for mode, length, largest, top_ps in plans:
            sizes = [size for size in BATCH_BUCKETS if size <= self.batch_bucket(largest)]
            self._buffers_for(mode, sizes[-1], length)  # the largest layout first: the rest are views of it
            for size in sizes:
                for top_p in top_ps:
                    self.runner(mode, size, length, top_p)
                ready.append((type(mode).__name__, size))
        log.info("decode steps ready: %s", ready)
        return ready

    def _probe_kernels(self, kernels: Kernels) -> None:
        """Run (so compile) each kernel once at decode shapes: a broken compiler shows here.
        Inputs are made without the random generator, which a failed graph capture can leave unusable."""
        decoder, rows = self.decoder, 2
        hidden = self.model.config.text_config.hidden_size
        options = {"device": self.device, "dtype": self.model.dtype}
        with torch.inference_mode():
            x = torch.linspace(-1, 1, rows * hidden, **options).view(rows, 1, hidden)
            norm = decoder.final_norm
            kernels.rms_norm(x, norm, decoder.eps)
            kernels.add_rms_norm(x, x, norm, decoder.eps)
            width = (decoder.heads + 2 * decoder.kv_heads) * decoder.head_dim
            qkv = torch.linspace(-1, 1, rows * width, **options).view(rows, 1, width)
            positions = torch.zeros(rows, 1, dtype=torch.long, device=self.device)
            kernels.split_rotate(qkv, decoder.cos[positions], decoder.sin[positions], decoder.heads, decoder.kv_heads)
            kernels.swiglu(torch.linspace(-1, 1, rows * 2 * hidden, **options).view(rows, 1, 2 * hidden))


@contextmanager
def forbid_device_sync():
    torch.cuda.set_sync_debug_mode("error")
    try:
        yield
    finally:
        torch.cuda.set_sync_debug_mode("default")


def _as_list(value) -> list[int]:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]

"""One decode step for a batch, on buffers that never move: the unit a CUDA graph captures.

`ModeBuffers` owns every tensor a mode's step reads or writes (tokens, the additive key mask,
positions, write index, noise, sampling parameters, its view of the KV arena), sized for the
mode's layout; `StepState` is the first `samples` of them. `decode_step` embeds the current
tokens, runs the decoder on one new position over an attention window, turns the last hidden
state into logits, picks the next tokens and advances, all in place. Replaying it therefore needs
no Python-side bookkeeping beyond refilling the noise.

Two modes share the step: image generation (rows are n conditional then n unconditional copies,
logits from the generation head, classifier-free guidance) and text (one row per answer, logits
from the LM head, top-p).
"""

import torch
from transformers import JanusForConditionalGeneration

from janus_model.padding import PaddedPrompts, prefill_mask
from janus_model.sampling import NoiseStreams, choose_tokens, inverse_temperatures


class ImageMode:
    name = "image"
    rows_per_sample = 2  # a conditional and an unconditional row per image

    def __init__(self, model: JanusForConditionalGeneration):
        self.model = model
        self.vocab_size = model.config.vq_config.num_embeddings

    def embed(self, tokens: torch.LongTensor) -> torch.Tensor:
        # Both halves of the rows take the image's token, through the generation embedding.
        return self.model.prepare_embeddings_for_image_generation(torch.cat([tokens, tokens]).unsqueeze(-1))

    def logits(self, hidden: torch.Tensor, state: "StepState") -> torch.Tensor:
        # float32 for guidance and sampling: bf16 would round the small differences away.
        return guided_logits(self.model.model.generation_head(hidden).float(), state.cfg_weight)

    def head_modules(self) -> list:
        """What one step reads besides the decoder layers (for the bandwidth floor)."""
        return [self.model.model.generation_head, self.model.model.generation_aligner]


def guided_logits(image_logits: torch.Tensor, cfg_weight: torch.Tensor | float) -> torch.Tensor:
    """Classifier-free guidance over [2n, V] rows (n conditional, then n unconditional) -> [n, V]."""
    conditional, unconditional = image_logits.chunk(2)
    # transformers' operation order (ClassifierFreeGuidanceLogitsProcessor): the same rounding,
    # hence the same greedy picks.
    return unconditional + (conditional - unconditional) * cfg_weight


class TextMode:
    name = "text"
    rows_per_sample = 1

    def __init__(self, model: JanusForConditionalGeneration):
        self.model = model
        self.vocab_size = model.config.text_config.vocab_size

    def embed(self, tokens: torch.LongTensor) -> torch.Tensor:
        return self.model.get_input_embeddings()(tokens.unsqueeze(-1))

    def logits(self, hidden: torch.Tensor, state: "StepState") -> torch.Tensor:
        return self.model.lm_head(hidden).float()

    def head_modules(self) -> list:
        return [self.model.lm_head]


class ModeBuffers:
    """A mode's fixed-address tensors for up to `samples` samples and `length` cache positions."""

    def __init__(self, mode, samples: int, length: int, kv: torch.Tensor):
        device, dtype = kv.device, kv.dtype
        rows = samples * mode.rows_per_sample
        self.samples, self.length = samples, length
        self.tokens = torch.zeros(samples, dtype=torch.long, device=device)
        self.positions = torch.zeros((rows, 1), dtype=torch.long, device=device)
        self.write_index = torch.zeros(1, dtype=torch.long, device=device)
        # Additive (0 or -inf) and kept across steps: a step only opens its own column.
        self.mask = torch.full((rows, length), float("-inf"), dtype=dtype, device=device)
        self.noise = torch.zeros((samples, mode.vocab_size), device=device)
        self.inverse_temperature = torch.ones((samples, 1), device=device)
        self.cfg_weight = torch.ones((samples, 1), device=device)
        self.top_p = torch.ones((samples, 1), device=device)
        self.kv = kv

    def state(self, mode, samples: int) -> "StepState":
        return StepState(self, samples, samples * mode.rows_per_sample)


class StepState:
    """The first `samples` samples (`rows` rows) of a mode's buffers: views, at fixed addresses."""

    def __init__(self, buffers: ModeBuffers, samples: int, rows: int):
        self.samples, self.rows, self.length = samples, rows, buffers.length
        self.tokens = buffers.tokens[:samples]
        self.positions = buffers.positions[:rows]
        self.write_index = buffers.write_index
        self.mask = buffers.mask[:rows]
        self.noise = buffers.noise[:samples]
        self.inverse_temperature = buffers.inverse_temperature[:samples]
        self.cfg_weight = buffers.cfg_weight[:samples]
        self.top_p = buffers.top_p[:samples]
        self.kv = buffers.kv

    def set_sampling(self, inverse_temperature, cfg_weight=None, top_p=None) -> None:
        self.inverse_temperature.copy_(inverse_temperature)
        self.noise.zero_()
        if cfg_weight is not None:
            self.cfg_weight.copy_(cfg_weight)
        if top_p is not None:
            self.top_p.copy_(top_p)

    def rewind(self) -> None:
        """Forget the previous batch: every key masked, writing from column 0 again."""
        self.mask.fill_(float("-inf"))
        self.positions.zero_()
        self.write_index.zero_()


def prefill(mode, state: StepState, decoder, embeddings: torch.Tensor, prompts: PaddedPrompts) -> torch.Tensor:
    """Run the padded prompts through the decoder into the cache; last hidden state [R, D]."""
    state.rewind()
    width = prompts.width
    state.mask[:, :width].masked_fill_(prompts.valid, 0.0)
    square = additive(prefill_mask(prompts.valid, width), state.mask.dtype)
    write_at = torch.arange(width, device=state.mask.device)
    hidden = decoder(embeddings, prompts.position_ids(), state.kv, write_at, square, width)
    state.positions.copy_(prompts.lengths.unsqueeze(-1))
    state.write_index.fill_(width)
    return hidden[:, -1]


def additive(allowed: torch.BoolTensor, dtype: torch.dtype) -> torch.Tensor:
    mask = torch.zeros(allowed.shape, dtype=dtype, device=allowed.device)
    return mask.masked_fill_(~allowed, float("-inf"))


def begin_sampling(mode, state: StepState, rows, **per_row: list[float]) -> NoiseStreams:
    """Load each row's temperature (and its cfg_weight or top_p) into the state; returns the
    rows' noise streams (none for greedy rows)."""
    device = state.tokens.device
    state.set_sampling(inverse_temperatures([row.temperature for row in rows], device),
                       **{name: torch.tensor([[value] for value in values], device=device)
                          for name, values in per_row.items()})
    return NoiseStreams([row.seed if row.temperature > 0 else None for row in rows], mode.vocab_size, device)


def pick(mode, state: StepState, hidden: torch.Tensor, top_p: bool) -> None:
    """Next tokens from the last hidden states, into state.tokens."""
    logits = mode.logits(hidden, state)
    state.tokens.copy_(choose_tokens(logits, state.inverse_temperature, state.noise,
                                     state.top_p if top_p else None))


def decode_step(mode, state: StepState, decoder, window: int, top_p: bool) -> None:
    """Feed state.tokens at the next position and leave the following tokens in state.tokens.

    Attention reads the first `window` cache columns, which must cover every written one.
    """
    embeddings = mode.embed(state.tokens)
    state.mask.index_fill_(1, state.write_index, 0.0)
    hidden = decoder(embeddings, state.positions, state.kv, state.write_index, state.mask[:, None, None, :window],
                     window)
    pick(mode, state, hidden[:, -1], top_p)
    state.positions.add_(1)
    state.write_index.add_(1)

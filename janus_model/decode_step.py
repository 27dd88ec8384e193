"""One decode step for a batch, on buffers that never move: the unit a CUDA graph captures.

`StepState` owns every tensor the step reads or writes (tokens, key mask, positions, noise,
sampling parameters, the static KV cache). `decode_step` embeds the current tokens, runs the
language model on one new position, turns the last hidden state into logits, picks the next
tokens and advances the positions, all in place. Replaying it therefore needs no Python-side
bookkeeping beyond refilling the noise.

Two modes share the step: image generation (rows are n conditional then n unconditional copies,
logits from the generation head, classifier-free guidance) and text (one row per answer, logits
from the LM head, top-p).
"""

import torch
from transformers import JanusForConditionalGeneration, StaticCache

from janus_model.padding import PaddedPrompts, prefill_mask
from janus_model.sampling import NoiseStreams, choose_tokens, inverse_temperatures


class ImageMode:
    uses_top_p = False
    rows_per_sample = 2  # a conditional and an unconditional row per image

    def __init__(self, model: JanusForConditionalGeneration):
        self.model = model
        self.language_model = model.model.language_model
        self.vocab_size = model.config.vq_config.num_embeddings

    def embed(self, tokens: torch.LongTensor) -> torch.Tensor:
        # Both halves of the rows take the image's token, through the generation embedding.
        return self.model.prepare_embeddings_for_image_generation(torch.cat([tokens, tokens]).unsqueeze(-1))

    def logits(self, hidden: torch.Tensor, state: "StepState") -> torch.Tensor:
        # float32 for guidance and sampling: bf16 would round the small differences away.
        return guided_logits(self.model.model.generation_head(hidden).float(), state.cfg_weight)


def guided_logits(image_logits: torch.Tensor, cfg_weight: torch.Tensor | float) -> torch.Tensor:
    """Classifier-free guidance over [2n, V] rows (n conditional, then n unconditional) -> [n, V]."""
    conditional, unconditional = image_logits.chunk(2)
    # transformers' operation order (ClassifierFreeGuidanceLogitsProcessor): the same rounding,
    # hence the same greedy picks.
    return unconditional + (conditional - unconditional) * cfg_weight


class TextMode:
    uses_top_p = True
    rows_per_sample = 1

    def __init__(self, model: JanusForConditionalGeneration):
        self.model = model
        self.language_model = model.model.language_model
        self.vocab_size = model.config.text_config.vocab_size

    def embed(self, tokens: torch.LongTensor) -> torch.Tensor:
        return self.model.get_input_embeddings()(tokens.unsqueeze(-1))

    def logits(self, hidden: torch.Tensor, state: "StepState") -> torch.Tensor:
        return self.model.lm_head(hidden).float()


class StepState:
    """Fixed-address buffers for `samples` sampled rows and a KV cache of `cache_length` positions."""

    def __init__(self, mode, samples: int, cache_length: int, device: torch.device):
        rows = samples * mode.rows_per_sample
        self.samples, self.rows, self.cache_length = samples, rows, cache_length
        self.tokens = torch.zeros(samples, dtype=torch.long, device=device)
        self.key_valid = torch.zeros((rows, cache_length), dtype=torch.bool, device=device)
        self.position_ids = torch.zeros((rows, 1), dtype=torch.long, device=device)
        self.write_index = torch.zeros(1, dtype=torch.long, device=device)
        self.noise = torch.zeros((samples, mode.vocab_size), device=device)
        self.inverse_temperature = torch.ones((samples, 1), device=device)
        self.cfg_weight = torch.ones((samples, 1), device=device)
        self.top_p = torch.ones((samples, 1), device=device)
        self.cache = new_cache(mode, rows, cache_length, device)

    def set_sampling(self, inverse_temperature, cfg_weight=None, top_p=None) -> None:
        self.inverse_temperature.copy_(inverse_temperature)
        self.noise.zero_()
        if cfg_weight is not None:
            self.cfg_weight.copy_(cfg_weight)
        if top_p is not None:
            self.top_p.copy_(top_p)

    def rewind(self) -> None:
        """Forget the previous batch: the cache refills from position 0 (old entries get masked)."""
        for layer in self.cache.layers:
            # transformers' StaticLayer writes at this counter (a tensor, so graphs can advance it)
            layer.cumulative_length.zero_()
        self.key_valid.zero_()


def new_cache(mode, rows: int, cache_length: int, device: torch.device) -> StaticCache:
    """A static cache allocated now, on the current stream, rather than lazily inside a capture."""
    config = mode.language_model.config
    cache = StaticCache(config=config, max_cache_len=cache_length)
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    cache.early_initialization(rows, config.num_key_value_heads, head_dim, mode.language_model.dtype, device)
    return cache


def kv_bytes_per_position(mode) -> int:
    """Cache bytes one row needs per position: keys and values of every layer."""
    config = mode.language_model.config
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    element = torch.empty((), dtype=mode.language_model.dtype).element_size()
    return config.num_hidden_layers * 2 * config.num_key_value_heads * head_dim * element


def prefill(mode, state: StepState, embeddings: torch.Tensor, prompts: PaddedPrompts) -> torch.Tensor:
    """Run the padded prompts through the language model into the cache; last hidden state [R, D]."""
    state.rewind()
    width = prompts.width
    state.key_valid[:, :width] = prompts.valid
    output = mode.language_model(
        inputs_embeds=embeddings,
        attention_mask=prefill_mask(prompts.valid, state.cache_length),
        position_ids=prompts.position_ids(),
        past_key_values=state.cache,
        use_cache=True,
    )
    state.position_ids.copy_(prompts.lengths.unsqueeze(-1))
    state.write_index.fill_(width)
    return output.last_hidden_state[:, -1]


def begin_sampling(mode, state: StepState, rows, **per_row: list[float]) -> NoiseStreams:
    """Load each row's temperature (and its cfg_weight or top_p) into the state; returns the
    rows' noise streams (none for greedy rows)."""
    device = state.tokens.device
    state.set_sampling(inverse_temperatures([row.temperature for row in rows], device),
                       **{name: torch.tensor([[value] for value in values], device=device)
                          for name, values in per_row.items()})
    return NoiseStreams([row.seed if row.temperature > 0 else None for row in rows], mode.vocab_size, device)


def pick(mode, state: StepState, hidden: torch.Tensor) -> None:
    """Next tokens from the last hidden states, into state.tokens."""
    logits = mode.logits(hidden, state)
    top_p = state.top_p if mode.uses_top_p else None
    state.tokens.copy_(choose_tokens(logits, state.inverse_temperature, state.noise, top_p))


def decode_step(mode, state: StepState) -> None:
    """Feed state.tokens at the next position and leave the following tokens in state.tokens."""
    embeddings = mode.embed(state.tokens)
    state.key_valid.index_fill_(1, state.write_index, True)
    output = mode.language_model(
        inputs_embeds=embeddings,
        attention_mask=state.key_valid[:, None, None, :],
        position_ids=state.position_ids,
        past_key_values=state.cache,
        use_cache=True,
    )
    pick(mode, state, output.last_hidden_state[:, -1])
    state.position_ids.add_(1)
    state.write_index.add_(1)

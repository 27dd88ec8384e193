"""Answers for a batch of (image, question) prompts that may come from different jobs.

Rows are left-padded to a common width with masks; each row's 576 image placeholders are
replaced by its own SigLIP features before the prompt pass. A row stops at its end-of-text
token or its own max_new_tokens; the batch stops when every row has.
"""

from collections.abc import Callable
from dataclasses import dataclass

import torch

from janus_model.decode_step import begin_sampling, pick, prefill
from janus_model.padding import left_pad

StepCallback = Callable[[int], bool]

# How often (in tokens) to look for finished rows: each look waits for the device.
FINISH_CHECK_EVERY = 8


@dataclass(frozen=True)
class TextRow:
    input_ids: torch.LongTensor  # [L], image placeholders included
    pixel_values: torch.Tensor  # [1, 3, H, W]
    max_new_tokens: int
    temperature: float  # 0 means greedy
    top_p: float
    seed: int


def prompt_embeddings(engine, prompts, pixel_values: torch.Tensor) -> torch.Tensor:
    """Text embeddings with each row's image placeholders replaced by its image features."""
    model = engine.model
    embeddings = model.get_input_embeddings()(prompts.ids)
    features = model.model.get_image_features(pixel_values).pooler_output
    placeholders = (prompts.ids == model.config.image_token_id).unsqueeze(-1)
    return embeddings.masked_scatter(placeholders, features.to(embeddings.dtype))


def generate_answers(engine, rows: list[TextRow], on_step: StepCallback) -> list[torch.LongTensor] | None:
    """Each row's new tokens (end-of-text included when reached), or None when on_step said stop."""
    mode = engine.text_mode
    samples = engine.batch_bucket(len(rows))
    filler = TextRow(rows[0].input_ids, rows[0].pixel_values, 1, 0.0, 1.0, 0)
    padded_rows = rows + [filler] * (samples - len(rows))
    width = engine.prompt_width(max(len(row.input_ids) for row in padded_rows))
    prompts = left_pad([row.input_ids for row in padded_rows], engine.pad_token_id, width)
    longest = max(row.max_new_tokens for row in rows)
    runner = engine.runner(mode, samples, width + engine.new_token_room(longest))
    state = runner.state
    device = state.tokens.device
    noise = begin_sampling(mode, state, padded_rows, top_p=[row.top_p for row in padded_rows])
    pixels = torch.cat([row.pixel_values for row in padded_rows]).to(device, engine.model.dtype)
    generated = torch.empty((samples, longest), dtype=torch.long, device=device)

    hidden = prefill(mode, state, prompt_embeddings(engine, prompts, pixels), prompts)
    noise.fill(state.noise)
    pick(mode, state, hidden)
    generated[:, 0] = state.tokens
    done = 1
    while True:
        if not on_step(done):
            return None
        if done >= longest:
            break
        if done % FINISH_CHECK_EVERY == 0 and all_finished(engine, rows, generated[:, :done]):
            break
        noise.fill(state.noise)
        runner()
        generated[:, done] = state.tokens
        done += 1
    return [cut_at_end(engine, generated[index, : row.max_new_tokens]) for index, row in enumerate(rows)]


def all_finished(engine, rows: list[TextRow], generated: torch.LongTensor) -> bool:
    ended = torch.isin(generated[: len(rows)], engine.eos_token_ids).any(dim=1).tolist()
    done = generated.shape[1]
    return all(end or done >= row.max_new_tokens for end, row in zip(ended, rows))


def cut_at_end(engine, tokens: torch.LongTensor) -> torch.LongTensor:
    """Tokens up to and including the first end-of-text token, as generate() returns them."""
    hits = torch.isin(tokens, engine.eos_token_ids).nonzero()
    return tokens if len(hits) == 0 else tokens[: hits[0, 0] + 1]


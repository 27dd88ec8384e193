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
from janus_model.progress import OFFER_TEXT_EVERY

StepCallback = Callable[[int], bool]
# (row index, a function returning that row's tokens so far): see AnswerTap.
TokensCallback = Callable[[int, Callable[[], torch.LongTensor]], None]

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


def generate_answers(engine, rows: list[TextRow], on_step: StepCallback,
                     on_tokens: TokensCallback | None = None) -> list[torch.LongTensor] | None:
    """Each row's new tokens (end-of-text included when reached), or None when on_step said stop.
    `on_tokens`: offered each row's tokens so far every OFFER_TEXT_EVERY tokens (AnswerTap)."""
    mode = engine.text_mode
    samples = engine.batch_bucket(len(rows))
    filler = TextRow(rows[0].input_ids, rows[0].pixel_values, 1, 0.0, 1.0, 0)
    padded_rows = rows + [filler] * (samples - len(rows))
    prompts = left_pad([row.input_ids for row in padded_rows], engine.pad_token_id)
    longest = max(row.max_new_tokens for row in rows)
    # The top-p sort over the whole vocabulary is skipped when no row samples with a top-p cut.
    top_p = any(row.temperature > 0 and row.top_p < 1 for row in rows)
    runner = engine.runner(mode, samples, prompts.width + longest, top_p)
    state = runner.state
    device = state.tokens.device
    noise = begin_sampling(mode, state, padded_rows, top_p=[row.top_p for row in padded_rows])
    pixels = torch.cat([row.pixel_values for row in padded_rows]).to(device, engine.model.dtype)
    generated = torch.empty((samples, longest), dtype=torch.long, device=device)
    watch = FinishWatch(engine, rows, generated)
    tap = AnswerTap(engine, rows, generated, on_tokens)

    hidden = prefill(mode, state, engine.decoder, prompt_embeddings(engine, prompts, pixels), prompts)
    noise.fill(state.noise)
    pick(mode, state, hidden, top_p)
    generated[:, 0] = state.tokens
    done = decode_loop(engine, runner, noise, generated, watch, prompts.width, longest, tap.offering(on_step))
    if done is None:
        return None
    return [cut_at_end(engine, generated[index, : min(done, row.max_new_tokens)]) for index, row in enumerate(rows)]


def decode_loop(engine, runner, noise, generated, watch, width: int, longest: int, on_step) -> int | None:
    """Tokens 1.. until every row has ended; how many were made, or None when on_step said stop."""
    state, done = runner.state, 1
    with engine.decode_loop():
        while True:
            if not on_step(done):
                return None
            if done >= longest:
                return done
            if done % FINISH_CHECK_EVERY == 0 and watch.all_finished(done):
                return done
            noise.fill(state.noise)
            runner.run(width + done - 1)
            generated[:, done] = state.tokens
            done += 1


class AnswerTap:
    """Offers each row's answer so far to `on_tokens` every OFFER_TEXT_EVERY tokens, as a function:
    the tokens are read from the device (a synchronising copy) only when the job calls it, which
    the worker does at most once per progress write, not every few tokens."""

    def __init__(self, engine, rows: list[TextRow], generated: torch.LongTensor, on_tokens: TokensCallback | None):
        self.engine, self.rows, self.generated, self.on_tokens = engine, rows, generated, on_tokens

    def offering(self, on_step: StepCallback) -> StepCallback:
        if self.on_tokens is None:
            return on_step

        def step(done: int) -> bool:
            if done % OFFER_TEXT_EVERY == 0:
                self.offer(done)
            return on_step(done)

        return step

    def offer(self, done: int) -> None:
        for index, row in enumerate(self.rows):
            made = min(done, row.max_new_tokens)
            self.on_tokens(index, lambda index=index, made=made: cut_at_end(self.engine, self.generated[index, :made]))


class FinishWatch:
    """Whether every row has ended (its end-of-text token, or its own max_new_tokens), asked
    without making the host wait for the device.

    On a GPU each look starts an asynchronous copy of the answer-so-far's verdict to pinned host
    memory and reads the previous look's verdict if its copy has landed, so the batch stops up to
    two looks late (the extra tokens are cut off) but the decode loop never synchronises.
    """

    def __init__(self, engine, rows: list[TextRow], generated: torch.LongTensor):
        self.generated, self.count = generated, len(rows)
        self.eos_token_ids = engine.eos_token_ids
        self.limits = torch.tensor([row.max_new_tokens for row in rows], device=generated.device)
        self.asynchronous = generated.device.type == "cuda"
        if self.asynchronous:
            self.verdict = torch.zeros((), dtype=torch.bool, pin_memory=True)
            self.landed = torch.cuda.Event()
            self.pending = False

    def all_finished(self, done: int) -> bool:
        so_far = self.generated[: self.count, :done]
        ended = (so_far.unsqueeze(-1) == self.eos_token_ids).any(-1).any(-1) | (self.limits <= done)
        if not self.asynchronous:
            return bool(ended.all())
        finished = False
        if self.pending and self.landed.query():
            finished, self.pending = bool(self.verdict), False
        if not self.pending:
            self.verdict.copy_(ended.all(), non_blocking=True)
            self.landed.record()
            self.pending = True
        return finished


def cut_at_end(engine, tokens: torch.LongTensor) -> torch.LongTensor:
    """Tokens up to and including the first end-of-text token, as generate() returns them."""
    hits = torch.isin(tokens, engine.eos_token_ids).nonzero()
    return tokens if len(hits) == 0 else tokens[: hits[0, 0] + 1]

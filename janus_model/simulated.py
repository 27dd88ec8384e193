"""A simulated Janus: `JANUS_MODEL=simulated:<profile>[?scale=N]`, for fleet work without GPUs.

It keeps the model's batch interface (janus_model.requests) and its contract: one outcome per
request, progress reported after every decode step through the request's callback, a request
whose callback returns False ends alone with GenerationStopped, a refused input is a ValueError
outcome. Instead of computing it sleeps as long as the profile says the batch would take on its
card (janus_model/simulated_profiles.py gives the curves and their source), then returns
384x384 PNG-ready images (a gradient coloured by the seed) or a short text answer.

Torch-free on purpose (only Pillow): one machine runs dozens of simulated workers.
`scale` stretches every sleep (scale=10: ten times slower than the card), so that the worker's
own overhead on a small machine stays small next to the simulated GPU time.
"""
from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from urllib.parse import parse_qs

from janus_model.errors import GenerationStopped
from janus_model.progress import OFFER_TEXT_EVERY
from janus_model.requests import check_answer_request, check_image_request
from janus_model.simulated_profiles import IMAGE_TOKENS, PROFILES, ROWS_PER_IMAGE, Profile

PREFIX = "simulated:"
IMAGE_SIZE = 384
RESERVED_TOKENS = ("<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>", "<｜▁pad▁｜>", "<image_placeholder>",
                   "<begin_of_image>", "<end_of_image>", "<|User|>", "<|Assistant|>")


@dataclass(frozen=True)
class SimulatedSpec:
    profile: Profile
    scale: float = 1.0

    def __str__(self) -> str:
        return f"{PREFIX}{self.profile.name}" + (f"?scale={self.scale:g}" if self.scale != 1 else "")


def is_simulated(model: str) -> bool:
    return model.startswith(PREFIX)


def parse_spec(model: str) -> SimulatedSpec:
    """`simulated:<profile>[?scale=N]` -> the spec; ValueError in one line for anything else."""
    if not is_simulated(model):
        raise ValueError(f"not a simulated model: {model!r}")
    name, _, query = model[len(PREFIX):].partition("?")
    if name not in PROFILES:
        raise ValueError(f"unknown simulated profile {name!r} (choose from {', '.join(sorted(PROFILES))})")
    options = parse_qs(query, keep_blank_values=True)
    unknown = sorted(set(options) - {"scale"})
    if unknown:
        raise ValueError(f"unknown simulated model option {unknown[0]!r} (only scale=N)")
    try:
        scale = float(options.get("scale", ["1"])[-1])
    except ValueError:
        raise ValueError(f"simulated model scale must be a number, got {options['scale'][-1]!r}") from None
    if not 0 < scale <= 10_000:
        raise ValueError(f"simulated model scale must be in (0, 10000], got {scale:g}")
    return SimulatedSpec(PROFILES[name], scale)


class SimulatedDevice:
    """Stands where a torch.device would: `type` and a readable name for the heartbeat row."""

    type = "simulated"

    def __init__(self, spec: SimulatedSpec):
        self.spec = spec

    def __str__(self) -> str:
        return str(self.spec)


class SimulatedModel:
    def __init__(self, spec: SimulatedSpec, sleep=time.sleep, clock=time.monotonic):
        self.spec, self.profile = spec, spec.profile
        self.device = SimulatedDevice(spec)
        self.budget = SimulatedBudget(spec.profile.context_length)
        self._sleep, self._clock = sleep, clock

    # What jobs record of the checkpoint's choices (the real model reads them from its processor):
    # Janus-Pro's conversation format and SigLIP's normalization, as the real checkpoints have them.
    served_settings = {
        "generate": {"prompt_format": "<｜begin▁of▁sentence｜><|User|>: {prompt}\n\n<|Assistant|>:<begin_of_image>"},
        "understand": {"prompt_format": "<｜begin▁of▁sentence｜><|User|>: <image_placeholder>\n{question}\n\n"
                                        "<|Assistant|>:", "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5]},
    }

    # ---- image generation -------------------------------------------------------------------
    def generate_images_batch(self, requests: list) -> list:
        outcomes, live = _prepare_each(requests, self._check_image_request)
        if not live:
            return outcomes
        rows = ROWS_PER_IMAGE * sum(requests[index].num_images for index in live)
        clock = _Schedule(self._clock, self._sleep, self.spec.scale)
        clock.wait(self.profile.generation_prefill_s)
        step_s = self.profile.generation.seconds(rows)
        stopped = _run_steps(clock, step_s, {index: IMAGE_TOKENS for index in live}, requests)
        for index in live:
            if index in stopped:
                outcomes[index] = GenerationStopped("stopped on request")
                continue
            clock.wait(self.profile.vq_decode_s * requests[index].num_images)
            outcomes[index] = [gradient_image(requests[index].seed, k) for k in range(requests[index].num_images)]
        return outcomes

    def _check_image_request(self, request) -> None:
        check_image_request(request)
        if not self.budget.generation_fits(request.prompt):
            raise ValueError("prompt + image tokens do not fit the model's context")

    # ---- understanding ----------------------------------------------------------------------
    def answer_batch(self, requests: list) -> list:
        outcomes, live = _prepare_each(requests, self._check_answer_request)
        if not live:
            return outcomes
        clock = _Schedule(self._clock, self._sleep, self.spec.scale)
        clock.wait(self.profile.understanding_prefill_s * len(live))
        # A static batch, as the engine runs it: every row steps until the longest answer ends.
        step_s = self.profile.understanding.seconds(len(live))
        stopped = _run_steps(clock, step_s, {index: requests[index].max_new_tokens for index in live}, requests)
        for index in live:
            outcomes[index] = (GenerationStopped("stopped on request") if index in stopped
                               else simulated_answer(requests[index]))
        return outcomes

    def _check_answer_request(self, request) -> None:
        check_answer_request(request)
        if not self.budget.understanding_fits(request.question, request.max_new_tokens):
            raise ValueError("prompt + max_new_tokens do not fit the model's context")


class _Schedule:
    """Sleeps to absolute deadlines, so the caller's own work between steps does not add up.

    Steps shorter than QUANTUM do not each wake the process: their callbacks run together, up to
    QUANTUM early, at one wake-up (a waking process costs ~50 us of CPU; 576 of them a batch
    add up when dozens of simulated workers share two cores)."""

    QUANTUM = 0.1

    def __init__(self, clock, sleep, scale: float):
        self._clock, self._sleep, self.scale = clock, sleep, scale
        self.deadline = clock()

    def wait(self, seconds: float, quantum: float = 0.0) -> None:
        self.deadline += seconds * self.scale
        remaining = self.deadline - self._clock()
        if remaining > quantum:
            self._sleep(remaining)


def _run_steps(clock: _Schedule, step_s: float, steps: dict[int, int], requests: list) -> set[int]:
    """One step at a time until every row is done or stopped; returns the stopped requests."""
    stopped: set[int] = set()
    for done in range(1, max(steps.values()) + 1):
        clock.wait(step_s, quantum=_Schedule.QUANTUM)
        for index, total in steps.items():
            if index in stopped or done > total:
                continue
            _offer_text(requests[index], done, total)
            callback = requests[index].progress
            if callback is not None and callback(done, total) is False:
                stopped.add(index)
        if len(stopped) == len(steps):
            break  # the engine ends a batch whose rows have all stopped
    clock.wait(0.0)  # the steps run early within the quantum end on time
    return stopped


class SimulatedBudget:
    """The API's prompt check without a tokenizer: about one token per 4 bytes, plus the template."""

    TEMPLATE_TOKENS = 16
    BYTES_PER_TOKEN = 4

    def __init__(self, context_length: int, image_token_count: int = IMAGE_TOKENS):
        self.context_length, self.image_token_count = context_length, image_token_count

    def generation_prompt_tokens(self, prompt: str) -> int:
        return self._count(prompt)

    def understanding_prompt_tokens(self, question: str) -> int:
        return self._count(question) + self.image_token_count + 2

    def generation_fits(self, prompt: str) -> bool:
        return self.generation_prompt_tokens(prompt) + self.image_token_count <= self.context_length

    def understanding_fits(self, question: str, max_new_tokens: int) -> bool:
        return self.understanding_prompt_tokens(question) + max_new_tokens <= self.context_length

    def reserved_tokens_in(self, text: str) -> list[str]:
        return [token for token in RESERVED_TOKENS if token in text]

    def _count(self, text: str) -> int:
        return self.TEMPLATE_TOKENS + -(-len(text.encode("utf-8")) // self.BYTES_PER_TOKEN)


def gradient_image(seed: int, index: int):
    """A cheap 384x384 RGB gradient whose colours follow the seed (distinct per image of a job)."""
    from PIL import Image, ImageOps

    digest = hashlib.blake2b(f"{seed}:{index}".encode(), digest_size=6).digest()
    ramp = Image.linear_gradient("L").resize((IMAGE_SIZE, IMAGE_SIZE)).rotate(digest[0] % 4 * 90)
    return ImageOps.colorize(ramp, black=tuple(digest[:3]), white=tuple(digest[3:]))


def _offer_text(request, done: int, total: int) -> None:
    """As the engine does (text_batch.AnswerTap): the answer so far every OFFER_TEXT_EVERY tokens,
    here the share of the final answer that `done` of `total` tokens make."""
    on_text = getattr(request, "on_text", None)  # image requests have none
    if on_text is not None and done % OFFER_TEXT_EVERY == 0:
        on_text(lambda: simulated_answer(request)[: len(simulated_answer(request)) * done // total])


def simulated_answer(request) -> str:
    return (f"A simulated answer ({request.max_new_tokens} tokens, seed {request.seed}) to: "
            f"{request.question[:200]}")


def load_simulated(model: str) -> SimulatedModel:
    return SimulatedModel(parse_spec(model))


def _prepare_each(requests: list, check) -> tuple[list, list[int]]:
    outcomes: list = [None] * len(requests)
    live = []
    for index, request in enumerate(requests):
        try:
            check(request)
            live.append(index)
        except ValueError as exc:
            outcomes[index] = exc
    return outcomes, live


"""Many jobs, few batches: plan which images/answers run together, run them, hand back outcomes.

A job bigger than what fits in memory is split across consecutive batches (its images keep
their own seeds, so the split does not change them). Each job keeps its own progress callback:
a job whose callback says stop leaves the batch (its rows finish as ballast, their output is
dropped) while the others go on. The service and the benchmark both run jobs through
`image_codes_for_jobs` and `answers_for_jobs`, so the benchmark plans exactly as the service does.
"""

from dataclasses import dataclass

import torch

from janus_model.errors import GenerationStopped
from janus_model.image_batch import ImageRow, generate_codes
from janus_model.previews import preview_every, preview_jpegs
from janus_model.sampling import row_seed
from janus_model.text_batch import generate_answers


@dataclass(frozen=True)
class Slice:
    request: int  # index into the caller's request list
    start: int  # first image / answer of that request in this batch
    count: int


def plan_batches(sizes: list[int], capacity: int) -> list[list[Slice]]:
    """Pack requests of `sizes` samples, in order, into batches of at most `capacity` samples."""
    if capacity < 1:
        raise ValueError("capacity must be at least 1")
    batches: list[list[Slice]] = []
    current: list[Slice] = []
    room = capacity
    for request, size in enumerate(sizes):
        start = 0
        while start < size:
            if room == 0:
                batches.append(current)
                current, room = [], capacity
            count = min(room, size - start)
            current.append(Slice(request, start, count))
            start += count
            room -= count
    if current:
        batches.append(current)
    return batches


@dataclass
class JobProgress:
    """One job's progress across the batches it spans, and whether it asked to stop."""

    callback: object
    total: int  # steps of the whole job
    offset: int = 0  # steps done in its earlier batches
    stopped: bool = False

    def report(self, done_in_batch: int) -> None:
        if self.stopped or self.callback is None:
            return
        if self.callback(self.offset + done_in_batch, self.total) is False:
            self.stopped = True


def batch_counts(batches: list[list[Slice]], requests: int) -> list[int]:
    counts = [0] * requests
    for batch in batches:
        for part in batch:
            counts[part.request] += 1
    return counts


def step_reporter(jobs: list[JobProgress], batch: list[Slice], steps_for):
    """on_step for one batch: report to each job in it; False once every one of them stopped."""
    members = [jobs[part.request] for part in batch]

    def on_step(done: int) -> bool:
        for part, job in zip(batch, members):
            job.report(min(done, steps_for(part)))
        return not all(job.stopped for job in members)

    return on_step



def image_codes_for_jobs(engine, requests: list, prompts: dict[int, torch.LongTensor]) -> dict:
    """{index: [num_images, 576] codes or GenerationStopped} for the requests whose prompt ids
    are in `prompts` (the others were refused before the engine)."""
    live = list(prompts)
    if not live:
        return {}
    capacity = engine.image_capacity(max(len(ids) for ids in prompts.values()))
    batches = plan_batches([requests[index].num_images for index in live], capacity)
    steps = engine.image_token_count
    jobs = [JobProgress(requests[index].progress, count * steps)
            for index, count in zip(live, batch_counts(batches, len(live)))]
    codes: dict[int, list[torch.Tensor]] = {index: [] for index in live}
    for batch in batches:
        active = [part for part in batch if not jobs[part.request].stopped]
        if not active:
            continue
        rows = [image_row(requests[live[part.request]], prompts[live[part.request]], part.start + k)
                for part in active for k in range(part.count)]
        on_codes, every = preview_hook(engine, [requests[live[part.request]] for part in active], active)
        result = generate_codes(engine, rows, step_reporter(jobs, active, lambda part: steps), on_codes, every)
        for part, chunk in zip(active, _split(result, active)):
            jobs[part.request].offset += steps
            codes[live[part.request]].append(chunk)
    return {index: GenerationStopped("stopped on request") if jobs[position].stopped else torch.cat(codes[index])
            for position, index in enumerate(live)}


def preview_hook(engine, members: list, parts: list[Slice]):
    """(on_codes, every) for generate_codes: one VQ decode of the whole batch's partial images,
    handed out to the jobs that asked for previews (their ImageRequest.on_preview); (None, 0)
    when none did."""
    wanting = [request.previews for request in members if getattr(request, "on_preview", None) and request.previews]
    if not wanting:
        return None, 0

    def on_codes(done: int, codes: torch.LongTensor) -> None:
        jpegs = preview_jpegs(engine.model, codes, engine.image_token_count)
        offset = 0
        for request, part in zip(members, parts):
            if request.on_preview is not None and request.previews:
                request.on_preview([(part.start + k, jpegs[offset + k]) for k in range(part.count)], done)
            offset += part.count

    return on_codes, preview_every(engine.image_token_count, max(wanting))


def image_row(request, prompt_ids: torch.LongTensor, image_index: int) -> ImageRow:
    return ImageRow(prompt_ids, request.cfg_weight, request.temperature, row_seed(request.seed, image_index))


def answers_for_jobs(engine, requests: list, rows: dict, decode=None) -> dict:
    """{index: new token ids or GenerationStopped} for the requests whose TextRow is in `rows`.
    `decode` (token ids -> text): offers the requests with an `on_text` their answers so far."""
    live = list(rows)
    if not live:
        return {}
    longest_prompt = max(len(rows[index].input_ids) for index in live)
    longest_answer = max(rows[index].max_new_tokens for index in live)
    capacity = engine.answer_capacity(longest_prompt, longest_answer)
    outcomes = {}
    for batch in plan_batches([1] * len(live), capacity):
        members = [live[part.request] for part in batch]
        limits = [rows[index].max_new_tokens for index in members]
        jobs = [JobProgress(requests[index].progress, limit) for index, limit in zip(members, limits)]
        local = [Slice(position, 0, 1) for position in range(len(members))]
        tokens = generate_answers(engine, [rows[index] for index in members],
                                  step_reporter(jobs, local, lambda part: limits[part.request]),
                                  text_offers([requests[index] for index in members], decode))
        for position, index in enumerate(members):
            stopped = jobs[position].stopped or tokens is None
            outcomes[index] = GenerationStopped("stopped on request") if stopped else tokens[position]
    return outcomes


def text_offers(requests: list, decode):
    """on_tokens for generate_answers: each request's on_text gets its answer so far, decoded
    only when called; None when no request asks (or nothing can decode)."""
    if decode is None or all(getattr(request, "on_text", None) is None for request in requests):
        return None

    def on_tokens(position: int, tokens_so_far) -> None:
        on_text = requests[position].on_text
        if on_text is not None:
            on_text(lambda: decode(tokens_so_far()))

    return on_tokens


def _split(codes: torch.LongTensor | None, parts: list[Slice]) -> list[torch.Tensor | None]:
    if codes is None:
        return [None] * len(parts)
    return list(codes.split([part.count for part in parts]))

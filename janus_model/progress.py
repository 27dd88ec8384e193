"""The progress/stop contract shared by image and text generation.

A callback `progress(done, total)` is called after every decode step. It rate-limits itself (the
worker only writes to the database every so often), so calling it every step is cheap. Returning
False (not merely a falsy None) means "stop": the generation raises GenerationStopped.
"""

from collections.abc import Callable

import torch
from transformers import StoppingCriteria

from janus_model.errors import GenerationStopped

ProgressCallback = Callable[[int, int], bool | None]


def wants_stop(progress: ProgressCallback | None, done: int, total: int) -> bool:
    return progress is not None and progress(done, total) is False


def report_progress(progress: ProgressCallback | None, done: int, total: int) -> None:
    if wants_stop(progress, done, total):
        raise GenerationStopped(f"stopped after {done} of {total} steps")


class ProgressStoppingCriteria(StoppingCriteria):
    """Reports text-generation progress to a callback and ends `generate()` when it says stop.

    `generate()` cannot raise on our behalf, so the criterion only remembers the request; the
    caller checks `stopped` afterwards and raises GenerationStopped.
    """

    def __init__(self, progress: ProgressCallback | None, prompt_length: int, max_new_tokens: int):
        self.progress = progress
        self.prompt_length = prompt_length
        self.max_new_tokens = max_new_tokens
        self.stopped = False

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs) -> torch.BoolTensor:
        done = input_ids.shape[1] - self.prompt_length
        if wants_stop(self.progress, done, self.max_new_tokens):
            self.stopped = True
        return torch.full((input_ids.shape[0],), self.stopped, dtype=torch.bool, device=input_ids.device)

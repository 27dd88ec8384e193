"""Image understanding: answer a question about an image with ordinary text decoding."""

from contextlib import contextmanager
from dataclasses import dataclass

import torch
from transformers import JanusForConditionalGeneration, StoppingCriteriaList

from janus_model.errors import GenerationStopped
from janus_model.progress import ProgressCallback, ProgressStoppingCriteria


@dataclass(frozen=True)
class TextSampling:
    max_new_tokens: int
    temperature: float  # 0 means greedy
    top_p: float
    seed: int

    def generate_kwargs(self) -> dict:
        if self.temperature == 0:
            return {"do_sample": False}
        return {"do_sample": True, "temperature": self.temperature, "top_p": self.top_p}


def generate_answer_tokens(
    model: JanusForConditionalGeneration,
    inputs: dict[str, torch.Tensor],
    sampling: TextSampling,
    progress: ProgressCallback | None = None,
) -> torch.LongTensor:
    """The new tokens (prompt excluded) that `model.generate` produces for one processed prompt."""
    prompt_length = inputs["input_ids"].shape[1]
    stopper = ProgressStoppingCriteria(progress, prompt_length, sampling.max_new_tokens)
    with seeded_global_rng(sampling.seed, model.device):
        sequences = model.generate(
            **inputs,
            # max_length rather than max_new_tokens: Janus' generate() fills in the default
            # max_length before delegating, and then warns that both are set on every call.
            max_length=prompt_length + sampling.max_new_tokens,
            stopping_criteria=StoppingCriteriaList([stopper]),
            generation_mode="text",
            **sampling.generate_kwargs(),
        )
    if stopper.stopped:
        raise GenerationStopped(f"stopped after {sequences.shape[1] - prompt_length} new tokens")
    return sequences[0, prompt_length:]


@contextmanager
def seeded_global_rng(seed: int, device: torch.device):
    """Seed torch's global RNG for one block and restore it afterwards.

    `generate()` samples with the global RNG and takes no generator, so this is how one seed
    reproduces one answer without leaking the seeding into the rest of the process.
    """
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        yield

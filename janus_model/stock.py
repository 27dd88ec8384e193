"""transformers' own Janus generation, unchanged: the reference the engine is checked and timed against."""

import torch
from transformers import JanusForConditionalGeneration


@torch.inference_mode()
def stock_image_tokens(model: JanusForConditionalGeneration, prompt_ids: torch.LongTensor, num_images: int,
                       cfg_weight: float, greedy: bool) -> torch.LongTensor:
    """[num_images, 576] codes from `generate(generation_mode="image")` for a [L] prompt.

    Greedy generate refuses num_return_sequences > 1, so n images are n copies of the prompt.
    """
    rows = prompt_ids.unsqueeze(0).repeat(num_images, 1)
    return model.generate(input_ids=rows, attention_mask=torch.ones_like(rows), generation_mode="image",
                          do_sample=not greedy, guidance_scale=cfg_weight)


@torch.inference_mode()
def stock_answer_tokens(model: JanusForConditionalGeneration, inputs: dict, max_new_tokens: int,
                        greedy: bool = True, streamer=None) -> torch.LongTensor:
    """The new tokens of text-mode `generate()` for one processed (image, question) prompt."""
    prompt_length = inputs["input_ids"].shape[1]
    # max_length rather than max_new_tokens: Janus' generate() fills in a default max_length and
    # would warn that both are set.
    sequences = model.generate(**inputs, max_length=prompt_length + max_new_tokens, do_sample=not greedy,
                               min_length=0, streamer=streamer)
    return sequences[0, prompt_length:]

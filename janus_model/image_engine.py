"""Our own image-token decode loop: classifier-free guidance over the Janus language model.

Structured as the fast engine will be: one prefill of all rows, then the same `step` 576 times.
A later change swaps the DynamicCache for a static one sized prompt + 576 and captures `step`
in a CUDA graph; the sampling and guidance code stays as is.

Rows: for n images there are n conditional rows (the prompt) followed by n unconditional rows
(the prompt with every token but the first (BOS) and the last (begin-of-image) replaced by the
pad token), the layout transformers' `generate(generation_mode="image")` uses, so greedy decoding
reproduces it token for token.
"""

from dataclasses import dataclass

import torch
from transformers import DynamicCache, JanusForConditionalGeneration

from janus_model.progress import ProgressCallback, report_progress


@dataclass(frozen=True)
class Sampling:
    cfg_weight: float
    temperature: float  # 0 means greedy (argmax)
    generator: torch.Generator | None  # local RNG, so a seed reproduces an image whatever else runs


def guidance_rows(prompt_ids: torch.LongTensor, num_images: int, pad_token_id: int) -> torch.LongTensor:
    """[2n, L] token rows from a [L] prompt: n conditional copies, then n unconditional ones."""
    conditional = prompt_ids.unsqueeze(0).expand(num_images, -1)
    unconditional = conditional.clone()
    unconditional[:, 1:-1] = pad_token_id
    return torch.cat([conditional, unconditional])


def guided_logits(image_logits: torch.Tensor, cfg_weight: float) -> torch.Tensor:
    """Classifier-free guidance: uncond + w * (cond - uncond), over [2n, V] -> [n, V]."""
    conditional, unconditional = image_logits.chunk(2)
    # Written in transformers' operation order (ClassifierFreeGuidanceLogitsProcessor) so float
    # rounding, and hence greedy picks, are identical.
    return unconditional + (conditional - unconditional) * cfg_weight


def pick_tokens(logits: torch.Tensor, sampling: Sampling) -> torch.LongTensor:
    if sampling.temperature == 0:
        return logits.argmax(dim=-1)
    probabilities = torch.softmax(logits / sampling.temperature, dim=-1)
    return torch.multinomial(probabilities, num_samples=1, generator=sampling.generator).squeeze(-1)


class ImageDecodeEngine:
    """Prefill once, then one step per image token, on the language model with a KV cache."""

    def __init__(self, model: JanusForConditionalGeneration):
        self.model = model
        self.language_model = model.model.language_model
        self.num_image_tokens = model.config.vision_config.num_image_tokens

    def prefill(self, rows: torch.LongTensor) -> tuple[DynamicCache, torch.Tensor]:
        """Run all prompt rows at once; returns the cache and the image logits of the last position."""
        cache = DynamicCache(config=self.language_model.config)
        embeddings = self.model.get_input_embeddings()(rows)
        return cache, self._image_logits(embeddings, cache)

    def step(self, tokens: torch.LongTensor, cache: DynamicCache) -> torch.Tensor:
        """Feed the n chosen image tokens to both halves of the rows; returns the next image logits."""
        both_halves = torch.cat([tokens, tokens]).unsqueeze(-1)
        # Image tokens enter through the generation embedding + aligner, not the text embedding.
        embeddings = self.model.prepare_embeddings_for_image_generation(both_halves)
        return self._image_logits(embeddings, cache)

    def _image_logits(self, embeddings: torch.Tensor, cache: DynamicCache) -> torch.Tensor:
        output = self.language_model(inputs_embeds=embeddings, past_key_values=cache, use_cache=True)
        last_hidden = output.last_hidden_state[:, -1, :]
        # float32 for guidance and softmax: bf16 logits would round the small differences away.
        return self.model.model.generation_head(last_hidden).float()


def generate_image_tokens(
    model: JanusForConditionalGeneration,
    prompt_ids: torch.LongTensor,
    num_images: int,
    sampling: Sampling,
    pad_token_id: int,
    progress: ProgressCallback | None = None,
) -> torch.LongTensor:
    """The [n, 576] VQ codes of n images for one tokenized generation prompt ([L], ends with BOI)."""
    engine = ImageDecodeEngine(model)
    total = engine.num_image_tokens
    codes = torch.empty((num_images, total), dtype=torch.long, device=prompt_ids.device)

    cache, image_logits = engine.prefill(guidance_rows(prompt_ids, num_images, pad_token_id))
    for index in range(total):
        tokens = pick_tokens(guided_logits(image_logits, sampling.cfg_weight), sampling)
        codes[:, index] = tokens
        report_progress(progress, index + 1, total)
        if index + 1 < total:  # the last token needs no forward pass of its own
            image_logits = engine.step(tokens, cache)
    return codes

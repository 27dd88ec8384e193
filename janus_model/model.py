"""JanusModel: one loaded checkpoint and the two things the service asks of it."""

import torch
from PIL import Image
from transformers import JanusForConditionalGeneration, JanusProcessor

from janus_model.errors import GenerationStopped
from janus_model.image_decode import codes_to_images
from janus_model.image_engine import Sampling, generate_image_tokens
from janus_model.progress import ProgressCallback
from janus_model.requests import AnswerOutcome, AnswerRequest, ImageOutcome, ImageRequest
from janus_model.prompts import generation_messages, render, understanding_messages
from janus_model.understanding import TextSampling, generate_answer_tokens

__all__ = ["JanusModel", "GenerationStopped"]


class JanusModel:
    """A Janus checkpoint in eval mode on one device. Build it with `janus_model.load_model`."""

    def __init__(self, model: JanusForConditionalGeneration, processor: JanusProcessor):
        self.model = model.eval()
        self.processor = processor
        self.device: torch.device = model.device
        self.dtype: torch.dtype = model.dtype
        self.context_length: int = model.config.text_config.max_position_embeddings
        self.image_token_count: int = model.config.vision_config.num_image_tokens

    # ---- image generation -------------------------------------------------------------------

    def generation_input_ids(self, prompt: str) -> torch.LongTensor:
        """[1, L] token ids of the formatted prompt, BOS first and begin-of-image tag last."""
        text = render(self.processor, generation_messages(prompt))
        inputs = self.processor(text=text, generation_mode="image", return_tensors="pt")
        return inputs["input_ids"].to(self.device)

    def count_prompt_tokens(self, prompt: str) -> int:
        return self.generation_input_ids(prompt).shape[1]

    @torch.inference_mode()
    def generate_image_tokens(
        self,
        prompt: str,
        num_images: int = 4,
        cfg_weight: float = 5.0,
        temperature: float = 1.0,
        seed: int = 0,
        progress: ProgressCallback | None = None,
    ) -> torch.LongTensor:
        """[num_images, 576] VQ codes; generate_images decodes them to pixels."""
        _check_positive("num_images", num_images)
        _check_not_negative("temperature", temperature)
        prompt_ids = self.generation_input_ids(prompt)[0]
        self._check_fits(len(prompt_ids) + self.image_token_count, "prompt + image tokens")
        sampling = Sampling(cfg_weight=cfg_weight, temperature=temperature, generator=self._generator(seed))
        pad_token_id = self.model.generation_config.pad_token_id
        return generate_image_tokens(self.model, prompt_ids, num_images, sampling, pad_token_id, progress)

    @torch.inference_mode()
    def generate_images(
        self,
        prompt: str,
        num_images: int = 4,
        cfg_weight: float = 5.0,
        temperature: float = 1.0,
        seed: int = 0,
        progress: ProgressCallback | None = None,
    ) -> list[Image.Image]:
        codes = self.generate_image_tokens(prompt, num_images, cfg_weight, temperature, seed, progress)
        return codes_to_images(self.model, codes)

    def generate_images_batch(self, requests: list[ImageRequest]) -> list[ImageOutcome]:
        """Several jobs' images; see janus_model.requests for the outcome contract."""
        return [_outcome(lambda r=r: self.generate_images(r.prompt, r.num_images, r.cfg_weight, r.temperature,
                                                         r.seed, r.progress)) for r in requests]

    # ---- understanding ----------------------------------------------------------------------

    def understanding_inputs(self, image: Image.Image, question: str) -> dict[str, torch.Tensor]:
        """Processor output for one image + question: input_ids, attention_mask, pixel_values."""
        text = render(self.processor, understanding_messages(question))
        inputs = self.processor(text=text, images=image.convert("RGB"), return_tensors="pt")
        inputs = inputs.to(self.device)
        inputs["pixel_values"] = inputs["pixel_values"].to(self.dtype)
        return dict(inputs)

    @torch.inference_mode()
    def answer_tokens(
        self,
        image: Image.Image,
        question: str,
        max_new_tokens: int = 256,
        temperature: float = 0.1,
        top_p: float = 0.95,
        seed: int = 0,
        progress: ProgressCallback | None = None,
    ) -> torch.LongTensor:
        """The answer's new token ids; `answer` decodes them."""
        _check_positive("max_new_tokens", max_new_tokens)
        _check_not_negative("temperature", temperature)
        inputs = self.understanding_inputs(image, question)
        self._check_fits(inputs["input_ids"].shape[1] + max_new_tokens, "prompt + max_new_tokens")
        sampling = TextSampling(max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p, seed=seed)
        return generate_answer_tokens(self.model, inputs, sampling, progress)

    def answer(
        self,
        image: Image.Image,
        question: str,
        max_new_tokens: int = 256,
        temperature: float = 0.1,
        top_p: float = 0.95,
        seed: int = 0,
        progress: ProgressCallback | None = None,
    ) -> str:
        tokens = self.answer_tokens(image, question, max_new_tokens, temperature, top_p, seed, progress)
        return self.processor.tokenizer.decode(tokens, skip_special_tokens=True).strip()

    def answer_batch(self, requests: list[AnswerRequest]) -> list[AnswerOutcome]:
        return [_outcome(lambda r=r: self.answer(r.image, r.question, r.max_new_tokens, r.temperature, r.top_p,
                                                r.seed, r.progress)) for r in requests]

    # ---- helpers ----------------------------------------------------------------------------

    def _generator(self, seed: int) -> torch.Generator:
        # A local generator on the model's device: sampling stays reproducible per seed and does
        # not depend on, or disturb, torch's global RNG.
        return torch.Generator(device=self.device).manual_seed(seed)

    def _check_fits(self, positions: int, what: str) -> None:
        if positions > self.context_length:
            raise ValueError(f"{what} need {positions} positions, the model has {self.context_length}")


def _check_positive(name: str, value: int) -> None:
    if value < 1:
        raise ValueError(f"{name} must be at least 1, got {value}")


def _check_not_negative(name: str, value: float) -> None:
    if value < 0:
        raise ValueError(f"{name} must be >= 0 (0 = greedy), got {value}")


def _outcome(call):
    try:
        return call()
    except (GenerationStopped, ValueError) as exc:
        return exc

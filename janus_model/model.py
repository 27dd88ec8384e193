"""JanusModel: one loaded checkpoint, its processor and its decode engine.

The service asks two things of it, each for many jobs at once: images for prompts
(`generate_images_batch`) and answers about images (`answer_batch`). The single-job methods are
the same path with a batch of one.
"""

from functools import cached_property

import torch
from PIL import Image
from transformers import JanusForConditionalGeneration, JanusProcessor

from janus_model.batching import answers_for_jobs, image_codes_for_jobs
from janus_model.engine import DecodeEngine, EngineOptions
from janus_model.errors import GenerationStopped
from janus_model.image_decode import codes_to_images_in_chunks
from janus_model.prompts import DEFAULT_SYSTEM_PROMPT, generation_messages, render, understanding_messages
from janus_model.requests import (AnswerOutcome, AnswerRequest, ImageOutcome, ImageRequest, check_answer_request,
                                   check_image_request)
from janus_model.sampling import row_seed
from janus_model.text_batch import TextRow

__all__ = ["JanusModel", "GenerationStopped"]


class JanusModel:
    """A Janus checkpoint in eval mode on one device. Build it with `janus_model.load_model`."""

    def __init__(self, model: JanusForConditionalGeneration, processor: JanusProcessor,
                 options: EngineOptions = EngineOptions()):
        self.model = model.eval()
        self.processor = processor
        self.device: torch.device = model.device
        self.dtype: torch.dtype = model.dtype
        self.context_length: int = model.config.text_config.max_position_embeddings
        self.image_token_count: int = model.config.vision_config.num_image_tokens
        self.engine = DecodeEngine(self.model, options)

    # ---- image generation -------------------------------------------------------------------

    def generation_input_ids(self, prompt: str) -> torch.LongTensor:
        """[1, L] token ids of the formatted prompt, BOS first and begin-of-image tag last."""
        text = render(self.processor, generation_messages(prompt))
        inputs = self.processor(text=text, generation_mode="image", return_tensors="pt")
        return inputs["input_ids"].to(self.device)

    def count_prompt_tokens(self, prompt: str) -> int:
        return self.generation_input_ids(prompt).shape[1]

    @torch.inference_mode()
    def generate_image_tokens_batch(self, requests: list[ImageRequest]) -> list[torch.LongTensor | BaseException]:
        """Each request's [num_images, 576] VQ codes, or the exception that ended that request."""
        outcomes, prompts = _prepare_each(requests, self._image_prompt)
        for index, codes in image_codes_for_jobs(self.engine, requests, prompts).items():
            outcomes[index] = codes
        return outcomes

    def generate_images_batch(self, requests: list[ImageRequest]) -> list[ImageOutcome]:
        """Several jobs' images; see janus_model.requests for the outcome contract."""
        token_outcomes = self.generate_image_tokens_batch(requests)
        return [outcome if isinstance(outcome, BaseException) else self.decode_codes(outcome)
                for outcome in token_outcomes]

    @torch.inference_mode()
    def decode_codes(self, codes: torch.LongTensor) -> list[Image.Image]:
        """VQ codes -> images, a memory-sized chunk at a time."""
        return codes_to_images_in_chunks(self.model, codes, self.engine.vq_decode_chunk())

    def generate_image_tokens(self, prompt: str, num_images: int = 4, cfg_weight: float = 5.0,
                              temperature: float = 1.0, seed: int = 0, progress=None) -> torch.LongTensor:
        """[num_images, 576] VQ codes of one job; generate_images decodes them to pixels."""
        request = ImageRequest(prompt, num_images, cfg_weight, temperature, seed, progress)
        return _raise_or_return(self.generate_image_tokens_batch([request])[0])

    def generate_images(self, prompt: str, num_images: int = 4, cfg_weight: float = 5.0,
                        temperature: float = 1.0, seed: int = 0, progress=None) -> list[Image.Image]:
        return self.decode_codes(self.generate_image_tokens(prompt, num_images, cfg_weight, temperature, seed, progress))

    def _image_prompt(self, request: ImageRequest) -> torch.LongTensor:
        check_image_request(request)
        prompt_ids = self.generation_input_ids(request.prompt)[0]
        self._check_fits(len(prompt_ids) + self.image_token_count, "prompt + image tokens")
        return prompt_ids

    # ---- understanding ----------------------------------------------------------------------

    def understanding_inputs(self, image: Image.Image, question: str) -> dict[str, torch.Tensor]:
        """Processor output for one image + question: input_ids, attention_mask, pixel_values."""
        text = render(self.processor, understanding_messages(question))
        inputs = self.processor(text=text, images=image.convert("RGB"), return_tensors="pt")
        inputs = inputs.to(self.device)
        inputs["pixel_values"] = inputs["pixel_values"].to(self.dtype)
        return dict(inputs)

    @torch.inference_mode()
    def answer_tokens_batch(self, requests: list[AnswerRequest]) -> list[torch.LongTensor | BaseException]:
        """Each request's new token ids (end-of-text included when reached), or its exception."""
        outcomes, rows = _prepare_each(requests, self._text_row)
        for index, tokens in answers_for_jobs(self.engine, requests, rows, self.decode_answer).items():
            outcomes[index] = tokens
        return outcomes

    def answer_batch(self, requests: list[AnswerRequest]) -> list[AnswerOutcome]:
        return [outcome if isinstance(outcome, BaseException) else self.decode_answer(outcome)
                for outcome in self.answer_tokens_batch(requests)]

    def decode_answer(self, tokens: torch.LongTensor) -> str:
        return self.processor.tokenizer.decode(tokens, skip_special_tokens=True).strip()

    def answer_tokens(self, image: Image.Image, question: str, max_new_tokens: int = 256,
                      temperature: float = 0.1, top_p: float = 0.95, seed: int = 0,
                      progress=None) -> torch.LongTensor:
        """The answer's new token ids; `answer` decodes them."""
        request = AnswerRequest(image, question, max_new_tokens, temperature, top_p, seed, progress)
        return _raise_or_return(self.answer_tokens_batch([request])[0])

    def answer(self, image: Image.Image, question: str, max_new_tokens: int = 256, temperature: float = 0.1,
               top_p: float = 0.95, seed: int = 0, progress=None) -> str:
        return self.decode_answer(self.answer_tokens(image, question, max_new_tokens, temperature, top_p, seed,
                                                     progress))

    def _text_row(self, request: AnswerRequest) -> TextRow:
        check_answer_request(request)
        inputs = self.understanding_inputs(request.image, request.question)
        self._check_fits(inputs["input_ids"].shape[1] + request.max_new_tokens, "prompt + max_new_tokens")
        return TextRow(inputs["input_ids"][0], inputs["pixel_values"], request.max_new_tokens,
                       request.temperature, request.top_p, row_seed(request.seed, 0))

    # ---- what the checkpoint decides ---------------------------------------------------------

    @cached_property
    def served_settings(self) -> dict[str, dict]:
        """The model-facing choices this checkpoint makes, by job type, for jobs to record.

        Janus-1.3B and Janus-Pro differ here, not in their sampling defaults: the conversation's
        role names (User/Assistant vs <|User|>/<|Assistant|>) come from the checkpoint's chat
        template, the image mean/std from its image processor.
        """
        processor, tokenizer = self.processor, self.processor.tokenizer
        understanding = render(processor, understanding_messages("{question}"))
        if processor.use_default_system_prompt:
            understanding = DEFAULT_SYSTEM_PROMPT + understanding  # what JanusProcessor prepends
        image_processor = processor.image_processor
        return {
            "generate": {"prompt_format": render(processor, generation_messages("{prompt}")) + tokenizer.boi_token},
            "understand": {"prompt_format": understanding, "image_mean": list(image_processor.image_mean),
                           "image_std": list(image_processor.image_std)},
        }

    # ---- helpers ----------------------------------------------------------------------------

    def _check_fits(self, positions: int, what: str) -> None:
        if positions > self.context_length:
            raise ValueError(f"{what} need {positions} positions, the model has {self.context_length}")


def _prepare_each(requests: list, prepare) -> tuple[list, dict]:
    """(outcomes with each refused request's ValueError in place, {index: prepared input} of the rest)."""
    outcomes: list = [None] * len(requests)
    prepared = {}
    for index, request in enumerate(requests):
        try:
            prepared[index] = prepare(request)
        except ValueError as exc:
            outcomes[index] = exc
    return outcomes, prepared


def _raise_or_return(outcome):
    if isinstance(outcome, BaseException):
        raise outcome
    return outcome


"""Does a request fit the model's context? Answered with the tokenizer alone.

The API validates prompts before queueing a job, in a process that must not load torch or the
model, so this module only reads the tokenizer and two JSON files of the checkpoint. It counts
the tokens exactly as JanusProcessor builds them (tests compare it with the real processor).
"""

import json

import transformers
from transformers import PreTrainedTokenizerFast
from transformers.utils import cached_file

from janus_model.convert.formats import is_original_checkpoint
from janus_model.prompts import DEFAULT_SYSTEM_PROMPT, generation_messages, render, understanding_messages


class PromptBudget:
    def __init__(
        self,
        tokenizer: PreTrainedTokenizerFast,
        context_length: int,
        image_token_count: int,
        use_default_system_prompt: bool,
    ):
        self.tokenizer = tokenizer
        self.context_length = context_length
        self.image_token_count = image_token_count
        self.use_default_system_prompt = use_default_system_prompt
        self._generation_bound = self._bound_without_counting(self.generation_prompt_tokens, generation_messages)
        self._understanding_bound = self._bound_without_counting(self.understanding_prompt_tokens,
                                                                 understanding_messages)

    def _bound_without_counting(self, count, messages) -> int | None:
        """Tokens that a prompt of B UTF-8 bytes can add at most, minus B (None: no such bound).

        Every ordinary token covers at least one byte, so the text inserted into the template
        adds at most its bytes, plus the bytes of the template's ordinary text around it (whose
        tokens may merge differently once it is there), plus a token where the tokenizer starts
        a segment. An exact count (tokenizer and chat template: most of a submit's prompt check)
        is then needed only for prompts near the limit. Only for templates that insert the text
        once, verbatim."""
        empty = render(self.tokenizer, messages(""))
        if len(render(self.tokenizer, messages("abcdefg")).encode()) - len(empty.encode()) != 7:
            return None
        return count("") + len(empty.encode()) + 2

    @classmethod
    def from_checkpoint(cls, source: str) -> "PromptBudget":
        """Read a local checkpoint folder or a hub id (the same `source` load_model takes)."""
        if is_original_checkpoint(source):
            return cls.from_original_checkpoint(source)
        config = _read_json(source, "config.json")
        processor_config = _read_json(source, "processor_config.json", required=False)
        tokenizer = _tokenizer_class(source).from_pretrained(source)
        if tokenizer.chat_template is None:
            tokenizer.chat_template = _read_processor_chat_template(source)
        return cls(
            tokenizer=tokenizer,
            context_length=config["text_config"]["max_position_embeddings"],
            image_token_count=config["vision_config"].get("num_image_tokens", 576),
            use_default_system_prompt=processor_config.get("use_default_system_prompt", False),
        )

    @classmethod
    def from_original_checkpoint(cls, source: str) -> "PromptBudget":
        """A DeepSeek original-format folder, read through the conversion's own translation of its
        tokenizer and processor (no weights, no torch), so the API needs no converted copy."""
        from janus_model.convert.formats import detect_family, original_config
        from janus_model.convert.processor_files import build_tokenizer, processor_config

        config = original_config(source)
        context_length = config["language_config"].get("max_position_embeddings", 2048)
        processor = processor_config(source, config["vision_config"].get("params", {}).get("image_size", 384),
                                     _original_image_tokens(source))
        return cls(
            tokenizer=build_tokenizer(source, detect_family(source), context_length),
            context_length=context_length,
            image_token_count=processor["num_image_tokens"],
            use_default_system_prompt=processor["use_default_system_prompt"],
        )

    def generation_prompt_tokens(self, prompt: str) -> int:
        """Tokens of the formatted generation prompt, begin-of-image tag included."""
        text = render(self.tokenizer, generation_messages(prompt)) + self.tokenizer.boi_token
        return self._count(text)

    def understanding_prompt_tokens(self, question: str) -> int:
        """Tokens of the formatted question with the image expanded to its placeholder tokens."""
        text = render(self.tokenizer, understanding_messages(question))
        if self.use_default_system_prompt:
            text = DEFAULT_SYSTEM_PROMPT + text
        one_image = (
            self.tokenizer.boi_token
            + self.tokenizer.image_token * self.image_token_count
            + self.tokenizer.eoi_token
        )
        return self._count(text.replace(self.tokenizer.image_token, one_image))

    def generation_fits(self, prompt: str) -> bool:
        room = self.context_length - self.image_token_count
        return _surely_under(self._generation_bound, prompt, room) or self.generation_prompt_tokens(prompt) <= room

    def understanding_fits(self, question: str, max_new_tokens: int) -> bool:
        room = self.context_length - max_new_tokens
        return (_surely_under(self._understanding_bound, question, room)
                or self.understanding_prompt_tokens(question) <= room)

    def reserved_tokens_in(self, text: str) -> list[str]:
        """Special tokens written out in user text; they would be read as markup, not words."""
        return [token for token in self.tokenizer.all_special_tokens if token and token in text]

    def _count(self, text: str) -> int:
        # verbose=False: an over-long prompt is an answer here (False), not something to log.
        return len(self.tokenizer(text, verbose=False)["input_ids"])


def _surely_under(bound: int | None, text: str, room: int) -> bool:
    return bound is not None and bound + len(text.encode()) <= room


def _original_image_tokens(source: str) -> int:
    # DeepSeek's processor_config.json states it (576); its processor expands each image to that many.
    return _read_json(source, "processor_config.json", required=False).get("num_image_tokens", 576)


def _read_json(source: str, filename: str, required: bool = True) -> dict:
    path = cached_file(source, filename, _raise_exceptions_for_missing_entries=required)
    if path is None:
        return {}
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def _tokenizer_class(source: str) -> type[PreTrainedTokenizerFast]:
    # The class the processor gets from AutoTokenizer (e.g. LlamaTokenizerFast for Janus-Pro),
    # looked up by name because importing AutoTokenizer imports torch.
    name = _read_json(source, "tokenizer_config.json", required=False).get("tokenizer_class")
    candidate = getattr(transformers, name, None) if name else None
    if isinstance(candidate, type) and issubclass(candidate, PreTrainedTokenizerFast):
        return candidate
    return PreTrainedTokenizerFast


def _read_processor_chat_template(source: str) -> str | None:
    # Checkpoints converted by older transformers keep the template only in the processor's
    # chat_template.json, which the tokenizer does not read.
    path = cached_file(source, "chat_template.json", _raise_exceptions_for_missing_entries=False)
    if path is None:
        return None
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)["chat_template"]

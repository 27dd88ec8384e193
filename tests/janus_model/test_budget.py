"""PromptBudget: the API's torch-free context check agrees with what the model really builds."""

import subprocess
import sys

import pytest

from janus_model.budget import PromptBudget
from janus_model.prompts import DEFAULT_SYSTEM_PROMPT


@pytest.fixture(scope="module")
def budget(tiny_checkpoint):
    return PromptBudget.from_checkpoint(str(tiny_checkpoint))


def test_reads_context_and_image_tokens_from_the_checkpoint(budget):
    assert budget.context_length == 2048
    assert budget.image_token_count == 576
    assert budget.use_default_system_prompt is True


def test_a_short_prompt_fits(budget):
    assert budget.generation_fits("A red fox in the snow")


def test_a_3000_token_prompt_does_not_fit(budget):
    prompt = "snow " * 600
    assert budget.generation_prompt_tokens(prompt) > 3000
    assert not budget.generation_fits(prompt)


def test_the_generation_limit_is_exact(budget):
    # Grow a prompt until prompt + 576 image tokens is exactly the context, then one more byte.
    base = budget.generation_prompt_tokens("")
    room = budget.context_length - budget.image_token_count - base
    assert budget.generation_fits("x" * room)
    assert not budget.generation_fits("x" * (room + 1))


def test_understanding_with_1024_new_tokens_fits_a_short_question(budget):
    assert budget.understanding_fits("What is in this picture?", max_new_tokens=1024)
    assert not budget.understanding_fits("What is in this picture?", max_new_tokens=2048)


def test_counts_equal_the_models_real_prompts(budget, tiny_model, photo):
    for prompt in ["", "A cat", "  spaces around  ", "naïve café, 東京"]:
        assert budget.generation_prompt_tokens(prompt) == tiny_model.count_prompt_tokens(prompt)
    for question in ["What is this?", "Describe the colours.\nThen count the stripes."]:
        real = tiny_model.understanding_inputs(photo, question)["input_ids"].shape[1]
        assert budget.understanding_prompt_tokens(question) == real


def test_uses_the_processors_tokenizer_class(budget, tiny_model):
    assert type(budget.tokenizer) is type(tiny_model.processor.tokenizer)


def test_system_prompt_mirror_matches_transformers():
    from transformers.models.janus.processing_janus import DEFAULT_SYSTEM_PROMPT as upstream

    assert DEFAULT_SYSTEM_PROMPT == upstream


def test_budget_imports_no_torch(tiny_checkpoint):
    code = (
        "import sys\n"
        "from janus_model.budget import PromptBudget\n"
        f"PromptBudget.from_checkpoint({str(tiny_checkpoint)!r}).generation_fits('a cat')\n"
        "heavy = [m for m in ('torch', 'janus_model.model', 'janus_model.loader') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_reserved_tokens_in_user_text_are_found(budget):
    assert budget.reserved_tokens_in("a plain prompt") == []
    assert budget.reserved_tokens_in("draw <image_placeholder> here") == ["<image_placeholder>"]
    assert budget.tokenizer.boi_token in budget.reserved_tokens_in(f"x{budget.tokenizer.boi_token}")


@pytest.mark.parametrize("text", ["", "a red fox", "  spaces  and\ttabs\n\n", "naïve café, 東京 🦊🦊",
                                  "x" * 1500, "<|User|> written out", "\u0301\u0301 combining marks"])
def test_the_bound_without_counting_is_never_below_the_count(budget, text):
    # The tiny tokenizer has no merges: a byte is a token, the worst case for the bound.
    assert budget._generation_bound + len(text.encode()) >= budget.generation_prompt_tokens(text)
    assert budget._understanding_bound + len(text.encode()) >= budget.understanding_prompt_tokens(text)


def test_fits_near_the_limit_is_decided_by_the_exact_count(budget, monkeypatch):
    counted = []
    real = budget.generation_prompt_tokens
    monkeypatch.setattr(budget, "generation_prompt_tokens", lambda text: counted.append(text) or real(text))
    assert budget.generation_fits("a short prompt") and counted == []
    room = budget.context_length - budget.image_token_count - real("")
    assert budget.generation_fits("x" * room) and not budget.generation_fits("x" * (room + 1))
    assert len(counted) == 2

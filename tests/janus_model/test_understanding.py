"""Image understanding: answers are reproducible, greedy equals generate(), progress and stopping."""

import pytest
import torch
from PIL import Image

from janus_model import GenerationStopped
from tests.janus_model.helpers import ProgressRecorder

QUESTION = "What is in this picture?"


def test_answer_is_text(tiny_model, photo):
    answer = tiny_model.answer(photo, QUESTION, max_new_tokens=16, seed=0)
    assert isinstance(answer, str)
    assert answer == answer.strip()
    assert "<image_placeholder>" not in answer and "<｜end▁of▁sentence｜>" not in answer


def test_same_seed_same_answer_different_seed_different_answer(tiny_model, photo):
    # temperature 1: with the default 0.1 the tiny model's answers hardly depend on the seed
    sample = dict(max_new_tokens=24, temperature=1.0, top_p=1.0)
    first = tiny_model.answer_tokens(photo, QUESTION, seed=3, **sample)
    torch.manual_seed(777)
    again = tiny_model.answer_tokens(photo, QUESTION, seed=3, **sample)
    other = tiny_model.answer_tokens(photo, QUESTION, seed=4, **sample)
    assert torch.equal(first, again)
    assert not torch.equal(first, other)


def test_answering_leaves_the_global_rng_alone(tiny_model, photo):
    torch.manual_seed(5)
    expected = torch.rand(2)
    torch.manual_seed(5)
    tiny_model.answer(photo, QUESTION, max_new_tokens=8, temperature=1.0, seed=1)
    assert torch.equal(torch.rand(2), expected)


def test_greedy_answer_equals_transformers_generate(tiny_model, photo):
    ours = tiny_model.answer_tokens(photo, QUESTION, max_new_tokens=24, temperature=0)
    inputs = tiny_model.understanding_inputs(photo, QUESTION)
    with torch.inference_mode():
        sequences = tiny_model.model.generate(**inputs, do_sample=False, max_new_tokens=24)
    theirs = sequences[0, inputs["input_ids"].shape[1] :]
    assert torch.equal(ours, theirs)
    assert len(set(ours.tolist())) > 1  # not a single repeated token
    decoded = tiny_model.processor.tokenizer.decode(theirs, skip_special_tokens=True).strip()
    assert tiny_model.answer(photo, QUESTION, max_new_tokens=24, temperature=0) == decoded


def test_answer_depends_on_the_image(tiny_model, photo):
    other_photo = Image.new("RGB", (200, 200), (255, 255, 255))
    first = tiny_model.answer_tokens(photo, QUESTION, max_new_tokens=12, temperature=0)
    second = tiny_model.answer_tokens(other_photo, QUESTION, max_new_tokens=12, temperature=0)
    assert not torch.equal(first, second)


def test_understanding_prompt_holds_the_image_tokens(tiny_model, photo):
    inputs = tiny_model.understanding_inputs(photo, QUESTION)
    image_token_id = tiny_model.model.config.image_token_id
    assert (inputs["input_ids"] == image_token_id).sum().item() == 576
    assert inputs["pixel_values"].shape == (1, 3, 384, 384)


def test_progress_reports_every_new_token(tiny_model, photo):
    recorder = ProgressRecorder()
    tokens = tiny_model.answer_tokens(photo, QUESTION, max_new_tokens=6, temperature=0, progress=recorder)
    assert recorder.calls == [(step, 6) for step in range(1, len(tokens) + 1)]


def test_progress_returning_false_stops_the_answer(tiny_model, photo):
    recorder = ProgressRecorder(stop_at=3)
    with pytest.raises(GenerationStopped):
        tiny_model.answer(photo, QUESTION, max_new_tokens=50, progress=recorder)
    assert recorder.calls == [(1, 50), (2, 50), (3, 50)]


def test_too_many_new_tokens_are_refused(tiny_model, photo):
    with pytest.raises(ValueError, match="positions"):
        tiny_model.answer(photo, QUESTION, max_new_tokens=2000)

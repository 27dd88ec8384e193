"""The batched decode engine: the correctness gates of the fast path (CPU, float32, tiny model).

- greedy tokens equal transformers' generate(), for image and text, also for prompts batched
  with others of different lengths;
- a job's sampled output is the same alone, batched with other jobs, padded to a bucket (the
  shapes CUDA graphs use), and split into chunks by a small memory budget;
- one job stopping or failing leaves its batch-mates' outputs untouched.
"""

import pytest
import torch
from PIL import Image

from janus_model import GenerationStopped, JanusModel
from janus_model.engine import EngineOptions
from janus_model.memory import MemoryPolicy
from janus_model.requests import AnswerRequest, ImageRequest
from janus_model.stock import stock_answer_tokens, stock_image_tokens
from tests.janus_model.helpers import ProgressRecorder

LIGHTHOUSE = ImageRequest("A lighthouse on a cliff at dawn", num_images=2, cfg_weight=5.0, temperature=1.0, seed=7)
CAT = ImageRequest("cat", num_images=1, cfg_weight=3.0, temperature=0.7, seed=9)
FOX = ImageRequest("a red fox asleep in fresh snow under a full moon, oil painting", num_images=3,
                   cfg_weight=4.0, temperature=0.0, seed=1)


def variant(tiny_model, **options) -> JanusModel:
    """The same weights behind an engine with other options."""
    return JanusModel(tiny_model.model, tiny_model.processor, EngineOptions(**options))


@pytest.fixture(scope="module")
def bucketed(tiny_model):
    return variant(tiny_model, bucketed=True)


@pytest.fixture(scope="module")
def alone(tiny_model):
    return {request.prompt: tiny_model.generate_image_tokens_batch([request])[0] for request in (LIGHTHOUSE, CAT, FOX)}


def assert_same_codes(outcomes, alone):
    for request, codes in zip((CAT, LIGHTHOUSE, FOX), outcomes):
        assert torch.equal(codes, alone[request.prompt]), f"{request.prompt!r} changed when batched"


# ---- greedy parity with transformers --------------------------------------------------------------


def test_greedy_images_of_different_prompts_batched_equal_transformers_alone(tiny_model):
    prompts = ["cat", "A lighthouse on a cliff at dawn, seen from the sea"]
    outcomes = tiny_model.generate_image_tokens_batch(
        [ImageRequest(prompt, num_images=1, cfg_weight=5.0, temperature=0) for prompt in prompts])
    for prompt, ours in zip(prompts, outcomes):
        theirs = stock_image_tokens(tiny_model.model, tiny_model.generation_input_ids(prompt)[0], 1, 5.0, greedy=True)
        assert torch.equal(ours, theirs), f"{(ours != theirs).sum().item()} tokens differ for {prompt!r}"


def test_greedy_answers_batched_equal_transformers_alone(tiny_model, photo):
    questions = [(photo, "What is this?"), (Image.new("RGB", (64, 96), (20, 200, 40)), "Describe every detail.")]
    outcomes = tiny_model.answer_tokens_batch(
        [AnswerRequest(image, question, max_new_tokens=20, temperature=0) for image, question in questions])
    for (image, question), ours in zip(questions, outcomes):
        theirs = stock_answer_tokens(tiny_model.model, tiny_model.understanding_inputs(image, question), 20)
        assert torch.equal(ours, theirs)
        assert len(set(ours.tolist())) > 1


# ---- a job's output does not depend on its company ------------------------------------------------


def test_sampled_images_are_the_same_alone_and_batched(tiny_model, alone):
    assert_same_codes(tiny_model.generate_image_tokens_batch([CAT, LIGHTHOUSE, FOX]), alone)


def test_bucket_padding_and_reused_runners_change_nothing(bucketed, alone):
    first = bucketed.generate_image_tokens_batch([CAT, LIGHTHOUSE, FOX])  # 6 images padded to 8
    again = bucketed.generate_image_tokens_batch([CAT, LIGHTHOUSE, FOX])  # same runner, rewound
    assert_same_codes(first, alone)
    assert_same_codes(again, alone)
    assert len(bucketed.engine.runners) == 1


def test_a_job_too_big_for_memory_is_split_into_chunks_with_the_same_images(tiny_model, alone):
    # A budget below one image's need: one image per batch.
    small = variant(tiny_model, memory=MemoryPolicy(explicit_mb=1))
    assert small.engine.image_capacity(40) == 1
    recorder = ProgressRecorder()
    codes = small.generate_image_tokens_batch([ImageRequest(**{**FOX.__dict__, "progress": recorder})])[0]
    assert torch.equal(codes, alone[FOX.prompt])
    assert recorder.calls == [(step, 3 * 576) for step in range(1, 3 * 576 + 1)]


def test_sampled_answers_are_the_same_alone_and_batched(tiny_model, bucketed, photo):
    first = AnswerRequest(photo, "What is this?", max_new_tokens=30, temperature=1.0, top_p=0.9, seed=3)
    second = AnswerRequest(Image.new("RGB", (50, 80), (10, 200, 10)), "Describe it in detail", max_new_tokens=12,
                           temperature=0.0, seed=4)
    by_itself = tiny_model.answer_tokens_batch([first])[0]
    batched = tiny_model.answer_tokens_batch([second, first])
    padded = bucketed.answer_tokens_batch([second, first])  # 2 rows padded to bucket 2, cache rounded
    assert torch.equal(batched[1], by_itself)
    assert torch.equal(padded[1], by_itself)
    assert torch.equal(padded[0], batched[0])
    assert len(batched[0]) == 12


# ---- stop and failure isolation ---------------------------------------------------------------------


def test_a_stopped_job_leaves_the_batch_and_the_others_finish_unchanged(tiny_model, alone):
    stopper = ProgressRecorder(stop_at=50)
    canceled = ImageRequest(**{**LIGHTHOUSE.__dict__, "progress": stopper})
    outcomes = tiny_model.generate_image_tokens_batch([CAT, canceled, FOX])
    assert isinstance(outcomes[1], GenerationStopped)
    assert stopper.calls[-1] == (50, 576)  # not called again once it asked to stop
    assert torch.equal(outcomes[0], alone[CAT.prompt])
    assert torch.equal(outcomes[2], alone[FOX.prompt])


def test_when_every_job_stops_the_batch_ends_early(tiny_model):
    recorders = [ProgressRecorder(stop_at=5), ProgressRecorder(stop_at=9)]
    requests = [ImageRequest("a", 1, progress=recorders[0]), ImageRequest("b", 1, progress=recorders[1])]
    outcomes = tiny_model.generate_image_tokens_batch(requests)
    assert all(isinstance(outcome, GenerationStopped) for outcome in outcomes)
    assert recorders[1].calls[-1] == (9, 576)


def test_a_refused_request_fails_alone(tiny_model, alone, photo):
    too_long = ImageRequest("word " * 400, num_images=1)
    outcomes = tiny_model.generate_image_tokens_batch([CAT, too_long])
    assert isinstance(outcomes[1], ValueError)
    assert torch.equal(outcomes[0], alone[CAT.prompt])
    answers = tiny_model.answer_tokens_batch([AnswerRequest(photo, "hi", max_new_tokens=4000),
                                              AnswerRequest(photo, "hi", max_new_tokens=3, temperature=0)])
    assert isinstance(answers[0], ValueError) and len(answers[1]) == 3


def test_a_stopped_answer_leaves_the_others(tiny_model, photo):
    stopper = ProgressRecorder(stop_at=4)
    requests = [AnswerRequest(photo, "What is this?", max_new_tokens=16, temperature=0, progress=stopper),
                AnswerRequest(photo, "And this?", max_new_tokens=16, temperature=0)]
    outcomes = tiny_model.answer_tokens_batch(requests)
    assert isinstance(outcomes[0], GenerationStopped)
    assert torch.equal(outcomes[1], tiny_model.answer_tokens_batch(requests[1:])[0])


def test_compiled_kernels_give_the_same_tokens(tiny_model, alone):
    """JANUS_COMPILE: the compiled decoder kernels (inductor on the CPU here) change no token."""
    assert not tiny_model.engine.decoder.kernels.compiled  # auto: off on a CPU
    compiled = variant(tiny_model, compile=True, bucketed=True)
    assert compiled.engine.decoder.kernels.compiled
    assert torch.equal(compiled.generate_image_tokens_batch([CAT])[0], alone[CAT.prompt])


@pytest.mark.parametrize("attention", ["cudnn", "eager"])
def test_other_attention_kernels_give_the_same_tokens(tiny_model, alone, attention):
    """The attention variants the GPU benchmark compares compute the same function (on a CPU,
    "cudnn" falls back to the kernels that can run there)."""
    other = variant(tiny_model, attention=attention)
    assert torch.equal(other.generate_image_tokens_batch([CAT])[0], alone[CAT.prompt])


def test_warm_up_builds_every_bucket_once_and_later_batches_reuse_them(tiny_model, photo):
    warm = variant(tiny_model, bucketed=True)
    ready = warm.engine.warm_up(max_images=4, max_answers=2)
    assert ready == [("ImageMode", 1), ("ImageMode", 2), ("ImageMode", 4), ("TextMode", 1), ("TextMode", 2)]
    built = dict(warm.engine.runners)
    warm.generate_image_tokens_batch([CAT, LIGHTHOUSE])  # 3 images: bucket 4, a typical short prompt
    warm.answer_tokens_batch([AnswerRequest(photo, "What is this?", max_new_tokens=20, temperature=0)])
    assert dict(warm.engine.runners) == built  # nothing new was built

"""Image generation: shapes, reproducibility, parity with transformers, progress and stopping."""

import numpy as np
import pytest
import torch

from janus_model import GenerationStopped
from janus_model.decode_step import guided_logits
from janus_model.image_batch import unconditional_prompt
from tests.janus_model.helpers import ProgressRecorder

PROMPT = "A lighthouse on a cliff at dawn"


def test_images_are_384_rgb_and_as_many_as_asked(tiny_model):
    images = tiny_model.generate_images(PROMPT, num_images=2, seed=1)
    assert len(images) == 2
    for image in images:
        assert image.size == (384, 384)
        assert image.mode == "RGB"
        assert np.asarray(image).std() > 0  # a picture, not a flat fill


def test_same_seed_same_images_different_seed_different_images(tiny_model):
    first = tiny_model.generate_images(PROMPT, num_images=1, seed=11)
    torch.manual_seed(12345)  # the global RNG must not matter: sampling uses a local generator
    again = tiny_model.generate_images(PROMPT, num_images=1, seed=11)
    other = tiny_model.generate_images(PROMPT, num_images=1, seed=12)
    assert np.array_equal(np.asarray(first[0]), np.asarray(again[0]))
    assert not np.array_equal(np.asarray(first[0]), np.asarray(other[0]))


def test_images_of_one_batch_differ(tiny_model):
    codes = tiny_model.generate_image_tokens(PROMPT, num_images=2, seed=5)
    assert codes.shape == (2, 576)
    assert not torch.equal(codes[0], codes[1])


def test_sampling_leaves_the_global_rng_alone(tiny_model):
    torch.manual_seed(3)
    expected = torch.rand(2)
    torch.manual_seed(3)
    with pytest.raises(GenerationStopped):  # 20 sampled steps are enough to see a leak
        tiny_model.generate_image_tokens(PROMPT, num_images=1, seed=0, progress=ProgressRecorder(stop_at=20))
    assert torch.equal(torch.rand(2), expected)


@pytest.mark.parametrize(("num_images", "cfg_weight"), [(1, 5.0), (2, 3.0)])
def test_greedy_tokens_equal_transformers_generate(tiny_model, num_images, cfg_weight):
    ours = tiny_model.generate_image_tokens(PROMPT, num_images=num_images, cfg_weight=cfg_weight, temperature=0)

    # transformers' own image-mode generate on the same prompt ids. Greedy generate refuses
    # num_return_sequences > 1, so n images are n copies of the prompt in the batch.
    prompt_ids = tiny_model.generation_input_ids(PROMPT).repeat(num_images, 1)
    with torch.inference_mode():
        theirs = tiny_model.model.generate(
            input_ids=prompt_ids,
            attention_mask=torch.ones_like(prompt_ids),
            generation_mode="image",
            do_sample=False,
            guidance_scale=cfg_weight,
        )
    assert theirs.shape == ours.shape == (num_images, 576)
    assert torch.equal(ours, theirs), f"{(ours != theirs).sum().item()} of {ours.numel()} tokens differ"
    assert len(set(ours[0].tolist())) > 50  # a meaningful comparison, not one token repeated


def test_unconditional_prompt_keeps_only_the_first_and_last_token():
    prompt = torch.tensor([1, 7, 8, 9, 5])
    assert unconditional_prompt(prompt, pad_token_id=0).tolist() == [1, 0, 0, 0, 5]
    assert prompt.tolist() == [1, 7, 8, 9, 5]  # the conditional prompt is left as it was


def test_guidance_mixes_conditional_and_unconditional_logits():
    conditional = torch.tensor([[1.0, 3.0]])
    unconditional = torch.tensor([[2.0, 0.0]])
    mixed = guided_logits(torch.cat([conditional, unconditional]), cfg_weight=5.0)
    assert mixed.tolist() == [[2.0 + 5.0 * (1.0 - 2.0), 0.0 + 5.0 * 3.0]]


def test_pixels_match_transformers_postprocess(tiny_model):
    codes = tiny_model.generate_image_tokens(PROMPT, num_images=1, seed=2)
    ours = tiny_model.generate_images(PROMPT, num_images=1, seed=2)[0]
    with torch.inference_mode():
        pixels = tiny_model.model.decode_image_tokens(codes)
    # The PIL image processor's postprocess assumes channels-first input (transformers bug: the
    # documented list(decode_image_tokens(...)) is channels-last and fails), hence the permute.
    theirs = tiny_model.processor.postprocess(list(pixels.permute(0, 3, 1, 2)), return_tensors="PIL.Image.Image")
    assert np.array_equal(np.asarray(ours), np.asarray(theirs["pixel_values"][0]))


def test_progress_reports_every_step(tiny_model):
    recorder = ProgressRecorder()
    tiny_model.generate_image_tokens(PROMPT, num_images=1, seed=0, progress=recorder)
    assert recorder.calls == [(step, 576) for step in range(1, 577)]


def test_progress_returning_false_stops_generation(tiny_model):
    recorder = ProgressRecorder(stop_at=10)
    with pytest.raises(GenerationStopped):
        tiny_model.generate_images(PROMPT, num_images=1, progress=recorder)
    assert recorder.calls[-1] == (10, 576)
    assert len(recorder.calls) == 10


def test_prompt_tokens_are_counted_with_format_and_tags(tiny_model):
    short, longer = tiny_model.count_prompt_tokens("cat"), tiny_model.count_prompt_tokens("cat" * 10)
    assert longer - short == 27  # the byte-level tiny tokenizer: one token per extra byte
    ids = tiny_model.generation_input_ids("cat")[0].tolist()
    tokenizer = tiny_model.processor.tokenizer
    assert ids[0] == tokenizer.bos_token_id
    assert ids[-1] == tokenizer.convert_tokens_to_ids(tokenizer.boi_token)
    assert tokenizer.decode(ids[1:-1]) == "<|User|>: cat\n\n<|Assistant|>:"


def test_too_long_prompt_is_refused_before_decoding(tiny_model):
    with pytest.raises(ValueError, match="positions"):
        tiny_model.generate_image_tokens("word " * 400, num_images=1)


@pytest.mark.parametrize("arguments", [{"num_images": 0}, {"temperature": -1.0}])
def test_invalid_arguments_are_refused(tiny_model, arguments):
    with pytest.raises(ValueError):
        tiny_model.generate_image_tokens(PROMPT, **arguments)

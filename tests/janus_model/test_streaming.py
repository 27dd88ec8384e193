"""Answers so far and previews while the engine decodes (janus_model/text_batch.AnswerTap,
janus_model/previews.py), with the tiny model on the CPU, jobs batched together."""
from __future__ import annotations

import io

from PIL import Image

from janus_model.requests import AnswerRequest, ImageRequest


def test_each_answer_is_offered_as_it_grows_and_ends_as_the_answer(tiny_model, photo):
    offered: dict[int, list] = {0: [], 1: []}
    requests = [AnswerRequest(photo, question, max_new_tokens=24, temperature=0, on_text=offered[index].append)
                for index, question in enumerate(["What is this?", "Describe the colours."])]
    plain = tiny_model.answer_batch([AnswerRequest(photo, r.question, max_new_tokens=24, temperature=0)
                                     for r in requests])
    answers = tiny_model.answer_batch(requests)
    assert answers == plain  # streaming changes nothing
    for index, answer in enumerate(answers):
        texts = [text_so_far() for text_so_far in offered[index]]  # decoded only when called
        assert len(texts) >= 3
        assert [len(tiny_model.processor.tokenizer(text)["input_ids"]) for text in texts] == \
            sorted(len(tiny_model.processor.tokenizer(text)["input_ids"]) for text in texts)
        assert answer.startswith(texts[0][: len(texts[0]) // 2])


def test_previews_are_small_jpegs_of_each_jobs_images(tiny_model):
    made: dict[int, list] = {0: [], 1: []}
    requests = [ImageRequest("a fox", num_images=count, seed=index, previews=4,
                             on_preview=lambda images, step, index=index: made[index].append((step, images)))
                for index, count in enumerate((1, 2))]
    tiny_model.generate_images_batch(requests)  # one batch of 3 images
    for index, count in enumerate((1, 2)):
        steps = [step for step, _ in made[index]]
        assert steps == [116, 232, 348, 464]  # 576 / (4 + 1) tokens apart, rounded up
        for _, images in made[index]:
            assert [image_index for image_index, _ in images] == list(range(count))
            for _, jpeg in images:
                assert Image.open(io.BytesIO(jpeg)).format == "JPEG"

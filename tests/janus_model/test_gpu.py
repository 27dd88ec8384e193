"""GPU smoke test of the engine (skipped without CUDA; bench/gpu.sh runs it first on a GPU machine).

- CUDA-graph replay gives the tokens the same step gives eagerly, in bf16, for both modes;
- a rerun through the same graphs (rewound state) is bit-identical, and so is a job beside other
  batch-mates of the same shape;
- nothing inside a decode loop synchronises the host with the device;
- float32 greedy tokens equal transformers' generate();
- at the real Janus-1.3B size, the fused decoder's logits match transformers' forward;
- the VQ decoder turns codes into the same pixels on the GPU as on the CPU.
"""

import numpy as np
import pytest
import torch

from janus_model import JanusModel, load_model
from janus_model.engine import EngineOptions
from janus_model.requests import AnswerRequest, ImageRequest
from janus_model.stock import stock_answer_tokens, stock_image_tokens

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]

IMAGES = [ImageRequest("a lighthouse at dawn", num_images=2, cfg_weight=5.0, temperature=1.0, seed=3),
          ImageRequest("cat", num_images=1, cfg_weight=3.0, temperature=0.0, seed=1)]


@pytest.fixture(scope="module")
def gpu_bf16(tiny_checkpoint):
    return load_model(str(tiny_checkpoint), device="cuda", dtype="bfloat16")


@pytest.fixture(scope="module")
def gpu_fp32(tiny_checkpoint):
    return load_model(str(tiny_checkpoint), device="cuda", dtype="float32")


def engine_variant(janus: JanusModel, **options) -> JanusModel:
    return JanusModel(janus.model, janus.processor, EngineOptions(**options))


def answers(photo):
    return [AnswerRequest(photo, "What is this?", max_new_tokens=24, temperature=0.8, top_p=0.9, seed=5),
            AnswerRequest(photo, "Describe it.", max_new_tokens=16, temperature=0.0)]


def test_graph_replay_equals_the_eager_step_and_a_rerun_is_identical(gpu_bf16, photo):
    graphs = engine_variant(gpu_bf16, forbid_sync=True)
    eager = engine_variant(gpu_bf16, cuda_graphs=False, bucketed=True)  # same padded shapes, no graphs
    assert graphs.engine.graphs and not eager.engine.graphs
    replayed = graphs.generate_image_tokens_batch(IMAGES)
    assert all(len(runner.graphs) > 1 for runner in graphs.engine.runners.values())
    again = graphs.generate_image_tokens_batch(IMAGES)
    stepped = eager.generate_image_tokens_batch(IMAGES)
    for first, second, reference in zip(replayed, again, stepped):
        assert torch.equal(first, second)
        assert torch.equal(first, reference)
    replayed_answers = graphs.answer_tokens_batch(answers(photo))
    again_answers = graphs.answer_tokens_batch(answers(photo))
    stepped_answers = eager.answer_tokens_batch(answers(photo))
    for first, second, reference in zip(replayed_answers, again_answers, stepped_answers):
        assert torch.equal(first, second)
        assert torch.equal(first, reference)


def test_a_job_is_the_same_beside_other_batch_mates_of_the_same_shape(gpu_bf16):
    """README's GPU promise: the same batch shape (bucket, prompt width) gives a job the same
    tokens whatever its batch-mates ask for; only the shape changes bf16 rounding."""
    janus = engine_variant(gpu_bf16)
    target = ImageRequest("picture 1", 1, cfg_weight=5.0, temperature=1.0, seed=11)
    mates = [ImageRequest("picture 2", 1, cfg_weight=2.0, temperature=0.7, seed=5),
             ImageRequest("picture 3", 1, cfg_weight=7.0, temperature=1.0, seed=9)]
    assert len({janus.count_prompt_tokens(request.prompt) for request in [target, *mates]}) == 1
    beside_first = janus.generate_image_tokens_batch([target, mates[0]])[0]
    beside_second = janus.generate_image_tokens_batch([mates[1], target])[1]
    assert torch.equal(beside_first, beside_second)


def test_a_decode_loop_that_synchronises_is_caught(gpu_bf16):
    """The guard of the test above can fail: a progress callback that reads a device value."""
    strict = engine_variant(gpu_bf16, forbid_sync=True)
    probe = torch.ones(1, device="cuda")

    def reads_the_device(done, total):
        if done == 5:
            probe.item()

    with pytest.raises(RuntimeError, match="synchroniz"):
        strict.generate_image_tokens_batch([ImageRequest("x", 1, progress=reads_the_device)])


def test_float32_greedy_tokens_equal_transformers_generate(gpu_fp32, photo):
    janus = gpu_fp32
    prompt = "A lighthouse on a cliff at dawn"
    ours = janus.generate_image_tokens(prompt, num_images=1, cfg_weight=5.0, temperature=0)
    theirs = stock_image_tokens(janus.model, janus.generation_input_ids(prompt)[0], 1, 5.0, greedy=True)
    assert torch.equal(ours, theirs), f"{(ours != theirs).sum().item()} of 576 image tokens differ"
    answer = janus.answer_tokens(photo, "What is this?", max_new_tokens=24, temperature=0)
    reference = stock_answer_tokens(janus.model, janus.understanding_inputs(photo, "What is this?"), 24)
    assert torch.equal(answer, reference)


def test_fused_decoder_is_as_close_to_float32_as_transformers_at_the_real_size():
    """bf16 at Janus-1.3B's real shapes (head_dim 128, 24 layers): our decoder's last hidden
    states are no further from a float32 reference than transformers' own bf16 forward."""
    from janus_model.decode_step import additive
    from janus_model.engine import DecodeEngine
    from janus_model.padding import left_pad, prefill_mask
    from janus_model.sizes import PAD, random_model, synthetic_generation_prompt

    model = random_model("janus-1.3b", torch.device("cuda"), torch.bfloat16)
    prompts = left_pad([synthetic_generation_prompt(40, 1).cuda(), synthetic_generation_prompt(33, 2).cuda()], PAD)
    with torch.inference_mode():
        theirs = last_hidden(model, prompts)
        engine = DecodeEngine(model)
        engine.arena.grow(2, prompts.width)
        mask = additive(prefill_mask(prompts.valid, prompts.width), torch.bfloat16)
        ours = engine.decoder(model.get_input_embeddings()(prompts.ids), prompts.position_ids(),
                              engine.arena.view(2, prompts.width), torch.arange(prompts.width, device="cuda"), mask,
                              prompts.width)[:, -1].float()
        engine.release()
        reference = last_hidden(model.float(), prompts)
    ours_error, theirs_error = relative_error(ours, reference), relative_error(theirs, reference)
    assert ours_error < 2 * theirs_error + 1e-3, f"ours {ours_error:.2e}, transformers bf16 {theirs_error:.2e}"
    del model, engine
    torch.cuda.empty_cache()


def last_hidden(model, prompts) -> torch.Tensor:
    output = model.model.language_model(input_ids=prompts.ids, attention_mask=prompts.valid.long(),
                                        position_ids=prompts.position_ids())
    return output.last_hidden_state[:, -1].float()


def relative_error(value: torch.Tensor, reference: torch.Tensor) -> float:
    return ((value - reference).norm() / reference.norm()).item()


def test_vq_decode_on_the_gpu_gives_the_cpus_pixels(gpu_fp32, gpu_bf16, tiny_model):
    codes = torch.randint(0, 16384, (2, 576), generator=torch.Generator().manual_seed(0))
    on_gpu = gpu_fp32.decode_codes(codes.cuda())
    on_cpu = tiny_model.decode_codes(codes)
    assert [image.size for image in on_gpu] == [(384, 384)] * 2
    difference = np.abs(np.asarray(on_gpu[1], dtype=np.int16) - np.asarray(on_cpu[1], dtype=np.int16))
    # cuDNN convolutions may use TF32 (its default): a level here and there, never a different picture.
    assert difference.mean() < 1.0, f"mean pixel difference {difference.mean():.2f}"
    assert np.asarray(on_cpu[1]).std() > 5  # a picture, not a flat field that any decoder would match
    assert [image.size for image in gpu_bf16.decode_codes(codes.cuda())] == [(384, 384)] * 2

"""The fused decoder, the KV arena and the step runner, on the CPU in float32 (tiny model).

- the decoder's prompt pass equals transformers' LlamaModel forward, and its fused projections
  are the model's only copy of those weights;
- a step over an attention window equals the same step over the whole cache;
- the arena is one buffer: buckets and modes are views of it, it grows only when it must;
- a failed CUDA-graph capture leaves that batch shape running eagerly, with one warning;
- the compiled kernels compute what the eager ones do.
"""

import logging

import pytest
import torch

from janus_model import JanusModel
from janus_model.decode_step import additive
from janus_model.decoder import FusedDecoder
from janus_model.engine import EngineOptions
from janus_model.kernels import EAGER, compiled_kernels
from janus_model.kv_arena import KVArena
from janus_model.padding import left_pad, prefill_mask
from janus_model.requests import ImageRequest
from janus_model.step_runner import StepRunner, window_for, windows


@pytest.fixture(scope="module")
def prompts(tiny_model):
    ids = [tiny_model.generation_input_ids(text)[0] for text in ("a red fox in the snow at night", "cat")]
    return left_pad(ids, tiny_model.model.generation_config.pad_token_id)


def run_prompt_pass(decoder, model, prompts, arena):
    mask = additive(prefill_mask(prompts.valid, prompts.width), model.dtype)
    rows = len(prompts.ids)
    return decoder(model.get_input_embeddings()(prompts.ids), prompts.position_ids(), arena.view(rows, prompts.width + 8),
                   torch.arange(prompts.width), mask, prompts.width)


def test_the_prompt_pass_equals_transformers_forward(tiny_model, prompts):
    model = tiny_model.model
    language_model = model.model.language_model
    arena = KVArena(language_model.config, model.dtype, model.device)
    arena.grow(2, prompts.width + 8)
    with torch.inference_mode():
        ours = run_prompt_pass(tiny_model.engine.decoder, model, prompts, arena)
        theirs = language_model(input_ids=prompts.ids, attention_mask=prompts.valid.long(),
                                position_ids=prompts.position_ids()).last_hidden_state
    real = prompts.valid  # padding positions differ by design (they attend only to themselves)
    torch.testing.assert_close(ours[real], theirs[real], rtol=1e-5, atol=1e-5)


def test_fused_projections_are_the_only_copy_of_their_weights(tiny_model):
    attention = tiny_model.model.model.language_model.layers[0].self_attn
    layer = tiny_model.engine.decoder.layers[0]
    fused = layer.qkv_weight
    assert attention.q_proj.weight.data_ptr() == fused.data_ptr()
    assert attention.k_proj.weight.data_ptr() == fused[attention.q_proj.weight.shape[0]:].data_ptr()
    again = FusedDecoder(tiny_model.model.model.language_model)  # a second engine reuses the fusion
    assert again.layers[0].qkv_weight.data_ptr() == fused.data_ptr()


def test_a_windowed_step_equals_the_step_over_the_whole_cache(tiny_model, prompts):
    model = tiny_model.model
    config = model.model.language_model.config
    decoder = tiny_model.engine.decoder
    rows, length = 2, prompts.width + 100
    results = []
    for window in (prompts.width + 1 + 3, length):  # the live prefix (+ masked slack), and all of it
        arena = KVArena(config, model.dtype, model.device)
        arena.grow(rows, length)
        kv = arena.view(rows, length)
        with torch.inference_mode():
            run_prompt_pass(decoder, model, prompts, arena)
            mask = torch.full((rows, length), float("-inf"))
            mask[:, : prompts.width + 1] = 0
            mask[:, : prompts.width].masked_fill_(~prompts.valid, float("-inf"))
            token = model.get_input_embeddings()(torch.tensor([[5], [7]]))
            results.append(decoder(token, prompts.lengths.unsqueeze(-1), kv, torch.tensor([prompts.width]),
                                   mask[:, None, None, :window], window))
    torch.testing.assert_close(results[0], results[1], rtol=1e-5, atol=1e-6)


def test_windows_cover_the_live_prefix_in_steps_of_64():
    assert [window_for(position, 700) for position in (0, 63, 64, 640, 699)] == [64, 64, 128, 700, 700]
    assert windows(200) == [64, 128, 192, 200]
    assert windows(128) == [64, 128]


def test_the_arena_is_one_buffer_that_grows_only_when_it_must(tiny_model):
    model = tiny_model.model
    arena = KVArena(model.model.language_model.config, model.dtype, model.device)
    arena.grow(8, 100)
    first = arena.storage
    small, text = arena.view(4, 100), arena.view(2, 300)
    assert small.data_ptr() == text.data_ptr() == first.data_ptr()
    assert arena.allocated_bytes() == 8 * 100 * arena.bytes_per_position()
    assert not arena.fits(8, 101) and arena.fits(1, 800)
    with pytest.raises(ValueError):
        arena.view(9, 100)


def test_the_engine_keeps_one_layout_per_mode_and_shares_the_arena(tiny_model):
    janus = JanusModel(tiny_model.model, tiny_model.processor, EngineOptions(bucketed=True))
    engine = janus.engine
    big = engine.runner(engine.image_mode, 8, 640)
    small = engine.runner(engine.image_mode, 2, 600)
    assert small.state.kv.data_ptr() == big.state.kv.data_ptr()
    assert small.state.length == 640  # the layout, not re-laid out for a shorter batch
    allocated = engine.arena.allocated_bytes()
    engine.runner(engine.text_mode, 4, 700, top_p=True)  # fits in the image layout's memory
    assert engine.arena.allocated_bytes() == allocated
    assert len(engine.runners) == 3
    engine.runner(engine.image_mode, 16, 640)  # outgrows the arena: everything is laid out anew
    assert engine.arena.allocated_bytes() == 32 * 640 * engine.arena.bytes_per_position()
    assert set(engine.runners) == {("image", 16, False)}


class Unrecordable(RuntimeError):
    pass


def failing_capture(step, pool):
    step()  # the warm-up step ran, then capturing failed
    raise Unrecordable("operation not permitted when stream is capturing")


def test_a_failed_capture_falls_back_to_eager_with_one_warning(tiny_model, caplog):
    janus = JanusModel(tiny_model.model, tiny_model.processor, EngineOptions(bucketed=True))
    engine = janus.engine
    reference = janus.generate_image_tokens_batch([ImageRequest("cat", 2, temperature=1.0, seed=4)])[0]
    state = engine.runners[("image", 2, False)].state
    with caplog.at_level(logging.WARNING, logger="janus_model.step_runner"), torch.inference_mode():
        runner = StepRunner(engine.image_mode, state, engine.decoder, False, graph_pool=object(),
                            capture=failing_capture)
    assert runner.graphs == {}
    warnings = [record.getMessage() for record in caplog.records]
    assert len(warnings) == 1 and "runs eagerly" in warnings[0] and "Unrecordable" in warnings[0]
    engine.runners[("image", 2, False)] = runner
    assert torch.equal(janus.generate_image_tokens_batch([ImageRequest("cat", 2, temperature=1.0, seed=4)])[0],
                       reference)


def test_compiled_kernels_compute_what_the_eager_ones_do():
    compiled = compiled_kernels()
    generator = torch.Generator().manual_seed(0)
    x, delta = torch.randn(3, 1, 32, generator=generator), torch.randn(3, 1, 32, generator=generator)
    weight = torch.randn(32, generator=generator)
    qkv = torch.randn(3, 1, 3 * 4 * 8, generator=generator)
    cos, sin = torch.randn(3, 1, 8, generator=generator), torch.randn(3, 1, 8, generator=generator)
    torch.testing.assert_close(compiled.rms_norm(x, weight, 1e-6), EAGER.rms_norm(x, weight, 1e-6))
    for ours, theirs in zip(compiled.add_rms_norm(x, delta, weight, 1e-6), EAGER.add_rms_norm(x, delta, weight, 1e-6)):
        torch.testing.assert_close(ours, theirs)
    for ours, theirs in zip(compiled.split_rotate(qkv, cos, sin, 4, 4), EAGER.split_rotate(qkv, cos, sin, 4, 4)):
        torch.testing.assert_close(ours, theirs)
    torch.testing.assert_close(compiled.swiglu(qkv), EAGER.swiglu(qkv))


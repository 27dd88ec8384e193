"""The engine's pure parts: batch planning, padding and masks, token choice, noise streams."""

import pytest
import torch

from janus_model.batching import Slice, plan_batches
from janus_model.padding import left_pad, prefill_mask
from janus_model.sampling import NoiseStreams, choose_tokens, keep_top_p, row_seed


def test_requests_are_packed_in_order_and_split_only_when_too_big():
    assert plan_batches([2, 1, 3], capacity=8) == [[Slice(0, 0, 2), Slice(1, 0, 1), Slice(2, 0, 3)]]
    assert plan_batches([3, 3], capacity=4) == [[Slice(0, 0, 3), Slice(1, 0, 1)], [Slice(1, 1, 2)]]
    assert plan_batches([5], capacity=2) == [[Slice(0, 0, 2)], [Slice(0, 2, 2)], [Slice(0, 4, 1)]]
    with pytest.raises(ValueError):
        plan_batches([1], capacity=0)


def test_left_padding_right_aligns_prompts_and_keeps_their_own_positions():
    padded = left_pad([torch.tensor([5, 6, 7]), torch.tensor([8])], pad_id=0, width=4)
    assert padded.ids.tolist() == [[0, 5, 6, 7], [0, 0, 0, 8]]
    assert padded.valid.tolist() == [[False, True, True, True], [False, False, False, True]]
    assert padded.position_ids().tolist() == [[0, 0, 1, 2], [0, 0, 0, 0]]
    with pytest.raises(ValueError):
        left_pad([torch.tensor([1, 2, 3])], pad_id=0, width=2)


def test_prefill_mask_hides_padding_keys_and_never_leaves_a_row_empty():
    valid = torch.tensor([[False, True, True]])
    mask = prefill_mask(valid, cache_length=5)[0, 0]
    assert mask.tolist() == [
        [True, False, False, False, False],  # a padding query sees only itself
        [False, True, False, False, False],
        [False, True, True, False, False],
    ]
    assert mask.any(dim=-1).all()


def test_greedy_rows_take_the_argmax_and_sampled_rows_follow_the_noise():
    logits = torch.tensor([[1.0, 3.0, 2.0], [1.0, 3.0, 2.0]])
    inverse_temperature = torch.tensor([[1.0], [1.0]])
    noise = torch.tensor([[0.0, 0.0, 0.0], [5.0, 0.0, 0.0]])
    assert choose_tokens(logits, inverse_temperature, noise).tolist() == [1, 0]


def test_gumbel_sampling_matches_the_softmax_distribution():
    logits = torch.tensor([[0.0, 1.0, 2.0]]).repeat(20000, 1)
    streams = NoiseStreams(list(range(20000)), vocab_size=3, device=torch.device("cpu"))
    noise = torch.zeros(20000, 3)
    streams.fill(noise)
    picks = choose_tokens(logits, torch.ones(20000, 1), noise)
    observed = torch.bincount(picks, minlength=3).float() / 20000
    assert torch.allclose(observed, torch.softmax(logits[0], dim=0), atol=0.02)


def test_top_p_keeps_the_smallest_set_reaching_p_and_always_the_best_token():
    probabilities = torch.tensor([[0.5, 0.3, 0.15, 0.05]])
    scaled = probabilities.log()
    kept = keep_top_p(scaled, torch.tensor([[0.75]])).isfinite()
    assert kept.tolist() == [[True, True, False, False]]
    assert keep_top_p(scaled, torch.tensor([[0.0]])).isfinite().tolist() == [[True, False, False, False]]


def test_a_rows_noise_depends_only_on_its_seed():
    device = torch.device("cpu")
    alone, batched = torch.zeros(1, 10), torch.zeros(3, 10)
    NoiseStreams([row_seed(4, 0)], 10, device).fill(alone)
    NoiseStreams([row_seed(9, 0), None, row_seed(4, 0)], 10, device).fill(batched)
    assert torch.equal(batched[2], alone[0])
    assert torch.equal(batched[1], torch.zeros(10))  # greedy / padding rows get none
    assert row_seed(4, 0) != row_seed(4, 1) != row_seed(5, 0)

"""The tiny checkpoint: real interfaces, offline, deterministic, safe to create concurrently."""

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import JanusForConditionalGeneration, JanusProcessor

import janus_model.tiny as tiny
from janus_model import JanusModel, build_tiny_checkpoint, ensure_tiny_checkpoint
from tests.threads import all_at_once


def test_loads_back_through_load_model(tiny_model):
    assert isinstance(tiny_model, JanusModel)
    assert isinstance(tiny_model.model, JanusForConditionalGeneration)
    assert isinstance(tiny_model.processor, JanusProcessor)
    assert not tiny_model.model.training
    assert tiny_model.device == torch.device("cpu")
    assert tiny_model.dtype == torch.float32


def test_config_has_the_real_interfaces(tiny_model):
    config = tiny_model.model.config
    assert tiny_model.image_token_count == 576
    assert tiny_model.context_length == 2048
    assert config.vision_config.image_size == 384
    assert (config.vision_config.image_size // config.vision_config.patch_size) ** 2 == 576
    assert config.vq_config.num_embeddings == 16384
    assert config.vq_config.embed_dim == 8
    assert config.vq_config.num_patches == 24  # 16x downsampling of 384 px
    assert config.vq_config.num_patches * 2 ** (len(config.vq_config.channel_multiplier) - 1) == 384
    hidden = config.text_config.hidden_size
    assert hidden == config.vision_config.projection_dim == config.vq_config.projection_dim
    assert hidden == config.vq_config.image_token_embed_dim


def test_tokenizer_and_processor_have_the_janus_special_tokens(tiny_model):
    processor = tiny_model.processor
    tokenizer = processor.tokenizer
    assert processor.num_image_tokens == 576
    ids = tokenizer.convert_tokens_to_ids([tokenizer.image_token, tokenizer.boi_token, tokenizer.eoi_token])
    assert ids[0] == tiny_model.model.config.image_token_id
    assert len(set(ids)) == 3 and tokenizer.unk_token_id not in ids
    generation_config = tiny_model.model.generation_config
    assert generation_config.generation_kwargs["boi_token_id"] == ids[1]
    assert generation_config.bos_token_id == tokenizer.bos_token_id
    assert generation_config.pad_token_id == tokenizer.pad_token_id


def test_chat_template_renders_user_and_assistant_turns(tiny_model):
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": " What is this? "}]}]
    text = tiny_model.processor.apply_chat_template(messages, add_generation_prompt=True)
    assert text == "<|User|>: <image_placeholder>\nWhat is this?\n\n<|Assistant|>:"


def test_saved_weights_equal_the_loaded_model(tiny_checkpoint, tiny_model):
    saved = load_file(Path(tiny_checkpoint) / "model.safetensors")
    loaded = tiny_model.model.state_dict()
    for name, tensor in saved.items():
        assert torch.equal(tensor, loaded[name]), name


def test_building_twice_gives_identical_weights(tiny_checkpoint, tmp_path):
    torch.manual_seed(999)  # the build must not depend on the caller's RNG state
    again = build_tiny_checkpoint(tmp_path / "again")
    first = load_file(Path(tiny_checkpoint) / "model.safetensors")
    second = load_file(again / "model.safetensors")
    assert first.keys() == second.keys()
    assert all(torch.equal(first[name], second[name]) for name in first)
    for name in ("tokenizer.json", "config.json", "generation_config.json", "processor_config.json"):
        assert (again / name).read_text() == (Path(tiny_checkpoint) / name).read_text(), name


def test_build_does_not_disturb_the_global_rng(tmp_path):
    torch.manual_seed(7)
    expected = torch.rand(3)
    torch.manual_seed(7)
    build_tiny_checkpoint(tmp_path / "tiny")
    assert torch.equal(torch.rand(3), expected)


def test_ensure_builds_only_when_missing(tmp_path, monkeypatch):
    path = ensure_tiny_checkpoint(tmp_path / "tiny")
    assert (path / "model.safetensors").is_file()
    monkeypatch.setattr(tiny, "build_tiny_checkpoint", _must_not_be_called)
    assert ensure_tiny_checkpoint(path) == path


def test_ensure_losing_the_rename_race_uses_the_winners_copy(tmp_path, monkeypatch):
    target = tmp_path / "tiny"
    real_build = tiny.build_tiny_checkpoint

    def build_while_another_process_wins(staging):
        real_build(staging)
        real_build(target)  # the other process renames its complete build into place first
        (target / "winner").touch()

    monkeypatch.setattr(tiny, "build_tiny_checkpoint", build_while_another_process_wins)
    assert ensure_tiny_checkpoint(target) == target
    assert (target / "winner").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny"]  # our staging copy is gone


def test_ensure_from_two_threads_at_once(tiny_checkpoint, tmp_path):
    target = tmp_path / "tiny"
    results, errors = all_at_once(lambda: ensure_tiny_checkpoint(target), 2)
    assert errors == []
    assert results == [target, target]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny"]
    # Complete, and the same weights as a build on its own (the two builds did not interleave).
    built = load_file(target / "model.safetensors")
    reference = load_file(Path(tiny_checkpoint) / "model.safetensors")
    assert all(torch.equal(built[name], reference[name]) for name in reference)


def _must_not_be_called(path):
    pytest.fail("ensure_tiny_checkpoint rebuilt an existing checkpoint")

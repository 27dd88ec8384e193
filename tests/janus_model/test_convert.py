"""`janusq convert`: DeepSeek's original-format checkpoints become ones the service serves, unchanged.

The original-format checkpoint is the tiny one, written back in DeepSeek's names and files
(tests/janus_model/original_format.py). Converted, it must be the tiny checkpoint again: the
same tensors, config, tokenizer and processor, and so the same greedy image tokens, pixels and
answers (CPU, float32).
"""
from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from transformers import GenerationConfig, JanusConfig, JanusProcessor

from janus_model import load_model
from janus_model.budget import PromptBudget
from janus_model.convert import CheckpointFormatError, convert_checkpoint, servable_source
from janus_model.convert.formats import detect_family
from janus_model.convert.keys import UnknownWeight, targets
from janus_model.prompts import generation_messages, render, understanding_messages
from tests.janus_model.original_format import DROPPED_ORIGINAL_KEYS, build_original_checkpoint

PROMPT = "a red fox in the snow"
QUESTION = "What is in this picture?"


def janusq(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "janusq", *args], capture_output=True, text=True, timeout=300,
                          cwd=Path(__file__).resolve().parents[2], env=_env(cwd))


def _env(data_dir: Path) -> dict:
    import os

    return {**os.environ, "JANUS_DATA_DIR": str(data_dir)}


@pytest.fixture(scope="module")
def originals(tmp_path_factory):
    return tmp_path_factory.mktemp("original")


@pytest.fixture(scope="module")
def original_pro(originals, tiny_checkpoint):
    # Named like a download of deepseek-ai/Janus-Pro-*: the family is read from the path.
    return build_original_checkpoint(tiny_checkpoint, originals / "Janus-Pro-tiny")


@pytest.fixture(scope="module")
def converted_pro(original_pro, tmp_path_factory):
    out = tmp_path_factory.mktemp("converted") / "janus-pro-tiny"
    done = janusq("convert", str(original_pro), str(out), cwd=tmp_path_factory.mktemp("data"))
    assert done.returncode == 0, done.stderr
    assert "janus-pro" in done.stderr and f"JANUS_MODEL={out}" in done.stderr
    return out


@pytest.fixture(scope="module")
def converted_model(converted_pro):
    return load_model(str(converted_pro), device="cpu", dtype="float32")


# ---- the converted checkpoint is the tiny one ---------------------------------------------------


def test_the_original_has_deepseeks_names(original_pro):
    names = set(load_file(str(original_pro / "model.safetensors")))
    for name in ("language_model.model.layers.0.self_attn.q_proj.weight", "language_model.lm_head.weight",
                 "vision_model.vision_tower.blocks.0.attn.qkv.weight", "vision_model.vision_tower.pos_embed",
                 "aligner.layers.2.weight", "gen_aligner.layers.0.bias", "gen_head.output_mlp_projector.weight",
                 "gen_embed.weight", "gen_vision_model.decoder.conv_blocks.0.res.0.conv1.weight",
                 "gen_vision_model.encoder.mid.1.q.weight", *DROPPED_ORIGINAL_KEYS):
        assert name in names, name
    assert not any(name.startswith("model.") for name in names)
    assert json.loads((original_pro / "config.json").read_text())["model_type"] == "multi_modality"


def test_weights_equal_the_tiny_checkpoints(converted_pro, tiny_checkpoint):
    _assert_same_tensors(load_file(str(converted_pro / "model.safetensors")),
                         load_file(str(tiny_checkpoint / "model.safetensors")))


def test_greedy_image_tokens_and_pixels_are_the_tiny_models(converted_model, tiny_model):
    ours = converted_model.generate_image_tokens(PROMPT, num_images=1, temperature=0.0, seed=0)
    theirs = tiny_model.generate_image_tokens(PROMPT, num_images=1, temperature=0.0, seed=0)
    assert torch.equal(ours, theirs)
    assert len(torch.unique(ours)) > 50  # a real sequence, not one code repeated
    ours_pixels = np.asarray(converted_model.decode_codes(ours)[0])
    assert np.array_equal(ours_pixels, np.asarray(tiny_model.decode_codes(theirs)[0]))


def test_sampled_image_tokens_are_the_tiny_models(converted_model, tiny_model):
    ours = converted_model.generate_image_tokens(PROMPT, num_images=2, cfg_weight=3.0, temperature=1.0, seed=7)
    assert torch.equal(ours, tiny_model.generate_image_tokens(PROMPT, num_images=2, cfg_weight=3.0,
                                                               temperature=1.0, seed=7))


def test_understanding_tokens_and_pixels_are_the_tiny_models(converted_model, tiny_model, photo):
    ours = converted_model.understanding_inputs(photo, QUESTION)
    theirs = tiny_model.understanding_inputs(photo, QUESTION)
    assert torch.equal(ours["input_ids"], theirs["input_ids"])
    assert torch.equal(ours["pixel_values"], theirs["pixel_values"])  # same resize, pad and normalization
    answer = converted_model.answer_tokens(photo, QUESTION, max_new_tokens=24, temperature=0.0)
    assert torch.equal(answer, tiny_model.answer_tokens(photo, QUESTION, max_new_tokens=24, temperature=0.0))


def test_config_fields_round_trip(converted_pro, tiny_checkpoint):
    ours, theirs = JanusConfig.from_pretrained(converted_pro), JanusConfig.from_pretrained(tiny_checkpoint)
    fields = {
        "vision_config": ("image_size", "patch_size", "num_image_tokens", "hidden_size", "num_hidden_layers",
                          "num_attention_heads", "mlp_ratio", "projection_dim", "depth"),
        "text_config": ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                        "num_key_value_heads", "intermediate_size", "max_position_embeddings", "bos_token_id",
                        "eos_token_id", "pad_token_id", "tie_word_embeddings"),
        "vq_config": ("num_embeddings", "embed_dim", "base_channels", "latent_channels", "channel_multiplier",
                      "num_res_blocks", "num_patches", "projection_dim", "image_token_embed_dim"),
    }
    for section, names in fields.items():
        for name in names:
            assert getattr(getattr(ours, section), name) == getattr(getattr(theirs, section), name), (section, name)
    assert ours.image_token_id == theirs.image_token_id
    assert ours.tie_word_embeddings is False
    ours_generation = GenerationConfig.from_pretrained(converted_pro)
    theirs_generation = GenerationConfig.from_pretrained(tiny_checkpoint)
    for name in ("bos_token_id", "eos_token_id", "pad_token_id", "guidance_scale", "generation_kwargs"):
        assert getattr(ours_generation, name) == getattr(theirs_generation, name), name


def test_tokenizer_and_processor_round_trip(converted_pro, tiny_checkpoint):
    ours, theirs = JanusProcessor.from_pretrained(converted_pro), JanusProcessor.from_pretrained(tiny_checkpoint)
    for name in ("bos_token", "eos_token", "pad_token", "image_token", "boi_token", "eoi_token"):
        token = getattr(theirs.tokenizer, name)
        assert getattr(ours.tokenizer, name) == token, name
        assert ours.tokenizer.convert_tokens_to_ids(token) == theirs.tokenizer.convert_tokens_to_ids(token), name
    # BOS is added although the original tokenizer.json has no post-processor (Llama-style files).
    for text in ("", "naïve café, 東京", "<|User|>: hi\n\n<|Assistant|>:"):
        assert ours.tokenizer(text)["input_ids"] == theirs.tokenizer(text)["input_ids"]
    for messages in (generation_messages(PROMPT), understanding_messages(QUESTION)):
        assert render(ours, messages) == render(theirs, messages)
    assert ours.num_image_tokens == theirs.num_image_tokens == 576
    assert ours.use_default_system_prompt is True
    for name in ("size", "image_mean", "image_std", "min_size", "rescale_factor", "background_color"):
        assert getattr(ours.image_processor, name) == getattr(theirs.image_processor, name), name


# ---- input layouts ------------------------------------------------------------------------------


@pytest.mark.parametrize("layout,shards", [("safetensors", 3), ("bin", 1), ("bin", 2)])
def test_sharded_and_pytorch_inputs(layout, shards, originals, tiny_checkpoint, tmp_path):
    source = build_original_checkpoint(tiny_checkpoint, originals / f"Janus-Pro-{layout}-{shards}", layout, shards)
    out = tmp_path / "converted"
    # Small output shards too: the writer streams into several files and an index.
    done = convert_checkpoint(source, out, max_shard_bytes=2_000_000)
    index = json.loads((out / "model.safetensors.index.json").read_text())
    files = sorted(set(index["weight_map"].values()))
    assert len(files) > 2
    merged = {}
    for name in files:
        shard = load_file(str(out / name))
        # A shard stays under the limit (plus its header), unless it is one tensor larger than that.
        assert (out / name).stat().st_size < 2_000_000 + 50_000 or len(shard) == 1, name
        merged.update(shard)
    _assert_same_tensors(merged, load_file(str(tiny_checkpoint / "model.safetensors")))
    assert done.tensors == len(merged)


def test_a_sharded_conversion_loads(tiny_checkpoint, originals, tmp_path, tiny_model):
    source = build_original_checkpoint(tiny_checkpoint, originals / "Janus-Pro-load", "safetensors", 2)
    convert_checkpoint(source, tmp_path / "out", max_shard_bytes=3_000_000)
    model = load_model(str(tmp_path / "out"), device="cpu", dtype="float32")
    theirs = tiny_model.model.state_dict()
    for name, tensor in model.model.state_dict().items():
        assert torch.equal(tensor, theirs[name]), name


# ---- the paper's Janus-1.3B: its own conversation format ---------------------------------------


def test_janus_13b_prompts_use_its_user_assistant_roles(tiny_checkpoint, originals, tmp_path):
    source = build_original_checkpoint(tiny_checkpoint, originals / "Janus-1.3B-tiny")
    done = convert_checkpoint(source, tmp_path / "janus-1.3b")
    assert done.family == "janus"
    processor = JanusProcessor.from_pretrained(tmp_path / "janus-1.3b")
    assert render(processor, generation_messages(PROMPT)) == f"User: {PROMPT}\n\nAssistant:"
    assert render(processor, understanding_messages(QUESTION)) == f"User: <image_placeholder>\n{QUESTION}\n\nAssistant:"
    # DeepSeek's generation prompt: the conversation, then the begin-of-image tag, BOS first.
    ids = processor(text=render(processor, generation_messages(PROMPT)), generation_mode="image")["input_ids"][0]
    expected = processor.tokenizer(f"User: {PROMPT}\n\nAssistant:<begin_of_image>")["input_ids"]
    assert ids.tolist() == expected and expected[0] == processor.tokenizer.bos_token_id
    # Jobs record what the checkpoint chose: its prompt format and image normalization.
    served = load_model(str(tmp_path / "janus-1.3b"), device="cpu", dtype="float32").served_settings
    assert served["generate"] == {"prompt_format": "User: {prompt}\n\nAssistant:<begin_of_image>"}
    assert served["understand"]["prompt_format"].endswith("User: <image_placeholder>\n{question}\n\nAssistant:")
    assert served["understand"]["prompt_format"].startswith("You are a helpful language and vision assistant.")
    assert served["understand"]["image_mean"] == served["understand"]["image_std"] == [0.5, 0.5, 0.5]


def test_family_comes_from_the_path_the_model_card_or_the_flag(tmp_path):
    plain = tmp_path / "checkpoint"
    plain.mkdir()
    with pytest.raises(CheckpointFormatError, match="--family"):
        detect_family(plain)
    assert detect_family(plain, "janus") == "janus"
    (plain / "README.md").write_text("---\nlicense: mit\n---\n## 1. Introduction\n\nJanus-Pro is a novel ...\n")
    assert detect_family(plain) == "janus-pro"
    (plain / "README.md").write_text("---\nlicense: mit\n---\n## 1. Introduction\n\nJanus is a novel ...\n")
    assert detect_family(plain) == "janus"
    (plain / "README.md").write_text("## 1. Introduction\n\nJanusFlow introduces ...\n")
    with pytest.raises(CheckpointFormatError):
        detect_family(plain)
    hub_cache = tmp_path / "models--deepseek-ai--Janus-1.3B" / "snapshots" / "0123abc"
    hub_cache.mkdir(parents=True)
    assert detect_family(hub_cache) == "janus"
    nested = tmp_path / "janus-pro-service" / "Janus-1.3B"
    nested.mkdir(parents=True)
    assert detect_family(nested) == "janus"  # the folder's own name counts first


# ---- refusals -----------------------------------------------------------------------------------


def test_unknown_formats_are_one_line_errors(tmp_path, tiny_checkpoint):
    other = tmp_path / "llava"
    other.mkdir()
    (other / "config.json").write_text(json.dumps({"model_type": "llava"}))
    cases = {other: "model_type 'llava', expected 'multi_modality'",
             tmp_path / "missing": "has no config.json",
             tiny_checkpoint: "already in transformers' format"}
    for source, message in cases.items():
        done = janusq("convert", str(source), str(tmp_path / "out"), cwd=tmp_path)
        assert done.returncode == 2
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and message in lines[0], done.stderr
    assert not (tmp_path / "out").exists()


def test_a_non_empty_destination_is_refused(original_pro, tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("mine")
    with pytest.raises(CheckpointFormatError, match="not an empty folder"):
        convert_checkpoint(original_pro, tmp_path / "out")


def test_weights_that_do_not_fit_the_model_are_refused_before_writing(tiny_checkpoint, originals, tmp_path):
    from safetensors.torch import save_file

    source = build_original_checkpoint(tiny_checkpoint, originals / "Janus-Pro-broken")
    state = load_file(str(source / "model.safetensors"))
    del state["gen_embed.weight"]
    state["aligner.layers.2.weight"] = state["aligner.layers.2.weight"][:, :-1].contiguous()
    save_file(state, str(source / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(CheckpointFormatError, match="model.generation_embeddings.weight"):
        convert_checkpoint(source, tmp_path / "out")
    state["gen_embed.weight"] = torch.zeros(16384, 8)
    save_file(state, str(source / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(CheckpointFormatError, match="wrong shape .*model.aligner.hidden_layers.0.weight"):
        convert_checkpoint(source, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_unknown_weights_are_refused():
    with pytest.raises(UnknownWeight):
        targets("vision_model.something_new.weight")


def test_deepseek_names_map_to_transformers_names():
    assert [t.name for t in targets("vision_model.vision_tower.blocks.23.attn.qkv.bias")] == [
        f"model.vision_model.encoder.layers.23.self_attn.{part}_proj.bias" for part in "qkv"]
    examples = {
        "gen_vision_model.decoder.conv_blocks.3.upsample.conv.weight": "model.vqmodel.decoder.up.3.upsample.conv.weight",
        "gen_vision_model.encoder.conv_blocks.1.res.0.nin_shortcut.weight":
            "model.vqmodel.encoder.down.1.block.0.nin_shortcut.weight",
        "gen_vision_model.decoder.mid.2.norm1.bias": "model.vqmodel.decoder.mid.block_2.norm1.bias",
        "aligner.layers.2.weight": "model.aligner.hidden_layers.0.weight",
        "gen_aligner.layers.0.bias": "model.generation_aligner.fc1.bias",
        "language_model.model.norm.weight": "model.language_model.norm.weight",
    }
    for original, converted in examples.items():
        assert [t.name for t in targets(original)] == [converted]
    assert targets("vision_model.vision_tower.attn_pool.mlp.fc1.weight") == []


# ---- JANUS_MODEL naming an original-format folder ------------------------------------------------


def test_an_original_folder_is_converted_once(original_pro, tmp_path, caplog, tiny_checkpoint):
    from jobs.settings import Settings
    from worker.runtime import checkpoint_path

    settings = Settings(model=str(original_pro), data_dir=tmp_path)
    with caplog.at_level(logging.INFO, logger="janus_model.convert"):
        first = checkpoint_path(settings)
        second = checkpoint_path(settings)
    assert first == second and Path(first).parent == tmp_path / "models" / "converted"
    said = [record.getMessage() for record in caplog.records if "converted the original-format" in record.getMessage()]
    assert len(said) == 1 and str(original_pro) in said[0]
    _assert_same_tensors(load_file(str(Path(first) / "model.safetensors")),
                         load_file(str(tiny_checkpoint / "model.safetensors")))
    assert servable_source(str(tiny_checkpoint), tmp_path) == str(tiny_checkpoint)  # others pass through


def test_the_api_budget_reads_an_original_folder_like_its_conversion(original_pro, converted_pro):
    original, converted = PromptBudget.from_checkpoint(str(original_pro)), PromptBudget.from_checkpoint(str(converted_pro))
    assert (original.context_length, original.image_token_count, original.use_default_system_prompt) == (
        converted.context_length, converted.image_token_count, converted.use_default_system_prompt)
    for prompt in (PROMPT, "naïve café, 東京"):
        assert original.generation_prompt_tokens(prompt) == converted.generation_prompt_tokens(prompt)
        assert original.understanding_prompt_tokens(prompt) == converted.understanding_prompt_tokens(prompt)


def test_the_api_reads_an_original_folder_without_torch(original_pro):
    code = (
        "import sys\n"
        "from janus_model.budget import PromptBudget\n"
        f"assert PromptBudget.from_checkpoint({str(original_pro)!r}).generation_fits('a cat')\n"
        "assert 'torch' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def _assert_same_tensors(ours: dict, theirs: dict) -> None:
    assert set(ours) == set(theirs)
    for name, tensor in theirs.items():
        assert ours[name].dtype == tensor.dtype and torch.equal(ours[name], tensor), name

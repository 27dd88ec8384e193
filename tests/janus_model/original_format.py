"""A tiny checkpoint in DeepSeek's original format, made from the tiny transformers-format one.

The inverse of the conversion, written here independently of janus_model/convert (tensor by
tensor, in DeepSeek's names: a timm SigLIP tower with fused qkv, nn.Sequential projectors, the
VQ model's conv_blocks/res/mid.N, LlamaForCausalLM under language_model), plus the tensors the
original has and transformers drops (SigLIP's attention-pool head, the codebook usage counter).
The files around the weights are laid out as DeepSeek ships them: config.json with
model_type multi_modality and its six sub-configs, tokenizer.json / tokenizer_config.json /
special_tokens_map.json, and the VLChatProcessor's processor_config.json and
preprocessor_config.json.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

# Parts of the key: transformers' name -> DeepSeek's name, tried in order.
_RENAMES = [
    (r"^model\.vision_model\.embeddings\.patch_embedding\.", "vision_model.vision_tower.patch_embed.proj."),
    (r"^model\.vision_model\.post_layernorm\.", "vision_model.vision_tower.norm."),
    (r"^model\.vision_model\.encoder\.layers\.(\d+)\.layer_norm(\d)\.", r"vision_model.vision_tower.blocks.\1.norm\2."),
    (r"^model\.vision_model\.encoder\.layers\.(\d+)\.self_attn\.projection_layer\.",
     r"vision_model.vision_tower.blocks.\1.attn.proj."),
    (r"^model\.vision_model\.encoder\.layers\.(\d+)\.mlp\.", r"vision_model.vision_tower.blocks.\1.mlp."),
    (r"^model\.language_model\.", "language_model.model."),
    (r"^lm_head\.weight$", "language_model.lm_head.weight"),
    (r"^model\.generation_embeddings\.", "gen_embed."),
    (r"^model\.generation_head\.proj_out\.", "gen_head.output_mlp_projector."),
    (r"^model\.generation_head\.vision_head\.", "gen_head.vision_head."),
    (r"^model\.(aligner|generation_aligner)\.fc1\.", lambda m: f"{_aligner(m.group(1))}.layers.0."),
    (r"^model\.(aligner|generation_aligner)\.hidden_layers\.(\d+)\.",
     lambda m: f"{_aligner(m.group(1))}.layers.{2 * int(m.group(2)) + 2}."),
    (r"^model\.vqmodel\.(encoder|decoder)\.(?:down|up)\.(\d+)\.block\.", r"gen_vision_model.\1.conv_blocks.\2.res."),
    (r"^model\.vqmodel\.(encoder|decoder)\.(?:down|up)\.(\d+)\.", r"gen_vision_model.\1.conv_blocks.\2."),
    (r"^model\.vqmodel\.(encoder|decoder)\.mid\.block_1\.", r"gen_vision_model.\1.mid.0."),
    (r"^model\.vqmodel\.(encoder|decoder)\.mid\.attn_1\.", r"gen_vision_model.\1.mid.1."),
    (r"^model\.vqmodel\.(encoder|decoder)\.mid\.block_2\.", r"gen_vision_model.\1.mid.2."),
    (r"^model\.vqmodel\.", "gen_vision_model."),
]

DROPPED_ORIGINAL_KEYS = ("vision_model.vision_tower.attn_pool.latent",
                                     "vision_model.vision_tower.attn_pool.q.weight",
                                     "gen_vision_model.quantize.codebook_used")


def _aligner(name: str) -> str:
    return "aligner" if name == "aligner" else "gen_aligner"


def original_state_dict(tiny_dir: Path) -> dict[str, torch.Tensor]:
    converted = load_file(str(tiny_dir / "model.safetensors"))
    original: dict[str, torch.Tensor] = {}
    qkv: dict[str, dict[str, torch.Tensor]] = {}
    for key, tensor in converted.items():
        attention = re.match(r"^model\.vision_model\.encoder\.layers\.(\d+)\.self_attn\.([qkv])_proj\.(weight|bias)$", key)
        if attention:
            layer, part, kind = attention.groups()
            qkv.setdefault(f"vision_model.vision_tower.blocks.{layer}.attn.qkv.{kind}", {})[part] = tensor
        elif key == "model.vision_model.embeddings.position_embedding.weight":
            original["vision_model.vision_tower.pos_embed"] = tensor.unsqueeze(0)  # timm: [1, patches, width]
        else:
            original[_renamed(key)] = tensor
    for key, parts in qkv.items():
        original[key] = torch.cat([parts["q"], parts["k"], parts["v"]], dim=0)
    width = original["vision_model.vision_tower.patch_embed.proj.weight"].shape[0]
    original["vision_model.vision_tower.attn_pool.latent"] = torch.randn(1, 1, width)
    original["vision_model.vision_tower.attn_pool.q.weight"] = torch.randn(width, width)
    original["gen_vision_model.quantize.codebook_used"] = torch.zeros(65536)
    return original


def _renamed(key: str) -> str:
    for pattern, replacement in _RENAMES:
        if re.search(pattern, key):
            return re.sub(pattern, replacement, key)
    raise AssertionError(f"no original name for {key}")


def original_config(tiny_dir: Path) -> dict:
    """config.json as DeepSeek ships it, with the tiny widths (and `heads`, which tiny needs)."""
    tiny = json.loads((tiny_dir / "config.json").read_text())
    text, vision, vq = tiny["text_config"], tiny["vision_config"], tiny["vq_config"]
    hidden = text["hidden_size"]
    return {
        "architectures": ["MultiModalityCausalLM"],
        "model_type": "multi_modality",
        "torch_dtype": "float32",
        "language_config": {
            "hidden_size": hidden, "intermediate_size": text["intermediate_size"],
            "max_position_embeddings": text["max_position_embeddings"], "model_type": "llama",
            "num_attention_heads": text["num_attention_heads"], "num_hidden_layers": text["num_hidden_layers"],
            "num_key_value_heads": text["num_key_value_heads"], "torch_dtype": "float32",
            "vocab_size": text["vocab_size"],
        },
        "vision_config": {"cls": "CLIPVisionTower", "model_type": "vision", "params": {
            "image_size": vision["image_size"], "model_name": "siglip_large_patch16_384",
            "select_feature": "same", "select_layer": -1, "heads": vision["num_attention_heads"]}},
        "aligner_config": {"cls": "MlpProjector", "model_type": "aligner", "params": {
            "depth": 2, "input_dim": vision["hidden_size"], "n_embed": hidden, "projector_type": "mlp_gelu"}},
        "gen_vision_config": {"cls": "VQ-16", "model_type": "gen_vision", "params": {
            "image_token_size": vq["num_embeddings"], "n_embed": vq["embed_dim"]}},
        "gen_aligner_config": {"cls": "MlpProjector", "model_type": "gen_aligner", "params": {
            "depth": 2, "input_dim": vq["embed_dim"], "n_embed": hidden, "projector_type": "mlp_gelu"}},
        "gen_head_config": {"cls": "vision_head", "model_type": "gen_head", "params": {
            "image_token_embed": hidden, "image_token_size": vq["num_embeddings"], "n_embed": hidden}},
    }


def write_tokenizer_files(tiny_dir: Path, out: Path) -> None:
    tokenizer = json.loads((tiny_dir / "tokenizer.json").read_text())
    tokenizer["post_processor"] = None  # a Llama-style file: BOS comes from add_bos_token, not the file
    (out / "tokenizer.json").write_text(json.dumps(tokenizer, ensure_ascii=False))
    special = json.loads((tiny_dir / "tokenizer_config.json").read_text())
    _write(out / "tokenizer_config.json", {
        "add_bos_token": True, "add_eos_token": False, "bos_token": {"content": special["bos_token"], "__type": "AddedToken"},
        "eos_token": {"content": special["eos_token"], "__type": "AddedToken"}, "clean_up_tokenization_spaces": False,
        "legacy": True, "model_max_length": 16384, "pad_token": None, "tokenizer_class": "LlamaTokenizerFast",
        "unk_token": None, "use_default_system_prompt": False})
    # DeepSeek's map names the chat tokens; its pad is not the CFG pad (<｜▁pad▁｜>) the converter must pick.
    _write(out / "special_tokens_map.json", {
        "additional_special_tokens": ["<image_placeholder>", "<|User|>", "<|Assistant|>"],
        "bos_token": special["bos_token"], "eos_token": special["eos_token"], "pad_token": special["eos_token"]})


def write_processor_files(out: Path) -> None:
    _write(out / "processor_config.json", {
        "add_special_token": False, "ignore_id": -100, "image_tag": "<image_placeholder>", "mask_prompt": True,
        "num_image_tokens": 576, "processor_class": "VLChatProcessor", "sft_format": "deepseek"})
    _write(out / "preprocessor_config.json", {
        "background_color": [127, 127, 127], "do_normalize": True, "image_mean": [0.5, 0.5, 0.5],
        "image_processor_type": "VLMImageProcessor", "image_size": 384, "image_std": [0.5, 0.5, 0.5],
        "min_size": 14, "processor_class": "VLChatProcessor", "rescale_factor": 0.00392156862745098})


def build_original_checkpoint(tiny_dir: Path, out: Path, layout: str = "safetensors", shards: int = 1) -> Path:
    """layout: safetensors or bin; shards > 1 writes an index json, as DeepSeek's 7B does."""
    out.mkdir(parents=True)
    state = original_state_dict(Path(tiny_dir))
    _write(out / "config.json", original_config(Path(tiny_dir)))
    write_tokenizer_files(Path(tiny_dir), out)
    write_processor_files(out)
    _write_weights(state, out, layout, shards)
    return out


def _write_weights(state: dict[str, torch.Tensor], out: Path, layout: str, shards: int) -> None:
    suffix = "safetensors" if layout == "safetensors" else "bin"
    stem = "model" if layout == "safetensors" else "pytorch_model"
    keys = sorted(state)
    if shards == 1:
        _save({key: state[key] for key in keys}, out / f"{stem}.{suffix}", layout)
        return
    weight_map = {}
    for index in range(shards):
        name = f"{stem}-{index + 1:05d}-of-{shards:05d}.{suffix}"
        part = keys[index::shards]
        _save({key: state[key] for key in part}, out / name, layout)
        weight_map.update(dict.fromkeys(part, name))
    _write(out / f"{stem}.{suffix}.index.json", {"metadata": {}, "weight_map": weight_map})


def _save(tensors: dict[str, torch.Tensor], path: Path, layout: str) -> None:
    tensors = {key: tensor.contiguous() for key, tensor in tensors.items()}
    if layout == "safetensors":
        save_file(tensors, str(path), metadata={"format": "pt"})
    else:
        torch.save(tensors, str(path))


def _write(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False))

"""Original config.json (+ the weights' shapes) -> transformers' JanusConfig and GenerationConfig. Torch-free.

DeepSeek's config names its parts rather than sizing them: the vision tower is
`siglip_large_patch16_384` (sized by a table in DeepSeek's code) and the VQ model is `VQ-16`
(sized by code defaults). Widths, depths and channel counts are therefore read from the weights'
shapes, which cannot disagree with the weights; only the attention head count, invisible in the
shapes, comes from the named tower (or a `heads` entry in the vision params, which DeepSeek's
code ignores and small test checkpoints use).
"""
from __future__ import annotations

import re

from janus_model.convert.formats import CheckpointFormatError

# Attention heads of the SigLIP towers DeepSeek's code knows by name (janus/models/siglip_vit.py).
SIGLIP_HEADS = {"siglip_large_patch16_384": 16, "siglip_so400m_patch14_384": 16, "siglip_so400m_patch14_224": 16}

TOWER = "vision_model.vision_tower."
VQ = "gen_vision_model."

# The reference procedure's defaults, kept with the weights (see janus-facts: cfg_weight 5).
GUIDANCE_SCALE = 5.0


def janus_config(original: dict, shapes: dict[str, tuple], token_ids: dict[str, int]) -> dict:
    """config.json of the converted checkpoint. token_ids: bos, eos, pad, image (from the tokenizer)."""
    vision = vision_config(original, shapes)
    return {
        "architectures": ["JanusForConditionalGeneration"],
        "model_type": "janus",
        "dtype": _dtype(original),
        "text_config": text_config(original, shapes, token_ids),
        "vision_config": vision,
        "vq_config": vq_config(original, shapes),
        "image_token_id": token_ids["image"],
        # DeepSeek-LLM has an output head of its own: never tie it to the input embeddings.
        "tie_word_embeddings": "language_model.lm_head.weight" not in shapes,
    }


def generation_config(token_ids: dict[str, int]) -> dict:
    # transformers' image-mode generate() reads bos/pad to build the unconditional rows and
    # generation_kwargs.boi_token_id to keep the begin-of-image tag in them.
    return {
        "bos_token_id": token_ids["bos"],
        "eos_token_id": token_ids["eos"],
        "pad_token_id": token_ids["pad"],
        "guidance_scale": GUIDANCE_SCALE,
        "generation_kwargs": {"boi_token_id": token_ids["boi"]},
    }


def text_config(original: dict, shapes: dict[str, tuple], token_ids: dict[str, int]) -> dict:
    # DeepSeek builds LlamaConfig(**language_config): every key it has means the same to transformers.
    config = {key: value for key, value in original["language_config"].items() if key not in ("torch_dtype", "dtype")}
    config["model_type"] = "llama"
    config["tie_word_embeddings"] = "language_model.lm_head.weight" not in shapes
    config.update(bos_token_id=token_ids["bos"], eos_token_id=token_ids["eos"], pad_token_id=token_ids["pad"])
    return config


def vision_config(original: dict, shapes: dict[str, tuple]) -> dict:
    section = original["vision_config"]
    params = section.get("params", {})
    name = params.get("model_name", "")
    if section.get("cls") != "CLIPVisionTower" or not name.startswith("siglip"):
        raise CheckpointFormatError(f"unsupported vision tower {section.get('cls')}/{name!r} (expected a SigLIP "
                                    "CLIPVisionTower)")
    if params.get("pixel_mean") is not None:
        raise CheckpointFormatError("the vision tower normalizes pixels itself (pixel_mean): not supported")
    patch_weight = _shape(shapes, TOWER + "patch_embed.proj.weight")
    width, patch_size = patch_weight[0], patch_weight[2]
    image_size = int(params.get("image_size", 384))
    aligner = _projector(original, "aligner_config", input_dim=width)
    heads = params.get("heads", SIGLIP_HEADS.get(name))
    if heads is None:
        raise CheckpointFormatError(f"unknown SigLIP tower {name!r}: its attention head count is not known")
    return {
        "model_type": "janus_vision_model",
        "hidden_size": width,
        "num_hidden_layers": _count(shapes, TOWER, r"blocks\.(\d+)\."),
        "num_attention_heads": heads,
        "mlp_ratio": _shape(shapes, TOWER + "blocks.0.mlp.fc1.weight")[0] / width,
        "image_size": image_size,
        "patch_size": patch_size,
        "projection_dim": aligner["n_embed"],
        "depth": aligner.get("depth", 1),
        "num_image_tokens": (image_size // patch_size) ** 2,
    }


def vq_config(original: dict, shapes: dict[str, tuple]) -> dict:
    base = _shape(shapes, VQ + "encoder.conv_in.weight")
    levels = _count(shapes, VQ, r"encoder\.conv_blocks\.(\d+)\.")
    codebook = _shape(shapes, VQ + "quantize.embedding.weight")
    quant_conv = _shape(shapes, VQ + "quant_conv.weight")
    gen_params = original["gen_vision_config"].get("params", {})
    _expect("gen_vision_config image_token_size", gen_params.get("image_token_size", codebook[0]), codebook[0])
    _expect("gen_vision_config n_embed", gen_params.get("n_embed", codebook[1]), codebook[1])
    aligner = _projector(original, "gen_aligner_config", input_dim=codebook[1])
    head = original["gen_head_config"].get("params", {})
    # transformers' generation head has one width for its hidden layer and the aligner's output.
    _expect("gen_head image_token_embed", head.get("image_token_embed", aligner["n_embed"]), aligner["n_embed"])
    _expect("gen_head image_token_size", head.get("image_token_size", codebook[0]), codebook[0])
    return {
        "model_type": "janus_vqgan",
        "embed_dim": codebook[1],
        "num_embeddings": codebook[0],
        "latent_channels": quant_conv[1],
        "in_channels": base[1],
        "out_channels": _shape(shapes, VQ + "decoder.conv_out.weight")[0],
        "base_channels": base[0],
        "channel_multiplier": [
            _shape(shapes, VQ + f"encoder.conv_blocks.{level}.res.0.conv1.weight")[0] // base[0]
            for level in range(levels)
        ],
        "num_res_blocks": _count(shapes, VQ, r"encoder\.conv_blocks\.0\.res\.(\d+)\."),
        "projection_dim": aligner["n_embed"],
        "num_hidden_layers": aligner.get("depth", 1),
        "image_token_embed_dim": head.get("n_embed", original["language_config"].get("hidden_size")),
    }


def _projector(original: dict, section: str, input_dim: int) -> dict:
    config = original[section]
    params = dict(config.get("params", {}))
    if config.get("cls") != "MlpProjector" or params.get("projector_type") != "mlp_gelu":
        raise CheckpointFormatError(f"{section}: only the mlp_gelu MlpProjector is supported, got "
                                    f"{config.get('cls')}/{params.get('projector_type')}")
    _expect(f"{section} input_dim", params.get("input_dim", input_dim), input_dim)
    if "n_embed" not in params:
        raise CheckpointFormatError(f"{section} has no n_embed")
    return params


def _dtype(original: dict) -> str:
    return original.get("torch_dtype") or original["language_config"].get("torch_dtype") or "bfloat16"


def _shape(shapes: dict[str, tuple], key: str) -> tuple:
    if key not in shapes:
        raise CheckpointFormatError(f"the weights have no {key}")
    return tuple(shapes[key])


def _count(shapes: dict[str, tuple], prefix: str, indexed: str) -> int:
    """How many indices `indexed` (a regex with one group) takes after `prefix` in the weight names."""
    compiled = re.compile("^" + re.escape(prefix) + indexed)
    indices = {int(match.group(1)) for key in shapes if (match := compiled.match(key))}
    if not indices:
        raise CheckpointFormatError(f"the weights have no tensors {prefix}{indexed}")
    return max(indices) + 1


def _expect(what: str, found, expected) -> None:
    if found != expected:
        raise CheckpointFormatError(f"{what} is {found}, but the weights say {expected}")

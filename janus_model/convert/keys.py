"""Original (DeepSeek) weight names -> transformers' JanusForConditionalGeneration names. Torch-free.

The original model is DeepSeek's MultiModalityCausalLM: a timm SigLIP ViT under
`vision_model.vision_tower`, MLP projectors as nn.Sequential (`layers.0`, GELU, `layers.2`, ...),
a LlamaForCausalLM under `language_model`, and a VQ model whose encoder/decoder levels are
`conv_blocks.<i>` holding `res`, `attn` and `downsample`/`upsample`, with `mid.0/1/2`.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

# Not part of the transformers model: SigLIP's attention-pooling head (Janus reads patch
# features, not the pooled vector) and the VQ codebook's training-time usage counter.
DROPPED = (re.compile(r"^vision_model\.vision_tower\.attn_pool\."), re.compile(r"\.quantize\.codebook_used$"))

_VISION = "model.vision_model."
# (pattern, replacement) applied in order to the key; the first match wins.
_RULES: list[tuple[re.Pattern, str]] = [
    (re.compile(r"^vision_model\.vision_tower\.pos_embed$"), _VISION + "embeddings.position_embedding.weight"),
    (re.compile(r"^vision_model\.vision_tower\.patch_embed\.proj\."), _VISION + "embeddings.patch_embedding."),
    (re.compile(r"^vision_model\.vision_tower\.norm\."), _VISION + "post_layernorm."),
    (re.compile(r"^vision_model\.vision_tower\.blocks\.(\d+)\.norm([12])\."), _VISION + r"encoder.layers.\1.layer_norm\2."),
    (re.compile(r"^vision_model\.vision_tower\.blocks\.(\d+)\.attn\.proj\."), _VISION + r"encoder.layers.\1.self_attn.projection_layer."),
    (re.compile(r"^vision_model\.vision_tower\.blocks\.(\d+)\.attn\.qkv\."), _VISION + r"encoder.layers.\1.self_attn.qkv."),
    (re.compile(r"^vision_model\.vision_tower\.blocks\.(\d+)\.mlp\.(fc[12])\."), _VISION + r"encoder.layers.\1.mlp.\2."),
    (re.compile(r"^language_model\.model\."), "model.language_model."),
    (re.compile(r"^language_model\.lm_head\.weight$"), "lm_head.weight"),
    (re.compile(r"^gen_embed\."), "model.generation_embeddings."),
    (re.compile(r"^gen_head\.output_mlp_projector\."), "model.generation_head.proj_out."),
    (re.compile(r"^gen_head\.vision_head\."), "model.generation_head.vision_head."),
]

_MLP_PROJECTORS = {"aligner": "model.aligner", "gen_aligner": "model.generation_aligner"}
_VQ_LEVEL = re.compile(r"^(encoder|decoder)\.conv_blocks\.(\d+)\.(res|attn|downsample|upsample)(\..*)$")
_VQ_MID = {"0": "block_1", "1": "attn_1", "2": "block_2"}


@dataclass(frozen=True)
class Target:
    """Where (part of) an original tensor goes: `chunk` of `chunks` equal slices along dim 0."""

    name: str
    chunk: int = 0
    chunks: int = 1


class UnknownWeight(KeyError):
    pass


def targets(key: str) -> list[Target]:
    """The transformers tensors made from original tensor `key`; [] for tensors left out."""
    if any(pattern.search(key) for pattern in DROPPED):
        return []
    name = _rename(key)
    if ".self_attn.qkv." in name:
        # timm keeps q, k and v in one matrix (rows q|k|v); transformers has three projections.
        return [Target(name.replace(".qkv.", f".{part}_proj."), index, 3) for index, part in enumerate("qkv")]
    return [Target(name)]


def _rename(key: str) -> str:
    for pattern, replacement in _RULES:
        if pattern.search(key):
            return pattern.sub(replacement, key)
    head, _, rest = key.partition(".")
    if head in _MLP_PROJECTORS:
        return _MLP_PROJECTORS[head] + "." + _projector_layer(key, rest)
    if head == "gen_vision_model":
        return "model.vqmodel." + _vq_name(rest)
    raise UnknownWeight(f"unexpected weight {key!r} in an original-format Janus checkpoint")


def _projector_layer(key: str, rest: str) -> str:
    # nn.Sequential(Linear, GELU, Linear, GELU, ...): Linear layers sit at even indices.
    match = re.match(r"^layers\.(\d+)\.(weight|bias)$", rest)
    if not match or int(match.group(1)) % 2:
        raise UnknownWeight(f"unexpected projector weight {key!r}")
    index = int(match.group(1)) // 2
    return f"fc1.{match.group(2)}" if index == 0 else f"hidden_layers.{index - 1}.{match.group(2)}"


def _vq_name(rest: str) -> str:
    level = _VQ_LEVEL.match(rest)
    if level:
        side, index, part, tail = level.groups()
        stack = "down" if side == "encoder" else "up"
        return f"{side}.{stack}.{index}.{'block' if part == 'res' else part}{tail}"
    mid = re.match(r"^(encoder|decoder)\.mid\.([012])(\..*)$", rest)
    if mid:
        return f"{mid.group(1)}.mid.{_VQ_MID[mid.group(2)]}{mid.group(3)}"
    return rest  # conv_in, conv_out, norm_out, quant_conv, post_quant_conv, quantize.embedding

"""The tokenizer and processor files of a converted checkpoint. Torch-free: the API reads them too.

DeepSeek's VLChatProcessor (processor_config.json, preprocessor_config.json) becomes
transformers' JanusProcessor + JanusImageProcessor:
- the tokenizer is DeepSeek's own tokenizer.json, unchanged, with the image placeholder and
  begin/end-of-image tags named so JanusProcessor finds them, BOS added as DeepSeek's encode()
  does, and the family's chat template (janus_model.chat_template);
- pad is `<｜▁pad▁｜>`, the token DeepSeek's reference fills unconditional CFG rows with;
- understanding prompts start with DeepSeek's default system prompt (VLChatProcessor applies
  it to every conversation; both families); generation prompts have none, as in the reference;
- images: resized so the longer side is image_size, padded to a square with the mean colour,
  rescaled and normalized with the checkpoint's own mean/std. Where preprocessor_config.json
  leaves them out, DeepSeek's VLMImageProcessor defaults apply (CLIP's mean and std), not 0.5.
"""
from __future__ import annotations

import json
from pathlib import Path

from transformers import PreTrainedTokenizerFast

from janus_model.chat_template import IMAGE_PLACEHOLDER, chat_template
from janus_model.convert.formats import FAMILY_ROLES, CheckpointFormatError, read_json

BOI, EOI, PAD = "<begin_of_image>", "<end_of_image>", "<｜▁pad▁｜>"
CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]


def build_tokenizer(folder: str | Path, family: str, context_length: int) -> PreTrainedTokenizerFast:
    folder = Path(folder)
    if not (folder / "tokenizer.json").is_file():
        raise CheckpointFormatError(f"{folder} has no tokenizer.json")
    settings = {**_optional_json(folder / "tokenizer_config.json"), **_optional_json(folder / "special_tokens_map.json")}
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_file=str(folder / "tokenizer.json"),
        bos_token=_token(settings, "bos_token"),
        eos_token=_token(settings, "eos_token"),
        pad_token=PAD,
        extra_special_tokens={"image_token": IMAGE_PLACEHOLDER, "boi_token": BOI, "eoi_token": EOI},
        add_bos_token=True,
        add_eos_token=False,
        model_max_length=int(settings.get("model_max_length") or context_length),
        padding_side="left",
    )
    # DeepSeek's processor adds the image tag when a tokenizer lacks it; so do we (all of them).
    missing = [token for token in (IMAGE_PLACEHOLDER, BOI, EOI, PAD) if token not in tokenizer.get_vocab()]
    if missing:
        tokenizer.add_special_tokens({"additional_special_tokens": missing}, replace_extra_special_tokens=False)
    tokenizer.chat_template = chat_template(*FAMILY_ROLES[family])
    return tokenizer


def token_ids(tokenizer: PreTrainedTokenizerFast) -> dict[str, int]:
    ids = tokenizer.convert_tokens_to_ids
    return {"bos": tokenizer.bos_token_id, "eos": tokenizer.eos_token_id, "pad": ids(PAD),
            "image": ids(IMAGE_PLACEHOLDER), "boi": ids(BOI), "eoi": ids(EOI)}


def processor_config(folder: str | Path, image_size: int, num_image_tokens: int) -> dict:
    """processor_config.json for JanusProcessor, the image processor's settings inside it."""
    folder = Path(folder)
    original = _optional_json(folder / "processor_config.json")
    declared = original.get("num_image_tokens", num_image_tokens)
    if declared != num_image_tokens:
        raise CheckpointFormatError(f"processor_config.json has num_image_tokens {declared}, the vision tower "
                                    f"makes {num_image_tokens}")
    return {
        "processor_class": "JanusProcessor",
        "num_image_tokens": num_image_tokens,
        "use_default_system_prompt": True,
        "image_processor": image_processor_config(folder, image_size),
    }


def image_processor_config(folder: Path, image_size: int) -> dict:
    original = _optional_json(folder / "preprocessor_config.json")
    size = original.get("image_size", image_size)
    if size != image_size:
        raise CheckpointFormatError(f"preprocessor_config.json resizes to {size}, the vision tower takes {image_size}")
    mean = list(original.get("image_mean") or CLIP_MEAN)
    return {
        "image_processor_type": "JanusImageProcessor",
        "size": {"height": image_size, "width": image_size},
        "min_size": original.get("min_size", 14),
        "image_mean": mean,
        "image_std": list(original.get("image_std") or CLIP_STD),
        "rescale_factor": original.get("rescale_factor", 1 / 255),
        "do_normalize": original.get("do_normalize", True),
        "do_rescale": True,
        "do_resize": True,
        "do_pad": True,
        "resample": 3,  # bicubic, as DeepSeek's resize
        "background_color": [int(value * 255) for value in mean],
    }


def write_processor_files(folder: str | Path, out: str | Path, family: str, context_length: int,
                          image_size: int, num_image_tokens: int) -> PreTrainedTokenizerFast:
    """Tokenizer files, chat template and processor_config.json into `out`; returns the tokenizer."""
    tokenizer = build_tokenizer(folder, family, context_length)
    tokenizer.save_pretrained(out)
    config = processor_config(folder, image_size, num_image_tokens)
    with open(Path(out) / "processor_config.json", "w", encoding="utf-8") as handle:
        json.dump(config, handle, indent=2)
    return tokenizer


def _optional_json(path: Path) -> dict:
    return read_json(path) if path.is_file() else {}


def _token(settings: dict, name: str) -> str | None:
    value = settings.get(name)
    return value.get("content") if isinstance(value, dict) else value

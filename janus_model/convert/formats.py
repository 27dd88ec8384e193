"""What an original-format checkpoint folder is, and which Janus family it belongs to. Torch-free.

DeepSeek ships Janus-1.3B and Janus-Pro as `model_type: multi_modality` folders: a config.json
with six sub-configs (language_config, vision_config, aligner_config, gen_vision_config,
gen_aligner_config, gen_head_config), weights as safetensors or PyTorch .bin (possibly sharded
with an index), a fast tokenizer and the processor's JSON files.
"""
from __future__ import annotations

import json
from pathlib import Path

from janus_model.chat_template import JANUS_PRO_ROLES, JANUS_ROLES

ORIGINAL_MODEL_TYPE = "multi_modality"
CONVERTED_MODEL_TYPE = "janus"
SUB_CONFIGS = ("language_config", "vision_config", "aligner_config", "gen_vision_config",
               "gen_aligner_config", "gen_head_config")

# The two conversation formats (see janus_model.chat_template).
JANUS, JANUS_PRO = "janus", "janus-pro"
FAMILY_ROLES = {JANUS: JANUS_ROLES, JANUS_PRO: JANUS_PRO_ROLES}


class CheckpointFormatError(ValueError):
    """The folder is not an original-format Janus checkpoint this converter can read (one line)."""


def read_json(path: Path) -> dict:
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except (OSError, ValueError) as exc:
        raise CheckpointFormatError(f"cannot read {path}: {exc}") from None


def original_config(folder: str | Path) -> dict:
    """The folder's config.json, checked to be DeepSeek's multi_modality format."""
    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise CheckpointFormatError(f"{folder} is not a checkpoint folder: it has no config.json")
    config = read_json(folder / "config.json")
    model_type = config.get("model_type")
    if model_type == CONVERTED_MODEL_TYPE:
        raise CheckpointFormatError(f"{folder} is already in transformers' format (model_type janus): "
                                    "point JANUS_MODEL at it directly")
    if model_type != ORIGINAL_MODEL_TYPE:
        raise CheckpointFormatError(f"{folder} is not an original-format Janus checkpoint: config.json has "
                                    f"model_type {model_type!r}, expected {ORIGINAL_MODEL_TYPE!r}")
    missing = [name for name in SUB_CONFIGS if not isinstance(config.get(name), dict)]
    if missing:
        # JanusFlow is multi_modality too, but has no VQ generation path.
        raise CheckpointFormatError(f"{folder}: config.json lacks {', '.join(missing)} (not Janus-1.3B or "
                                    "Janus-Pro; JanusFlow is not supported)")
    return config


def is_original_checkpoint(source: str) -> bool:
    """True for a local folder whose config.json says multi_modality (cheap: one small file)."""
    path = Path(source) / "config.json"
    if not path.is_file():
        return False
    try:
        return read_json(path).get("model_type") == ORIGINAL_MODEL_TYPE
    except CheckpointFormatError:
        return False


def detect_family(folder: str | Path, family: str | None = None) -> str:
    """janus (1.3B) or janus-pro: given, else from the folder's path, else from its model card.

    Nothing in DeepSeek's config or tokenizer files tells Janus-1.3B from Janus-Pro-1B (same
    architecture and vocabulary); what differs is the conversation's role names. Downloads keep
    the repository name in their path (a --local-dir named after it, or the hub cache's
    models--deepseek-ai--Janus-1.3B/snapshots/<hash>), and the model card names the model.
    """
    if family is not None:
        if family not in FAMILY_ROLES:
            raise CheckpointFormatError(f"unknown family {family!r}: use one of {', '.join(FAMILY_ROLES)}")
        return family
    folder = Path(folder).resolve()
    # Nearest name first: /srv/janus-pro-service/models/Janus-1.3B is the 1.3B.
    names = (part for part in (folder, *folder.parents) if part.name)
    found = next((family for part in names if (family := _family_in(part.name))), None)
    found = found or _family_in_model_card(folder)
    if found is None:
        raise CheckpointFormatError(f"cannot tell whether {folder} is Janus-1.3B or Janus-Pro (its path and "
                                    "README.md name neither): pass --family janus or --family janus-pro")
    return found


def _family_in(text: str) -> str | None:
    text = text.lower().replace("_", "-")
    if "janusflow" in text or "janus-flow" in text:
        return None
    if "janus-pro" in text:
        return JANUS_PRO
    if "janus-1.3b" in text:
        return JANUS
    return None


def _family_in_model_card(folder: Path) -> str | None:
    """From the first line of README.md (past its YAML header) that names Janus.

    DeepSeek's cards open with "Janus-Pro is a novel autoregressive framework ..." and, for the
    1.3B, "Janus is a novel ..."; JanusFlow's card names JanusFlow and is refused.
    """
    readme = folder / "README.md"
    if not readme.is_file():
        return None
    for line in readme.read_text(encoding="utf-8", errors="replace").splitlines()[:200]:
        if "janus" in line.lower() and not line.lstrip().startswith(("-", "license", "base_model")):
            return _family_in(line) or (None if "flow" in line.lower() else JANUS)
    return None

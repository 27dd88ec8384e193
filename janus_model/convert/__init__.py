"""DeepSeek's original-format Janus checkpoints -> transformers' format, which the service loads.

`convert_checkpoint(src, dst)` writes config.json, generation_config.json, safetensors weights,
the tokenizer (with the image tokens and the family's chat template) and processor_config.json.
`servable_source(source, cache_root)` lets JANUS_MODEL name an original folder: it is converted
once into `cache_root` and the converted copy is used from then on.

The key mapping and config translation follow what transformers' own conversion script
(models/janus/convert_janus_weights_to_hf.py) does, written afresh here: streaming instead of
loading the whole state dict, sizes read from the weights, the 1.3B conversation format, and
a dry check of every name and shape against the transformers model before a byte is written.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import multiprocessing
import os
import shutil
import tempfile
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from janus_model.convert.formats import (
    CheckpointFormatError,
    detect_family,
    is_original_checkpoint,
    original_config,
)

__all__ = ["CheckpointFormatError", "Conversion", "convert_checkpoint", "is_original_checkpoint",
           "servable_source", "servable_source_in_fresh_process"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Conversion:
    source: Path
    target: Path
    family: str
    tensors: int


def convert_checkpoint(src: str | Path, dst: str | Path, family: str | None = None,
                       max_shard_bytes: int | None = None) -> Conversion:
    """Convert the original-format folder `src` into a new transformers-format folder `dst`.

    Raises CheckpointFormatError (one line) for anything that is not a Janus-1.3B/Pro checkpoint.
    `dst` appears complete or not at all: the files are written beside it and renamed into place.
    """
    from janus_model.convert.weights import DEFAULT_SHARD_BYTES, OriginalWeights

    src, dst = Path(src), Path(dst)
    original = original_config(src)
    family = detect_family(src, family)
    weights = OriginalWeights(src)
    if dst.exists() and (not dst.is_dir() or any(dst.iterdir())):
        raise CheckpointFormatError(f"{dst} already exists and is not an empty folder")
    dst.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{dst.name}.converting-", dir=dst.parent))
    try:
        tensors = _write(src, staging, original, family, weights, max_shard_bytes or DEFAULT_SHARD_BYTES)
        staging.chmod(0o755)
        os.replace(staging, dst)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return Conversion(src, dst, family, tensors)


def servable_source(source: str, cache_root: str | Path) -> str:
    """`source` itself, unless it is an original-format folder: then its converted copy (made once)."""
    if not is_original_checkpoint(source):
        return source
    target = converted_path(source, cache_root)
    if (target / "config.json").is_file():
        return str(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    # One converter at a time per source (two workers starting together would each write 15 GB).
    with open(target.parent / f".{target.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (target / "config.json").is_file():
            conversion = convert_checkpoint(source, target)
            log.info("converted the original-format %s checkpoint %s into %s (once: later starts reuse it)",
                     conversion.family, source, target)
    return str(target)


def servable_source_in_fresh_process(source: str, cache_root: str | Path) -> str:
    """servable_source, with any conversion done in a new interpreter (spawned, not forked).

    For processes that fork later (Celery's worker, `janusq run`): torch's thread pools do not
    survive a fork, and a pool process forked after the parent converted hangs on its first
    tensor operation. The child logs to stderr like janusq does.
    """
    if not is_original_checkpoint(source) or (converted_path(source, cache_root) / "config.json").is_file():
        return servable_source(source, cache_root)
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=context, initializer=_log_to_stderr) as pool:
        return pool.submit(servable_source, source, str(cache_root)).result()


def _log_to_stderr() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def converted_path(source: str, cache_root: str | Path) -> Path:
    """Where `source`'s converted copy lives: named after the folder, keyed by its full path."""
    resolved = Path(source).resolve()
    digest = hashlib.sha256(str(resolved).encode()).hexdigest()[:10]
    return Path(cache_root) / f"{resolved.name}-{digest}"


def _write(src: Path, out: Path, original: dict, family: str, weights, max_shard_bytes: int) -> int:
    from janus_model.convert.configs import generation_config, janus_config, vision_config
    from janus_model.convert.processor_files import token_ids, write_processor_files
    from janus_model.convert.weights import ShardWriter, convert_tensors, converted_shapes

    shapes = weights.shapes()
    vision = vision_config(original, shapes)
    context = original["language_config"].get("max_position_embeddings", 2048)
    tokenizer = write_processor_files(src, out, family, context, vision["image_size"], vision["num_image_tokens"])
    ids = token_ids(tokenizer)
    config = janus_config(original, shapes, ids)
    _check_token_ids(ids, config["text_config"]["vocab_size"])
    _check_against_model(config, converted_shapes(shapes))
    _write_json(out / "config.json", config)
    _write_json(out / "generation_config.json", generation_config(ids))
    writer = ShardWriter(out, max_shard_bytes)
    count = convert_tensors(weights, writer)
    writer.close()
    return count


def _check_token_ids(ids: dict[str, int], vocab_size: int) -> None:
    outside = {name: value for name, value in ids.items() if value is None or value >= vocab_size}
    if outside:
        raise CheckpointFormatError(f"special tokens outside the model's {vocab_size}-entry vocabulary: {outside}")


def _check_against_model(config: dict, shapes: dict[str, tuple]) -> None:
    """Every tensor the transformers model has, with its shape, and nothing else (no memory used)."""
    import torch
    from transformers import JanusConfig, JanusForConditionalGeneration

    with torch.device("meta"):
        model = JanusForConditionalGeneration(JanusConfig.from_dict(config))
    expected = {name: tuple(tensor.shape) for name, tensor in model.state_dict().items()}
    if config["tie_word_embeddings"]:
        expected.pop("lm_head.weight", None)
    missing = sorted(set(expected) - set(shapes))
    if missing:
        raise CheckpointFormatError(f"{len(missing)} weights the model needs are not in the checkpoint "
                                    f"(first: {missing[0]})")
    unexpected = sorted(set(shapes) - set(expected))
    if unexpected:
        raise CheckpointFormatError(f"{len(unexpected)} converted weights have no place in the model "
                                    f"(first: {unexpected[0]})")
    wrong = sorted(name for name in expected if expected[name] != shapes[name])
    if wrong:
        raise CheckpointFormatError(f"{len(wrong)} weights have the wrong shape (first: {wrong[0]} is "
                                    f"{shapes[wrong[0]]}, the model has {expected[wrong[0]]})")


def _write_json(path: Path, data: dict) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(data, handle, indent=2, sort_keys=True)

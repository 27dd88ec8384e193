"""Reading the original weights one tensor at a time and writing safetensors shards as they fill.

Peak memory is one output shard (`max_shard_bytes`, 2 GiB by default) plus the tensor in hand,
whatever the checkpoint's size: safetensors inputs are read per tensor (safe_open), PyTorch .bin
inputs are memory-mapped (torch.load(mmap=True)) so only the tensor being copied is paged in.
"""
from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from janus_model.convert.formats import CheckpointFormatError, read_json
from janus_model.convert.keys import Target, UnknownWeight, targets

DEFAULT_SHARD_BYTES = 2 * 1024**3
POSITION_EMBEDDING = "model.vision_model.embeddings.position_embedding.weight"

# Checked in this order; the first one present is the checkpoint's weights.
_LAYOUTS = (("model.safetensors.index.json", True), ("model.safetensors", False),
            ("pytorch_model.bin.index.json", True), ("pytorch_model.bin", False))


class OriginalWeights:
    """The tensors of an original checkpoint folder, by name, across its files."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.files = _files_by_key(self.folder)  # tensor name -> file name

    def shapes(self) -> dict[str, tuple]:
        shapes: dict[str, tuple] = {}
        for name, keys in self._by_file().items():
            with _TensorFile(self.folder / name) as reader:
                shapes.update({key: reader.shape(key) for key in keys})
        return shapes

    def tensors(self) -> Iterator[tuple[str, torch.Tensor]]:
        """(name, tensor) for every tensor, one file at a time, each loaded only when reached."""
        for name, keys in self._by_file().items():
            with _TensorFile(self.folder / name) as reader:
                for key in keys:
                    yield key, reader.tensor(key)

    def _by_file(self) -> dict[str, list[str]]:
        grouped: dict[str, list[str]] = {}
        for key, name in self.files.items():
            grouped.setdefault(name, []).append(key)
        return grouped


def converted_shapes(shapes: dict[str, tuple]) -> dict[str, tuple]:
    """The transformers tensors' shapes, from the original ones (nothing is loaded)."""
    out = {}
    for key, shape in shapes.items():
        for target in _targets(key):
            out[target.name] = _target_shape(target, tuple(shape))
    return out


def convert_tensors(weights: OriginalWeights, writer: "ShardWriter") -> int:
    """Every original tensor renamed (q/k/v split, position embedding unbatched) into `writer`."""
    count = 0
    for key, tensor in weights.tensors():
        for target in _targets(key):
            part = tensor.chunk(target.chunks, dim=0)[target.chunk] if target.chunks > 1 else tensor
            if target.name == POSITION_EMBEDDING:
                part = part.squeeze(0)  # timm's pos_embed is [1, patches, width]; an embedding table is 2-D
            writer.add(target.name, part)
            count += 1
        del tensor
    return count


class ShardWriter:
    """Collects tensors into shards of at most `max_bytes` and writes each shard when it is full."""

    def __init__(self, out: str | Path, max_bytes: int = DEFAULT_SHARD_BYTES):
        self.out, self.max_bytes = Path(out), max_bytes
        self.pending: dict[str, torch.Tensor] = {}
        self.pending_bytes = 0
        self.shard_keys: list[list[str]] = []
        self.total_bytes = 0

    def add(self, name: str, tensor: torch.Tensor) -> None:
        size = tensor.numel() * tensor.element_size()
        if self.pending and self.pending_bytes + size > self.max_bytes:
            self._flush()
        # clone: a q/k/v slice shares its matrix's storage, which safetensors refuses to write twice.
        self.pending[name] = tensor.contiguous().clone()
        self.pending_bytes += size

    def close(self) -> None:
        """Writes the last shard, then names them (model.safetensors alone, or shards + index)."""
        if self.pending:
            self._flush()
        count = len(self.shard_keys)
        if count == 1:
            os.replace(self._temporary(0), self.out / "model.safetensors")
            return
        weight_map = {}
        for index, keys in enumerate(self.shard_keys):
            name = f"model-{index + 1:05d}-of-{count:05d}.safetensors"
            os.replace(self._temporary(index), self.out / name)
            weight_map.update(dict.fromkeys(keys, name))
        index = {"metadata": {"total_size": self.total_bytes}, "weight_map": weight_map}
        with open(self.out / "model.safetensors.index.json", "w", encoding="utf-8") as handle:
            json.dump(index, handle, indent=2, sort_keys=True)

    def _flush(self) -> None:
        save_file(self.pending, str(self._temporary(len(self.shard_keys))), metadata={"format": "pt"})
        self.shard_keys.append(list(self.pending))
        self.total_bytes += self.pending_bytes
        self.pending, self.pending_bytes = {}, 0

    def _temporary(self, index: int) -> Path:
        return self.out / f".shard-{index:05d}.safetensors"


def _targets(key: str) -> list[Target]:
    try:
        return targets(key)
    except UnknownWeight as exc:
        raise CheckpointFormatError(str(exc.args[0])) from None


def _target_shape(target: Target, shape: tuple) -> tuple:
    if target.chunks > 1:
        shape = (shape[0] // target.chunks, *shape[1:])
    if target.name == POSITION_EMBEDDING and len(shape) == 3:
        shape = shape[1:]
    return shape


def _files_by_key(folder: Path) -> dict[str, str]:
    for name, is_index in _LAYOUTS:
        path = folder / name
        if not path.is_file():
            continue
        if not is_index:
            with _TensorFile(path) as reader:
                return dict.fromkeys(reader.keys(), name)
        weight_map = read_json(path).get("weight_map")
        if not isinstance(weight_map, dict) or not weight_map:
            raise CheckpointFormatError(f"{path} has no weight_map")
        missing = sorted({file for file in weight_map.values() if not (folder / file).is_file()})
        if missing:
            raise CheckpointFormatError(f"{path} names {missing[0]}, which is not in {folder}")
        return weight_map
    raise CheckpointFormatError(f"{folder} has no weights (model.safetensors, pytorch_model.bin or their "
                                "sharded index)")


class _TensorFile:
    """A uniform reader over one safetensors or PyTorch .bin file: keys, shape(key), tensor(key)."""

    def __init__(self, path: Path):
        self.path = path

    def __enter__(self):
        if self.path.suffix == ".safetensors":
            self._context = safe_open(str(self.path), framework="pt")
            handle = self._context.__enter__()
            self.keys = handle.keys
            self.shape = lambda key: tuple(handle.get_slice(key).get_shape())
            self.tensor = handle.get_tensor
        else:
            self._context = None
            # mmap: tensors stay on disk until copied; weights_only: a checkpoint cannot run code.
            state = torch.load(str(self.path), map_location="cpu", mmap=True, weights_only=True)
            self.keys = state.keys
            self.shape = lambda key: tuple(state[key].shape)
            self.tensor = state.__getitem__
        return self

    def __exit__(self, *exc_info):
        if self._context is not None:
            self._context.__exit__(*exc_info)
        self.keys = self.shape = self.tensor = None
        return False

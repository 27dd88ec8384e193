"""Turn the user-facing device/dtype strings into torch objects."""

import torch

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve_device(device: str = "auto") -> torch.device:
    """auto -> cuda when a GPU is visible, else cpu; cpu, cuda and cuda:N pass through."""
    if device == "auto":
        # Only queried when a model is loaded (never at import) so a worker forks before CUDA starts.
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    resolved = torch.device(device)
    if resolved.type not in ("cpu", "cuda"):
        raise ValueError(f"unsupported device {device!r}: use auto, cpu, cuda or cuda:N")
    return resolved


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    """auto -> bfloat16 on a GPU (what Janus was trained in), float32 on a CPU (bf16 is slow there)."""
    if dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    try:
        return _DTYPES[dtype]
    except KeyError:
        raise ValueError(f"unsupported dtype {dtype!r}: use auto, {', '.join(_DTYPES)}") from None

"""DeepSeek Janus for the job queue: loading, prompt format, the decode loop, a tiny checkpoint.

Importing the package is cheap and has no side effects: the names below are imported on first
use, so `janus_model.budget` (tokenizer only) can be used without pulling in torch.
"""

import importlib

_EXPORTS = {
    "build_tiny_checkpoint": "janus_model.tiny",
    "ensure_tiny_checkpoint": "janus_model.tiny",
    "load_model": "janus_model.loader",
    "JanusModel": "janus_model.model",
    "GenerationStopped": "janus_model.errors",
    "PromptBudget": "janus_model.budget",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'janus_model' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value  # cache: later lookups skip __getattr__
    return value


def __dir__():
    return sorted(list(globals()) + __all__)

"""Exceptions callers catch. Torch-free so that code which never runs the model can import them."""


class GenerationStopped(Exception):
    """The progress callback returned False: the caller asked to abandon this generation."""

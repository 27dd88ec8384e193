"""Shared fixtures: the tiny checkpoint is built once per test session and loaded once."""

import pytest
from PIL import Image

from janus_model import load_model

# `tiny_checkpoint` (built once per session) comes from tests/conftest.py.


@pytest.fixture(scope="session")
def tiny_model(tiny_checkpoint):
    # float32 on the CPU: the only setting where exact token parity with transformers is expected.
    return load_model(str(tiny_checkpoint), device="cpu", dtype="float32")


@pytest.fixture(scope="session")
def photo():
    """A non-square picture with some structure, so the image processor has to resize and pad."""
    image = Image.new("RGB", (320, 200), (30, 120, 200))
    for x in range(0, 320, 40):
        image.paste((250, 200, 20), (x, 0, x + 20, 200))
    return image


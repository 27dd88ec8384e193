"""The package's public surface and its import-time behaviour."""

import subprocess
import sys

import pytest
import torch

import janus_model
from janus_model.devices import resolve_device, resolve_dtype


def test_public_names():
    from janus_model.model import GenerationStopped, JanusModel

    assert janus_model.JanusModel is JanusModel
    assert janus_model.GenerationStopped is GenerationStopped
    assert callable(janus_model.load_model)
    assert callable(janus_model.build_tiny_checkpoint)
    assert callable(janus_model.ensure_tiny_checkpoint)
    with pytest.raises(AttributeError):
        janus_model.no_such_name


def test_importing_the_package_is_light_and_has_no_side_effects():
    code = (
        "import sys, janus_model\n"
        "loaded = [m for m in ('torch', 'transformers', 'flask', 'celery', 'sqlalchemy', 'boto3') if m in sys.modules]\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_model_code_imports_no_service_frameworks():
    code = (
        "import sys, janus_model.loader, janus_model.model, janus_model.tiny, janus_model.budget\n"
        "loaded = [m for m in ('flask', 'celery', 'sqlalchemy', 'boto3') if m in sys.modules]\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_device_resolution():
    expected_auto = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected_auto
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("cuda:1") == torch.device("cuda", 1)
    with pytest.raises(ValueError):
        resolve_device("mps")


def test_dtype_resolution():
    assert resolve_dtype("auto", torch.device("cpu")) == torch.float32
    assert resolve_dtype("auto", torch.device("cuda")) == torch.bfloat16
    assert resolve_dtype("float16", torch.device("cpu")) == torch.float16
    with pytest.raises(ValueError):
        resolve_dtype("int8", torch.device("cpu"))

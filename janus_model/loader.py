"""Load a Janus checkpoint (local folder or hub id) onto a device."""

from transformers import JanusForConditionalGeneration, JanusProcessor

from janus_model.devices import resolve_device, resolve_dtype
from janus_model.engine import EngineOptions
from janus_model.model import JanusModel


def load_model(source: str, device: str = "auto", dtype: str = "auto",
               options: EngineOptions = EngineOptions()) -> JanusModel:
    """source: checkpoint folder or hub id; device: auto|cpu|cuda|cuda:N; dtype: auto|float32|bfloat16|float16."""
    torch_device = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, torch_device)
    # Loaded on the CPU then moved: loading straight onto a GPU (device_map) needs `accelerate`.
    model = JanusForConditionalGeneration.from_pretrained(source, dtype=torch_dtype)
    model = model.to(torch_device).eval()
    processor = JanusProcessor.from_pretrained(source)
    return JanusModel(model, processor, options)

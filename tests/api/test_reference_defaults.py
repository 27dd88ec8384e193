"""Request defaults against DeepSeek's reference procedure, the same for Janus-1.3B and Janus-Pro.

Reference (DeepSeek's generation and demo code): cfg_weight 5, temperature 1 for image tokens;
temperature 0.1, top_p 0.95 for answers. Deliberate differences, documented in README
("Defaults and the reference procedure"): 4 images instead of 16, 256 new tokens instead of 512,
a random stored seed instead of a fixed one.
"""
from api.schemas import GenerateRequest, UnderstandRequest
from janus_model.convert.configs import GUIDANCE_SCALE


def _default(model, name):
    return model.model_fields[name].default


def test_image_generation_samples_like_the_reference():
    assert _default(GenerateRequest, "cfg_weight") == 5.0
    assert _default(GenerateRequest, "temperature") == 1.0
    # Converted checkpoints carry the same guidance default for transformers' own generate().
    assert GUIDANCE_SCALE == _default(GenerateRequest, "cfg_weight")


def test_understanding_samples_like_the_reference():
    assert _default(UnderstandRequest, "temperature") == 0.1
    assert _default(UnderstandRequest, "top_p") == 0.95


def test_the_deliberate_differences_are_the_documented_ones():
    assert _default(GenerateRequest, "num_images") == 4
    assert _default(UnderstandRequest, "max_new_tokens") == 256
    assert _default(GenerateRequest, "seed") is None and _default(UnderstandRequest, "seed") is None

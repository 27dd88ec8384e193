"""VQ codes -> PIL images."""

import torch
from PIL import Image
from transformers import JanusForConditionalGeneration


def codes_to_images(model: JanusForConditionalGeneration, codes: torch.LongTensor) -> list[Image.Image]:
    """Decode [n, 576] codes with the VQ decoder into n RGB images (384x384 for Janus)."""
    pixels = model.decode_image_tokens(codes)  # [n, H, W, 3], roughly in [-1, 1]
    return [Image.fromarray(array) for array in to_uint8(pixels).cpu().numpy()]


def to_uint8(pixels: torch.Tensor) -> torch.Tensor:
    # DeepSeek's reference mapping: (x + 1) / 2 * 255, clipped, then truncated to integers.
    scaled = (pixels.float() + 1) / 2 * 255
    return scaled.clamp(0, 255).to(torch.uint8)


def codes_to_images_in_chunks(model: JanusForConditionalGeneration, codes: torch.LongTensor,
                              chunk: int) -> list[Image.Image]:
    """codes_to_images a few images at a time, bounding the decoder's activation memory."""
    return [image for start in range(0, len(codes), chunk)
            for image in codes_to_images(model, codes[start:start + chunk])]

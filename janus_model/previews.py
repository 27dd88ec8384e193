"""Previews while Janus draws: it makes an image's 576 tokens in raster order, so the rows made so
far are already a picture.

Running the VQ decoder for a preview costs too much: on the CPU with the tiny model one decode of
a batch's partial images took about an eighth of the whole generation, so 8 previews per image
would double it (BENCHMARKS.md, "Previews"). A preview instead colours each of the 24x24 tokens
with its code's colour from a palette, the way ComfyUI's latent2rgb previews do for latents: the
palette is a linear map from each code's embedding to the mean colour of the 16x16 patch it
decodes to, fitted once per model by decoding two random grids. The missing tokens get the
neutral code (the codebook entry nearest the codebook's mean), the 24x24 picture is scaled up to a
small JPEG. One palette lookup serves every image of a batch.
"""

from collections.abc import Callable
from functools import lru_cache
from io import BytesIO

import torch
import torch.nn.functional as F
from PIL import Image

from janus_model.image_decode import to_uint8

# (image index within its job, JPEG bytes) for the images of one job in this batch, and the step.
PreviewCallback = Callable[[list[tuple[int, bytes]], int], None]
PREVIEW_SIZE = 192  # pixels a side: half of Janus's 384, a few kilobytes as a JPEG
JPEG_QUALITY = 70
FIT_GRIDS = 2  # random grids decoded to fit the palette: 1152 patches for a (embedding + 1) x 3 map


def preview_every(image_tokens: int, previews: int) -> int:
    """Tokens between previews for `previews` per image (0: none)."""
    return 0 if previews <= 0 else max(1, -(-image_tokens // (previews + 1)))  # rounded up: no extra one at the end


@lru_cache(maxsize=4)
def palette(model) -> tuple[torch.Tensor, int]:
    """([codes, 3] uint8 colours, the neutral code) of a model, fitted once."""
    vqmodel = model.model.vqmodel
    codebook = vqmodel.quantize.embedding.weight.float()
    side = vqmodel.quantize.quant_state_dims[0]
    generator = torch.Generator().manual_seed(0)
    codes = torch.randint(len(codebook), (FIT_GRIDS, side * side), generator=generator).to(codebook.device)
    pixels = model.decode_image_tokens(codes).float().permute(0, 3, 1, 2)  # [g, 3, H, W] in about [-1, 1]
    patches = F.adaptive_avg_pool2d(pixels, side).permute(0, 2, 3, 1).reshape(-1, 3)  # [g*576, 3]
    with_bias = torch.cat([codebook, torch.ones(len(codebook), 1, device=codebook.device)], dim=1)
    mapping = torch.linalg.lstsq(with_bias[codes.flatten()], patches).solution  # [C+1, 3]
    neutral = int(torch.cdist(codebook.mean(0, keepdim=True), codebook).argmin())
    return to_uint8(with_bias @ mapping).cpu(), neutral


@torch.inference_mode()
def preview_jpegs(model, codes_so_far: torch.LongTensor, total: int) -> list[bytes]:
    """Small JPEGs of n partial images: codes_so_far is [n, done] of `total` tokens each."""
    colours, neutral = palette(model)
    n, done = codes_so_far.shape
    grid = torch.full((n, total), neutral, dtype=torch.long)
    grid[:, :done] = codes_so_far.cpu()
    side = int(total ** 0.5)
    return [_jpeg(Image.fromarray(rgb.numpy())) for rgb in colours[grid].reshape(n, side, side, 3)]


def _jpeg(image: Image.Image) -> bytes:
    buffer = BytesIO()
    image.resize((PREVIEW_SIZE, PREVIEW_SIZE), Image.BILINEAR).save(buffer, format="JPEG", quality=JPEG_QUALITY)
    return buffer.getvalue()

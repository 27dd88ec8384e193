"""Uploaded image checks: formats, corrupt files, and decompression bombs refused from the header."""
from __future__ import annotations

import io
import random
import struct
import zlib

import pytest
from PIL import Image, ImageFile

from api.errors import ApiError
from api.images import ValidatedImage, validate_image

LIMIT = 4096 * 4096


def encode(image: Image.Image, fmt: str, **options) -> bytes:
    out = io.BytesIO()
    image.save(out, format=fmt, **options)
    return out.getvalue()


def noise(size=(64, 48), mode="RGB", seed=0) -> Image.Image:
    """Random pixels: nothing compresses away, so cutting the file loses pixels."""
    width, height = size
    channels = len(mode)
    data = random.Random(seed).randbytes(width * height * channels)
    return Image.frombytes(mode, size, data)


def decode(result: ValidatedImage) -> Image.Image:
    image = Image.open(io.BytesIO(result.png_bytes))
    assert image.format == "PNG"
    image.load()
    return image


def error_of(data: bytes, max_pixels: int = LIMIT) -> ApiError:
    with pytest.raises(ApiError) as info:
        validate_image(data, max_pixels)
    return info.value


def assert_error(err: ApiError, status: int, code: str) -> None:
    assert (err.status, err.code, err.field) == (status, code, "image"), repr(err)


def png_with_header_size(width: int, height: int) -> bytes:
    """A tiny PNG whose IHDR claims width x height (CRC fixed up): a decompression bomb's header."""
    data = bytearray(encode(Image.new("1", (1, 1)), "PNG"))
    assert data[12:16] == b"IHDR"
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


@pytest.fixture
def forbid_decoding(monkeypatch):
    """Call it once the test data is made: from then on, decoding pixels fails the test."""

    def refuse(self, *args, **kwargs):
        raise AssertionError("pixels were decoded")

    def forbid():
        monkeypatch.setattr(ImageFile.ImageFile, "load", refuse)
        monkeypatch.setattr(Image.Image, "load", refuse)

    return forbid


# --- accepted ------------------------------------------------------------------------


def test_png_round_trips_exactly():
    original = noise()
    result = validate_image(encode(original, "PNG"), LIMIT)
    assert (result.width, result.height, result.format) == (64, 48, "png")
    decoded = decode(result)
    assert decoded.mode == "RGB" and decoded.size == (64, 48)
    assert decoded.tobytes() == original.tobytes()


@pytest.mark.parametrize(
    "fmt, name, options",
    [
        ("JPEG", "jpeg", {"quality": 90}),
        ("WEBP", "webp", {}),
        ("BMP", "bmp", {}),
        ("GIF", "gif", {}),
    ],
)
def test_other_accepted_formats_become_rgb_png(fmt, name, options):
    result = validate_image(encode(Image.new("RGB", (40, 30), (200, 30, 30)), fmt, **options), LIMIT)
    assert (result.width, result.height, result.format) == (40, 30, name)
    decoded = decode(result)
    assert decoded.mode == "RGB"
    red, green, blue = decoded.getpixel((20, 15))
    assert red > 150 and green < 80 and blue < 80


@pytest.mark.parametrize("mode", ["L", "1", "P", "CMYK", "I;16"])
def test_other_modes_become_rgb(mode):
    fmt = "JPEG" if mode == "CMYK" else "PNG"
    result = validate_image(encode(Image.new(mode, (10, 10)), fmt), LIMIT)
    assert decode(result).mode == "RGB"


def test_transparency_is_laid_on_white():
    image = Image.new("RGBA", (8, 8), (0, 0, 0, 0))
    assert decode(validate_image(encode(image, "PNG"), LIMIT)).getpixel((4, 4)) == (255, 255, 255)


def test_gif_uses_the_first_frame():
    frames = [Image.new("RGB", (16, 16), color) for color in ((255, 0, 0), (0, 0, 255))]
    out = io.BytesIO()
    frames[0].save(out, format="GIF", save_all=True, append_images=frames[1:], duration=100)
    result = validate_image(out.getvalue(), LIMIT)
    assert result.format == "gif"
    red, _, blue = decode(result).getpixel((8, 8))
    assert red > 200 and blue < 50


def test_exif_rotation_is_applied():
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to display
    data = encode(Image.new("RGB", (40, 20)), "JPEG", exif=exif.tobytes())
    result = validate_image(data, LIMIT)
    assert (result.width, result.height) == (20, 40)


def test_pixel_limit_is_inclusive():
    data = encode(Image.new("RGB", (100, 50)), "PNG")
    assert validate_image(data, 5000).width == 100
    assert_error(error_of(data, 4999), 422, "image_too_large")


# --- refused -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"hello, this is plain text and not an image at all",
        b'{"type": "generate"}',
        b"\x89PNG\r\n\x1a\n",  # a signature and nothing else
        b"GIF89a",
        bytes(range(256)) * 4,
    ],
)
def test_not_an_image_is_invalid(data):
    assert_error(error_of(data), 422, "invalid_image")


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP", "GIF", "BMP"])
def test_truncated_file_is_invalid(fmt):
    data = encode(noise((128, 96)), fmt)
    assert_error(error_of(data[: len(data) * 2 // 3]), 422, "invalid_image")


def test_corrupt_png_data_is_invalid():
    data = bytearray(encode(noise(), "PNG"))
    start = data.index(b"IDAT") + 4
    data[start + 10 : start + 60] = b"\x00" * 50
    assert_error(error_of(bytes(data)), 422, "invalid_image")


@pytest.mark.parametrize("fmt", ["TIFF", "ICO", "PPM", "TGA"])
def test_real_but_unsupported_format_is_415(fmt):
    err = error_of(encode(Image.new("RGB", (16, 16), "blue"), fmt))
    assert_error(err, 415, "unsupported_image_format")


def test_truncated_images_must_not_be_loaded_leniently(monkeypatch):
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    with pytest.raises(RuntimeError, match="LOAD_TRUNCATED_IMAGES"):
        validate_image(encode(noise(), "PNG"), LIMIT)


# --- decompression bombs -------------------------------------------------------------


def test_bomb_header_is_refused_without_decoding(forbid_decoding):
    data = png_with_header_size(50_000, 50_000)
    assert len(data) < 100
    forbid_decoding()
    assert_error(error_of(data), 422, "image_too_large")


def test_large_real_image_is_refused_from_its_header(forbid_decoding):
    # A genuine 25 M pixel image that compresses to a few KB.
    data = encode(Image.new("1", (5000, 5000)), "PNG")
    assert len(data) < 50_000
    forbid_decoding()
    err = error_of(data)
    assert_error(err, 422, "image_too_large")
    assert "5000x5000" in err.message


def test_size_under_our_limit_but_over_pillows_is_not_a_500():
    # Pillow's own guard (2 x Image.MAX_IMAGE_PIXELS) fires inside Image.open.
    claimed = 20_000 * 20_000
    assert claimed > 2 * Image.MAX_IMAGE_PIXELS
    assert_error(error_of(png_with_header_size(20_000, 20_000), max_pixels=claimed), 422, "image_too_large")


@pytest.mark.filterwarnings("error::PIL.Image.DecompressionBombWarning")
def test_pillow_bomb_warning_as_error_is_not_a_500():
    side = 10_000  # 100 M pixels: over Image.MAX_IMAGE_PIXELS, under twice it
    assert Image.MAX_IMAGE_PIXELS < side * side <= 2 * Image.MAX_IMAGE_PIXELS
    assert_error(error_of(png_with_header_size(side, side), max_pixels=10**9), 422, "image_too_large")


def test_pillow_global_limit_is_left_alone():
    import api.images  # noqa: F401  (importing must not change it either)

    before = Image.MAX_IMAGE_PIXELS
    with pytest.raises(ApiError):
        validate_image(png_with_header_size(50_000, 50_000), LIMIT)
    assert Image.MAX_IMAGE_PIXELS == before == int(1024 * 1024 * 1024 // 4 // 3)
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False

"""Check an uploaded image and re-encode it as an RGB PNG, refusing bombs before decoding.

Pillow's Image.open reads only the header, so the pixel count is known, and checked against
our limit, before any pixel memory is allocated; load() then decodes the first frame fully,
which is what catches truncated files.

Pillow keeps its own guard, Image.MAX_IMAGE_PIXELS (about 89.5 M pixels: a warning above it,
DecompressionBombError above twice that), as a process-wide global. We leave that global alone
(changing it per call would race between request threads) and turn both of its signals into
our own image_too_large. The consequence: a `max_image_pixels` setting above Pillow's limit is
effectively capped at about twice Pillow's limit.
"""
from __future__ import annotations

import io
from dataclasses import dataclass

from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from api.errors import ApiError

FIELD = "image"

# Pillow format name -> the name we report. MPO is how Pillow identifies many camera and
# phone JPEGs (a JPEG with extra preview frames); it is a JPEG to the client.
ACCEPTED_FORMATS: dict[str, str] = {
    "PNG": "png",
    "JPEG": "jpeg",
    "MPO": "jpeg",
    "WEBP": "webp",
    "BMP": "bmp",
    "GIF": "gif",
}
# What Image.open may try for an upload. MPO is reached through the JPEG opener.
_OPEN_FORMATS = ("PNG", "JPEG", "WEBP", "BMP", "GIF")
_PNG_COMPRESS_LEVEL = 1  # re-encoding is on the request path; speed over a few % of size


@dataclass(frozen=True)
class ValidatedImage:
    png_bytes: bytes  # the first frame, RGB, as PNG
    width: int
    height: int
    format: str  # the upload's format: png, jpeg, webp, bmp or gif


def validate_image(data: bytes, max_pixels: int) -> ValidatedImage:
    """Check `data` is an accepted image of at most `max_pixels` pixels; raise ApiError if not.

    415 unsupported_image_format: a real image in another format (TIFF, ICO, ...).
    422 invalid_image: not an image, or truncated/corrupt.
    422 image_too_large: width*height over max_pixels, refused from the header alone.
    """
    if ImageFile.LOAD_TRUNCATED_IMAGES:
        # With it set, load() pads truncated files silently and they would pass as valid.
        raise RuntimeError("PIL.ImageFile.LOAD_TRUNCATED_IMAGES must stay False in the API")
    if not data:
        raise _invalid("image is empty")

    image = _open(data, max_pixels)
    try:
        width, height = image.size
        if width * height > max_pixels:
            raise _too_large(width, height, max_pixels)
        fmt = ACCEPTED_FORMATS[image.format or ""]
        rgb = _decode_first_frame(image)
        out = io.BytesIO()
        rgb.save(out, format="PNG", compress_level=_PNG_COMPRESS_LEVEL)
        return ValidatedImage(out.getvalue(), rgb.width, rgb.height, fmt)
    finally:
        image.close()  # rgb may be `image` itself, so only after saving


def _open(data: bytes, max_pixels: int) -> ImageFile.ImageFile:
    """Image.open limited to the accepted formats; reads the header, decodes no pixels."""
    try:
        return Image.open(io.BytesIO(data), formats=_OPEN_FORMATS)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        # The warning arrives as an exception only where warnings are errors (tests, -W error).
        raise ApiError(
            422,
            "image_too_large",
            f"image has too many pixels; the limit is {max_pixels}",
            FIELD,
        ) from None
    except UnidentifiedImageError:
        pass
    except Exception:  # a header the plugin could not parse: OSError, ValueError, ...
        raise _invalid("image is corrupt or truncated") from None
    if _is_other_image_format(data):
        raise ApiError(
            415,
            "unsupported_image_format",
            "image format is not supported; send PNG, JPEG, WEBP, BMP or GIF",
            FIELD,
        )
    raise _invalid("data is not an image")


def _is_other_image_format(data: bytes) -> bool:
    """Whether Pillow recognises `data` as some image it can open, only to pick 415 over 422."""
    try:
        with Image.open(io.BytesIO(data)):
            return True
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        return True
    except Exception:
        return False


def _decode_first_frame(image: ImageFile.ImageFile) -> Image.Image:
    try:
        image.seek(0)
        image.load()
        try:
            # Phone photos store rotation in EXIF; the model should see them upright.
            ImageOps.exif_transpose(image, in_place=True)
        except Exception:
            pass  # unreadable EXIF is not worth refusing the picture for
        return _to_rgb(image)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        # GIF frames may grow the canvas while decoding; Pillow checks that size itself.
        raise ApiError(422, "image_too_large", "image has too many pixels", FIELD) from None
    except Exception:  # OSError "image file is truncated", decoder errors, struct.error, ...
        raise _invalid("image is corrupt or truncated") from None


def _to_rgb(image: Image.Image) -> Image.Image:
    """RGB, with transparent areas laid on white rather than on whatever color they hide."""
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if image.mode == "RGB":
        return image
    return image.convert("RGB")


def _invalid(message: str) -> ApiError:
    return ApiError(422, "invalid_image", message, FIELD)


def _too_large(width: int, height: int, max_pixels: int) -> ApiError:
    return ApiError(
        422,
        "image_too_large",
        f"image is {width}x{height} = {width * height} pixels; the limit is {max_pixels}",
        FIELD,
    )

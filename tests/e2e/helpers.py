from __future__ import annotations

import base64
import io

import requests
from PIL import Image


def png_bytes(size=(64, 48), color=(200, 30, 30)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format="PNG")
    return buffer.getvalue()


def data_url(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def fetch_image(url: str) -> Image.Image:
    """Follows the 307 to a presigned URL when storage is S3."""
    response = requests.get(url, timeout=30)
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("image/png")
    image = Image.open(io.BytesIO(response.content))
    image.load()
    return image

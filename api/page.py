"""The web page: `/` and its files under `/static/`, shipped inside the package (api/web).

Plain HTML, CSS and JavaScript modules, no build step and nothing fetched from elsewhere. The
page itself holds no data, so it needs no key; it calls the /v1 API with the key the user
typed (kept in the browser's localStorage), like any other client. Only the files named in
STATIC_TYPES are served (by suffix), each with its content type stated here rather than guessed from the
machine's mime.types (a module script with a wrong type is refused by the browser); Flask
adds the charset.
"""
from __future__ import annotations

from pathlib import Path

from flask import Blueprint, send_from_directory

from api.errors import ApiError

# Not api/static: Flask(__name__) would serve that folder itself, beside this blueprint.
STATIC_DIR = Path(__file__).parent / "web"
STATIC_TYPES = {".js": "text/javascript", ".css": "text/css"}

page = Blueprint("page", __name__)


@page.get("/")
def index():
    return _send("index.html", "text/html")


@page.get("/static/<name>")
def static_file(name: str):
    mimetype = STATIC_TYPES.get(Path(name).suffix)
    if mimetype is None or not (STATIC_DIR / name).is_file():
        raise ApiError.of("not_found", f"no file {name}")
    return _send(name, mimetype)


def _send(name: str, mimetype: str):
    response = send_from_directory(STATIC_DIR, name, mimetype=mimetype)
    # Revalidate each time (ETag): a new release's page never runs with an old module.
    response.cache_control.no_cache = True
    return response

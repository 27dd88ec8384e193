"""The ceiling for `janusq bench --api`: Flask with one trivial JSON route and nothing else.

Served by gunicorn with the argv `janusq serve` uses, so whatever the API answers slower than
this is the API's own cost (auth, validation, database, broker), not Flask's or gunicorn's.
"""
from __future__ import annotations

from flask import Flask, jsonify

BARE_APP = "janusq.bare_flask:create_app()"
BARE_PATH = "/bare"


def create_app() -> Flask:
    app = Flask(__name__)

    @app.get(BARE_PATH)
    def bare():
        return jsonify({"status": "ok"})

    return app

"""Liveness, readiness, Prometheus metrics and the OpenAPI document."""
from __future__ import annotations

from flask import Blueprint, Response, jsonify
from sqlalchemy import text

from api.metrics import render_metrics
from api.openapi import build_openapi
from api.services import services
from jobs.oneline import first_line

health = Blueprint("health", __name__)


@health.get("/healthz")
def healthz():
    return jsonify({"status": "ok"})


@health.get("/readyz")
def readyz():
    svc = services()
    checks = {
        "database": _probe(lambda: _ping_database(svc)),
        "broker": _probe(svc.publisher.check),
        "storage": _probe(lambda: svc.storage.check()),
        # What the API needs of the model to accept jobs: its tokenizer and config (prompt limits).
        "model": _probe(lambda: svc.prompt_budget),
    }
    down = [name for name, state in checks.items() if state != "ok"]
    if not down:
        return jsonify({"status": "ready", "checks": checks})
    body = {"status": "unavailable", "checks": checks,
            "error": {"code": "unavailable", "message": f"unavailable: {', '.join(down)}", "field": None}}
    return jsonify(body), 503


def _ping_database(svc) -> None:
    with svc.db.session() as session:
        session.execute(text("SELECT 1"))


def _probe(check) -> str:
    try:
        check()
    except Exception as exc:  # noqa: BLE001 - any failure means "down"; say why
        return f"down: {first_line(exc, 200)}"
    return "ok"


@health.get("/metrics")
def metrics():
    return Response(render_metrics(services().db), mimetype="text/plain; version=0.0.4")


@health.get("/openapi.json")
def openapi():
    return jsonify(build_openapi(services().settings.max_prompt_chars))

"""GET /v1/workers: the workers' heartbeat rows, for operators (admin API keys) only."""
from __future__ import annotations

from flask import Blueprint, jsonify

from api.auth import authenticate, require_admin
from api.services import services
from jobs.models import utcnow
from jobs.workers import list_workers, worker_to_dict

workers_api = Blueprint("workers_api", __name__)
workers_api.before_request(authenticate)
workers_api.before_request(require_admin)


@workers_api.get("/v1/workers")
def get_workers():
    with services().db.session() as session:
        workers = list_workers(session)
    now = utcnow()
    return jsonify({"data": [worker_to_dict(worker, now) for worker in workers]})

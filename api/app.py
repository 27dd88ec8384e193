"""Flask app factory: `create_app(settings)`; gunicorn runs `api.app:create_app()`."""
from __future__ import annotations

import logging

from flask import Flask, jsonify
from sqlalchemy.exc import OperationalError, DBAPIError
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from api.errors import ApiError
from api.services import Services
from jobs.settings import Settings, load_settings
from jobs.storage import StorageError

log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None, warm: bool = False, **overrides) -> Flask:
    """`warm`: read the model's tokenizer (the prompt check's) now rather than on the first submit."""
    settings = settings or load_settings(**overrides)
    app = Flask(__name__)
    # Flask refuses bigger bodies before reading them: the 413 costs no memory.
    app.config["MAX_CONTENT_LENGTH"] = settings.max_upload_bytes
    app.config["MAX_FORM_MEMORY_SIZE"] = settings.max_upload_bytes
    app.json.sort_keys = False
    app.extensions["janus"] = Services(settings)
    _register_blueprints(app)
    _register_error_handlers(app)
    if warm:
        _warm(app.extensions["janus"])
    return app


def _warm(services: Services) -> None:
    try:
        services.prompt_budget  # noqa: B018 - a property that loads and keeps the tokenizer
    except ApiError as error:  # kept for 10 s and retried; /readyz reports it meanwhile
        log.warning("the model's tokenizer is not readable yet: %s", error.message)


def _register_blueprints(app: Flask) -> None:
    from api.events import events_api
    from api.health import health
    from api.openai_compat import openai_api
    from api.page import page
    from api.routes import jobs_api
    from api.workers import workers_api

    app.register_blueprint(jobs_api)
    app.register_blueprint(events_api)
    app.register_blueprint(workers_api)
    app.register_blueprint(health)
    app.register_blueprint(openai_api)  # /v1/images/generations, /v1/chat/completions
    app.register_blueprint(page)  # the web page at / (api/page.py)


def error_response(error: ApiError, headers: dict | None = None):
    response = jsonify(error.to_response_body())
    response.status_code = error.status
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def _register_error_handlers(app: Flask) -> None:
    @app.errorhandler(ApiError)
    def _api_error(error: ApiError):
        return error_response(error, error.headers)

    @app.errorhandler(RequestEntityTooLarge)
    def _too_large(_error):
        limit = app.config["MAX_CONTENT_LENGTH"]
        return error_response(ApiError.of("payload_too_large", f"request body is over {limit} bytes"))

    @app.errorhandler(HTTPException)
    def _http_error(error: HTTPException):
        code = {404: "not_found", 405: "method_not_allowed"}.get(error.code, "bad_request")
        # Keep werkzeug's headers that matter to clients (Allow on a 405).
        headers = {name: value for name, value in error.get_headers() if name.lower() == "allow"}
        return error_response(ApiError(error.code or 400, code, error.description or error.name), headers)

    @app.errorhandler(StorageError)
    def _storage_down(error):
        log.warning("storage unavailable: %s", error)
        return error_response(ApiError.of("unavailable", "object storage is unavailable", "storage"))

    @app.errorhandler(OperationalError)
    @app.errorhandler(DBAPIError)
    def _database_down(error):
        log.warning("database unavailable: %s", error)
        return error_response(ApiError.of("unavailable", "the database is unavailable", "database"))

    @app.errorhandler(Exception)
    def _unexpected(error):
        # A bug, not bad input: log it, answer JSON without a traceback.
        log.exception("unhandled error")
        return error_response(ApiError(500, "internal_error", "internal error; it has been logged"))

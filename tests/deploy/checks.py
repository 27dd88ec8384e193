"""Checks of rendered manifests against the code they deploy. Each returns its problems ([] = fine).

They are functions of the manifests so that test_checks_fail.py can break a copy of the
manifests on purpose and see each check catch it.
"""
from __future__ import annotations

import contextlib
import io
import os
import tomllib
from unittest import mock
from urllib.parse import urlparse

from sqlalchemy.engine import make_url

from jobs.settings import Settings, SettingsError, load_settings
from tests.deploy.manifests import ROOT, Container, Dockerfile, Manifests, labels_match, secret_values

ENV_PREFIX = Settings.model_config["env_prefix"]
# Variables of other libraries the pods may set (boto3, huggingface_hub); anything else that is
# not a JANUS_ setting is most likely a misspelt one.
THIRD_PARTY_ENV = frozenset({"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
                             "AWS_DEFAULT_REGION", "HF_HOME", "HF_TOKEN"})
API, WORKER, MIGRATE = ("Deployment", "janusq-api"), ("Deployment", "janusq-worker"), ("Job", "janusq-migrate")
ROLES = {API: "serve", WORKER: "worker", MIGRATE: "migrate"}
LIVENESS_PATH, READINESS_PATH = "/healthz", "/readyz"
# Time a job stopped by the soft limit needs to record its failure, and the process to exit.
SHUTDOWN_MARGIN_SECONDS = 60
GPU = "nvidia.com/gpu"


def settings_of(manifests: Manifests, container: Container) -> Settings:
    """The Settings the container's process builds: its environment and nothing else."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(ENV_PREFIX)}
    env.update(Dockerfile().env)
    env.update(manifests.environment(container))
    with mock.patch.dict(os.environ, env, clear=True):
        return load_settings()


def env_name_problems(m: Manifests) -> list[str]:
    problems = []
    for container in m.containers():
        for name in m.environment(container):
            field = name.removeprefix(ENV_PREFIX).lower()
            if name.startswith(ENV_PREFIX) and field not in Settings.model_fields:
                problems.append(f"{container.label}: {name} is not a field of jobs.settings.Settings")
            elif not name.startswith(ENV_PREFIX) and name not in THIRD_PARTY_ENV:
                problems.append(f"{container.label}: {name} is neither a JANUS_ setting nor a known variable")
    return problems


def settings_problems(m: Manifests) -> list[str]:
    problems = []
    for container in m.containers():
        try:
            settings = settings_of(m, container)
        except SettingsError as error:
            problems.append(f"{container.label}: {error}")
            continue
        if not settings.database.startswith("postgresql"):
            problems.append(f"{container.label}: JANUS_DATABASE_URL is not PostgreSQL: pods share no SQLite file")
        if not settings.broker.startswith(("redis://", "rediss://")):
            problems.append(f"{container.label}: JANUS_BROKER_URL is not Redis")
        if not settings.storage.startswith("s3://"):
            problems.append(f"{container.label}: JANUS_STORAGE_URL is not S3: pods share no local folder")
    return problems


def api_problems(m: Manifests) -> list[str]:
    container = m.container(*API)
    settings = settings_of(m, container)
    problems = []
    if not settings.auth_enabled:
        problems.append("api: JANUS_AUTH leaves /v1 open on a cluster network")
    if settings.api_worker_class != "gevent":  # the page, CLI and SDK each hold event streams open
        problems.append(f"api: JANUS_API_WORKER_CLASS {settings.api_worker_class} holds only "
                        f"{settings.waiting_capacity} event streams per process; use gevent")
    ports = {port.get("name"): port["containerPort"] for port in container.spec.get("ports", [])}
    if settings.port not in ports.values():
        problems.append(f"api: JANUS_PORT {settings.port} is not a containerPort {sorted(ports.values())}")
    if settings.port not in Dockerfile().exposed_ports:
        problems.append(f"api: JANUS_PORT {settings.port} is not EXPOSEd by the Dockerfile")
    return problems + _probe_problems(container, settings, ports)


def _probe_problems(container: Container, settings: Settings, ports: dict) -> list[str]:
    from api.app import create_app

    app = create_app(settings)  # connects to nothing until a route needs it
    routes = {rule.rule for rule in app.url_map.iter_rules() if "GET" in rule.methods}
    expected = {"livenessProbe": LIVENESS_PATH, "readinessProbe": READINESS_PATH, "startupProbe": None}
    problems = []
    for probe_name, path in expected.items():
        probe = container.spec.get(probe_name, {}).get("httpGet")
        if probe is None:
            problems.append(f"api: no HTTP {probe_name}")
            continue
        if path is not None and probe["path"] != path:
            problems.append(f"api: {probe_name} asks {probe['path']}, not {path}")
        if probe["path"] not in routes:
            problems.append(f"api: {probe_name} path {probe['path']} is not a GET route of the Flask app")
        port = ports.get(probe["port"], probe["port"])
        if port != settings.port:
            problems.append(f"api: {probe_name} port {probe['port']} is not JANUS_PORT {settings.port}")
    # Liveness must not depend on the database or Redis: it answers here with neither reachable.
    status = app.test_client().get(LIVENESS_PATH).status_code
    if status != 200:
        problems.append(f"api: {LIVENESS_PATH} answered {status} without its dependencies")
    return problems


def grace_problems(m: Manifests) -> list[str]:
    from janusq.processes import gunicorn_argv

    problems = []
    worker = m.container(*WORKER)
    soft = settings_of(m, worker).job_soft_time_limit
    grace = worker.pod.get("terminationGracePeriodSeconds", 30)
    if grace < soft + SHUTDOWN_MARGIN_SECONDS:
        problems.append(f"worker: terminationGracePeriodSeconds {grace} is not above "
                        f"JANUS_JOB_SOFT_TIME_LIMIT {soft} + {SHUTDOWN_MARGIN_SECONDS} s: a draining "
                        "worker would be killed mid-batch")
    if "preStop" in worker.spec.get("lifecycle", {}):
        problems.append("worker: a preStop hook spends the grace period before Celery hears SIGTERM")
    api = m.container(*API)
    argv = gunicorn_argv(settings_of(m, api))
    graceful = int(argv[argv.index("--graceful-timeout") + 1])
    api_grace = api.pod.get("terminationGracePeriodSeconds", 30)
    if api_grace <= graceful:
        problems.append(f"api: terminationGracePeriodSeconds {api_grace} is not above gunicorn's "
                        f"--graceful-timeout {graceful}")
    return problems


def command_problems(m: Manifests) -> list[str]:
    """Each role runs `janusq <role>` as PID 1, in a form the image and the CLI accept."""
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    problems = []
    for key, role in ROLES.items():
        container = m.container(*key)
        command = list(container.spec.get("command", [])) + list(container.spec.get("args", []))
        if not command or command[0] not in scripts:
            problems.append(f"{container.label}: {command} does not start with a console script "
                            f"the image installs ({sorted(scripts)}); a shell would swallow SIGTERM")
            continue
        if command[1:2] != [role]:
            problems.append(f"{container.label}: runs {command[1:2]}, not {role!r}")
        error = _cli_error(command[1:])
        if error:
            problems.append(f"{container.label}: `{' '.join(command)}` is refused by the CLI: {error}")
    return problems


def _cli_error(argv: list[str]) -> str | None:
    from janusq.cli import _parser

    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr):
            _parser().parse_args(argv)
    except SystemExit:
        return stderr.getvalue().strip().splitlines()[-1] if stderr.getvalue() else "exit"
    return None


def image_problems(m: Manifests, expected_image: str | None = None) -> list[str]:
    """One image for every role (the Dockerfile's); it runs as its own user, data on volumes."""
    dockerfile = Dockerfile()
    images = {c.spec["image"] for c in m.containers()}
    problems = [] if len(images) == 1 else [f"containers run different images: {sorted(images)}"]
    if expected_image and images != {expected_image}:
        problems.append(f"images {sorted(images)} are not {expected_image}")
    for container in m.containers():
        uid = container.pod.get("securityContext", {}).get("runAsUser")
        if uid != dockerfile.uid:
            problems.append(f"{container.label}: runAsUser {uid} is not the image's user {dockerfile.uid}")
        env = {**dockerfile.env, **m.environment(container)}
        mounts = {mount["mountPath"] for mount in container.spec.get("volumeMounts", [])}
        for name in ("JANUS_DATA_DIR", "HF_HOME"):
            if container.workload["kind"] != "Job" and env.get(name) not in mounts:
                problems.append(f"{container.label}: {name}={env.get(name)} is not on a volume {sorted(mounts)}")
    return problems


def gpu_problems(m: Manifests) -> list[str]:
    problems = []
    worker = m.container(*WORKER)
    gpus = worker.spec.get("resources", {}).get("limits", {}).get(GPU)
    if str(gpus) != "1":
        problems.append(f"worker: limits {GPU} is {gpus!r}, not 1 (one worker process per pod, one GPU each)")
    if "--gpus" in worker.spec.get("command", []) + worker.spec.get("args", []):
        problems.append("worker: --gpus starts one process per GPU; a pod has one GPU, so one plain worker")
    if settings_of(m, worker).device != "cuda":
        problems.append("worker: JANUS_DEVICE is not cuda: a GPU pod would fall back to the CPU")
    if "replicas" in m.get(*WORKER)["spec"]:
        problems.append("worker: spec.replicas is set; KEDA owns it and each apply would reset it")
    for container in m.containers():
        resources = container.spec.get("resources", {})
        holds_gpu = GPU in resources.get("limits", {}) or GPU in resources.get("requests", {})
        if holds_gpu and container.spec is not worker.spec:
            problems.append(f"{container.label}: holds a GPU it does not use")
    return problems


def reference_problems(m: Manifests) -> list[str]:
    """Names and selectors that must point at something, which a schema cannot see."""
    problems = []
    pod_labels = {w["metadata"]["name"]: w["spec"]["template"]["metadata"].get("labels", {}) for w in m.workloads()}
    for workload in m.workloads():
        selector = workload["spec"].get("selector", {}).get("matchLabels")
        if selector is not None and not labels_match(selector, pod_labels[workload["metadata"]["name"]]):
            problems.append(f"{workload['kind']}/{workload['metadata']['name']}: selector does not match its pods")
    for container in m.containers():
        try:
            m.environment(container)
        except LookupError as error:
            problems.append(f"{container.label}: {error}")
    for kind in ("Service", "PodDisruptionBudget"):
        for resource in m.of_kind(kind):
            selector = resource["spec"]["selector"]
            selector = selector.get("matchLabels", selector) if kind == "PodDisruptionBudget" else selector
            if not any(labels_match(selector, labels) for labels in pod_labels.values()):
                problems.append(f"{kind}/{resource['metadata']['name']}: selects no pods")
    return problems + _service_port_problems(m) + _keda_reference_problems(m)


def _service_port_problems(m: Manifests) -> list[str]:
    problems = []
    api = m.container(*API)
    names = {port.get("name") for port in api.spec.get("ports", [])}
    numbers = {port["containerPort"] for port in api.spec.get("ports", [])}
    for port in m.get("Service", API[1])["spec"]["ports"]:
        target = port.get("targetPort", port["port"])
        if target not in names and target not in numbers:
            problems.append(f"Service/{API[1]}: targetPort {target} is no port of the api container")
    return problems


def _keda_reference_problems(m: Manifests) -> list[str]:
    problems = []
    for scaled in m.of_kind("ScaledObject"):
        target = scaled["spec"]["scaleTargetRef"]
        if m.find(target.get("kind", "Deployment"), target["name"]) is None:
            problems.append(f"ScaledObject/{scaled['metadata']['name']}: scales {target['name']}, which does not exist")
        for trigger in scaled["spec"]["triggers"]:
            ref = trigger.get("authenticationRef")
            if ref and m.find(ref.get("kind", "TriggerAuthentication"), ref["name"]) is None:
                problems.append(f"ScaledObject/{scaled['metadata']['name']}: no TriggerAuthentication {ref['name']}")
    for auth in m.of_kind("TriggerAuthentication"):
        for ref in auth["spec"].get("secretTargetRef", []):
            secret = m.find("Secret", ref["name"])
            if secret is None or ref["key"] not in secret_values(secret):
                problems.append(f"TriggerAuthentication/{auth['metadata']['name']}: no key {ref['key']} "
                                f"in Secret {ref['name']}")
    return problems


def keda_problems(m: Manifests) -> list[str]:
    """Scales the worker Deployment from 0, and KEDA reads the database the workers use."""
    scaled = m.get("ScaledObject", WORKER[1])
    spec = scaled["spec"]
    problems = []
    if spec.get("minReplicaCount", 0) != 0:
        problems.append(f"ScaledObject: minReplicaCount {spec.get('minReplicaCount')} (scale-to-zero needs 0)")
    if spec.get("maxReplicaCount", 100) < 1:
        problems.append("ScaledObject: maxReplicaCount below 1")
    triggers = [t for t in spec["triggers"] if t["type"] == "postgresql"]
    if len(triggers) != 1:
        return problems + ["ScaledObject: needs one postgresql trigger (the jobs table, not the Redis list)"]
    keda_url = _trigger_connection(m, triggers[0])
    workers_url = make_url(settings_of(m, m.container(*WORKER)).database)
    if keda_url is None:
        return problems + ["ScaledObject: its postgresql trigger has no connection from a Secret"]
    parsed = urlparse(keda_url)
    if parsed.scheme not in ("postgres", "postgresql"):
        problems.append(f"KEDA connection scheme {parsed.scheme!r}: KEDA needs postgresql://, not SQLAlchemy's form")
    theirs = (parsed.username, parsed.hostname, parsed.port or 5432, parsed.path.lstrip("/"))
    ours = (workers_url.username, workers_url.host, workers_url.port or 5432, workers_url.database)
    if theirs != ours:
        problems.append(f"KEDA counts jobs in {theirs}, the workers use {ours}")
    return problems


def _trigger_connection(m: Manifests, trigger: dict) -> str | None:
    ref = trigger.get("authenticationRef")
    auth = m.find("TriggerAuthentication", ref["name"]) if ref else None
    for target in (auth or {}).get("spec", {}).get("secretTargetRef", []):
        secret = m.find("Secret", target["name"])
        if target["parameter"] == "connection" and secret is not None:
            return secret_values(secret).get(target["key"])
    return None


def query_of(m: Manifests) -> str:
    scaled = m.get("ScaledObject", WORKER[1])
    return next(t["metadata"]["query"] for t in scaled["spec"]["triggers"] if t["type"] == "postgresql")


ALL_CHECKS = (env_name_problems, settings_problems, api_problems, grace_problems, command_problems,
              gpu_problems, reference_problems, keda_problems)

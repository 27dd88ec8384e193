"""Each check catches the mistake it is for: break a copy of the base on purpose, see it fail."""
from __future__ import annotations

import copy

import pytest

from tests.deploy import checks, schemas
from tests.deploy.kustomize import render
from tests.deploy.manifests import BASE, Manifests

BASE_RESOURCES = render(BASE)


def find(resources, kind, name):
    return next(r for r in resources if r["kind"] == kind and r["metadata"]["name"] == name)


def pod(resources, key):
    return find(resources, *key)["spec"]["template"]["spec"]


def container(resources, key):
    return pod(resources, key)["containers"][0]


def config(resources):
    return find(resources, "ConfigMap", "janusq-config")["data"]


def secret(resources, name="janusq-secrets"):
    return find(resources, "Secret", name)["stringData"]


def probe(resources, name):
    return container(resources, checks.API)[name]["httpGet"]


def scaled(resources):
    return find(resources, "ScaledObject", "janusq-worker")["spec"]


# (what goes wrong, how, the check that must catch it, words of its message)
MISTAKES = [
    ("an env name Settings lacks", lambda r: config(r).update(JANUS_MODLE="x"),
     checks.env_name_problems, "JANUS_MODLE is not a field"),
    ("a misspelt prefix", lambda r: config(r).update(JANUSQ_MODEL="x"),
     checks.env_name_problems, "neither a JANUS_ setting"),
    ("a bad setting value", lambda r: config(r).update(JANUS_DEVICE="tpu"),
     checks.settings_problems, "JANUS_DEVICE"),
    ("soft limit above the hard limit", lambda r: config(r).update(JANUS_JOB_SOFT_TIME_LIMIT="2000"),
     checks.settings_problems, "JANUS_JOB_SOFT_TIME_LIMIT < JANUS_JOB_TIME_LIMIT"),
    ("SQLite in a cluster", lambda r: secret(r).pop("JANUS_DATABASE_URL"),
     checks.settings_problems, "not PostgreSQL"),
    ("auth off beyond loopback", lambda r: config(r).update(JANUS_AUTH="off"),
     checks.settings_problems, "JANUS_AUTH"),
    ("threads hold few streams", lambda r: config(r).update(JANUS_API_WORKER_CLASS="gthread"),
     checks.api_problems, "JANUS_API_WORKER_CLASS gthread holds only 4 event streams"),
    ("the API port differs from the container's", lambda r: config(r).update(JANUS_PORT="9000"),
     checks.api_problems, "JANUS_PORT 9000 is not a containerPort"),
    ("liveness on /readyz", lambda r: probe(r, "livenessProbe").update(path="/readyz"),
     checks.api_problems, "livenessProbe asks /readyz"),
    ("a probe path the app lacks", lambda r: probe(r, "readinessProbe").update(path="/ready"),
     checks.api_problems, "/ready is not a GET route"),
    ("no readiness probe", lambda r: container(r, checks.API).pop("readinessProbe"),
     checks.api_problems, "no HTTP readinessProbe"),
    ("a probe on another port", lambda r: probe(r, "livenessProbe").update(port=9000),
     checks.api_problems, "port 9000 is not JANUS_PORT"),
    ("grace below the soft limit", lambda r: pod(r, checks.WORKER).update(terminationGracePeriodSeconds=1500),
     checks.grace_problems, "not above JANUS_JOB_SOFT_TIME_LIMIT"),
    ("the soft limit raised past the grace", lambda r: config(r).update(JANUS_JOB_SOFT_TIME_LIMIT="1700"),
     checks.grace_problems, "killed mid-batch"),
    ("the grace left at its default", lambda r: pod(r, checks.WORKER).pop("terminationGracePeriodSeconds"),
     checks.grace_problems, "terminationGracePeriodSeconds 30"),
    ("a preStop hook on the worker",
     lambda r: container(r, checks.WORKER).update(lifecycle={"preStop": {"exec": {"command": ["sleep", "5"]}}}),
     checks.grace_problems, "preStop"),
    ("API grace under gunicorn's", lambda r: pod(r, checks.API).update(terminationGracePeriodSeconds=5),
     checks.grace_problems, "--graceful-timeout"),
    ("a shell wrapper", lambda r: container(r, checks.WORKER).update(command=["sh", "-c", "janusq worker"]),
     checks.command_problems, "a shell would swallow SIGTERM"),
    ("the wrong role", lambda r: container(r, checks.WORKER).update(command=["janusq", "serve"]),
     checks.command_problems, "not 'worker'"),
    ("an option the CLI lacks",
     lambda r: container(r, checks.WORKER).update(command=["janusq", "worker", "--qeues", "x"]),
     checks.command_problems, "refused by the CLI"),
    ("another image", lambda r: container(r, checks.MIGRATE).update(image="janusq:old"),
     checks.image_problems, "different images"),
    ("another user", lambda r: pod(r, checks.API)["securityContext"].update(runAsUser=1000),
     checks.image_problems, "is not the image's user"),
    ("the data dir off the volume", lambda r: config(r).update(JANUS_DATA_DIR="/data"),
     checks.image_problems, "JANUS_DATA_DIR=/data is not on a volume"),
    ("two GPUs per pod", lambda r: container(r, checks.WORKER)["resources"]["limits"].update({checks.GPU: 2}),
     checks.gpu_problems, "not 1"),
    ("--gpus in a one-GPU pod", lambda r: container(r, checks.WORKER)["command"].extend(["--gpus", "all"]),
     checks.gpu_problems, "--gpus"),
    ("a worker that may run on the CPU", lambda r: container(r, checks.WORKER).pop("env"),
     checks.gpu_problems, "not cuda"),
    ("fixed worker replicas", lambda r: find(r, *checks.WORKER)["spec"].update(replicas=2),
     checks.gpu_problems, "KEDA owns it"),
    ("a GPU on the API", lambda r: container(r, checks.API)["resources"]["limits"].update({checks.GPU: 1}),
     checks.gpu_problems, "holds a GPU"),
    ("a missing ConfigMap", lambda r: container(r, checks.API)["envFrom"][0]["configMapRef"].update(name="nope"),
     checks.reference_problems, "no ConfigMap named 'nope'"),
    ("a Service selecting nothing", lambda r: find(r, "Service", "janusq-api")["spec"]["selector"].update(
        {"app.kubernetes.io/component": "apii"}), checks.reference_problems, "selects no pods"),
    ("a Service port the pod lacks", lambda r: find(r, "Service", "janusq-api")["spec"]["ports"][0].update(
        targetPort="web"), checks.reference_problems, "targetPort web"),
    ("a PDB selecting nothing", lambda r: find(r, "PodDisruptionBudget", "janusq-worker")["spec"]["selector"][
        "matchLabels"].update({"app.kubernetes.io/component": "gpu"}), checks.reference_problems, "selects no pods"),
    ("KEDA scaling a missing Deployment", lambda r: scaled(r)["scaleTargetRef"].update(name="workers"),
     checks.reference_problems, "scales workers"),
    ("KEDA credentials under another key", lambda r: secret(r, "janusq-keda-postgres").update(
        url=secret(r, "janusq-keda-postgres").pop("connection")), checks.reference_problems, "no key connection"),
    ("KEDA on another database", lambda r: secret(r, "janusq-keda-postgres").update(
        connection="postgresql://janus:x@postgres.example.internal:5432/other"),
     checks.keda_problems, "KEDA counts jobs in"),
    ("KEDA given SQLAlchemy's URL", lambda r: secret(r, "janusq-keda-postgres").update(
        connection=secret(r)["JANUS_DATABASE_URL"]), checks.keda_problems, "postgresql+psycopg"),
    ("workers never at zero", lambda r: scaled(r).update(minReplicaCount=1),
     checks.keda_problems, "minReplicaCount 1"),
    ("a Redis list trigger", lambda r: scaled(r)["triggers"].__setitem__(
        0, {"type": "redis", "metadata": {"listName": "generate", "listLength": "4"}}),
     checks.keda_problems, "one postgresql trigger"),
]


@pytest.mark.parametrize("what, mutate, check, message", MISTAKES, ids=[m[0] for m in MISTAKES])
def test_check_catches(what, mutate, check, message):
    resources = copy.deepcopy(BASE_RESOURCES)
    assert check(Manifests(resources)) == [], "the base itself must pass"
    mutate(resources)
    problems = check(Manifests(resources))
    assert any(message in problem for problem in problems), f"{what}: {problems}"


SCHEMA_MISTAKES = [
    ("a misspelt field", "Deployment", "janusq-api",
     lambda r: r["spec"]["template"]["spec"].update(terminationGracePeriod=30), "terminationGracePeriod"),
    ("a number in a ConfigMap", "ConfigMap", "janusq-config",
     lambda r: r["data"].update(JANUS_PORT=8000), "not of type 'string'"),
    ("a PDB bound that is no number", "PodDisruptionBudget", "janusq-api",
     lambda r: r["spec"].update(minAvailable=0.5), "minAvailable"),
    ("a KEDA metadata number", "ScaledObject", "janusq-worker",
     lambda r: r["spec"]["triggers"][0]["metadata"].update(targetQueryValue=4), "not of type 'string'"),
    ("a postgresql trigger without a query", "ScaledObject", "janusq-worker",
     lambda r: r["spec"]["triggers"][0]["metadata"].pop("query"), "'query' is a required property"),
    ("a KEDA field that does not exist", "ScaledObject", "janusq-worker",
     lambda r: r["spec"].update(minReplicas=0), "minReplicas"),
    ("an HPA behavior of the wrong type", "ScaledObject", "janusq-worker",
     lambda r: r["spec"]["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]["scaleDown"].update(
         stabilizationWindowSeconds="5m"), "not of type 'integer'"),
    ("a secret reference without a key", "TriggerAuthentication", "janusq-keda-postgres",
     lambda r: r["spec"]["secretTargetRef"][0].pop("key"), "'key' is a required property"),
    ("a kind no schema knows", "Secret", "janusq-secrets",
     lambda r: r.update(apiVersion="v2"), "Couldn't find schema"),
]


@pytest.mark.parametrize("version", schemas.KUBERNETES_VERSIONS)
@pytest.mark.parametrize("what, kind, name, mutate, message", SCHEMA_MISTAKES, ids=[m[0] for m in SCHEMA_MISTAKES])
def test_schema_catches(version, what, kind, name, mutate, message):
    resource = copy.deepcopy(find(BASE_RESOURCES, kind, name))
    assert schemas.problems(resource, version) == []
    mutate(resource)
    problems = schemas.problems(resource, version)
    assert any(message in problem for problem in problems), f"{what}: {problems}"

"""Offline schema validation: Kubernetes kinds through kubernetes-validate, KEDA's kinds here.

kubernetes-validate carries the JSON schemas of each Kubernetes release; strict mode also
refuses fields a kind does not have (a misspelt key is an error, not silently dropped).
KEDA's ScaledObject and TriggerAuthentication are custom resources with no schema there, so
KEDA_SCHEMAS below states the shape of the fields deploy/ uses, after KEDA 2.x's CRDs
(keda.sh/v1alpha1), and takes Kubernetes' own definitions for the parts that are Kubernetes
types (object metadata, the HPA behavior).
"""
from __future__ import annotations

import jsonschema
import kubernetes_validate
from kubernetes_validate.utils import schema_contents
from referencing import Registry, Resource

# The oldest Kubernetes release the README promises (KEDA 2.x runs on it) and the newest whose
# schemas the pinned kubernetes-validate carries.
OLDEST_KUBERNETES = "1.29"
KUBERNETES_VERSIONS = (OLDEST_KUBERNETES, kubernetes_validate.latest_version())

DEFINITIONS = "https://kubernetes.io/api/_definitions.json#/$defs/"
HPA_BEHAVIOR = DEFINITIONS + "io.k8s.api.autoscaling.v2.HorizontalPodAutoscalerBehavior"
STRING_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
NAME_REF = {"type": "object", "required": ["name"], "additionalProperties": False,
            "properties": {"name": {"type": "string", "minLength": 1}, "kind": {"type": "string"}}}

TRIGGER = {
    "type": "object",
    "required": ["type", "metadata"],
    "additionalProperties": False,
    "properties": {
        "type": {"type": "string", "minLength": 1},
        "name": {"type": "string"},
        # KEDA reads every metadata value as a string: a bare YAML number is refused at apply.
        "metadata": STRING_MAP,
        "authenticationRef": NAME_REF,
        "metricType": {"enum": ["AverageValue", "Value", "Utilization"]},
        "useCachedMetrics": {"type": "boolean"},
    },
    # What KEDA's PostgreSQL scaler needs: a query, a target, and a way to connect.
    "if": {"properties": {"type": {"const": "postgresql"}}},
    "then": {
        "properties": {"metadata": {"required": ["query", "targetQueryValue"]}},
        "anyOf": [
            {"required": ["authenticationRef"]},
            {"properties": {"metadata": {"anyOf": [{"required": ["connectionFromEnv"]},
                                                   {"required": ["host", "userName", "dbName"]}]}}},
        ],
    },
}

SCALED_OBJECT_SPEC = {
    "type": "object",
    "required": ["scaleTargetRef", "triggers"],
    "additionalProperties": False,
    "properties": {
        "scaleTargetRef": {
            "type": "object", "required": ["name"], "additionalProperties": False,
            "properties": {"name": {"type": "string", "minLength": 1}, "kind": {"type": "string"},
                           "apiVersion": {"type": "string"}, "envSourceContainerName": {"type": "string"}},
        },
        "pollingInterval": {"type": "integer", "minimum": 1},
        "cooldownPeriod": {"type": "integer", "minimum": 0},
        "initialCooldownPeriod": {"type": "integer", "minimum": 0},
        "idleReplicaCount": {"type": "integer", "minimum": 0},
        "minReplicaCount": {"type": "integer", "minimum": 0},
        "maxReplicaCount": {"type": "integer", "minimum": 1},
        "fallback": {"type": "object", "required": ["failureThreshold", "replicas"],
                     "properties": {"failureThreshold": {"type": "integer"}, "replicas": {"type": "integer"}}},
        "advanced": {
            "type": "object", "additionalProperties": False,
            "properties": {
                "restoreToOriginalReplicaCount": {"type": "boolean"},
                "horizontalPodAutoscalerConfig": {
                    "type": "object", "additionalProperties": False,
                    "properties": {"name": {"type": "string"}, "behavior": {"$ref": HPA_BEHAVIOR}},
                },
            },
        },
        "triggers": {"type": "array", "minItems": 1, "items": TRIGGER},
    },
}

TRIGGER_AUTHENTICATION_SPEC = {
    "type": "object",
    "minProperties": 1,
    "additionalProperties": False,
    "properties": {
        "secretTargetRef": {"type": "array", "minItems": 1, "items": {
            "type": "object", "required": ["parameter", "name", "key"], "additionalProperties": False,
            "properties": {"parameter": {"type": "string"}, "name": {"type": "string"}, "key": {"type": "string"}}}},
        "env": {"type": "array", "items": {
            "type": "object", "required": ["parameter", "name"], "additionalProperties": False,
            "properties": {"parameter": {"type": "string"}, "name": {"type": "string"},
                           "containerName": {"type": "string"}}}},
        "podIdentity": {"type": "object", "required": ["provider"]},
    },
}


def _custom_resource(kind: str, spec: dict) -> dict:
    return {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "additionalProperties": False,
        "properties": {
            "apiVersion": {"const": "keda.sh/v1alpha1"},
            "kind": {"const": kind},
            "metadata": {"$ref": DEFINITIONS + "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"},
            "spec": spec,
        },
    }


KEDA_SCHEMAS = {
    "ScaledObject": _custom_resource("ScaledObject", SCALED_OBJECT_SPEC),
    "TriggerAuthentication": _custom_resource("TriggerAuthentication", TRIGGER_AUTHENTICATION_SPEC),
}


def problems(resource: dict, version: str) -> list[str]:
    """Why `resource` would be refused by a cluster of that Kubernetes version; [] when valid."""
    label = f"{resource.get('kind')}/{resource.get('metadata', {}).get('name')} (Kubernetes {version})"
    if resource.get("apiVersion", "").startswith("keda.sh/"):
        return [f"{label}: {message}" for message in _keda_problems(resource, version)]
    try:
        kubernetes_validate.validate(resource, version, strict=True)
    except kubernetes_validate.ValidationError as error:
        return [f"{label}: {'/'.join(map(str, error.absolute_path))}: {error.message}"]
    except kubernetes_validate.SchemaNotFoundError as error:
        return [f"{label}: {error.message}"]
    return []


def _keda_problems(resource: dict, version: str) -> list[str]:
    schema = KEDA_SCHEMAS.get(resource.get("kind"))
    if schema is None:
        return [f"no schema for KEDA kind {resource.get('kind')!r}"]
    validator = jsonschema.Draft202012Validator(schema, registry=_kubernetes_definitions(version))
    return [f"{'/'.join(map(str, error.absolute_path))}: {error.message}"
            for error in validator.iter_errors(resource)]


def _kubernetes_definitions(version: str) -> Registry:
    """Kubernetes' own type definitions of that release, from kubernetes-validate's files."""
    release = next(v for v in reversed(kubernetes_validate.utils.all_versions()) if _minor(v) <= _minor(version))
    contents = schema_contents(f"kubernetes-json-schema/v{release}-local-strict/_definitions.json", version)
    return Resource.from_contents(contents) @ Registry()


def _minor(version: str) -> tuple[int, int]:
    major, minor = version.split(".")[:2]
    return int(major), int(minor)

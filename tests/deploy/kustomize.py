"""Renders a kustomization in Python, as `kubectl kustomize` does, for the features deploy/ uses.

No cluster and no kustomize binary are needed for `make test`. Supported: `resources` (files
and kustomization folders), `namespace`, `images` and `patches` (JSON 6902 files, applied with
the jsonpatch library, selecting by kind and name). Anything else raises, so a kustomization
that starts using another feature fails the tests loudly instead of rendering wrongly;
test_render.py compares this renderer with the real kustomize wherever kubectl is installed.
"""
from __future__ import annotations

from pathlib import Path

import jsonpatch
import yaml

KUSTOMIZATION = "kustomization.yaml"
KNOWN_KEYS = frozenset({"apiVersion", "kind", "resources", "namespace", "images", "patches"})
PATCH_KEYS = frozenset({"path", "target"})
TARGET_KEYS = frozenset({"kind", "name"})
IMAGE_KEYS = frozenset({"name", "newName", "newTag", "digest"})
# Kinds that live outside namespaces: the namespace transformer leaves them alone.
CLUSTER_SCOPED = frozenset({
    "Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition",
    "PersistentVolume", "StorageClass", "PriorityClass", "IngressClass", "RuntimeClass",
})
CONTAINER_LISTS = ("containers", "initContainers", "ephemeralContainers")


class KustomizeError(ValueError):
    """A kustomization this renderer cannot render faithfully, or that kustomize would refuse."""


def render(directory: Path) -> list[dict]:
    """Every resource the kustomization in `directory` produces, transformed."""
    directory = Path(directory)
    kustomization = _load_kustomization(directory)
    resources = []
    for entry in kustomization.get("resources", []):
        resources += _load_resource(directory / entry)
    for patch in kustomization.get("patches", []):
        _apply_patch(resources, patch, directory)
    if "namespace" in kustomization:
        _set_namespace(resources, kustomization["namespace"])
    for image in kustomization.get("images", []):
        _set_image(resources, image)
    _refuse_duplicates(resources)
    return resources


def resource_id(resource: dict) -> tuple[str, str, str]:
    metadata = resource.get("metadata", {})
    return resource.get("kind", ""), metadata.get("namespace", ""), metadata.get("name", "")


def _load_kustomization(directory: Path) -> dict:
    path = directory / KUSTOMIZATION
    if not path.is_file():
        raise KustomizeError(f"no {KUSTOMIZATION} in {directory}")
    kustomization = yaml.safe_load(path.read_text()) or {}
    unknown = sorted(set(kustomization) - KNOWN_KEYS)
    if unknown:
        raise KustomizeError(f"{path}: fields this renderer does not support: {unknown}")
    return kustomization


def _load_resource(path: Path) -> list[dict]:
    if path.is_dir():
        return render(path)
    if not path.is_file():
        raise KustomizeError(f"resource not found: {path}")
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def _apply_patch(resources: list[dict], patch: dict, directory: Path) -> None:
    unknown = sorted(set(patch) - PATCH_KEYS) + sorted(set(patch.get("target", {})) - TARGET_KEYS)
    if unknown or "path" not in patch or "target" not in patch:
        raise KustomizeError(f"only `path` + `target` (kind, name) patches are supported: {patch}")
    operations = yaml.safe_load((directory / patch["path"]).read_text())
    if not isinstance(operations, list):
        raise KustomizeError(f"{patch['path']}: not a JSON 6902 patch (a list of operations)")
    target = patch["target"]
    matched = [r for r in resources if all(_field(r, key) == value for key, value in target.items())]
    if not matched:
        # kustomize would skip it silently; a patch that changes nothing is a mistake here.
        raise KustomizeError(f"{patch['path']}: its target {target} matches no resource")
    for resource in matched:
        patched = jsonpatch.apply_patch(resource, operations)
        resource.clear()
        resource.update(patched)


def _field(resource: dict, key: str) -> str | None:
    return resource.get("kind") if key == "kind" else resource.get("metadata", {}).get(key)


def _set_namespace(resources: list[dict], namespace: str) -> None:
    for resource in resources:
        if resource.get("kind") not in CLUSTER_SCOPED:
            resource.setdefault("metadata", {})["namespace"] = namespace


def _set_image(resources: list[dict], image: dict) -> None:
    unknown = sorted(set(image) - IMAGE_KEYS)
    if unknown or "name" not in image:
        raise KustomizeError(f"images entry not supported: {image}")
    for container in _containers(resources):
        name, tag, digest = split_image(container.get("image", ""))
        if name != image["name"]:
            continue
        name = image.get("newName", name)
        if "digest" in image:
            container["image"] = f"{name}@{image['digest']}"
        elif "newTag" in image:
            container["image"] = f"{name}:{image['newTag']}"
        else:
            container["image"] = name + (f"@{digest}" if digest else f":{tag}" if tag else "")


def _containers(node):
    """Every container of every pod template, however deep (Deployment, Job, CronJob...)."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in CONTAINER_LISTS and isinstance(value, list):
                yield from (c for c in value if isinstance(c, dict))
            else:
                yield from _containers(value)
    elif isinstance(node, list):
        for item in node:
            yield from _containers(item)


def split_image(image: str) -> tuple[str, str | None, str | None]:
    """registry:5000/name:tag@digest -> (registry:5000/name, tag, digest)."""
    image, _, digest = image.partition("@")
    name, tag = image, None
    if ":" in image.rsplit("/", 1)[-1]:  # a colon before the last slash is a registry's port
        name, tag = image.rsplit(":", 1)
    return name, tag, digest or None


def _refuse_duplicates(resources: list[dict]) -> None:
    seen = set()
    for resource in resources:
        key = resource_id(resource)
        if key in seen:
            raise KustomizeError(f"two resources with the same id: {key}")
        seen.add(key)

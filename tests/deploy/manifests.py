"""Rendered manifests and the image they run, as the checks (checks.py) need to read them."""
from __future__ import annotations

import base64
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
KUBERNETES = ROOT / "deploy" / "kubernetes"
BASE = KUBERNETES / "base"
OVERLAYS = sorted(path.parent for path in (KUBERNETES / "overlays").glob("*/kustomization.yaml"))
WORKLOAD_KINDS = ("Deployment", "StatefulSet", "DaemonSet", "Job")


@dataclass
class Container:
    workload: dict
    spec: dict

    @property
    def label(self) -> str:
        return f"{self.workload['kind']}/{self.workload['metadata']['name']} container {self.spec['name']}"

    @property
    def pod(self) -> dict:
        return self.workload["spec"]["template"]["spec"]


class Manifests:
    def __init__(self, resources: list[dict]):
        self.resources = resources

    def of_kind(self, kind: str) -> list[dict]:
        return [r for r in self.resources if r.get("kind") == kind]

    def find(self, kind: str, name: str) -> dict | None:
        return next((r for r in self.of_kind(kind) if r["metadata"].get("name") == name), None)

    def get(self, kind: str, name: str) -> dict:
        found = self.find(kind, name)
        if found is None:
            raise LookupError(f"no {kind} named {name!r} in the rendered manifests")
        return found

    def workloads(self) -> list[dict]:
        return [r for r in self.resources if r.get("kind") in WORKLOAD_KINDS]

    def containers(self) -> list[Container]:
        return [Container(workload, spec) for workload in self.workloads()
                for spec in workload["spec"]["template"]["spec"].get("containers", [])]

    def container(self, kind: str, name: str) -> Container:
        workload = self.get(kind, name)
        return Container(workload, workload["spec"]["template"]["spec"]["containers"][0])

    def environment(self, container: Container) -> dict[str, str]:
        """What the container's process sees: envFrom sources in order, then env (which wins)."""
        env: dict[str, str] = {}
        for source in container.spec.get("envFrom", []):
            env.update(self._env_source(source))
        for item in container.spec.get("env", []):
            if "value" not in item:
                raise LookupError(f"{container.label}: env {item['name']} is not a plain value")
            env[item["name"]] = str(item["value"])
        return env

    def _env_source(self, source: dict) -> dict[str, str]:
        if "configMapRef" in source:
            return dict(self.get("ConfigMap", source["configMapRef"]["name"]).get("data") or {})
        if "secretRef" in source:
            return secret_values(self.get("Secret", source["secretRef"]["name"]))
        raise LookupError(f"envFrom source not understood: {source}")


def secret_values(secret: dict) -> dict[str, str]:
    values = {key: base64.b64decode(value).decode() for key, value in (secret.get("data") or {}).items()}
    values.update(secret.get("stringData") or {})
    return values


def labels_match(selector: dict, labels: dict) -> bool:
    return bool(selector) and all(labels.get(key) == value for key, value in selector.items())


class Dockerfile:
    """What the runtime stage (the last FROM) of the Dockerfile sets."""

    def __init__(self, path: Path = ROOT / "Dockerfile"):
        text = re.sub(r"\\\n", " ", path.read_text())
        lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
        last_from = max(i for i, line in enumerate(lines) if line.upper().startswith("FROM "))
        self.lines = lines[last_from:]

    def instructions(self, name: str) -> list[str]:
        return [line.split(None, 1)[1] for line in self.lines if line.split(None, 1)[0].upper() == name]

    @property
    def env(self) -> dict[str, str]:
        env = {}
        for args in self.instructions("ENV"):
            env.update(part.split("=", 1) for part in shlex.split(args) if "=" in part)
        return env

    @property
    def exposed_ports(self) -> set[int]:
        return {int(port.split("/")[0]) for args in self.instructions("EXPOSE") for port in args.split()}

    @property
    def uid(self) -> int:
        """The uid of the user the image runs as (USER), as created by useradd --uid."""
        user = self.instructions("USER")[-1]
        for command in self.instructions("RUN"):
            match = re.search(rf"useradd\b[^&;]*--uid\s+(\d+)[^&;]*\s{re.escape(user)}\b", command)
            if match:
                return int(match.group(1))
        raise LookupError(f"the Dockerfile creates no user {user!r} with a fixed --uid")

"""The Kubernetes manifests under deploy/kubernetes, rendered once per test session."""
from __future__ import annotations

import re

import pytest
import yaml

from tests.deploy.kustomize import render
from tests.deploy.manifests import BASE, OVERLAYS, ROOT, Manifests

RENDERINGS = [BASE, *OVERLAYS]


def rendering_id(path) -> str:
    return str(path.relative_to(BASE.parent))


@pytest.fixture(scope="session", params=RENDERINGS, ids=rendering_id)
def rendering(request) -> tuple:
    """(kustomization folder, its rendered resources) for the base and every overlay."""
    return request.param, render(request.param)


@pytest.fixture
def manifests(rendering) -> Manifests:
    return Manifests(rendering[1])


@pytest.fixture(scope="session")
def compose_image() -> str:
    """The image docker-compose.yml builds and runs by default (JANUSQ_IMAGE unset)."""
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    image = compose["x-janus-app"]["image"]
    return re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", image)

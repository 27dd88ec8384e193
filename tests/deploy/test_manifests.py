"""Every manifest under deploy/kubernetes is valid for Kubernetes and agrees with the code."""
from __future__ import annotations

import pytest

from tests.deploy import checks, schemas
from tests.deploy.kustomize import split_image
from tests.deploy.manifests import BASE


@pytest.mark.parametrize("version", schemas.KUBERNETES_VERSIONS)
def test_every_manifest_is_valid_for_kubernetes(rendering, version):
    problems = [problem for resource in rendering[1] for problem in schemas.problems(resource, version)]
    assert problems == []


def test_the_deployment_has_every_part(manifests):
    for kind, name in [checks.API, ("Service", "janusq-api"), checks.WORKER, checks.MIGRATE,
                       ("ConfigMap", "janusq-config"), ("Secret", "janusq-secrets"),
                       ("PodDisruptionBudget", "janusq-api"), ("PodDisruptionBudget", "janusq-worker"),
                       ("ScaledObject", "janusq-worker"), ("TriggerAuthentication", "janusq-keda-postgres")]:
        assert manifests.find(kind, name) is not None, f"no {kind}/{name}"


@pytest.mark.parametrize("check", checks.ALL_CHECKS, ids=lambda check: check.__name__)
def test_manifests_agree_with_the_code(manifests, check):
    assert check(manifests) == []


def test_every_role_runs_the_compose_image(rendering, manifests, compose_image):
    folder, _ = rendering
    expected = compose_image if folder == BASE else None
    assert checks.image_problems(manifests, expected) == []
    image = manifests.container(*checks.API).spec["image"]
    assert split_image(image)[0].rsplit("/", 1)[-1] == split_image(compose_image)[0]


def test_worker_has_no_probe(manifests):
    """A Celery worker has no HTTP port; why no exec probe either is in the README."""
    worker = manifests.container(*checks.WORKER).spec
    assert not {"livenessProbe", "readinessProbe", "startupProbe"} & set(worker)

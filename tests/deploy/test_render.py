"""The Python renderer renders what kustomize would, and refuses what it cannot render."""
from __future__ import annotations

import shutil
import subprocess

import pytest
import yaml

from tests.deploy.kustomize import KustomizeError, render, resource_id
from tests.deploy.manifests import BASE, OVERLAYS


def by_id(resources):
    return {resource_id(resource): resource for resource in resources}


def test_an_overlay_renders_the_whole_base():
    base_ids = {(kind, name) for kind, _, name in by_id(render(BASE))}
    for overlay in OVERLAYS:
        overlay_ids = {(kind, name) for kind, _, name in by_id(render(overlay))}
        assert base_ids <= overlay_ids, f"{overlay.name} drops {base_ids - overlay_ids}"


def test_the_example_overlay_changes_what_it_says():
    resources = by_id(render(BASE.parent / "overlays" / "example"))
    worker = resources[("Deployment", "janusq", "janusq-worker")]
    assert worker["spec"]["template"]["spec"]["containers"][0]["image"] == "registry.example.com/janusq:0.1.0"
    assert worker["spec"]["template"]["spec"]["nodeSelector"]
    assert resources[("ScaledObject", "janusq", "janusq-worker")]["spec"]["maxReplicaCount"] == 4
    assert ("Namespace", "", "janusq") in resources


@pytest.mark.parametrize("kustomization, message", [
    ({"resources": ["a.yaml"], "configMapGenerator": []}, "does not support"),
    ({"resources": ["missing.yaml"]}, "not found"),
    ({"resources": ["a.yaml"], "patches": [{"path": "p.yaml", "target": {"kind": "Secret", "name": "a"}}]},
     "matches no resource"),
    ({"resources": ["a.yaml", "a.yaml"]}, "same id"),
])
def test_what_it_cannot_render_fails_loudly(tmp_path, kustomization, message):
    (tmp_path / "a.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n")
    (tmp_path / "p.yaml").write_text("- {op: add, path: /data, value: {}}\n")
    (tmp_path / "kustomization.yaml").write_text(yaml.safe_dump(kustomization))
    with pytest.raises(KustomizeError, match=message):
        render(tmp_path)


@pytest.mark.parametrize("folder", [BASE, *OVERLAYS], ids=lambda path: path.name)
def test_same_as_kubectl_kustomize(folder):
    """Where kubectl is installed (it carries kustomize), its rendering must equal ours."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed; the Python renderer is all make test needs")
    result = subprocess.run([kubectl, "kustomize", str(folder)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert by_id(yaml.safe_load_all(result.stdout)) == by_id(render(folder))

"""deploy/k8s: valid against the Kubernetes schemas (offline, kubernetes-validate), and consistent
with the service: probes, ports, drain timing, security context, autoscaling metric."""

from __future__ import annotations

from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from service.metrics import ServiceMetrics
from service.settings import ServiceSettings

K8S = Path(__file__).resolve().parents[2] / "deploy" / "k8s"
# 1.30: the oldest release whose defaults run every field used (the preStop sleep action); the newest
# the validator ships.
VERSIONS = ["1.30.0", kubernetes_validate.utils.latest_version()]


def resources() -> dict[str, dict]:
    """kind -> the resource, from the files kustomization.yaml lists."""
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    out = {}
    for name in kustomization["resources"]:
        for doc in yaml.safe_load_all((K8S / name).read_text()):
            out[doc["kind"]] = doc
    return out


@pytest.fixture(scope="module")
def manifests() -> dict[str, dict]:
    return resources()


@pytest.fixture(scope="module")
def container(manifests) -> dict:
    (only,) = manifests["Deployment"]["spec"]["template"]["spec"]["containers"]
    return only


def env(container: dict) -> dict[str, str]:
    return {e["name"]: e.get("value") for e in container["env"]}


@pytest.mark.parametrize("version", VERSIONS)
def test_every_listed_manifest_is_valid_kubernetes(manifests, version):
    assert set(manifests) == {"Deployment", "Service", "PodDisruptionBudget", "HorizontalPodAutoscaler"}
    for doc in manifests.values():
        kubernetes_validate.validate(doc, version, strict=True)  # raises with the path of the bad field


def test_the_validator_rejects_a_broken_manifest(manifests):
    broken = yaml.safe_load(yaml.safe_dump(manifests["Deployment"]))
    broken["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}  # misspelt field
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, VERSIONS[-1], strict=True)


def test_probes_ports_and_selectors_match_the_service(manifests, container):
    assert container["readinessProbe"]["httpGet"]["path"] == "/health/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/health/live"
    (port,) = container["ports"]
    assert int(env(container)["AFRL_PORT"]) == port["containerPort"]
    assert container["readinessProbe"]["httpGet"]["port"] == port["name"] == "http"
    pod_labels = manifests["Deployment"]["spec"]["template"]["metadata"]["labels"]
    for selector in (
        manifests["Service"]["spec"]["selector"],
        manifests["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"],
        manifests["Deployment"]["spec"]["selector"]["matchLabels"],
    ):
        assert selector.items() <= pod_labels.items()
    assert manifests["Service"]["spec"]["ports"][0]["targetPort"] == port["name"]
    for name in set(env(container)) - {"AFRL_HOME"}:  # AFRL_HOME: afrl.paths, the default-model cache
        assert name.removeprefix("AFRL_").lower() in ServiceSettings.model_fields, f"{name} is not a setting"


def test_the_pod_outlives_its_drain(manifests, container):
    spec = manifests["Deployment"]["spec"]["template"]["spec"]
    pre_stop = container["lifecycle"]["preStop"]["sleep"]["seconds"]
    grace = float(env(container)["AFRL_GRACE_PERIOD_S"])
    assert spec["terminationGracePeriodSeconds"] > pre_stop + grace


def test_runs_as_non_root_on_a_read_only_root_filesystem(manifests, container):
    spec = manifests["Deployment"]["spec"]["template"]["spec"]
    assert spec["securityContext"]["runAsNonRoot"] is True and spec["securityContext"]["runAsUser"] != 0
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True and security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    writable = {m["mountPath"] for m in container["volumeMounts"]}
    emptydirs = {v["name"] for v in spec["volumes"] if "emptyDir" in v}
    assert {m["name"] for m in container["volumeMounts"]} <= emptydirs
    assert any(env(container)["AFRL_HOME"].startswith(path) for path in writable), "AFRL_HOME must be writable"


def test_requests_and_limits_are_set(container):
    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= container["resources"][kind].keys()
    assert int(env(container)["AFRL_INTRA_OP_THREADS"]) <= int(container["resources"]["limits"]["cpu"])


def test_autoscaling_on_the_queue_depth_the_service_exports(manifests):
    hpa = manifests["HorizontalPodAutoscaler"]["spec"]
    assert hpa["scaleTargetRef"]["name"] == manifests["Deployment"]["metadata"]["name"]
    (pods,) = [m["pods"] for m in hpa["metrics"] if m["type"] == "Pods"]
    metric = pods["metric"]["name"]
    assert metric == "afrl_queue_depth" and metric in ServiceMetrics().render().decode()
    assert hpa["minReplicas"] >= manifests["PodDisruptionBudget"]["spec"]["minAvailable"] + 1
    adapter = yaml.safe_load((K8S / "prometheus-adapter-values.yaml").read_text())
    (rule,) = adapter["rules"]["custom"]
    assert rule["name"]["as"] == metric and metric in rule["seriesQuery"]
    assert set(rule["resources"]["overrides"]) == {"namespace", "pod"}

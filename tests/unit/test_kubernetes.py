"""deploy/kubernetes/: valid against the Kubernetes and prometheus-operator schemas, consistent
with each other, the image and the rules.

No cluster runs here. Core kinds are validated with kubernetes-validate (the Kubernetes OpenAPI
schemas, strict: unknown fields are errors) for the oldest and newest releases it ships; the
ServiceMonitor and PrometheusRule against the operator's own CRD schemas (tests/data/, source
named in its README), made strict the same way. The PrometheusRule is generated from
prometheus/rules/*.yml (deploy/kubernetes/generate.py) and must not drift from them.
"""

from __future__ import annotations

import copy
import importlib.util
import re
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from exporter.config import load_file

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "kubernetes"
CRDS = ROOT / "tests" / "data" / "prometheus-operator-v0.93.0"
MANIFESTS = sorted(p for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")
KUBERNETES_VERSIONS = ["1.25.0", kubernetes_validate.latest_version()]


def documents() -> dict[str, dict[str, Any]]:
    """kind -> the resource, across every manifest (one resource per kind here)."""
    found = {}
    for path in MANIFESTS:
        for doc in yaml.safe_load_all(path.read_text()):
            assert doc["kind"] not in found, f"two {doc['kind']}s"
            found[doc["kind"]] = doc
    return found


DOCS = documents()
CORE_KINDS = ["ConfigMap", "Deployment", "PersistentVolumeClaim", "Service"]


def _generator():
    spec = importlib.util.spec_from_file_location("k8s_generate", K8S / "generate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --- schemas --------------------------------------------------------------------------------------

@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("kind", CORE_KINDS)
def test_core_resources_validate_strictly(kind, version):
    kubernetes_validate.validate(DOCS[kind], version, strict=True)


def test_the_kubernetes_validator_rejects_an_unknown_field():
    broken = copy.deepcopy(DOCS["Deployment"])
    broken["spec"]["template"]["spec"]["containers"][0]["readinessProbes"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSIONS[-1], strict=True)


def strict(schema: Any) -> Any:
    """An openAPIV3Schema with unknown fields rejected where the schema lists the known ones."""
    if isinstance(schema, dict):
        schema = {k: strict(v) for k, v in schema.items()}
        if ("properties" in schema and "additionalProperties" not in schema
                and not schema.get("x-kubernetes-preserve-unknown-fields")):
            schema["additionalProperties"] = False
        return schema
    if isinstance(schema, list):
        return [strict(v) for v in schema]
    return schema


def crd_validator(kind: str) -> tuple[jsonschema.protocols.Validator, str]:
    for path in CRDS.glob("*.yaml"):
        crd = yaml.safe_load(path.read_text())
        if crd["spec"]["names"]["kind"] == kind:
            (version,) = [v for v in crd["spec"]["versions"] if v["storage"]]
            schema = strict(version["schema"]["openAPIV3Schema"])
            return jsonschema.Draft7Validator(schema), f"{crd['spec']['group']}/{version['name']}"
    raise LookupError(kind)


@pytest.mark.parametrize("kind", ["ServiceMonitor", "PrometheusRule"])
def test_operator_resources_validate_against_the_crds(kind):
    validator, api_version = crd_validator(kind)
    assert DOCS[kind]["apiVersion"] == api_version
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(DOCS[kind])]
    assert errors == []


@pytest.mark.parametrize("kind, path, key", [
    ("ServiceMonitor", ("spec", "endpoints", 0), "intervall"),
    ("PrometheusRule", ("spec", "groups", 0, "rules", 0), "expression"),
])
def test_the_crd_validator_rejects_an_unknown_field(kind, path, key):
    broken = copy.deepcopy(DOCS[kind])
    node = broken
    for part in path:
        node = node[part]
    node[key] = "1m"
    validator, _ = crd_validator(kind)
    assert any(key in e.message for e in validator.iter_errors(broken))


# --- the PrometheusRule is the rules ------------------------------------------------------------

def test_the_prometheusrule_is_generated_from_the_rule_files():
    generator = _generator()
    assert (K8S / "prometheusrule.yaml").read_text() == generator.render(), \
        "deploy/kubernetes/prometheusrule.yaml is stale: run `make kubernetes`"
    rules = [g for p in sorted((ROOT / "prometheus/rules").glob("*.yml")) for g in yaml.safe_load(p.read_text())["groups"]]
    assert DOCS["PrometheusRule"]["spec"]["groups"] == rules


def test_the_generator_notices_a_changed_rule(tmp_path):
    generator = _generator()
    rules = tmp_path / "rules"
    rules.mkdir()
    for path in (ROOT / "prometheus/rules").glob("*.yml"):
        (rules / path.name).write_text(path.read_text().replace("for: 1m", "for: 2m", 1))
    assert generator.render(rules) != (K8S / "prometheusrule.yaml").read_text()


def test_the_prometheusrule_groups_load_in_prometheus(tmp_path):
    rules = tmp_path / "rules.yml"
    rules.write_text(yaml.safe_dump({"groups": DOCS["PrometheusRule"]["spec"]["groups"]}, sort_keys=False))
    done = subprocess.run(["promtool", "check", "rules", str(rules)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


# --- consistency ------------------------------------------------------------------------------

def pod_spec() -> dict[str, Any]:
    return DOCS["Deployment"]["spec"]["template"]["spec"]


def test_service_servicemonitor_and_pod_agree():
    service, monitor, deployment = DOCS["Service"], DOCS["ServiceMonitor"], DOCS["Deployment"]
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    (container,) = pod_spec()["containers"]
    (port,) = container["ports"]
    (service_port,) = service["spec"]["ports"]
    assert service_port["targetPort"] == port["name"] == service_port["name"]
    assert [e["port"] for e in monitor["spec"]["endpoints"]] == [port["name"]]
    # The operator names the job after the Service; the rules select job="feedwatch".
    assert service["metadata"]["name"] == "feedwatch"
    assert 'job="feedwatch"' in (ROOT / "prometheus/rules/exporter.yml").read_text()


def test_the_pod_runs_restricted():
    spec = pod_spec()
    (container,) = spec["containers"]
    pod_sc, sc = spec["securityContext"], container["securityContext"]
    assert pod_sc["runAsNonRoot"] is True and pod_sc["seccompProfile"]["type"] == "RuntimeDefault"
    assert sc["allowPrivilegeEscalation"] is False and sc["readOnlyRootFilesystem"] is True
    assert sc["capabilities"]["drop"] == ["ALL"]
    dockerfile_user = re.search(r"^USER (\d+):(\d+)$", (ROOT / "Dockerfile").read_text(), re.M)
    assert (pod_sc["runAsUser"], pod_sc["runAsGroup"]) == tuple(map(int, dockerfile_user.groups()))
    assert spec["automountServiceAccountToken"] is False
    probes = {key: container[key]["httpGet"]["path"] for key in ("livenessProbe", "readinessProbe")}
    assert probes == {"livenessProbe": "/-/healthy", "readinessProbe": "/-/ready"}
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    assert mounts["config"]["readOnly"] is True
    # What the read-only root filesystem still needs writable: the state directory and /tmp.
    assert {m["mountPath"] for m in container["volumeMounts"] if not m.get("readOnly")} == {"/var/lib/feedwatch", "/tmp"}
    # The trading state outlives the pod: never an emptyDir (a rescheduled pod would forget the kill switch).
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes["state"]["persistentVolumeClaim"]["claimName"] == DOCS["PersistentVolumeClaim"]["metadata"]["name"]


def test_the_configmap_config_loads_and_listens_on_the_container_port(tmp_path):
    config_text = DOCS["ConfigMap"]["data"]["feedwatch.yml"]
    path = tmp_path / "feedwatch.yml"
    path.write_text(config_text)
    (container,) = pod_spec()["containers"]
    secrets = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in container["env"] if "valueFrom" in e}
    variables = set(re.findall(r"\$\{(\w+)", config_text))
    assert variables <= set(secrets), "every ${VAR} of the config comes from a Secret"
    config = load_file(str(path), {name: "from-the-secret" for name in variables})
    assert config.feeds
    assert config_text.count('listen: ":10119"') == 1 and container["ports"][0]["containerPort"] == 10119
    assert container["args"][-1] == "/etc/feedwatch/feedwatch.yml"
    assert {m["mountPath"] for m in container["volumeMounts"] if m["name"] == "config"} == {"/etc/feedwatch"}


def test_kustomization_lists_every_manifest():
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert sorted(kustomization["resources"]) == sorted(p.name for p in MANIFESTS)

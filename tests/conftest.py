"""Session fixtures shared by the suite: the demo model trained, exported, put in a repository and served.

Each expensive step runs once per session; tests that need a server share one real local Triton.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

ROOT = Path(__file__).resolve().parents[1]
DEMO_SPEC = ROOT / "examples" / "minilm-intent" / "spec.yaml"


def _gpu_available() -> bool:
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        return False
    return os.path.exists("/dev/nvidia0") or bool(os.environ.get("CUDA_VISIBLE_DEVICES"))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if _gpu_available():
        return
    skip = pytest.mark.skip(
        reason="needs an NVIDIA GPU with TensorRT (run on an NVIDIA host or in the container)"
    )
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def demo_spec():
    """The demo's spec with a shorter fine-tune (2 epochs): enough to learn the 5 intents."""
    from triton_bundle.spec import load_spec

    spec = load_spec(DEMO_SPEC)
    assert spec.finetune is not None
    spec.finetune.epochs = 2
    return spec


@pytest.fixture(scope="session")
def demo_workdir(demo_spec, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Fine-tuned checkpoint + verified ONNX for the demo model, recorded in the manifest."""
    from fixtures.serving import exported

    return exported(demo_spec, tmp_path_factory.mktemp("demo") / "artifacts")[1]


@pytest.fixture(scope="session")
def demo_repository(demo_spec, demo_workdir: Path) -> Path:
    """The local-target Triton model repository generated for the demo model."""
    from triton_bundle.repository.generate import generate_repository

    return generate_repository(demo_spec, demo_workdir, out_dir=demo_workdir.parent / "model_repository")


@pytest.fixture(scope="session")
def demo_server(demo_repository: Path):
    """A real local Triton serving the demo repository on free ports, stopped at the end by PID."""
    from triton_bundle.serving.local_triton import LocalTriton, ServerConfig

    config = ServerConfig(repository=demo_repository, log_file=demo_repository.parent / "triton.log")
    with LocalTriton(config) as server:
        yield server


@pytest.fixture(scope="session", params=["gpt2", "llama"])
def textgen_workdir(request, tmp_path_factory: pytest.TempPathFactory):
    """(spec, workdir) per family: a tiny causal LM fine-tuned on the support corpus, exported with a KV cache."""
    from fixtures.serving import exported
    from fixtures.textgen import tiny_checkpoint, tiny_spec

    root = tmp_path_factory.mktemp(f"textgen-{request.param}")
    spec = tiny_spec(request.param, tiny_checkpoint(request.param, root / "base"))
    workdir = root / "artifacts"
    return exported(spec, workdir)


@pytest.fixture(scope="session")
def textgen_server(textgen_workdir):
    """(spec, workdir, server): the family's decoder served by a real local Triton on free ports."""
    from fixtures.serving import served

    with served(*textgen_workdir) as running:
        yield running


@pytest.fixture(scope="session", params=["two-level", "three-level"])
def diffusion_workdir(request, tmp_path_factory: pytest.TempPathFactory):
    """(spec, workdir) per UNet configuration: a tiny class-conditional UNet2DModel trained a few steps
    on the digits and exported to ONNX (parity proven by the export stage)."""
    from fixtures.diffusion import tiny_spec
    from fixtures.serving import exported

    spec = tiny_spec(request.param)
    workdir = tmp_path_factory.mktemp(f"diffusion-{request.param}") / "artifacts"
    return exported(spec, workdir)


@pytest.fixture(scope="session")
def diffusion_server(diffusion_workdir):
    """(spec, workdir, server): the UNet's sampling ensemble served by a real local Triton on free ports."""
    from fixtures.serving import served

    with served(*diffusion_workdir) as running:
        yield running

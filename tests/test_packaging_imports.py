"""Each image installs the bundle with --no-deps plus its own requirements.txt (no torch anywhere).

These tests import what each container runs in an interpreter that refuses every third-party module
outside that image's requirements (and their dependencies), so a new top-level import of torch or
onnx in a module the image runs fails here, not at `docker run` time on a GPU host.
"""

from __future__ import annotations

import importlib.metadata as metadata
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]


def _distributions(requirements: list[str]) -> set[str]:
    """The requirements and everything they pull in (extras included), as normalised names."""
    seen: set[str] = set()
    todo = [Requirement(r) for r in requirements]
    while todo:
        requirement = todo.pop()
        name = requirement.name.lower().replace("_", "-")
        key = f"{name}[{','.join(sorted(requirement.extras))}]"
        if key in seen:
            continue
        seen.add(key)
        try:
            requires = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue
        for text in requires:
            sub = Requirement(text)
            environments = [{"extra": e} for e in requirement.extras] or [{"extra": ""}]
            if sub.marker is None or any(sub.marker.evaluate(env) for env in environments):
                todo.append(sub)
    return {key.split("[")[0] for key in seen}


def _allowed_modules(requirements_file: Path) -> set[str]:
    lines = [
        line.split("#")[0].strip() for line in requirements_file.read_text(encoding="utf-8").splitlines()
    ]
    distributions = _distributions([line for line in lines if line])
    allowed = {"triton_bundle"}
    for module, owners in metadata.packages_distributions().items():
        if any(owner.lower().replace("_", "-") in distributions for owner in owners):
            allowed.add(module)
    return allowed


_GUARD = textwrap.dedent(
    """
    import sys
    ALLOWED = set({allowed!r})

    class OnlyTheImagesPackages:
        def find_spec(self, name, path=None, target=None):
            top = name.partition(".")[0]
            if top in sys.stdlib_module_names or top in ALLOWED or top.startswith("_"):
                return None
            raise ModuleNotFoundError(f"{{name}} is not installed in this image", name=name)

    sys.meta_path.insert(0, OnlyTheImagesPackages())
    """
)


def _run_in_image(image: str, code: str, *args: str) -> subprocess.CompletedProcess[str]:
    allowed = sorted(_allowed_modules(ROOT / "docker" / image / "requirements.txt"))
    program = _GUARD.format(allowed=allowed) + textwrap.dedent(code)
    return subprocess.run(
        [sys.executable, "-c", program, *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        check=False,
    )


def test_the_guard_refuses_what_an_image_lacks() -> None:
    result = _run_in_image("triton", "import onnx")
    assert result.returncode != 0 and "onnx is not installed in this image" in result.stderr


def test_triton_image_runs_the_preflight(tmp_path: Path) -> None:
    # The entrypoint's `python3 -m triton_bundle.serving.preflight_cli` on a repository with an engine.
    from triton_bundle.engine.manifest import EngineManifest, ProfileDims

    version = tmp_path / "m" / "1"
    version.mkdir(parents=True)
    (version / "model.plan").write_bytes(b"plan")
    manifest = EngineManifest(
        builder="tensorrt",
        tensorrt_version="10.13.3.9",
        compute_capability="9.0",
        precision="fp16",
        profiles=[ProfileDims(shapes={"x": ([1], [8], [32])})],
        source_onnx="model.onnx",
        source_onnx_sha256="0" * 64,
    )
    (version / "engine.json").write_text(manifest.model_dump_json(), encoding="utf-8")
    code = """
        import sys
        from triton_bundle.serving.preflight_cli import main
        sys.argv = ["preflight", "--repository", sys.argv[1], "--tensorrt-version", "10.13.3",
                    "--compute-capability", "9.0"]
        main()
    """
    result = _run_in_image("triton", code, str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert "preflight passed" in result.stderr


STAGE_CLIS = sorted(f"triton_bundle.{p.parent.name}.cli" for p in (ROOT / "triton_bundle").glob("*/cli.py"))


@pytest.mark.parametrize("image", ["engine-builder", "locust"])
def test_cli_imports_with_the_image_packages(image: str) -> None:
    # `triton-bundle build / repo generate` (engine-builder) and `triton-bundle loadtest` (locust) start
    # by importing the CLI, which mounts every stage's commands: none may need torch at import time,
    # and every stage CLI (mounted now or later) must import with the image's packages.
    code = f"""
        import importlib, sys
        from typer.testing import CliRunner
        for module in {STAGE_CLIS!r}:
            importlib.import_module(module)
        from triton_bundle.cli import app
        result = CliRunner().invoke(app, ["--help"])
        print(result.output)
        sys.exit(result.exit_code)
    """
    result = _run_in_image(image, code)
    assert result.returncode == 0, result.stdout + result.stderr


def test_locust_image_prepares_the_kubernetes_master(tmp_path: Path) -> None:
    # The master pod's first step, with only the locust image's packages.
    from triton_bundle.loadtest.settings import LoadSettings

    code = """
        import runpy, sys
        sys.argv = ["prepare_master.py", *sys.argv[1:]]
        runpy.run_path("docker/locust/prepare_master.py", run_name="__main__")
    """
    spec = ROOT / "examples" / "minilm-intent" / "spec.yaml"
    result = _run_in_image(
        "locust", code, str(spec), "--url", "triton:8000", "--workers", "3", "--out", str(tmp_path)
    )
    assert result.returncode == 0, result.stderr
    settings = LoadSettings.read(Path(result.stdout.strip()))
    assert settings.endpoint.url == "triton:8000" and settings.endpoint.metrics_url == "triton:8002"
    assert settings.workers == 3 and settings.workload_path.is_file()

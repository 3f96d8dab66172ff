"""`triton-bundle infer` for image and tensor models (issue 13 item 4), through the real entry point
(`triton_bundle.cli.main`) against a real local Triton serving models the bundle exported and generated:
two image classifiers (ViT, ResNet) and two tensor models (a DCGAN-like generator, a two-input scorer).

Also runs the README's image and tensor `infer` examples as written, and checks that bad input ends in
one line on stderr and exit code 2.
"""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from fixtures.export_builders import (
    draw_images,
    make_spec,
    save_module_weights,
    save_vision_checkpoint,
    tensor_spec_fields,
    write_latents,
)

from triton_bundle.client.client import TritonClient
from triton_bundle.manifest import Manifest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
CLIENT_MODELS = Path(__file__).parent / "fixtures" / "client_models"
CLI_MODELS = Path(__file__).parent / "fixtures" / "cli_models.py"
IMAGE_MODELS = ("tiny-vit", "tiny-resnet")
TENSOR_MODELS = ("tiny-gan_model", "scorer_model")


def _export_and_generate(spec, work: Path, out: Path) -> Path:
    from triton_bundle.export.stage import export_model
    from triton_bundle.repository.generate import generate_repository

    result = export_model(spec, work)
    assert result.report.passed, result.report.failures
    return generate_repository(spec, work, out_dir=out, warmup=False)


def _scorer_spec(root: Path):
    import torch
    from fixtures.cli_models import ConditionedScorer
    from safetensors.torch import save_file

    torch.manual_seed(0)
    weights = root / "scorer.safetensors"
    save_file(ConditionedScorer().state_dict(), str(weights))
    rng = np.random.default_rng(2)
    eval_npz = root / "scorer-eval.npz"
    np.savez(
        eval_npz,
        latent=rng.standard_normal((6, 16)).astype(np.float32),
        class_id=rng.integers(0, 5, (6, 1)).astype(np.int64),
    )
    fields = {
        "name": "scorer",
        "task": "tensor",
        "source": {
            "kind": "torch-module",
            "module": f"{CLI_MODELS}:ConditionedScorer",
            "weights": str(weights),
        },
        "data": {"eval": str(eval_npz)},
        "inputs": [
            {"name": "latent", "dtype": "float32", "shape": ["batch", 16]},
            {"name": "class_id", "dtype": "int64", "shape": ["batch", 1]},
        ],
        "outputs": [{"name": "scores", "dtype": "float32", "shape": ["batch", 4]}],
    }
    return make_spec(root, **fields)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory):
    """One Triton: the four generated repositories plus the echo text model (a text-only model)."""
    from triton_bundle.serving.local_triton import LocalTriton, ServerConfig

    root = tmp_path_factory.mktemp("cli-tasks")
    images = draw_images(root / "eval-images", count=6)
    repos = []
    for arch, name in zip(("vit", "resnet"), IMAGE_MODELS, strict=True):
        checkpoint = save_vision_checkpoint(root / f"{arch}-ckpt", arch)
        spec = make_spec(
            root,
            name=name,
            task="image-classification",
            source={"path": str(checkpoint)},
            data={"eval": str(images)},
        )
        repos.append(_export_and_generate(spec, root / f"{arch}-work", root / f"{arch}-repo"))
    latents = write_latents(root / "gan-eval.npz", rows=6)
    weights = save_module_weights(root / "gan.safetensors", "TinyGenerator", width=8)
    gan = make_spec(
        root,
        **tensor_spec_fields(
            weights,
            latents,
            "TinyGenerator",
            name="tiny-gan",
            module_kwargs={"width": 8},
            outputs=[{"name": "image", "dtype": "float32", "shape": ["batch", 3, 32, 32]}],
        ),
    )
    repos.append(_export_and_generate(gan, root / "gan-work", root / "gan-repo"))
    repos.append(_export_and_generate(_scorer_spec(root), root / "scorer-work", root / "scorer-repo"))
    echo = root / "echo-repo"
    shutil.copytree(CLIENT_MODELS, echo, ignore=shutil.ignore_patterns("__pycache__"))
    config = ServerConfig(
        repository=repos[0],
        log_file=root / "triton.log",
        extra_args=[f"--model-repository={r}" for r in [*repos[1:], echo]],
    )
    onnx = {
        "tiny-gan_model": Manifest.load(root / "gan-work", "tiny-gan").stages["export"].artifact("onnx"),
        "scorer_model": Manifest.load(root / "scorer-work", "scorer").stages["export"].artifact("onnx"),
    }
    with LocalTriton(config) as server:
        yield {"server": server, "onnx": onnx}


def _cli(args: list[str], monkeypatch, capsys) -> tuple[int, str, str]:
    """`triton-bundle ARGS` in this process, through the console script's entry point."""
    from triton_bundle.cli import main

    monkeypatch.setattr(sys, "argv", ["triton-bundle", *args])
    with pytest.raises(SystemExit) as done:
        main()
    out, err = capsys.readouterr()
    return done.value.code or 0, out, err


def _one_error_line(code: int, err: str) -> str:
    assert code == 2, err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


def _photos(directory: Path, count: int) -> list[Path]:
    """`count` images in mixed sizes and formats, plus a non-image file the directory walk must skip."""
    listing = draw_images(directory, count=count)
    (directory / "README.txt").write_text("not an image", encoding="utf-8")
    return [directory.parent / json.loads(line)["image"] for line in listing.read_text().splitlines()]


@pytest.mark.parametrize("model", IMAGE_MODELS)
def test_infer_sends_image_files_and_directories_as_bytes(
    served, model, tmp_path, monkeypatch, capsys
) -> None:
    """10 images (over the models' max batch of 8) from a directory: one line per image, in path order,
    the same labels and scores as the Python client gives for the same bytes."""
    url = served["server"].http_url
    paths = sorted(_photos(tmp_path / "photos", 10))
    code, out, err = _cli(
        ["infer", "--file", str(tmp_path / "photos"), "-m", model, "-u", url], monkeypatch, capsys
    )
    assert code == 0, err
    rows = [json.loads(line) for line in out.splitlines()]
    assert [row["source"] for row in rows] == [str(p) for p in paths]
    with TritonClient(url) as client:
        expected = client.classify_images(model, [p.read_bytes() for p in paths])
    assert [row["labels"] for row in rows] == [e.labels for e in expected]
    np.testing.assert_allclose([row["scores"] for row in rows], [e.scores for e in expected], rtol=1e-6)
    assert {label for row in rows for label in row["labels"]} <= {"circle", "square", "triangle"}

    code, out, err = _cli(
        ["infer", str(paths[3]), str(paths[0]), "-m", model, "-u", url], monkeypatch, capsys
    )
    assert code == 0, err
    assert [json.loads(line)["labels"] for line in out.splitlines()] == [rows[3]["labels"], rows[0]["labels"]]

    # A .jsonl list of image paths (a spec's data.eval for images) works too, in its own order.
    listing = tmp_path / "photos.jsonl"
    listed = [(tmp_path / json.loads(line)["image"]).resolve() for line in listing.read_text().splitlines()]
    code, out, err = _cli(["infer", "-f", str(listing), "-m", model, "-u", url], monkeypatch, capsys)
    assert code == 0, err
    by_path = {Path(row["source"]).resolve(): row["labels"] for row in rows}
    assert [json.loads(line)["labels"] for line in out.splitlines()] == [by_path[p] for p in listed]


@pytest.mark.parametrize("model", TENSOR_MODELS)
def test_infer_tensor_npz_in_npz_out_matches_onnxruntime(
    served, model, tmp_path, monkeypatch, capsys
) -> None:
    """11 rows (over the max batch of 8): the served outputs equal onnxruntime on the exported graph."""
    rng = np.random.default_rng(5)
    inputs = {"latent": rng.standard_normal((11, 16)).astype(np.float32)}
    if model == "scorer_model":
        inputs["class_id"] = rng.integers(0, 5, (11, 1)).astype(np.int64)
    np.savez(tmp_path / "in.npz", **inputs)
    session = ort.InferenceSession(str(served["onnx"][model]), providers=["CPUExecutionProvider"])
    expected = dict(zip([o.name for o in session.get_outputs()], session.run(None, inputs), strict=True))

    url = f"grpc://{served['server'].grpc_url}"
    out_file = tmp_path / "out.npz"
    code, _, err = _cli(
        ["infer", str(tmp_path / "in.npz"), "-m", model, "-u", url, "--out", str(out_file)],
        monkeypatch,
        capsys,
    )
    assert code == 0, err
    with np.load(out_file) as got:
        assert sorted(got.files) == sorted(expected)
        for name, array in expected.items():
            np.testing.assert_allclose(got[name], array, atol=1e-5)

    code, out, err = _cli(
        ["infer", "--file", str(tmp_path / "in.npz"), "-m", model, "-u", url], monkeypatch, capsys
    )
    assert code == 0, err
    rows = [json.loads(line) for line in out.splitlines()]
    assert [row["row"] for row in rows] == list(range(11))
    for name, array in expected.items():
        np.testing.assert_allclose([row["outputs"][name] for row in rows], array, atol=1e-5)


def _readme_examples() -> list[str]:
    """The commands of the README's per-task section."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Tasks: what is served", 1)[1].split("\n## ", 1)[0]
    return [
        line.strip()
        for line in section.splitlines()
        if line.startswith(("    triton-bundle", "    python -c"))
    ]


def test_readme_image_and_tensor_examples_work_as_written(served, tmp_path, monkeypatch, capsys) -> None:
    examples = [c for c in _readme_examples() if "tiny-vit" in c or "tiny-gan" in c or c.startswith("python")]
    assert len(examples) == 5, examples
    monkeypatch.chdir(tmp_path)
    for name in ("cat.jpg", "dog.png"):
        _photos(tmp_path / "drawn", 2)[0].rename(tmp_path / "drawn" / name)
    shutil.copytree(tmp_path / "drawn", tmp_path / "photos")
    server = served["server"]
    ports = {"127.0.0.1:8000": server.http_url, "127.0.0.1:8001": server.grpc_url}
    for command in examples:
        for default, real in ports.items():
            command = command.replace(default, real)
        args = shlex.split(command.split("  #")[0])
        if args[0] == "python":
            subprocess.run([sys.executable, *args[1:]], check=True, cwd=tmp_path, timeout=60)
            continue
        target = args.index(">") if ">" in args else None
        redirect = args[target + 1] if target is not None else None
        args = args[1:target]
        if "-u" not in args:
            args += ["-u", server.http_url]
        code, out, err = _cli(args, monkeypatch, capsys)
        assert code == 0, (command, err)
        if redirect:
            Path(redirect).write_text(out, encoding="utf-8")
    labels = [json.loads(line) for line in (tmp_path / "labels.jsonl").read_text().splitlines()]
    assert sorted(row["source"] for row in labels) == sorted(
        str(p.relative_to(tmp_path)) for p in (tmp_path / "photos").glob("*.*g")
    )
    with np.load(tmp_path / "images.npz") as images:
        assert images["image"].shape == (4, 3, 32, 32) and images["image"].dtype == np.float32
    assert len((tmp_path / "rows.jsonl").read_text().splitlines()) == 4


def test_bad_inputs_are_one_line_and_exit_2(served, tmp_path, monkeypatch, capsys) -> None:
    url = served["server"].http_url
    not_image = tmp_path / "notes.png"
    not_image.write_text("hello, I am text", encoding="utf-8")
    empty_dir = tmp_path / "empty"
    empty_dir.mkdir()
    np.savez(tmp_path / "f64.npz", latent=np.zeros((2, 16)))
    np.savez(tmp_path / "named.npz", z=np.zeros((2, 16), np.float32))
    np.savez(tmp_path / "short.npz", latent=np.zeros((2, 15), np.float32))
    binary = tmp_path / "blob.bin"
    binary.write_bytes(bytes(range(256)) * 4)
    cases = {
        ("infer", str(not_image), "-m", "tiny-vit"): "notes.png: not an image",
        ("infer", "--file", str(empty_dir), "-m", "tiny-vit"): "no image files in this directory",
        ("infer", str(tmp_path / "f64.npz"), "-m", "tiny-gan_model"): "input 'latent' expects FP32, got FP64",
        (
            "infer",
            str(tmp_path / "named.npz"),
            "-m",
            "tiny-gan_model",
        ): "missing input(s) latent; unknown input(s) z",
        ("infer", str(tmp_path / "short.npz"), "-m", "tiny-gan_model"): "input 'latent' dim 1 must be 16",
        ("infer", str(binary), "-m", "tiny-gan_model"): "must be a NumPy .npz archive",
        ("infer", str(tmp_path / "f64.npz"), "-m", "tiny-gan_model", "-o", "x.json"): "written as a .npz",
        ("infer", "--file", str(binary), "-m", "echo_text"): "blob.bin: not UTF-8 text",
        ("infer", "--file", str(tmp_path / "f64.npz"), "-m", "echo_text"): "looks like a .npz tensor archive",
        ("infer", "hello", "-m", "no-such-model"): "model 'no-such-model' is not served",
    }
    for args, expected in cases.items():
        code, out, err = _cli([*args, "-u", url], monkeypatch, capsys)
        line = _one_error_line(code, err)
        assert expected in line, (args, line)
        assert out == ""

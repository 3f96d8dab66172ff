"""The TensorRT-LLM repository target: generated from tiny GPT-2 and Llama checkpoints, checked
structurally by `repo validate`, and its Python pre/post models run in the real local Triton.

The engine itself needs a GPU and the TensorRT-LLM container: tests/test_trtllm_gpu.py.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from google.protobuf import text_format
from tokenizers import Tokenizer
from trtllm_models import PROMPTS, tiny_decoder
from typer.testing import CliRunner

from triton_bundle.manifest import Manifest
from triton_bundle.repository.cli import app as repo_app
from triton_bundle.repository.generate import generate_repository
from triton_bundle.repository.layout import CONFIG_FILE, read_config
from triton_bundle.repository.sources import RepositoryError
from triton_bundle.repository.trtllm import TrtllmBuild
from triton_bundle.repository.validate import validate_repository
from triton_bundle.spec import load_spec


@pytest.fixture(scope="module", params=["gpt2", "llama"])
def family_spec(request, tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp(f"trtllm-{request.param}")
    checkpoint = tiny_decoder(root, request.param)
    (root / "prompts.jsonl").write_text("".join(json.dumps({"text": p}) + "\n" for p in PROMPTS[:3]))
    spec_path = root / "spec.yaml"
    spec_path.write_text(
        yaml.safe_dump(
            {
                "name": f"tiny-{request.param}",
                "task": "text-generation",
                "source": {"path": str(checkpoint)},
                "data": {"eval": "prompts.jsonl"},
                "generation": {"max_context": 96, "max_new_tokens": 32, "max_sequences": 4},
                "repository": {"target": "trtllm"},
            }
        )
    )
    return request.param, load_spec(spec_path), root


@pytest.fixture(scope="module")
def generated(family_spec):
    family, spec, root = family_spec
    repo = generate_repository(spec, root / "artifacts", out_dir=root / "repo")
    return family, spec, repo


def _config(repo: Path, model: str):
    return read_config(repo / model / CONFIG_FILE)


def _write(repo: Path, model: str, config) -> None:
    (repo / model / CONFIG_FILE).write_text(text_format.MessageToString(config))


def test_generates_the_four_models_with_the_contract_and_engine_record(generated):
    family, spec, repo = generated
    name = spec.name
    assert {p.name for p in repo.iterdir() if p.is_dir()} == {
        name,
        f"{name}_preprocessing",
        f"{name}_tensorrt_llm",
        f"{name}_postprocessing",
    }
    ensemble = _config(repo, name)
    inputs = {i.name: (i.data_type, i.optional) for i in ensemble.input}
    assert set(inputs) == {
        "text_input",
        "max_tokens",
        "temperature",
        "top_k",
        "top_p",
        "seed",
        "stop",
        "stream",
    }
    assert not inputs["text_input"][1] and not inputs["max_tokens"][1] and inputs["stream"][1]
    assert [o.name for o in ensemble.output] == ["text_output"]

    engine = _config(repo, f"{name}_tensorrt_llm")
    params = {k: v.string_value for k, v in engine.parameters.items()}
    assert engine.backend == "tensorrtllm" and engine.model_transaction_policy.decoupled
    assert params["gpt_model_type"] == "inflight_fused_batching" and params["max_beam_width"] == "1"
    assert params["gpt_model_path"] == f"/models/{name}_tensorrt_llm/1"
    assert engine.max_batch_size == spec.generation.max_sequences == 4

    build = TrtllmBuild.model_validate_json((repo / f"{name}_tensorrt_llm" / "build.json").read_text())
    assert build.family == family and f"/{'gpt' if family == 'gpt2' else 'llama'}/" in build.convert_script
    assert (build.max_seq_len, build.max_input_len) == (96, 96 - 32)
    convert, trtllm_build = json.loads((repo / f"{name}_tensorrt_llm" / "build.json").read_text())["commands"]
    assert convert.startswith("python3 $TENSORRT_LLM_DIR/examples/models/core/")
    assert "--model_dir $CHECKPOINT" in convert and f"--dtype {spec.repository.trtllm.dtype}" in convert
    assert trtllm_build.startswith("trtllm-build --checkpoint_dir $WORK/trtllm_checkpoint")
    assert f"--output_dir {params['gpt_model_path']}" in trtllm_build and "--max_seq_len 96" in trtllm_build

    problems = validate_repository(repo)
    assert [p for p in problems if p.severity == "error"] == []
    assert [(p.model, p.severity) for p in problems] == [(f"{name}_tensorrt_llm", "warning")]
    assert "no engine yet" in problems[0].message
    record = Manifest.load(repo.parent / "artifacts", name).require("repository", "repo generate")
    assert record.details["target"] == "trtllm" and "docker/trtllm" in record.details["notes"][0]


def _broken_copy(repo: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "repo"
    shutil.copytree(repo, copy)
    return copy


def test_validate_catches_what_would_break_serving(generated, tmp_path: Path):
    _, spec, repo = generated
    name, engine = spec.name, f"{spec.name}_tensorrt_llm"
    cases = {
        "not decoupled": lambda c: c.model_transaction_policy.ClearField("decoupled"),
        "template placeholder": lambda c: c.parameters["gpt_model_path"].__setattr__(
            "string_value", "${engine_dir}"
        ),
        "not in-flight batching": lambda c: c.parameters["gpt_model_type"].__setattr__("string_value", "V1"),
        "'batch_scheduler_policy' is missing": lambda c: c.parameters.pop("batch_scheduler_policy"),
    }
    for expected, breakage in cases.items():
        copy = _broken_copy(repo, tmp_path / expected.replace(" ", "_").replace("'", ""))
        config = _config(copy, engine)
        breakage(config)
        _write(copy, engine, config)
        errors = [p.message for p in validate_repository(copy) if p.severity == "error"]
        assert any(expected in m for m in errors), (expected, errors)

    copy = _broken_copy(repo, tmp_path / "contract")
    ensemble = _config(copy, name)
    ensemble.input[0].data_type = ensemble.input[1].data_type  # text_input INT32
    del ensemble.ensemble_scheduling.step[1].input_map["streaming"]
    _write(copy, name, ensemble)
    errors = [p.message for p in validate_repository(copy) if p.severity == "error"]
    assert any("'text_input' is TYPE_INT32" in m for m in errors)
    assert any("'streaming' input is not wired to 'stream'" in m for m in errors)
    result = CliRunner().invoke(repo_app, ["validate", str(copy)])
    assert result.exit_code == 1 and "streaming" in result.output

    built = _broken_copy(repo, tmp_path / "built")
    (built / engine / "1" / "rank0.engine").write_bytes(b"engine")
    assert validate_repository(built) == [], "with an engine in place nothing is left to report"


def test_refuses_specs_it_cannot_serve(family_spec, tmp_path: Path):
    _, spec, _ = family_spec
    classifier = spec.model_copy(update={"task": "text-classification"})
    with pytest.raises(RepositoryError, match="task text-generation"):
        generate_repository(classifier, tmp_path / "a", out_dir=tmp_path / "r1", target="trtllm")
    odd = tmp_path / "bert"
    shutil.copytree(spec.resolve(spec.source.path), odd)
    config = json.loads((odd / "config.json").read_text())
    (odd / "config.json").write_text(json.dumps({**config, "model_type": "bert"}))
    other = spec.model_copy(update={"source": spec.source.model_copy(update={"path": odd})})
    with pytest.raises(
        RepositoryError, match=r"model_type 'bert'.*supported: \['gpt2', 'llama', 'mistral'\]"
    ):
        generate_repository(other, tmp_path / "b", out_dir=tmp_path / "r2", target="trtllm")
    assert not (tmp_path / "r2").exists(), "a refused generation leaves nothing behind"


@pytest.mark.slow
def test_pre_and_post_models_tokenize_and_detokenize_in_triton(generated, tmp_path: Path):
    """The two Python models of the route, alone in the local Triton (the engine needs a GPU)."""
    import tritonclient.http as httpclient
    from tritonclient.utils import InferenceServerException

    from triton_bundle.serving.local_triton import LocalTriton, ServerConfig

    _, spec, repo = generated
    pre, post = f"{spec.name}_preprocessing", f"{spec.name}_postprocessing"
    served = tmp_path / "served"
    for model in (pre, post):
        shutil.copytree(repo / model, served / model)
    tok = Tokenizer.from_file(str(repo / pre / "1" / "tokenizer.json"))
    with LocalTriton(ServerConfig(repository=served, log_file=tmp_path / "triton.log")) as server:
        client = httpclient.InferenceServerClient(server.http_url)

        def preprocess(prompt: str, max_tokens: int, stop: list[str]):
            tensors = []
            for name, value, dtype in (
                ("QUERY", np.array([[prompt.encode()]], dtype=object), "BYTES"),
                ("REQUEST_OUTPUT_LEN", np.array([[max_tokens]], dtype=np.int32), "INT32"),
                ("STOP_WORDS_DICT", np.array([[s.encode() for s in stop]], dtype=object), "BYTES"),
            ):
                tensor = httpclient.InferInput(name, list(value.shape), dtype)
                tensor.set_data_from_numpy(value)
                tensors.append(tensor)
            return client.infer(pre, tensors)

        out = preprocess(PROMPTS[0], 8, ["business", "."])
        ids = tok.encode(PROMPTS[0]).ids
        assert out.as_numpy("INPUT_ID")[0].tolist() == ids and out.as_numpy("REQUEST_INPUT_LEN")[0, 0] == len(
            ids
        )
        stops = out.as_numpy("STOP_WORDS_IDS")[0]
        first = tok.encode("business", add_special_tokens=False).ids
        assert stops[0, : len(first)].tolist() == first and stops[1, 0] == len(first)
        end = json.loads((spec.resolve(spec.source.path) / "config.json").read_text())["eos_token_id"]
        assert out.as_numpy("OUT_END_ID")[0, 0] == end
        for prompt, max_tokens, reason in (
            ("", 8, "non-empty"),
            (PROMPTS[0], 33, "max_tokens"),
            ("word " * 200, 8, "at most 64"),
        ):
            with pytest.raises(InferenceServerException, match=reason):
                preprocess(prompt, max_tokens, [])

        tokens = np.array([[[*ids, 0, 0]]], dtype=np.int32)  # [batch 1, beam 1, ids + padding]
        inputs = [httpclient.InferInput("TOKENS_BATCH", list(tokens.shape), "INT32"),
                  httpclient.InferInput("SEQUENCE_LENGTH", [1, 1], "INT32")]  # fmt: skip
        inputs[0].set_data_from_numpy(tokens)
        inputs[1].set_data_from_numpy(np.array([[len(ids)]], dtype=np.int32))
        text = client.infer(post, inputs).as_numpy("OUTPUT")[0, 0].decode()
        assert text == tok.decode(ids) == PROMPTS[0]


def test_build_script_runs_the_recorded_commands_into_the_engine_dir(family_spec, tmp_path: Path):
    """docker/trtllm/build-engine.sh end to end with stand-ins for NVIDIA's two tools (the real ones need
    a GPU: tests/test_trtllm_gpu.py): the recorded commands expand, and the engine lands where
    gpt_model_path points, after which validate has nothing left to report."""
    import os
    import subprocess

    _, spec, _ = family_spec
    repo = tmp_path / "repo"
    trt = spec.repository.trtllm.model_copy(update={"model_root": str(repo)})
    local = spec.model_copy(update={"repository": spec.repository.model_copy(update={"trtllm": trt})})
    generate_repository(local, tmp_path / "artifacts", out_dir=repo)
    tools = tmp_path / "tools"
    convert = (
        tools
        / "trtllm"
        / json.loads((repo / f"{spec.name}_tensorrt_llm" / "build.json").read_text())["convert_script"]
    )
    convert.parent.mkdir(parents=True)
    convert.write_text(  # records its arguments, writes the converted checkpoint
        "import pathlib, sys\nout = pathlib.Path(sys.argv[sys.argv.index('--output_dir') + 1])\n"
        "out.mkdir(parents=True)\n(out / 'args.txt').write_text(' '.join(sys.argv[1:]))\n"
    )
    fake_build = tools / "bin" / "trtllm-build"
    fake_build.parent.mkdir()
    fake_build.write_text(
        '#!/usr/bin/env bash\nset -e\nwhile [[ $# -gt 0 ]]; do case "$1" in --checkpoint_dir) ckpt="$2";;'
        ' --output_dir) out="$2";; esac; shift; done\ntest -f "$ckpt/args.txt"\nmkdir -p "$out"\n'
        'echo engine > "$out/rank0.engine"\n'
    )
    fake_build.chmod(0o755)
    env = {
        **os.environ,
        "PATH": f"{fake_build.parent}:{os.environ['PATH']}",
        "MODEL_REPOSITORY": str(repo),
        "CHECKPOINT": str(spec.resolve(spec.source.path)),
        "TENSORRT_LLM_DIR": str(tools / "trtllm"),
        "WORK": str(tmp_path / "work"),
    }
    script = Path(__file__).parents[1] / "docker" / "trtllm" / "build-engine.sh"
    done = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    args = (tmp_path / "work" / "trtllm_checkpoint" / "args.txt").read_text()
    assert f"--model_dir {env['CHECKPOINT']}" in args and "--dtype float16" in args
    assert (repo / f"{spec.name}_tensorrt_llm" / "1" / "rank0.engine").is_file()
    assert validate_repository(repo) == []

    missing = subprocess.run(
        ["bash", str(script)], env={**env, "CHECKPOINT": str(tmp_path)}, capture_output=True, text=True
    )
    assert missing.returncode == 2 and "holds no Hugging Face checkpoint" in missing.stderr


def _llmapi(spec):
    trt = spec.repository.trtllm.model_copy(update={"flavor": "llmapi"})
    return spec.model_copy(update={"repository": spec.repository.model_copy(update={"trtllm": trt})})


def test_llmapi_flavor_maps_the_contract_onto_nvidias_llm_api_model(family_spec, tmp_path: Path):
    import subprocess

    _, spec, _ = family_spec
    spec = _llmapi(spec)
    repo = generate_repository(spec, tmp_path / "artifacts", out_dir=tmp_path / "repo")
    llm = f"{spec.name}_tensorrt_llm"
    assert {p.name for p in repo.iterdir() if p.is_dir()} == {spec.name, llm}
    step = _config(repo, spec.name).ensemble_scheduling.step[0]
    assert step.model_name == llm and dict(step.input_map)["sampling_param_max_tokens"] == "max_tokens"
    assert dict(step.input_map)["streaming"] == "stream" and dict(step.output_map) == {
        "text_output": "text_output"
    }
    settings = yaml.safe_load((repo / llm / "1" / "model.yaml").read_text())
    assert settings["model"] == "/checkpoint" and settings["backend"] == "pytorch"
    assert settings["triton_config"] == {"max_batch_size": 0, "decoupled": True}
    assert settings["max_seq_len"] == spec.generation.max_context
    # The model.py NVIDIA ships sets max_batch_size / decoupled from model.yaml: config.pbtxt leaves them out.
    config = _config(repo, llm)
    assert config.max_batch_size == 0 and not config.HasField("model_transaction_policy")
    problems = validate_repository(repo)
    assert [(p.severity, "model.py, helpers.py" in p.message) for p in problems] == [("warning", True)]

    broken = _broken_copy(repo, tmp_path / "broken")
    path = broken / llm / "1" / "model.yaml"
    path.write_text(yaml.safe_dump({**settings, "triton_config": {"max_batch_size": 8, "decoupled": False}}))
    errors = [p.message for p in validate_repository(broken) if p.severity == "error"]
    assert any("decoupled is not true" in m for m in errors) and any(
        "max_batch_size is 8" in m for m in errors
    )

    # The build script copies NVIDIA's two files (a stand-in checkout here) and builds nothing.
    source = tmp_path / "trtllm" / "triton_backend" / "all_models" / "llmapi" / "tensorrt_llm" / "1"
    source.mkdir(parents=True)
    for name in ("model.py", "helpers.py"):
        (source / name).write_text(f"# {name}\n")
    env = {"PATH": "/usr/bin:/bin", "MODEL_REPOSITORY": str(repo), "TENSORRT_LLM_DIR": str(tmp_path / "trtllm"),
           "CHECKPOINT": str(spec.resolve(spec.source.path)), "WORK": str(tmp_path / "work")}  # fmt: skip
    script = Path(__file__).parents[1] / "docker" / "trtllm" / "build-engine.sh"
    done = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert validate_repository(repo) == []


def test_trtllm_repository_from_the_fine_tuned_decoder(textgen_workdir, tmp_path: Path):
    """The same spec that serves locally, taken to the TensorRT-LLM target from its fine-tuned checkpoint."""
    spec, shared = textgen_workdir
    workdir = tmp_path / "artifacts"  # a copy: the session's manifest keeps its local repository record
    shutil.copytree(shared, workdir)
    repo = generate_repository(spec, workdir, out_dir=tmp_path / "trtllm", target="trtllm")
    problems = validate_repository(repo)
    assert [p.severity for p in problems] == ["warning"], problems  # only: no engine built yet
    build = TrtllmBuild.model_validate_json((repo / f"{spec.name}_tensorrt_llm" / "build.json").read_text())
    assert (
        build.family == spec.name.removeprefix("tiny-") and build.max_seq_len == spec.generation.max_context
    )
    local = Manifest.load(workdir, spec.name)
    assert local.stages["repository"].details["target"] == "trtllm"

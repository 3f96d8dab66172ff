"""The TensorRT-LLM route for real: engine built, served by Triton's tensorrtllm backend, greedy output
equal to PyTorch's, streamed token by token. Needs an NVIDIA GPU inside the TensorRT-LLM Triton image:

    docker run --rm --gpus all -v "$PWD":"$PWD" -w "$PWD" \\
      nvcr.io/nvidia/tritonserver:26.07-trtllm-python-py3 bash -c \\
      'pip install -q -e ".[dev]" && python3 -m pytest -q -m gpu tests/test_trtllm_gpu.py'

(TENSORRT_LLM_DIR may point at a TensorRT-LLM checkout of the image's version; otherwise the build script
clones it.) Elsewhere every test here is skipped.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = [pytest.mark.gpu, pytest.mark.slow]
ROOT = Path(__file__).parents[1]
BACKEND = Path("/opt/tritonserver/backends/tensorrtllm")


def _needs_trtllm() -> None:
    pytest.importorskip("tensorrt_llm", reason="needs the TensorRT-LLM Triton image")
    if not BACKEND.is_dir() or shutil.which("tritonserver") is None:
        pytest.skip(f"needs tritonserver with the tensorrtllm backend ({BACKEND})")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _post(url: str, body: dict) -> bytes:
    request = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=120) as response:
        return response.read()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory):
    _needs_trtllm()
    from trtllm_models import PROMPTS, tiny_decoder

    from triton_bundle.repository.generate import generate_repository
    from triton_bundle.spec import ModelSpec

    root = tmp_path_factory.mktemp("trtllm-gpu")
    checkpoint = tiny_decoder(root, "gpt2")
    (root / "prompts.jsonl").write_text(json.dumps({"text": PROMPTS[0]}) + "\n")
    repo = root / "repo"
    spec = ModelSpec.model_validate(
        {
            "name": "tiny-gpt2",
            "task": "text-generation",
            "source": {"path": str(checkpoint)},
            "data": {"eval": str(root / "prompts.jsonl")},
            "generation": {"max_context": 96, "max_new_tokens": 32, "max_sequences": 4},
            "repository": {"target": "trtllm", "trtllm": {"model_root": str(repo)}},
        }
    )
    generate_repository(spec, root / "artifacts", out_dir=repo)
    env = {
        **os.environ,
        "MODEL_REPOSITORY": str(repo),
        "CHECKPOINT": str(checkpoint),
        "WORK": str(root / "w"),
    }
    build = subprocess.run(
        ["bash", str(ROOT / "docker" / "trtllm" / "build-engine.sh")], env=env, capture_output=True, text=True
    )
    assert build.returncode == 0, build.stderr[-3000:]
    http = _free_port()
    server = subprocess.Popen(
        [
            "tritonserver",
            f"--model-repository={repo}",
            f"--http-port={http}",
            f"--grpc-port={_free_port()}",
            f"--metrics-port={_free_port()}",
        ],
        stdout=open(root / "triton.log", "wb"),  # noqa: SIM115 - closed with the process
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{http}/v2/health/ready", timeout=2).close()
                break
            except OSError:
                assert server.poll() is None, (root / "triton.log").read_text()[-3000:]
                time.sleep(1)
        yield spec, checkpoint, f"http://127.0.0.1:{http}/v2/models/{spec.name}"
    finally:
        server.terminate()
        server.wait(timeout=60)


def test_greedy_output_equals_pytorch_and_streams_token_by_token(served):
    import torch
    from tokenizers import Tokenizer
    from transformers import GPT2LMHeadModel
    from trtllm_models import PROMPTS

    from triton_bundle.loadtest.generation import sse_events

    _, checkpoint, url = served
    tok = Tokenizer.from_file(str(checkpoint / "tokenizer.json"))
    model = GPT2LMHeadModel.from_pretrained(checkpoint).eval()
    ids = torch.tensor([tok.encode(PROMPTS[0]).ids])
    with torch.no_grad():
        out = model.generate(ids, max_new_tokens=8, do_sample=False, pad_token_id=model.config.eos_token_id)
    expected = tok.decode(out[0, ids.shape[1] :].tolist(), skip_special_tokens=True)

    body = {"text_input": PROMPTS[0], "max_tokens": 8, "top_k": 1}
    whole = json.loads(_post(f"{url}/generate", body))["text_output"]
    assert whole == expected

    chunks = [
        e["text_output"] for e in sse_events([_post(f"{url}/generate_stream", {**body, "stream": True})])
    ]
    assert len(chunks) >= 2 and "".join(chunks) == expected

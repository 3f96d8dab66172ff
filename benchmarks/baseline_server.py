"""The baseline a user would otherwise deploy: the fine-tuned model in PyTorch eager behind Flask,
served by gunicorn sync workers (one request at a time per worker, one worker per core).

    with BaselineServer(checkpoint, log_file=Path("baseline.log")) as server:
        print(server.port)

The app runs in the workers (`create_app()` loads the model there, after the fork); settings travel in
environment variables because gunicorn builds the app from a module path.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from triton_bundle.errors import BundleError
from triton_bundle.net import free_port
from triton_bundle.processes import log_tail, stop_process_group

ROOT = Path(__file__).resolve().parents[1]
_ENV_CHECKPOINT = "BENCH_BASELINE_CHECKPOINT"
_ENV_MAX_LENGTH = "BENCH_BASELINE_MAX_LENGTH"
_ENV_THREADS = "BENCH_BASELINE_TORCH_THREADS"
_ENV_TOP_K = "BENCH_BASELINE_TOP_K"


class BaselineStartupError(BundleError, RuntimeError):
    """gunicorn exited or its workers did not answer in time; the message carries its log."""


def create_app():
    """The Flask app a user writes: tokenizer + AutoModelForSequenceClassification, eager, FP32."""
    import torch
    from flask import Flask, jsonify, request
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from triton_bundle.hf import quiet_offline

    quiet_offline()
    checkpoint = os.environ[_ENV_CHECKPOINT]
    max_length = int(os.environ.get(_ENV_MAX_LENGTH, "128"))
    top_k = int(os.environ.get(_ENV_TOP_K, "3"))
    torch.set_num_threads(int(os.environ.get(_ENV_THREADS, "1")))
    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    model = AutoModelForSequenceClassification.from_pretrained(checkpoint).eval()
    labels = [model.config.id2label[i] for i in range(model.config.num_labels)]
    top_k = min(top_k, len(labels))

    app = Flask("baseline")

    @app.get("/health")
    def health():
        return jsonify({"pid": os.getpid()})

    @app.post("/predict")
    def predict():
        text = request.get_json(force=True)["text"]
        encoded = tokenizer(text, truncation=True, max_length=max_length, return_tensors="pt")
        with torch.inference_mode():
            probabilities = model(**encoded).logits.softmax(-1)[0]
        scores, indices = probabilities.topk(top_k)
        return jsonify({"labels": [labels[i] for i in indices.tolist()], "scores": scores.tolist()})

    return app


@dataclass
class BaselineSettings:
    checkpoint: Path
    log_file: Path
    workers: int = 2
    torch_threads: int = 1
    max_length: int = 128
    top_k: int = 3
    ready_timeout_s: float = 180.0
    # The app gunicorn serves (module:factory()); text generation uses generation_baseline's.
    app: str = "benchmarks.baseline_server:create_app()"
    extra_env: dict[str, str] = field(default_factory=dict)


class BaselineServer:
    """gunicorn in its own process group on a free 127.0.0.1 port; stopped by that group's PID."""

    def __init__(self, settings: BaselineSettings) -> None:
        self.settings = settings
        self.port = 0
        self._process: subprocess.Popen[bytes] | None = None
        self._log = None
        self.worker_pids: set[int] = set()

    @property
    def pid(self) -> int:
        if self._process is None:
            raise RuntimeError("the baseline server has not been started")
        return self._process.pid

    def command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "gunicorn",
            "--workers",
            str(self.settings.workers),
            "--worker-class",
            "sync",
            "--bind",
            f"127.0.0.1:{self.port}",
            "--backlog",
            "256",
            "--timeout",
            "120",
            "--pythonpath",
            str(ROOT),
            self.settings.app,
        ]

    def start(self) -> BaselineServer:
        s = self.settings
        s.log_file.parent.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        env = {
            **os.environ,
            _ENV_CHECKPOINT: str(s.checkpoint),
            _ENV_MAX_LENGTH: str(s.max_length),
            _ENV_THREADS: str(s.torch_threads),
            _ENV_TOP_K: str(s.top_k),
            "HF_HUB_OFFLINE": "1",
            "TOKENIZERS_PARALLELISM": "false",
            **s.extra_env,
        }
        self._log = open(s.log_file, "wb")  # noqa: SIM115 - closed in stop()
        self._process = subprocess.Popen(
            self.command(),
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=str(ROOT),
            start_new_session=True,
        )
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self) -> None:
        """Ready once every worker has answered /health (each loads the model after the fork)."""
        deadline = time.monotonic() + self.settings.ready_timeout_s
        url = f"http://127.0.0.1:{self.port}/health"
        while len(self.worker_pids) < self.settings.workers:
            assert self._process is not None
            if self._process.poll() is not None:
                raise BaselineStartupError(
                    f"gunicorn exited with code {self._process.returncode}:\n{self._tail()}"
                )
            if time.monotonic() > deadline:
                raise BaselineStartupError(
                    f"{len(self.worker_pids)} of {self.settings.workers} baseline workers answered within "
                    f"{self.settings.ready_timeout_s:.0f} s:\n{self._tail()}"
                )
            with (
                contextlib.suppress(urllib.error.URLError, OSError, ValueError),
                urllib.request.urlopen(url, timeout=2.0) as response,
            ):
                self.worker_pids.add(int(json.loads(response.read())["pid"]))
                continue
            time.sleep(0.2)

    def _tail(self, lines: int = 25) -> str:
        return log_tail(self.settings.log_file, lines, missing="")

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None:
            stop_process_group(process, grace_s=20, whole_group=True)
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> BaselineServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

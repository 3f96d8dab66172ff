"""The decoder baseline a user would otherwise deploy: PyTorch eager `generate()` behind Flask under
gunicorn sync workers (one stream at a time per worker, one worker per core), streaming each token as a
server-sent event in the same shape as Triton's generate_stream, so one client measures both.

    BaselineServer(BaselineSettings(checkpoint, log_file, app=GENERATION_APP, extra_env=...))

POST /generate_stream {"text_input": ..., "max_tokens": N} -> `data: {"text_output": "<token>"}` events.
Greedy decoding, FP32, the KV cache of transformers' generate() (what a user gets by default).
"""

from __future__ import annotations

import json
import os
import queue
import threading
from collections.abc import Iterator

GENERATION_APP = "benchmarks.generation_baseline:create_generation_app()"
ENV_CHECKPOINT = "BENCH_BASELINE_CHECKPOINT"
ENV_THREADS = "BENCH_BASELINE_TORCH_THREADS"
ENV_MAX_NEW_TOKENS = "BENCH_BASELINE_MAX_NEW_TOKENS"


class _QueueStreamer:
    """transformers' streamer protocol: put() gets the prompt once, then each new token; end() closes."""

    def __init__(self) -> None:
        self.tokens: queue.Queue[int | None] = queue.Queue()
        self._prompt_seen = False

    def put(self, value) -> None:
        if not self._prompt_seen:
            self._prompt_seen = True
            return
        for token in value.reshape(-1).tolist():
            self.tokens.put(int(token))

    def end(self) -> None:
        if not getattr(self, "_ended", False):  # generate() ends it; run() again on errors
            self._ended = True
            self.tokens.put(None)


def create_generation_app():
    import torch
    from flask import Flask, Response, jsonify, request
    from tokenizers import Tokenizer
    from transformers import AutoModelForCausalLM

    from triton_bundle.hf import quiet_offline

    quiet_offline()
    checkpoint = os.environ[ENV_CHECKPOINT]
    torch.set_num_threads(int(os.environ.get(ENV_THREADS, "1")))
    max_new = int(os.environ.get(ENV_MAX_NEW_TOKENS, "256"))
    tokenizer = Tokenizer.from_file(os.path.join(checkpoint, "tokenizer.json"))
    model = AutoModelForCausalLM.from_pretrained(checkpoint).eval()
    eos = model.config.eos_token_id
    app = Flask("generation-baseline")

    @app.get("/health")
    def health():
        return jsonify({"pid": os.getpid()})

    @app.post("/generate_stream")
    def generate_stream():
        body = request.get_json(force=True)
        prompt, max_tokens = str(body.get("text_input", "")), int(body.get("max_tokens", 0))
        if not prompt.strip() or not 0 < max_tokens <= max_new:
            return jsonify({"error": f"expected a prompt and 0 < max_tokens <= {max_new}"}), 400
        ids = torch.tensor([tokenizer.encode(prompt).ids])
        streamer = _QueueStreamer()

        def run() -> None:
            try:
                with torch.inference_mode():
                    model.generate(
                        ids,
                        attention_mask=torch.ones_like(ids),
                        max_new_tokens=max_tokens,
                        do_sample=False,
                        pad_token_id=eos,
                        streamer=streamer,
                    )
            finally:
                streamer.end()  # also on an error: the response must end, not hang

        def events() -> Iterator[str]:
            thread = threading.Thread(target=run, daemon=True)
            thread.start()
            while (token := streamer.tokens.get()) is not None:
                yield f"data: {json.dumps({'text_output': tokenizer.decode([token])})}\n\n"
            thread.join()

        return Response(events(), mimetype="text/event-stream")

    return app

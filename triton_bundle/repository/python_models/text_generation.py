"""Triton Python-backend decoupled model: text in, a stream of text out, from a KV-cache ONNX decoder.

Shipped by triton-bundle and copied to `<model>/1/model.py` beside `model.onnx` and `tokenizer.json`.
The Triton tutorials' iterative-scheduling pattern, in the model: `execute` validates each request and
queues it; one scheduler thread runs the decoder for every running sequence together, one token per
step (in-flight batching). A request that arrives while others decode is prefilled and joins the batch
at the next step; a sequence that finishes or whose client cancels frees its slot at once.

Contract (the names Triton's generate endpoint and OpenAI-compatible frontend use): text_input (BYTES
[1]), max_tokens (INT32 [1]), optional temperature (FP32, 0 = greedy, the default), top_k (INT32, 0 =
off), top_p (FP32, (0, 1]), seed (UINT64), stop (BYTES [-1]), stream (BOOL). Output text_output (BYTES):
with stream, one response per generated token (its new text, "" while a character is incomplete) and
the final flag after the last; without, one response with the whole text. A bad request gets an
INVALID_ARG error (HTTP 400) of its own.

Parameters: model_file, tokenizer_file, eos_token_id, max_sequences, max_context, max_new_tokens,
intra_op_threads.
"""

from __future__ import annotations

import json
import queue
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils
from tokenizers import Tokenizer

FINAL = pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL
MAX_TEMPERATURE = 100.0


INVALID_PREFIX = "invalid request: "  # gRPC streams carry no status code: clients match this prefix


class RequestError(ValueError):
    """What is wrong with one request; it becomes that request's INVALID_ARG (400) error."""


@dataclass
class Sampling:
    temperature: float = 0.0
    top_k: int = 0
    top_p: float = 1.0
    seed: int | None = None


@dataclass
class Sequence:
    sender: object
    prompt: list[int]
    max_tokens: int
    sampling: Sampling
    stops: list[str]
    stream: bool
    rng: np.random.Generator
    tokens: list[int] = field(default_factory=list)
    past: list[np.ndarray] | None = None  # per cache tensor: [kv_heads, length, head_dim]
    sent_chars: int = 0

    @property
    def length(self) -> int:
        return len(self.prompt) + len(self.tokens)


def _scalar(request, name: str, default=None):
    tensor = pb_utils.get_input_tensor_by_name(request, name)
    if tensor is None:
        return default
    values = tensor.as_numpy().reshape(-1)
    if values.size != 1:
        raise RequestError(f"'{name}' must hold one value, got {values.size}")
    value = values[0]
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value.item()


def _stops(request) -> list[str]:
    tensor = pb_utils.get_input_tensor_by_name(request, "stop")
    if tensor is None:
        return []
    stops = [
        s.decode("utf-8", "replace") if isinstance(s, bytes) else str(s)
        for s in tensor.as_numpy().reshape(-1)
    ]
    return [s for s in stops if s]


def parse_sampling(request) -> Sampling:
    temperature = float(_scalar(request, "temperature", 0.0))
    top_k = int(_scalar(request, "top_k", 0))
    top_p = float(_scalar(request, "top_p", 1.0))
    seed = _scalar(request, "seed")
    if not 0.0 <= temperature <= MAX_TEMPERATURE:
        raise RequestError(
            f"temperature must be in [0, {MAX_TEMPERATURE:g}] (0 = greedy), got {temperature:g}"
        )
    if top_k < 0:
        raise RequestError(f"top_k must be >= 0 (0 = no top-k filter), got {top_k}")
    if not 0.0 < top_p <= 1.0:
        raise RequestError(f"top_p must be in (0, 1], got {top_p:g}")
    return Sampling(temperature, top_k, top_p, None if seed is None else int(seed))


def choose(logits: np.ndarray, sampling: Sampling, rng: np.random.Generator) -> int:
    """Greedy when temperature is 0, else temperature / top-k / top-p sampling."""
    if sampling.temperature == 0.0:
        return int(logits.argmax())
    scaled = logits.astype(np.float64) / sampling.temperature
    order = np.argsort(-scaled)
    if sampling.top_k:
        order = order[: sampling.top_k]
    probs = np.exp(scaled[order] - scaled[order[0]])
    probs /= probs.sum()
    if sampling.top_p < 1.0:
        keep = int(np.searchsorted(np.cumsum(probs), sampling.top_p) + 1)
        order, probs = order[:keep], probs[:keep] / probs[:keep].sum()
    return int(rng.choice(order, p=probs))


def _text_response(text: str):
    return pb_utils.InferenceResponse(
        output_tensors=[pb_utils.Tensor("text_output", np.array([text.encode("utf-8")], dtype=np.object_))]
    )


def _error_response(message: str, code=None):
    code = pb_utils.TritonError.INVALID_ARG if code is None else code
    return pb_utils.InferenceResponse(error=pb_utils.TritonError(message, code))


class Decoder:
    """The ONNX graph: prefill and batched decode over per-sequence caches of different lengths."""

    def __init__(self, path: Path, threads: int) -> None:
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        inputs = self.session.get_inputs()
        self.past_names = [i.name for i in inputs if i.name.startswith("past_key_values.")]
        shape = next(i.shape for i in inputs if i.name == self.past_names[0])
        self.kv_heads, self.head_dim = int(shape[1]), int(shape[3])
        self.dtype = np.float16 if "float16" in inputs[3].type else np.float32

    def run(self, ids: np.ndarray, mask: np.ndarray, past: list[np.ndarray]):
        positions = np.cumsum(mask, axis=1) - 1
        positions = np.where(mask == 0, 1, positions)[:, -ids.shape[1] :]
        feeds = {"input_ids": ids, "attention_mask": mask, "position_ids": positions.astype(np.int64)}
        outputs = self.session.run(None, feeds | dict(zip(self.past_names, past, strict=True)))
        return outputs[0][:, -1].astype(np.float32), outputs[1:]

    def prefill(self, prompts: list[list[int]]):
        """Left-padded prompts in one call: (last-position logits [batch, vocab], per-row caches)."""
        width = max(len(p) for p in prompts)
        ids = np.zeros((len(prompts), width), np.int64)
        mask = np.zeros((len(prompts), width), np.int64)
        for row, prompt in enumerate(prompts):
            ids[row, width - len(prompt) :] = prompt
            mask[row, width - len(prompt) :] = 1
        empty = np.zeros((len(prompts), self.kv_heads, 0, self.head_dim), self.dtype)
        logits, present = self.run(ids, mask, [empty] * len(self.past_names))
        caches = [[p[row, :, width - len(prompt) :] for p in present] for row, prompt in enumerate(prompts)]
        return logits, caches

    def step(self, last_tokens: list[int], caches: list[list[np.ndarray]]):
        """One new token per sequence; caches of different lengths are left-padded to the longest."""
        lengths = [c[0].shape[1] for c in caches]
        width = max(lengths)
        mask = np.zeros((len(caches), width + 1), np.int64)
        past = []
        for index in range(len(self.past_names)):
            padded = np.zeros((len(caches), self.kv_heads, width, self.head_dim), self.dtype)
            for row, cache in enumerate(caches):
                padded[row, :, width - lengths[row] :] = cache[index]
            past.append(padded)
        for row, length in enumerate(lengths):
            mask[row, width - length :] = 1
        ids = np.array(last_tokens, np.int64).reshape(-1, 1)
        logits, present = self.run(ids, mask, past)
        return logits, [[p[row, :, width - n :] for p in present] for row, n in enumerate(lengths)]


class Scheduler:
    """Iterative scheduling: admit waiting requests into free slots, then advance every slot by one token."""

    def __init__(self, decoder: Decoder, tokenizer: Tokenizer, eos: int | None, max_sequences: int) -> None:
        self.decoder, self.tokenizer, self.eos = decoder, tokenizer, eos
        self.max_sequences = max_sequences
        self.waiting: queue.Queue[Sequence | None] = queue.Queue()
        self.running: list[Sequence] = []
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._loop, name="textgen-scheduler", daemon=True)
        self.thread.start()

    def submit(self, sequence: Sequence) -> None:
        self.waiting.put(sequence)

    def stop(self) -> None:
        self.stopped.set()
        self.waiting.put(None)
        self.thread.join(timeout=10)

    def _admit(self) -> list[Sequence]:
        block = not self.running  # idle: wait for work instead of spinning
        admitted: list[Sequence] = []
        while len(self.running) + len(admitted) < self.max_sequences:
            try:
                item = self.waiting.get(block=block and not admitted, timeout=0.5 if block else None)
            except queue.Empty:
                break
            if item is None:
                break
            if item.sender.is_cancelled():
                self._finish(item, cancelled=True)
                continue
            admitted.append(item)
        return admitted

    def _loop(self) -> None:
        while not self.stopped.is_set():
            try:
                self._iteration()
            except Exception as exc:  # the model must outlive one failed step: fail those requests only
                for sequence in self.running:
                    self._safe_send(
                        sequence.sender,
                        _error_response(f"generation failed: {exc}", pb_utils.TritonError.INTERNAL),
                        FINAL,
                    )
                self.running = []
        for sequence in self.running:
            self._safe_send(
                sequence.sender,
                _error_response("the model is unloading", pb_utils.TritonError.UNAVAILABLE),
                FINAL,
            )

    def _iteration(self) -> None:
        decoding = list(self.running)
        admitted = self._admit()
        if admitted:
            self.running.extend(admitted)  # before the prefill: a failure then reaches their clients too
            logits, caches = self.decoder.prefill([s.prompt for s in admitted])
            for row, sequence in enumerate(admitted):
                sequence.past = caches[row]
                self._advance(sequence, logits[row])
        decoding = [s for s in decoding if s in self.running]
        if decoding:
            logits, caches = self.decoder.step([s.tokens[-1] for s in decoding], [s.past for s in decoding])
            for row, sequence in enumerate(decoding):
                sequence.past = caches[row]
                self._advance(sequence, logits[row])

    def _advance(self, sequence: Sequence, logits: np.ndarray) -> None:
        """Pick the next token, send its text, and finish the sequence when it is done."""
        if sequence.sender.is_cancelled():
            self._finish(sequence, cancelled=True)
            return
        token = choose(logits, sequence.sampling, sequence.rng)
        if token == self.eos:
            self._finish(sequence)
            return
        sequence.tokens.append(token)
        text = self.tokenizer.decode(sequence.tokens, skip_special_tokens=True)
        stop_at = min((i for i in (text.find(s) for s in sequence.stops) if i >= 0), default=-1)
        if stop_at >= 0:
            text = text[:stop_at]
        ready = len(text) if stop_at >= 0 or not text.endswith("\ufffd") else len(text.rstrip("\ufffd"))
        new_text = text[sequence.sent_chars : max(ready, sequence.sent_chars)]
        sequence.sent_chars = max(ready, sequence.sent_chars)
        done = stop_at >= 0 or len(sequence.tokens) >= sequence.max_tokens
        if sequence.stream:
            self._safe_send(sequence.sender, _text_response(new_text), FINAL if done else 0)
            if done:
                self._release(sequence)
        elif done:
            self._finish(sequence, text=text)

    def _finish(self, sequence: Sequence, cancelled: bool = False, text: str | None = None) -> None:
        if cancelled:
            response = _error_response("the client cancelled the request", pb_utils.TritonError.CANCELLED)
            self._safe_send(sequence.sender, response, FINAL)
        elif sequence.stream:
            self._safe_send(sequence.sender, None, FINAL)
        else:
            if text is None:
                text = self.tokenizer.decode(sequence.tokens, skip_special_tokens=True)
            self._safe_send(sequence.sender, _text_response(text), FINAL)
        self._release(sequence)

    def _release(self, sequence: Sequence) -> None:
        sequence.past = None
        if sequence in self.running:
            self.running.remove(sequence)

    @staticmethod
    def _safe_send(sender, response, flags) -> None:
        try:
            if response is None:
                sender.send(flags=flags)
            else:
                sender.send(response, flags=flags)
        except Exception:  # the client went away: nothing left to tell it
            pass


class TritonPythonModel:
    def initialize(self, args) -> None:
        config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        version_dir = Path(args["model_repository"]) / args["model_version"]
        self.max_context = int(params["max_context"])
        self.max_new_tokens = int(params["max_new_tokens"])
        self.tokenizer = Tokenizer.from_file(
            str(version_dir / params.get("tokenizer_file", "tokenizer.json"))
        )
        self.tokenizer.no_padding()
        self.tokenizer.no_truncation()
        decoder = Decoder(
            version_dir / params.get("model_file", "model.onnx"), int(params.get("intra_op_threads", "0"))
        )
        eos = int(params["eos_token_id"]) if params.get("eos_token_id", "") != "" else None
        self.scheduler = Scheduler(decoder, self.tokenizer, eos, int(params["max_sequences"]))

    def _sequence(self, request) -> Sequence:
        prompt = _scalar(request, "text_input")
        if prompt is None or not str(prompt).strip():
            raise RequestError("text_input is empty: send the prompt to continue")
        max_tokens = _scalar(request, "max_tokens")
        if max_tokens is None or not 1 <= int(max_tokens) <= self.max_new_tokens:
            raise RequestError(f"max_tokens must be between 1 and {self.max_new_tokens}, got {max_tokens}")
        ids = self.tokenizer.encode(str(prompt)).ids
        if len(ids) + int(max_tokens) > self.max_context:
            raise RequestError(
                f"the prompt is {len(ids)} tokens and max_tokens is {max_tokens}: together they exceed the "
                f"model's context of {self.max_context} tokens; shorten the prompt or ask for fewer tokens"
            )
        sampling = parse_sampling(request)
        return Sequence(
            sender=request.get_response_sender(),
            prompt=ids,
            max_tokens=int(max_tokens),
            sampling=sampling,
            stops=_stops(request),
            stream=bool(_scalar(request, "stream", False)),
            rng=np.random.default_rng(sampling.seed),
        )

    def execute(self, requests):
        for request in requests:
            try:
                self.scheduler.submit(self._sequence(request))
            except (RequestError, ValueError, TypeError) as exc:
                sender = request.get_response_sender()
                sender.send(_error_response(INVALID_PREFIX + str(exc)), flags=FINAL)
        return None

    def finalize(self) -> None:
        self.scheduler.stop()

"""text-generation repositories: one decoupled Python-backend model named after the spec.

It runs the KV-cache decoder with onnxruntime (python_models/text_generation.py): text in, a token
stream out, in-flight batching over `generation.max_sequences` slots. Its I/O is the contract Triton's
generate endpoints and OpenAI-compatible frontend expect (text_input / max_tokens / ... -> text_output).
"""

from __future__ import annotations

import json

from tritonclient.grpc import model_config_pb2 as mc

from triton_bundle.repository.configs import PYTHON_BACKEND, _cpu_instances, _param
from triton_bundle.repository.layout import ModelFiles, python_model_source
from triton_bundle.repository.options import RepositoryOptions
from triton_bundle.repository.sources import ModelSources, RepositoryError, tokenizer_source
from triton_bundle.spec import ModelSpec

PYTHON_MODEL = "text_generation"
# (name, type, dims, optional): the client-facing contract of every text-generation model.
INPUTS = (
    ("text_input", mc.TYPE_STRING, [1], False),
    ("max_tokens", mc.TYPE_INT32, [1], False),
    ("temperature", mc.TYPE_FP32, [1], True),
    ("top_k", mc.TYPE_INT32, [1], True),
    ("top_p", mc.TYPE_FP32, [1], True),
    ("seed", mc.TYPE_UINT64, [1], True),
    ("stop", mc.TYPE_STRING, [-1], True),
    ("stream", mc.TYPE_BOOL, [1], True),
)
OUTPUTS = (("text_output", mc.TYPE_STRING, [-1]),)


def generation_config(
    spec: ModelSpec, options: RepositoryOptions, eos_token_id: int | None
) -> mc.ModelConfig:
    """Decoupled (many responses per request), no Triton batching: the model batches in flight itself."""
    config = mc.ModelConfig(name=spec.name, backend=PYTHON_BACKEND, max_batch_size=0)
    config.model_transaction_policy.decoupled = True
    for name, dtype, dims, optional in INPUTS:
        config.input.add(name=name, data_type=dtype, dims=dims, optional=optional)
    for name, dtype, dims in OUTPUTS:
        config.output.add(name=name, data_type=dtype, dims=dims)
    _cpu_instances(config, 1)  # one scheduler holds every sequence's cache; more instances split them
    gen = spec.generation
    for key, value in {
        "model_file": "model.onnx",
        "tokenizer_file": "tokenizer.json",
        "eos_token_id": "" if eos_token_id is None else eos_token_id,
        "max_sequences": gen.max_sequences,
        "max_context": gen.max_context,
        "max_new_tokens": gen.max_new_tokens,
        "intra_op_threads": options.intra_op_threads,
    }.items():
        _param(config, key, value)
    return config


def _checkpoint_facts(sources: ModelSources) -> tuple[int | None, int | None]:
    """(eos token id, longest position the model knows) from the checkpoint's config.json."""
    path = sources.checkpoint / "config.json" if sources.checkpoint else None
    if path is None or not path.is_file():
        return None, None
    config = json.loads(path.read_text(encoding="utf-8"))
    eos = config.get("eos_token_id")
    eos = eos[0] if isinstance(eos, list) else eos
    positions = config.get("n_positions") or config.get("max_position_embeddings")
    return eos, positions


def generation_plan(spec: ModelSpec, options: RepositoryOptions, sources: ModelSources):
    from triton_bundle.repository.pipelines import RepositoryPlan

    if len(sources.variants) != 1:
        raise RepositoryError(
            f"a text-generation model serves one precision variant, got {[v.variant for v in sources.variants]}"
        )
    eos, positions = _checkpoint_facts(sources)
    if positions is not None and spec.generation.max_context > positions:
        raise RepositoryError(
            f"generation.max_context {spec.generation.max_context} exceeds the {positions} positions the "
            f"checkpoint was built for; lower generation.max_context to at most {positions}"
        )
    tok = tokenizer_source(sources.checkpoint)
    model = ModelFiles(
        config=generation_config(spec, options, eos),
        files={
            "1/model.py": python_model_source(PYTHON_MODEL),
            "1/model.onnx": sources.variants[0].onnx,
            "1/tokenizer.json": tok.tokenizer_json,
        },
    )
    notes = [
        f"decoupled decoder '{spec.name}': {spec.generation.max_sequences} sequences in flight, "
        f"context {spec.generation.max_context}, up to {spec.generation.max_new_tokens} new tokens "
        f"({sources.variants[0].variant})"
    ]
    return RepositoryPlan([model], {"generation": spec.name}, notes)

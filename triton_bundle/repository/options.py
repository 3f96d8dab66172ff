"""Every knob of a generated repository, typed: defaults from the spec, overrides from the CLI / caller."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from triton_bundle.overrides import given
from triton_bundle.spec import ModelSpec
from triton_bundle.variants import REFERENCE, Variant

Target = Literal["local", "nvidia", "cpu-container", "trtllm"]
Padding = Literal["longest", "bucket", "fixed"]

# Where each target's tokenizer pads to: the local runner re-pads ragged batches itself; the ORT and
# TensorRT backends batch only equal shapes, so similar lengths are padded to the same bucket.
DEFAULT_PADDING: dict[str, Padding] = {
    "local": "longest",
    "nvidia": "bucket",
    "cpu-container": "bucket",
    "trtllm": "longest",  # unused: the TensorRT-LLM engine takes ragged prompts
}


class RepositoryOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    target: Target = "local"
    max_batch_size: Annotated[int, Field(ge=1)] = 32
    max_queue_delay_us: Annotated[int, Field(ge=0)] = 2000
    preferred_batch_sizes: list[Annotated[int, Field(ge=1)]] = Field(
        default_factory=list, description="the tensor model's preferred batch sizes (dynamic batcher)"
    )
    dynamic_batching: bool = Field(True, description="off: every request runs alone (benchmark baseline)")
    helper_queue_delay_us: Annotated[int, Field(ge=0)] = Field(
        0, description="queue delay of the tokenizer / pre- / postprocess steps"
    )
    instances: Annotated[int, Field(ge=1)] = 1
    variants: list[Variant] = Field(
        default_factory=lambda: [REFERENCE],
        description="precision variant per model version: version i+1 = variants[i]",
    )
    version_policy: Literal["latest", "all"] | None = Field(
        None, description="default: 'latest' for one version, 'all' when several are side by side"
    )
    warmup: bool = True
    response_cache: bool = False
    expose_tensor_model: bool = True
    top_k: Annotated[int, Field(ge=1)] = 3
    padding: Padding | None = Field(None, description="tokenizer padding; default per target")
    bucket_size: Annotated[int, Field(ge=1)] = 16
    cuda_graphs: bool = Field(False, description="TensorRT only: capture CUDA graphs for the padded shapes")
    gpus: list[int] = Field(default_factory=list, description="GPU ids for GPU instance groups (empty: all)")
    intra_op_threads: Annotated[int, Field(ge=0)] = 0
    tokenizer_instances: Annotated[int, Field(ge=1)] = 1
    normalize_embeddings: bool = True
    aggregation_strategy: Literal["none", "simple", "first", "average", "max"] = "simple"
    ignore_labels: list[str] = Field(default_factory=lambda: ["O"])

    @model_validator(mode="after")
    def _distinct_versions(self) -> RepositoryOptions:
        if not self.variants:
            raise ValueError("give at least one precision variant")
        if len(set(self.variants)) != len(self.variants):
            raise ValueError(f"each precision variant may be one version only, got {self.variants}")
        return self

    @model_validator(mode="after")
    def _preferred_fit(self) -> RepositoryOptions:
        too_large = [size for size in self.preferred_batch_sizes if size > self.max_batch_size]
        if too_large:
            raise ValueError(
                f"preferred_batch_sizes {too_large} exceed max_batch_size {self.max_batch_size}: "
                "Triton refuses to load such a model; use sizes up to max_batch_size"
            )
        return self

    @property
    def resolved_padding(self) -> Padding:
        return self.padding or DEFAULT_PADDING[self.target]

    @property
    def resolved_version_policy(self) -> str:
        return self.version_policy or ("latest" if len(self.variants) == 1 else "all")

    @classmethod
    def from_spec(cls, spec: ModelSpec, **overrides: Any) -> RepositoryOptions:
        repo = spec.repository
        values: dict[str, Any] = {
            "target": repo.target,
            "max_batch_size": repo.max_batch_size,
            "max_queue_delay_us": repo.max_queue_delay_us,
            "preferred_batch_sizes": list(repo.preferred_batch_sizes),
            "instances": repo.instances,
            "intra_op_threads": repo.intra_op_threads,
            "variants": [repo.precision],
            "warmup": repo.warmup,
            "response_cache": repo.response_cache,
            "expose_tensor_model": repo.expose_tensor_model,
            "top_k": repo.top_k,
            "aggregation_strategy": repo.aggregation_strategy,
            "ignore_labels": list(repo.ignore_labels),
        }
        values.update(given(**overrides))
        return cls.model_validate(values)

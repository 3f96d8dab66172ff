"""The tensor model (the network itself) for each target, with its shape checks against ONNX and engines."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from triton_bundle.repository import configs, contract
from triton_bundle.repository.layout import ModelFiles, python_model_source
from triton_bundle.repository.options import RepositoryOptions
from triton_bundle.repository.sources import EngineArtifact, ModelSources, RepositoryError
from triton_bundle.repository.tensors import GraphSignature, external_data_files, onnx_signature

ENGINE_META_SUFFIX = ".engine.json"


@dataclass(frozen=True)
class SequenceRange:
    """The sequence lengths the served graph accepts (what the tokenizer may emit)."""

    min: int
    max: int
    fixed: bool = False


def common_signature(sources: ModelSources) -> GraphSignature:
    """The I/O shared by every version; versions side by side must be interchangeable for clients."""
    signatures = {variant.variant: onnx_signature(variant.onnx) for variant in sources.variants}
    first_variant, first = next(iter(signatures.items()))
    for variant, signature in signatures.items():
        if signature != first:
            raise RepositoryError(
                f"versions '{first_variant}' and '{variant}' have different inputs/outputs "
                f"({first} vs {signature}); versions of one model must share I/O names, dtypes and dims"
            )
    for tensor in (*first.inputs, *first.outputs):
        if not tensor.dims or tensor.dims[0] != -1:
            raise RepositoryError(
                f"'{tensor.name}' has dims {list(tensor.dims)} in {sources.variants[0].onnx}: dim 0 must be a "
                "dynamic batch dim for Triton batching; re-export with a dynamic 'batch' axis"
            )
    return first


def _profile_ranges(engine: EngineArtifact, axis: int) -> list[tuple[int, int, int]]:
    """Per profile: (min, opt, max) of one axis over all inputs that have it (the tightest range)."""
    ranges = []
    for profile in engine.manifest.profiles:
        lows, opts, highs = [], [], []
        for lo, opt, hi in profile.shapes.values():
            if len(hi) > axis:
                lows.append(lo[axis])
                opts.append(opt[axis])
                highs.append(hi[axis])
        if highs:
            ranges.append((max(lows), max(opts), min(highs)))
    return ranges


def check_engine(
    engine: EngineArtifact, graph: GraphSignature, options: RepositoryOptions, sequence_max: int | None
) -> None:
    """Refuse engines whose profiles cannot take what the repository will send them."""
    names = {t.name for t in graph.inputs}
    for index, profile in enumerate(engine.manifest.profiles):
        missing = names - set(profile.shapes)
        if missing:
            raise RepositoryError(
                f"{engine.plan}: profile {index} has no shapes for inputs {sorted(missing)}"
            )
    batch_max = max(hi for _, _, hi in _profile_ranges(engine, 0))
    if batch_max < options.max_batch_size:
        raise RepositoryError(
            f"{engine.plan}: the largest profile batch is {batch_max}, below max_batch_size "
            f"{options.max_batch_size}; rebuild the engine with shapes.batch.max >= {options.max_batch_size} "
            f"or lower repository.max_batch_size"
        )
    seq = _profile_ranges(engine, 1)
    if sequence_max is not None and seq and max(hi for _, _, hi in seq) < sequence_max:
        raise RepositoryError(
            f"{engine.plan}: the largest profile sequence is {max(hi for _, _, hi in seq)}, below the tokenizer's "
            f"max length {sequence_max}; rebuild the engine with shapes.sequence.max >= {sequence_max}"
        )


def _covers(profile: configs.Profile, batch: int, sequence: int | None) -> bool:
    return all(
        hi[0] >= batch and (sequence is None or len(hi) < 2 or hi[1] >= sequence)
        for _, _, hi in profile.values()
    )


def engine_layout(
    engines: tuple[EngineArtifact, ...], options: RepositoryOptions, sequence_max: int | None
) -> configs.EngineLayout:
    profiles = tuple(dict(p.shapes) for p in engines[0].manifest.profiles)
    bind = all(_covers(p, options.max_batch_size, sequence_max) for p in profiles)
    if len(engines) == 1:
        return configs.EngineLayout(profiles=profiles, cc_filenames={}, bind_profiles=bind)
    ccs = [e.manifest.compute_capability for e in engines]
    if None in ccs or len(set(ccs)) != len(ccs):
        raise RepositoryError(
            f"several engines for one variant need distinct compute capabilities in their manifests, got {ccs}"
        )
    return configs.EngineLayout(
        profiles=profiles, cc_filenames={cc: plan_name(cc) for cc in ccs}, bind_profiles=bind
    )


def plan_name(compute_capability: str | None) -> str:
    return (
        "model.plan" if compute_capability is None else f"model_sm{compute_capability.replace('.', '')}.plan"
    )


def sequence_range(
    graph: GraphSignature, sources: ModelSources, options: RepositoryOptions, wanted: tuple[int, int]
) -> SequenceRange:
    """What the tokenizer may emit: the spec's sequence range, narrowed by a fixed graph dim or engine profiles."""
    low, high = wanted
    fixed = {t.dims[1] for t in graph.inputs if len(t.dims) >= 2 and t.dims[1] != -1}
    if fixed:
        if len(fixed) > 1:
            raise RepositoryError(f"token inputs disagree on the fixed sequence length: {sorted(fixed)}")
        length = fixed.pop()
        return SequenceRange(min=length, max=length, fixed=True)
    for variant in sources.variants:
        for engine in variant.engines:
            seq = _profile_ranges(engine, 1)
            if seq:
                low = max(low, min(lo for lo, _, _ in seq))
    return SequenceRange(min=low, max=high)


def build_tensor_model(
    spec_name: str,
    options: RepositoryOptions,
    sources: ModelSources,
    graph: GraphSignature,
    *,
    pad_values: dict[str, int],
    sequence: SequenceRange | None,
    label_file: str,
    labels_text: str | None,
) -> ModelFiles:
    name = contract.tensor_model(spec_name)
    files: dict[str, bytes | str | Path] = {}
    with_engines = [bool(v.engines) for v in sources.variants]
    use_trt = options.target == "nvidia" and all(with_engines)
    if options.target == "nvidia" and any(with_engines) and not use_trt:
        raise RepositoryError(
            "some versions have TensorRT engines and others do not; build engines for every variant "
            f"({[v.variant for v in sources.variants]}) or serve them as separate repositories"
        )
    for version, variant in enumerate(sources.variants, start=1):
        if use_trt:
            for engine in variant.engines:
                check_engine(engine, graph, options, sequence.max if sequence else None)
                plan = plan_name(engine.manifest.compute_capability if len(variant.engines) > 1 else None)
                files[f"{version}/{plan}"] = engine.plan
                files[f"{version}/{plan.removesuffix('.plan')}{ENGINE_META_SUFFIX}"] = (
                    engine.manifest.model_dump_json(indent=2)
                )
            continue
        files[f"{version}/model.onnx"] = variant.onnx
        for data_file in external_data_files(variant.onnx):
            files[f"{version}/{data_file}"] = variant.onnx.parent / data_file
        if options.target == "local":
            files[f"{version}/model.py"] = python_model_source("onnx_runner")

    if options.target == "local":
        config = configs.python_onnx_config(
            name, options, graph, pad_values, label_file, max_sequence=sequence.max if sequence else None
        )
    elif use_trt:
        layout = engine_layout(sources.variants[0].engines, options, sequence.max if sequence else None)
        config = configs.tensorrt_config(
            name,
            options,
            graph,
            layout,
            graph_shapes=cuda_graph_shapes(options, sequence),
            label_file=label_file,
        )
    else:
        config = configs.onnxruntime_config(
            name, options, graph, gpu=options.target == "nvidia", label_file=label_file
        )
    if options.response_cache:
        config.response_cache.enable = True
    if label_file and labels_text is not None:
        files[label_file] = labels_text
    return ModelFiles(config=config, files=files, versions=tuple(range(1, len(sources.variants) + 1)))


def cuda_graph_shapes(options: RepositoryOptions, sequence: SequenceRange | None) -> list[tuple[int, int]]:
    """The (batch, sequence) shapes worth a CUDA graph: the tokenizer's padded widths at a few batch sizes."""
    if not options.cuda_graphs or sequence is None:
        return []
    if sequence.fixed or options.resolved_padding == "fixed":
        widths = [sequence.max]
    else:
        step = options.bucket_size
        widths = sorted(
            {min(sequence.max, max(sequence.min, w)) for w in range(step, sequence.max + step, step)}
        )
    batches = sorted({1, max(1, options.max_batch_size // 4), options.max_batch_size})
    return [(b, w) for b in batches for w in widths]

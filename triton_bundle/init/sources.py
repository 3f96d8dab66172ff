"""The spec's entries for each kind of source: a Hugging Face checkpoint, or an nn.Module + a sample."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from triton_bundle.init.checkpoint import CheckpointFacts, read_checkpoint
from triton_bundle.init.datafile import DataFacts, inspect_image_data, inspect_text_data
from triton_bundle.init.render import Entry
from triton_bundle.init.stage import InitError, InitOptions, default_name, rel, round_up, shapes_entry, slug
from triton_bundle.spec import Range, SourceSpec

# Parity runs batch.max x sequence.max, and TensorRT profiles cover it: past this, ask the user.
SEQUENCE_CAP = 512
SERVING = Entry(
    "repository",
    {"target": "local", "max_batch_size": 32, "max_queue_delay_us": 2000},
    "Triton: dynamic batching up to max_batch_size (at most shapes.batch.max), local target by default.",
)
LOADTEST = Entry(
    "loadtest",
    {"users": 8, "duration_s": 20, "max_requests": 4000, "slo": {"p95_ms": 1000, "max_error_rate": 0.0}},
    "Release gate: starting SLOs for a CPU box; set your own latency target before trusting PASSED.",
)


def _describe(data: DataFacts, spec_dir: Path) -> str:
    fields = f"fields: {', '.join(data.fields)}" if data.fields else "images in sub-folders per label"
    return f"{rel(data.path, spec_dir)}: {data.rows} rows; {fields}"


def _sequence(facts: CheckpointFacts, texts: list[str], notes: list[str]) -> tuple[Range, str]:
    limit = facts.sequence_max or 128
    why = facts.sequence_reason if facts.sequence_max else "no limit in the checkpoint: 128"
    if limit > SEQUENCE_CAP:
        notes.append(f"the model takes up to {limit} tokens; the spec caps sequence.max at {SEQUENCE_CAP}")
        why += (
            f"; capped at {SEQUENCE_CAP} (raise it for longer texts: parity and profiles cover batch x max)"
        )
        limit = SEQUENCE_CAP
    lengths = [len(ids) for ids in facts.tokenizer(texts, truncation=True, max_length=limit)["input_ids"]]
    median = statistics.median(lengths)
    opt = max(1, min(limit, round_up(median, 8)))
    return Range(min=1, opt=opt, max=limit), (
        f"sequence.max: {why}\nsequence.opt: median eval length {median:g} tokens, rounded up to a multiple of 8"
    )


def _check_labels(facts: CheckpointFacts, data: DataFacts, notes: list[str]) -> str:
    comment = f"config.json id2label ({len(facts.labels or [])} classes, in output order)"
    if facts.default_label_names:
        comment += "\nthese are transformers' placeholder names: replace them with your class names"
        notes.append("id2label holds placeholder names (LABEL_0, ...): name your classes in `labels`")
    unknown = sorted(set(data.label_values) - set(facts.labels or []))
    if unknown and not facts.default_label_names:
        notes.append(f"data labels not in id2label: {', '.join(unknown[:8])} (accuracy gates compare names)")
    return comment


def _text_data(options: InitOptions, facts: CheckpointFacts, spec_dir: Path) -> tuple[dict, DataFacts, str]:
    need = facts.detection.detector.needs_labels
    fields = {"text_field": options.text_field, "label_field": options.label_field}
    data = inspect_text_data(options.data, need_label=need, **fields)
    section: dict[str, Any] = {"eval": rel(data.path, spec_dir)}
    comment = [f"eval: {_describe(data, spec_dir)}"]
    if options.train is not None:
        train = inspect_text_data(options.train, need_label=need, **fields)
        section["train"] = rel(train.path, spec_dir)
        comment.append(f"train: {_describe(train, spec_dir)}")
    section["text_field"] = data.text_field
    if data.label_field:
        section["label_field"] = data.label_field
    return section, data, "\n".join(comment)


def _image_data(options: InitOptions, facts: CheckpointFacts, spec_dir: Path) -> tuple[dict, DataFacts, str]:
    data = inspect_image_data(
        options.data,
        need_label=facts.detection.detector.needs_labels,
        image_field=options.image_field,
        label_field=options.label_field,
    )
    section: dict[str, Any] = {"eval": rel(data.path, spec_dir)}
    if data.image_field:
        section["image_field"] = data.image_field
    if data.label_field:
        section["label_field"] = data.label_field
    return section, data, f"eval: {_describe(data, spec_dir)}"


def hf_entries(options: InitOptions, spec_dir: Path) -> tuple[str, list[Entry], list[str]]:
    facts = read_checkpoint(Path(options.checkpoint), options.task, options.allow_pickle)
    detector, notes = facts.detection.detector, []
    source: dict[str, Any] = {"kind": "huggingface", "path": rel(facts.path, spec_dir)}
    if options.allow_pickle:
        source["allow_pickle"] = True
    entries = [
        Entry(
            "name",
            options.name or default_name(facts.path),
            "the model's name in Triton and artifacts/<name>",
        ),
        Entry("task", detector.task, facts.detection.reason),
        Entry("source", source, f"a Hugging Face checkpoint ({facts.model_type})"),
    ]
    if detector.modality == "text":
        section, data, data_comment = _text_data(options, facts, spec_dir)
        sequence, shape_comment = _sequence(facts, data.texts, notes)
    else:
        section, data, data_comment = _image_data(options, facts, spec_dir)
        sequence = None
        shape_comment = f"pixel_values {facts.image_size}: {facts.image_reason} (preprocessor_config.json)"
    entries.append(Entry("data", section, data_comment))
    if facts.labels:
        entries.append(Entry("labels", facts.labels, _check_labels(facts, data, notes)))
    shapes = shapes_entry(sequence)
    entries.append(Entry("shapes", shapes, f"batch: 1..32, 8 typical (dynamic batching)\n{shape_comment}"))
    if facts.export:
        entries.append(Entry("export", facts.export, facts.export_reason))
    entries += [SERVING, LOADTEST]
    return str(facts.path), entries, notes


def _module_ref(module: str, spec_dir: Path) -> str:
    where, sep, attr = module.rpartition(":")
    if sep and where.endswith(".py"):  # a file path typed relative to here: rewrite it for the spec
        return f"{rel(Path(where), spec_dir)}:{attr}"
    return module


def module_entries(options: InitOptions, spec_dir: Path) -> tuple[str, list[Entry], list[str]]:
    from triton_bundle.init.module import dry_run

    if options.weights is None:
        raise InitError("--module needs --weights (the module's trained weights as .safetensors)")
    source = SourceSpec(
        kind="torch-module", module=options.module, kwargs=options.kwargs, weights=options.weights
    )
    facts = dry_run(source, Path.cwd(), Path(options.data))
    source_section: dict[str, Any] = {"kind": "torch-module", "module": _module_ref(options.module, spec_dir)}
    if options.kwargs:
        source_section["kwargs"] = options.kwargs
    source_section["weights"] = rel(Path(options.weights), spec_dir)
    dry = f"one dry run of {facts.class_name} on the sample's first rows"
    entries = [
        Entry(
            "name", options.name or slug(facts.class_name), "the model's name in Triton and artifacts/<name>"
        ),
        Entry("task", "tensor", "a plain nn.Module: tensors in, tensors out"),
        Entry("source", source_section, "the module's class, its constructor arguments and its weights"),
        Entry(
            "data",
            {"eval": rel(Path(options.data), spec_dir)},
            f"{rel(Path(options.data), spec_dir)}: {facts.sample_rows} rows, one array per input",
        ),
        Entry(
            "inputs",
            [t.model_dump() for t in facts.inputs],
            f"from the sample and {dry}: dim 0 is the batch;\nname another dim (e.g. sequence) to make it "
            "dynamic, and give its range under shapes.extra",
        ),
        Entry("outputs", [t.model_dump() for t in facts.outputs], f"what {dry} returned"),
        Entry("shapes", shapes_entry(None), "batch: 1..32, 8 typical (dynamic batching)"),
        SERVING,
        LOADTEST,
    ]
    return f"{options.module} + {options.weights}", entries, []

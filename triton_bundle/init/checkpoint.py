"""What a Hugging Face checkpoint directory says about itself: task, labels, sequence and image sizes."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from triton_bundle.export.loaders import check_modality_files, check_model_files
from triton_bundle.hf import quiet_offline
from triton_bundle.init.detect import Detection, detect_task

# Families whose position ids start after the padding id (RoBERTa's scheme): pad_token_id + 1 positions
# are never used by tokens, so the longest sequence is that much shorter than max_position_embeddings.
PADDING_OFFSET_POSITIONS = frozenset(
    {"roberta", "xlm-roberta", "xlm-roberta-xl", "camembert", "data2vec-text", "xmod", "roberta-prelayernorm"}
)
# Tokenizers without a limit report a huge sentinel (int(1e30)); anything past this is "no limit".
_NO_LIMIT = 1_000_000


@dataclass
class CheckpointFacts:
    path: Path
    detection: Detection
    model_type: str
    labels: list[str] | None
    default_label_names: bool  # id2label is transformers' LABEL_0.. placeholder
    sequence_max: int | None = None
    sequence_reason: str = ""
    image_size: list[int] | None = None  # [channels, height, width] of pixel_values
    image_reason: str = ""
    tokenizer: object | None = field(default=None, repr=False)
    export: dict[str, object] = field(default_factory=dict)  # export settings the checkpoint implies
    export_reason: str = ""


def _labels(config) -> tuple[list[str] | None, bool]:
    id2label = {int(k): str(v) for k, v in (getattr(config, "id2label", None) or {}).items()}
    if not id2label:
        return None, False
    labels = [id2label[i] for i in sorted(id2label)]
    return labels, labels == [f"LABEL_{i}" for i in range(len(labels))]


def _json(path: Path) -> dict | list | None:
    try:
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
    except (OSError, json.JSONDecodeError):
        return None


def sentence_transformers_settings(path: Path) -> tuple[dict[str, object], int | None, str]:
    """(export settings, max_seq_length, why) from a sentence-transformers layout, else empty.

    Its modules.json says whether embeddings are normalised, 1_Pooling/config.json how tokens pool, and
    sentence_bert_config.json the length the model was trained to read.
    """
    modules = _json(path / "modules.json")
    if not isinstance(modules, list):
        return {}, None, ""
    kinds = {
        str(m.get("type", "")).rsplit(".", 1)[-1]: m.get("path", "") for m in modules if isinstance(m, dict)
    }
    settings: dict[str, object] = {"normalize": "Normalize" in kinds}
    pooling = _json(path / str(kinds.get("Pooling", "1_Pooling")) / "config.json") or {}
    if isinstance(pooling, dict) and pooling.get("pooling_mode_cls_token"):
        settings["pooling"] = "cls"
    elif isinstance(pooling, dict) and pooling.get("pooling_mode_mean_tokens"):
        settings["pooling"] = "mean"
    trained = (_json(path / "sentence_bert_config.json") or {}).get("max_seq_length")
    why = "sentence-transformers modules.json / Pooling config: " + ", ".join(
        f"{k} {v}" for k, v in settings.items()
    )
    return settings, trained if isinstance(trained, int) and trained > 0 else None, why


def sequence_limit(config, tokenizer, trained: int | None = None) -> tuple[int | None, str]:
    """The longest sequence the tokenizer, the position embeddings and training allow, and why."""
    limits: list[tuple[int, str]] = []
    if trained:
        limits.append((trained, f"sentence_bert_config max_seq_length {trained}"))
    tokenizer_max = getattr(tokenizer, "model_max_length", None)
    if isinstance(tokenizer_max, int) and 0 < tokenizer_max < _NO_LIMIT:
        limits.append((tokenizer_max, f"tokenizer model_max_length {tokenizer_max}"))
    positions = getattr(config, "max_position_embeddings", None)
    if isinstance(positions, int) and positions > 0:
        offset = 0
        if config.model_type in PADDING_OFFSET_POSITIONS:
            offset = int(getattr(config, "pad_token_id", None) or 0) + 1
        why = f"max_position_embeddings {positions}" + (
            f" - {offset} (positions start after padding)" if offset else ""
        )
        limits.append((positions - offset, why))
    if not limits:
        return None, "neither the tokenizer nor the config sets a limit"
    best = min(limits)[0]
    return best, " and ".join(why for _, why in limits) + f" -> {best}"


def image_input_size(path: Path) -> tuple[list[int] | None, str]:
    """[3, height, width] of pixel_values, from preprocessor_config.json (crop wins over resize)."""
    config_file = path / "preprocessor_config.json"
    raw = json.loads(config_file.read_text(encoding="utf-8"))
    kind = raw.get("image_processor_type", "image processor")
    for key in ("crop_size", "size") if raw.get("do_center_crop") else ("size",):
        size = raw.get(key)
        if isinstance(size, dict) and {"height", "width"} <= size.keys():
            return [
                3,
                int(size["height"]),
                int(size["width"]),
            ], f"{kind} {key} {size['height']}x{size['width']}"
        if isinstance(size, dict) and "shortest_edge" in size:
            edge = int(size["shortest_edge"])
            return [3, edge, edge], f"{kind} {key} shortest_edge {edge}"
        if isinstance(size, int):
            return [3, size, size], f"{kind} {key} {size}"
    return None, f"{kind}: no size in preprocessor_config.json"


def read_checkpoint(path: Path, task: str | None = None, allow_pickle: bool = False) -> CheckpointFacts:
    """The checkpoint's facts; raises the export stage's own errors for a directory it could not load."""
    import transformers

    quiet_offline()
    path = Path(path)
    check_model_files(path, allow_pickle)
    config = transformers.AutoConfig.from_pretrained(path)
    detection = detect_task(config, task)
    check_modality_files(path, detection.detector.modality)
    labels, placeholder = _labels(config)
    if detection.detector.task not in {"text-classification", "token-classification", "image-classification"}:
        labels, placeholder = None, False
    facts = CheckpointFacts(path, detection, config.model_type, labels, placeholder)
    if detection.detector.modality == "text":
        facts.tokenizer = transformers.AutoTokenizer.from_pretrained(path)
        trained = None
        if detection.detector.task == "feature-extraction":
            facts.export, trained, facts.export_reason = sentence_transformers_settings(path)
        facts.sequence_max, facts.sequence_reason = sequence_limit(config, facts.tokenizer, trained)
    else:
        facts.image_size, facts.image_reason = image_input_size(path)
    return facts

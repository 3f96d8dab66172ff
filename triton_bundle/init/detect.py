"""Which task a Hugging Face checkpoint serves, read from its config: the head, never the model's name.

One registry entry per task. An entry lists the transformers auto classes whose heads the task exports;
a checkpoint matches when the class named in `config.json` `architectures` is one of those heads for its
model type (transformers' own mapping, so every family it knows is covered). The first match wins, so a
specific head comes before the bare encoder. Adding a task (text generation, ...) is one entry here;
`init` refuses a detected task the spec does not accept yet, naming it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

from triton_bundle.errors import BundleError
from triton_bundle.spec import Task

Modality = Literal["text", "vision"]


class DetectionError(BundleError):
    """The checkpoint's task could not be read from its config, or is not one the bundle exports."""


@dataclass(frozen=True)
class TaskDetector:
    task: str
    heads: tuple[str, ...]  # transformers auto classes, by name
    modality: Modality
    needs_labels: bool  # rows of the data must carry a label (accuracy gates); else labels are optional


DETECTORS: tuple[TaskDetector, ...] = (
    TaskDetector("text-classification", ("AutoModelForSequenceClassification",), "text", True),
    TaskDetector("token-classification", ("AutoModelForTokenClassification",), "text", False),
    TaskDetector("image-classification", ("AutoModelForImageClassification",), "vision", True),
    TaskDetector("text-generation", ("AutoModelForCausalLM",), "text", False),
    # Last: a bare encoder, or one with a pre-training head, serves its pooled embedding.
    TaskDetector(
        "feature-extraction", ("AutoModel", "AutoModelForMaskedLM", "AutoModelForPreTraining"), "text", False
    ),
)


@dataclass(frozen=True)
class Detection:
    detector: TaskDetector
    architecture: str | None
    reason: str  # one line for the spec's comment: what in the config decided it


def _head_names(auto_class: str, model_type: str) -> set[str]:
    import transformers

    mapping = getattr(transformers, auto_class)._model_mapping._model_mapping  # model_type -> class name(s)
    names = mapping.get(model_type) or ()
    return {names} if isinstance(names, str) else set(names)


def supported_tasks() -> tuple[str, ...]:
    return get_args(Task)


def _accept(detector: TaskDetector, architecture: str | None, reason: str) -> Detection:
    if detector.task not in supported_tasks():
        raise DetectionError(
            f"{reason}, which means task '{detector.task}'; this version of triton-bundle exports "
            f"{', '.join(t for t in supported_tasks() if t != 'tensor')} (pass --task to choose one)"
        )
    return Detection(detector, architecture, reason)


def detector_for(task: str) -> TaskDetector:
    for detector in DETECTORS:
        if detector.task == task:
            return detector
    raise DetectionError(
        f"task '{task}' is not one init reads from a checkpoint; expected one of "
        f"{', '.join(d.task for d in DETECTORS if d.task in supported_tasks())}"
    )


def detect_task(config, task: str | None = None) -> Detection:
    """The task for this transformers config: `task` when given, else the head its architectures name."""
    architectures = list(getattr(config, "architectures", None) or [])
    architecture = architectures[0] if architectures else None
    if task is not None:
        return _accept(detector_for(task), architecture, f"task '{task}' given on the command line")
    model_type = config.model_type
    if architecture is None:
        # No head recorded (a config saved by hand): the bare model is the one safe reading.
        reason = f"config.json names no architectures; model_type '{model_type}' read as an encoder"
        return _accept(detector_for("feature-extraction"), None, reason)
    for detector in DETECTORS:
        for head in detector.heads:
            if architecture in _head_names(head, model_type):
                reason = f"config.json architectures: {architecture} ({head} head)"
                return _accept(detector, architecture, reason)
    raise DetectionError(
        f"config.json names architecture '{architecture}' (model_type '{model_type}'), which is none of the "
        f"heads triton-bundle exports ({', '.join(h for d in DETECTORS for h in d.heads)}); pass --task "
        "to export it as one of them"
    )

"""Structured pruning: drop whole layers and FFN neurons, slice the weights, update the config.

transformers 5.x removed `prune_heads` and the `pruned_heads` config field, and BERT-style
attention derives its head size from hidden_size / num_attention_heads: a checkpoint with fewer
heads per layer cannot load with `from_pretrained`, so heads are ranked (importance report) but not
removed. Layers and FFN width are config fields, so those students load like any checkpoint.
"""

from __future__ import annotations

import copy
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from transformers.pytorch_utils import prune_linear_layer

from triton_bundle.compress.errors import PruneTargetError
from triton_bundle.compress.importance import Importance
from triton_bundle.compress.structure import Located
from triton_bundle.spec import CompressTarget


@dataclass(frozen=True)
class StudentShape:
    """A student's size: kept layers (teacher indices, in order) and FFN neurons per layer."""

    layers: tuple[int, ...]
    ffn: int

    def describe(self, teacher: Located) -> str:
        ffn = "" if self.ffn == teacher.ffn else f", FFN {self.ffn}/{teacher.ffn}"
        return f"{len(self.layers)} of {teacher.layers} layers{ffn}"


def ffn_width(target: CompressTarget, located: Located) -> int:
    width = round(target.ffn_keep * located.ffn)
    if width < 1:
        raise PruneTargetError(
            f"compress.target.ffn_keep {target.ffn_keep} keeps no FFN neuron of {located.ffn}: it would "
            "remove every neuron; expected a share that keeps at least one"
        )
    return width


def check_heads(target: CompressTarget, located: Located) -> None:
    if target.heads_per_layer is not None and target.heads_per_layer < located.heads:
        hidden = located.heads * located.head_size
        raise PruneTargetError(
            f"compress.target.heads_per_layer {target.heads_per_layer}: cannot remove heads from this family. "
            f"transformers 5.x has no prune_heads, and its attention derives the head size from the config "
            f"(hidden size / head count: {hidden} / {located.heads} = {located.head_size}); no config field "
            f"states a head size, so {target.heads_per_layer} heads of {located.head_size} dims at hidden size "
            f"{hidden} cannot be expressed (it would be read as heads of {hidden / target.heads_per_layer:g} dims). "
            "Remove the field (head importance is still reported) and shrink layers or ffn_keep instead"
        )


def check_layers(count: int, located: Located, ffn: int, field: str) -> None:
    if count > located.layers:
        raise PruneTargetError(f"{field} {count} exceeds the teacher's {located.layers} layers")
    if count == located.layers and ffn == located.ffn:
        raise PruneTargetError(
            f"{field} {count} keeps all {located.layers} layers and compress.target.ffn_keep keeps every FFN "
            "neuron: nothing would be removed; expected fewer layers or ffn_keep below 1"
        )


def _set_child(root: nn.Module, path: str, module: nn.Module) -> None:
    parent_path, _, attr = path.rpartition(".")
    setattr(root.get_submodule(parent_path) if parent_path else root, attr, module)


def build_student(
    teacher: nn.Module, located: Located, importance: Importance, shape: StudentShape
) -> nn.Module:
    """A pruned deep copy of `teacher`: only `shape.layers`, each with its top `shape.ffn` neurons."""
    student = copy.deepcopy(teacher)
    blocks = located.blocks(student)
    _set_child(student, located.list_path, nn.ModuleList([blocks[i] for i in shape.layers]))
    if shape.ffn < located.ffn:
        for block, index in zip(located.blocks(student), shape.layers, strict=True):
            keep = importance.ffn_scores[index].topk(shape.ffn).indices.sort().values
            ffn_in, ffn_out = located.linear(block, "ffn_in"), located.linear(block, "ffn_out")
            _set_child(block, located.layout.ffn_in, prune_linear_layer(ffn_in, keep, dim=0))
            _set_child(block, located.layout.ffn_out, prune_linear_layer(ffn_out, keep, dim=1))
    config = student.config
    config.num_hidden_layers = len(shape.layers)
    setattr(config, located.layout.ffn_config, shape.ffn)
    for p in student.parameters():
        p.requires_grad_(True)
    return student


def save_student(student: nn.Module, tokenizer, teacher_dir: Path, target: Path) -> None:
    """safetensors + config + tokenizer (+ the teacher's labels.json) in `target`."""
    student.save_pretrained(target, safe_serialization=True)
    tokenizer.save_pretrained(target)
    labels = teacher_dir / "labels.json"
    if labels.is_file():
        shutil.copyfile(labels, target / "labels.json")


@torch.no_grad()
def verify_reload(
    student: nn.Module, auto_class: str, directory: Path, enc: dict[str, torch.Tensor]
) -> float:
    """Reload the saved student with from_pretrained; its outputs must match the in-memory one."""
    import transformers

    loaded = getattr(transformers, auto_class).from_pretrained(directory, use_safetensors=True).eval()
    student.eval()
    a, b = student(**enc), loaded(**enc)
    key = "logits" if hasattr(a, "logits") else "last_hidden_state"
    diff = float((getattr(a, key) - getattr(b, key)).abs().max())
    if diff > 1e-4:
        raise PruneTargetError(
            f"the saved student at {directory} does not reproduce the pruned model (max |diff| {diff:.2e})"
        )
    return diff


def describe_config(directory: Path) -> dict[str, object]:
    config = json.loads((directory / "config.json").read_text(encoding="utf-8"))
    keys = ("model_type", "num_hidden_layers", "n_layers", "intermediate_size", "hidden_dim")
    return {k: config[k] for k in keys if k in config}

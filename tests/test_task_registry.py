"""The task registry picks each task's repository plan and ensemble head; reading it does not import torch."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

from triton_bundle.export.tasks import TASKS
from triton_bundle.repository import pipelines
from triton_bundle.repository.heads import HEADS, head_kind
from triton_bundle.repository.sources import RepositoryError


@pytest.mark.parametrize("name", sorted(TASKS))
def test_every_task_resolves_to_a_plan_and_its_head(name):
    task = TASKS[name]
    if task.repository_plan:
        module, function = task.repository_plan.split(":")
        assert callable(getattr(importlib.import_module(module), function))
        return
    assert task.modality in pipelines._PLANS
    if task.modality in ("text", "vision"):  # both build an ensemble that ends in the task's head
        assert head_kind(name, task.head) is HEADS[task.head]


def test_classifiers_share_one_head_across_modalities():
    assert TASKS["text-classification"].head == TASKS["image-classification"].head == "classification"
    assert HEADS["classification"].labels and not HEADS["classification"].spans
    assert HEADS["token-classification"].spans and not HEADS["embedding"].labels


def test_an_unknown_head_names_the_known_ones():
    with pytest.raises(RepositoryError, match=r"task 'x' names no ensemble head .*'nope'.*classification"):
        head_kind("x", "nope")


def test_reading_the_registry_and_planning_a_repository_does_not_import_torch():
    code = (
        "import sys; import triton_bundle.repository.generate, triton_bundle.export.tasks; "
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"

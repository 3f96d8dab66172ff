"""The task registry picks each task's stages, repository plan and ensemble head; reading it does not
import torch."""

from __future__ import annotations

import inspect
import subprocess
import sys

import pytest

from triton_bundle.export.tasks import TASKS, stage_function
from triton_bundle.repository import pipelines
from triton_bundle.repository.heads import HEADS, head_kind
from triton_bundle.repository.sources import RepositoryError
from triton_bundle.spec import ModelSpec


@pytest.mark.parametrize("name", sorted(TASKS))
def test_every_task_resolves_to_a_plan_and_its_head(name):
    task = TASKS[name]
    if task.repository_plan:
        assert list(inspect.signature(stage_function(task.repository_plan)).parameters)[:3] == [
            "spec",
            "options",
            "sources",
        ]
        return
    assert task.modality in pipelines._PLANS
    if task.modality in ("text", "vision"):  # both build an ensemble that ends in the task's head
        assert head_kind(name, task.head) is HEADS[task.head]


@pytest.mark.parametrize("name", sorted(TASKS))
def test_a_task_s_own_stages_import_and_take_what_their_callers_pass(name):
    """finetune(), export_model() and make_variants() call these with (spec, workdir, third) positionally."""
    task = TASKS[name]
    for entry in (task.export_stage, task.finetune_stage, task.precision_stage):
        if entry:
            assert len(inspect.signature(stage_function(entry)).parameters) >= 3, entry
    assert task.finetune_section in ModelSpec.model_fields  # finetune() checks the spec has it


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


@pytest.mark.parametrize(
    "task,has_finetune,message",
    [
        ("text-classification", False, "the spec has no 'finetune' section"),
        ("text-generation", False, "the spec has no 'finetune' section"),
        (
            "token-classification",
            True,
            "fine-tuning is built for text-classification, not 'token-classification'",
        ),
    ],
)
def test_finetune_refuses_a_spec_it_cannot_train_before_touching_the_workdir(
    demo_spec, tmp_path, task, has_finetune, message
):
    from triton_bundle.finetune import FinetuneError, finetune

    spec = demo_spec.model_copy(
        update={"task": task, "finetune": demo_spec.finetune if has_finetune else None}
    )
    with pytest.raises(FinetuneError, match=message):
        finetune(spec, tmp_path / "artifacts")
    assert not (tmp_path / "artifacts").exists()

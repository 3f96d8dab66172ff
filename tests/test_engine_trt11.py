"""The engine path against TensorRT 11's API: strongly typed only, no precision builder flags.

The real TensorRT for RTX (installed here) still has STRONGLY_TYPED and VERSION_COMPATIBLE; a release
that dropped STRONGLY_TYPED (weak typing gone) must get flags 0, and the code must name no removed flag.
"""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace

import pytest

from triton_bundle.engine.trt_build import network_flags

ENGINE = Path(__file__).resolve().parents[1] / "triton_bundle" / "engine"
# Removed in TensorRT 11 (NVIDIA's 10.x -> 11.x Python migration reference; the setters and
# set_output_type as found in the 26.06 TensorRT container by triton-inference-server/server d55d95f).
REMOVED = re.compile(
    r"BuilderFlag\.(FP16|INT8|FP8|BF16|INT4|FP4|OBEY_PRECISION_CONSTRAINTS|PREFER_PRECISION_CONSTRAINTS)"
    r"|int8_calibrator|IInt8\w*Calibrator|set_quantization_flag|platform_has_fast_(fp16|int8)"
    r"|set_output_type|\.dynamic_range\s*=(?!=)|\.dtype\s*=(?!=)|\.precision\s*=(?!=)"
)


def test_strongly_typed_flag_with_and_without_the_member() -> None:
    rtx = pytest.importorskip("tensorrt_rtx", reason="TensorRT for RTX is installed by the dev extra")
    assert network_flags(rtx) == 1 << int(rtx.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    assert network_flags(SimpleNamespace(NetworkDefinitionCreationFlag=SimpleNamespace())) == 0


def test_the_removed_api_pattern_catches_the_weak_typing_calls() -> None:
    # The guard below is only as good as this pattern: each line is TensorRT 10 code 11 refuses.
    for line in (
        "config.set_flag(trt.BuilderFlag.FP16)",
        "config.int8_calibrator = calibrator",
        "layer.set_output_type(0, trt.float16)",
        "tensor.dtype = trt.int8",
        "tensor.dynamic_range = (-1.0, 1.0)",
        "layer.precision = trt.float16",
    ):
        assert REMOVED.search(line), line
    for line in ("network.get_input(0).dtype == trt.float16", "layer.get_output_type(0)"):
        assert not REMOVED.search(line), line


def test_the_engine_code_uses_no_api_tensorrt_11_removed() -> None:
    used = {str(p.name): REMOVED.findall(p.read_text(encoding="utf-8")) for p in ENGINE.glob("*.py")}
    assert not {k: v for k, v in used.items() if v}

"""Precision variants behind accuracy gates: FP16, INT8 Q/DQ (TensorRT), INT8 dynamic (CPU).

`stage.make_variants(spec, workdir)` builds each variant, gates it against FP32 on the held-out
data, rescues INT8 with sensitivity-guided mixed precision, and publishes only what passed.
"""

# Modalities the stage can gate (precision.modalities holds their data paths). Kept here, import-free,
# so the engine stage (which runs in NVIDIA's TensorRT container) can tell whether to advise it.
SUPPORTED_MODALITIES = ("text", "vision", "tensor")

"""Side-by-side benchmarks: PyTorch-eager HTTP baseline, onnxruntime in-process, Triton served, GPU.

Scripts, not tests: `python benchmarks/run.py --spec examples/minilm-intent/spec.yaml [--quick]`.
"""

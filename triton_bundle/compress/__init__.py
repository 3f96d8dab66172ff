"""The compress stage: importance -> structured pruning -> distillation -> accuracy gate.

The student is a real, smaller Hugging Face checkpoint (fewer layers, narrower FFNs) that export,
precision and serving pick from the manifest like any other checkpoint.
"""

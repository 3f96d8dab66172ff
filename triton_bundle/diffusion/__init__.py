"""task: diffusion. A class-conditional `diffusers` UNet2DModel in pixel space (no VAE) trained on the
digits, exported to ONNX, served by a Python-backend sampling loop that calls the UNet through Triton."""

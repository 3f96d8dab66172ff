"""What image-generation and diffusion ensembles take and give. Repository, client and load test import these.

Clients send one seed per image (and a class id for class-conditional models); the server draws the
latent from the seed (imagegen.seeds), runs the generator, and returns each image as PNG bytes.
"""

from __future__ import annotations

SEED = "seed"  # TYPE_INT64, dims [1]
CLASS_LABEL = "class_label"  # TYPE_INT64, dims [1], optional: index into the spec's labels
STEPS = "steps"  # TYPE_INT32, dims [1], optional: diffusion denoising steps (within the spec's limits)
IMAGE = "IMAGE"  # TYPE_STRING, dims [1]: PNG bytes
IMAGE_ARRAY = "IMAGE_ARRAY"  # TYPE_UINT8, dims [H, W, C]: the same pixels, undecoded

# The generator graph's own tensors (the tensor model `<name>_model`).
LATENT = "latent"  # float32 [B, *image.latent_shape]
GENERATED = "image"  # float32 [B, C, H, W] in image.value_range


def latent_model(name: str) -> str:
    """The Python model that turns seeds into latents (and checks class labels)."""
    return f"{name}_latent"


def png_model(name: str) -> str:
    """The Python model that turns float images into PNG bytes + uint8 arrays."""
    return f"{name}_png"

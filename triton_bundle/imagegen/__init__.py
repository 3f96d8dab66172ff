"""Image generation: digits data, seed -> latent, PNG encoding, image-quality metrics, a digit classifier.

Shared by the GAN (`task: image-generation`) and diffusion (`task: diffusion`) paths; see each module.
"""

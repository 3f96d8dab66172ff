"""triton-bundle: fine-tuned model to a verified, load-tested Triton deployment."""

__version__ = "0.1.0"

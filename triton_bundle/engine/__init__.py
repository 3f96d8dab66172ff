"""TensorRT engines: profiles, the shared build, the GPU builder, the ahead-of-time check, the engine manifest."""

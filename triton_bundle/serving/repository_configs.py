"""What a model repository asks of the server, read from its config.pbtxt files before Triton starts."""

from __future__ import annotations

from pathlib import Path


def _configs(repository: Path) -> list:
    """The repository's parsed config.pbtxt files (unparsable ones are Triton's to report)."""
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    configs = []
    for path in sorted(Path(repository).glob("*/config.pbtxt")):
        try:
            configs.append(
                text_format.Parse(path.read_text(encoding="utf-8"), model_config_pb2.ModelConfig())
            )
        except (text_format.ParseError, OSError, UnicodeDecodeError):
            continue
    return configs


def repository_uses_response_cache(repository: Path) -> bool:
    """Whether any model's config.pbtxt enables response_cache."""
    return any(config.response_cache.enable for config in _configs(repository))


# The wheel's Triton has the python backend only; ensembles are scheduled by the core.
_LOCAL_BACKENDS = {"python"}
_LOCAL_PLATFORMS = {"ensemble"}


def unsupported_models(repository: Path) -> dict[str, str]:
    """Model name -> backend/platform the local Triton cannot run (tensorrt_plan, onnxruntime_onnx, ...)."""
    found = {}
    for config in _configs(repository):
        kind = config.platform or config.backend
        if config.platform not in _LOCAL_PLATFORMS and config.backend not in _LOCAL_BACKENDS:
            found[config.name] = kind or "(none)"
    return found

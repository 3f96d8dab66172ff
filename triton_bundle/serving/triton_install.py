"""The Triton tree from the nvidia-pytriton wheel, made runnable outside pytriton.

The wheel ships Triton 2.51 with only the Python backend. We copy its tree to a writable cache (once per
wheel + Python version), drop the Python-version-matching backend stub into `backends/python/`, and
give the binary an environment under which the stub's embedded Python is this interpreter's environment
(numpy, tokenizers, onnxruntime importable by the python models).
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import shutil
import sys
import sysconfig
import tempfile
from dataclasses import dataclass
from pathlib import Path

from triton_bundle.errors import BundleError

PYTRITON_PIN = "nvidia-pytriton==0.7.0"


class TritonNotInstalledError(BundleError, FileNotFoundError):
    """The tritonserver binary, its libraries or the Python backend stub are missing."""


@dataclass(frozen=True)
class TritonInstallation:
    """A prepared, runnable copy of the wheel's Triton tree."""

    root: Path
    binary: Path
    backend_directory: Path
    cache_directory: Path
    library_path: list[Path]
    version: str


# ---------------------------------------------------------------------------------------------- install


def _pytriton_dist_dir() -> Path:
    try:
        import pytriton
    except ImportError as exc:
        raise TritonNotInstalledError(
            f"the nvidia-pytriton package is not installed ({exc}); pip install {PYTRITON_PIN}"
        ) from None
    return Path(pytriton.__file__).resolve().parent / "tritonserver"


def _wheel_libs_dir(dist_dir: Path) -> Path:
    # auditwheel puts the wheel's bundled shared libraries beside the package: site-packages/<dist>.libs
    return dist_dir.parent.parent / "nvidia_pytriton.libs"


def _python_tag() -> str:
    return f"{sys.version_info.major}.{sys.version_info.minor}"


def _cache_root() -> Path:
    explicit = os.environ.get("TRITON_BUNDLE_CACHE")
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or (Path.home() / ".cache")
    return Path(base).expanduser() / "triton-bundle"


def _pytriton_version() -> str:
    try:
        return importlib.metadata.version("nvidia-pytriton")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def prepare_triton(cache_root: Path | None = None) -> TritonInstallation:
    """A runnable Triton tree in the cache, built once; concurrent callers race safely via rename."""
    dist = _pytriton_dist_dir()
    binary_src = dist / "bin" / "tritonserver"
    stub_src = dist / "python_backend_stubs" / _python_tag() / "triton_python_backend_stub"
    libs = _wheel_libs_dir(dist)
    for what, path in (("tritonserver binary", binary_src), ("Python backend stub", stub_src)):
        if not path.is_file():
            raise TritonNotInstalledError(
                f"{what} not found at {path} (Python {_python_tag()}); pip install {PYTRITON_PIN}"
            )
    if not libs.is_dir():
        raise TritonNotInstalledError(
            f"Triton's bundled libraries not found at {libs}; pip install {PYTRITON_PIN}"
        )

    # The key changes when the wheel is reinstalled, so a stale copy is never reused.
    stat = binary_src.stat()
    key = f"tritonserver-{_pytriton_version()}-py{_python_tag()}-{stat.st_size}-{int(stat.st_mtime)}"
    root = (cache_root or _cache_root()) / key
    if not (root / "bin" / "tritonserver").is_file():
        root.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=root.parent))
        try:
            tree = staging / "tritonserver"
            shutil.copytree(dist, tree, ignore=shutil.ignore_patterns("python_backend_stubs", "__pycache__"))
            stub_dst = tree / "backends" / "python" / "triton_python_backend_stub"
            shutil.copy2(stub_src, stub_dst)
            for exe in (tree / "bin" / "tritonserver", stub_dst):
                exe.chmod(0o755)
            with contextlib.suppress(FileExistsError, OSError):
                # rename of a directory onto an existing non-empty one fails: another process won.
                tree.rename(root)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    if not (root / "bin" / "tritonserver").is_file():
        raise TritonNotInstalledError(
            f"could not prepare the Triton tree at {root}; check the cache is writable"
        )

    libdir = sysconfig.get_config_var("LIBDIR")
    library_path = [libs] + ([Path(libdir)] if libdir else [])
    return TritonInstallation(
        root=root,
        binary=root / "bin" / "tritonserver",
        backend_directory=root / "backends",
        cache_directory=root / "caches",
        library_path=library_path,
        version=_pytriton_version(),
    )


def python_backend_env(
    installation: TritonInstallation, base: dict[str, str] | None = None
) -> dict[str, str]:
    """The environment under which the Python backend stub embeds THIS interpreter's environment.

    The stub links libpython dynamically (found through LD_LIBRARY_PATH: the interpreter's LIBDIR) and
    computes sys.prefix by looking up `python3` on PATH: with this interpreter's bin/ first that is the
    venv, so its site-packages (and .pth files) load. PYTHONPATH repeats the site-packages explicitly so a
    launch from another cwd or an interpreter without `python3` beside it still imports the same packages.
    """
    env = dict(os.environ if base is None else base)
    ld = [str(p) for p in installation.library_path]
    if env.get("LD_LIBRARY_PATH"):
        ld.append(env["LD_LIBRARY_PATH"])
    env["LD_LIBRARY_PATH"] = os.pathsep.join(ld)
    bin_dir = str(Path(sys.executable).absolute().parent)
    env["PATH"] = os.pathsep.join([bin_dir, env.get("PATH", "/usr/local/bin:/usr/bin:/bin")])
    site_dirs = list(dict.fromkeys([sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]]))
    if env.get("PYTHONPATH"):
        site_dirs.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(site_dirs)
    env.pop("PYTHONHOME", None)
    return env

"""What `triton-bundle infer` sends to image and tensor models, read from the paths it is given.

Images go as their encoded bytes (the vision ensemble decodes them), after a check that PIL can read
them, so a text file given by mistake is named here instead of failing on the server. Tensors come
from a `.npz` archive (one array per input name) and go back to one.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

import numpy as np

from triton_bundle.client.errors import ClientError
from triton_bundle.export.image_data import IMAGE_SUFFIXES, load_image_paths

__all__ = ["IMAGE_SUFFIXES", "TENSOR_SUFFIX", "check_images", "image_paths", "read_npz", "write_npz"]

TENSOR_SUFFIX = ".npz"
IMAGE_LISTS = frozenset({".jsonl", ".ndjson", ".csv"})  # rows naming image paths, as in a spec's data.eval


class InputPathError(ClientError, ValueError):
    """A path given to `infer` that is missing or does not hold what the model takes."""


def image_paths(items: Iterable[str | Path], field: str = "image") -> list[Path]:
    """Files as given; directories expanded to the image files under them, sorted by path; .jsonl / .csv
    lists read for the paths in their `field` column (relative to the list's folder)."""
    paths: list[Path] = []
    for item in items:
        path = Path(item)
        if path.is_file() and path.suffix.lower() in IMAGE_LISTS:
            paths.extend(load_image_paths(path, field, None).paths)
        elif path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise InputPathError(
                    f"{path}: no image files in this directory (looked for {', '.join(sorted(IMAGE_SUFFIXES))})"
                )
            paths.extend(found)
        elif path.is_file():
            paths.append(path)
        else:
            raise InputPathError(f"image not found: {path} (expected an image file or a directory of them)")
    if not paths:
        raise InputPathError("no images given: pass image files or a directory as arguments or --file")
    return paths


def check_images(paths: list[Path]) -> list[Path]:
    """Every file's header names an image format PIL reads (cheap: nothing is decoded), so a text file
    among the images stops the run before anything is sent."""
    from PIL import Image, UnidentifiedImageError

    for path in paths:
        try:
            with Image.open(path):
                pass
        except (UnidentifiedImageError, OSError) as exc:
            size = path.stat().st_size if path.exists() else 0
            raise InputPathError(
                f"{path}: not an image ({'empty file' if not size else f'{size} bytes'}; {exc}); "
                f"expected an encoded image such as {', '.join(sorted(IMAGE_SUFFIXES))}"
            ) from None
    return paths


def read_image(path: Path) -> bytes:
    """The file's bytes, once PIL has checked they are an image (the server would reject them later)."""
    from PIL import Image, UnidentifiedImageError

    data = path.read_bytes()
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.verify()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        kind = "empty file" if not data else f"{len(data)} bytes"
        raise InputPathError(
            f"{path}: not an image ({kind}; {type(exc).__name__}: {exc}); "
            f"expected an encoded image such as {', '.join(sorted(IMAGE_SUFFIXES))}"
        ) from None
    return data


def image_batches(paths: list[Path], size: int) -> Iterator[tuple[list[str], list[bytes]]]:
    """(sources, encoded images) `size` at a time, read lazily so a large directory never sits in memory."""
    for start in range(0, len(paths), size):
        chunk = paths[start : start + size]
        yield [str(p) for p in chunk], [read_image(p) for p in chunk]


def read_npz(path: Path) -> dict[str, np.ndarray]:
    """Every array of a `.npz`, by name. Object arrays (pickles) are refused, never unpickled."""
    if not path.is_file():
        raise InputPathError(f"tensor file not found: {path} (expected a .npz with one array per input)")
    if path.suffix.lower() != TENSOR_SUFFIX:
        raise InputPathError(
            f"{path}: tensor inputs must be a NumPy .npz archive (one array per input name, "
            f"np.savez('in.npz', latent=...)), got a '{path.suffix or 'no suffix'}' file"
        )
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise InputPathError(f"{path}: not a readable .npz archive ({exc})") from None
    except ValueError as exc:
        raise InputPathError(
            f"{path}: {exc}; object (pickled) arrays are not loaded, save numeric arrays only"
        ) from None
    if not arrays:
        raise InputPathError(f"{path}: the archive holds no arrays; expected one per input name")
    return arrays


def write_npz(path: Path, arrays: Mapping[str, np.ndarray]) -> Path:
    """Outputs by name, written atomically (a killed run leaves no half archive)."""
    from triton_bundle.atomic import atomic_path

    if path.suffix.lower() != TENSOR_SUFFIX:
        raise InputPathError(f"--out {path}: tensor outputs are written as a .npz archive; name it *.npz")
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.savez(handle, **{name: _savable(array) for name, array in arrays.items()})
    return path


def _savable(array: np.ndarray) -> np.ndarray:
    # BYTES outputs arrive as object arrays of bytes; np.savez would pickle those: save them as str.
    if array.dtype == np.object_:
        return _decoded(array).astype(str)
    return array


def tensor_rows(
    outputs: Mapping[str, np.ndarray], versions: list[str], batched: bool
) -> Iterator[dict[str, object]]:
    """One JSON-ready record per batch row, or one for the whole result when the model does not batch."""
    if not outputs:
        return
    if not batched:
        yield {
            "outputs": {name: _decoded(array).tolist() for name, array in outputs.items()},
            "model_version": versions[0] if versions else "",
        }
        return
    for row in range(next(iter(outputs.values())).shape[0]):
        yield {
            "row": row,
            "outputs": {name: _decoded(array[row]).tolist() for name, array in outputs.items()},
            "model_version": versions[row] if row < len(versions) else "",
        }


def _decoded(array: np.ndarray) -> np.ndarray:
    if array.dtype != np.object_:
        return np.asarray(array)
    decode = np.vectorize(
        lambda v: v.decode("utf-8", "replace") if isinstance(v, bytes) else v, otypes=[object]
    )
    return decode(array) if array.size else array

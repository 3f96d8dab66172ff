"""Real images named by the spec: a directory of image files, or .jsonl / .csv rows with image paths."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from triton_bundle.data import DataError, read_rows
from triton_bundle.export.errors import ExportDataError

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"})


@dataclass(frozen=True)
class ImageDataset:
    paths: list[Path]
    labels: list[str | None]  # a row's label field, or the image's folder name under a directory
    source: Path

    def __len__(self) -> int:
        return len(self.paths)


def _from_directory(root: Path) -> ImageDataset:
    paths = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    labels = [p.parent.name if p.parent != root else None for p in paths]
    return ImageDataset(paths=paths, labels=labels, source=root)


def _rows(path: Path) -> list[dict[str, object]]:
    if path.suffix.lower() not in {".jsonl", ".ndjson", ".csv"}:
        raise ExportDataError(
            f"{path}: unsupported image list '{path.suffix.lower()}' (expected .jsonl or .csv, or a directory)"
        )
    try:
        return read_rows(path)
    except DataError as exc:
        raise ExportDataError(str(exc)) from None


def _from_rows(path: Path, image_field: str, label_field: str | None) -> ImageDataset:
    paths: list[Path] = []
    labels: list[str | None] = []
    for number, row in enumerate(_rows(path), start=1):
        if not isinstance(row, dict) or not row.get(image_field):
            raise ExportDataError(
                f"{path}: row {number} has no '{image_field}' field (data.image_field in the spec names "
                "the column holding an image path)"
            )
        image = Path(str(row[image_field])).expanduser()
        paths.append(image if image.is_absolute() else (path.parent / image).resolve())
        label = row.get(label_field) if label_field else None
        labels.append(None if label is None else str(label))
    return ImageDataset(paths=paths, labels=labels, source=path)


def load_image_paths(
    path: Path | None, image_field: str = "image", label_field: str | None = "label"
) -> ImageDataset:
    """The image files of an eval set; every one must exist."""
    if path is None:
        raise ExportDataError("no evaluation images given: set data.eval to a directory or a .jsonl of paths")
    path = Path(path)
    if path.is_dir():
        data = _from_directory(path)
    elif path.is_file():
        data = _from_rows(path, image_field, label_field)
    else:
        raise ExportDataError(f"evaluation data not found: {path} (expected an image directory or a .jsonl)")
    if not data.paths:
        raise ExportDataError(
            f"{path}: no images found (expected files ending in {', '.join(sorted(IMAGE_SUFFIXES))})"
        )
    missing = [p for p in data.paths if not p.is_file()]
    if missing:
        raise ExportDataError(f"{path}: {len(missing)} image(s) not found, e.g. {missing[0]}")
    return data


def read_rgb(path: Path):
    """Decode an image to RGB (what the serving side does too, so 'L' or 'RGBA' files behave the same)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except (UnidentifiedImageError, OSError) as exc:
        raise ExportDataError(f"{path}: not a readable image ({exc})") from None

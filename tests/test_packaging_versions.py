"""One NVIDIA release (YY.MM) pinned in docker/.env; every image, manifest and the spec default agree.

Engines only load on the TensorRT that built them, so the build image and the serving image must come
from the same release. `docker/set-release.sh YY.MM` moves everything; these tests say what disagrees.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from triton_bundle.repository.triton_images import release, tensorrt_for_image
from triton_bundle.spec import EngineSpec

ROOT = Path(__file__).resolve().parents[1]
PIN_LINE = re.compile(r"^TRITON_RELEASE=(\d{2}\.\d{2})\s*$", re.M)
FACTS_LINE = re.compile(
    r"^# Release (\d{2}\.\d{2}): TensorRT (\d+\.\d+\.\d+), CUDA (\S+), Triton (\S+), "
    r"NVIDIA driver >= (\d+\.\d+\.\d+)",
    re.M,
)
NVIDIA_BASES = {"nvcr.io/nvidia/tritonserver", "nvcr.io/nvidia/tensorrt"}
OWN_IMAGES = re.compile(r"^triton-bundle/[a-z0-9-]+$")
SPEC_DEFAULT = re.compile(r'triton_image_tag: str = Field\(\s*"([^"]+)"')


@dataclass(frozen=True)
class ImageRef:
    where: str  # file:line, for the failure message
    reference: str

    @property
    def name(self) -> str:
        return _split_reference(self.reference)[0]

    @property
    def tag(self) -> str | None:
        return _split_reference(self.reference)[1]


def _split_reference(reference: str) -> tuple[str, str | None]:
    # name[:tag], where the tag may hold a compose interpolation such as ${TRITON_RELEASE:?...}.
    match = re.match(r"^((?:[^/:]+(?::\d+)?/)*[^/:$]+)(?::(.+))?$", reference)
    assert match, f"not an image reference: {reference}"
    return match.group(1), match.group(2)


def release_pin(root: Path) -> str:
    match = PIN_LINE.search((root / "docker" / ".env").read_text(encoding="utf-8"))
    assert match, "docker/.env must set TRITON_RELEASE=YY.MM"
    return match.group(1)


def _dockerfile_bases(root: Path) -> list[ImageRef]:
    refs = []
    for dockerfile in sorted((root / "docker").glob("*/Dockerfile")):
        defaults: dict[str, str] = {}
        for number, line in enumerate(dockerfile.read_text(encoding="utf-8").splitlines(), 1):
            if m := re.match(r"ARG (\w+)(?:=(\S+))?", line):
                if m.group(2) is not None:
                    defaults[m.group(1)] = m.group(2)
            elif m := re.match(r"FROM (\S+)", line):
                # Resolve ARG defaults; ${TRITON_RELEASE} has none on purpose and stays symbolic.
                image = re.sub(
                    r"\$\{(\w+)\}", lambda v, d=defaults: d.get(v.group(1), v.group(0)), m.group(1)
                )
                refs.append(ImageRef(f"{dockerfile.relative_to(root)}:{number}", image))
    return refs


def _compose_images(root: Path) -> list[ImageRef]:
    compose = yaml.safe_load((root / "docker" / "compose.yaml").read_text(encoding="utf-8"))
    return [ImageRef(f"docker/compose.yaml services.{n}", s["image"]) for n, s in compose["services"].items()]


def _manifest_images(root: Path) -> list[ImageRef]:
    refs = []
    for path in sorted((root / "deploy").rglob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            pod = (doc or {}).get("spec", {}).get("template", {}).get("spec", {})
            for container in pod.get("initContainers", []) + pod.get("containers", []):
                refs.append(ImageRef(f"{path.relative_to(root)} {container['name']}", container["image"]))
    return refs


def disagreements(root: Path) -> list[str]:
    """Every place whose image or default does not follow the pinned release, with what it should be."""
    pin = release_pin(root)
    wrong: list[str] = []
    for ref in _dockerfile_bases(root):
        if ref.name in NVIDIA_BASES and ref.tag != "${TRITON_RELEASE}-py3":
            wrong.append(f"{ref.where}: FROM {ref.reference}; expected {ref.name}:${{TRITON_RELEASE}}-py3")
    for ref in _compose_images(root):
        if (OWN_IMAGES.match(ref.name) or ref.name in NVIDIA_BASES) and not (ref.tag or "").startswith(
            "${TRITON_RELEASE"
        ):
            wrong.append(f"{ref.where}: image {ref.reference}; expected the tag ${{TRITON_RELEASE}}")
    for ref in _manifest_images(root):
        expected = pin if OWN_IMAGES.match(ref.name) else f"{pin}-py3" if ref.name in NVIDIA_BASES else None
        if expected is not None and ref.tag != expected:
            wrong.append(f"{ref.where}: image {ref.reference}; expected {ref.name}:{expected}")
    for kustomization in (root / "deploy").rglob("kustomization.yaml"):
        for image in yaml.safe_load(kustomization.read_text(encoding="utf-8")).get("images", []):
            if image.get("newTag") not in (None, pin):
                wrong.append(f"{kustomization.relative_to(root)}: newTag {image['newTag']}; expected {pin}")
    default = SPEC_DEFAULT.search((root / "triton_bundle" / "spec.py").read_text(encoding="utf-8"))
    if default is None or default.group(1) != pin:
        found = default.group(1) if default else "not found"
        wrong.append(f"triton_bundle/spec.py EngineSpec.triton_image_tag default {found}; expected {pin}")
    return wrong


# ------------------------------------------------------------------------------------------- tests


def test_the_pin_is_a_release() -> None:
    assert re.fullmatch(r"\d{2}\.\d{2}", release_pin(ROOT))


def test_every_image_and_default_follows_the_pin() -> None:
    problems = disagreements(ROOT)
    assert not problems, "run docker/set-release.sh YY.MM or fix:\n" + "\n".join(problems)


def test_the_spec_default_is_the_pin() -> None:
    assert EngineSpec().triton_image_tag == release_pin(ROOT)


def test_build_and_serving_images_come_from_the_same_release() -> None:
    bases = {ref.name: ref.tag for ref in _dockerfile_bases(ROOT)}
    assert bases["nvcr.io/nvidia/tritonserver"] == bases["nvcr.io/nvidia/tensorrt"] == "${TRITON_RELEASE}-py3"


def test_the_release_variable_has_no_second_default() -> None:
    # A default in a Dockerfile would be a second pin that silently wins outside compose.
    for dockerfile in (ROOT / "docker").glob("*/Dockerfile"):
        assert not re.search(r"^ARG TRITON_RELEASE=", dockerfile.read_text(encoding="utf-8"), re.M), (
            dockerfile
        )


def test_other_images_are_pinned_not_latest() -> None:
    for ref in _dockerfile_bases(ROOT) + _compose_images(ROOT) + _manifest_images(ROOT):
        assert ref.tag and ref.tag != "latest", f"{ref.where}: {ref.reference} has no pinned tag"


def test_the_pinned_release_facts_are_documented() -> None:
    # The README quotes these: the TensorRT the release carries and the driver it needs.
    facts = FACTS_LINE.search((ROOT / "docker" / ".env").read_text(encoding="utf-8"))
    assert facts, (
        "docker/.env needs '# Release YY.MM: TensorRT x.y.z, CUDA ..., Triton ..., NVIDIA driver >= ...'"
    )
    assert facts.group(1) == release_pin(ROOT), "the facts line describes another release than the pin"


def test_the_pinned_release_is_in_the_tensorrt_table_with_the_facts_line_version() -> None:
    # The repository validator checks engines against this table: a pin it does not know would leave
    # every engine unchecked, and a table that disagrees with the facts line would pass wrong engines.
    facts = FACTS_LINE.search((ROOT / "docker" / ".env").read_text(encoding="utf-8"))
    assert facts
    table = tensorrt_for_image(release_pin(ROOT))
    assert table is not None, f"add {release_pin(ROOT)} to triton_bundle/repository/triton_images.py"
    assert release(table) == release(facts.group(2)), f"table: TensorRT {table}, facts line: {facts.group(2)}"


def test_set_release_moves_everything_in_one_command(tmp_path: Path) -> None:
    for part in ("docker", "deploy"):
        shutil.copytree(ROOT / part, tmp_path / part)
    (tmp_path / "triton_bundle").mkdir()
    shutil.copy2(ROOT / "triton_bundle" / "spec.py", tmp_path / "triton_bundle" / "spec.py")
    script = tmp_path / "docker" / "set-release.sh"
    moved = subprocess.run([str(script), "26.01"], capture_output=True, text=True, timeout=60, check=False)
    assert moved.returncode == 0, moved.stderr
    assert release_pin(tmp_path) == "26.01"
    assert disagreements(tmp_path) == []
    assert "Release 26.01" not in (tmp_path / "docker" / ".env").read_text(encoding="utf-8")  # facts: by hand
    refused = subprocess.run([str(script), "latest"], capture_output=True, text=True, timeout=60, check=False)
    assert refused.returncode == 2 and "YY.MM" in refused.stderr


def test_a_drifted_tag_is_reported(tmp_path: Path) -> None:
    for part in ("docker", "deploy"):
        shutil.copytree(ROOT / part, tmp_path / part)
    (tmp_path / "triton_bundle").mkdir()
    shutil.copy2(ROOT / "triton_bundle" / "spec.py", tmp_path / "triton_bundle" / "spec.py")
    workers = tmp_path / "deploy" / "serving" / "locust" / "workers.yaml"
    pin = release_pin(ROOT)
    workers.write_text(workers.read_text(encoding="utf-8").replace(f"locust:{pin}", "locust:24.01"), "utf-8")
    assert [p for p in disagreements(tmp_path) if "workers.yaml" in p and "24.01" in p]


@pytest.mark.parametrize("name", ["triton", "engine-builder", "locust", "proxy"])
def test_compose_builds_each_image_with_the_pinned_release(name: str) -> None:
    compose = yaml.safe_load((ROOT / "docker" / "compose.yaml").read_text(encoding="utf-8"))
    service = next(s for s in compose["services"].values() if s["image"].startswith(f"triton-bundle/{name}:"))
    assert service["build"]["args"]["TRITON_RELEASE"] == "${TRITON_RELEASE}"
    assert service["build"]["dockerfile"] == f"docker/{name}/Dockerfile"

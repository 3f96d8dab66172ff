"""`validate_repository`: read every config.pbtxt back and check it against what will actually run.

Checks: configs parse and are named after their directory; dims / dtypes / max_batch_size against the ONNX
graph or the TensorRT engine manifest; engine TensorRT version against the target Triton image; engine
profiles against max_batch_size and the tokenizer's max length; ensemble wiring (every tensor produced
before it is consumed, with the same dtype); label files against the class count. Each Problem says how
to fix it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from triton_bundle.engine.manifest import EngineManifest
from triton_bundle.repository import contract
from triton_bundle.repository.configs import (
    ENSEMBLE_PLATFORM,
    ONNXRUNTIME_PLATFORM,
    PYTHON_BACKEND,
    TENSORRT_PLATFORM,
)
from triton_bundle.repository.layout import CONFIG_FILE, read_config
from triton_bundle.repository.tensor_model import ENGINE_META_SUFFIX
from triton_bundle.repository.tensors import (
    TRT_TO_TRITON,
    GraphSignature,
    TensorInfo,
    config_dims,
    onnx_signature,
    type_name,
)
from triton_bundle.repository.triton_images import images_for_tensorrt, release, tensorrt_for_image
from triton_bundle.repository.trtllm import TRTLLM_BACKEND
from triton_bundle.repository.trtllm_validate import (
    Finding,
    check_generation_ensemble,
    check_llmapi,
    check_tensorrtllm,
)

Severity = Literal["error", "warning"]


@dataclass(frozen=True)
class Problem:
    model: str
    file: str
    message: str
    fix: str
    severity: Severity = "error"


@dataclass
class _Model:
    name: str
    directory: Path
    config: mc.ModelConfig
    params: dict[str, str] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        if self.config.platform == ENSEMBLE_PLATFORM:
            return "ensemble"
        if self.config.platform == TENSORRT_PLATFORM or self.config.backend == "tensorrt":
            return "tensorrt"
        if self.config.platform == ONNXRUNTIME_PLATFORM or self.config.backend == "onnxruntime":
            return "onnxruntime"
        if self.config.backend == TRTLLM_BACKEND:
            return "tensorrtllm"
        if self.config.backend == PYTHON_BACKEND and (self.directory / "1" / "model.yaml").is_file():
            return "trtllm_llmapi"  # TensorRT-LLM's LLM-API model: NVIDIA's model.py, our model.yaml
        if self.config.backend == PYTHON_BACKEND:
            if "aggregation_strategy" in self.params:
                return "token_postprocess"
            if "tokenizer_file" in self.params:
                return "tokenizer"
            if "model_file" in self.params:
                return "onnx_runner"
            if "labels_file" in self.params:
                return "classification_postprocess"
            return "python"
        return "other"

    def file(self, relative: str = CONFIG_FILE) -> str:
        return f"{self.name}/{relative}"

    def versions(self) -> list[int]:
        return sorted(int(p.name) for p in self.directory.iterdir() if p.is_dir() and p.name.isdigit())

    def inputs(self) -> dict[str, TensorInfo]:
        return {
            i.name: TensorInfo(i.name, i.data_type, config_dims(self.config, i.dims))
            for i in self.config.input
        }

    def outputs(self) -> dict[str, TensorInfo]:
        return {
            o.name: TensorInfo(o.name, o.data_type, config_dims(self.config, o.dims))
            for o in self.config.output
        }


class _Checker:
    def __init__(self, repo: Path, triton_image_tag: str | None) -> None:
        self.repo = repo
        self.tag = triton_image_tag
        self.problems: list[Problem] = []
        self.models: dict[str, _Model] = {}

    def add(self, model: str, file: str, message: str, fix: str, severity: Severity = "error") -> None:
        self.problems.append(Problem(model, file, message, fix, severity))

    # -- loading ---------------------------------------------------------------------------------------
    def load(self) -> None:
        for directory in sorted(p for p in self.repo.iterdir() if p.is_dir() and not p.name.startswith(".")):
            path = directory / CONFIG_FILE
            if not path.is_file():
                self.add(
                    directory.name,
                    f"{directory.name}/{CONFIG_FILE}",
                    "model directory has no config.pbtxt",
                    "regenerate the repository (triton-bundle repo generate SPEC) or remove the directory",
                )
                continue
            try:
                config = read_config(path)
            except text_format.ParseError as exc:
                self.add(
                    directory.name,
                    f"{directory.name}/{CONFIG_FILE}",
                    f"config.pbtxt does not parse: {exc}",
                    "regenerate it with triton-bundle repo generate; never edit by hand",
                )
                continue
            if config.name and config.name != directory.name:
                self.add(
                    directory.name,
                    f"{directory.name}/{CONFIG_FILE}",
                    f"config name '{config.name}' differs from its directory '{directory.name}'",
                    f'set name: "{directory.name}" or rename the directory',
                )
            params = {key: value.string_value for key, value in config.parameters.items()}
            self.models[directory.name] = _Model(directory.name, directory, config, params)

    # -- per model -------------------------------------------------------------------------------------
    def check_model(self, model: _Model) -> None:
        kind = model.kind
        if kind != "ensemble":
            self._check_versions(model)
        if kind == "onnx_runner":
            for version in model.versions():
                self._check_python_file(model, version)
                self._check_onnx(model, f"{version}/{model.params.get('model_file', 'model.onnx')}")
        elif kind == "onnxruntime":
            for version in model.versions():
                self._check_onnx(model, f"{version}/{model.config.default_model_filename or 'model.onnx'}")
        elif kind == "tensorrt":
            for version in model.versions():
                self._check_engines(model, version)
        elif kind == "tensorrtllm":
            self._add_findings(model, check_tensorrtllm(model.directory, model.config))
        elif kind == "trtllm_llmapi":
            self._add_findings(model, check_llmapi(model.directory))
        elif kind == "ensemble":
            self._check_ensemble(model)
            self._check_generation_contract(model)
        elif kind in ("tokenizer", "classification_postprocess", "token_postprocess", "python"):
            for version in model.versions():
                self._check_python_file(model, version)
            if kind in ("tokenizer", "token_postprocess"):
                self._check_tokenizer(model)
            if kind == "token_postprocess":
                self._check_token_postprocess(model)
            if kind == "classification_postprocess":
                self._check_labels(model, model.params["labels_file"], self._class_count(model))
        for output in model.config.output:
            if output.label_filename:
                self._check_labels(model, output.label_filename, int(output.dims[-1]) if output.dims else -1)

    def _add_findings(self, model: _Model, findings: list[Finding]) -> None:
        for file, message, fix, severity in findings:
            self.add(
                model.name, model.file(file), message, fix, "warning" if severity == "warning" else "error"
            )

    def _check_generation_contract(self, ensemble: _Model) -> None:
        """An ensemble in front of a TensorRT-LLM model must honour the generation contract."""
        for step in ensemble.config.ensemble_scheduling.step:
            member = self.models.get(step.model_name)
            if member is not None and member.kind in ("tensorrtllm", "trtllm_llmapi"):
                self._add_findings(ensemble, check_generation_ensemble(ensemble.config, step))

    def _check_versions(self, model: _Model) -> None:
        versions = model.versions()
        if not versions:
            self.add(
                model.name,
                model.file(""),
                "no numeric version directory (e.g. 1/)",
                "regenerate the repository",
            )
        policy = model.config.version_policy
        if policy.WhichOneof("policy_choice") == "specific":
            missing = sorted(set(policy.specific.versions) - set(versions))
            if missing:
                self.add(
                    model.name,
                    model.file(),
                    f"version_policy names versions {missing} that do not exist",
                    f"add directories {missing} or drop them from version_policy",
                )

    def _check_python_file(self, model: _Model, version: int) -> None:
        name = model.config.default_model_filename or "model.py"
        if not (model.directory / str(version) / name).is_file():
            self.add(
                model.name,
                model.file(f"{version}/{name}"),
                "the Python-backend model file is missing",
                "regenerate the repository; the bundle copies its python models there",
            )

    def _check_tokenizer(self, model: _Model) -> None:
        for version in model.versions():
            tokenizer = model.directory / str(version) / model.params["tokenizer_file"]
            if not tokenizer.is_file():
                self.add(
                    model.name,
                    model.file(f"{version}/{model.params['tokenizer_file']}"),
                    "the tokenizer file is missing",
                    "regenerate the repository from a checkpoint with tokenizer.json",
                )

    def _check_token_postprocess(self, model: _Model) -> None:
        for version in model.versions():
            if not (model.directory / str(version) / "token_aggregation.py").is_file():
                self.add(
                    model.name,
                    model.file(f"{version}/token_aggregation.py"),
                    "the grouping rules model.py imports are missing",
                    "regenerate the repository; the bundle copies token_aggregation.py beside model.py",
                )
        logits = model.inputs().get(model.params.get("logits_name", contract.LOGITS))
        self._check_labels(model, model.params["labels_file"], logits.dims[-1] if logits else -1)

    def _class_count(self, model: _Model) -> int:
        probabilities = model.outputs().get(contract.PROBABILITIES_OUTPUT)
        return probabilities.dims[-1] if probabilities else -1

    def _check_labels(self, model: _Model, relative: str, count: int) -> None:
        path = model.directory / relative
        if not path.is_file():
            self.add(
                model.name,
                model.file(relative),
                "the label file is missing",
                "regenerate the repository (labels come from spec.labels or the checkpoint's id2label)",
            )
            return
        labels = [line for line in path.read_text(encoding="utf-8").splitlines() if line]
        if count > 0 and len(labels) != count:
            self.add(
                model.name,
                model.file(relative),
                f"{len(labels)} labels for {count} classes",
                "make spec.labels match the model's classes and regenerate",
            )

    # -- ONNX ------------------------------------------------------------------------------------------
    def _check_onnx(self, model: _Model, relative: str) -> None:
        path = model.directory / relative
        if not path.is_file():
            self.add(
                model.name, model.file(relative), "the ONNX file is missing", "regenerate the repository"
            )
            return
        try:
            graph = onnx_signature(path)
        except Exception as exc:
            self.add(
                model.name, model.file(relative), f"the ONNX file does not load: {exc}", "re-export the model"
            )
            return
        self._compare(model, graph, relative)

    def _compare(self, model: _Model, graph: GraphSignature, source: str) -> None:
        mbs = model.config.max_batch_size
        for role, configured, actual in (
            ("input", model.inputs(), graph.inputs),
            ("output", model.outputs(), graph.outputs),
        ):
            by_name = {t.name: t for t in actual}
            for name, tensor in configured.items():
                real = by_name.get(name)
                if real is None:
                    self.add(
                        model.name,
                        model.file(),
                        f"{role} '{name}' is not in {source} (it has {sorted(by_name)})",
                        f"rename the {role} to one of {sorted(by_name)}",
                    )
                    continue
                if tensor.data_type != real.data_type:
                    self.add(
                        model.name,
                        model.file(),
                        f"{role} '{name}' is {tensor.type_name} in config.pbtxt but {real.type_name} in {source}",
                        f"set data_type: {real.type_name} for '{name}'",
                    )
                self._compare_dims(model, role, name, tensor.dims, real.dims, mbs, source)
            if role == "input":
                for name in sorted(set(by_name) - set(configured)):
                    self.add(
                        model.name,
                        model.file(),
                        f"{source} needs input '{name}', which config.pbtxt lacks",
                        f"add input '{name}' ({by_name[name].type_name})",
                    )

    def _compare_dims(
        self,
        model: _Model,
        role: str,
        name: str,
        configured: tuple[int, ...],
        real: tuple[int, ...],
        mbs: int,
        source: str,
    ) -> None:
        if len(configured) != len(real):
            if mbs > 0 and len(configured) == len(real) + 1:
                message = f"max_batch_size {mbs} adds a batch dim to '{name}', but {source} has no batch dim ({list(real)})"
                fix = "set max_batch_size: 0, or re-export the model with a dynamic batch axis"
            elif mbs == 0 and len(real) == len(configured) + 1:
                message = f"'{name}' in {source} has a batch dim ({list(real)}) that config.pbtxt omits (max_batch_size 0)"
                fix = f"set max_batch_size > 0 (dims {list(real[1:])}) or list the batch dim in dims"
            else:
                message = (
                    f"{role} '{name}' has rank {len(configured)} in config.pbtxt, {len(real)} in {source}"
                )
                fix = f"set dims to {list(real[1:] if mbs > 0 else real)}"
            self.add(
                model.name,
                model.file(),
                f"batch dim mismatch: {message}" if "batch" in message else message,
                fix,
            )
            return
        if mbs > 0 and real[0] != -1 and real[0] < mbs:
            self.add(
                model.name,
                model.file(),
                f"batch dim mismatch: '{name}' has a fixed batch of {real[0]} in {source}, below max_batch_size {mbs}",
                f"re-export with a dynamic batch axis or set max_batch_size <= {real[0]}",
            )
        start = 1 if mbs > 0 else 0
        for axis in range(start, len(real)):
            want, have = configured[axis], real[axis]
            if have != -1 and want != have:
                self.add(
                    model.name,
                    model.file(),
                    f"{role} '{name}' dim {axis} is {want} in config.pbtxt but {have} in {source}",
                    f"set dims to {list(real[start:])}",
                )

    # -- TensorRT --------------------------------------------------------------------------------------
    def _plans(self, model: _Model) -> dict[str, str | None]:
        """plan file -> compute capability it is declared for (None: default_model_filename)."""
        if model.config.cc_model_filenames:
            return {plan: cc for cc, plan in model.config.cc_model_filenames.items()}
        return {model.config.default_model_filename or "model.plan": None}

    def _check_engines(self, model: _Model, version: int) -> None:
        for plan, cc in self._plans(model).items():
            relative = f"{version}/{plan}"
            if not (model.directory / relative).is_file():
                self.add(
                    model.name,
                    model.file(relative),
                    "the TensorRT plan is missing",
                    "run: triton-bundle build SPEC, then regenerate",
                )
                continue
            meta_rel = f"{version}/{plan.removesuffix('.plan')}{ENGINE_META_SUFFIX}"
            meta_path = model.directory / meta_rel
            if not meta_path.is_file():
                self.add(
                    model.name,
                    model.file(meta_rel),
                    "no engine manifest beside the plan: its TensorRT version and profiles cannot be checked",
                    "regenerate the repository from the engine stage (it copies engine.json)",
                )
                continue
            engine = EngineManifest.read(meta_path)
            self._check_engine_build(model, meta_rel, engine, cc)
            self._check_profiles(model, meta_rel, engine)

    def _check_engine_build(self, model: _Model, file: str, engine: EngineManifest, cc: str | None) -> None:
        if engine.builder != "tensorrt":
            self.add(
                model.name,
                model.file(file),
                f"the engine was built by '{engine.builder}' (an ahead-of-time check), which Triton's TensorRT backend cannot run",
                f"build it with datacenter TensorRT in nvcr.io/nvidia/tensorrt:{self.tag or engine.triton_image_tag or '<YY.MM>'}-py3",
            )
        if cc is not None and engine.compute_capability != cc:
            self.add(
                model.name,
                model.file(file),
                f"cc_model_filenames maps compute capability {cc} to an engine built for {engine.compute_capability}",
                "regenerate the repository so each plan sits under its own compute capability",
            )
        tag = self.tag or engine.triton_image_tag
        if tag is None:
            self.add(
                model.name,
                model.file(file),
                "no target Triton image is known, so the engine's TensorRT version is unchecked",
                "pass --triton-image-tag (spec engine.triton_image_tag)",
                "warning",
            )
            return
        expected = tensorrt_for_image(tag)
        if expected is not None and release(expected) != release(engine.tensorrt_version):
            matching = images_for_tensorrt(engine.tensorrt_version)
            self.add(
                model.name,
                model.file(file),
                f"engine built with TensorRT {engine.tensorrt_version}, but Triton {tag} ships TensorRT {expected}: it will not deserialize",
                f"rebuild in nvcr.io/nvidia/tensorrt:{tag}-py3 (triton-bundle build SPEC)"
                + (f", or serve with Triton {', '.join(matching)}" if matching else ""),
            )
        elif expected is None and engine.triton_image_tag and engine.triton_image_tag != tag:
            self.add(
                model.name,
                model.file(file),
                f"engine built for Triton {engine.triton_image_tag}, the target is Triton {tag}",
                f"rebuild the engine in nvcr.io/nvidia/tensorrt:{tag}-py3",
            )
        elif expected is None:
            self.add(
                model.name,
                model.file(file),
                f"Triton image {tag} is not in the TensorRT version table; TensorRT {engine.tensorrt_version} is unchecked",
                "add the image to triton_bundle/repository/triton_images.py",
                "warning",
            )

    def _check_profiles(self, model: _Model, file: str, engine: EngineManifest) -> None:
        mbs = model.config.max_batch_size
        inputs = model.inputs()
        for index, profile in enumerate(engine.profiles):
            for name, tensor in inputs.items():
                if name not in profile.shapes:
                    self.add(
                        model.name,
                        model.file(file),
                        f"profile {index} has no shape for input '{name}'",
                        "rebuild the engine from the same ONNX the config was generated from",
                    )
                    continue
                _, _, hi = profile.shapes[name]
                engine_type = TRT_TO_TRITON.get(engine.input_types.get(name, "").upper())
                if index == 0 and engine_type is not None and engine_type != tensor.data_type:
                    self.add(
                        model.name,
                        model.file(file),
                        f"input '{name}' is {tensor.type_name} in config.pbtxt but {type_name(engine_type)} in the engine",
                        f"set data_type: {type_name(engine_type)} for '{name}'",
                    )
                if len(hi) != len(tensor.dims):
                    self.add(
                        model.name,
                        model.file(file),
                        f"batch dim mismatch: input '{name}' has rank {len(hi)} in the engine, {len(tensor.dims)} in config.pbtxt (max_batch_size {mbs})",
                        "set max_batch_size > 0 only for engines built with a batch dim",
                    )
        highs = [
            max(profile.shapes[n][2][0] for n in inputs if n in profile.shapes)
            for profile in engine.profiles
            if inputs
        ]
        if mbs > 0 and highs and max(highs) < mbs:
            self.add(
                model.name,
                model.file(file),
                f"engine profile max batch {max(highs)} is below max_batch_size {mbs}",
                f"rebuild with shapes.batch.max >= {mbs} or set max_batch_size <= {max(highs)}",
            )

    def engine_sequence_max(self, model: _Model) -> int | None:
        limits = []
        for version in model.versions():
            for plan in self._plans(model):
                meta = model.directory / str(version) / f"{plan.removesuffix('.plan')}{ENGINE_META_SUFFIX}"
                if meta.is_file():
                    engine = EngineManifest.read(meta)
                    for profile in engine.profiles:
                        dims = [hi[1] for _, _, hi in profile.shapes.values() if len(hi) > 1]
                        if dims:
                            limits.append(min(dims))
        return max(limits) if limits else None

    # -- ensembles -------------------------------------------------------------------------------------
    def _check_ensemble(self, model: _Model) -> None:
        produced: dict[str, TensorInfo] = dict(model.inputs())
        steps = list(model.config.ensemble_scheduling.step)
        if not steps:
            self.add(model.name, model.file(), "ensemble has no steps", "regenerate the repository")
            return
        for step in steps:
            member = self.models.get(step.model_name)
            if member is None:
                self.add(
                    model.name,
                    model.file(),
                    f"step model '{step.model_name}' is not in the repository",
                    f"add '{step.model_name}' or fix model_name",
                )
                continue
            if model.config.max_batch_size > member.config.max_batch_size:
                self.add(
                    model.name,
                    model.file(),
                    f"ensemble max_batch_size {model.config.max_batch_size} exceeds step '{member.name}' ({member.config.max_batch_size})",
                    "give every step at least the ensemble's max_batch_size",
                )
            outputs = member.outputs()
            for member_output, tensor in step.output_map.items():
                if member_output not in outputs:
                    self.add(
                        model.name,
                        model.file(),
                        f"step '{member.name}' has no output '{member_output}' (it has {sorted(outputs)})",
                        f"map one of {sorted(outputs)}",
                    )
                    continue
                produced[tensor] = outputs[member_output]
        for step in steps:
            member = self.models.get(step.model_name)
            if member is not None:
                self._check_step_inputs(model, step, member, produced)
        self._check_ensemble_outputs(model, produced)
        self._check_sequence_limits(model, steps)

    def _check_step_inputs(
        self, model: _Model, step, member: _Model, produced: dict[str, TensorInfo]
    ) -> None:
        """Every input of a step is wired to a tensor some earlier step or the ensemble provides, with its type."""
        inputs = member.inputs()
        for member_input, tensor in step.input_map.items():
            if tensor not in produced:
                self.add(
                    model.name,
                    model.file(),
                    f"step '{member.name}' input '{member_input}' is wired to '{tensor}', which no ensemble input or step output provides",
                    f"wire it to one of {sorted(produced)}",
                )
                continue
            if member_input not in inputs:
                self.add(
                    model.name,
                    model.file(),
                    f"step '{member.name}' has no input '{member_input}' (it has {sorted(inputs)})",
                    f"map one of {sorted(inputs)}",
                )
                continue
            if produced[tensor].data_type != inputs[member_input].data_type:
                self.add(
                    model.name,
                    model.file(),
                    f"'{tensor}' is {produced[tensor].type_name} but step '{member.name}' input '{member_input}' expects {inputs[member_input].type_name}",
                    f"make both {inputs[member_input].type_name} (regenerate from the ONNX graph)",
                )
        required = {i.name for i in member.config.input if not i.optional}
        for name in sorted(required - set(step.input_map)):
            self.add(
                model.name,
                model.file(),
                f"step '{member.name}' input '{name}' is not wired",
                f'add input_map {{ key: "{name}" value: ... }}',
            )

    def _check_ensemble_outputs(self, model: _Model, produced: dict[str, TensorInfo]) -> None:
        for name, tensor in model.outputs().items():
            if name not in produced:
                self.add(
                    model.name,
                    model.file(),
                    f"ensemble output '{name}' is produced by no step",
                    "map a step output to it",
                )
            elif produced[name].data_type != tensor.data_type:
                self.add(
                    model.name,
                    model.file(),
                    f"ensemble output '{name}' is {tensor.type_name} but its step produces {produced[name].type_name}",
                    f"set data_type: {produced[name].type_name}",
                )

    def _check_sequence_limits(self, ensemble: _Model, steps) -> None:
        """The tokenizer must never emit more tokens than the tensor model's graph / engine accepts."""
        members = [self.models[s.model_name] for s in steps if s.model_name in self.models]
        tokenizers = [m for m in members if m.kind == "tokenizer"]
        tensors = [m for m in members if m.kind in ("onnx_runner", "onnxruntime", "tensorrt")]
        for tok in tokenizers:
            max_length = int(tok.params.get("max_length", "0"))
            for tensor in tensors:
                limit = (
                    self.engine_sequence_max(tensor)
                    if tensor.kind == "tensorrt"
                    else self._graph_sequence_max(tensor)
                )
                if limit is not None and max_length > limit:
                    self.add(
                        tensor.name,
                        tensor.file(),
                        f"the tokenizer '{tok.name}' emits up to {max_length} tokens but '{tensor.name}' accepts at most {limit} (profile max below the tokenizer's max length)",
                        f"rebuild with shapes.sequence.max >= {max_length}, or set shapes.sequence.max to {limit} and regenerate",
                    )
                if tok.params.get("padding") == "longest" and tensor.kind != "onnx_runner":
                    self.add(
                        tok.name,
                        tok.file(),
                        f"padding 'longest' with '{tensor.name}' ({tensor.kind}): requests of different lengths will not batch",
                        "regenerate with --padding bucket",
                        "warning",
                    )

    def _graph_sequence_max(self, model: _Model) -> int | None:
        for i in model.config.input:
            if len(i.dims) >= 1 and model.config.max_batch_size > 0 and i.dims[0] > 0:
                return int(i.dims[0])
        return None


def validate_repository(repo_dir: Path, triton_image_tag: str | None = None) -> list[Problem]:
    """Every problem found in the repository (errors and warnings), each with its fix."""
    repo = Path(repo_dir)
    if not repo.is_dir():
        return [
            Problem(
                "-",
                str(repo),
                "the repository directory does not exist",
                "run: triton-bundle repo generate SPEC",
            )
        ]
    checker = _Checker(repo, triton_image_tag)
    checker.load()
    if not checker.models and not checker.problems:
        checker.add("-", str(repo), "the repository holds no models", "run: triton-bundle repo generate SPEC")
    for model in checker.models.values():
        checker.check_model(model)
    return checker.problems

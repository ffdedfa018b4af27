"""A sweep declared as data: typed models with their ranges, defaults and descriptions.

A spec is a preset, then a YAML file, then command-line options, each laid on top of the last,
and validated as a whole by `build_spec`: every problem is reported at once with its location
(``timing.max_time_s``, ``variants[2]``) before anything runs. `python -m bench schema` prints
the models' JSON Schema, for editors that complete and check spec files as they are typed.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, Literal

import torch
import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationError,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_validator,
)

import attention_variants as av
from attention_variants.checks import ChannelsUnsupported

from ..measurement.case import TimingBudget
from .plugins import load_entry_point_plugins, load_plugin
from .presets import PRESETS
from .variant_expr import VariantSpec, split_top_level


class SpecError(ValueError):
    """Every problem found in a sweep spec, one per line."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("invalid sweep spec:\n  - " + "\n  - ".join(problems))


# ---- value types -----------------------------------------------------------------------------


def _listed(value: Any) -> Any:
    """``"a,b"`` (the command line's form) -> items read as YAML scalars; one value -> [value]."""
    if isinstance(value, str):
        return [yaml.safe_load(item) for item in split_top_level(value)]
    return value if isinstance(value, (list, tuple)) else [value]


def _variant(value: Any) -> VariantSpec:
    variant = value if isinstance(value, VariantSpec) else VariantSpec.parse(value)
    try:
        av.info(variant.name)
    except KeyError as error:
        raise ValueError(error.args[0]) from None
    return variant


def _variants(value: Any) -> Any:
    """A comma-separated string or list; ``all`` stands for every registered variant."""
    items = split_top_level(value) if isinstance(value, str) else _listed(value)
    expanded = []
    for item in items:
        expanded.extend(av.available() if item == "all" else [item])
    return expanded


def _resolution(value: Any) -> Any:
    """``28`` -> (28, 28); ``"32x64"`` or ``[32, 64]`` -> (32, 64)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return (value, value)
    if isinstance(value, str) and re.fullmatch(r"\s*\d+\s*[xX]\s*\d+\s*", value):
        height, width = re.split(r"[xX]", value)
        return (int(height), int(width))
    if isinstance(value, str) and value.strip().isdigit():
        return (int(value), int(value))
    return tuple(value) if isinstance(value, list) else value


def _shape(value: Any) -> Any:
    """``"8x256x56x56"`` or ``[8, 256, 56, 56]`` -> (8, 256, 56, 56): batch, channels, H, W."""
    if isinstance(value, str) and re.fullmatch(r"\s*\d+(\s*[xX]\s*\d+){3}\s*", value):
        return tuple(int(part) for part in re.split(r"[xX]", value))
    return tuple(value) if isinstance(value, list) else value


PositiveInt = Annotated[int, Field(ge=1)]
Variant = Annotated[
    VariantSpec,
    BeforeValidator(_variant),
    PlainSerializer(lambda v: v.label, return_type=str),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "description": "name or name(option=value, ...); all"},
                {
                    "type": "object",
                    "properties": {"name": {"type": "string"}, "options": {"type": "object"}},
                    "required": ["name"],
                    "additionalProperties": False,
                },
            ]
        }
    ),
]
Resolution = Annotated[
    tuple[PositiveInt, PositiveInt],
    BeforeValidator(_resolution),
    PlainSerializer(lambda hw: f"{hw[0]}x{hw[1]}", return_type=str),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "integer", "minimum": 1},
                {"type": "string", "pattern": r"^\d+x\d+$"},
                {"type": "array", "items": {"type": "integer", "minimum": 1}, "minItems": 2,
                 "maxItems": 2},
            ]
        }
    ),
]  # fmt: skip
Shape = Annotated[
    tuple[PositiveInt, PositiveInt, PositiveInt, PositiveInt],
    BeforeValidator(_shape),
    PlainSerializer(lambda s: "x".join(map(str, s)), return_type=str),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "pattern": r"^\d+x\d+x\d+x\d+$"},
                {"type": "array", "items": {"type": "integer", "minimum": 1}, "minItems": 4,
                 "maxItems": 4},
            ]
        }
    ),
]  # fmt: skip


def _device_name(device: str) -> str:
    if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", device):
        unsupported = " (timing on MPS is not supported)" if device.startswith("mps") else ""
        raise ValueError(f"{device!r} is invalid{unsupported}; allowed: auto, cpu, cuda, cuda:N")
    return device


Device = Annotated[
    str,
    AfterValidator(_device_name),
    WithJsonSchema({"type": "string", "pattern": r"^(auto|cpu|cuda(:\d+)?)$"}),
]


def ListOf(item: Any, description: str, default: list, *, min_length: int = 1) -> Any:
    """A list field that also takes one value, or a comma-separated string."""
    return Annotated[
        list[item],
        BeforeValidator(_listed),
        Field(default=default, min_length=min_length, description=description),
    ]


def _check_builds(variants: list[VariantSpec], channels: list[int]) -> None:
    """Build each variant at each channel count on the meta device (no memory, no compute).

    A channel count the block cannot split (ChannelsUnsupported) is a skipped case, as an
    unsupported dtype is; only a variant that fits none of the sweep's counts is a problem.
    """
    problems = []
    for variant in variants:
        unsupported = []
        for c in channels:
            try:
                try:
                    with torch.device("meta"):
                        av.create(variant.name, c, **variant.options_dict)
                except NotImplementedError:  # a module that cannot live on meta
                    av.create(variant.name, c, **variant.options_dict)
            except ChannelsUnsupported as error:
                unsupported.append(str(error))
            except Exception as error:  # any other failure to build is the spec's problem
                problems.append(f"{variant.label} at channels={c}: {type(error).__name__}: {error}")
                break
        if unsupported and len(unsupported) == len(channels):
            problems.append(f"{variant.label} fits none of the channel counts: {unsupported[0]}")
    if problems:
        raise ValueError("; ".join(problems))


# ---- the models ------------------------------------------------------------------------------

STRICT = ConfigDict(extra="forbid", strict=True)


class ExecutorOptions(BaseModel):
    """Where and how the shards run (the `executor:` block of a spec, or `--shards N ...`)."""

    model_config = ConfigDict(extra="forbid", strict=True)
    kind: Literal["debug", "local", "slurm"] = Field(
        "local", description="slurm: one job array; local: subprocesses here; debug: in-process"
    )
    shards: int = Field(2, ge=1, description="how many parts the sweep is cut into")
    slurm_partition: str | None = None
    timeout_min: int = Field(60, ge=1, description="each shard's time limit, minutes")
    gpus_per_task: int = Field(0, ge=0)
    cpus_per_task: int | None = Field(None, ge=1)
    slurm_array_parallelism: int | None = Field(None, ge=1, description="shards running at once")
    exclusive: bool | None = Field(
        None,
        description="each Slurm shard a whole node; default: yes for CPU-only sweeps (CPU "
        "shards sharing a node would time each other), no where each shard has its own GPU",
    )
    slurm_additional: dict[str, str] = Field(
        default_factory=dict, description="any other sbatch option, e.g. {account: my-lab}"
    )


class NetworkSpec(BaseModel):
    """Whole-backbone cases: ResNet-`depth` with each variant, as in the ECA-Net paper's table."""

    model_config = STRICT
    depth: Literal[18, 34, 50, 101, 152] = Field(50, description="ResNet depth")
    resolution: PositiveInt = Field(224, description="input height and width")
    batch_sizes: ListOf(PositiveInt, "batch sizes", [8])
    modes: ListOf(Literal["infer", "train"], "infer and/or train", ["infer", "train"])
    include_plain: bool = Field(True, description="also the backbone without attention")
    variants: Annotated[
        list[Variant],
        BeforeValidator(_variants),
        Field(validate_default=True, description="attention in every block; [] = all but identity"),
    ] = []

    @model_validator(mode="before")
    @classmethod
    def _one_batch_size(cls, data: Any) -> Any:
        """`batch_size: 8`, as specs before `batch_sizes` wrote it, is one batch size."""
        if isinstance(data, dict) and "batch_size" in data and "batch_sizes" not in data:
            data = {**data, "batch_sizes": data["batch_size"]}
            del data["batch_size"]
        return data

    @field_validator("variants")
    @classmethod
    def _every_block_builds(cls, variants: list[VariantSpec], info: ValidationInfo):
        if not variants:
            variants = [VariantSpec(n) for n in av.available() if n != "identity"]
        if "depth" in info.data:
            expansion = 1 if info.data["depth"] < 50 else 4
            _check_builds(variants, [64 * 2**i * expansion for i in range(4)])
        return variants


class SweepSpec(BaseModel):
    """A sweep: every combination of the lists below, each variant beside its references."""

    model_config = STRICT
    preset: Literal[tuple(PRESETS)] | None = Field(None, description="the base sweep")
    plugins: ListOf(str, "modules or .py files that register variants", [], min_length=0)
    batch_sizes: ListOf(PositiveInt, "batch sizes", [8])
    channels: ListOf(PositiveInt, "channel counts", [64, 256])
    shapes: ListOf(
        Shape,
        "BxCxHxW shapes, each a case: when given, they replace batch_sizes x channels x "
        "resolutions",
        [],
        min_length=0,
    )
    variants: Annotated[
        list[Variant],
        BeforeValidator(_variants),
        Field(validate_default=True, description="variants and options; all = every one"),
    ] = ["all"]
    resolutions: ListOf(Resolution, "N, HxW or [H, W]", [(28, 28), (56, 56)])
    dtypes: ListOf(Literal["float32", "float16", "bfloat16"], "dtypes", ["float32"])
    devices: ListOf(Device, "auto (every device present), cpu, cuda, cuda:N", ["cpu"])
    modes: ListOf(Literal["infer", "train"], "infer and/or train", ["infer", "train"])
    memory_formats: ListOf(Literal["contiguous", "channels_last"], "memory formats", ["contiguous"])
    compile: ListOf(bool, "torch.compile off and/or on", [False])
    threads: PositiveInt | None = Field(None, description="intra-op threads while timing")
    references: bool = Field(True, description="identity, conv3x3 and copy beside the variants")
    timing: TimingBudget = Field(default_factory=TimingBudget)
    network: NetworkSpec | None = None
    executor: ExecutorOptions | None = Field(
        None, description="run the sweep in shards through submitit (Slurm, local, debug)"
    )
    seed: int = 0
    profile: bool = Field(False, description="a torch.profiler trace per case")

    @field_validator("variants")
    @classmethod
    def _every_variant_builds(cls, variants: list[VariantSpec], info: ValidationInfo):
        if "channels" in info.data:
            shapes = info.data.get("shapes") or []
            _check_builds(variants, sorted({s[1] for s in shapes}) or info.data["channels"])
        return list(dict.fromkeys(variants))

    @field_validator("devices")
    @classmethod
    def _devices_present(cls, devices: list[str]) -> list[str]:
        resolved, absent = [], []
        for device in devices:
            if device == "auto":
                resolved += [d for d in ("cpu", "cuda") if _device_present(d)]
            elif _device_present(device):
                resolved.append(device)
            else:
                absent.append(device)
        if absent:
            raise ValueError(f"{', '.join(absent)} asked for but not present on this machine")
        return list(dict.fromkeys(resolved))

    @model_validator(mode="after")
    def _something_to_run(self) -> SweepSpec:
        if not self.variants and self.network is None:
            raise ValueError("variants: empty; give at least one variant (or a network)")
        return self

    @model_validator(mode="after")
    def _graphs_on_cuda(self) -> SweepSpec:
        """A CUDA graph replays CUDA kernels: a CPU case has nothing to replay."""
        if "graph" in self.timing.launch:
            cpus = [d for d in self.devices if not d.startswith("cuda")]
            if cpus:
                raise ValueError(
                    f"timing.launch=graph: devices={cpus} cannot replay CUDA graphs; allowed "
                    "there: eager (use devices: cuda, or launch: eager)"
                )
        return self

    @model_validator(mode="after")
    def _simulated_on_one_cpu_thread(self) -> SweepSpec:
        """valgrind counts CPU code, one thread at a time; inductor's compile under it takes
        minutes a case."""
        if self.timing.instrument != "simulated":
            return self
        problems = []
        if any(d != "cpu" for d in self.devices):
            problems.append(f"devices={self.devices}: GPU kernels are not counted; allowed: cpu")
        if any(self.compile):
            problems.append("compile=true: allowed: false (compiled cases are timed on wall)")
        if self.threads not in (None, 1):
            problems.append(f"threads={self.threads}: valgrind runs one thread; allowed: 1")
        if self.executor is not None:
            problems.append("executor: a simulated sweep runs in one process; allowed: none")
        if problems:
            raise ValueError("timing.instrument=simulated: " + "; ".join(problems))
        self.threads = 1
        return self

    def to_dict(self) -> dict[str, Any]:
        """Plain data for spec.yaml; `spec_from_dict` reads it back to the same spec."""
        return self.model_dump(mode="json")


_ASSUMED_DEVICES: set[str] = set()  # devices a dry run plans for without this machine having them


@contextmanager
def assume_devices(devices: set[str]) -> Iterator[None]:
    """Specs built inside take `devices` as present (`bench gpu-report --dry-run` checks a GPU
    sweep on a machine without one)."""
    _ASSUMED_DEVICES.update(devices)
    try:
        yield
    finally:
        _ASSUMED_DEVICES.difference_update(devices)


def _device_present(device: str) -> bool:
    if device in _ASSUMED_DEVICES:
        return True
    kind, _, index = device.partition(":")
    if kind == "cpu":
        return not index
    return torch.cuda.is_available() and (not index or int(index) < torch.cuda.device_count())


# ---- building --------------------------------------------------------------------------------


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _problems(error: ValidationError) -> list[str]:
    """Pydantic's errors as ``location: message (got value)`` lines."""
    lines = []
    for item in error.errors():
        location = ""
        for part in item["loc"]:
            if isinstance(part, int):
                location += f"[{part}]"
            elif not part.startswith(("function-", "literal[", "tuple[", "list[")):
                location += f".{part}" if location else str(part)
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            model = {
                "timing": TimingBudget,
                "network": NetworkSpec,
                "executor": ExecutorOptions,
            }.get(str(item["loc"][0]) if len(item["loc"]) > 1 else "", SweepSpec)
            message = f"unknown field; allowed: {', '.join(model.model_fields)}"
        got = f" (got {item['input']!r})" if item["type"] not in ("value_error",) else ""
        lines.append(f"{location or 'spec'}: {message}{got}")
    return list(dict.fromkeys(lines))


def spec_from_dict(raw: dict[str, Any]) -> tuple[SweepSpec, list[str]]:
    """Validate plain data (a merged preset, YAML and overrides, or a saved spec.yaml).

    Plugins are imported first, so the variants they register are known. Returns the spec and
    notes (devices that `auto` skipped, broken entry-point plugins); raises SpecError.
    """
    problems, notes = [], []
    for index, plugin in enumerate(_listed(raw.get("plugins", []))):
        try:
            load_plugin(str(plugin))
        except ImportError as error:
            problems.append(f"plugins[{index}]: {error}")
    broken = load_entry_point_plugins()
    notes += [f"warning: plugin entry point {name} failed: {why}" for name, why in broken.items()]
    try:
        spec = SweepSpec.model_validate(raw)
    except ValidationError as error:
        problems += _problems(error)
        if broken and any("unknown attention variant" in p for p in problems):
            problems.append(f"(a broken plugin may have offered it: {', '.join(broken)})")
        raise SpecError(problems) from None
    if problems:
        raise SpecError(problems)
    if "auto" in _listed(raw.get("devices", [])) and "cuda" not in spec.devices:
        notes.append("devices: auto skips cuda (not present)")
    return spec, notes


def build_spec(
    preset: str | None = None,
    yaml_path: str | Path | None = None,
    overrides: dict[str, Any] | None = None,
) -> tuple[SweepSpec, list[str]]:
    """Preset, then YAML file, then overrides (each on top of the last), validated as a whole."""
    raw: dict[str, Any] = {}
    if yaml_path is not None:
        try:
            raw = yaml.safe_load(Path(yaml_path).read_text())
        except (OSError, yaml.YAMLError) as error:
            raise SpecError([f"spec file {str(yaml_path)!r}: {error}"]) from error
        if not isinstance(raw, dict):
            raise SpecError([f"spec file {str(yaml_path)!r}: expected a mapping of fields"])
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    preset = overrides.get("preset") or raw.get("preset") or preset
    if preset is not None:
        if preset not in PRESETS:
            raise SpecError([f"preset: {preset!r} is unknown; allowed: {', '.join(PRESETS)}"])
        base = {k: v for k, v in PRESETS[preset].items() if k != "description"}
        raw = _merge(base, raw)
    raw = _merge(raw, overrides)
    raw["preset"] = preset
    return spec_from_dict(raw)


def json_schema() -> dict[str, Any]:
    """The JSON Schema of a spec file (what `python -m bench schema` prints)."""
    schema = SweepSpec.model_json_schema()
    schema["title"] = "cnn-attention-bench sweep spec"
    return schema

"""A sweep declared as data: presets, YAML files and CLI overrides, expanded into cases.

Every validation error of a spec is collected and reported together, each naming its field and
what is allowed, before any case runs.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import importlib.metadata
import importlib.util
import json
import re
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml

import attention_variants as av

from ..measurement.case import TimingBudget
from ..measurement.references import REFERENCES

DTYPES = ("float32", "float16", "bfloat16")
MODES = ("infer", "train")
MEMORY_FORMATS = ("contiguous", "channels_last")
ENTRY_POINT_GROUP = "attention_variants.plugins"


class SpecError(ValueError):
    """Every problem found in a sweep spec, one per line."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("invalid sweep spec:\n  - " + "\n  - ".join(problems))


@dataclass(frozen=True)
class VariantSpec:
    """A variant and its options, e.g. ``se(reduction=8)``."""

    name: str
    options: tuple[tuple[str, Any], ...] = ()

    @property
    def options_dict(self) -> dict[str, Any]:
        return dict(self.options)

    @property
    def options_label(self) -> str:
        return ",".join(f"{k}={v}" for k, v in self.options)

    @property
    def label(self) -> str:
        return f"{self.name}({self.options_label})" if self.options else self.name

    @classmethod
    def parse(cls, text: Any) -> VariantSpec:
        """From ``"se"``, ``"se(reduction=8, bias=false)"`` or ``{name: se, options: {...}}``."""
        if isinstance(text, dict):
            unknown = set(text) - {"name", "options"}
            if "name" not in text or unknown:
                raise ValueError(f"variant {text!r}: allowed keys are name and options")
            return cls(str(text["name"]), tuple(sorted((text.get("options") or {}).items())))
        match = re.fullmatch(r"\s*([\w.\-]+)\s*(?:\((.*)\))?\s*", str(text))
        if not match:
            raise ValueError(f"variant {text!r}: allowed form is name or name(option=value, ...)")
        name, inner = match.groups()
        options = {}
        for part in split_top_level(inner or ""):
            key, sep, value = part.partition("=")
            if not sep or not key.strip():
                raise ValueError(f"variant {text!r}: option {part!r} is not option=value")
            options[key.strip()] = yaml.safe_load(value.strip())
        return cls(name, tuple(sorted(options.items())))


def split_top_level(text: str) -> list[str]:
    """Split on commas outside parentheses: ``"eca,se(reduction=8,bias=false)"``."""
    parts, depth, current = [], 0, []
    for char in text:
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char == "," and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return [p.strip() for p in parts if p.strip()]


@dataclass
class NetworkSpec:
    """Whole-backbone cases: ResNet-`depth` with each variant, as in the ECA-Net paper's table."""

    depth: int = 50
    variants: list[VariantSpec] = field(default_factory=list)  # [] = every attention variant
    resolution: int = 224
    batch_size: int = 8
    modes: list[str] = field(default_factory=lambda: list(MODES))
    include_plain: bool = True  # also the backbone without attention


@dataclass
class SweepSpec:
    variants: list[VariantSpec] = field(default_factory=list)  # "all" = every registered one
    batch_sizes: list[int] = field(default_factory=lambda: [8])
    channels: list[int] = field(default_factory=lambda: [64, 256])
    resolutions: list[tuple[int, int]] = field(default_factory=lambda: [(28, 28), (56, 56)])
    dtypes: list[str] = field(default_factory=lambda: ["float32"])
    devices: list[str] = field(default_factory=lambda: ["cpu"])
    modes: list[str] = field(default_factory=lambda: list(MODES))
    memory_formats: list[str] = field(default_factory=lambda: ["contiguous"])
    compile: list[bool] = field(default_factory=lambda: [False])
    threads: int | None = None
    references: bool = True
    timing: TimingBudget = field(default_factory=TimingBudget)
    network: NetworkSpec | None = None
    plugins: list[str] = field(default_factory=list)
    seed: int = 0
    profile: bool = False
    preset: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain data for spec.yaml; `from_dict` reads it back to the same spec."""
        data = dataclasses.asdict(self)
        data["variants"] = [v.label for v in self.variants]
        data["resolutions"] = [f"{h}x{w}" for h, w in self.resolutions]
        if self.network is not None:
            data["network"]["variants"] = [v.label for v in self.network.variants]
        return data


@dataclass(frozen=True)
class Case:
    """One measurement: a variant (or reference, or network) at one shape and setting."""

    role: str  # "variant", "reference" or "network"
    variant: VariantSpec
    batch: int
    channels: int
    height: int
    width: int
    dtype: str
    device: str
    mode: str
    memory_format: str
    compile: bool
    model: str = ""  # e.g. "resnet50" for network cases

    @property
    def key(self) -> tuple:
        return (
            self.role,
            self.model,
            self.variant.label,
            self.batch,
            self.channels,
            self.height,
            self.width,
            self.dtype,
            self.device,
            self.mode,
            self.memory_format,
            self.compile,
        )

    @property
    def case_id(self) -> str:
        return hashlib.sha256(json.dumps(self.key).encode()).hexdigest()[:12]

    @property
    def shape_key(self) -> tuple:
        """What FLOPs, MACs and bytes depend on: not the memory format or compilation (the
        device does: SDPA picks other kernels on CUDA)."""
        role, model, label, batch, channels, height, width, dtype, device, mode, _, _ = self.key
        return (role, model, label, batch, channels, height, width, dtype, device, mode)

    @property
    def label(self) -> str:
        what = f"{self.model}+{self.variant.label}" if self.model else self.variant.label
        extras = "".join(
            [
                "" if self.memory_format == "contiguous" else " cl",
                " compiled" if self.compile else "",
            ]
        )
        return (
            f"{what} b{self.batch} c{self.channels} {self.height}x{self.width} "
            f"{self.dtype} {self.device} {self.mode}{extras}"
        )


# ---- presets ---------------------------------------------------------------------------------

PRESETS: dict[str, dict[str, Any]] = {
    "quick": {
        "description": "CPU sweep of every variant: 3 resolutions x 3 channel counts, "
        "infer and train, in about 80 s on 2 cores",
        "variants": ["all", "eca_mha(attention_impl=naive)"],
        "batch_sizes": [2],
        "channels": [64, 128, 256],
        "resolutions": [14, 28, 56],
        "devices": ["cpu"],
        # small cases reach a 1% CI well under the cap; only the largest eca_mha ones hit it
        "timing": {
            "warmup_s": 0.01,
            "min_time_s": 0.05,
            "max_time_s": 0.3,
            "target_ci": 0.01,
            "min_samples": 5,
        },
    },
    "default": {
        "description": "CPU sweep: 4 resolutions x 4 channel counts, infer and train",
        "batch_sizes": [8],
        "channels": [64, 128, 256, 512],
        "resolutions": [7, 14, 28, 56],
        "devices": ["cpu"],
        "timing": {"min_time_s": 0.1, "max_time_s": 1.0},
    },
    "paper": {
        "description": "GPU-sized full grid: 5 resolutions x 6 channel counts, 3 dtypes, "
        "both memory formats, every device present",
        "batch_sizes": [32],
        "channels": [64, 128, 256, 512, 1024, 2048],
        "resolutions": [7, 14, 28, 56, 112],
        "dtypes": list(DTYPES),
        "devices": ["auto"],
        "memory_formats": list(MEMORY_FORMATS),
        "timing": {"min_time_s": 0.2, "max_time_s": 2.0},
    },
    "network": {
        "description": "ResNet-50 with each variant at 224x224 (the ECA-Net paper's table)",
        "variants": [],
        "devices": ["auto"],
        "network": {"depth": 50, "resolution": 224, "batch_size": 8},
        "timing": {"min_time_s": 0.5, "max_time_s": 5.0, "min_samples": 5},
    },
}

_FIELDS = {f.name for f in dataclasses.fields(SweepSpec)} - {"preset"}
_TIMING_FIELDS = {f.name for f in dataclasses.fields(TimingBudget)}
_NETWORK_FIELDS = {f.name for f in dataclasses.fields(NetworkSpec)}


# ---- plugins ---------------------------------------------------------------------------------


def load_plugin(target: str) -> None:
    """Import a module by name, or a .py file by path, so its variants register themselves."""
    path = Path(target)
    try:
        if target.endswith(".py") or path.is_file():
            if not path.is_file():
                raise FileNotFoundError(f"no such file: {target}")
            digest = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:8]
            module_name = f"_attention_plugin_{digest}"
            if module_name in sys.modules:  # loaded already: its variants are registered
                return
            spec = importlib.util.spec_from_file_location(module_name, path)
            module = importlib.util.module_from_spec(spec)
            sys.modules[module_name] = module
            spec.loader.exec_module(module)
        else:
            importlib.import_module(target)
    except Exception as error:
        raise SpecError(
            [f"plugins: {target!r} failed to import: {type(error).__name__}: {error}"]
        ) from error


def load_entry_point_plugins() -> list[str]:
    """Import every installed package's variants offered under the entry-point group."""
    loaded = []
    for entry_point in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        try:
            entry_point.load()
        except Exception as error:
            raise SpecError(
                [
                    f"entry point {entry_point.name!r} ({entry_point.value}) failed to "
                    f"import: {type(error).__name__}: {error}"
                ]
            ) from error
        loaded.append(entry_point.name)
    return loaded


# ---- building and validating -----------------------------------------------------------------


def _parse_resolution(value: Any) -> tuple[int, int]:
    if isinstance(value, bool):
        raise ValueError
    if isinstance(value, int):
        return value, value
    if isinstance(value, (list, tuple)) and len(value) == 2:
        return int(value[0]), int(value[1])
    text = str(value).lower()
    if "x" in text:
        h, w = text.split("x", 1)
        return int(h), int(w)
    return int(text), int(text)


def _as_list(value: Any) -> list[Any]:
    if isinstance(value, str):
        return split_top_level(value)
    if isinstance(value, (list, tuple)):
        return list(value)
    return [value]


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _positive_ints(field_name: str, values: Iterable[Any], problems: list[str]) -> list[int]:
    result = []
    for value in values:
        try:
            number = int(value)
            if isinstance(value, bool) or number != float(value) or number < 1:
                raise ValueError
            result.append(number)
        except (TypeError, ValueError):
            problems.append(f"{field_name}: {value!r} is invalid; allowed: positive integers")
    return result


def _choices(
    field_name: str, values: Iterable[Any], allowed: Iterable[str], problems: list[str]
) -> list[str]:
    allowed = tuple(allowed)
    result = []
    for value in values:
        if value in allowed:
            result.append(value)
        else:
            problems.append(f"{field_name}: {value!r} is invalid; allowed: {', '.join(allowed)}")
    return result


def _booleans(field_name: str, values: Iterable[Any], problems: list[str]) -> list[bool]:
    words = {"on": True, "true": True, "yes": True, "off": False, "false": False, "no": False}
    result = []
    for value in values:
        if isinstance(value, bool):
            result.append(value)
        elif str(value).lower() in words:
            result.append(words[str(value).lower()])
        else:
            problems.append(f"{field_name}: {value!r} is invalid; allowed: true/false (on/off)")
    return result


def _device_present(device: str) -> bool:
    kind, _, index = device.partition(":")
    if kind == "cpu":
        return not index
    if kind == "cuda":
        return torch.cuda.is_available() and (not index or int(index) < torch.cuda.device_count())
    return False


def resolve_devices(devices: list[str], problems: list[str], notes: list[str]) -> list[str]:
    """Expand `auto` to every device present; an explicitly named absent device is an error."""
    resolved: list[str] = []
    for device in devices:
        if device == "auto":
            for candidate in ("cpu", "cuda"):
                if _device_present(candidate):
                    resolved.append(candidate)
                else:
                    notes.append(f"devices: auto skips {candidate} (not present)")
            continue
        if not re.fullmatch(r"(cpu|cuda)(:\d+)?", str(device)):
            unsupported = (
                " (timing on MPS is not supported)" if str(device).startswith("mps") else ""
            )
            problems.append(
                f"devices: {device!r} is invalid{unsupported}; allowed: auto, cpu, cuda, cuda:N"
            )
        elif not _device_present(device):
            problems.append(f"devices: {device!r} was asked for but is not present on this machine")
        else:
            resolved.append(device)
    return list(dict.fromkeys(resolved))


def _variants(field_name: str, values: list[Any], problems: list[str]) -> list[VariantSpec]:
    variants = []
    for value in values:
        if value == "all":  # every registered variant, plugins' included
            variants.extend(VariantSpec(name) for name in av.available())
            continue
        try:
            variant = VariantSpec.parse(value)
            av.info(variant.name)
        except KeyError as error:
            problems.append(f"{field_name}: {error}")
            continue
        except ValueError as error:
            problems.append(f"{field_name}: {error}")
            continue
        variants.append(variant)
    return list(dict.fromkeys(variants))


def _check_variant_options(
    variants: list[VariantSpec], channels: list[int], problems: list[str]
) -> None:
    # build on the meta device: option checks run, no memory is allocated
    for variant in variants:
        for c in channels:
            try:
                with torch.device("meta"):
                    av.create(variant.name, c, **variant.options_dict)
            except (ValueError, TypeError) as error:
                problems.append(f"variants: {variant.label} at channels={c}: {error}")
                break


def build_spec(
    preset: str | None = None,
    yaml_path: str | Path | None = None,
    overrides: dict[str, Any] | None = None,
) -> tuple[SweepSpec, list[str]]:
    """Preset, then YAML file, then overrides (each on top of the last), validated as a whole.

    Returns the spec and notes (e.g. devices that `auto` skipped); raises SpecError listing
    every problem.
    """
    raw: dict[str, Any] = {}
    problems: list[str] = []
    if yaml_path is not None:
        try:
            loaded = yaml.safe_load(Path(yaml_path).read_text())
        except (OSError, yaml.YAMLError) as error:
            raise SpecError([f"spec file {str(yaml_path)!r}: {error}"]) from error
        if not isinstance(loaded, dict):
            raise SpecError([f"spec file {str(yaml_path)!r}: expected a mapping of fields"])
        raw = loaded
    preset = (overrides or {}).get("preset") or raw.get("preset") or preset
    if preset is not None:
        if preset not in PRESETS:
            raise SpecError([f"preset: {preset!r} is unknown; allowed: {', '.join(PRESETS)}"])
        base = {k: v for k, v in PRESETS[preset].items() if k != "description"}
        raw = _merge(base, raw)
    raw = _merge(raw, {k: v for k, v in (overrides or {}).items() if v is not None})
    raw.pop("preset", None)
    return spec_from_dict(raw, preset, problems)


def spec_from_dict(
    raw: dict[str, Any], preset: str | None = None, problems: list[str] | None = None
) -> tuple[SweepSpec, list[str]]:
    """Validate plain data (a merged preset, YAML and overrides, or a saved spec.yaml)."""
    problems = [] if problems is None else problems
    notes: list[str] = []
    for key in sorted(set(raw) - _FIELDS):
        problems.append(f"{key}: unknown field; allowed: {', '.join(sorted(_FIELDS))}")
    # plugins first: the variants they register must be known before variants are checked
    plugins = [str(p) for p in _as_list(raw.get("plugins", []))]
    for plugin in plugins:
        try:
            load_plugin(plugin)
        except SpecError as error:
            problems.extend(error.problems)
    try:
        load_entry_point_plugins()
    except SpecError as error:
        problems.extend(error.problems)

    spec = SweepSpec(preset=preset, plugins=plugins)
    spec.variants = _variants("variants", _as_list(raw.get("variants", "all")), problems)
    if "batch_sizes" in raw:
        spec.batch_sizes = _positive_ints("batch_sizes", _as_list(raw["batch_sizes"]), problems)
    if "channels" in raw:
        spec.channels = _positive_ints("channels", _as_list(raw["channels"]), problems)
    if "resolutions" in raw:
        spec.resolutions = []
        for value in _as_list(raw["resolutions"]):
            try:
                h, w = _parse_resolution(value)
                if h < 1 or w < 1:
                    raise ValueError
                spec.resolutions.append((h, w))
            except (TypeError, ValueError):
                problems.append(
                    f"resolutions: {value!r} is invalid; allowed: N, HxW or [H, W] "
                    "with positive integers"
                )
    if "dtypes" in raw:
        spec.dtypes = _choices("dtypes", _as_list(raw["dtypes"]), DTYPES, problems)
    if "modes" in raw:
        spec.modes = _choices("modes", _as_list(raw["modes"]), MODES, problems)
    if "memory_formats" in raw:
        spec.memory_formats = _choices(
            "memory_formats", _as_list(raw["memory_formats"]), MEMORY_FORMATS, problems
        )
    if "compile" in raw:
        spec.compile = _booleans("compile", _as_list(raw["compile"]), problems)
    for name in ("references", "profile"):
        if name in raw:
            values = _booleans(name, [raw[name]], problems)
            if values:
                setattr(spec, name, values[0])
    if raw.get("threads") is not None:
        spec.threads = (_positive_ints("threads", [raw["threads"]], problems) or [None])[0]
    if "seed" in raw:
        try:
            spec.seed = int(raw["seed"])
        except (TypeError, ValueError):
            problems.append(f"seed: {raw['seed']!r} is invalid; allowed: an integer")
    spec.devices = resolve_devices(_as_list(raw.get("devices", spec.devices)), problems, notes)
    spec.timing = _timing(raw.get("timing") or {}, problems)
    if raw.get("network"):
        spec.network = _network(raw["network"], problems)
    required = [
        "batch_sizes",
        "channels",
        "resolutions",
        "dtypes",
        "devices",
        "modes",
        "memory_formats",
        "compile",
    ]
    if spec.network is None:  # a network-only sweep may leave out the per-block variants
        required.insert(0, "variants")
    for name in required:
        if not getattr(spec, name) and not any(p.startswith(f"{name}:") for p in problems):
            problems.append(f"{name}: empty; give at least one value")
    _check_variant_options(spec.variants, spec.channels, problems)
    if spec.network is not None:
        expansion = 1 if spec.network.depth < 50 else 4
        stage_channels = [64 * 2**i * expansion for i in range(4)]
        _check_variant_options(spec.network.variants, stage_channels, problems)
    if problems:
        raise SpecError(problems)
    return spec, notes


def _timing(raw: dict[str, Any], problems: list[str]) -> TimingBudget:
    budget = TimingBudget()
    for key, value in raw.items():
        if key not in _TIMING_FIELDS:
            problems.append(
                f"timing.{key}: unknown field; allowed: {', '.join(sorted(_TIMING_FIELDS))}"
            )
            continue
        kind = type(getattr(budget, key))
        if kind is bool:
            values = _booleans(f"timing.{key}", [value], problems)
            if values:
                setattr(budget, key, values[0])
            continue
        try:
            number = kind(value)
            if (number <= 0 and key != "min_time_s") or number < 0:
                raise ValueError
        except (TypeError, ValueError):
            problems.append(f"timing.{key}: {value!r} is invalid; allowed: a positive number")
            continue
        setattr(budget, key, number)
    if budget.min_time_s > budget.max_time_s:
        problems.append(
            f"timing: min_time_s={budget.min_time_s} exceeds max_time_s="
            f"{budget.max_time_s}; allowed: min_time_s <= max_time_s"
        )
    return budget


def _network(raw: dict[str, Any], problems: list[str]) -> NetworkSpec:
    network = NetworkSpec()
    for key in sorted(set(raw) - _NETWORK_FIELDS):
        problems.append(
            f"network.{key}: unknown field; allowed: {', '.join(sorted(_NETWORK_FIELDS))}"
        )
    if "depth" in raw:
        if raw["depth"] not in (18, 34, 50, 101, 152):
            problems.append(
                f"network.depth: {raw['depth']!r} is invalid; allowed: 18, 34, 50, 101, 152"
            )
        else:
            network.depth = raw["depth"]
    for key in ("resolution", "batch_size"):
        if key in raw:
            values = _positive_ints(f"network.{key}", [raw[key]], problems)
            if values:
                setattr(network, key, values[0])
    if "modes" in raw:
        network.modes = _choices("network.modes", _as_list(raw["modes"]), MODES, problems)
    if "include_plain" in raw:
        network.include_plain = bool(raw["include_plain"])
    if raw.get("variants"):
        network.variants = _variants("network.variants", _as_list(raw["variants"]), problems)
    else:
        network.variants = [VariantSpec(n) for n in av.available() if n != "identity"]
    return network


# ---- expansion -------------------------------------------------------------------------------


def expand(spec: SweepSpec) -> list[Case]:
    """Every case of the sweep, references beside the variants they are read against."""
    cases: list[Case] = []
    references = (
        [VariantSpec(name) for name in ("identity", *REFERENCES)] if spec.references else []
    )
    settings = [
        (device, dtype, mode, fmt, compiled)
        for device in spec.devices
        for dtype in spec.dtypes
        for mode in spec.modes
        for fmt in spec.memory_formats
        for compiled in spec.compile
    ]
    for device, dtype, mode, fmt, compiled in settings:
        if not spec.variants:
            break  # a network-only sweep
        for batch in spec.batch_sizes:
            for channels in spec.channels:
                for height, width in spec.resolutions:
                    shape = (batch, channels, height, width, dtype, device, mode, fmt, compiled)
                    for reference in references:
                        cases.append(Case("reference", reference, *shape))
                    for variant in spec.variants:
                        if spec.references and variant.label == "identity":
                            continue  # already measured as a reference
                        cases.append(Case("variant", variant, *shape))
    if spec.network is not None:
        cases.extend(_network_cases(spec))
    return cases


def _network_cases(spec: SweepSpec) -> Iterator[Case]:
    network = spec.network
    variants = ([VariantSpec("none")] if network.include_plain else []) + list(network.variants)
    model = f"resnet{network.depth}"
    for device in spec.devices:
        for dtype in spec.dtypes:
            for mode in network.modes:
                for fmt in spec.memory_formats:
                    for compiled in spec.compile:
                        for variant in variants:
                            yield Case(
                                "network",
                                variant,
                                network.batch_size,
                                3,
                                network.resolution,
                                network.resolution,
                                dtype,
                                device,
                                mode,
                                fmt,
                                compiled,
                                model=model,
                            )

"""A sweep expanded into cases: what identifies each one, and the order they run in."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from itertools import product
from typing import TYPE_CHECKING, Any

from torch import nn

import attention_variants as av
from attention_variants import backbones

from ..measurement.contract import OutputContract
from ..measurement.references import REFERENCES
from .variant_expr import VariantSpec

if TYPE_CHECKING:
    from .spec import SweepSpec


# What identifies a case, everywhere (the runner's case ids, the report's tables, compare's
# matching): who is measured, at which shape, in which setting. Rows carry these columns.
IDENTITY_FIELDS = ("role", "model", "variant_label")
SHAPE_FIELDS = ("batch", "channels", "height", "width")
SETTING_FIELDS = ("dtype", "device", "mode", "memory_format", "compile", "launch")
CASE_FIELDS = (*IDENTITY_FIELDS, *SHAPE_FIELDS, *SETTING_FIELDS)


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
    launch: str = "eager"  # "graph": each call replayed from a CUDA graph

    @property
    def key(self) -> tuple:
        """The case's identity: CASE_FIELDS in order (hashed into `case_id`)."""
        return tuple(getattr(self, name) for name in CASE_FIELDS)

    @property
    def variant_label(self) -> str:
        return self.variant.label

    @property
    def case_id(self) -> str:
        # an eager launch hashes as before the launch axis existed: old runs keep their ids
        key = self.key[:-1] if self.launch == "eager" else self.key
        return hashlib.sha256(json.dumps(key).encode()).hexdigest()[:12]

    @property
    def shape_key(self) -> tuple:
        """What FLOPs, MACs and bytes depend on: not the memory format or compilation (the
        device does: SDPA picks other kernels on CUDA)."""
        role, model, label, batch, channels, height, width, dtype, device, mode, *_ = self.key
        return (role, model, label, batch, channels, height, width, dtype, device, mode)

    @property
    def label(self) -> str:
        return case_label({name: getattr(self, name) for name in CASE_FIELDS})


def case_label(fields: Mapping[str, Any]) -> str:
    """A case's label from its identifying fields (a `Case`'s, or a results row's):
    ``eca b2 c64 14x14 float32 cpu infer``, `` cl`` for channels_last, `` compiled``, `` graph``
    for a CUDA-graph launch."""
    label = fields["variant_label"]
    what = f"{fields['model']}+{label}" if fields.get("model") else label
    extras = "".join(
        [
            "" if fields.get("memory_format", "contiguous") == "contiguous" else " cl",
            " compiled" if str(fields.get("compile")).lower() == "true" else "",
            " graph" if fields.get("launch") == "graph" else "",
        ]
    )
    return (
        f"{what} b{fields['batch']} c{fields['channels']} {fields['height']}x{fields['width']} "
        f"{fields['dtype']} {fields['device']} {fields['mode']}{extras}"
    )


def build_module(case: Case) -> nn.Module:
    """The module a case measures: a variant, a reference, or a ResNet with a variant."""
    if case.role == "network":
        depth = int(case.model.removeprefix("resnet"))
        attention = None if case.variant.name == "none" else case.variant.name
        return backbones.resnet(
            depth, attention, case.variant.options_dict or None, num_classes=NETWORK_CLASSES
        )
    if case.role == "reference" and case.variant.name in REFERENCES:
        return REFERENCES[case.variant.name](case.channels)
    return av.create(case.variant.name, case.channels, **case.variant.options_dict)


NETWORK_CLASSES = 1000  # what `build_module`'s networks classify into: their output's width


def output_contract(case: Case) -> OutputContract:
    """What the case's module promises to return: a block its input's shape, dtype and device;
    a network one row of `NETWORK_CLASSES` scores per image."""
    if case.role == "network":
        name = f"{case.model} with {case.variant_label}"
        return OutputContract.network(name, (case.batch, NETWORK_CLASSES))
    return OutputContract.block(case.variant_label)


# ---- expansion -------------------------------------------------------------------------------


def expand(spec: SweepSpec) -> list[Case]:
    """Every case of the sweep, references beside the variants they are read against."""
    cases: list[Case] = []
    references = (
        [VariantSpec(name) for name in ("identity", *REFERENCES)] if spec.references else []
    )
    settings = [
        (device, dtype, mode, fmt, compiled, launch)
        for device in spec.devices
        for dtype in spec.dtypes
        for mode in spec.modes
        for fmt in spec.memory_formats
        for compiled in spec.compile
        for launch in spec.timing.launch
    ]
    for device, dtype, mode, fmt, compiled, launch in settings:
        if not spec.variants:
            break  # a network-only sweep
        for batch, channels, height, width in shapes_of(spec):
            shape = (batch, channels, height, width, dtype, device, mode, fmt, compiled)
            for reference in references:
                cases.append(Case("reference", reference, *shape, launch=launch))
            for variant in spec.variants:
                if spec.references and variant.label == "identity":
                    continue  # already measured as a reference
                cases.append(Case("variant", variant, *shape, launch=launch))
    if spec.network is not None:
        cases.extend(_network_cases(spec))
    return cases


def shapes_of(spec: SweepSpec) -> list[tuple[int, int, int, int]]:
    """The block shapes of a sweep: its `shapes`, or batch sizes x channels x resolutions."""
    if spec.shapes:
        return list(spec.shapes)
    return [
        (batch, channels, height, width)
        for batch in spec.batch_sizes
        for channels in spec.channels
        for height, width in spec.resolutions
    ]


def _network_cases(spec: SweepSpec) -> Iterator[Case]:
    network = spec.network
    variants = ([VariantSpec("none")] if network.include_plain else []) + list(network.variants)
    model = f"resnet{network.depth}"
    for device in spec.devices:
        for dtype in spec.dtypes:
            for mode in network.modes:
                for fmt in spec.memory_formats:
                    for compiled, launch in product(spec.compile, spec.timing.launch):
                        for batch, variant in product(network.batch_sizes, variants):
                            yield Case(
                                "network",
                                variant,
                                batch,
                                3,
                                network.resolution,
                                network.resolution,
                                dtype,
                                device,
                                mode,
                                fmt,
                                compiled,
                                model=model,
                                launch=launch,
                            )

"""ResNet-18/34/50/101/152 with an attention slot, laid out exactly as torchvision's.

The attention block sits after the last BatchNorm of each residual block, before the residual
add: where SENet, CBAM and ECA-Net put theirs. Parameter counts match torchvision's when
`attention=None` (resnet50: 25,557,032), so published "+ block" figures can be reproduced.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from .registry import create, validate

AttentionOptions = Mapping[str, Any] | Sequence[Mapping[str, Any]] | None


def _conv3x3(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, 3, stride=stride, padding=1, bias=False)


def _conv1x1(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, 1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int,
        downsample: nn.Module | None,
        attention: nn.Module,
    ):
        super().__init__()
        self.conv1 = _conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.attention = attention
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.attention(self.bn2(self.conv2(out)))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int,
        downsample: nn.Module | None,
        attention: nn.Module,
    ):
        super().__init__()
        width = planes
        self.conv1 = _conv1x1(inplanes, width)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = _conv3x3(width, width, stride)  # stride on the 3x3, as torchvision (v1.5)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = _conv1x1(width, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.attention = attention
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.attention(self.bn3(self.conv3(out)))
        return self.relu(out + identity)


def _per_stage_options(options: AttentionOptions) -> list[dict[str, Any]]:
    if options is None:
        return [{}] * 4
    if isinstance(options, Mapping):
        return [dict(options)] * 4
    options = list(options)
    if len(options) != 4 or not all(isinstance(o, Mapping) for o in options):
        raise ValueError(
            "attention_options: allowed: None, one dict for every block, or a list of four "
            f"dicts (one per stage); got {options!r}"
        )
    return [dict(o) for o in options]


class ResNet(nn.Module):
    """torchvision's ResNet, with `attention` (a registry name) in every residual block."""

    def __init__(
        self,
        block: type[BasicBlock | Bottleneck],
        layers: Sequence[int],
        attention: str | None = None,
        attention_options: AttentionOptions = None,
        num_classes: int = 1000,
    ):
        super().__init__()
        stage_options = _per_stage_options(attention_options)
        stage_planes = (64, 128, 256, 512)
        if attention is not None:  # fail on a bad name or option before building anything
            for planes, options in zip(stage_planes, stage_options, strict=True):
                validate(attention, planes * block.expansion, **options)
        self.inplanes = 64
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        stages = []
        for index, (planes, blocks, options) in enumerate(
            zip(stage_planes, layers, stage_options, strict=True)
        ):
            stride = 1 if index == 0 else 2
            stages.append(self._make_stage(block, planes, blocks, stride, attention, options))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512 * block.expansion, num_classes)
        self._init_weights()

    def _make_stage(self, block, planes, blocks, stride, attention, options) -> nn.Sequential:
        out_planes = planes * block.expansion
        downsample = None
        if stride != 1 or self.inplanes != out_planes:
            downsample = nn.Sequential(
                _conv1x1(self.inplanes, out_planes, stride), nn.BatchNorm2d(out_planes)
            )
        layers = []
        for i in range(blocks):
            attn = nn.Identity() if attention is None else create(attention, out_planes, **options)
            layers.append(
                block(
                    self.inplanes,
                    planes,
                    stride if i == 0 else 1,
                    downsample if i == 0 else None,
                    attn,
                )
            )
            self.inplanes = out_planes
        return nn.Sequential(*layers)

    def _init_weights(self) -> None:
        # torchvision's initialisation for the backbone's own convolutions only: each attention
        # block keeps the initialisation its authors chose
        attention_modules = {
            id(m)
            for block in self.modules()
            if isinstance(block, (BasicBlock, Bottleneck))
            for m in block.attention.modules()
        }
        for m in self.modules():
            if isinstance(m, nn.Conv2d) and id(m) not in attention_modules:
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: Tensor) -> Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


_DEPTHS = {
    18: (BasicBlock, (2, 2, 2, 2)),
    34: (BasicBlock, (3, 4, 6, 3)),
    50: (Bottleneck, (3, 4, 6, 3)),
    101: (Bottleneck, (3, 4, 23, 3)),
    152: (Bottleneck, (3, 8, 36, 3)),
}


def resnet(
    depth: int,
    attention: str | None = None,
    attention_options: AttentionOptions = None,
    num_classes: int = 1000,
) -> ResNet:
    """ResNet of `depth` (18, 34, 50, 101 or 152) with `attention` in every residual block."""
    if depth not in _DEPTHS:
        raise ValueError(f"depth={depth!r} is invalid; allowed: {', '.join(map(str, _DEPTHS))}")
    block, layers = _DEPTHS[depth]
    return ResNet(block, layers, attention, attention_options, num_classes)


def resnet18(attention=None, attention_options=None, num_classes=1000) -> ResNet:
    return resnet(18, attention, attention_options, num_classes)


def resnet34(attention=None, attention_options=None, num_classes=1000) -> ResNet:
    return resnet(34, attention, attention_options, num_classes)


def resnet50(attention=None, attention_options=None, num_classes=1000) -> ResNet:
    return resnet(50, attention, attention_options, num_classes)


def resnet101(attention=None, attention_options=None, num_classes=1000) -> ResNet:
    return resnet(101, attention, attention_options, num_classes)


def resnet152(attention=None, attention_options=None, num_classes=1000) -> ResNet:
    return resnet(152, attention, attention_options, num_classes)

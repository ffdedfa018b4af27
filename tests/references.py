"""Plain reimplementations of the published blocks, written as their authors' code is laid out.

They share no code with attention_variants; tests copy weights in and compare outputs.
"""

import torch
import torch.nn.functional as F
from torch import nn


class OfficialECA(nn.Module):
    """BangguWu/ECANet eca_module.py: pool, squeeze/transpose, conv1d, sigmoid, expand."""

    def __init__(self, k_size):
        super().__init__()
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.conv = nn.Conv1d(1, 1, kernel_size=k_size, padding=(k_size - 1) // 2, bias=False)
        self.sigmoid = nn.Sigmoid()

    def forward(self, x):
        y = self.avg_pool(x)
        y = self.conv(y.squeeze(-1).transpose(-1, -2)).transpose(-1, -2).unsqueeze(-1)
        return x * self.sigmoid(y).expand_as(x)


class OfficialSE(nn.Module):
    """moskomule/senet.pytorch SELayer: pool, Linear-ReLU-Linear-Sigmoid, scale."""

    def __init__(self, channel, reduction, bias=True):
        super().__init__()
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Sequential(
            nn.Linear(channel, channel // reduction, bias=bias),
            nn.ReLU(inplace=True),
            nn.Linear(channel // reduction, channel, bias=bias),
            nn.Sigmoid(),
        )

    def forward(self, x):
        b, c, _, _ = x.size()
        y = self.avg_pool(x).view(b, c)
        return x * self.fc(y).view(b, c, 1, 1).expand_as(x)


class OfficialCBAM(nn.Module):
    """Jongchan/attention-module CBAM.py: ChannelGate (avg + max through one MLP) then SpatialGate."""

    def __init__(self, gate_channels, reduction_ratio=16, kernel_size=7):
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Flatten(),
            nn.Linear(gate_channels, gate_channels // reduction_ratio),
            nn.ReLU(),
            nn.Linear(gate_channels // reduction_ratio, gate_channels),
        )
        self.spatial_conv = nn.Conv2d(2, 1, kernel_size, padding=(kernel_size - 1) // 2, bias=False)
        self.spatial_bn = nn.BatchNorm2d(1, eps=1e-5, momentum=0.01, affine=True)

    def forward(self, x):
        avg = F.avg_pool2d(x, (x.size(2), x.size(3)), stride=(x.size(2), x.size(3)))
        mx = F.max_pool2d(x, (x.size(2), x.size(3)), stride=(x.size(2), x.size(3)))
        scale = torch.sigmoid(self.mlp(avg) + self.mlp(mx)).unsqueeze(2).unsqueeze(3).expand_as(x)
        x_out = x * scale
        compressed = torch.cat(
            (torch.max(x_out, 1)[0].unsqueeze(1), torch.mean(x_out, 1).unsqueeze(1)), dim=1
        )
        return x_out * torch.sigmoid(self.spatial_bn(self.spatial_conv(compressed)))


class ReferenceECAMHA(nn.Module):
    """ECA gate, then nn.MultiheadAttention over H*W tokens with a residual, back to (b, c, h, w)."""

    def __init__(self, channels, heads, k_size):
        super().__init__()
        self.eca = OfficialECA(k_size)
        self.mha = nn.MultiheadAttention(channels, heads, batch_first=True)

    def forward(self, x):
        b, c, h, w = x.shape
        y = self.eca(x)
        tokens = y.reshape(b, c, h * w).permute(0, 2, 1)
        attended, _ = self.mha(tokens, tokens, tokens, need_weights=False)
        return (tokens + attended).permute(0, 2, 1).reshape(b, c, h, w)


class OfficialSimAM(nn.Module):
    """ZjjConan/SimAM simam_module.py."""

    def __init__(self, e_lambda=1e-4):
        super().__init__()
        self.activaton = nn.Sigmoid()
        self.e_lambda = e_lambda

    def forward(self, x):
        _, _, h, w = x.size()
        n = w * h - 1
        x_minus_mu_square = (x - x.mean(dim=[2, 3], keepdim=True)).pow(2)
        y = (
            x_minus_mu_square
            / (4 * (x_minus_mu_square.sum(dim=[2, 3], keepdim=True) / n + self.e_lambda))
            + 0.5
        )
        return x * self.activaton(y)

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


# ---- the zoo a reviewer asks about: each written as its official repository lays it out -------


class _HSigmoid(nn.Module):
    def forward(self, x):
        return F.relu6(x + 3) / 6


class OfficialCoordAtt(nn.Module):
    """houqb/CoordAttention coordatt.py: CoordAtt(inp, oup, reduction=32)."""

    def __init__(self, inp, oup, reduction=32):
        super().__init__()
        self.pool_h = nn.AdaptiveAvgPool2d((None, 1))
        self.pool_w = nn.AdaptiveAvgPool2d((1, None))
        mip = max(8, inp // reduction)
        self.conv1 = nn.Conv2d(inp, mip, kernel_size=1, stride=1, padding=0)
        self.bn1 = nn.BatchNorm2d(mip)
        self.sigmoid = _HSigmoid()
        self.conv_h = nn.Conv2d(mip, oup, kernel_size=1, stride=1, padding=0)
        self.conv_w = nn.Conv2d(mip, oup, kernel_size=1, stride=1, padding=0)

    def forward(self, x):
        identity = x
        _n, _c, h, w = x.size()
        x_h = self.pool_h(x)
        x_w = self.pool_w(x).permute(0, 1, 3, 2)
        y = torch.cat([x_h, x_w], dim=2)
        y = self.bn1(self.conv1(y))
        y = y * self.sigmoid(y)  # h_swish
        x_h, x_w = torch.split(y, [h, w], dim=2)
        x_w = x_w.permute(0, 1, 3, 2)
        a_h = self.conv_h(x_h).sigmoid()
        a_w = self.conv_w(x_w).sigmoid()
        return identity * a_w * a_h


class OfficialContextBlock(nn.Module):
    """xvjiarui/GCNet mmdet/ops/gcb/context_block.py: ContextBlock(inplanes, ratio)."""

    def __init__(self, inplanes, ratio, pooling_type="att", fusion_types=("channel_add",)):
        super().__init__()
        self.planes = int(inplanes * ratio)
        self.pooling_type = pooling_type
        if pooling_type == "att":
            self.conv_mask = nn.Conv2d(inplanes, 1, kernel_size=1)
            self.softmax = nn.Softmax(dim=2)
        else:
            self.avg_pool = nn.AdaptiveAvgPool2d(1)

        def transform():
            return nn.Sequential(
                nn.Conv2d(inplanes, self.planes, kernel_size=1),
                nn.LayerNorm([self.planes, 1, 1]),
                nn.ReLU(inplace=True),
                nn.Conv2d(self.planes, inplanes, kernel_size=1),
            )

        self.channel_add_conv = transform() if "channel_add" in fusion_types else None
        self.channel_mul_conv = transform() if "channel_mul" in fusion_types else None

    def spatial_pool(self, x):
        batch, channel, height, width = x.size()
        if self.pooling_type != "att":
            return self.avg_pool(x)
        input_x = x.view(batch, channel, height * width).unsqueeze(1)
        context_mask = self.conv_mask(x).view(batch, 1, height * width)
        context_mask = self.softmax(context_mask).unsqueeze(-1)
        return torch.matmul(input_x, context_mask).view(batch, channel, 1, 1)

    def forward(self, x):
        context = self.spatial_pool(x)
        out = x
        if self.channel_mul_conv is not None:
            out = out * torch.sigmoid(self.channel_mul_conv(context))
        if self.channel_add_conv is not None:
            out = out + self.channel_add_conv(context)
        return out


class _BasicConv(nn.Module):
    def __init__(self, in_planes, out_planes, kernel_size, padding):
        super().__init__()
        self.conv = nn.Conv2d(in_planes, out_planes, kernel_size, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(out_planes, eps=1e-5, momentum=0.01, affine=True)

    def forward(self, x):
        return self.bn(self.conv(x))


class _TripletGate(nn.Module):
    """landskape-ai/triplet-attention MODELS/triplet_attention.py SpatialGate."""

    def __init__(self, kernel_size=7):
        super().__init__()
        self.spatial = _BasicConv(2, 1, kernel_size, padding=(kernel_size - 1) // 2)

    def forward(self, x):
        x_compress = torch.cat((torch.max(x, 1)[0].unsqueeze(1), torch.mean(x, 1).unsqueeze(1)), 1)
        return x * torch.sigmoid_(self.spatial(x_compress))


class OfficialTripletAttention(nn.Module):
    """landskape-ai/triplet-attention MODELS/triplet_attention.py TripletAttention."""

    def __init__(self, kernel_size=7, no_spatial=False):
        super().__init__()
        self.ChannelGateH = _TripletGate(kernel_size)
        self.ChannelGateW = _TripletGate(kernel_size)
        self.no_spatial = no_spatial
        if not no_spatial:
            self.SpatialGate = _TripletGate(kernel_size)

    def forward(self, x):
        x_out11 = self.ChannelGateH(x.permute(0, 2, 1, 3).contiguous()).permute(0, 2, 1, 3)
        x_out21 = self.ChannelGateW(x.permute(0, 3, 2, 1).contiguous()).permute(0, 3, 2, 1)
        if not self.no_spatial:
            return (1 / 3) * (self.SpatialGate(x) + x_out11.contiguous() + x_out21.contiguous())
        return (1 / 2) * (x_out11.contiguous() + x_out21.contiguous())


class OfficialGCT(nn.Module):
    """z-x-yang/GCT PyTorch/GCT.py."""

    def __init__(self, num_channels, epsilon=1e-5, mode="l2", after_relu=False):
        super().__init__()
        self.alpha = nn.Parameter(torch.ones(1, num_channels, 1, 1))
        self.gamma = nn.Parameter(torch.zeros(1, num_channels, 1, 1))
        self.beta = nn.Parameter(torch.zeros(1, num_channels, 1, 1))
        self.epsilon, self.mode, self.after_relu = epsilon, mode, after_relu

    def forward(self, x):
        if self.mode == "l2":
            embedding = (x.pow(2).sum((2, 3), keepdim=True) + self.epsilon).pow(0.5) * self.alpha
            norm = self.gamma / (embedding.pow(2).mean(dim=1, keepdim=True) + self.epsilon).pow(0.5)
        else:
            _x = x if self.after_relu else torch.abs(x)
            embedding = _x.sum((2, 3), keepdim=True) * self.alpha
            norm = self.gamma / (torch.abs(embedding).mean(dim=1, keepdim=True) + self.epsilon)
        gate = 1.0 + torch.tanh(embedding * norm + self.beta)
        return x * gate


class OfficialSGE(nn.Module):
    """implus/PytorchInsight classification/models/imagenet/resnet_sge.py SpatialGroupEnhance."""

    def __init__(self, groups=64):
        super().__init__()
        self.groups = groups
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.weight = nn.Parameter(torch.zeros(1, groups, 1, 1))
        self.bias = nn.Parameter(torch.ones(1, groups, 1, 1))
        self.sig = nn.Sigmoid()

    def forward(self, x):
        b, c, h, w = x.size()
        x = x.view(b * self.groups, -1, h, w)
        xn = x * self.avg_pool(x)
        xn = xn.sum(dim=1, keepdim=True)
        t = xn.view(b * self.groups, -1)
        t = t - t.mean(dim=1, keepdim=True)
        std = t.std(dim=1, keepdim=True) + 1e-5
        t = t / std
        t = t.view(b, self.groups, h, w)
        t = t * self.weight + self.bias
        t = t.view(b * self.groups, 1, h, w)
        x = x * self.sig(t)
        return x.view(b, c, h, w)


class OfficialSALayer(nn.Module):
    """wofmanaf/SA-Net models/sa_resnet.py sa_layer."""

    def __init__(self, channel, groups=64):
        super().__init__()
        self.groups = groups
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.cweight = nn.Parameter(torch.zeros(1, channel // (2 * groups), 1, 1))
        self.cbias = nn.Parameter(torch.ones(1, channel // (2 * groups), 1, 1))
        self.sweight = nn.Parameter(torch.zeros(1, channel // (2 * groups), 1, 1))
        self.sbias = nn.Parameter(torch.ones(1, channel // (2 * groups), 1, 1))
        self.sigmoid = nn.Sigmoid()
        self.gn = nn.GroupNorm(channel // (2 * groups), channel // (2 * groups))

    @staticmethod
    def channel_shuffle(x, groups):
        b, _c, h, w = x.shape
        x = x.reshape(b, groups, -1, h, w)
        x = x.permute(0, 2, 1, 3, 4)
        return x.reshape(b, -1, h, w)

    def forward(self, x):
        b, _c, h, w = x.shape
        x = x.reshape(b * self.groups, -1, h, w)
        x_0, x_1 = x.chunk(2, dim=1)
        xn = self.avg_pool(x_0)
        xn = self.cweight * xn + self.cbias
        xn = x_0 * self.sigmoid(xn)
        xs = self.gn(x_1)
        xs = self.sweight * xs + self.sbias
        xs = x_1 * self.sigmoid(xs)
        out = torch.cat([xn, xs], dim=1)
        out = out.reshape(b, -1, h, w)
        return self.channel_shuffle(out, 2)

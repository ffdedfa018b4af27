"""Coordinate, global-context, triplet, GCT, SGE and shuffle attention against their authors'
code (tests/references.py), their initialisation, their counts and their ResNet-50s."""

import math

import pytest
import torch

import attention_variants as av
from attention_variants import backbones
from attention_variants.checks import ChannelsUnsupported
from bench.measurement.counting import count
from tests.references import (
    OfficialContextBlock,
    OfficialCoordAtt,
    OfficialGCT,
    OfficialSALayer,
    OfficialSGE,
    OfficialTripletAttention,
)

ZOO = ["coord", "gc", "triplet", "gct", "sge", "shuffle"]
SMALL_GROUPS = {"sge": {"groups": 4}, "shuffle": {"groups": 4}}  # 32 channels


def _ours_and_official(name, channels, **options):
    """Our block with every parameter randomised (zero inits hide wiring mistakes), the
    official one, and a map from our parameter names to theirs."""
    ours = av.create(name, channels, **options)
    with torch.no_grad():
        for p in ours.parameters():
            p.copy_(torch.randn_like(p) * 0.5 + 0.5)
    if name == "coord":
        ref, rename = OfficialCoordAtt(channels, channels, **options), {}
    elif name == "gc":
        fusion = {"add": "channel_add", "mul": "channel_mul"}[options.get("fusion", "add")]
        ref = OfficialContextBlock(
            channels, options.get("ratio", 1 / 16), options.get("pooling", "att"), (fusion,)
        )
        rename = {"transform.": f"{fusion}_conv."}
    elif name == "triplet":
        ref = OfficialTripletAttention(**options)
        rename = {"cw.": "ChannelGateH.spatial.", "hc.": "ChannelGateW.spatial.",
                  "hw.": "SpatialGate.spatial."}  # fmt: skip
    elif name == "gct":
        ref, rename = OfficialGCT(channels, **options), {}
    elif name == "sge":
        ref, rename = OfficialSGE(**options), {}
    else:
        ref, rename = OfficialSALayer(channels, **options), {}

    def theirs(key):
        for a, b in rename.items():
            key = key.replace(a, b, 1) if key.startswith(a) else key
        return key

    ref.load_state_dict({theirs(k): v for k, v in ours.state_dict().items()})
    return ours, ref, theirs


CASES = [
    ("coord", {}),
    ("coord", {"reduction": 4}),
    ("gc", {}),
    ("gc", {"ratio": 0.25, "pooling": "avg", "fusion": "mul"}),
    ("triplet", {}),
    ("triplet", {"kernel_size": 3, "no_spatial": True}),
    ("gct", {}),
    ("gct", {"mode": "l1"}),
    ("gct", {"mode": "l1", "after_relu": True}),
    ("sge", {"groups": 8}),
    ("shuffle", {"groups": 8}),
]


@pytest.mark.parametrize("train", [False, True], ids=["eval", "train"])
@pytest.mark.parametrize(("name", "options"), CASES)
def test_equals_the_official_code_forward_and_backward(name, options, train):
    torch.manual_seed(0)
    ours, ref, theirs = _ours_and_official(name, 64, **options)
    ours.train(train)
    ref.train(train)
    x = torch.randn(3, 64, 9, 7)
    if options.get("after_relu"):
        x = x.relu()
    x_ours, x_ref = x.clone().requires_grad_(), x.clone().requires_grad_()
    y_ours, y_ref = ours(x_ours), ref(x_ref)
    torch.testing.assert_close(y_ours, y_ref, atol=1e-5, rtol=1e-5)
    upstream = torch.randn_like(y_ours)
    y_ours.backward(upstream)
    y_ref.backward(upstream)
    torch.testing.assert_close(x_ours.grad, x_ref.grad, atol=1e-5, rtol=1e-4)
    ref_params = dict(ref.named_parameters())
    for key, p in ours.named_parameters():
        torch.testing.assert_close(p.grad, ref_params[theirs(key)].grad, atol=1e-4, rtol=1e-4)
    if train:  # running statistics move alike
        ref_buffers = dict(ref.named_buffers())
        for key, b in ours.named_buffers():
            torch.testing.assert_close(b, ref_buffers[theirs(key)])


@pytest.mark.parametrize("name", ZOO)
@pytest.mark.parametrize("shape", [(2, 32, 7, 5), (1, 32, 1, 1), (2, 32, 4, 16)], ids=str)
@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last], ids=str)
def test_shape_preserving_and_finite_in_any_layout(name, shape, memory_format):
    module = av.create(name, 32, **SMALL_GROUPS.get(name, {})).eval()
    x = torch.randn(shape).to(memory_format=memory_format)
    y = module(x)
    assert y.shape == x.shape and torch.isfinite(y).all()


@pytest.mark.parametrize("name", ZOO)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
def test_half_precisions_stay_close_to_fp32(name, dtype):
    module = av.create(name, 32, **SMALL_GROUPS.get(name, {})).eval()
    x = torch.randn(2, 32, 6, 6)
    expected = module(x)
    got = module.to(dtype)(x.to(dtype))
    torch.testing.assert_close(got.float(), expected, atol=6e-2, rtol=6e-2)


# ---- initialisation as the authors chose it --------------------------------------------------


def test_gc_starts_as_the_identity_with_a_kaiming_mask():
    block = av.create("gc", 512)
    x = torch.randn(2, 512, 5, 5)
    assert torch.equal(block(x), x)  # the transform's last conv is zero
    std = block.conv_mask.weight.std().item()
    assert std == pytest.approx(math.sqrt(2 / 512), rel=0.15)  # fan_in, ReLU gain
    assert torch.equal(block.conv_mask.bias, torch.zeros(1))


def test_gct_starts_as_the_identity():
    x = torch.randn(2, 16, 5, 5)
    for mode in ("l2", "l1"):
        torch.testing.assert_close(av.create("gct", 16, mode=mode)(x), x)


def test_sge_and_shuffle_start_with_weights_0_and_biases_1():
    sge = av.create("sge", 64)
    assert sge.weight.eq(0).all() and sge.bias.eq(1).all()
    sa = av.create("shuffle", 256)
    assert sa.cweight.eq(0).all() and sa.sweight.eq(0).all()
    assert sa.cbias.eq(1).all() and sa.sbias.eq(1).all()


def test_spatial_gates_zero_their_batchnorm_as_the_official_resnets_do():
    cbam = av.create("cbam", 64)
    assert cbam.spatial_gate.bn.weight.eq(0).all()
    triplet = av.create("triplet", 64)
    assert triplet.hw.bn.weight.eq(0).all()  # the "SpatialGate" branch only
    assert triplet.cw.bn.weight.eq(1).all() and triplet.hc.bn.weight.eq(1).all()


def test_coord_convs_start_with_the_mobilenet_v2_initialisation():
    block = av.create("coord", 2048)  # hidden 64: enough weights for the std to settle
    for conv in (block.conv1, block.conv_h, block.conv_w):
        assert conv.weight.std().item() == pytest.approx(math.sqrt(2 / conv.out_channels), rel=0.1)
        assert conv.bias.eq(0).all()


# ---- options ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "channels", "options", "message"),
    [
        ("coord", 64, {"reduction": 0}, "coord: reduction=0 is invalid; allowed: an integer >= 1"),
        ("gc", 64, {"ratio": 0.001}, "gc: ratio=0.001 is invalid; allowed: a number in (0, 1]"),
        ("gc", 64, {"pooling": "max"}, "gc: pooling='max' is invalid; allowed: 'att', 'avg'"),
        ("triplet", 64, {"kernel_size": 4}, "triplet: kernel_size=4 is invalid; allowed: an odd"),
        ("gct", 64, {"mode": "l3"}, "gct: mode='l3' is invalid; allowed: 'l2', 'l1'"),
        ("gct", 64, {"epsilon": 0}, "gct: epsilon=0 is invalid; allowed: a number > 0"),
        ("sge", 96, {"groups": 64}, "sge: channels=96 cannot be split into 64 groups"),
        ("shuffle", 64, {}, "shuffle: channels=64 cannot be split into 64 groups x 2 halves"),
    ],
)
def test_bad_options_name_the_option_and_what_is_allowed(name, channels, options, message):
    with pytest.raises(ValueError) as excinfo:
        av.create(name, channels, **options)
    assert message in str(excinfo.value)
    if name in ("sge", "shuffle"):
        assert isinstance(excinfo.value, ChannelsUnsupported)


# ---- counting: every op scored, totals from formulas worked out by hand ----------------------

B, C, H, W = 2, 256, 14, 14
E, N = B * C * H * W, H * W


def _coord():
    m = max(8, C // 32)
    pools = 2 * E + B * C * H + B * C * W  # two means: a sum per input, a divide per output
    macs = B * m * (H + W) * C + B * C * H * m + B * C * W * m  # conv1, conv_h, conv_w
    biases = B * m * (H + W) + B * C * H + B * C * W
    bn, hswish = 2 * B * m * (H + W), 4 * B * m * (H + W)
    sigmoids = 4 * (B * C * H + B * C * W)
    return pools + 2 * macs + biases + bn + hswish + sigmoids + 2 * E, macs


def _gc():
    p = C // 16
    macs = B * N * C + B * C * N + B * p * C + B * C * p  # mask conv, context bmm, transform
    flops = 2 * macs + B * N + B * p + B * C  # + the three convs' biases
    flops += 5 * B * N + 6 * B * p + B * p + E  # softmax, LayerNorm, ReLU, the add
    return flops, macs


def _triplet(k=7):
    planes = B * (C * W + H * C + H * W)  # the pooled maps of the three rotations
    macs = 2 * k * k * planes  # 2 -> 1 channel k x k convs
    flops = 3 * E + (3 * E + planes)  # max and mean over the rotated channels
    flops += 2 * macs + 2 * planes + 4 * planes + 3 * E  # conv, BN (eval), sigmoid, scale
    return flops + 2 * E + E, macs  # two adds and the division by 3


def _gct():
    bc = B * C
    embedding = E + E + bc + bc + bc  # square (pow), sum, + eps, sqrt, * alpha
    norm = bc + (bc + B) + B + B + bc  # square, mean over channels, + eps, sqrt, gamma / .
    gate = bc + bc + bc + bc + E  # * norm, + beta, tanh, 1 + ., x * gate
    return embedding + norm + gate, 0


def _sge(groups=64):
    bgn, bg = B * groups * N, B * groups
    flops = (E + B * C) + E + E  # group means, x * mean, sum over the group's channels
    flops += (bgn + bg) + bgn + 3 * bgn + bg + bgn  # centre, std, + 1e-5, standardise
    flops += bgn + bgn + 4 * bgn + E  # * weight, + bias, sigmoid, scale
    return flops, 0


def _shuffle():
    half_e, half_bc = E // 2, B * C // 2
    channel = (half_e + half_bc) + half_bc + half_bc + 4 * half_bc + half_e
    spatial = 6 * half_e + half_e + half_e + 4 * half_e + half_e  # GroupNorm, affine, gate
    return channel + spatial, 0


@pytest.mark.parametrize(
    ("name", "formula"),
    [("coord", _coord), ("gc", _gc), ("triplet", _triplet), ("gct", _gct), ("sge", _sge),
     ("shuffle", _shuffle)],
)  # fmt: skip
def test_counts_equal_a_formula_worked_out_by_hand(name, formula):
    module = av.create(name, C).eval()
    counts = count(module, torch.randn(B, C, H, W))
    assert counts.unscored_ops == set()
    assert (counts.flops, counts.macs) == formula()
    assert counts.bytes_read >= 4 * E and counts.bytes_written >= 4 * E  # x read, y written
    trained = count(module.train(), torch.randn(B, C, H, W), backward=True)
    assert trained.unscored_ops == set() and trained.flops > 2 * counts.flops


# ---- ResNet-50 -------------------------------------------------------------------------------

STAGES = [(256, 3), (512, 4), (1024, 6), (2048, 3)]  # output channels, blocks
PER_BLOCK = {
    "coord": lambda c: 3 * max(8, c // 32) * c + 3 * max(8, c // 32) + 2 * c,
    "gc": lambda c: 2 * c * (c // 16) + 3 * (c // 16) + 2 * c + 1,
    "triplet": lambda c: 3 * (2 * 7 * 7 + 2),
    "gct": lambda c: 3 * c,
    "sge": lambda c: 2 * 64,
    "shuffle": lambda c: 6 * (c // 128),
}
PUBLISHED_M = {"triplet": 25.56, "sge": 25.56, "shuffle": 25.56}  # official repositories


@pytest.mark.parametrize("name", ZOO)
def test_resnet50_parameters_are_the_plain_network_plus_the_blocks(name):
    plain = sum(p.numel() for p in backbones.resnet50().parameters())
    params = sum(p.numel() for p in backbones.resnet50(name).parameters())
    assert params == plain + sum(n * PER_BLOCK[name](c) for c, n in STAGES)
    if name in PUBLISHED_M:
        assert round(params / 1e6, 2) == PUBLISHED_M[name]

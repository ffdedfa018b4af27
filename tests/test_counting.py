import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import attention_variants as av
from attention_variants.backbones import resnet50
from attention_variants.eca import eca_kernel_size
from attention_variants.eca_mha import naive_attention
from bench.measurement.counting import count, register_formula


def _torch_flops(fn, *inputs, backward=False):
    inputs = [x.detach().requires_grad_(backward) for x in inputs]
    with FlopCounterMode(display=False) as counter:
        out = fn(*inputs)
        if backward:
            out.backward(torch.ones_like(out))
    return counter.get_total_flops()


MATMUL_AND_CONV_CASES = [
    ("conv2d", nn.Conv2d(16, 32, 3, padding=1, bias=False), (2, 16, 9, 7)),
    (
        "conv2d_stride_dilation",
        nn.Conv2d(8, 8, 3, stride=2, dilation=2, bias=False),
        (1, 8, 15, 15),
    ),
    ("conv2d_grouped", nn.Conv2d(16, 32, 3, groups=4, bias=False), (2, 16, 8, 8)),
    ("conv2d_depthwise", nn.Conv2d(16, 16, 5, groups=16, padding=2, bias=False), (2, 16, 8, 8)),
    ("conv1d", nn.Conv1d(1, 1, 5, padding=2, bias=False), (4, 1, 64)),
    ("conv_transpose2d", nn.ConvTranspose2d(8, 4, 3, stride=2, bias=False), (2, 8, 5, 5)),
    ("linear", nn.Linear(64, 48, bias=False), (10, 64)),
    ("linear_3d", nn.Linear(64, 48, bias=False), (2, 10, 64)),
]


@pytest.mark.parametrize("backward", [False, True], ids=["forward", "backward"])
@pytest.mark.parametrize(
    ("label", "module", "shape"),
    MATMUL_AND_CONV_CASES,
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_conv_and_linear_flops_equal_flop_counter_mode(label, module, shape, backward):
    x = torch.randn(shape)
    ours = count(module, x, backward=backward)
    assert ours.flops == 2 * ours.macs
    if backward:  # input and weight gradients each cost one forward pass of MACs
        assert ours.macs == 3 * count(module, x).macs
    if backward and module.groups > 1 if isinstance(module, nn.Conv2d) else False:
        # torch.utils.flop_counter ignores groups for the weight gradient: groups x too many
        forward_flops = count(module, x).flops
        assert _torch_flops(module, x, backward=True) == forward_flops * (2 + module.groups)
    else:
        assert ours.flops == _torch_flops(module, x, backward=backward)


def test_bias_is_counted_on_top_of_two_flops_per_mac():
    conv = nn.Conv2d(8, 16, 3, padding=1)
    x = torch.randn(2, 8, 6, 6)
    ours = count(conv, x)
    assert 2 * ours.macs == _torch_flops(conv, x)
    assert ours.flops == 2 * ours.macs + 2 * 16 * 6 * 6


def test_matmul_and_bmm_equal_flop_counter_mode():
    a, b = torch.randn(3, 17, 31), torch.randn(3, 31, 5)
    assert count(torch.bmm, a, b).flops == _torch_flops(torch.bmm, a, b) == 2 * 3 * 17 * 31 * 5
    assert count(torch.matmul, a[0], b[0]).flops == _torch_flops(torch.matmul, a[0], b[0])
    assert count(torch.matmul, a, b, backward=True).flops == _torch_flops(
        torch.matmul, a, b, backward=True
    )


@pytest.mark.parametrize(("batch", "heads", "tokens", "head_dim"), [(2, 4, 64, 16), (1, 2, 49, 32)])
def test_sdpa_forward_is_four_b_h_n_squared_d_plus_scale_and_softmax(
    batch, heads, tokens, head_dim
):
    q, k, v = (torch.randn(batch, heads, tokens, head_dim) for _ in range(3))
    ours = count(F.scaled_dot_product_attention, q, k, v)
    matmul_flops = 4 * batch * heads * tokens**2 * head_dim
    assert 2 * ours.macs == matmul_flops
    assert ours.flops == matmul_flops + 6 * batch * heads * tokens**2
    # torch.utils.flop_counter scores the CPU flash op as nothing at all
    assert _torch_flops(F.scaled_dot_product_attention, q, k, v) == 0
    # the explicit softmax(QK^T/sqrt(d))V scores exactly the same
    naive = count(naive_attention, q, k, v)
    assert (naive.flops, naive.macs) == (ours.flops, ours.macs)


def test_sdpa_backward_adds_the_recomputed_scores_and_four_matmuls():
    b, h, n, d = 2, 2, 32, 8
    q, k, v = (torch.randn(b, h, n, d) for _ in range(3))
    forward = count(F.scaled_dot_product_attention, q, k, v)
    both = count(F.scaled_dot_product_attention, q, k, v, backward=True)
    assert both.macs - forward.macs == b * h * n * n * 5 * d


def _se_flops(b, c, hw, r):
    cr = c // r
    pool, mlp = b * c * hw + b * c, 2 * b * c * cr * 2 + b * cr + b * c + b * cr  # + biases, relu
    return pool + mlp + 4 * b * c + b * c * hw  # sigmoid, scale


def _eca_flops(b, c, hw, k):
    return (b * c * hw + b * c) + 2 * b * c * k + 4 * b * c + b * c * hw


def _cbam_flops(b, c, hw, r, ks):
    cr = c // r
    mlp = 2 * b * c * cr * 2 + b * cr + b * c + b * cr
    channel_gate = (b * c * hw + b * c) + b * c * hw + 2 * mlp + b * c + 4 * b * c + b * c * hw
    spatial_gate = b * c * hw + (b * c * hw + b * hw) + 2 * b * hw * 2 * ks * ks
    spatial_gate += 2 * b * hw + 4 * b * hw + b * c * hw  # eval BatchNorm, sigmoid, scale
    return channel_gate + spatial_gate


def _eca_mha_flops(b, c, hw, heads):
    n = hw
    projections = (2 * b * n * c * 3 * c + b * n * 3 * c) + (2 * b * n * c * c + b * n * c)
    attention = 4 * b * n * n * c + 6 * b * heads * n * n
    return _eca_flops(b, c, hw, eca_kernel_size(c)) + projections + attention + b * n * c


@pytest.mark.parametrize(("b", "c", "h", "w"), [(2, 64, 8, 8), (1, 128, 7, 5), (3, 32, 14, 14)])
def test_each_variant_total_equals_its_analytic_formula(b, c, h, w):
    x = torch.randn(b, c, h, w)
    hw = h * w

    def flops(name, **options):
        result = count(av.create(name, c, **options).eval(), x)
        assert not result.unscored_ops
        return result.flops

    assert flops("identity") == 0
    assert flops("se") == _se_flops(b, c, hw, 16)
    assert flops("se", reduction=4) == _se_flops(b, c, hw, 4)
    assert flops("eca") == _eca_flops(b, c, hw, eca_kernel_size(c))
    assert flops("cbam") == _cbam_flops(b, c, hw, 16, 7)
    assert flops("eca_mha") == _eca_mha_flops(b, c, hw, 4)
    assert flops("eca_mha", attention_impl="naive") == _eca_mha_flops(b, c, hw, 4)
    # SimAM: mean, subtract, square, sum, then (d / (4 (sum / n + lambda)) + 0.5), sigmoid, scale
    assert flops("simam") == 11 * b * c * hw + 4 * b * c


def test_resnet50_conv_and_linear_macs_match_the_published_4_09_g():
    counts = count(resnet50().eval(), torch.randn(1, 3, 224, 224))
    macs = sum(counts.by_op[op].macs for op in ("aten.convolution", "aten.addmm"))
    assert macs == counts.macs
    assert abs(macs - 4.09e9) / 4.09e9 < 0.001  # torchvision lists 4.09 GFLOPS (as MACs)


def test_bytes_read_and_written():
    x = torch.randn(1000)
    doubled = count(torch.mul, x, 2.0)
    assert (doubled.bytes_read, doubled.bytes_written) == (4000, 4000)
    # a broadcast gate is read once per distinct element, not once per output element
    fmap, gate = torch.randn(2, 8, 5, 5), torch.randn(2, 8, 1, 1)
    scaled = count(torch.mul, fmap, gate.expand_as(fmap))
    assert scaled.bytes_read == (2 * 8 * 25 + 2 * 8) * 4
    assert scaled.bytes_written == 2 * 8 * 25 * 4
    views = count(lambda t: t.view(2, 500).transpose(0, 1).unsqueeze(0), x)
    assert (views.flops, views.bytes_moved) == (0, 0)
    half = count(torch.sigmoid, x.half())
    assert (half.flops, half.bytes_moved) == (4 * 1000, 2 * 2000)


@torch.library.custom_op("bench_tests::triple", mutates_args=())
def _triple(x: torch.Tensor) -> torch.Tensor:
    return x * 3


@_triple.register_fake
def _(x):
    return torch.empty_like(x)


def test_custom_ops_are_seen_and_take_a_registered_formula():
    x = torch.randn(10, 10)
    before = count(_triple, x)
    assert "bench_tests.triple" in before.unscored_ops  # no formula yet: shown, not hidden
    register_formula("bench_tests.triple", lambda args, kwargs, out: (out.numel(), 0))
    after = count(_triple, x)
    assert "bench_tests.triple" not in after.unscored_ops
    assert after.by_op["bench_tests.triple"].flops == 100


def test_backward_requires_an_output_with_grad():
    with pytest.raises(ValueError, match="no output requires grad"):
        count(lambda t: t.detach() * 2, torch.randn(3), backward=True)

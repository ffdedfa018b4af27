import pytest
import torch

import attention_variants as av
from attention_variants.eca import eca_kernel_size
from tests.references import OfficialCBAM, OfficialECA, OfficialSE, OfficialSimAM, ReferenceECAMHA

CORE = ["identity", "se", "cbam", "eca", "eca_mha", "simam"]
SHAPES = [(2, 32, 7, 5), (1, 32, 1, 1), (3, 32, 9, 9), (2, 32, 4, 16)]
DTYPES = [torch.float32, torch.float16, torch.bfloat16]


@pytest.mark.parametrize("name", CORE)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
def test_output_shape_equals_input_shape(name, shape, memory_format):
    module = av.create(name, shape[1]).eval()  # eval: BatchNorm cannot train on one value
    x = torch.randn(shape).to(memory_format=memory_format)
    y = module(x)
    assert y.shape == x.shape
    assert torch.isfinite(y).all()


@pytest.mark.parametrize("name", CORE)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_runs_in_each_dtype_and_stays_close_to_fp32(name, dtype):
    module = av.create(name, 32).eval()
    x = torch.randn(2, 32, 6, 6)
    expected = module(x)
    got = module.to(dtype)(x.to(dtype))
    assert got.dtype == dtype
    torch.testing.assert_close(got.float(), expected, atol=5e-2, rtol=5e-2)


@pytest.mark.parametrize("name", CORE)
def test_gradients_reach_the_input_and_every_parameter(name):
    module = av.create(name, 32).train()
    with torch.no_grad():  # zero inits (CBAM's spatial BatchNorm) would stop gradients by design
        for p in module.parameters():
            p.add_(0.1 * torch.randn_like(p))
    x = torch.randn(2, 32, 6, 5, requires_grad=True)
    module(x).square().sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    for pname, p in module.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, pname


def _copy(dst, src):
    with torch.no_grad():
        dst.copy_(src)


def test_eca_equals_the_official_layout():
    ours = av.create("eca", 256)
    official = OfficialECA(ours.kernel_size)
    _copy(official.conv.weight, ours.conv.weight)
    x = torch.randn(2, 256, 7, 9)
    torch.testing.assert_close(ours(x), official(x), rtol=0, atol=1e-6)


@pytest.mark.parametrize("bias", [True, False])
def test_se_equals_a_plain_reference(bias):
    ours = av.create("se", 64, reduction=8, bias=bias)
    ref = OfficialSE(64, 8, bias=bias)
    _copy(ref.fc[0].weight, ours.mlp.fc1.weight)
    _copy(ref.fc[2].weight, ours.mlp.fc2.weight)
    if bias:
        _copy(ref.fc[0].bias, ours.mlp.fc1.bias)
        _copy(ref.fc[2].bias, ours.mlp.fc2.bias)
    x = torch.randn(3, 64, 5, 6)
    torch.testing.assert_close(ours(x), ref(x), rtol=0, atol=1e-6)


@pytest.mark.parametrize("train", [True, False])
def test_cbam_equals_the_official_arrangement(train):
    ours = av.create("cbam", 64, reduction=16)
    ref = OfficialCBAM(64, 16)
    _copy(ref.mlp[1].weight, ours.channel_gate.mlp.fc1.weight)
    _copy(ref.mlp[1].bias, ours.channel_gate.mlp.fc1.bias)
    _copy(ref.mlp[3].weight, ours.channel_gate.mlp.fc2.weight)
    _copy(ref.mlp[3].bias, ours.channel_gate.mlp.fc2.bias)
    _copy(ref.spatial_conv.weight, ours.spatial_gate.conv.weight)
    with torch.no_grad():  # non-trivial BatchNorm state, so the BN path is compared too
        ours.spatial_gate.bn.running_mean.fill_(0.3)
        ours.spatial_gate.bn.running_var.fill_(2.0)
        ours.spatial_gate.bn.weight.fill_(1.5)
    ref.spatial_bn.load_state_dict(ours.spatial_gate.bn.state_dict())
    ours.train(train)
    ref.train(train)
    x = torch.randn(2, 64, 8, 7)
    torch.testing.assert_close(ours(x), ref(x), rtol=0, atol=1e-5)


@pytest.mark.parametrize("attention_impl", ["sdpa", "naive"])
@pytest.mark.parametrize("hw", [(7, 5), (8, 8), (1, 1)])
def test_eca_mha_equals_eca_then_torch_multihead_attention(attention_impl, hw):
    channels, heads = 64, 4
    ours = av.create("eca_mha", channels, heads=heads, attention_impl=attention_impl)
    ref = ReferenceECAMHA(channels, heads, ours.eca.kernel_size)
    _copy(ref.eca.conv.weight, ours.eca.conv.weight)
    _copy(ref.mha.in_proj_weight, ours.qkv.weight)
    _copy(ref.mha.in_proj_bias, ours.qkv.bias)
    _copy(ref.mha.out_proj.weight, ours.proj.weight)
    _copy(ref.mha.out_proj.bias, ours.proj.bias)
    x = torch.randn(2, channels, *hw)
    torch.testing.assert_close(ours(x), ref(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(("channels", "hw"), [(64, (7, 5)), (32, (16, 16)), (96, (3, 11))])
def test_eca_mha_sdpa_equals_naive_where_hw_differs_from_c(channels, hw):
    assert hw[0] * hw[1] != channels  # the case the seed's code could not run
    sdpa = av.create("eca_mha", channels, heads=4, attention_impl="sdpa")
    naive = av.create("eca_mha", channels, heads=4, attention_impl="naive")
    naive.load_state_dict(sdpa.state_dict())
    x = torch.randn(2, channels, *hw)
    torch.testing.assert_close(sdpa(x), naive(x), rtol=0, atol=1e-5)


@pytest.mark.parametrize(
    ("channels", "expected_k"),
    [(64, 3), (128, 5), (256, 5), (512, 5), (1024, 5), (2048, 7)],
)
def test_eca_adaptive_kernel_size_table(channels, expected_k):
    assert eca_kernel_size(channels) == expected_k
    assert av.create("eca", channels).kernel_size == expected_k


def _params(module):
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize(("channels", "reduction"), [(64, 16), (256, 16), (512, 8), (96, 4)])
def test_parameter_formulas(channels, reduction):
    c, r = channels, reduction
    se_with_bias = 2 * c * c // r + c // r + c
    assert _params(av.create("se", c, reduction=r)) == se_with_bias
    assert _params(av.create("se", c, reduction=r, bias=False)) == 2 * c * (c // r)
    assert _params(av.create("cbam", c, reduction=r)) == se_with_bias + 2 * 7 * 7 + 2
    assert (
        _params(av.create("cbam", c, reduction=r, spatial_kernel_size=3))
        == se_with_bias + 2 * 9 + 2
    )
    assert _params(av.create("eca", c)) == eca_kernel_size(c)
    assert _params(av.create("eca", c, kernel_size=9)) == 9
    # ECA, then QKV (3C^2 + 3C) and output (C^2 + C) projections
    assert _params(av.create("eca_mha", c)) == eca_kernel_size(c) + 4 * c * c + 4 * c
    assert _params(av.create("identity", c)) == 0


@pytest.mark.parametrize("e_lambda", [1e-4, 0.5])
def test_simam_equals_the_official_code(e_lambda):
    x = torch.randn(2, 16, 7, 9)
    ours = av.create("simam", 16, e_lambda=e_lambda)
    torch.testing.assert_close(ours(x), OfficialSimAM(e_lambda)(x), rtol=0, atol=1e-6)
    assert _params(ours) == 0

import pytest
import torch

from attention_variants import backbones
from attention_variants.eca import eca_kernel_size


def _params(module):
    return sum(p.numel() for p in module.parameters())


# torchvision's published parameter counts (torchvision.models, weights tables)
TORCHVISION_PARAMS = {
    18: 11_689_512,
    34: 21_797_672,
    50: 25_557_032,
    101: 44_549_160,
    152: 60_192_808,
}
STAGE_BLOCKS = {
    18: (2, 2, 2, 2),
    34: (3, 4, 6, 3),
    50: (3, 4, 6, 3),
    101: (3, 4, 23, 3),
    152: (3, 8, 36, 3),
}


def _stage_channels(depth):
    expansion = 1 if depth < 50 else 4
    return [64 * 2**i * expansion for i in range(4)]


def test_published_resnet50_counts():
    assert _params(backbones.resnet50()) == 25_557_032
    assert _params(backbones.resnet50("se")) == 28_088_024
    assert _params(backbones.resnet50("cbam")) == 28_089_624
    eca_net_50 = [{"kernel_size": k} for k in (3, 5, 5, 7)]
    assert _params(backbones.resnet50("eca", eca_net_50)) == 25_557_112
    assert _params(backbones.resnet50("eca")) == 25_557_118


@pytest.mark.parametrize("depth", [18, 34, 50, 101, 152])
def test_every_depth_matches_torchvision_and_the_block_formulas(depth):
    base = TORCHVISION_PARAMS[depth]
    assert _params(backbones.resnet(depth)) == base
    blocks = list(zip(_stage_channels(depth), STAGE_BLOCKS[depth], strict=True))
    se_r8_nobias = sum(n * 2 * c * (c // 8) for c, n in blocks)
    assert (
        _params(backbones.resnet(depth, "se", {"reduction": 8, "bias": False}))
        == base + se_r8_nobias
    )
    eca_adaptive = sum(n * eca_kernel_size(c) for c, n in blocks)
    assert _params(backbones.resnet(depth, "eca")) == base + eca_adaptive
    cbam_k3 = sum(n * (2 * c * c // 16 + c // 16 + c + 2 * 3 * 3 + 2) for c, n in blocks)
    assert _params(backbones.resnet(depth, "cbam", {"spatial_kernel_size": 3})) == base + cbam_k3


def test_attention_reads_the_last_batchnorm_and_feeds_the_residual_add():
    block = backbones.resnet50("eca").layer3[2].eval()
    assert block.attention.__class__.__name__ == "ECA" and block.downsample is None
    seen = {}
    block.bn3.register_forward_hook(lambda m, i, o: seen.update(bn3_out=o))
    # an attention that zeroes its input leaves only the skip path: relu(0 + x)
    block.attention = torch.nn.Identity()
    block.attention.register_forward_hook(lambda m, i, o: seen.update(attn_in=i[0]) or 0 * o)
    x = torch.randn(1, 1024, 8, 8)
    out = block(x)
    assert seen["attn_in"] is seen["bn3_out"]
    torch.testing.assert_close(out, torch.relu(x))


def test_resnet50_forward_at_224_on_cpu():
    model = backbones.resnet50("eca_mha", {"heads": 8}).eval()
    with torch.inference_mode():
        logits = model(torch.randn(1, 3, 224, 224))
    assert logits.shape == (1, 1000)
    assert torch.isfinite(logits).all()


def test_bad_backbone_arguments_fail_before_building():
    with pytest.raises(ValueError, match="depth=42"):
        backbones.resnet(42)
    with pytest.raises(ValueError, match="list of four"):
        backbones.resnet50("eca", [{}, {}])
    with pytest.raises(KeyError, match="nope"):
        backbones.resnet50("nope")
    with pytest.raises(ValueError, match="heads=3"):
        backbones.resnet18("eca_mha", {"heads": 3})

"""The fused Triton kernels' global-memory traffic, counted under the interpreter and pinned at
the floor of each pass: a pass over a feature map added to any kernel fails here, on a CPU."""

import pytest
import torch

import attention_variants as av
from attention_variants.fused import triton_kernels
from bench.measurement.kernel_traffic import OTHER, count_block, count_traffic
from bench.programs import count_run

FORMATS = {"contiguous": torch.contiguous_format, "channels_last": torch.channels_last}
# C not a multiple of the channel block, H*W not a multiple of the pixel block
SHAPES = [(2, 40, 9, 7), (3, 72, 12, 12)]


def _input(shape, fmt, dtype=torch.float32, grad=False):
    x = torch.randn(shape, dtype=dtype).contiguous(memory_format=FORMATS[fmt])
    return x.requires_grad_(grad)


def _launch(log, kernel):
    (launch,) = [launch for launch in log.launches if launch.kernel == kernel]
    return launch


def _eca_pool_bytes(shape, block_c, k, element_bytes):
    """One read of x plus the halo: each channel block pools its channels and k // 2 on each
    side that exist."""
    b, c, h, w = shape
    half = k // 2
    channels = sum(
        min(first + block_c + half, c) - max(first - half, 0) for first in range(0, c, block_c)
    )
    return b * channels * h * w * element_bytes


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("k", [3, 5])
def test_eca_forward_reads_x_twice_plus_its_halo_and_writes_y_once(shape, fmt, dtype, k):
    module = av.create("eca_fused", shape[1], kernel_size=k).to(dtype)
    x = _input(shape, fmt, dtype)
    with count_traffic() as log:
        module.triton_gate(x)
    assert log.kernels() == ["_eca_fused_kernel"]
    launch = _launch(log, "_eca_fused_kernel")
    x_bytes = x.numel() * x.element_size()
    pool = _eca_pool_bytes(shape, launch.constants["BLOCK_C"], k, x.element_size())
    assert launch.loaded["x_ptr"] == pool + x_bytes  # the pool's pass, then the scale's
    assert launch.stored["y_ptr"] == x_bytes
    assert pool <= x_bytes * (1 + 2 * (k // 2) / launch.constants["BLOCK_C"])
    b, c = shape[:2]
    assert launch.stored["pooled_ptr"] == launch.stored["gate_ptr"] == b * c * 4
    assert OTHER not in launch.loaded and OTHER not in launch.stored


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_se_forward_reads_x_twice_and_writes_y_once(shape, fmt, bias):
    module = av.create("se_fused", shape[1], reduction=4, bias=bias)
    x = _input(shape, fmt)
    with count_traffic() as log:
        module.triton_gate(x)
    assert log.kernels() == ["_pool_kernel", "_linear_kernel", "_linear_kernel", "_scale_kernel"]
    x_bytes, (b, c) = x.numel() * 4, shape[:2]
    assert _launch(log, "_pool_kernel").loaded == {"x_ptr": x_bytes}
    assert _launch(log, "_pool_kernel").stored == {"pooled_ptr": b * c * 4}
    scale = _launch(log, "_scale_kernel")
    assert scale.loaded["x_ptr"] == x_bytes and scale.stored == {"y_ptr": x_bytes}
    # the gate is reread by each program of a channel block: a (B, C) vector per pixel tile
    tiles = -(-shape[2] * shape[3] // scale.constants["BLOCK_HW"])
    assert scale.loaded["gate_ptr"] == b * c * 4 * tiles
    # the MLP reads its weights once per sample (from L2 on a GPU: they are 2*C*C/r floats)
    weights = sum(p.numel() * 4 for name, p in module.named_parameters() if "weight" in name)
    first, second = [launch for launch in log.launches if launch.kernel == "_linear_kernel"]
    assert first.loaded["w_ptr"] + second.loaded["w_ptr"] == b * weights


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("name", ["eca_fused", "se_fused"])
def test_backward_reads_dy_twice_and_x_once_and_writes_dx_once(name, fmt):
    shape = SHAPES[1]
    module = av.create(name, shape[1])
    x = _input(shape, fmt, grad=True)
    y = module.triton_gate(x)[0]
    with count_traffic() as log:
        y.backward(torch.randn_like(y))
    assert log.kernels() == ["_channel_dot_kernel", "_scale_kernel"]
    x_bytes = x.numel() * 4
    dot, grad = log.launches
    assert dot.loaded == {"dy_ptr": x_bytes, "x_ptr": x_bytes}  # sum over H*W of dy * x
    assert grad.loaded["x_ptr"] == x_bytes and grad.stored == {"y_ptr": x_bytes}  # dx


def test_an_extra_pass_over_x_is_counted():
    """What the pins above guard against: a kernel that pools x again shows up as a pass."""
    x = _input(SHAPES[0], "contiguous")
    module = av.create("se_fused", x.shape[1])
    with count_traffic() as once:
        module.triton_gate(x)
    with count_traffic() as twice:
        triton_kernels.pool(x)
        module.triton_gate(x)
    extra = sum(launch.loaded.get("x_ptr", 0) for launch in twice.launches)
    assert extra - sum(launch.loaded.get("x_ptr", 0) for launch in once.launches) == x.nbytes


@pytest.mark.parametrize("mode", ["infer", "train"])
@pytest.mark.parametrize("name", ["eca_fused", "se_fused"])
def test_the_first_sample_times_the_batch_equals_the_full_grid(name, mode):
    shape = (4, 48, 10, 6)
    x = _input(shape, "channels_last", grad=mode == "train")
    module = av.create(name, shape[1])
    logs = []
    for first_sample_only in (False, True):
        with count_traffic(first_sample_only=first_sample_only) as log:
            y = module.triton_gate(x)[0]
            if mode == "train":
                y.backward(torch.ones_like(y))
        logs.append(log)
    full, sampled = logs
    assert [launch.grid for launch in full.launches] == [launch.grid for launch in sampled.launches]
    for a, b in zip(full.launches, sampled.launches, strict=True):
        assert (dict(a.loaded), dict(a.stored)) == (dict(b.loaded), dict(b.stored)), a.kernel
    counted = count_block(name, shape, "channels_last", "float32", mode)
    assert counted["loaded_bytes"] + counted["stored_bytes"] == full.total_bytes


def test_bench_fused_puts_the_counted_bytes_beside_the_counters(tmp_path):
    from bench import cli
    from bench.sweep.rundir import RunDirectory

    out = tmp_path / "run"
    assert cli.main(["fused", "--shapes", "2x32x6x6", "--rounds", "1", "--budget-s", "0.01",
                     "--out", str(out), "--quiet"]) == 0  # fmt: skip
    traffic = RunDirectory(out).kernel_traffic()
    rows = RunDirectory(out).results().set_index("case_id")
    assert len(traffic) == 4  # the fused blocks, contiguous and channels_last
    assert set(rows.loc[traffic["case_id"], "variant_label"]) == {"eca_fused", "se_fused"}
    x_bytes = 2 * 32 * 36 * 4
    assert (traffic["feature_map_bytes"] == x_bytes).all()
    assert (traffic["loaded_bytes"] >= 2 * x_bytes).all()  # no kernel pair reads x less
    assert (traffic["stored_bytes"] >= x_bytes).all()
    assert count_run(out, quiet=True) == 4  # again: from the cache, the same counts
    assert RunDirectory(out).kernel_traffic().equals(traffic)
    table = next((out / "tables").glob("fused_*.md")).read_text()
    assert "fused bytes: kernels counted" in table and "fused bytes: counter" in table

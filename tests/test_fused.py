import subprocess
import sys
from types import SimpleNamespace

import pandas as pd
import pytest
import torch

import attention_variants as av
import attention_variants.fused as fused_package
from attention_variants.backbones import resnet18
from attention_variants.fused import ops
from attention_variants.fused.cpu import extension
from bench.measurement import network_benchmark
from bench.measurement.counting import count

# awkward on purpose: H*W not a multiple of any block, C not a multiple of the channel block,
# C smaller than the halo, k = 1, 3, 5, 7, batch 1
ECA_CASES = [((1, 3, 4, 4), 5), ((2, 40, 7, 5), 3), ((1, 17, 3, 3), 1), ((2, 64, 9, 9), 7),
             ((3, 20, 11, 13), 5), ((1, 2, 1, 1), 3)]  # fmt: skip
SE_CASES = [((1, 16, 4, 4), 4, True), ((2, 40, 7, 5), 8, False), ((3, 20, 11, 13), 4, True),
            ((1, 64, 1, 1), 16, True)]  # fmt: skip
LAYOUTS = [torch.contiguous_format, torch.channels_last]


@pytest.fixture(params=["cpu_extension", "triton_interpreter"])
def kernels(request, monkeypatch):
    """Which kernels back the fused ops on CPU tensors: the C++ extension or Triton's interpreter."""
    if request.param == "triton_interpreter":
        from attention_variants.fused import triton_kernels

        assert triton_kernels.INTERPRETED
        monkeypatch.setattr(ops, "backend", lambda device: triton_kernels)
        # the blocks on CPU tensors go through the Python ops (as on CUDA), not the C++ blocks
        python_ops = SimpleNamespace(eca_gate=ops.eca_gate, se_gate=ops.se_gate)
        monkeypatch.setattr(fused_package, "extension", lambda: python_ops)
    return request.param


def _compare(eager, fused, shape, memory_format, dtype=torch.float32, atol=1e-5, grad_atol=1e-4):
    fused.load_state_dict(eager.state_dict())  # the same state_dict drives both
    x = torch.randn(shape, dtype=dtype).contiguous(memory_format=memory_format)
    upstream = torch.randn(shape, dtype=dtype)
    x_eager, x_fused = x.clone().requires_grad_(), x.clone().requires_grad_()
    y_eager, y_fused = eager(x_eager), fused(x_fused)
    torch.testing.assert_close(y_fused, y_eager, rtol=0, atol=atol)
    (y_eager * upstream).sum().backward()
    (y_fused * upstream).sum().backward()
    torch.testing.assert_close(x_fused.grad, x_eager.grad, rtol=0, atol=grad_atol)
    for (name, p_eager), p_fused in zip(eager.named_parameters(), fused.parameters(), strict=True):
        torch.testing.assert_close(p_fused.grad, p_eager.grad, rtol=1e-4, atol=grad_atol, msg=name)


@pytest.mark.parametrize("memory_format", LAYOUTS, ids=["contiguous", "channels_last"])
@pytest.mark.parametrize(("shape", "k"), ECA_CASES, ids=lambda v: str(v))
def test_eca_fused_equals_eager(kernels, shape, k, memory_format):
    eager = av.create("eca", shape[1], kernel_size=k)
    with torch.no_grad():
        eager.conv.weight.normal_()  # a sharper gate than the default init tests more
    _compare(eager, av.create("eca_fused", shape[1], kernel_size=k), shape, memory_format)


@pytest.mark.parametrize("memory_format", LAYOUTS, ids=["contiguous", "channels_last"])
@pytest.mark.parametrize(("shape", "reduction", "bias"), SE_CASES, ids=lambda v: str(v))
def test_se_fused_equals_eager(kernels, shape, reduction, bias, memory_format):
    c = shape[1]
    eager = av.create("se", c, reduction=reduction, bias=bias)
    fused = av.create("se_fused", c, reduction=reduction, bias=bias)
    _compare(eager, fused, shape, memory_format)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("name", ["eca", "se"])
def test_half_precision_accumulates_in_float(kernels, name, dtype):
    eager = av.create(name, 32)
    fused = av.create(f"{name}_fused", 32)
    fused.load_state_dict(eager.state_dict())
    x = torch.randn(2, 32, 9, 7)
    reference = eager(x)  # float32 all the way
    got = fused.to(dtype)(x.to(dtype))
    assert got.dtype == dtype
    torch.testing.assert_close(got.float(), reference, rtol=2e-2, atol=2e-2)


def test_custom_ops_pass_opcheck():
    x = torch.randn(2, 24, 5, 3, requires_grad=True)
    w = torch.randn(1, 1, 5, requires_grad=True)
    se = av.create("se_fused", 24, reduction=4)
    mlp = se.mlp
    checks = [
        (ops.eca_gate, (x, w)),
        (ops.eca_gate, (x.detach().contiguous(memory_format=torch.channels_last), w)),
        (ops.se_gate, (x, mlp.fc1.weight, mlp.fc1.bias, mlp.fc2.weight, mlp.fc2.bias)),
        (ops.se_gate, (x, mlp.fc1.weight, None, mlp.fc2.weight, None)),
        (ops.channel_dot, (torch.randn(2, 24, 5, 3), x.detach())),
        (ops.gate_input_grad, (torch.randn(2, 24, 5, 3), torch.rand(2, 24), torch.randn(2, 24))),
    ]
    cpu = extension()
    checks += [
        (cpu.eca_gate.default, (x, w)),
        (cpu.eca_gate.default, (x.detach().contiguous(memory_format=torch.channels_last), w)),
        (cpu.se_gate.default, (x, mlp.fc1.weight, mlp.fc1.bias, mlp.fc2.weight, mlp.fc2.bias)),
        (cpu.se_gate.default, (x, mlp.fc1.weight, None, mlp.fc2.weight, None)),
    ]
    for op, args in checks:
        results = torch.library.opcheck(op, args)
        assert set(results.values()) == {"SUCCESS"}, (op, results)


@pytest.mark.parametrize("name", ["eca", "se"])
def test_the_cpu_blocks_and_their_autograd_are_registered_in_cpp(name):
    extension()
    registrations = torch._C._dispatch_dump(f"attention_variants_cpu::{name}_gate")
    for key in ("CPU", "Autograd"):
        (line,) = [r for r in registrations.splitlines() if r.split(":")[0].split("[")[0] == key]
        assert "channel_gate_cpu.cpp" in line, line  # not a Python kernel


@pytest.mark.parametrize("mode", ["infer", "train"])
@pytest.mark.parametrize("name", ["eca_fused", "se_fused"])
def test_no_python_runs_between_the_call_and_the_kernel(name, mode):
    module = av.create(name, 32)
    x = torch.randn(2, 32, 8, 8, requires_grad=mode == "train")
    module(x)  # built and loaded
    called = []

    def record(frame, event, arg):
        if event == "call":
            called.append(f"{frame.f_code.co_filename}:{frame.f_code.co_name}")

    sys.setprofile(record)
    try:
        if mode == "infer":
            with torch.inference_mode():
                module(x)
        else:
            module(x).sum().backward()
    finally:
        sys.setprofile(None)
    ours = [c for c in called if "attention_variants" in c or "torch/_library" in c]
    assert ours and all(c.endswith((":forward", ":extension")) for c in ours), ours
    assert not [c for c in called if "torch/autograd/function.py" in c]


@pytest.mark.parametrize("name", ["eca_fused", "se_fused"])
def test_torch_compile_traces_the_fused_ops_whole(name):
    module = av.create(name, 16)
    compiled = torch.compile(module, backend="aot_eager", fullgraph=True)
    x = torch.randn(2, 16, 6, 5, requires_grad=True)
    x_eager = x.detach().clone().requires_grad_()
    compiled(x).sum().backward()
    module(x_eager).sum().backward()
    torch.testing.assert_close(x.grad, x_eager.grad)


def test_counting_scores_the_fused_ops_like_their_eager_twins():
    x = torch.randn(2, 64, 8, 8)
    for name in ("eca", "se"):
        eager = av.create(name, 64).eval()
        fused = av.create(f"{name}_fused", 64).eval()
        eager_counts, fused_counts = count(eager, x), count(fused, x)
        assert f"attention_variants_cpu.{name}_gate" in fused_counts.by_op  # the C++ block
        assert not fused_counts.unscored_ops
        assert (fused_counts.flops, fused_counts.macs) == (eager_counts.flops, eager_counts.macs)
        # one read of x and one write of y (plus the tiny gate vectors): the fused ideal
        assert fused_counts.bytes_moved < 1.1 * 2 * x.numel() * 4 < eager_counts.bytes_moved
    for name in ("eca", "se"):
        forward = count(av.create(f"{name}_fused", 64), x)
        backward = count(av.create(f"{name}_fused", 64), x, backward=True)
        assert f"attention_variants_cpu.{name}_backward" in backward.by_op  # one C++ call
        assert not backward.unscored_ops
        # the backward reads dy and x, then dy again, and writes dx: about three passes more
        assert backward.bytes_moved > 2.5 * forward.bytes_moved


def test_fused_variants_drop_into_backbones():
    def params(model):
        return sum(p.numel() for p in model.parameters())

    assert params(resnet18("eca_fused")) == params(resnet18("eca"))
    assert params(resnet18("se_fused")) == params(resnet18("se"))


def test_without_triton_import_works_cpu_runs_and_cuda_explains():
    code = (
        "import sys; sys.modules['triton'] = None\n"  # makes `import triton` fail
        "import importlib.util, torch\n"
        "importlib.util.find_spec = (lambda f: (lambda name, *a: None if name == 'triton' else f(name, *a)))(importlib.util.find_spec)\n"
        "import attention_variants as av\n"
        "x = torch.randn(2, 8, 4, 4)\n"
        "eager, fused = av.create('eca', 8), av.create('eca_fused', 8)\n"
        "fused.load_state_dict(eager.state_dict())\n"
        "assert torch.allclose(fused(x), eager(x), atol=1e-6)\n"
        "from attention_variants.fused import ops\n"
        "try:\n"
        "    ops.backend(torch.device('cuda'))\n"
        "except RuntimeError as error:\n"
        "    print(error)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    assert "need triton on CUDA devices: pip install triton" in result.stdout


@pytest.mark.parametrize("name", ["eca", "se"])
def test_strided_inputs_are_handled(name):
    eager, fused = av.create(name, 16), av.create(f"{name}_fused", 16)
    fused.load_state_dict(eager.state_dict())
    base = torch.randn(2, 16, 9, 14)
    x_eager = base[:, :, :, ::2].clone().requires_grad_()  # neither contiguous nor channels_last
    x_fused = base.clone().requires_grad_()
    view = x_fused[:, :, :, ::2]
    torch.testing.assert_close(fused(view), eager(x_eager), rtol=0, atol=1e-5)
    fused(view).sum().backward()
    eager(x_eager).sum().backward()
    torch.testing.assert_close(x_fused.grad[:, :, :, ::2], x_eager.grad, rtol=0, atol=1e-4)


def test_network_comparison_times_the_networks_in_turns_as_ratios_to_plain(tmp_path, capsys):
    code = network_benchmark.main([
        "--depth", "18", "--resolution", "64", "--batch-sizes", "2,3", "--modes", "infer,train",
        "--blocks", "eca", "--compile", "none", "--rounds", "2", "--budget-s", "0.02",
        "--out", str(tmp_path), "--profile",
    ])  # fmt: skip
    assert code == 0
    rows = pd.read_csv(tmp_path / "network.csv")
    assert len(rows) == 2 * 2 * 3  # modes x batches x (plain, eca, eca_fused)
    plain = rows[rows["kind"] == "plain"]
    assert (plain["ratio_to_plain"] == 1.0).all()
    assert set(rows["kind"]) == {"plain", "eager", "fused"} and (rows["rounds"] == 2).all()
    assert (rows["ratio_to_plain"] > 0).all() and rows["ratio_ci_low"].notna().all()
    text = (tmp_path / "network.md").read_text()
    assert text.count("| infer ") == 2 and text.count("| train ") == 2  # a line per batch
    assert "eca_fused" in text and "attention_variants_cpu::eca_gate" in text  # the profile


def test_fixed_cost_lists_every_way_to_call_a_block(capsys):
    from bench.measurement import fused_benchmark

    fused_benchmark.fixed_cost(repeats=1, number=10)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 8 and lines[1].startswith("x.clone()")
    assert all(float(line.split()[-2]) > 0 for line in lines[1:])


def test_each_source_of_the_cpu_kernels_has_a_build_of_its_own(tmp_path, monkeypatch):
    from attention_variants.fused import cpu

    first = cpu.build_name()
    changed = tmp_path / "channel_gate_cpu.cpp"
    changed.write_text(cpu.SOURCE.read_text() + "\n// another revision\n")
    monkeypatch.setattr(cpu, "SOURCE", changed)
    assert cpu.build_name() != first and cpu.build_name().isidentifier()

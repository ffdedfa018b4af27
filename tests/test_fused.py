import math
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
from bench import cli
from bench.measurement.counting import count
from bench.measurement.fixed_cost import fixed_cost
from bench.report import comparisons
from bench.sweep.rundir import read_results

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


def test_bench_network_writes_a_run_directory_with_ratios_to_the_plain_network(tmp_path, capsys):
    out = tmp_path / "network"
    code = cli.main([
        "network", "--depth", "18", "--resolution", "32", "--batch-sizes", "2,3",
        "--modes", "infer,train", "--blocks", "eca", "--rounds", "2", "--budget-s", "0.02",
        "--out", str(out), "--quiet",
    ])  # fmt: skip
    assert code == 0
    results = read_results(out)  # an ordinary run directory: every case a row
    assert len(results) == 2 * 2 * 3 and (results["status"] == "ok").all()  # modes x batches x 3
    assert set(results["variant_label"]) == {"none", "eca", "eca_fused"}
    tables = sorted((out / "tables").glob("network_ratio_*.csv"))
    assert len(tables) == 1
    raw = pd.read_csv(tables[0])
    plain = raw[raw["network"] == "plain"]
    assert len(plain) == 4 and (plain["ratio_to_plain"] == 1.0).all()
    assert (raw["rounds"] == 2).all() and (raw["ratio_to_plain"] > 0).all()
    others = raw[raw["network"] != "plain"]
    assert others["ratio_ci_low"].notna().all()
    assert (others["ratio_ci_low"] <= others["ratio_to_plain"]).all()
    assert (others["ratio_to_plain"] <= others["ratio_ci_high"]).all()
    printed = capsys.readouterr().out
    assert printed.count("| infer ") == 2 and printed.count("| train ") == 2  # a line per batch
    assert "eca_fused" in printed


def test_network_ratios_are_the_geometric_mean_of_per_round_ratios():
    # two networks, three rounds each: the ratio is exp(mean(log(t / plain))) over the rounds
    rows = pd.DataFrame({
        "case_id": ["p", "e"], "mode": "infer", "batch": 2, "variant_label": ["none", "eca"],
        "compile": False, "launch": "eager", "quality_flags": [(), ("unstable",)],
    })  # fmt: skip
    plain, eca = [1.0, 2.0, 4.0], [1.5, 2.0, 6.0]
    samples = pd.DataFrame({
        "case_id": ["p"] * 3 + ["e"] * 3, "round": [0, 1, 2] * 2, "seconds_per_call": plain + eca,
    })  # fmt: skip
    display, raw = comparisons.network_ratio_table(rows, samples)
    expected = math.exp(sum(math.log(e / p) for e, p in zip(eca, plain, strict=True)) / 3)
    got = raw.set_index("network").loc["eca"]
    assert got["ratio_to_plain"] == pytest.approx(expected)
    assert got["ratio_ci_low"] < expected < got["ratio_ci_high"] and got["quality"] == "unstable"
    assert display.loc[0, "plain"] == "2000.0 ms"  # the plain network's median
    assert display.loc[0, "eca"].startswith(f"{expected:.3f} [") and display.loc[0, "eca"].endswith(
        "†"
    )


def test_network_table_lines_run_by_mode_and_batch_with_plain_first_and_compiled_last():
    # cases in the order a sweep may finish them: train first, batch 4 first, compiled first
    cases = [
        (mode, batch, label, compiled)
        for mode in ("train", "infer") for batch in (4, 1)
        for compiled in (True, False) for label in ("eca", "none")
    ]  # fmt: skip
    rows = pd.DataFrame({
        "case_id": [f"c{i}" for i in range(len(cases))], "mode": [c[0] for c in cases],
        "batch": [c[1] for c in cases], "variant_label": [c[2] for c in cases],
        "compile": [c[3] for c in cases], "launch": "eager", "quality_flags": [()] * len(cases),
    })  # fmt: skip
    samples = pd.DataFrame({
        "case_id": list(rows["case_id"]) * 2, "round": [0] * len(cases) + [1] * len(cases),
        "seconds_per_call": [1.0] * len(cases) + [1.1] * len(cases),
    })  # fmt: skip
    display, _ = comparisons.network_ratio_table(rows, samples)
    assert list(zip(display["mode"], display["batch"], strict=True)) == [
        ("infer", 1), ("infer", 4), ("train", 1), ("train", 4),
    ]  # fmt: skip
    assert list(display.columns) == [
        "mode", "batch", "plain", "eca", "plain compiled", "eca compiled",
    ]  # fmt: skip


def test_bench_fused_sets_each_block_beside_its_twin_and_a_copy(tmp_path, capsys):
    out = tmp_path / "fused"
    code = cli.main([
        "fused", "--shapes", "2x32x8x8,1x16x12x10", "--rounds", "2", "--budget-s", "0.005",
        "--out", str(out), "--quiet",
    ])  # fmt: skip
    assert code == 0
    results = read_results(out)
    shapes = {(r.batch, r.channels, r.height, r.width) for r in results.itertuples()}
    assert shapes == {(2, 32, 8, 8), (1, 16, 12, 10)}
    assert len(results) == 2 * 2 * 4  # shapes x layouts x the four blocks
    raw = pd.read_csv(next((out / "tables").glob("fused_*.csv")))
    # each shape and layout once per block, fused / eager the two ratios' quotient
    assert len(raw) == len(results) // 2 and set(raw["block"]) == {"eca", "se"}
    assert raw["fused_over_eager"].to_numpy() == pytest.approx(
        (raw["fused_over_copy"] / raw["eager_over_copy"]).to_numpy()
    )
    assert (raw["copy_ms"] > 0).all()
    assert "fused / eager" in capsys.readouterr().out


def test_over_copy_is_the_median_of_paired_ratios():
    samples = pd.DataFrame({
        "case_id": ["a"] * 3 + ["b"] * 2, "seconds_per_call": [2.0, 3.0, 10.0, 1.0, 1.0],
        "reference_seconds_per_call": [1.0, 1.0, 1.0, 2.0, None],
    })  # fmt: skip
    ratios = comparisons.over_copy(samples)
    assert ratios["a"] == 3.0 and ratios["b"] == 0.5  # a sample without its copy is left out


def test_fixed_cost_lists_every_way_to_call_a_block_and_profiles_the_fused_ones(capsys, tmp_path):
    lines = fixed_cost(repeats=1, number=10, out=tmp_path)
    assert len(lines) == 10 and lines[1].startswith("x.clone()")
    assert all(float(line.split()[-2]) > 0 for line in lines[1:])
    assert capsys.readouterr().out.splitlines() == lines
    assert (tmp_path / "fixed_cost.txt").read_text().splitlines() == lines
    for name in ("eca_fused", "se_fused"):
        table = (tmp_path / f"profile_{name}.txt").read_text()
        assert "fused_call" in table and f"attention_variants_cpu::{name[:-6]}_gate" in table
        assert (tmp_path / f"profile_{name}.json").stat().st_size > 0


def test_each_source_of_the_cpu_kernels_has_a_build_of_its_own(tmp_path, monkeypatch):
    from attention_variants.fused import cpu

    first = cpu.build_name()
    changed = tmp_path / "channel_gate_cpu.cpp"
    changed.write_text(cpu.SOURCE.read_text() + "\n// another revision\n")
    monkeypatch.setattr(cpu, "SOURCE", changed)
    assert cpu.build_name() != first and cpu.build_name().isidentifier()

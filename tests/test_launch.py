"""The launch axis (timing.launch: eager | graph) and `bench gpu-report`, as far as a CPU can
check them: the spec refuses graphs on CPUs, the rotation keeps the L2 cold by its own rule, the
report sets the two launches side by side, and the GPU script's every step checks out."""

import pandas as pd
import pytest

from bench import cli, gpu_report
from bench.measurement.timing import L2_COLD_FACTOR, measure, plan_rotation
from bench.sweep.cases import expand
from bench.sweep.spec import SpecError, assume_devices, build_spec

H100_L2 = 50 * 2**20


def test_graph_launch_is_refused_on_a_cpu_with_the_way_out():
    with pytest.raises(SpecError, match=r"launch=graph: devices=\['cpu'\].*allowed there: eager"):
        build_spec(None, overrides={"variants": "eca", "devices": "cpu",
                                    "timing": {"launch": "graph"}})  # fmt: skip
    with pytest.raises(SpecError, match=r"timing.launch\[0\]: Input should be 'eager' or 'graph'"):
        build_spec(None, overrides={"variants": "eca", "timing": {"launch": "replay"}})


def test_both_launches_are_rows_and_eager_ids_are_those_of_before():
    overrides = {"variants": "eca", "channels": "16", "resolutions": "8", "modes": "infer",
                 "devices": "cuda", "references": False}  # fmt: skip
    with assume_devices({"cuda"}):
        both, _ = build_spec(None, overrides={**overrides, "timing": {"launch": "eager,graph"}})
        eager, _ = build_spec(None, overrides=overrides)
    cases = expand(both)
    assert [c.launch for c in cases] == ["eager", "graph"]
    assert cases[0].case_id == expand(eager)[0].case_id != cases[1].case_id
    assert cases[1].label.endswith(" graph") and not cases[0].label.endswith("graph")


@pytest.mark.parametrize(
    ("call_bytes", "copies", "cold"),
    [(3 * 2**20, 84, True), (400 * 2**20, 1, True), (2**10, 512, False)],
)
def test_the_rotation_leaves_five_l2s_of_traffic_between_two_reads_of_a_copy(
    call_bytes, copies, cold
):
    rotation = plan_rotation(call_bytes, H100_L2)
    assert rotation.copies == copies and rotation.cold is cold
    assert (rotation.rotated_bytes >= L2_COLD_FACTOR * H100_L2) is cold
    if cold and copies > 1:  # the fewest copies that do it
        assert (copies - 1) * call_bytes < L2_COLD_FACTOR * H100_L2


def test_replaying_calls_from_a_graph_is_refused_on_a_cpu():
    with pytest.raises(ValueError, match=r"replayed from a CUDA graph.*allowed: cuda"):
        measure([lambda: None, lambda: None], device="cpu")


def _as_graph_run(run_dir):
    """A CPU run's rows and samples again as if replayed from a graph at half the time."""
    results = pd.read_csv(run_dir / "results.csv")
    graph = results.assign(
        case_id=results["case_id"] + "g", launch="graph",
        latency_median_s=results["latency_median_s"] / 2, graph_copies=3,
        graph_rotated_bytes=6 * H100_L2, l2_bytes=H100_L2,
    )  # fmt: skip
    pd.concat([results.assign(launch="eager"), graph]).to_csv(run_dir / "results.csv", index=False)
    samples = pd.read_csv(run_dir / "samples.csv")
    halved = samples.assign(case_id=samples["case_id"] + "g")
    halved["seconds_per_call"] /= 2
    pd.concat([samples, halved]).to_csv(run_dir / "samples.csv", index=False)


def test_the_report_sets_each_launch_beside_the_other(tmp_path):
    from bench.report.builder import report

    run_dir = tmp_path / "fused"
    assert cli.main(["fused", "--shapes", "2x32x8x8", "--rounds", "1", "--budget-s", "0.01",
                     "--no-kernel-traffic", "--out", str(run_dir), "--quiet"]) == 0  # fmt: skip
    _as_graph_run(run_dir)
    report(run_dir)
    launch = pd.read_csv(run_dir / "tables" / "launch_cpu_float32.csv")
    assert len(launch) == 2 * 4  # layouts x blocks, each launched both ways
    assert launch["launch_s"].to_numpy() == pytest.approx(launch["graph_s"].to_numpy())
    fused = pd.read_csv(run_dir / "tables" / "fused_cpu_float32.csv")
    assert sorted(fused["launch"]) == ["eager"] * 4 + ["graph"] * 4
    (tmp_path / "fixed-cost").mkdir()
    (tmp_path / "fixed-cost" / "fixed_cost.txt").write_text(
        "eca_fused module  11.62 us\neca_fused module, profiled CPU time  28.11 us\n"
    )
    lines = gpu_report.goals(tmp_path)
    assert lines[0] == "- eca_fused: CPU per call 11.62 us (goal <= 25)"  # the host-timed one
    assert [line for line in lines if "graph-replayed:" in line] and len(lines) == 5


def test_the_gpu_report_dry_run_checks_every_step(tmp_path, capsys):
    assert cli.main(["gpu-report", "--dry-run", "--out", str(tmp_path / "h100")]) == 0
    out = capsys.readouterr().out
    for step in gpu_report.steps(tmp_path / "h100", "cuda"):
        assert f"python -m bench {' '.join(step.argv)}" in out
    assert "2. fused (192 cases)" in out and "every step checks out" in out
    assert not (tmp_path / "h100").exists()  # a dry run writes nothing


def test_the_gpu_report_dry_run_names_a_broken_step(tmp_path, monkeypatch, capsys):
    broken = gpu_report.Step("fused", ["fused", "--device", "cuda", "--shapes", "8x0x1x1"], "")
    monkeypatch.setattr(gpu_report, "steps", lambda out, device: [broken])
    assert cli.main(["gpu-report", "--dry-run", "--out", str(tmp_path)]) == 2
    assert "problem: fused: shapes[0]" in capsys.readouterr().err


def test_the_gpu_report_needs_a_gpu_to_run(tmp_path, capsys):
    assert cli.main(["gpu-report", "--out", str(tmp_path)]) == 2
    assert "needs a CUDA device (--dry-run checks it without one)" in capsys.readouterr().err

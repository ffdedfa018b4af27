"""What a run says about how far its numbers can be trusted, end to end: quality flags in the
rows, warnings in run.json, comparability facts in env.json, and `compare` refusing a verdict
on a run measured while the machine was busy."""

import json
import os
import subprocess
import sys

import pandas as pd
import pytest
import torch

import attention_variants as av
from bench.gate.compare import compare
from bench.measurement.counting import count
from bench.measurement.environment import capture
from bench.sweep.cases import expand
from bench.sweep.rundir import read_results, read_samples
from bench.sweep.runner import run_sweep
from bench.sweep.spec import build_spec

from .test_quality import _busy_processes, linux_only


def sweep(tmp_path, name, **overrides):
    base = {
        "variants": "eca,se",
        "channels": "32",
        "resolutions": "8",
        "batch_sizes": "2",
        "modes": "infer",
        "timing": {"warmup_s": 0.01, "min_time_s": 0.15, "max_time_s": 0.3, "rounds": 2},
    }
    spec, _ = build_spec(None, overrides={**base, **overrides})
    summary = run_sweep(spec, tmp_path / name, quiet=True)
    return summary, read_results(tmp_path / name)


@linux_only
def test_busy_machine_is_flagged_and_compare_is_inconclusive(tmp_path):
    quiet_summary, quiet = sweep(tmp_path, "quiet")
    # fast cases with a tight interval: nothing to flag on a quiet machine, least of all contention
    assert not quiet.quality.str.contains("contended").any(), quiet[["quality", "other_cpu_share"]]
    warnings = json.loads((tmp_path / "quiet" / "run.json").read_text())["warnings"]
    assert "contended" not in {w["flag"] for w in warnings}
    assert "contended" not in quiet_summary.line()

    neighbours = _busy_processes(len(os.sched_getaffinity(0)), seconds=60)
    try:
        busy_summary, busy = sweep(tmp_path, "busy")
    finally:
        for process in neighbours:
            process.kill()
            process.wait()
    contended = busy.quality.str.contains("contended")
    assert contended.mean() >= 0.5, busy[["variant_label", "quality", "other_cpu_share"]]
    warnings = json.loads((tmp_path / "busy" / "run.json").read_text())["warnings"]
    assert {"flag": "contended", "rows": int(contended.sum())} in warnings
    assert "contended" in busy_summary.line() and "quality" in busy_summary.line()

    result = compare(tmp_path / "quiet", tmp_path / "busy")
    assert result.exit_code == 3
    assert all(c.verdict == "inconclusive" for c in result.cases if "NEW flagged" in c.reason)


def test_rows_keep_rounds_block_sizes_and_empty_intervals_below_six_samples(tmp_path):
    timing = {"warmup_s": 0.001, "min_time_s": 0, "max_time_s": 0.001, "min_samples": 1}
    _, rows = sweep(tmp_path, "few", timing={**timing, "rounds": 1})
    few = rows[rows.n_samples < 6]
    assert len(few) > 0  # a 1 ms cap leaves some cases with a handful of samples
    assert few.latency_ci_low_s.isna().all() and few.latency_ci_high_s.isna().all()
    assert few.quality.str.contains("few_samples").all()

    _, rows = sweep(tmp_path, "rounds")
    samples = read_samples(tmp_path / "rounds")
    assert set(samples["round"]) == {0, 1} and (rows.rounds == 2).all()
    per_round = samples.groupby(["case_id", "round"])["block_size"].nunique()
    assert (per_round == 1).all()  # one calibration per round, recorded on its own samples


def test_a_compiled_case_that_falls_back_to_eager_is_an_error_row(tmp_path):
    @av.register("test_uncompilable", paper="-")
    class Uncompilable(torch.nn.Module):
        def __init__(self, channels):
            super().__init__()

        @torch._dynamo.disable
        def forward(self, x):
            return x * 2

    try:
        _, rows = sweep(
            tmp_path, "compiled", variants="test_uncompilable", compile="on", references=False
        )
    finally:
        av.unregister("test_uncompilable")
    (row,) = rows.itertuples()
    assert row.status == "error" and "ran eagerly" in row.error
    assert pd.isna(row.latency_median_s)


def test_env_json_records_what_makes_runs_comparable():
    env = capture()
    assert env["load_average_start"] is None or len(env["load_average_start"]) == 3
    assert isinstance(env["threading_environment"], dict)
    assert set(env["cpu_frequency"]) == {"governor", "boost"}
    assert env["matmul_precision"]["float32_matmul_precision"] == (
        torch.get_float32_matmul_precision()
    )
    assert env["git_untracked_files"] in (True, False, None)


def test_env_json_gets_the_load_average_at_the_end(tmp_path):
    sweep(tmp_path, "run", variants="eca", references=False)
    env = json.loads((tmp_path / "run" / "env.json").read_text())
    assert "load_average_start" in env and "load_average_end" in env


@pytest.mark.parametrize("name", ["eca", "se"])
@pytest.mark.parametrize("shape", [(2, 64, 8, 8), (3, 100, 5, 7)])
def test_fused_gates_count_the_flops_and_macs_of_their_eager_twins(name, shape):
    eager = av.create(name, shape[1])
    fused = av.create(f"{name}_fused", shape[1])
    x = torch.randn(shape)
    for backward in (False, True):
        e, f = count(eager, x, backward=backward), count(fused, x, backward=backward)
        assert (f.flops, f.macs) == (e.flops, e.macs)
        assert f.bytes_moved < e.bytes_moved  # fusion moves fewer bytes: that is its point
    # a second count (gradients now populated) is the same: a count never accumulates
    assert count(fused, x, backward=True).flops == f.flops
    if name == "eca" and shape == (2, 64, 8, 8):
        assert f.flops == 60_672  # a training step of eca at 2x64x8x8, eager and fused alike


def test_counts_are_cached_per_shape_and_device():
    spec, _ = build_spec(None, overrides={"variants": "eca", "channels": "8", "resolutions": "4"})
    case = next(c for c in expand(spec) if c.role == "variant")
    assert case.device in case.shape_key


def test_mps_is_not_offered_because_it_cannot_be_timed():
    from bench.sweep.spec import SpecError

    assert "mps" not in av.info("eca").devices
    with pytest.raises(SpecError, match="timing on MPS is not supported"):
        build_spec(None, overrides={"devices": "mps"})


def test_pytest_benchmark_suite_uses_the_one_measurement_path(tmp_path):
    out = tmp_path / "perf.json"
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "tests/perf", "-k", "eca and 64x28 and infer",
         "--benchmark-enable", "--benchmark-only", f"--benchmark-json={out}",
         "--benchmark-disable-gc", "-p", "no:cacheprovider"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    benchmarks = json.loads(out.read_text())["benchmarks"]
    assert benchmarks
    for bench in benchmarks:
        info = bench["extra_info"]
        assert len(info["samples_s"]) == len(info["reference_samples_s"]) == len(info["rounds"])
        assert bench["stats"]["data"] == info["samples_s"]  # pytest-benchmark shows our samples
        assert info["quality"]
    assert compare(out, out).cases  # and the gate reads it like a run directory

"""The simulated instrument: valgrind's counts of a case's call, and the gate on them.

The real tests run small sweeps under valgrind (`.ci/run` installs it): each takes about a
minute, most of it the interpreter and torch starting under valgrind."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import yaml

from bench.gate.compare import compare
from bench.gate.counted import DEFAULT_THRESHOLD
from bench.gate.sides import CompareInputError
from bench.measurement.simulated import (
    CPU_CAPABILITY,
    SimulatedCounts,
    parse_dump,
    relative_spread,
    valgrind_command,
)
from bench.sweep.rundir import COLUMNS, read_results
from bench.sweep.spec import SpecError, build_spec

from .user_block import block_source

DUMP = """version: 1
creator: callgrind-3.19.0
desc: Trigger: Client Request: region
events: Ir Dr Dw I1mr D1mr D1mw ILmr DLmr DLmw
summary: 0
totals: 1000 300 200 7 11 13 2 3 5
"""


def test_a_dump_is_read_and_cycles_follow_the_stated_formula():
    counts = parse_dump(DUMP)
    assert counts == SimulatedCounts(instructions=1000, l1_misses=7 + 11 + 13, ll_misses=10)
    # instructions + 10 x first-level misses + 100 x last-level misses
    assert counts.estimated_cycles == 1000 + 10 * 31 + 100 * 10
    assert counts.ll_bytes == 10 * 64


def test_spread_is_range_over_median():
    assert relative_spread([100, 102, 101]) == pytest.approx(2 / 101)
    assert relative_spread([100, 100, 100, 100, 150]) == pytest.approx(0.5)  # a rare call counts
    assert relative_spread([5, 5, 5]) == 0.0


def test_the_valgrind_command_counts_nothing_until_a_region_and_pins_the_caches(tmp_path):
    command = valgrind_command(["-m", "x"], tmp_path)
    assert command[:5] == ["valgrind", "--tool=callgrind", "--instr-atstart=no",
                           "--cache-sim=yes", "--I1=32768,8,64"]  # fmt: skip
    assert "--LL=33554432,16,64" in command
    assert command[-3:] == [sys.executable, "-m", "x"]


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        ({"compile": [True]}, "compile=true"),
        ({"threads": 2}, "threads=2"),
        ({"executor": {"kind": "local", "shards": 2}}, "executor"),
    ],
)
def test_a_simulated_sweep_refuses_what_valgrind_cannot_count(overrides, named):
    with pytest.raises(SpecError) as error:
        build_spec("quick", None, {"timing": {"instrument": "simulated"}, **overrides})
    assert "timing.instrument=simulated" in str(error.value) and named in str(error.value)


def test_a_simulated_sweep_refuses_a_gpu(monkeypatch):
    monkeypatch.setattr("bench.sweep.spec._device_present", lambda device: True)
    with pytest.raises(SpecError, match="GPU kernels are not counted; allowed: cpu"):
        build_spec("quick", None, {"timing": {"instrument": "simulated"}, "devices": ["cuda"]})


def bench(*args, cwd, env=None, timeout=600):
    return subprocess.run([sys.executable, "-m", "bench", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})  # fmt: skip


def test_without_valgrind_the_run_names_the_package_and_writes_nothing(tmp_path):
    bare = tmp_path / "bin"  # a PATH with python and nothing else
    bare.mkdir()
    (bare / "python").symlink_to(sys.executable)
    done = bench("run", "--instrument", "simulated", "--variants", "eca", "--out",
                 tmp_path / "run", cwd=tmp_path, env={"PATH": str(bare)})  # fmt: skip
    assert done.returncode == 2, done.stdout + done.stderr
    assert "apt-get install valgrind" in done.stderr
    assert not (tmp_path / "run").exists()


# ---- counted compares, on run directories written here -----------------------------------


def write_counted_run(path, cycles, *, spread=0.001, references=None, instrument="simulated"):
    """A simulated run directory: each variant's estimated cycles (at 64 channels), beside
    conv3x3 and copy references at four channel counts whose counts are `references`
    (default: the same in every run)."""
    path.mkdir(parents=True)
    rows = []
    entries = {(name, 64, "variant"): value for name, value in cycles.items()}
    for j, value in enumerate(references or [1e7, 1e7, 1e7, 1e7]):
        for name in ("conv3x3", "copy"):
            entries[(name, 16 * (j + 1), "reference")] = value
    for (name, channels, role), value in entries.items():
        rows.append({
            **dict.fromkeys(COLUMNS, ""), "run_id": "r", "case_id": f"id-{name}-{channels}",
            "role": role, "variant": name, "variant_label": name, "batch": 2,
            "channels": channels, "height": 28, "width": 28, "dtype": "float32",
            "device": "cpu", "mode": "infer", "memory_format": "contiguous", "compile": False,
            "status": "ok", "flops": 1000, "macs": 10, "bytes_moved": 100,
            "peak_memory_bytes": 64, "params": 3, "quality": "ok",
            "instructions": int(value * 0.8), "l1_misses": 10, "ll_misses": 1,
            "estimated_cycles": int(value), "cycles_spread": spread,
        })  # fmt: skip
    pd.DataFrame(rows, columns=COLUMNS).to_csv(path / "results.csv", index=False)
    (path / "spec.yaml").write_text(yaml.safe_dump({"timing": {"instrument": instrument}}))
    return path


def test_counts_a_few_percent_higher_are_a_regression_and_equal_counts_pass(tmp_path):
    base = write_counted_run(tmp_path / "base", {"eca": 3e6, "se": 2e6})
    same = write_counted_run(tmp_path / "same", {"eca": 3.003e6, "se": 1.999e6})
    slower = write_counted_run(tmp_path / "slower", {"eca": 3.15e6, "se": 2.001e6})
    result = compare(base, same)
    assert result.threshold == DEFAULT_THRESHOLD
    assert result.verdict == "no regression" and result.exit_code == 0
    assert {c.verdict for c in result.cases} == {"unchanged"}
    result = compare(base, slower)
    verdicts = {c.fields["variant_label"]: c.verdict for c in result.cases}
    assert verdicts == {"eca": "regression", "se": "unchanged"}
    assert result.exit_code == 1


def test_a_change_inside_the_processes_noise_is_not_called(tmp_path):
    # the references moved by 4% between the processes: a 3% rise cannot be told from that
    base = write_counted_run(tmp_path / "base", {"eca": 3e6})
    new = write_counted_run(tmp_path / "new", {"eca": 3.09e6}, references=[1.04e7, 1e7, 1e7, 1e7])
    result = compare(base, new)
    assert result.counted.between_processes == pytest.approx(0.04)
    (case,) = result.cases
    assert case.verdict == "undetermined" and case.ci_low < 1
    assert result.verdict == "cannot tell" and result.exit_code == 3


def test_a_case_whose_own_calls_spread_widely_gets_a_wide_interval(tmp_path):
    base = write_counted_run(tmp_path / "base", {"eca": 3e6}, spread=0.08)
    new = write_counted_run(tmp_path / "new", {"eca": 3.09e6})
    (case,) = compare(base, new).cases
    assert case.ci_low == pytest.approx(1.03 / 1.081)  # the two sides' spreads added
    assert case.verdict == "undetermined"


def test_mixing_a_simulated_side_with_a_wall_time_side_is_refused(tmp_path):
    base = write_counted_run(tmp_path / "base", {"eca": 3e6})
    wall = write_counted_run(tmp_path / "wall", {"eca": 3e6}, instrument="wall")
    with pytest.raises(CompareInputError, match="cannot be compared; run both sides with"):
        compare(base, wall)
    done = bench("compare", base, wall, cwd=tmp_path)
    assert done.returncode == 2 and "timing.instrument=simulated" in done.stderr


def test_the_metric_named_is_the_one_decided_on(tmp_path):
    base = write_counted_run(tmp_path / "base", {"eca": 3e6})
    new = write_counted_run(tmp_path / "new", {"eca": 3e6})
    assert compare(base, new).counted.metric == "instructions"  # the default: see counted.py
    assert compare(base, new, metric="estimated_cycles").counted.metric == "estimated_cycles"
    with pytest.raises(CompareInputError, match="allowed: instructions, estimated_cycles"):
        compare(base, new, metric="seconds")


# ---- for real, under valgrind -------------------------------------------------------------

needs_valgrind = pytest.mark.skipif(
    shutil.which("valgrind") is None and not os.environ.get("BENCH_REQUIRE_VALGRIND"),
    reason="valgrind is not installed (.ci/run installs it)",
)
SWEEP = ["--instrument", "simulated", "--plugin", "my_blocks.py", "--variants", "user_gate,se",
         "--channels", "64", "--resolutions", "14", "--batch-sizes", "2", "--modes",
         "infer"]  # fmt: skip


@pytest.fixture(scope="module")
def counted_runs(tmp_path_factory):
    """Three simulated sweeps: the block, the same again, and the block with extra passes."""
    home = tmp_path_factory.mktemp("simulated")
    runs = {}
    for name, passes in (("base", 0), ("again", 0), ("slower", 1)):
        folder = home / name
        folder.mkdir()
        (folder / "my_blocks.py").write_text(block_source("user_gate", passes))
        done = bench("run", *SWEEP, "--out", folder / "run", cwd=folder)
        assert done.returncode == 0, done.stdout + done.stderr
        runs[name] = folder / "run"
    return runs


@needs_valgrind
@pytest.mark.slow
def test_a_simulated_sweep_counts_each_case_on_one_thread(counted_runs):
    results = read_results(counted_runs["base"])
    assert (results["status"] == "ok").all()
    assert results["latency_median_s"].isna().all()  # nothing was timed
    for _, row in results.iterrows():
        assert row["instructions"] > 0 and row["threads"] == 1
        assert row["estimated_cycles"] == (
            row["instructions"] + 10 * row["l1_misses"] + 100 * row["ll_misses"]
        )
    # the copy reads and writes its tensor: its simulated traffic is at least the tensor's
    copy = results[results["variant"] == "copy"].iloc[0]
    assert copy["ll_bytes"] >= 2 * 64 * 14 * 14 * 4
    # oneDNN's convolution is code it generates at run time: counted, it is at least one
    # instruction per 8 multiply-adds (8 floats a vector), not the few a missed kernel leaves
    conv = results[results["variant"] == "conv3x3"].iloc[0]
    assert conv["instructions"] >= conv["macs"] / 8
    gate = results[results["variant"] == "user_gate"].iloc[0]
    assert gate["cycles_spread"] < 0.05
    env = json.loads((counted_runs["base"] / "env.json").read_text())
    assert env["instrument"]["instrument"] == "simulated"
    assert env["simulated_cpu_capability"] == CPU_CAPABILITY["ATEN_CPU_CAPABILITY"].upper()
    assert env["simulated_threads"] == 1


@needs_valgrind
@pytest.mark.slow
def test_one_run_per_side_passes_the_same_code_and_finds_one_more_pass(counted_runs, tmp_path):
    same = compare(counted_runs["base"], counted_runs["again"])
    assert same.verdict == "no regression", [(c.label, c.ratio, c.verdict) for c in same.cases]
    slower = compare(counted_runs["base"], counted_runs["slower"])
    verdicts = {c.fields["variant_label"]: (c.verdict, c.ratio) for c in slower.cases}
    assert verdicts["user_gate"][0] == "regression" and verdicts["user_gate"][1] > 1.02
    # se, untouched, is not flagged (its interval may reach past 2%: its calls' spreads added)
    assert verdicts["se"][0] in ("unchanged", "undetermined") and abs(verdicts["se"][1] - 1) < 0.01
    # the counts are close between processes: the same code within a fraction of a percent
    ratios = np.array([c.ratio for c in same.cases])
    assert np.all(np.abs(ratios - 1) < 0.01)


def test_the_validation_scores_counted_runs_by_the_work_each_slowed_copy_added(tmp_path):
    from bench.gate.validate import score, summary

    for i in range(3):  # the same code three times: three pairs, each a compare
        wobble = 1 + 0.001 * i
        write_counted_run(tmp_path / f"run-{i + 1:02d}", {
            "eca": 3e6 * wobble, "se": 2e6 * wobble, "eca_slowed": 3.18e6 * wobble,
        })  # fmt: skip
    outcomes = score(tmp_path, per_side=1, all_pairs=True)
    assert sorted(outcomes["compare"].unique()) == [1, 2, 3]
    same = outcomes[outcomes["kind"] == "same code"]
    assert set(same["verdict"]) == {"unchanged"}
    slowed = outcomes[(outcomes["kind"] == "slowed") & outcomes["slowed"]]
    assert (slowed["verdict"] == "regression").all()
    assert slowed["added"].round(3).eq(1.06).all()  # measured in each NEW run, copy / original
    table = " ".join(summary(outcomes).split())
    assert "slowed by extra work (each case +6.0% to +6.0%, median +6.0%)" in table
    assert "slowed by at least 5%: flagged regression | 3 / 3 (100.0%)" in table
    cycles = score(tmp_path, per_side=1, all_pairs=True, metric="estimated_cycles")
    assert (cycles[cycles["kind"] == "same code"]["verdict"] == "unchanged").all()

"""Resume that survives what kills a process: a case that kills it is recorded as crashed and
the sweep goes on; Ctrl-C anywhere is exit 130; a resumed run keeps its own spec and machine."""

import json
import subprocess
import sys

import pandas as pd
import pytest
import torch

import attention_variants as av
from bench.sweep import runner
from bench.sweep.rundir import RunDirectory, read_results, read_samples
from bench.sweep.runner import resume_sweep, run_sweep
from bench.sweep.spec import build_spec

TINY = "timing: {warmup_s: 0.001, min_time_s: 0, max_time_s: 0.01, min_samples: 3, rounds: 1}\n"
CRASHING_PLUGIN = """
import os
import attention_variants as av
from torch import nn

@av.register("test_crash", paper="-")
class Crash(nn.Module):
    def __init__(self, channels):
        super().__init__()

    def forward(self, x):
        os._exit(137)  # as a segfault or the OOM killer would end the process
"""


def bench(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "bench", *map(str, args)],
        capture_output=True, text=True, timeout=300, cwd=cwd,
    )  # fmt: skip


@pytest.fixture
def crashed_run(tmp_path):
    plugin = tmp_path / "crash.py"
    plugin.write_text(CRASHING_PLUGIN)
    timing = tmp_path / "timing.yaml"
    timing.write_text(TINY)
    run = tmp_path / "run"
    first = bench("run", "--spec", timing, "--plugin", plugin, "--variants", "eca,test_crash,se",
                  "--channels", 16, "--resolutions", 4, "--modes", "infer", "--no-references",
                  "--quiet", "--out", run)  # fmt: skip
    assert first.returncode == 137, first.stderr
    return run


def test_a_case_that_kills_the_process_is_recorded_as_crashed_and_the_sweep_goes_on(crashed_run):
    rows = read_results(crashed_run)
    assert list(rows.variant) == ["eca"]  # the process died during test_crash
    resumed = bench("run", "--resume", crashed_run)
    assert resumed.returncode == 1, resumed.stderr  # a crashed case is a failed case
    assert "crashed: test_crash" in resumed.stdout
    rows = read_results(crashed_run).set_index("variant")
    assert rows.loc["test_crash", "status"] == "crashed"
    assert "process died during this case" in rows.loc["test_crash", "error"]
    assert rows.loc["se", "status"] == "ok"  # the case after it ran
    again = bench("run", "--resume", crashed_run)
    assert again.returncode == 0 and "0 cases run (3 already recorded)" in again.stdout
    plan = bench("run", "--resume", crashed_run, "--retry-failed", "--dry-run")
    assert plan.returncode == 0
    assert plan.stdout.splitlines()[-2:] == [
        "test_crash b8 c16 4x4 float32 cpu infer", "1 cases would run"
    ]  # fmt: skip
    assert len(read_results(crashed_run)) == 3  # a dry run changes nothing


def test_dry_run_of_a_resume_lists_what_would_run_and_runs_nothing(crashed_run):
    plan = bench("run", "--resume", crashed_run, "--dry-run")
    assert plan.returncode == 0
    lines = plan.stdout.splitlines()
    assert lines[0] == "crashed (to be recorded): test_crash b8 c16 4x4 float32 cpu infer"
    assert lines[-2:] == ["se b8 c16 4x4 float32 cpu infer", "1 cases would run"]
    assert list(read_results(crashed_run).variant) == ["eca"]


def test_flags_that_would_change_a_resumed_sweep_are_refused(crashed_run):
    result = bench("run", "--resume", crashed_run, "--channels", 32, "--profile")
    assert result.returncode == 2
    assert "--profile, --channels cannot be given with --resume" in result.stderr
    alone = bench("run", "--retry-failed", "--dry-run")
    assert alone.returncode == 2 and "only go with --resume" in alone.stderr


def test_resume_refuses_another_machine_or_code_unless_forced(crashed_run):
    env_path = crashed_run / "env.json"
    env = json.loads(env_path.read_text())
    env["torch"], env["git_commit"] = "1.0.0", "0" * 40
    env_path.write_text(json.dumps(env))
    refused = bench("run", "--resume", crashed_run)
    assert refused.returncode == 2
    assert "torch: the run has '1.0.0'" in refused.stderr
    assert "git commit: the run has '0000" in refused.stderr
    forced = bench("run", "--resume", crashed_run, "--force")
    assert forced.returncode == 1, forced.stderr


def _tiny_spec():
    spec, _ = build_spec(None, overrides={
        "variants": "eca,se", "channels": "16", "resolutions": "4", "modes": "infer",
        "references": False, "timing": {"warmup_s": 0.001, "min_time_s": 0, "max_time_s": 0.01,
                                         "min_samples": 3, "rounds": 1},
    })  # fmt: skip
    return spec


def test_ctrl_c_while_the_ceilings_are_measured_is_exit_130(tmp_path, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(runner, "measure_ceilings", interrupted)
    summary = run_sweep(_tiny_spec(), tmp_path / "run", quiet=True)
    assert summary.exit_code == 130
    assert json.loads((tmp_path / "run" / "run.json").read_text())["status"] == "interrupted"


def test_an_interrupt_between_samples_and_row_leaves_no_orphan_samples(tmp_path, monkeypatch):
    original = RunDirectory.append_row
    calls = []

    def interrupted_once(self, row):
        calls.append(row["variant"])
        if len(calls) == 1:
            raise KeyboardInterrupt  # the samples of the first case are on disk, its row not
        original(self, row)

    monkeypatch.setattr(RunDirectory, "append_row", interrupted_once)
    assert run_sweep(_tiny_spec(), tmp_path / "run", quiet=True).exit_code == 130
    assert read_results(tmp_path / "run").empty  # no row: the case is not done
    assert resume_sweep(tmp_path / "run", quiet=True).exit_code == 0
    rows, samples = read_results(tmp_path / "run"), read_samples(tmp_path / "run")
    assert sorted(rows.variant) == ["eca", "se"]
    assert set(samples.case_id) == set(rows.case_id)
    per_case = samples.groupby("case_id").size()
    assert (per_case == rows.set_index("case_id").n_samples.reindex(per_case.index)).all()


def test_cpu_out_of_memory_is_an_oom_row(tmp_path):
    @av.register("test_hungry", paper="-")
    class Hungry(torch.nn.Module):
        def __init__(self, channels):
            super().__init__()

        def forward(self, x):
            raise RuntimeError(
                "[enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: not enough "
                "memory: you tried to allocate 1099511627776 bytes."
            )

    try:
        spec = _tiny_spec().model_copy(update={"variants": build_spec(None, overrides={
            "variants": "test_hungry,eca", "channels": "16"})[0].variants})  # fmt: skip
        summary = run_sweep(spec, tmp_path / "run", quiet=True)
    finally:
        av.unregister("test_hungry")
    rows = read_results(tmp_path / "run").set_index("variant")
    assert rows.loc["test_hungry", "status"] == "oom"
    assert rows.loc["eca", "status"] == "ok" and summary.exit_code == 1
    assert pd.isna(rows.loc["test_hungry", "latency_median_s"])


def test_retry_failed_runs_error_rows_again_and_keeps_one_row_per_case(tmp_path):
    calls = []

    @av.register("test_flaky", paper="-")
    class Flaky(torch.nn.Module):
        def __init__(self, channels):
            super().__init__()

        def forward(self, x):
            calls.append(1)
            if len(calls) == 1:
                raise RuntimeError("transient driver error")
            return x

    try:
        spec = _tiny_spec().model_copy(update={"variants": build_spec(None, overrides={
            "variants": "test_flaky,eca", "channels": "16"})[0].variants})  # fmt: skip
        assert run_sweep(spec, tmp_path / "run", quiet=True).exit_code == 1
        rows = read_results(tmp_path / "run").set_index("variant")
        assert rows.loc["test_flaky", "status"] == "error"
        plain = resume_sweep(tmp_path / "run", quiet=True)
        assert sum(plain.statuses.values()) == 0  # an error row is not retried by default
        retried = resume_sweep(tmp_path / "run", retry_failed=True, quiet=True)
        assert retried.statuses["ok"] == 1 and retried.exit_code == 0
    finally:
        av.unregister("test_flaky")
    rows = read_results(tmp_path / "run")
    assert sorted(rows.variant) == ["eca", "test_flaky"] and set(rows.status) == {"ok"}

"""Sharded sweeps: a deterministic, balanced partition; submitit's debug and local executors for
real; merge's refusals; a failed shard named and rerun alone; the Slurm submission script."""

import json
import subprocess
import sys
import time

import pandas as pd
import pytest
import yaml

from bench.report.builder import report
from bench.sweep import executors
from bench.sweep.cases import expand
from bench.sweep.executors import make_executor, run_sharded
from bench.sweep.merge import MergeError, merge
from bench.sweep.rundir import RunDirectory, read_results, read_samples
from bench.sweep.runner import resume_sweep, run_sweep
from bench.sweep.shards import Shard, estimated_cost, group_key, partition, select
from bench.sweep.spec import ExecutorOptions, build_spec

TINY = {"warmup_s": 0.001, "min_time_s": 0, "max_time_s": 0.01, "min_samples": 3, "rounds": 1}


def tiny_spec(**overrides):
    base = {"variants": "eca,se", "channels": "16", "resolutions": "4,6", "modes": "infer,train",
            "timing": TINY}  # fmt: skip
    spec, _ = build_spec(None, overrides={**base, **overrides})
    return spec


def test_shards_cover_every_case_once_keep_references_beside_variants_and_balance():
    spec, _ = build_spec("quick")
    cases = expand(spec)
    parts = partition(cases, 3, spec.timing)
    ids = [c.case_id for part in parts for c in part]
    assert sorted(ids) == sorted(c.case_id for c in cases)  # every case, once
    for part in parts:
        groups = {group_key(c) for c in part if c.role == "variant"}
        refs = {group_key(c) for c in part if c.role == "reference"}
        assert groups == refs  # each shard measures the references its variants are read against
    loads = [sum(estimated_cost(c, spec.timing) for c in part) for part in parts]
    assert max(loads) / min(loads) < 1.2  # by cost, not by count
    assert partition(cases, 3, spec.timing) == parts  # deterministic


def test_every_process_cuts_the_same_shards():
    spec, _ = build_spec("quick")
    expected = [c.label for c in select(expand(spec), Shard(2, 3), spec.timing)]
    result = subprocess.run(
        [sys.executable, "-m", "bench", "run", "--shard", "2/3", "--dry-run"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[:-1] == expected


def test_bad_shard_is_a_clear_error():
    result = subprocess.run(
        [sys.executable, "-m", "bench", "run", "--shard", "4/3", "--dry-run"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 2 and "allowed: K/N with 1 <= K <= N" in result.stderr


@pytest.mark.parametrize("kind", ["debug", "local"])
def test_a_sharded_sweep_through_submitit_equals_the_unsharded_one(tmp_path, kind):
    spec = tiny_spec()
    run_sweep(spec, tmp_path / "whole", quiet=True)
    options = ExecutorOptions(kind=kind, shards=3)
    assert run_sharded(spec.to_dict(), tmp_path / "sharded", options) == 0
    whole, sharded = read_results(tmp_path / "whole"), read_results(tmp_path / "sharded")
    assert sorted(sharded.case_id) == sorted(whole.case_id)  # same case ids, each once
    assert set(read_samples(tmp_path / "sharded").case_id) == set(sharded.case_id)
    info = json.loads((tmp_path / "sharded" / "run.json").read_text())
    assert info["status"] == "complete" and len(info["merged_from"]) == 3
    assert report(tmp_path / "sharded")  # the merged directory reports like any other
    assert resume_sweep(tmp_path / "sharded", quiet=True).skipped_as_recorded == len(
        whole
    )  # and resumes with nothing left to do


def test_a_failed_shard_is_named_and_a_rerun_finishes_only_it(tmp_path, monkeypatch, capsys):
    spec = tiny_spec()
    original = executors.run_shard
    ran = []

    def flaky(spec_dict, directory, shard):
        ran.append(shard)
        if shard == "2/2" and ran.count("2/2") == 1:
            raise RuntimeError("node lost")
        return original(spec_dict, directory, shard)

    monkeypatch.setattr(executors, "run_shard", flaky)
    options = ExecutorOptions(kind="debug", shards=2)
    assert run_sharded(spec.to_dict(), tmp_path / "run", options) == 1
    err = capsys.readouterr().err
    assert "shard 2/2 failed; log: " in err and "run the same command again" in err
    info = json.loads((tmp_path / "run" / "run.json").read_text())
    assert info["status"] == "incomplete" and info["missing_shards"] == ["shard-2-of-2"]
    assert run_sharded(spec.to_dict(), tmp_path / "run", options) == 0
    assert ran == ["1/2", "2/2", "2/2"]  # the rerun submitted only the failed shard
    assert json.loads((tmp_path / "run" / "run.json").read_text())["status"] == "complete"


def _two_shards(tmp_path, spec=None):
    spec = spec or tiny_spec()
    for k in (1, 2):
        run_sweep(spec, tmp_path / f"s{k}", shard=Shard(k, 2), quiet=True)
    return tmp_path / "s1", tmp_path / "s2"


def test_merge_refuses_other_specs_and_other_machines(tmp_path):
    first, second = _two_shards(tmp_path)
    env = json.loads((second / "env.json").read_text())
    env["cpu_model"], env["torch"] = "Another CPU", "9.9.9"
    (second / "env.json").write_text(json.dumps(env))
    with pytest.raises(MergeError) as excinfo:
        merge([first, second], tmp_path / "merged")
    message = str(excinfo.value)
    assert "machine cpu:" in message and "'Another CPU'" in message and "machine torch" in message
    spec = yaml.safe_load((second / "spec.yaml").read_text())
    spec["channels"] = [32]
    (second / "spec.yaml").write_text(yaml.safe_dump(spec))
    with pytest.raises(MergeError, match="spec channels"):
        merge([first, second], tmp_path / "merged")


def test_allow_mixed_adds_a_machine_column_and_the_report_draws_machines_apart(tmp_path):
    first, second = _two_shards(tmp_path, tiny_spec(modes="infer"))
    env = json.loads((second / "env.json").read_text())
    env["host"], env["cpu_model"] = "other-node", "Another CPU"
    (second / "env.json").write_text(json.dumps(env))
    summary = merge([first, second], tmp_path / "merged", allow_mixed=True)
    assert summary.mixed and summary.exit_code == 0
    rows = read_results(tmp_path / "merged")
    assert rows["machine"].nunique() == 2
    written = {p.name for p in report(tmp_path / "merged")}
    per_machine = [n for n in written if n.startswith("latency_cpu_float32_infer") and
                   n.endswith(".md")]  # fmt: skip
    assert len(per_machine) == 2 and any("other-node" in n for n in per_machine)


def test_a_shard_with_no_cases_is_an_empty_run_that_still_merges(tmp_path):
    spec = tiny_spec(modes="infer", resolutions="4")  # one shape: one group, two shards
    for k in (1, 2):
        run_sweep(spec, tmp_path / f"s{k}", shard=Shard(k, 2), quiet=True)
    summary = merge([tmp_path / "s1", tmp_path / "s2"], tmp_path / "merged")
    assert summary.cases == len(expand(spec)) and summary.exit_code == 0


def test_a_missing_shard_is_named_and_the_rest_still_merges(tmp_path):
    spec = tiny_spec()
    run_sweep(spec, tmp_path / "s1", shard=Shard(1, 3), quiet=True)
    result = subprocess.run(
        [sys.executable, "-m", "bench", "merge", str(tmp_path / "s1"), "--out",
         str(tmp_path / "merged")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 1
    assert "incomplete (missing shard-2-of-3, shard-3-of-3)" in result.stdout
    assert len(read_results(tmp_path / "merged")) == len(read_results(tmp_path / "s1"))
    assert (tmp_path / "merged" / "shards" / "shard-1-of-3" / "env.json").exists()


def test_overlapping_shards_with_different_data_are_refused(tmp_path):
    first, _ = _two_shards(tmp_path)
    twin = tmp_path / "twin"
    run_sweep(tiny_spec(), twin, shard=Shard(1, 2), quiet=True)  # the same shard, measured again
    with pytest.raises(MergeError, match="with different data: shards must not overlap"):
        merge([first, twin], tmp_path / "merged")


def test_slurm_gets_one_job_array_with_the_options_asked_for(tmp_path, monkeypatch):
    # submitit checks that srun exists; a stand-in is enough to see what sbatch would receive
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "srun").write_text("#!/bin/sh\nexit 0\n")
    (fake / "srun").chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake}:{__import__('os').environ['PATH']}")
    options = ExecutorOptions(
        kind="slurm", shards=3, slurm_partition="gpu", timeout_min=120, gpus_per_task=1,
        cpus_per_task=8, slurm_array_parallelism=2, slurm_additional={"account": "my-lab"},
    )  # fmt: skip
    slurm = make_executor(tmp_path, options)._executor
    slurm.parameters["map_count"] = options.shards  # what map_array sets for 3 shards
    script = slurm._make_submission_file_text("python -m submitit.core._submit", "uid")
    for line in ("--partition=gpu", "--time=120", "--gpus-per-node=1", "--cpus-per-task=8",
                 "--array=0-2%2", "--account=my-lab"):  # fmt: skip
        assert f"#SBATCH {line}" in script


def test_the_executor_block_and_flags_are_part_of_the_spec(tmp_path):
    spec = tiny_spec(executor={"kind": "slurm", "shards": 4, "slurm_partition": "gpu"})
    assert spec.executor.shards == 4 and spec.executor.kind == "slurm"
    from bench.sweep.spec import SpecError

    with pytest.raises(SpecError, match=r"executor.kind: Input should be 'debug', 'local' or"):
        tiny_spec(executor={"kind": "k8s"})
    assert pd.notna(spec.to_dict()["executor"]["shards"])


def test_a_shard_that_stopped_part_way_makes_the_merge_incomplete(tmp_path):
    first, second = _two_shards(tmp_path)
    # what a killed shard leaves: some rows, and run.json still saying it runs
    killed = RunDirectory(second)
    kept = killed.results().case_id.tolist()[:2]
    killed.drop_rows(set(killed.results().case_id) - set(kept))
    killed.update_info(status="running")
    result = subprocess.run(
        [sys.executable, "-m", "bench", "merge", str(first), str(second), "--out",
         str(tmp_path / "merged")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 1, result.stdout + result.stderr
    assert "incomplete (shard-2-of-2 running)" in result.stdout
    info = RunDirectory(tmp_path / "merged").info()
    assert info["status"] == "incomplete" and info["partial_shards"] == {"shard-2-of-2": "running"}


def test_how_a_sweep_was_carried_out_does_not_stop_a_merge(tmp_path):
    by_executor = tiny_spec(executor={"kind": "slurm", "shards": 2, "timeout_min": 5})
    run_sweep(by_executor, tmp_path / "s1", shard=Shard(1, 2), quiet=True)
    rerun = tiny_spec(executor={"kind": "slurm", "shards": 2, "timeout_min": 10})
    run_sweep(rerun, tmp_path / "s2", shard=Shard(2, 2), quiet=True)
    by_hand = tmp_path / "by-hand"
    run_sweep(tiny_spec(), by_hand, shard=Shard(2, 2), quiet=True)  # `bench run --shard 2/2`
    assert merge([tmp_path / "s1", tmp_path / "s2"], tmp_path / "m1").exit_code == 0
    summary = merge([tmp_path / "s1", by_hand], tmp_path / "m2")
    assert summary.exit_code == 0 and summary.cases == len(expand(tiny_spec()))
    assert "executor" not in RunDirectory(tmp_path / "m2").spec()


def test_cpu_shards_on_slurm_get_a_node_each_and_gpu_shards_do_not():
    cpu = executors.executor_parameters(ExecutorOptions(kind="slurm"), cpu_only=True)
    gpu = executors.executor_parameters(ExecutorOptions(kind="slurm"), cpu_only=False)
    assert cpu["slurm_exclusive"] is True and "slurm_exclusive" not in gpu
    shared = ExecutorOptions(kind="slurm", exclusive=False)
    assert "slurm_exclusive" not in executors.executor_parameters(shared, cpu_only=True)


class _LostJob:
    """A job the scheduler no longer knows: never done, its state unknown."""

    def __init__(self, job_id):
        self.job_id = job_id

    def done(self):
        return False

    @property
    def state(self):
        return "UNKNOWN"


def test_a_wait_for_shards_the_scheduler_lost_ends_with_their_states(tmp_path, monkeypatch, capsys):
    class Executor:
        def map_array(self, fn, *args):
            return [_LostJob(f"77_{i}") for i in range(len(args[0]))]

    monkeypatch.setattr(executors, "make_executor", lambda *a, **k: Executor())
    monkeypatch.setattr(executors, "wait_limit_s", lambda options: 0.5)
    monkeypatch.setattr(executors, "POLL_S", 0.05)
    started = time.monotonic()
    code = run_sharded(tiny_spec().to_dict(), tmp_path / "run", ExecutorOptions(kind="slurm"))
    assert code == 1 and time.monotonic() - started < 30
    err = capsys.readouterr().err
    assert "shard 1/2: job 77_0, state UNKNOWN" in err and "shard 2/2: job 77_1" in err
    assert "scancel 77_0 77_1" in err and "run the same command again" in err

"""The Slurm path against a real one-node Slurm (slurmctld, slurmd and slurmdbd on 127.0.0.1),
started by `.ci/slurm.sh` (CI starts it before the tests; otherwise this module starts it where
it can, as root with apt-get, and stops every daemon it started by its pid).

Where no cluster can be started the tests are skipped with the reason in pytest's summary;
with BENCH_REQUIRE_SLURM=1 (as `.ci/run` sets) they fail instead.
"""

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.sweep.plan import cases_of
from bench.sweep.rundir import RunDirectory
from bench.sweep.runner import run_sweep
from bench.sweep.spec import build_spec

pytestmark = pytest.mark.slow
SCRIPT = Path(__file__).parents[1] / ".ci" / "slurm.sh"
TINY = {"warmup_s": 0.001, "min_time_s": 0, "max_time_s": 0.01, "min_samples": 3, "rounds": 1}
# long enough a shard (about 10 s of timing) to be cancelled while it runs
SLOW = {"warmup_s": 0.01, "min_time_s": 0.25, "max_time_s": 0.3, "min_samples": 3, "rounds": 2}


def _why_not() -> str | None:
    if os.geteuid() != 0:
        return "not root: a Slurm cluster cannot be started here"
    if not shutil.which("apt-get") and not shutil.which("slurmctld"):
        return "no apt-get and no Slurm installed: a cluster cannot be started here"
    return None


@pytest.fixture(scope="session")
def slurm(tmp_path_factory):
    """A cluster that answers and is idle, for the whole session."""
    if subprocess.run(["bash", SCRIPT, "status"], capture_output=True).returncode == 0:
        yield "running already"
        return
    reason = _why_not()
    if reason:
        if os.environ.get("BENCH_REQUIRE_SLURM") == "1":
            pytest.fail(f"BENCH_REQUIRE_SLURM=1 but {reason}")
        pytest.skip(reason)
    env = {**os.environ, "BENCH_SLURM_STATE": str(tmp_path_factory.mktemp("slurm-state"))}
    started = subprocess.run(["bash", SCRIPT, "start"], env=env, capture_output=True, text=True,
                             timeout=900)  # fmt: skip
    assert started.returncode == 0, started.stderr
    try:
        yield "started by the tests"
    finally:
        subprocess.run(["bash", SCRIPT, "stop"], env=env, timeout=120)


def _spec_file(tmp_path: Path, timing: dict) -> Path:
    import yaml

    path = tmp_path / f"timing-{len(list(tmp_path.glob('timing-*')))}.yaml"
    path.write_text(yaml.safe_dump({"timing": timing}))
    return path


def bench_run(tmp_path, out, timing, *extra, background=False):
    args = [
        sys.executable, "-m", "bench", "run", "--spec", str(_spec_file(tmp_path, timing)),
        "--variants", "eca,se", "--channels", "16", "--resolutions", "4,6", "--modes",
        "infer,train", "--devices", "cpu", "--shards", "2", "--executor", "slurm",
        "--slurm-partition", "debug", "--cpus-per-task", "1", "--quiet", "--out", str(out),
        *extra,
    ]  # fmt: skip
    if background:
        return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return subprocess.run(args, capture_output=True, text=True, timeout=600)


def _jobs(since: str) -> list[dict[str, str]]:
    """The scheduler's accounting of the jobs started since `since`, one line per array task."""
    out = subprocess.run(
        ["sacct", "-X", "-n", "-P", "-S", since, "-o", "JobID,JobName,State,Start,End"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    keys = ("id", "name", "state", "start", "end")
    return [dict(zip(keys, line.split("|"), strict=True)) for line in out.splitlines() if line]


def _finished_tasks(
    since: str, count: int, ids: set[str] | None = None
) -> list[dict[str, str]] | None:
    """The shards' array tasks (of the jobs `ids` where given) once `count` of them have ended
    in the accounting (it is written after the job, so it can lag behind `bench run`), else
    None. sacct's start time also selects jobs still ending then, such as an earlier test's."""
    tasks = [j for j in _jobs(since) if j["name"] == "bench-shard"]
    if ids is not None:
        tasks = [t for t in tasks if t["id"] in ids]
    ended = [t for t in tasks if t["end"] not in ("", "Unknown")]
    return tasks if len(ended) == len(tasks) == count else None


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S")


def _until(condition, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.25)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


def test_a_sharded_sweep_is_one_job_array_merged_complete_and_equal_to_the_unsharded_one(
    slurm, tmp_path
):
    since = _now()
    result = bench_run(tmp_path, tmp_path / "sharded", TINY, "--timeout-min", "5")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "merged 2 shard(s)" in result.stdout and "complete" in result.stdout
    tasks = _until(lambda: _finished_tasks(since, 2), 60, "the accounting of both shards")
    assert len({t["id"].split("_")[0] for t in tasks}) == 1  # one job array
    assert {t["state"] for t in tasks} == {"COMPLETED"}
    # CPU shards on one node run one after the other (--exclusive), never side by side
    first, second = sorted(tasks, key=lambda t: t["start"])
    assert first["end"] <= second["start"], tasks
    script = next((tmp_path / "sharded" / "submitit").glob("*_submission.sh")).read_text()
    assert "#SBATCH --exclusive" in script

    spec, _ = build_spec(None, overrides={
        "variants": "eca,se", "channels": "16", "resolutions": "4,6", "modes": "infer,train",
        "devices": "cpu", "timing": TINY,
    })  # fmt: skip
    run_sweep(spec, tmp_path / "whole", quiet=True)
    sharded = RunDirectory(tmp_path / "sharded").results().set_index("case_id")
    whole = RunDirectory(tmp_path / "whole").results().set_index("case_id")
    assert RunDirectory(tmp_path / "sharded").status == "complete"
    assert sorted(sharded.index) == sorted(whole.index) == sorted(c.case_id for c in cases_of(spec))
    for column in ("label", "flops", "macs", "bytes_moved", "params", "status"):
        assert sharded[column].sort_index().equals(whole[column].sort_index()), column


def test_a_cancelled_shard_is_reported_failed_and_a_rerun_with_another_limit_redoes_only_it(
    slurm, tmp_path
):
    out = tmp_path / "run"
    since = _now()
    running = bench_run(tmp_path, out, SLOW, "--timeout-min", "5", background=True)
    second = RunDirectory(out / "shards" / "shard-2-of-2")
    try:
        _until(
            lambda: second.started and second.status == "running"
            and len(second.recorded_statuses()) >= 2,
            300, "shard 2 to be part-way",
        )  # fmt: skip
        task = _until(
            lambda: [j["id"] for j in _jobs(since)
                     if j["name"] == "bench-shard" and j["state"] == "RUNNING"],
            60, "shard 2's task to run",
        )  # fmt: skip
        subprocess.run(["scancel", *task], check=True)
        stdout, stderr = running.communicate(timeout=300)
    finally:
        running.kill()
    assert running.returncode == 1, stdout + stderr
    # scancel's SIGTERM stops the shard as Ctrl-C does: its rows kept, nothing called crashed
    assert "shard 2/2: failed (interrupted" in stderr, stderr
    merged = RunDirectory(out)
    assert merged.status == "incomplete"  # never `complete` with a shard that stopped
    assert merged.info()["partial_shards"] == {"shard-2-of-2": second.status}
    assert second.status == "interrupted", stderr  # stopped cleanly on SIGTERM
    assert "incomplete" in stdout

    since = _now()
    rerun = bench_run(tmp_path, out, SLOW, "--timeout-min", "10")  # another limit: still merges
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert "1 already complete" in rerun.stdout
    assert len(_until(lambda: _finished_tasks(since, 1), 60, "shard 2's accounting")) == 1
    rows = merged.results()
    assert merged.status == "complete" and set(rows.status) == {"ok"}
    assert rows.case_id.is_unique and len(rows) == merged.info()["cases_recorded"]


def test_no_wait_prints_the_jobs_then_bench_merge_joins_them(slurm, tmp_path):
    out = tmp_path / "run"
    since = _now()
    result = bench_run(tmp_path, out, TINY, "--timeout-min", "5", "--no-wait")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("submitted shard") == 2
    command = next(line for line in result.stdout.splitlines() if "bench merge" in line)
    ids = {line.rsplit("job ", 1)[1].strip() for line in result.stdout.splitlines()
           if line.startswith("submitted shard")}  # fmt: skip
    tasks = _until(lambda: _finished_tasks(since, 2, ids), 300, "both shards to finish")
    assert {t["state"] for t in tasks} == {"COMPLETED"}
    merge_args = command.split("python -m bench merge ", 1)[1].split()
    merged = subprocess.run([sys.executable, "-m", "bench", "merge", *merge_args],
                            capture_output=True, text=True, timeout=120)  # fmt: skip
    assert merged.returncode == 0, merged.stdout + merged.stderr
    assert "complete" in merged.stdout and RunDirectory(out).status == "complete"

"""The suite on a user's own git repository: their plugin block, three commits of it, the
gate (`bench ab --repo`) and the history (`bench history backfill --repo`) on their commits.

The repository: `main` holds a README (c0), the block (c1) and a docs change that leaves the
code as it was (c2); the branch `feature` adds c3, which makes the block's forward about three
times the work (extra elementwise passes over its output: work, not a sleep)."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .user_block import block_source

TIMING = "timing: {warmup_s: 0.002, min_time_s: 0.02, max_time_s: 0.12, min_samples: 5}\n"
SWEEP = ["--plugin", "my_blocks.py", "--variants", "user_gate,se", "--channels", "64,128",
         "--resolutions", "14,28", "--batch-sizes", "2", "--modes", "infer", "--rounds", "3",
         "--spec", "timing.yaml"]  # fmt: skip


def git(repo, *args):
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True,
                          text=True).stdout.strip()  # fmt: skip


def commit(repo, message, **files):
    for name, text in files.items():
        (repo / name).write_text(text)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)
    return git(repo, "rev-parse", "HEAD")


def block(extra_passes):
    return block_source("user_gate", extra_passes)


@pytest.fixture(scope="module")
def user_repo(tmp_path_factory):
    repo = tmp_path_factory.mktemp("user") / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    git(repo, "config", "user.email", "user@example.com")
    git(repo, "config", "user.name", "A User")
    commits = [commit(repo, "readme", **{"README.md": "my blocks\n"})]
    commits.append(commit(repo, "block", **{"my_blocks.py": block(0), "timing.yaml": TIMING}))
    commits.append(commit(repo, "docs", **{"README.md": "my blocks, documented\n"}))
    git(repo, "checkout", "-q", "-b", "feature")
    commits.append(commit(repo, "slower", **{"my_blocks.py": block(6)}))
    return repo, commits


def bench(*args, cwd, env=None, timeout=900):
    return subprocess.run([sys.executable, "-m", "bench", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})  # fmt: skip


@pytest.mark.slow
def test_ab_on_a_users_repository_finds_the_slower_commit_and_passes_identical_code(
    user_repo, tmp_path
):
    repo, (_, c1, c2, c3) = user_repo
    summary = tmp_path / "summary.md"
    slower = bench("ab", "--base", "auto", "--new", "HEAD", *SWEEP, "--out", tmp_path / "slow",
                   cwd=repo, env={"GITHUB_STEP_SUMMARY": str(summary)})  # fmt: skip
    # the base is the merge-base with the default branch, printed with why
    assert f"BASE is {c2[:10]} (--base auto: the merge-base of HEAD with main)" in slower.stdout
    assert slower.returncode == 1, slower.stdout + slower.stderr
    report = (tmp_path / "slow" / "compare.md").read_text()
    regressions = report.split("### Regressions")[1].split("###")[0]
    assert "user_gate b2" in regressions and "se b2" not in regressions
    # each side loaded the plugin from its own revision, and its env.json says which
    for side, expected in (("base", c2), ("new", c3)):
        env = json.loads((tmp_path / "slow" / side / "run-1" / "env.json").read_text())
        (plugin,) = env["code_under_test"]
        assert plugin["commit"] == expected and Path(plugin["repository"]) == repo.resolve()
        assert plugin["files"][0].endswith("my_blocks.py") and len(plugin["files_sha256"]) == 64
    # the compare names what each side measured: the user's repository at each commit
    assert f"{repo.resolve()} at {c2[:10]}" in report and f"{repo.resolve()} at {c3[:10]}" in report
    assert "## Performance comparison" in summary.read_text()  # GitHub's job summary

    same = bench("ab", "--base", c1, "--new", c2, *SWEEP, "--out", tmp_path / "same", cwd=repo)
    assert same.returncode in (0, 3), same.stdout + same.stderr  # never a regression
    assert "### Regressions" not in (tmp_path / "same" / "compare.md").read_text()


@pytest.mark.slow
@pytest.mark.skipif(
    shutil.which("valgrind") is None and not os.environ.get("BENCH_REQUIRE_VALGRIND"),
    reason="valgrind is not installed (.ci/run installs it)",
)
def test_ab_simulated_runs_one_sweep_a_side_and_finds_the_slower_commit(user_repo, tmp_path):
    repo, (*_, c2, c3) = user_repo
    counted = ["--instrument", "simulated", "--plugin", "my_blocks.py", "--variants",
               "user_gate,se", "--channels", "64", "--resolutions", "14", "--batch-sizes", "2",
               "--modes", "infer"]  # fmt: skip
    done = bench("ab", "--base", c2, "--new", c3, *counted, "--out", tmp_path / "ab", cwd=repo)
    assert done.returncode == 1, done.stdout + done.stderr
    # one run a side (the two at once): counts need no second run
    assert sorted(p.name for p in (tmp_path / "ab").glob("*/run-*")) == ["run-1", "run-1"]
    report = (tmp_path / "ab" / "compare.md").read_text()
    assert "counted under valgrind, one run per side" in report
    regressions = report.split("### Regressions")[1].split("###")[0]
    assert "user_gate b2" in regressions and "se b2" not in regressions
    env = json.loads((tmp_path / "ab" / "new" / "run-1" / "env.json").read_text())
    assert env["code_under_test"][0]["commit"] == c3


def test_ab_refuses_before_any_sweep(user_repo, tmp_path):
    repo, (c0, *_) = user_repo
    elsewhere = tmp_path / "not-a-repo"
    elsewhere.mkdir()
    cases = {
        "not a repository": (["--repo", elsewhere, "--base", "HEAD"], "is not in a git repository"),
        "unknown revision": (["--base", "nope"], "unknown revision 'nope'"),
        "plugin missing": (["--base", c0], f"the plugin my_blocks.py is not in {c0[:10]}"),
    }
    for what, (args, message) in cases.items():
        done = bench("ab", *args, *SWEEP, "--out", tmp_path / "out", cwd=repo)
        assert done.returncode == 2 and message in done.stderr, (what, done.stderr)
    assert not (tmp_path / "out").exists()  # nothing swept
    shallow = tmp_path / "shallow"
    subprocess.run(["git", "clone", "-q", "--depth", "1", repo.resolve().as_uri(), str(shallow)],
                   check=True)  # fmt: skip
    done = bench("ab", "--base", "HEAD~1", *SWEEP, "--out", tmp_path / "out", cwd=shallow)
    assert done.returncode == 2 and "shallow clone" in done.stderr, done.stderr


@pytest.mark.slow
def test_history_backfill_keys_points_by_the_users_commits(user_repo, tmp_path):
    from bench.history.store import HistoryStore

    repo, (c0, c1, c2, c3) = user_repo
    store = tmp_path / "store"
    first = bench("history", "backfill", "--repo", repo, "--commits", f"{c0}..main",
                  "--store", store, *SWEEP, cwd=repo)  # fmt: skip
    assert first.returncode == 0, first.stdout + first.stderr
    # two commits: too little history to check, said so, and not an error
    early = bench("history", "check", "--store", store, cwd=tmp_path)
    assert early.returncode == 0 and "too little history" in early.stdout, early.stderr
    more = bench("history", "backfill", "--repo", repo, "--commits", f"{c0}..feature",
                 "--store", store, *SWEEP, cwd=repo)  # fmt: skip
    assert more.returncode == 0, more.stdout + more.stderr
    assert "already in the store" in more.stdout  # c1 and c2 are not swept again
    rounds = HistoryStore(store).rounds()
    assert set(rounds["commit"]) == {c1, c2, c3}  # the user's commits, not the suite's
    times = rounds.groupby("commit")["commit_time"].first()
    assert times[c1] <= times[c2] <= times[c3]
    checked = bench("history", "check", "--store", store, cwd=tmp_path)
    assert checked.returncode in (0, 1) and "too little" not in checked.stdout, checked.stderr

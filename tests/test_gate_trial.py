"""The gate's promise, tried as a user would: their block swept against se and eca with the
quick preset (one run per side), then made slower by extra work, swept again and compared.
The compare must find the regression or say it cannot tell (exit 1 or 3), never "no
regression"; two runs of identical code flag nothing."""

import subprocess
import sys

import pytest

from .user_block import block_source

# the quick preset's timing, shortened for a test: four rounds, no sweep budget
TIMING = (
    "timing: {warmup_s: 0.003, min_time_s: 0.02, max_time_s: 0.2, target_ci: 0.03, "
    "min_samples: 5, min_rounds: 3, rounds: 4, sweep_budget_s: null}\n"
)


def sweep(folder, name, extra_passes):
    """The user's block with `extra_passes` extra elementwise passes over its output, swept
    against se and eca at 64 and 128 channels, 14x14 and 28x28, with the quick preset."""
    (folder / "my_blocks.py").write_text(block_source("trial_gate", extra_passes))
    out = folder / name
    done = subprocess.run(
        [sys.executable, "-m", "bench", "run", "--preset", "quick", "--spec", "timing.yaml",
         "--plugin", "my_blocks.py", "--variants", "trial_gate,se,eca", "--channels", "64,128",
         "--resolutions", "14,28", "--quiet", "--out", str(out)],
        cwd=folder, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return out


def compare(folder, base, new):
    return subprocess.run(
        [sys.executable, "-m", "bench", "compare", str(base), str(new), "--json", "v.json"],
        cwd=folder, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


@pytest.mark.slow
def test_a_users_block_made_slower_is_never_called_no_regression(tmp_path):
    (tmp_path / "timing.yaml").write_text(TIMING)
    before = sweep(tmp_path, "before", 0)
    again = sweep(tmp_path, "again", 0)
    after = sweep(tmp_path, "after", 3)  # three extra passes: about twice the block's work

    slower = compare(tmp_path, before, after)
    assert slower.returncode in (1, 3), slower.stdout
    headline = slower.stdout.splitlines()[2]
    assert "**no regression**" not in headline
    assert ("regression(s)**" in headline) or ("**cannot tell**" in headline)
    # the user's block is what the headline names: found, or listed above the fold
    fold = slower.stdout.find("<details>")
    above = slower.stdout if fold < 0 else slower.stdout[:fold]
    assert "trial_gate b1" in above

    same = compare(tmp_path, before, again)
    assert same.returncode in (0, 3), same.stdout  # identical code: never a regression
    assert "regression(s)**" not in same.stdout.splitlines()[2]

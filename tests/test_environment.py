import json
import subprocess
import sys

import torch

import attention_variants as av
from bench.measurement.environment import REPOSITORY, capture, case_seed, seed_everything


def test_capture_records_the_run_environment():
    env = capture(seed=7)
    json.dumps(env)  # env.json must be plain JSON
    assert env["torch"] == torch.__version__
    assert env["seed"] == 7
    assert env["torch_threads"] == torch.get_num_threads()
    assert "ATen/Parallel" in env["parallel_info"]
    assert env["packages"]["pandas"] and env["packages"]["seaborn"]
    assert env["cuda"]["available"] == torch.cuda.is_available()
    head = subprocess.run(
        ["git", "-C", str(REPOSITORY), "rev-parse", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    assert env["git_commit"] == (head or None)
    assert env["git_dirty"] in (True, False, None)


def test_case_seed_is_stable_across_processes():
    here = case_seed(0, "eca", 64, (56, 56))
    code = "from bench.measurement.environment import case_seed; print(case_seed(0, 'eca', 64, (56, 56)))"
    there = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPOSITORY, check=True
    ).stdout.strip()
    assert int(there) == here
    assert case_seed(0, "eca", 64, (56, 56)) != case_seed(1, "eca", 64, (56, 56))


def test_seed_everything_repeats_weights_and_inputs():
    seed_everything(123)
    a, xa = av.create("se", 32).state_dict(), torch.randn(4)
    seed_everything(123)
    b, xb = av.create("se", 32).state_dict(), torch.randn(4)
    assert torch.equal(xa, xb)
    assert all(torch.equal(a[k], b[k]) for k in a)

"""The suite as users install it: the wheel in a fresh virtual environment that already holds
torch, used from a folder outside this checkout. The fused blocks build from the C++ source
the wheel carries, and installing keeps the torch that was there."""

import json
import os
import site
import subprocess
import sys
import zipfile
from pathlib import Path

import pandas as pd
import pytest

from bench.measurement.environment import REPOSITORY

SUITE_FILES = ("bench", "attention_variants", "cnn_attention_bench", "__editable__")


def shared_packages(target: Path) -> Path:
    """A folder of links to this environment's installed packages, less the suite itself:
    the fresh environment reuses torch and the rest instead of installing them again."""
    target.mkdir()
    for folder in map(Path, site.getsitepackages()):
        for entry in folder.iterdir():
            if entry.name.startswith(SUITE_FILES) or entry.suffix == ".pth":
                continue
            if not (target / entry.name).exists():
                (target / entry.name).symlink_to(entry)
    return target


def run(*command, cwd=None, env=None):
    done = subprocess.run([str(c) for c in command], capture_output=True, text=True, cwd=cwd,
                          timeout=900, env={**os.environ, "PIP_NO_INPUT": "1", **(env or {})})  # fmt: skip
    assert done.returncode == 0, f"{command}: {done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.mark.slow
def test_the_wheel_runs_the_fused_blocks_outside_the_checkout_and_keeps_torch(tmp_path):
    dist = tmp_path / "dist"
    run(sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", dist, REPOSITORY)
    (wheel,) = dist.glob("cnn_attention_bench-*.whl")
    carried = zipfile.ZipFile(wheel).namelist()  # the sources built on first use
    assert "attention_variants/fused/csrc/channel_gate_cpu.cpp" in carried
    assert "bench/measurement/csrc/valgrind_client.c" in carried
    # no pip or setuptools of its own: the shared ones (and their versions) are used
    run(sys.executable, "-m", "venv", "--without-pip", tmp_path / "fresh")
    python = tmp_path / "fresh" / "bin" / "python"
    fresh_site = Path(
        run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])").strip()
    )
    (fresh_site / "shared.pth").write_text(f"{shared_packages(tmp_path / 'shared')}\n")
    before = run(python, "-m", "pip", "freeze")
    assert "torch==" in before and "cnn-attention-bench" not in before
    # every dependency is already there: nothing may be fetched, and torch must stay
    run(python, "-m", "pip", "install", "--no-index", "-q", wheel)
    after = run(python, "-m", "pip", "freeze")
    added = set(after.splitlines()) - set(before.splitlines())
    names = [line.split(" @ ")[0].split("==")[0] for line in added]
    assert names == ["cnn-attention-bench"], added
    assert set(before.splitlines()) <= set(after.splitlines())  # torch line untouched

    outside = tmp_path / "elsewhere"
    outside.mkdir()
    where = run(python, "-c", "import attention_variants, bench; print(attention_variants.__file__)",
                cwd=outside)  # fmt: skip
    assert Path(where.strip()).is_relative_to(fresh_site)  # the wheel's copy, not this checkout
    run(python, "-m", "bench", "run", "--variants", "eca_fused,se_fused", "--channels", "16",
        "--resolutions", "8", "--batch-sizes", "1", "--modes", "infer,train", "--no-references",
        "--rounds", "2", "--quiet", "--out", "run", cwd=outside)  # fmt: skip
    rows = pd.read_csv(outside / "run" / "results.csv")
    assert list(rows["status"]) == ["ok"] * 4, rows[["variant", "error"]]
    env = json.loads((outside / "run" / "env.json").read_text())
    # an installed suite has a version and no checkout; it names no commit of its own
    assert env["suite"]["version"] and env["git_commit"] is None
    if Path("/usr/include/valgrind/callgrind.h").exists():  # the simulated instrument's client
        built = run(python, "-c", "from bench.measurement.simulated import client_library; "
                    "print(client_library())", cwd=outside,
                    env={"XDG_CACHE_HOME": str(tmp_path / "cache")})  # fmt: skip
        assert Path(built.strip()).is_relative_to(tmp_path / "cache")

"""What a run ran on, captured once per run, and seeding that makes every case repeatable."""

from __future__ import annotations

import datetime as dt
import hashlib
import importlib.metadata
import os
import platform
import random
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import torch

REPOSITORY = Path(__file__).resolve().parent.parent.parent
PACKAGES = (
    "torch",
    "numpy",
    "pandas",
    "seaborn",
    "matplotlib",
    "pytest-benchmark",
    "triton",
    "torch-tb-profiler",
    "tensorboard",
    "pyarrow",
)


SUITE_DISTRIBUTION = "cnn-attention-bench"


def _git(*args: str, directory: Path = REPOSITORY) -> str | None:
    try:
        result = subprocess.run(
            ["git", "-C", str(directory), *args],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip()


def git_state(directory: Path) -> dict[str, Any]:
    """The git repository holding `directory`: its top folder (the main one's, for a
    worktree of it, which `checkout` names), commit, and whether its tracked files differ from
    the commit (dirty); all None outside a repository."""
    top = _git("rev-parse", "--show-toplevel", directory=directory)
    if top is None:
        return {"repository": None, "checkout": None, "commit": None, "dirty": None}
    common = _git("rev-parse", "--path-format=absolute", "--git-common-dir", directory=directory)
    main = str(Path(common).parent) if common and Path(common).name == ".git" else top
    status = _git("status", "--porcelain", "--untracked-files=no", directory=directory)
    return {
        "repository": main,
        "checkout": top,
        "commit": _git("rev-parse", "HEAD", directory=directory),
        "dirty": None if status is None else bool(status),
    }


def suite_revision() -> dict[str, Any]:
    """The suite's own version, and its commit where it runs from a checkout of its own (an
    installed wheel has none; a virtual environment inside someone's repository is not the
    suite's checkout, so only a repository whose top folder is the suite's counts)."""
    try:
        version = importlib.metadata.version(SUITE_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        version = None
    state = git_state(REPOSITORY)
    own = state["checkout"] is not None and Path(state["checkout"]).resolve() == REPOSITORY
    return {
        "version": version,
        "location": str(REPOSITORY),
        "git_commit": state["commit"] if own else None,
        "git_dirty": state["dirty"] if own else None,
    }


def files_digest(paths: list[Path]) -> str:
    """SHA-256 over the files' names (relative to their common folder) and contents, sorted:
    the same for the same code wherever it lies."""
    paths = sorted(Path(p).resolve() for p in paths)
    root = Path(os.path.commonpath([str(p.parent) for p in paths])) if paths else Path()
    digest = hashlib.sha256()
    for path in paths:
        digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def _package_versions() -> dict[str, str | None]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _cuda() -> dict[str, Any]:
    if not torch.cuda.is_available():
        return {"available": False, "version": torch.version.cuda, "devices": []}
    devices = []
    for index in range(torch.cuda.device_count()):
        props = torch.cuda.get_device_properties(index)
        devices.append(
            {
                "index": index,
                "name": props.name,
                "capability": f"{props.major}.{props.minor}",
                "total_memory_bytes": props.total_memory,
                "multiprocessors": props.multi_processor_count,
                "l2_cache_bytes": getattr(props, "L2_cache_size", None),
            }
        )
    return {
        "available": True,
        "version": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version(),
        "devices": devices,
    }


# variables that change how many threads run and how they wait: runs differ if these do
THREADING_VARIABLES = ("OMP_", "MKL_", "KMP_", "GOMP_", "OPENBLAS_", "TORCH_", "CUDA_VISIBLE")


def load_average() -> list[float] | None:
    """The 1, 5 and 15-minute load averages, where the OS reports them."""
    try:
        return [round(value, 2) for value in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return None


def _cpu_frequency() -> dict[str, Any]:
    """Scaling governor and turbo boost, where Linux exposes them (None: not readable here)."""
    no_turbo = _read("/sys/devices/system/cpu/intel_pstate/no_turbo")
    boost = _read("/sys/devices/system/cpu/cpufreq/boost")
    return {
        "governor": _read("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor"),
        "boost": (no_turbo == "0") if no_turbo is not None else boost == "1" if boost else None,
    }


def _matmul_precision() -> dict[str, Any]:
    """TF32 and cuDNN switches: they change both the cases' times and the matmul ceiling."""
    return {
        "float32_matmul_precision": torch.get_float32_matmul_precision(),
        "cuda_matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32,
        "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
        "cudnn_enabled": torch.backends.cudnn.enabled,
        "cudnn_benchmark": torch.backends.cudnn.benchmark,
        "cudnn_deterministic": torch.backends.cudnn.deterministic,
    }


def capture(seed: int | None = None) -> dict[str, Any]:
    """Environment facts for env.json: time, host, software, devices, threads, git state, seed,
    and what makes two runs comparable (load, threading variables, CPU frequency, TF32)."""
    suite = suite_revision()
    own = suite["git_commit"] is not None  # the suite's own checkout
    untracked = _git("ls-files", "--others", "--exclude-standard") if own else None
    return {
        "utc_time": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "host": platform.node(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_git_version": torch.version.git_version,
        "cuda": _cuda(),
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "parallel_info": torch.__config__.parallel_info(),
        # the suite's checkout (None when the suite is an installed package)
        "git_commit": suite["git_commit"],
        "git_dirty": suite["git_dirty"],
        "git_untracked_files": None if untracked is None else bool(untracked),
        "suite": suite,
        "load_average_start": load_average(),
        "threading_environment": {
            k: v for k, v in sorted(os.environ.items()) if k.startswith(THREADING_VARIABLES)
        },
        "cpu_frequency": _cpu_frequency(),
        "matmul_precision": _matmul_precision(),
        "packages": _package_versions(),
        "seed": seed,
    }


def case_seed(base_seed: int, *key: Any) -> int:
    """A seed for one case, stable across runs and machines (Python's hash() is salted)."""
    digest = hashlib.sha256(repr((base_seed, *key)).encode()).digest()
    return int.from_bytes(digest[:4], "little")


def seed_everything(seed: int) -> None:
    """Seed torch (every device), numpy and random, so weights and inputs repeat exactly."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)

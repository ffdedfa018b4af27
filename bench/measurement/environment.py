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


def _git(*args: str) -> str | None:
    try:
        result = subprocess.run(
            ["git", "-C", str(REPOSITORY), *args],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip()


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
    commit = _git("rev-parse", "HEAD")
    status = _git("status", "--porcelain", "--untracked-files=no")
    untracked = _git("ls-files", "--others", "--exclude-standard")
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
        "git_commit": commit,
        "git_dirty": None if status is None else bool(status),
        "git_untracked_files": None if untracked is None else bool(untracked),
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

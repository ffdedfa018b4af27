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


def capture(seed: int | None = None) -> dict[str, Any]:
    """Environment facts for env.json: time, host, software, devices, threads, git state, seed."""
    commit = _git("rev-parse", "HEAD")
    status = _git("status", "--porcelain", "--untracked-files=no")
    return {
        "utc_time": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "host": platform.node(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_git_version": torch.version.git_version,
        "cuda": _cuda(),
        "mps_available": bool(getattr(torch.backends, "mps", None))
        and torch.backends.mps.is_available(),
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "parallel_info": torch.__config__.parallel_info(),
        "git_commit": commit,
        "git_dirty": None if status is None else bool(status),
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

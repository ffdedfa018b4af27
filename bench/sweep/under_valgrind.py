"""A simulated sweep's second process: the sweep itself, run under valgrind.

`bench.sweep.runner.execute` starts a run directory here, on the clock, and hands its cases to
a process it starts under callgrind (`python -m bench.sweep.under_valgrind RUN_DIR`), which
counts them and writes their rows into the same directory, as a resume would. Nothing is
counted outside a case's region, so the interpreter's start-up and the builds cost only
valgrind's slower execution, not counts.
"""

from __future__ import annotations

import argparse
import sys

import torch

from .resume import open_resumed, plan_resume
from .runner import execute


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    run = open_resumed(args.run_dir, force=True)  # started a moment ago, by the parent
    run.run_dir.update_env(
        simulated_cpu_capability=torch.backends.cpu.get_cpu_capability(),
        simulated_threads=torch.get_num_threads(),
    )
    summary = execute(run, todo=plan_resume(run, retry_failed=False).todo, quiet=args.quiet)
    return summary.exit_code


if __name__ == "__main__":
    sys.exit(main())

"""The main job: the quick sweep on the CPU, then its report; prints where everything went.

python run_all.py [--out DIR] [any option of `python -m bench run`, e.g. --preset default]
"""

import argparse
import sys

from bench.cli import add_run_arguments, execute_run
from bench.report.builder import report
from bench.sweep.rundir import RunDirectory


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_run_arguments(parser, default_preset="quick")
    args = parser.parse_args(argv)
    outcome = execute_run(args, default_preset="quick")
    run_dir = outcome.run_dir
    if run_dir is None or not RunDirectory.holds_run(run_dir):
        return outcome.exit_code
    written = report(run_dir)
    print(f"report: {run_dir / 'report.md'} ({len(written)} files in tables/ and plots/)")
    print(f"results: {run_dir / 'results.csv'}, {run_dir / 'results.parquet'}")
    return outcome.exit_code


if __name__ == "__main__":
    sys.exit(main())

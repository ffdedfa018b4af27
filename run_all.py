"""The main job: the quick sweep on the CPU, then the report; prints where everything went.

python run_all.py [--out DIR] [any `python -m bench run` option]
"""

import argparse
import sys

from bench.cli import _add_run_arguments, command_run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    _add_run_arguments(parser, default_preset="quick")
    args = parser.parse_args(argv)
    code = command_run(args, default_preset="quick")
    if args.dry_run or code == 2:
        return code
    return code


if __name__ == "__main__":
    sys.exit(main())

"""``python -m bench run | list | schema | merge | report | compare | fused | network |
kernel-traffic | gpu-report | ab | history``: the suite's command line."""

from __future__ import annotations

import argparse
import shutil
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import attention_variants as av

from . import gpu_report
from .history.commands import add_history_parser, command_history
from .programs import (
    add_check_arguments,
    add_fused_arguments,
    add_network_arguments,
    command_check,
    command_fused,
    command_kernel_traffic,
    command_network,
)
from .sweep.plugins import load_plugin
from .sweep.presets import PRESETS
from .sweep.shards import Shard
from .sweep.spec import SpecError, build_spec


def add_run_arguments(parser: argparse.ArgumentParser, default_preset: str | None) -> None:
    parser.add_argument(
        "--preset",
        default=None,
        choices=sorted(PRESETS),
        help=f"base sweep (default: {default_preset or 'none'})",
    )
    parser.add_argument("--spec", metavar="YAML", help="a sweep spec file (on top of the preset)")
    sweep = parser.add_argument_group("overrides (comma-separated lists)")
    sweep.add_argument(
        "--variants", help="e.g. eca,se(reduction=8),eca_mha(heads=8); all = every one"
    )
    sweep.add_argument("--batch-sizes", dest="batch_sizes")
    sweep.add_argument("--channels")
    sweep.add_argument("--resolutions", help="e.g. 28,56,32x64")
    sweep.add_argument("--dtypes", help="float32, float16, bfloat16")
    sweep.add_argument("--devices", help="auto, cpu, cuda, cuda:N")
    sweep.add_argument("--modes", help="infer, train")
    sweep.add_argument("--memory-formats", dest="memory_formats", help="contiguous, channels_last")
    sweep.add_argument("--compile", help="off, on, or off,on")
    sweep.add_argument("--threads", type=int, help="intra-op threads while timing")
    sweep.add_argument("--seed", type=int)
    sweep.add_argument(
        "--rounds", type=int, help="rounds per case, each on a fresh copy of the input (timing)"
    )
    sweep.add_argument(
        "--max-time",
        dest="max_time_s",
        type=float,
        metavar="SECONDS",
        help="each case's time cap over all its rounds (timing.max_time_s)",
    )
    sweep.add_argument(
        "--instrument",
        choices=("wall", "simulated"),
        help="wall: time on the clock; simulated: count instructions and simulated cache "
        "misses under valgrind, one run per side enough for the gate (timing.instrument)",
    )
    sweep.add_argument(
        "--launch",
        help="eager, graph or eager,graph: graph replays the calls from a CUDA graph over "
        "rotated copies of the input (device time, L2 cold; CUDA only) (timing.launch)",
    )
    sweep.add_argument(
        "--no-references",
        dest="references",
        action="store_const",
        const=False,
        help="skip the identity / conv3x3 / copy references",
    )
    parser.add_argument(
        "--plugin",
        action="append",
        default=[],
        metavar="MODULE_OR_FILE",
        help="import a module or .py file that registers variants (repeatable)",
    )
    parser.add_argument(
        "--profile",
        action="store_const",
        const=True,
        default=None,
        help="write torch.profiler traces per case under traces/",
    )
    parser.add_argument("--out", metavar="DIR", help="run directory (default: results/<run id>)")
    parser.add_argument("--resume", metavar="RUN_DIR", help="run only what RUN_DIR lacks")
    parser.add_argument(
        "--retry-failed",
        action="store_true",
        help="with --resume: also run again the cases that crashed, erred or ran out of memory",
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="with --resume: go on even if torch, the devices or the commit differ from the run's",
    )
    scale = parser.add_argument_group("scale-out (submitit)")
    scale.add_argument("--shard", metavar="K/N", help="run only the K-th of N parts of the sweep")
    scale.add_argument("--shards", type=int, metavar="N", help="cut the sweep into N shards")
    scale.add_argument("--executor", choices=["debug", "local", "slurm"], help="where shards run")
    scale.add_argument("--slurm-partition", dest="slurm_partition")
    scale.add_argument("--timeout-min", dest="timeout_min", type=int, help="per shard")
    scale.add_argument("--gpus-per-task", dest="gpus_per_task", type=int)
    scale.add_argument("--cpus-per-task", dest="cpus_per_task", type=int)
    scale.add_argument(
        "--array-parallelism", dest="slurm_array_parallelism", type=int, help="shards at once"
    )
    scale.add_argument(
        "--slurm-additional",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any other sbatch option (repeatable), e.g. account=my-lab",
    )
    scale.add_argument(
        "--exclusive",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="each Slurm shard a whole node (default: yes for CPU-only sweeps)",
    )
    scale.add_argument(
        "--no-wait", action="store_true", help="submit, print the job ids and the merge command"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--dry-run", action="store_true", help="list the cases and stop")


OVERRIDES = (
    "variants",
    "batch_sizes",
    "channels",
    "resolutions",
    "dtypes",
    "devices",
    "modes",
    "memory_formats",
    "compile",
    "threads",
    "seed",
    "references",
)


EXECUTOR_FLAGS = (
    "shards",
    "executor",
    "slurm_partition",
    "timeout_min",
    "gpus_per_task",
    "cpus_per_task",
    "slurm_array_parallelism",
    "slurm_additional",
    "exclusive",
)


def _executor_block(args: argparse.Namespace) -> dict | None:
    """The `executor:` spec block the command line asks for (on top of the YAML's), or None."""
    given = {name: getattr(args, name) for name in EXECUTOR_FLAGS}
    given = {k: v for k, v in given.items() if v not in (None, [])}
    if not given:
        return None
    if "executor" in given:  # without it, ExecutorOptions' own default (local)
        given["kind"] = given.pop("executor")
    extra = given.pop("slurm_additional", [])
    if extra:
        pairs = [item.partition("=") for item in extra]
        bad = [item for item, (_, sep, _) in zip(extra, pairs, strict=True) if not sep]
        if bad:
            raise SpecError([f"--slurm-additional {bad[0]!r}: allowed: KEY=VALUE"])
        given["slurm_additional"] = {key: value for key, _, value in pairs}
    return given


def _overrides(args: argparse.Namespace) -> dict:
    overrides = {name: getattr(args, name) for name in (*OVERRIDES, "profile")}
    timing = {
        "rounds": args.rounds, "max_time_s": args.max_time_s, "instrument": args.instrument,
        "launch": args.launch,
    }  # fmt: skip
    timing = {k: v for k, v in timing.items() if v is not None}
    if timing:
        overrides["timing"] = timing
    block = _executor_block(args)
    if block:
        overrides["executor"] = block
    if args.plugin:
        overrides["plugins"] = args.plugin
    return overrides


# what a resumed run takes from its own spec.yaml: giving any of these with --resume is an error
SWEEP_FLAGS = (
    "preset",
    "spec",
    "out",
    "plugin",
    "profile",
    "shard",
    "rounds",
    "max_time_s",
    "instrument",
    "launch",
    *OVERRIDES,
    *EXECUTOR_FLAGS,
)


def _resume_conflicts(args: argparse.Namespace) -> list[str]:
    return [
        "--" + name.replace("_", "-")
        for name in SWEEP_FLAGS
        if getattr(args, name, None) not in (None, [], False)
    ]


@dataclass
class RunOutcome:
    """What `bench run` (and `run_all.py`) ended with: its exit code and run directory."""

    exit_code: int
    run_dir: Path | None = None  # None: nothing was run (a dry run, or bad input)


def command_run(args: argparse.Namespace, default_preset: str | None = None) -> int:
    return execute_run(args, default_preset).exit_code


def execute_run(args: argparse.Namespace, default_preset: str | None = None) -> RunOutcome:
    """`bench run`: a new sweep, a shard, a sharded sweep, or a resume (see `--help`)."""
    from .measurement.simulated import SimulatedInstrumentError, require_valgrind
    from .sweep.resume import ResumeError

    try:
        if args.resume:
            return _resume(args)
        if args.retry_failed or args.force:
            raise SpecError(["--retry-failed and --force only go with --resume RUN_DIR"])
        preset = args.preset or (None if args.spec else default_preset)
        spec, notes = build_spec(preset, args.spec, _overrides(args))
        for note in notes:
            print(f"note: {note}")
        shard = _shard(args) if args.shard else None
        if shard is not None and spec.executor is not None:
            raise SpecError(["--shard K/N runs one shard here: it goes without --shards"])
        if spec.executor is not None and not args.dry_run:
            return _run_sharded(spec, args)
        from .sweep.plan import cases_of, start_run
        from .sweep.runner import execute

        cases = cases_of(spec, shard)  # expanded once: listed, counted and run from here
        if args.dry_run:
            for case in cases:
                print(case.label)
            print(f"{len(cases)} cases")
            return RunOutcome(0)
        if spec.timing.instrument == "simulated":
            require_valgrind()  # before a run directory exists
        prefix = f"shard {shard.label}: " if shard is not None else ""
        print(f"{prefix}{len(cases)} cases ({spec.preset or 'custom'} sweep)", flush=True)
        summary = execute(start_run(spec, args.out, shard=shard, cases=cases), quiet=args.quiet)
    except (
        SpecError, ResumeError, SimulatedInstrumentError, FileNotFoundError, FileExistsError
    ) as error:  # fmt: skip
        print(f"error: {error}", file=sys.stderr)
        return RunOutcome(2)
    return _finished(summary)


def _resume(args: argparse.Namespace) -> RunOutcome:
    from .sweep.resume import open_resumed, plan_resume
    from .sweep.runner import resume_sweep

    conflicts = _resume_conflicts(args)
    if conflicts:
        raise SpecError(
            [f"{', '.join(conflicts)} cannot be given with --resume: a resumed run keeps its "
             "own spec.yaml (start a new run to change the sweep)"]
        )  # fmt: skip
    if args.dry_run:  # what it would run, without running or changing anything
        plan = plan_resume(open_resumed(args.resume, force=args.force),
                           retry_failed=args.retry_failed)  # fmt: skip
        if plan.crashed is not None:
            print(f"crashed (to be recorded): {plan.crashed.label}")
        for case in plan.todo:
            print(case.label)
        print(f"{len(plan.todo)} cases would run")
        return RunOutcome(0)
    summary = resume_sweep(
        args.resume, retry_failed=args.retry_failed, force=args.force, quiet=args.quiet
    )
    return _finished(summary)


def _finished(summary) -> RunOutcome:
    print(summary.line())
    if summary.interrupted:
        print(f"resume with: python -m bench run --resume {summary.run_dir}")
    return RunOutcome(summary.exit_code, summary.run_dir)


def _shard(args: argparse.Namespace) -> Shard:
    try:
        return Shard.parse(args.shard)
    except ValueError as error:
        raise SpecError([str(error)]) from None


def _run_sharded(spec, args: argparse.Namespace) -> RunOutcome:
    from .sweep.executors import run_sharded
    from .sweep.rundir import new_run_id

    out = Path(args.out or Path("results") / new_run_id())
    return RunOutcome(run_sharded(spec.to_dict(), out, spec.executor, wait=not args.no_wait), out)


def command_list(args: argparse.Namespace) -> int:
    for plugin in args.plugin:
        try:
            load_plugin(plugin)
        except ImportError as error:
            print(f"error: plugin {error}", file=sys.stderr)
            return 2
    width = max(60, min(shutil.get_terminal_size().columns, 100))

    def say(text: str, first: str, rest: str) -> None:  # wrapped whole, never cut
        print(textwrap.fill(text, width, initial_indent=first, subsequent_indent=rest))

    print("variants:")
    for name in av.available():
        info = av.info(name)
        options = ", ".join(f"{k}={v!r}" for k, v in info.options.items()) or "-"
        indent = " " * 15
        say(info.description, f"  {name:<12} ", indent)
        say(f"paper: {info.paper or '-'}", indent, indent + "  ")
        say(f"options: {options}", indent, indent + "  ")
        for option in info.options:
            say(f"{option}: {info.option_help.get(option, '(no description)')}",
                indent + "  ", indent + "    ")  # fmt: skip
        say(f"devices: {', '.join(info.devices)}; dtypes: {', '.join(info.dtypes)}; backward: "
            f"{'yes' if info.backward else 'no'}", indent, indent + "  ")  # fmt: skip
    print("presets:")
    for name, preset in PRESETS.items():
        say(preset["description"], f"  {name:<15} ", " " * 18)
    return 0


def command_merge(args: argparse.Namespace) -> int:
    from .sweep.merge import MergeError, merge

    try:
        summary = merge(args.run_dirs, args.out, allow_mixed=args.allow_mixed)
    except MergeError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(summary.line())
    return summary.exit_code


def command_schema(args: argparse.Namespace) -> int:
    import json

    from .sweep.spec import json_schema

    print(json.dumps(json_schema(), indent=2))
    return 0


def command_report(args: argparse.Namespace) -> int:
    from .report.builder import report
    from .sweep.rundir import RunDirectoryError

    try:
        written = report(Path(args.run_dir))
    except RunDirectoryError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"report: {len(written)} files under {args.run_dir}/tables and {args.run_dir}/plots")
    return 0


def command_compare(args: argparse.Namespace) -> int:
    from .gate.compare import CompareInputError, compare, parse_threshold
    from .gate.render import markdown, to_json

    try:
        result = compare(
            args.base,
            args.new,
            threshold=None if args.threshold is None else parse_threshold(args.threshold),
            alpha=args.alpha,
            reference=None if args.absolute else args.reference,
            strict=args.strict,
            metric=args.metric,
        )
    except CompareInputError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    text = markdown(result)
    print(text)
    if args.output:
        Path(args.output).write_text(text)
    if args.json:
        import json

        Path(args.json).write_text(json.dumps(to_json(result), indent=2) + "\n")
    return result.exit_code


def command_ab(args: argparse.Namespace, sweep_args: list[str]) -> int:
    from .gate.ab import run_ab

    return run_ab(
        args.base,
        args.new,
        sweep_args,
        repo=args.repo,
        runs=args.runs,
        out=args.out,
        threshold=args.threshold,
        alpha=args.alpha,
        strict=args.strict,
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench", description="Benchmark attention blocks for CNNs."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run a sweep into a run directory")
    add_run_arguments(run, default_preset="quick")
    run.set_defaults(handler=lambda a: command_run(a, default_preset="quick"))
    schema = commands.add_parser("schema", help="print the sweep spec's JSON Schema")
    schema.set_defaults(handler=command_schema)
    listing = commands.add_parser("list", help="show the variants and presets")
    listing.add_argument("--plugin", action="append", default=[], metavar="MODULE_OR_FILE")
    listing.set_defaults(handler=command_list)
    merging = commands.add_parser("merge", help="join the shards of a sweep into one run")
    merging.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
    merging.add_argument("--out", required=True, metavar="DIR")
    merging.add_argument(
        "--allow-mixed", action="store_true", help="shards from different machines, told apart"
    )
    merging.set_defaults(handler=command_merge)
    rep = commands.add_parser("report", help="write tables and charts for a run directory")
    rep.add_argument("run_dir")
    rep.set_defaults(handler=command_report)
    cmp = commands.add_parser(
        "compare", help="gate NEW against BASE (exit 1 on a regression, 3 if inconclusive)"
    )
    cmp.add_argument("base", help="run directory, directory of runs, or pytest-benchmark JSON")
    cmp.add_argument("new")
    _add_gate_arguments(cmp)
    cmp.add_argument(
        "--absolute",
        action="store_true",
        help="compare raw times instead of times over the reference beside them",
    )
    cmp.add_argument("--reference", default="copy", help="the reference to divide by (copy)")
    cmp.add_argument(
        "--metric",
        help="simulated sides: the count to decide on (instructions, estimated_cycles, "
        "l1_misses, ll_misses; default instructions, the one that moves least between "
        "processes)",
    )
    cmp.add_argument("--output", metavar="FILE", help="also write the Markdown report here")
    cmp.add_argument("--json", metavar="FILE", help="also write the verdict as JSON here")
    cmp.set_defaults(handler=command_compare)
    fused = commands.add_parser(
        "fused", help="fused blocks against eager and a copy, per shape and layout (a sweep)"
    )
    add_fused_arguments(fused)
    fused.set_defaults(handler=command_fused)
    check = commands.add_parser(
        "check", help="the measurement's self-checks: timing against torch.utils.benchmark, "
        "the memory tracker against CUDA's allocator"
    )  # fmt: skip
    add_check_arguments(check)
    check.set_defaults(handler=command_check)
    network = commands.add_parser(
        "network", help="ResNet plain, with each block eager and fused, in turns (a sweep)"
    )
    add_network_arguments(network)
    network.set_defaults(handler=command_network)
    traffic = commands.add_parser(
        "kernel-traffic",
        help="count the Triton kernels' bytes of a run's fused cases under the interpreter "
        "(run with TRITON_INTERPRET=1; bench fused does it for its runs)",
    )
    traffic.add_argument("run_dir")
    traffic.set_defaults(handler=command_kernel_traffic)
    gpu = commands.add_parser(
        "gpu-report",
        help="the fused blocks' GPU figures in one go (fixed cost, fused, ResNet-50; eager and "
        "graph-replayed) into results/gpu/<device>",
    )
    gpu_report.add_arguments(gpu)
    gpu.set_defaults(handler=gpu_report.command_gpu_report)
    ab = commands.add_parser(
        "ab",
        help="sweep two git revisions interleaved on this machine, then compare",
        description="Unknown options are passed to `bench run` for both revisions.",
    )
    ab.add_argument(
        "--base",
        required=True,
        help="git revision, . for the working tree, or auto: the merge-base of NEW with the "
        "default branch (origin/HEAD, main or master)",
    )
    ab.add_argument("--new", default=".", help="git revision (default: the working tree)")
    ab.add_argument(
        "--repo",
        metavar="DIR",
        help="the git repository of the code under test (default: the one holding the "
        "current folder); --plugin files are taken from each revision of it",
    )
    ab.add_argument(
        "--runs",
        type=int,
        help="sweeps per revision, in turns (default 2 on wall time: one process's rounds do "
        "not see how much processes differ; 1 on --instrument simulated, both sides at once; "
        "--rounds N and --instrument are passed on to bench run)",
    )
    ab.add_argument("--out", metavar="DIR", help="where the runs go (default: ./results/ab-<time>)")
    _add_gate_arguments(ab)
    ab.set_defaults(handler=None)
    add_history_parser(commands)
    return parser


def _add_gate_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--threshold",
        help="slowdown that counts (default 10%% on wall time, 2%% on simulated counts)",
    )
    parser.add_argument(
        "--alpha",
        type=float,
        default=0.05,
        help="false discovery rate over the suite's cases (Benjamini-Hochberg; default 0.05)",
    )
    parser.add_argument(
        "--strict",
        action="store_true",
        help="exit 3 when a case is undetermined (its interval reaches past a threshold's "
        "bound), not only when one is inconclusive",
    )


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    try:
        if args.command == "ab":
            return command_ab(args, unknown)
        if args.command == "history":
            return command_history(args, unknown)
        if unknown:
            parser.error(f"unrecognized arguments: {' '.join(unknown)}")
        return args.handler(args)
    except KeyboardInterrupt:  # before a run directory exists, or in report / compare
        print("interrupted", file=sys.stderr)
        return 130

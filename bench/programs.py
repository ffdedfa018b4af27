"""`bench fused` and `bench network`: named sweeps (presets `fused` and `network-fused`) run
into an ordinary run directory, reported, and their comparison table printed; and `bench
check`, the measurement wing's self-checks printed (the wing itself holds no programs).

Each is a sweep like any other, measured by the one measurement path, so `bench report` and
`bench compare` read its run directory as they read any sweep's; the tables come from
`bench.report.comparisons`.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

# the shapes of `bench fused --device cuda`: large enough to leave the GPU's L2
GPU_SHAPES = ["32x256x56x56", "128x512x14x14", "64x1024x14x14", "32x2048x7x7", "256x256x28x28",
              "8x64x112x112"]  # fmt: skip


def add_fused_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument("--mode", default="infer", choices=["infer", "train"])
    parser.add_argument("--dtypes", default="float32", help="float32, float16, bfloat16, ...")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--budget-s", type=float, default=0.2, help="least timing per case")
    parser.add_argument("--compile", action="store_true", help="also torch.compile of each")
    parser.add_argument("--shapes", help="BxCxHxW,... (default: the preset's, or GPU_SHAPES)")
    parser.add_argument("--fixed-cost", action="store_true", help="only a call's fixed cost")
    parser.add_argument(
        "--no-kernel-traffic", dest="kernel_traffic", action="store_false",
        help="skip counting the Triton kernels' bytes under the interpreter (a few seconds a "
        "shape, then cached)",
    )  # fmt: skip
    _launch_argument(parser)
    _common(parser)


def add_network_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument("--depth", type=int, default=50)
    parser.add_argument("--resolution", type=int, default=224)
    parser.add_argument("--batch-sizes", default="1,4,8")
    parser.add_argument("--modes", default="infer,train")
    parser.add_argument("--blocks", default="eca,se", help="each eager and fused")
    parser.add_argument("--compile", action="store_true", help="also every network compiled")
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--budget-s", type=float, default=1.6, help="least timing per network")
    parser.add_argument("--profile", action="store_true", help="a torch.profiler trace each")
    _launch_argument(parser)
    _common(parser)


def _launch_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--launch", default="eager",
        help="eager, graph or eager,graph: graph replays each call from a CUDA graph (its "
        "device time; eager minus graph is the launch cost; CUDA only)",
    )  # fmt: skip


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", metavar="DIR", help="run directory (default: results/<run id>)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def fused_overrides(args: argparse.Namespace) -> dict[str, Any]:
    overrides: dict[str, Any] = {
        "devices": args.device, "modes": args.mode, "dtypes": args.dtypes,
        "compile": "off,on" if args.compile else "off",
        "timing": {"rounds": args.rounds, "min_time_s": args.budget_s,
                   "max_time_s": 4 * args.budget_s, "launch": args.launch},
    }  # fmt: skip
    if args.shapes:
        overrides["shapes"] = args.shapes.split(",")
    elif args.device.startswith("cuda"):
        overrides["shapes"] = GPU_SHAPES
    return overrides


def network_overrides(args: argparse.Namespace) -> dict[str, Any]:
    blocks = [b for block in args.blocks.split(",") for b in (block, f"{block}_fused")]
    return {
        "devices": args.device, "compile": "off,on" if args.compile else "off",
        "profile": args.profile or None,
        "network": {"depth": args.depth, "resolution": args.resolution,
                    "batch_sizes": args.batch_sizes, "modes": args.modes, "variants": blocks},
        "timing": {"rounds": args.rounds, "min_time_s": args.budget_s,
                   "max_time_s": max(12.0, 4 * args.budget_s), "launch": args.launch},
    }  # fmt: skip


def run_program(preset: str, overrides: dict[str, Any], args: argparse.Namespace, table: str):
    """Run `preset` with `overrides` into a run directory, report it, print tables/`table`*."""
    from .report.builder import report
    from .sweep.runner import run_sweep
    from .sweep.spec import SpecError, build_spec

    try:
        spec, _ = build_spec(preset, None, {k: v for k, v in overrides.items() if v is not None})
    except SpecError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    summary = run_sweep(spec, args.out, quiet=args.quiet)
    print(summary.line())
    if summary.interrupted:
        print(f"resume with: python -m bench run --resume {summary.run_dir}")
        return summary.exit_code
    if getattr(args, "kernel_traffic", False):
        count_kernel_traffic(summary.run_dir)
    for path in sorted(report(summary.run_dir)):
        if path.name.startswith(f"{table}_") and path.suffix == ".md":
            print(f"\n{path}:\n\n{path.read_text()}")
    return summary.exit_code


def count_kernel_traffic(run_dir) -> bool:
    """The run's fused rows' Triton kernel bytes, counted in a process of their own (Triton's
    interpreter must be on before triton is imported); a failure is reported, not raised: the
    sweep's results stand without the counts."""
    import os
    import subprocess

    from attention_variants.fused import triton_available

    if not triton_available():
        print("kernel traffic: not counted (pip install triton to count the fused kernels)")
        return False
    done = subprocess.run(
        [sys.executable, "-m", "bench", "kernel-traffic", str(run_dir)],
        env={**os.environ, "TRITON_INTERPRET": "1"},
    )
    if done.returncode != 0:
        print(f"warning: counting the kernels' traffic failed (exit {done.returncode})")
    return done.returncode == 0


def count_run(run_dir, *, quiet: bool = False) -> int:
    """Count the Triton kernels of every fused row of a run (each once; counts are kept in
    ~/.cache/attention-bench by the kernels' source) into its kernel_traffic.csv."""
    import json
    from pathlib import Path

    from .measurement.kernel_traffic import count_block, source_digest
    from .sweep.rundir import RunDirectory
    from .sweep.variant_expr import VariantSpec

    run = RunDirectory(run_dir)
    rows = run.results()
    fused = rows[rows["variant"].astype(str).str.endswith("_fused") & (rows["role"] == "variant")]
    cache_path = Path.home() / ".cache" / "attention-bench" / "kernel-traffic.json"
    cache = json.loads(cache_path.read_text()) if cache_path.exists() else {}
    digest, records = source_digest(), []
    for index, row in enumerate(fused.to_dict("records"), 1):
        shape = tuple(int(row[k]) for k in ("batch", "channels", "height", "width"))
        setting = (row["memory_format"], row["dtype"], row["mode"])
        key = repr((digest, row["variant_label"], shape, setting))
        if key not in cache:
            if not quiet:
                print(f"kernel traffic {index}/{len(fused)}: {row['label']}", flush=True)
            variant = VariantSpec.parse(row["variant_label"])
            cache[key] = count_block(variant.name, shape, *setting, options=variant.options_dict)
            cache_path.parent.mkdir(parents=True, exist_ok=True)
            cache_path.write_text(json.dumps(cache))
        records.append({"case_id": row["case_id"], **cache[key]})
    run.write_kernel_traffic(records)
    return len(records)


def command_kernel_traffic(args: argparse.Namespace) -> int:
    """`bench kernel-traffic RUN_DIR`: under TRITON_INTERPRET=1 (set before the process starts)."""
    try:
        counted = count_run(args.run_dir)
    except RuntimeError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"counted the kernels of {counted} fused cases into {args.run_dir}/kernel_traffic.csv")
    return 0


def command_fused(args: argparse.Namespace) -> int:
    if args.fixed_cost:
        from .measurement.fixed_cost import fixed_cost

        fixed_cost(args.device, out=args.out)
        return 0
    return run_program("fused", fused_overrides(args), args, "fused")


def command_network(args: argparse.Namespace) -> int:
    return run_program("network-fused", network_overrides(args), args, "network_ratio")


def add_check_arguments(parser: argparse.ArgumentParser) -> None:
    checks = parser.add_subparsers(dest="check", required=True)
    timing = checks.add_parser(
        "timing", help="our medians against torch.utils.benchmark's, timed in turns (CPU)"
    )
    timing.add_argument("--threads", type=int, default=1)
    timing.add_argument("--repeats", type=int, default=5, help="runs of each (default 5)")
    timing.add_argument(
        "--min-time", dest="min_time_s", type=float, default=1.0, metavar="SECONDS",
        help="each run's budget (default 1 s)",
    )  # fmt: skip
    checks.add_parser("memory", help="the live-storage tracker against CUDA's allocator")


def command_check(args: argparse.Namespace) -> int:
    """`bench check timing` and `bench check memory`: the measurement's self-checks."""
    if args.check == "memory":
        from .measurement.memory import self_check

        try:
            rows = self_check()
        except RuntimeError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        for row in rows:
            print(f"{row['case']:<34} {row['mode']:<5} tracker {row['tracker_bytes']:>12,} B  "
                  f"allocator {row['allocator_bytes']:>12,} B  ratio {row['ratio']:.3f}")  # fmt: skip
        return 0
    from .measurement.timing_check import self_check

    if args.repeats < 1 or args.min_time_s <= 0:
        print("error: --repeats and --min-time: allowed: at least 1 and above 0", file=sys.stderr)
        return 2

    def show(row: dict[str, Any]) -> None:
        print(f"{row['case']:<26} ours {row['ours_us']:8.1f} us  torch.utils.benchmark "
              f"{row['torch_benchmark_us']:8.1f} us  ratio {row['ratio']:.3f}  spread of "
              f"{args.repeats} repeats: ours {row['ours_spread']:.1%}, torch.utils.benchmark "
              f"{row['torch_benchmark_spread']:.1%}", flush=True)  # fmt: skip

    rows = self_check(args.threads, args.repeats, args.min_time_s, report=show)
    worst = max(abs(r["ratio"] - 1) for r in rows)
    print(f"threads={args.threads}: largest difference from torch.utils.benchmark {worst:.1%} "
          f"(goal <= 5%); largest repeat spread: ours "
          f"{max(r['ours_spread'] for r in rows):.1%}, torch.utils.benchmark "
          f"{max(r['torch_benchmark_spread'] for r in rows):.1%} (goal <= 2%)")  # fmt: skip
    return 0

"""`bench gpu-report`: every figure the fused blocks owe a GPU, in one go, into one folder.

Its steps are ordinary `bench` commands, run one after the other in processes of their own, each
into a run directory (or folder) under `--out`, most important first, so a step that fails or
runs out of time leaves the ones before it whole:

1. `fixed-cost`: the CPU time of one fused call (host timing and a torch.profiler profile);
2. `fused`: the fused blocks and their eager twins at the large GPU shapes, fp32 and bf16,
   launched eagerly and replayed from CUDA graphs (with the L2 kept cold);
3. `network`: ResNet-50 plain, with eca, eca_fused, se and se_fused, batch 1 and 8, eager and
   graph-replayed;
4. `network-compiled`: the same with eca and eca_fused, eager and `torch.compile`d.

`summary.md` is written after every step: each step's outcome and tables, and the goals read
from them. `--dry-run` builds and checks every step's sweep (with CUDA assumed present) and
prints the plan, so a CPU machine can check the script before a GPU is lent.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

FUSED_CALL_CPU_GOAL_US = 25.0
FUSED_BANDWIDTH_GOAL = 0.85  # of a copy's, graph-replayed, at the large shapes
DEFAULT_BUDGET_S = 480.0  # the whole report on an H100


@dataclass(frozen=True)
class Step:
    name: str
    argv: list[str]  # a `python -m bench` command line
    what: str


def steps(out: Path, device: str) -> list[Step]:
    def command(line: str, name: str) -> list[str]:
        return [*line.format(device=device).split(), "--out", str(out / name)]

    network = (
        "network --device {device} --batch-sizes 1,8 --modes infer --launch eager,graph "
        "--rounds 3 --budget-s 0.3 --quiet"
    )
    return [
        Step(
            "fixed-cost",
            command("fused --fixed-cost --device {device}", "fixed-cost"),
            "the CPU time of one fused call: host timing and a torch.profiler profile",
        ),
        Step(
            "fused",
            command(
                "fused --device {device} --launch eager,graph --dtypes float32,bfloat16 "
                "--rounds 2 --budget-s 0.1 --no-kernel-traffic --quiet",
                "fused",
            ),
            "fused blocks against eager and a copy at the large GPU shapes, fp32 and bf16, "
            "eager and graph-replayed",
        ),
        Step(
            "network",
            command(network + " --blocks eca,se", "network"),
            "ResNet-50 plain / eca / eca_fused / se / se_fused, batch 1 and 8, eager and "
            "graph-replayed",
        ),
        Step(
            "network-compiled",
            command(network + " --blocks eca --compile", "network-compiled"),
            "ResNet-50 plain / eca / eca_fused, eager and torch.compile'd, batch 1 and 8",
        ),
    ]


def default_out() -> Path:
    import torch

    name = torch.cuda.get_device_name() if torch.cuda.is_available() else "dry-run"
    return Path("results") / "gpu" / re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, help="default: results/gpu/<device name>")
    parser.add_argument("--device", default="cuda", help="cuda or cuda:N")
    parser.add_argument(
        "--budget-s", type=float, default=DEFAULT_BUDGET_S,
        help="stop starting steps past this many seconds (default 480: 8 minutes)",
    )  # fmt: skip
    parser.add_argument(
        "--dry-run", action="store_true",
        help="check every step's command and sweep (CUDA assumed present), print the plan",
    )  # fmt: skip


# ---- the dry run -------------------------------------------------------------------------------


def check_step(step: Step) -> tuple[int, list[str]]:
    """Parse the step's command with the real parser and build its sweep with CUDA assumed
    present: (its cases, the problems found)."""
    from . import programs
    from .sweep.cases import expand
    from .sweep.spec import SpecError, assume_devices, build_spec

    parser = argparse.ArgumentParser(prog="python -m bench", exit_on_error=False)
    commands = parser.add_subparsers(dest="command", required=True)
    programs.add_fused_arguments(commands.add_parser("fused", exit_on_error=False))
    programs.add_network_arguments(commands.add_parser("network", exit_on_error=False))
    try:
        args = parser.parse_args(step.argv)
    except (SystemExit, argparse.ArgumentError):
        return 0, [f"{step.name}: the command does not parse: {' '.join(step.argv)}"]
    if getattr(args, "fixed_cost", False):
        from .measurement import fixed_cost  # noqa: F401  (the step's code imports)

        return 0, [] if args.device.startswith("cuda") else [f"{step.name}: not on cuda"]
    preset, overrides = (
        ("fused", programs.fused_overrides(args))
        if step.argv[0] == "fused"
        else ("network-fused", programs.network_overrides(args))
    )
    try:
        with assume_devices({args.device}):
            spec, _ = build_spec(
                preset, None, {k: v for k, v in overrides.items() if v is not None}
            )
    except SpecError as error:
        return 0, [f"{step.name}: {problem}" for problem in error.problems]
    return len(expand(spec)), []


def dry_run(out: Path, device: str) -> int:
    from attention_variants.fused import triton_available

    problems = [] if triton_available() else ["triton is not installed: pip install triton"]
    print(f"bench gpu-report, dry run: {len(steps(out, device))} steps into {out}")
    for index, step in enumerate(steps(out, device), 1):
        cases, found = check_step(step)
        problems += found
        count = f"{cases} cases" if cases else "no sweep"
        print(
            f"{index}. {step.name} ({count}): {step.what}\n   python -m bench {' '.join(step.argv)}"
        )
    for problem in problems:
        print(f"problem: {problem}", file=sys.stderr)
    print("dry run: " + ("every step checks out" if not problems else f"{len(problems)} problems"))
    return 2 if problems else 0


# ---- the run and its summary -------------------------------------------------------------------


def _tables(folder: Path, prefixes: tuple[str, ...]) -> list[Path]:
    tables = folder / "tables"
    if not tables.is_dir():
        return []
    return sorted(p for p in tables.glob("*.md") if p.name.startswith(prefixes))


def goals(out: Path) -> list[str]:
    """The issue's GPU goals, read from what the steps wrote (a goal not measured says so)."""
    lines = []
    fixed = out / "fixed-cost" / "fixed_cost.txt"
    for block in ("eca_fused", "se_fused"):
        # the host-timed line: the profiler's own per-op cost would inflate its figure
        found = re.search(rf"^{block} module\s+([\d.]+) us", fixed.read_text(), re.M) if (
            fixed.exists()
        ) else None  # fmt: skip
        lines.append(
            f"- {block}: CPU per call {found.group(1)} us (goal <= {FUSED_CALL_CPU_GOAL_US:.0f})"
            if found
            else f"- {block}: CPU per call not measured"
        )
    fused = sorted((out / "fused" / "tables").glob("fused_*.csv"))
    frame = pd.concat([pd.read_csv(p) for p in fused]) if fused else pd.DataFrame()
    for block in ("eca", "se"):
        rows = frame[(frame["launch"] == "graph") & (frame["block"] == block)] if len(frame) else []
        if len(rows):
            share = 1 / rows["fused_over_copy"]
            lines.append(
                f"- {block}_fused graph-replayed: {share.min():.0%}-{share.max():.0%} of a copy's "
                f"bandwidth (goal >= {FUSED_BANDWIDTH_GOAL:.0%})"
            )
        else:
            lines.append(f"- {block}_fused graph-replayed bandwidth: not measured")
    ratios = sorted((out / "network" / "tables").glob("network_ratio_*.csv"))
    network = pd.concat([pd.read_csv(p) for p in ratios]) if ratios else pd.DataFrame()
    for (batch, launch), group in network.groupby(["batch", "launch"]) if len(network) else []:
        by_name = group.set_index("network")["ratio_to_plain"]
        if {"eca", "eca_fused"} <= set(by_name.index):
            lines.append(
                f"- ResNet-50 batch {batch}, {launch}: eca_fused {by_name['eca_fused']:.3f} "
                f"against eca {by_name['eca']:.3f} of plain (goal: eca_fused <= eca)"
            )
    if network.empty:
        lines.append("- ResNet-50 eca_fused against eca: not measured")
    return lines


def write_summary(out: Path, outcomes: list[tuple[Step, int | None, float]]) -> Path:
    lines = ["# GPU report", "", "## Goals", "", *goals(out), "", "## Steps", ""]
    for step, code, seconds in outcomes:
        state = "not started (out of time)" if code is None else f"exit {code}, {seconds:.0f} s"
        lines += [f"- {step.name}: {state}: `python -m bench {' '.join(step.argv)}`"]
    for step, _, _ in outcomes:
        folder = out / step.name
        texts = [folder / "fixed_cost.txt"] if (folder / "fixed_cost.txt").exists() else []
        texts += _tables(folder, ("fused_", "launch_", "network_ratio_"))
        for path in texts:
            body = path.read_text()
            lines += ["", f"## {step.name}: {path.name}", ""]
            lines += ["```", body.rstrip(), "```"] if path.suffix == ".txt" else [body.rstrip()]
    path = out / "summary.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def command_gpu_report(args: argparse.Namespace) -> int:
    out = args.out or default_out()
    if args.dry_run:
        return dry_run(out, args.device)
    import torch

    if not torch.cuda.is_available():
        print("error: bench gpu-report needs a CUDA device (--dry-run checks it without one)",
              file=sys.stderr)  # fmt: skip
        return 2
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    outcomes: list[tuple[Step, int | None, float]] = []
    worst = 0
    for step in steps(out, args.device):
        left = args.budget_s - (time.perf_counter() - started)
        if left <= 0:
            outcomes.append((step, None, 0.0))  # out of time: named in the summary
        else:
            print(f"== {step.name}: {step.what}", flush=True)
            begin = time.perf_counter()
            try:
                command = [sys.executable, "-m", "bench", *step.argv]
                code = subprocess.run(command, timeout=left).returncode
            except subprocess.TimeoutExpired:
                code = 124
            outcomes.append((step, code, time.perf_counter() - begin))
            worst = max(worst, code)
        print(f"summary: {write_summary(out, outcomes)}", flush=True)
    return 1 if worst else 0

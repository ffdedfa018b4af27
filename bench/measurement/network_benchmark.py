"""What a block costs inside the network: ResNet plain, with the eager block, the fused block
and (optionally) the compiled eager network, timed in turns, as ratios to the plain network.

    python -m bench.measurement.network_benchmark [--device cpu] [--depth 50]
        [--resolution 224] [--batch-sizes 1,4,8] [--modes infer,train] [--blocks eca,se]
        [--compile none|infer|all] [--rounds 5] [--budget-s 1.0] [--out DIR] [--profile]

Every round times each network once, one after the other (rounds of `bench.measurement.case`,
the suite's one measurement path), so the networks of a round see the same state of the
machine. Each ratio is the geometric mean over rounds of (network / plain network in that
round), with a 95% t-interval over the rounds. The training step is forward and backward from
a fixed upstream gradient (the network's own loss and optimiser excluded). With `--out`, the
table goes to DIR/network.md and the rows to DIR/network.csv; with `--profile`, the operators
of the fused networks' inference at the middle batch size are listed by self time.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from attention_variants.backbones import resnet

from .case import TimedRound, compile_module, first_call, round_flags, time_round
from .statistics import geometric_mean_interval
from .timing import mode_fn


@dataclass
class Network:
    name: str  # plain, eca, eca_fused, eca compiled, ...
    block: str  # the attention block ("" for plain)
    kind: str  # plain, eager, fused, compiled
    module: nn.Module


def networks(depth: int, blocks: list[str], compiled: bool, mode: str, x: torch.Tensor):
    """The plain network, then per block: eager, fused (the eager weights), compiled eager."""
    torch.manual_seed(0)
    built = [Network("plain", "", "plain", resnet(depth).to(x.device))]
    for block in blocks:
        eager = resnet(depth, block).to(x.device)
        fused = resnet(depth, f"{block}_fused").to(x.device)
        fused.load_state_dict(eager.state_dict())
        built += [
            Network(block, block, "eager", eager),
            Network(f"{block}_fused", block, "fused", fused),
        ]
        if compiled:
            module, _ = compile_module(eager, mode, x)
            built.append(Network(f"{block} compiled", block, "compiled", module))
    return built


def compare_networks(
    *, device: str, depth: int, resolution: int, batch: int, mode: str, blocks: list[str],
    compiled: bool, rounds: int, budget_s: float,
) -> list[dict]:  # fmt: skip
    x = torch.randn(batch, 3, resolution, resolution, device=device)
    nets = networks(depth, blocks, compiled, mode, x)
    for net in nets:
        first_call(mode, net.module, x, None)
    settings = {"warmup_s": 0.0, "min_time_s": budget_s / rounds, "max_time_s": budget_s / rounds,
                "target_ci": 0.01, "min_samples": 3}  # fmt: skip
    timed: dict[str, list[TimedRound]] = {net.name: [] for net in nets}
    for index in range(rounds):
        order = nets if index % 2 == 0 else nets[::-1]  # neither end always goes first
        for net in order:
            timed[net.name].append(time_round(mode, net.module, x, settings))
        print(f"  {mode} batch {batch}: round {index + 1}/{rounds}", file=sys.stderr, flush=True)
    medians = {
        name: np.array([np.median(r.timing.samples_s) for r in got]) for name, got in timed.items()
    }
    rows = []
    for net in nets:
        # per round, network / plain measured in that round: the machine's drift cancels
        ratio, low, high = geometric_mean_interval(medians[net.name] / medians["plain"])
        _, flags = round_flags(timed[net.name])
        rows.append({
            "device": device, "depth": depth, "resolution": resolution, "batch": batch,
            "mode": mode, "network": net.name, "block": net.block, "kind": net.kind,
            "median_s": float(np.median(medians[net.name])), "ratio_to_plain": ratio,
            "ratio_ci_low": low, "ratio_ci_high": high, "rounds": rounds,
            "images_per_s": batch / float(np.median(medians[net.name])),
            "quality": ";".join(flags) or "ok",
        })  # fmt: skip
    ratios = ", ".join(f"{r['network']} {r['ratio_to_plain']:.3f}" for r in rows[1:])
    print(f"  {mode} batch {batch}: {ratios}", file=sys.stderr, flush=True)
    return rows


def table(rows: pd.DataFrame) -> str:
    """One line per (mode, batch), one column per network: the ratio to plain [95% CI]."""
    lines = []
    for (mode, batch), group in rows.groupby(["mode", "batch"], sort=False):
        line = {"mode": mode, "batch": batch}
        for _, row in group.iterrows():
            if row["kind"] == "plain":
                line["plain"] = f"{row['median_s'] * 1e3:.1f} ms"
                continue
            interval = (
                f" [{row['ratio_ci_low']:.3f}, {row['ratio_ci_high']:.3f}]"
                if np.isfinite(row["ratio_ci_low"])
                else ""
            )
            flag = "" if row["quality"] == "ok" else " †"
            line[row["network"]] = f"{row['ratio_to_plain']:.3f}{interval}{flag}"
        lines.append(line)
    return pd.DataFrame(lines).to_markdown(index=False, disable_numparse=True)


def profile_fused(device: str, depth: int, resolution: int, batch: int, blocks: list[str]) -> str:
    """The fused networks' inference by operator, self time first (torch.profiler)."""
    from torch.profiler import ProfilerActivity, profile

    x = torch.randn(batch, 3, resolution, resolution, device=device)
    out = []
    for block in blocks:
        net = resnet(depth, f"{block}_fused").to(device).eval()
        run = mode_fn("infer", net, x)
        for _ in range(3):
            run()
        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if "cuda" in device else [])
        with profile(activities=activities) as prof:
            for _ in range(5):
                run()
        sort = "self_cuda_time_total" if "cuda" in device else "self_cpu_time_total"
        out.append(f"{block}_fused, batch {batch}, 5 inference calls:\n")
        out.append(prof.key_averages().table(sort_by=sort, row_limit=14))
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--depth", type=int, default=50)
    parser.add_argument("--resolution", type=int, default=224)
    parser.add_argument("--batch-sizes", default="1,4,8")
    parser.add_argument("--modes", default="infer,train")
    parser.add_argument("--blocks", default="eca,se")
    parser.add_argument(
        "--compile",
        default="infer",
        choices=["none", "infer", "all"],
        help="torch.compile of the eager network in which modes (default infer)",
    )
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--budget-s", type=float, default=1.0,
                        help="timing per network per round, split over the rounds")  # fmt: skip
    parser.add_argument("--out", type=Path, help="write network.md and network.csv here")
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args(argv)
    try:
        batches = [int(b) for b in args.batch_sizes.split(",")]
        modes = args.modes.split(",")
        blocks = args.blocks.split(",")
        if not batches or min(batches) < 1 or set(modes) - {"infer", "train"} or args.rounds < 2:
            raise ValueError
    except ValueError:
        parser.error("--batch-sizes: positive integers; --modes: infer, train; --rounds: >= 2")
    started = time.perf_counter()
    rows = []
    for mode in modes:
        compiled = args.compile == "all" or (args.compile == "infer" and mode == "infer")
        for batch in batches:
            rows += compare_networks(
                device=args.device, depth=args.depth, resolution=args.resolution, batch=batch,
                mode=mode, blocks=blocks, compiled=compiled, rounds=args.rounds,
                budget_s=args.budget_s,
            )  # fmt: skip
    frame = pd.DataFrame(rows)
    header = (
        f"ResNet-{args.depth}, {args.resolution}x{args.resolution}, {args.device} "
        f"({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
        f"torch {torch.__version__}): time as a ratio to the plain network [95% CI over "
        f"{args.rounds} interleaved rounds]; plain in ms per call; † flagged in `quality`. "
        f"Measured in {time.perf_counter() - started:.0f} s."
    )
    text = header + "\n\n" + table(frame) + "\n"
    if args.profile:
        middle = batches[len(batches) // 2]
        text += "\n```\n" + profile_fused(
            args.device, args.depth, args.resolution, middle, blocks
        ) + "```\n"  # fmt: skip
    print(text)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        frame.to_csv(args.out / "network.csv", index=False)
        (args.out / "network.md").write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

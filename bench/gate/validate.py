"""Does `bench compare` hold on this machine? Repeats, N times (20 by default):

- two runs of the same code, compared: a flagged regression is a false alarm (goal: at most 1);
- a run against a copy slowed by a known 20%, compared: a miss is a flagged regression absent
  (goal: flagged in at least N - 1).

    python -m bench.gate.validate [--repeats 20] [--slowdown 0.2] [--out DIR]

The slowed copy is a test-only wrapper that spins after each call for `slowdown` of that call's
own duration, so the slowdown is known whatever the machine does.
"""

from __future__ import annotations

import argparse
import contextlib
import tempfile
import time
from pathlib import Path

from torch import Tensor, nn

import attention_variants as av

from ..sweep.runner import run_sweep
from ..sweep.spec import build_spec
from .compare import compare

SWEEP = {
    "variants": "eca,se",
    "channels": "64,256",
    "resolutions": "28,56",
    "batch_sizes": "8",
    "modes": "infer",
    "timing": {"warmup_s": 0.02, "min_time_s": 0.1, "max_time_s": 0.3, "min_samples": 10},
}


class SlowedBy(nn.Module):
    """Runs `inner`, then spins for `fraction` of the time that call took."""

    def __init__(self, inner: nn.Module, fraction: float):
        super().__init__()
        self.inner = inner
        self.fraction = fraction

    def forward(self, x: Tensor) -> Tensor:
        start = time.perf_counter()
        y = self.inner(x)
        until = start + (1 + self.fraction) * (time.perf_counter() - start)
        while time.perf_counter() < until:
            pass
        return y


@contextlib.contextmanager
def slowed(names: list[str], fraction: float):
    """Re-register `names` as slowed copies of themselves; restore them afterwards."""
    originals = {name: av.info(name) for name in names}
    try:
        for name, info in originals.items():

            def factory(channels, _factory=info.factory, **options):
                return SlowedBy(_factory(channels, **options), fraction)

            av.register(name, replace=True, paper=info.paper)(factory)
        yield
    finally:
        for name, info in originals.items():
            av.register(
                name,
                replace=True,
                paper=info.paper,
                description=info.description,
                devices=info.devices,
                dtypes=info.dtypes,
                backward=info.backward,
            )(info.factory)


def validate(repeats: int, slowdown: float, out: Path, threshold: float, alpha: float) -> dict:
    spec, _ = build_spec(None, overrides=SWEEP)
    false_alarms = misses = 0
    for i in range(1, repeats + 1):
        base = out / f"{i:02d}-base"
        same = out / f"{i:02d}-same"
        slow = out / f"{i:02d}-slowed"
        run_sweep(spec, base, quiet=True)
        run_sweep(spec, same, quiet=True)
        with slowed(["eca", "se"], slowdown):
            run_sweep(spec, slow, quiet=True)
        same_result = compare(base, same, threshold=threshold, alpha=alpha)
        slow_result = compare(base, slow, threshold=threshold, alpha=alpha)
        false_alarms += bool(same_result.regressions)
        flagged = len(slow_result.regressions)
        misses += flagged == 0
        ratios = sorted(c.ratio for c in slow_result.cases)
        worst_same = max(c.ratio for c in same_result.cases)
        print(
            f"repeat {i:2d}: same code {len(same_result.regressions)} flagged (largest ratio "
            f"{worst_same:.3f}); slowed {slowdown:.0%}: {flagged}/{len(slow_result.cases)} "
            f"flagged (ratios {ratios[0]:.3f}-{ratios[-1]:.3f})",
            flush=True,
        )
    print(
        f"same code: no regression flagged in {repeats - false_alarms} of {repeats} "
        f"(goal >= {repeats - 1}); slowed by {slowdown:.0%}: flagged in {repeats - misses} "
        f"of {repeats} (goal >= {repeats - 1})"
    )
    return {"false_alarms": false_alarms, "misses": misses, "repeats": repeats}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--slowdown", type=float, default=0.2)
    parser.add_argument("--threshold", type=float, default=0.10)
    parser.add_argument("--alpha", type=float, default=0.01)
    parser.add_argument("--out", type=Path, help="keep the runs here (default: a temporary dir)")
    args = parser.parse_args(argv)
    if args.out:
        validate(args.repeats, args.slowdown, args.out, args.threshold, args.alpha)
        return
    with tempfile.TemporaryDirectory(prefix="validate-gate-") as scratch:
        validate(args.repeats, args.slowdown, Path(scratch), args.threshold, args.alpha)


if __name__ == "__main__":
    main()

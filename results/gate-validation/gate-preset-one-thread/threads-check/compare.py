"""Per thread count: the between-run spread the gate estimates (runs 1, 3, 5 against 2, 4),
how many cases it shows unchanged, and each case's spread of run means measured directly.
Usage: compare.py OUT"""

import sys
from pathlib import Path

import numpy as np

from bench.gate.compare import case_rounds, compare_sides
from bench.gate.sides import Side, load_side

out = Path(sys.argv[1])
for threads in ("two-threads", "one-thread"):
    runs = [load_side(d).runs[0] for d in sorted((out / threads).glob("run-*"))]
    result = compare_sides(Side(runs[0::2], "B"), Side(runs[1::2], "N"))
    tested = result.tested
    unchanged = sum(c.verdict == "unchanged" for c in tested)
    everything = Side(runs, "all")
    raw_sd, copy_sd = [], []
    for case in tested:
        rounds = case_rounds(everything, case.key, "copy")
        per_run = [rounds.run_ids == i for i in np.unique(rounds.run_ids)]
        raw_sd.append(np.std([np.log(rounds.times[m]).mean() for m in per_run], ddof=1))
        over_copy = np.log(rounds.times / rounds.references)
        copy_sd.append(np.std([over_copy[m].mean() for m in per_run], ddof=1))
    print(
        f"{threads}: {len(runs)} runs; gate's between-run spread "
        f"{result.between_runs.relative_sd:.2%} (prior df {result.between_runs.prior_df:.1f}); "
        f"unchanged {unchanged}/{len(tested)}; median 95% interval high/low "
        f"{np.median([c.ci_high / c.ci_low for c in tested]):.3f}; a case's run means apart "
        f"(sd of log, median over cases): raw {np.median(raw_sd):.2%}, over the copy "
        f"{np.median(copy_sd):.2%}; flagged "
        f"{[c.label for c in tested if c.verdict in ('regression', 'improvement')]}"
    )

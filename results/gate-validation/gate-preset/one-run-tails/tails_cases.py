"""Every tested case of the one-run-per-side compares of a validation DIR, with what its test
used, into DIR/../alt-1.pkl. Usage (from the repository root): tails_cases.py DIR 1"""

import sys
from pathlib import Path

import pandas as pd

from bench.gate import compare as C
from bench.gate.sides import Side, load_side
from bench.gate.validate import _view
from bench.sweep.rundir import RunDirectory

directory = Path(sys.argv[1])
per_side = int(sys.argv[2]) if len(sys.argv) > 2 else 1
runs = sorted(d for d in directory.glob("run-*") if RunDirectory.holds_run(d))
loaded = [load_side(d).runs[0] for d in runs]
window = 2 * per_side
rows = []
for index in range(1, len(loaded) - window + 2):
    chosen = loaded[index - 1 : index - 1 + window]
    base_side = Side([_view(r, slowed=False)[0] for r in chosen[0::2]], "BASE")
    for kind, slowed in (("same", False), ("slowed", True)):
        views = [_view(r, slowed=slowed) for r in chosen[1::2]]
        replaced = set.intersection(*(k for _, k in views))
        new_side = Side([v for v, _ in views], "NEW")
        res = C.compare_sides(base_side, new_side)
        fits = {}  # each case's fit, as compare_sides made it
        for key in [c.key for c in res.cases]:
            row = base_side.case(key)
            _, fit = C._fit_case(base_side, new_side, key, row, "copy")
            fits[key] = fit
        for c in res.cases:
            f = fits[c.key]
            rows.append(
                dict(
                    compare=index,
                    kind=kind,
                    key=c.key,
                    label=c.label,
                    slowed=c.key in replaced,
                    verdict=c.verdict,
                    ratio=c.ratio,
                    lo=c.ci_low,
                    hi=c.ci_high,
                    p=c.p_value,
                    v=res.between_runs.variance,
                    bdf=res.between_runs.df,
                    d=None if f is None else f.log_ratio,
                    within=None if f is None else f.within,
                    wdf=None if f is None else f.within_df,
                    rs=None if f is None else f.rounds_share,
                    runs_share=None if f is None else f.runs_share,
                )
            )
    print("compare", index, flush=True)
pd.DataFrame(rows).to_pickle(directory.parent / f"alt-{per_side}.pkl")

"""Each revision's runs 1, 3 against its runs 2, 4 (and run 1 against run 2): the between-run
spread its compare estimates and how many cases it shows unchanged. Usage: compare.py OUT"""

import sys
from pathlib import Path

import numpy as np

from bench.gate.compare import compare_sides
from bench.gate.sides import Side, load_side

out = Path(sys.argv[1])
for rev in ("old", "new"):
    runs = [load_side(out / rev / f"run-{i}").runs[0] for i in (1, 2, 3, 4)]
    r = compare_sides(Side([runs[0], runs[2]], "B"), Side([runs[1], runs[3]], "N"))
    t = r.tested
    un = sum(c.verdict == "unchanged" for c in t)
    w = np.median([(c.ci_high / c.ci_low) for c in t])
    print(
        rev,
        f"between sd {r.between_runs.relative_sd:.2%} prior_df {r.between_runs.prior_df:.1f}",
        f"unchanged {un}/{len(t)}",
        f"median CI width ratio {w:.3f}",
        "flagged",
        [c.label for c in t if c.verdict in ("regression", "improvement")],
    )
    r1 = compare_sides(Side([runs[0]], "B"), Side([runs[1]], "N"))
    print(
        "   1v1 between",
        f"{r1.between_runs.relative_sd:.2%}",
        "unchanged",
        sum(c.verdict == "unchanged" for c in r1.tested),
        len(r1.tested),
    )

"""The one-run compares of tails_cases.py decided again with the run share worth d0 degrees of
freedom (a heavier-tailed run effect), and with a t fitted to each compare. Usage: tails_eval.py PKL"""

import sys

import numpy as np
import pandas as pd
from scipy.stats import false_discovery_control
from scipy.stats import t as t_dist

df = pd.read_pickle(sys.argv[1])
T = df[df.verdict.isin(["regression", "improvement", "unchanged", "undetermined"])].copy()
T["own"] = T.within * T.rs
T["runs"] = T.v * T.runs_share
T["var"] = T.own + T.runs


def decide(T, p):
    T = T.assign(p=p)
    out = []
    for _, g in T.groupby(["compare", "kind"]):
        q = false_discovery_control(g.p.to_numpy(), method="bh")
        r = np.exp(g.d.to_numpy())
        reg = (q < 0.05) & (r > 1.1)
        imp = (q < 0.05) & (r < 1 / 1.1)
        out.append(g.assign(reg=reg, imp=imp))
    return pd.concat(out)


def report(name, R):
    s = R[R.kind == "same"]
    w = R[R.kind == "slowed"]
    anyflag = s.groupby("compare").apply(lambda g: (g.reg | g.imp).any()).sum()
    anyreg = s.groupby("compare").reg.any().sum()
    n = s["compare"].nunique()
    power = w[w.slowed].reg.mean()
    others = w[~w.slowed]
    print(
        f"{name:28s} same: any flag {anyflag}/{n}, any reg {anyreg}/{n}; slowed power {power:.1%}; others flagged {(others.reg).sum()}"
    )


def satter(T, bdf):
    V = T["var"]
    d = V**2 / (T.own**2 / T.wdf + T.runs**2 / bdf)
    d = np.where(T.runs > 0, d, T.wdf)
    return 2 * t_dist.sf(np.abs(T.d) / np.sqrt(V), d)


report("current", decide(T, T.p.to_numpy()))
for d0 in (1, 2, 3, 5, 10):
    report(f"tail d0={d0}", decide(T, satter(T, d0)))
# empirical t per compare
ps = np.empty(len(T))
for _, idx in T.groupby(["compare", "kind"]).indices.items():
    g = T.iloc[idx]
    z = (g.d / np.sqrt(g["var"])).to_numpy()
    nu, loc, sc = t_dist.fit(z, floc=0)
    ps[idx] = 2 * t_dist.sf(np.abs(z) / sc, nu)
report("empirical t fit", decide(T, ps))
same = T[T.kind == "same"]
z = same.d / np.sqrt(same["var"])
print("same-code |z| quantiles", np.quantile(np.abs(z), [0.5, 0.9, 0.99, 0.999]).round(2))
flag = decide(T, T.p.to_numpy())
f = flag[(flag.kind == "same") & (flag.reg | flag.imp)]
print(f[["compare", "label", "ratio", "lo", "hi", "p", "v"]].to_string())

"""Statistics over many cases' figures (not over one case's samples, which
`bench.measurement.timing` owns), shared by the report, the gate and the history: outside the
wings, so none of them reaches into another for it."""

from __future__ import annotations

import math

import numpy as np

CONFIDENCE = 0.95


def geometric_mean_interval(ratios, confidence: float = CONFIDENCE) -> tuple[float, float, float]:
    """The geometric mean of positive `ratios` with its t-interval (over their logs); the
    interval is NaN for fewer than two."""
    from scipy.stats import t as t_dist  # here: importing the module stays light

    logs = np.log(np.asarray(ratios, dtype=float))
    mean = float(logs.mean())
    if logs.size < 2:
        return float(np.exp(mean)), math.nan, math.nan
    half = float(t_dist.ppf(0.5 + confidence / 2, logs.size - 1) * logs.std(ddof=1))
    half /= math.sqrt(logs.size)
    return float(np.exp(mean)), float(np.exp(mean - half)), float(np.exp(mean + half))

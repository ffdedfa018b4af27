"""Measuring one callable: latency, FLOPs / MACs / bytes, peak memory, the environment. Knows nothing of sweeps."""

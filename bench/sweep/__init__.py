"""Sweeps: the spec and its cases, the runner, and the run directory it writes."""

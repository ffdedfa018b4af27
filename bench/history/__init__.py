"""Performance over commits: a store of runs, change points in it, a static dashboard."""

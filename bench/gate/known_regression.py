"""The known regression the gate's validation looks for: which variants, how much slower.

Both `bench.gate.slowed` (which registers the slowed copies, in the runs it slows) and
`bench.gate.validate` (which scores the compares) read these; neither imports the other.
"""

SLOWED = ("eca", "se", "cbam")
FRACTION = 0.15  # the threshold plus a margin
SUFFIX = "_slowed"

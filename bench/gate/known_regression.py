"""The known regression the gate's validation looks for: which variants, how much slower.

Both `bench.gate.slowed` (which registers the slowed copies, in the runs it slows) and
`bench.gate.validate` (which scores the compares) read these; neither imports the other.
"""

SLOWED = ("eca", "se", "cbam")
FRACTION = 0.15  # the threshold plus a margin
SUFFIX = "_slowed"
# the simulated instrument's known regression (`bench.gate.slowed_by_work`): this share of each
# block's output channels copied once more, about 5% more estimated cycles at 64 and 128
# channels, 14x14 and 28x28 (the validation measures each case's own increase)
WORK_FRACTIONS = {"eca": 0.05, "se": 0.04, "cbam": 0.12}

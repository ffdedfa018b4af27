"""pytest-benchmark suite: every registered variant (eager and fused) and the copy reference at
representative shapes, inference and training, grouped by shape.

Each case is measured by `bench.measurement.case.measure_case`, the sweep's own measurement:
the samples pytest-benchmark shows and saves are those samples, and `extra_info` carries their
paired copy references, rounds and quality (the layout of `bench.sweep.benchmark_json`), so
`python -m bench compare` reads a saved JSON with the same statistics as a run directory.

Under the plain test command benchmarking is disabled: each case is measured with a tiny budget,
as a quick test of the path. To measure and save for `python -m bench compare`:

    pytest tests/perf --benchmark-enable --benchmark-only --benchmark-json=perf.json
"""

import pytest
import torch
from pytest_benchmark.stats import Stats

import attention_variants as av
from bench.measurement.case import TimingBudget, measure_case
from bench.measurement.references import REFERENCES
from bench.measurement.timing import mode_fn
from bench.sweep.benchmark_json import extra_info

SHAPES = [(8, 64, 28, 28), (8, 256, 14, 14)]
BLOCKS = [*av.available(), "copy"]
SMOKE_BUDGET = TimingBudget(warmup_s=0.0, min_time_s=0.0, max_time_s=0.002, min_samples=1, rounds=1)


# shuffle attention's default 64 groups need channels divisible by 128
OPTIONS = {"shuffle": {"groups": 16}}


def _build(name, channels):
    if name in REFERENCES:
        return REFERENCES[name](channels)
    return av.create(name, channels, **OPTIONS.get(name, {}))


@pytest.mark.parametrize("mode", ["infer", "train"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("name", BLOCKS)
def test_block(benchmark, name, shape, mode):
    torch.manual_seed(0)
    module = _build(name, shape[1])
    x = torch.randn(shape)
    reference = name != "copy"
    measured = measure_case(
        module,
        x,
        mode=mode,
        budget=SMOKE_BUDGET if benchmark.disabled else TimingBudget(),
        paired_reference=reference,
    )
    timing = measured.timing
    benchmark.group = f"{'x'.join(map(str, shape))} {mode}"
    benchmark.extra_info.update(
        extra_info(measured, variant=name, role="variant" if reference else "reference",
                   shape=shape, mode=mode)
    )  # fmt: skip
    # one untimed call through the fixture; the statistics are measure_case's samples
    result = benchmark.pedantic(mode_fn(mode, module, x), rounds=1, iterations=1)
    if benchmark.stats is not None:
        stats = Stats()
        for sample in timing.samples_s:
            stats.update(sample)
        benchmark.stats.stats = stats
    assert timing.n >= 1 and benchmark.extra_info["quality"]
    if mode == "infer":
        assert result.shape == x.shape  # a benchmark that runs the block must still be right

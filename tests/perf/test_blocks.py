"""pytest-benchmark suite: every registered variant (eager and fused) and the copy reference at
representative shapes, inference and training, grouped by shape.

Under the plain test command benchmarking is disabled (each runs once, as a quick test). To
measure and save raw samples for `python -m bench compare`:

    pytest tests/perf --benchmark-enable --benchmark-only \\
        --benchmark-json=perf.json --benchmark-save-data
"""

import pytest
import torch

import attention_variants as av
from bench.measurement.counting import count
from bench.measurement.memory import peak_memory
from bench.measurement.references import REFERENCES
from bench.measurement.timing import mode_fn

SHAPES = [(8, 64, 28, 28), (8, 256, 14, 14)]
BLOCKS = [*av.available(), "copy"]


def _build(name, channels):
    if name in REFERENCES:
        return REFERENCES[name](channels)
    return av.create(name, channels)


@pytest.mark.parametrize("mode", ["infer", "train"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("name", BLOCKS)
def test_block(benchmark, name, shape, mode):
    torch.manual_seed(0)
    module = _build(name, shape[1])
    x = torch.randn(shape)
    train = mode == "train"
    module.train(train)
    counts = count(module, x, backward=train)
    benchmark.group = f"{'x'.join(map(str, shape))} {mode}"
    benchmark.extra_info.update(
        variant=name, role="reference" if name == "copy" else "variant", batch=shape[0],
        channels=shape[1], height=shape[2], width=shape[3], dtype="float32", device="cpu",
        mode=mode, memory_format="contiguous", compile=False, flops=counts.flops,
        macs=counts.macs, bytes_moved=counts.bytes_moved,
        peak_memory_bytes=peak_memory(module, x, backward=train),
        params=sum(p.numel() for p in module.parameters()),
    )  # fmt: skip
    result = benchmark(mode_fn(mode, module, x))
    if mode == "infer":
        assert result.shape == x.shape  # a benchmark that runs the block must still be right

import math
import statistics
import time

import numpy as np
import pytest
import torch

import attention_variants as av
from bench.measurement.timing import (
    Measurement,
    inference_fn,
    measure,
    median_ci_ranks,
    mode_fn,
    thread_count,
    training_step_fn,
)


@pytest.mark.parametrize(("n", "ranks_1_based"), [(10, (2, 9)), (20, (6, 15)), (100, (40, 61))])
def test_median_ci_ranks_match_the_published_table(n, ranks_1_based):
    lo, hi = median_ci_ranks(n)
    assert (lo + 1, hi + 1) == ranks_1_based


@pytest.mark.parametrize("n", [6, 11, 50, 333, 1000, 5000])
def test_median_ci_covers_at_least_95_percent(n):
    lo, hi = median_ci_ranks(n)
    if n <= 1000:
        coverage = sum(math.comb(n, i) for i in range(lo + 1, hi + 1)) / 2**n
        assert 0.95 <= coverage < 0.99
    assert 0 <= lo < n / 2 < hi < n


def test_measurement_statistics_match_numpy():
    rng = np.random.default_rng(0)
    samples = list(rng.lognormal(-9, 0.2, size=301))
    m = Measurement(samples, block_size=4)
    assert m.n == 301
    assert m.median == pytest.approx(np.median(samples))
    assert m.mean == pytest.approx(np.mean(samples))
    assert m.std == pytest.approx(np.std(samples, ddof=1))
    q1, q3 = np.percentile(samples, [25, 75])
    assert m.iqr == pytest.approx(q3 - q1)
    low, high = m.ci
    assert low < m.median < high
    assert m.ci_relative_half_width == pytest.approx((high - low) / 2 / m.median)


def _busy_wait(seconds):
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def test_measure_times_a_known_duration_and_keeps_every_sample():
    calls = []

    def fn():
        calls.append(1)
        _busy_wait(200e-6)

    m = measure(fn, min_time_s=0.05, max_time_s=0.3)
    assert m.median >= 200e-6  # a busy-wait cannot finish early
    assert m.median < 200e-6 * 10
    assert m.n >= 10 and len(m.samples_s) == m.n
    assert len(calls) == m.warmup_calls + m.n * m.block_size
    assert m.stop_reason in {"ci_target", "time_cap"}


def test_blocks_are_long_enough_that_the_clock_costs_under_a_tenth_of_a_percent():
    m = measure(lambda: None, min_time_s=0.01, max_time_s=0.05, min_block_s=1e-4)
    assert m.block_size > 100  # a no-op needs many calls per block
    assert m.median * m.block_size >= 1e-4 * 0.5


def test_adaptive_stop_reasons():
    # any interval meets a target this loose, even with a sample hit by a context switch
    loose = measure(lambda: _busy_wait(1e-4), target_ci=1e9, min_time_s=0, min_samples=5)
    # 6 samples at least: fewer cannot give a 95% interval of the median
    assert (loose.stop_reason, loose.n) == ("ci_target", 6)
    capped = measure(lambda: _busy_wait(1e-4), target_ci=1e-9, max_samples=12, min_time_s=0)
    assert (capped.stop_reason, capped.n) == ("max_samples", 12)


def test_measure_sets_and_restores_threads():
    before = torch.get_num_threads()
    m = measure(lambda: None, threads=1, min_time_s=0, max_time_s=0.01)
    assert m.threads == 1
    assert torch.get_num_threads() == before
    with thread_count(1) as used:
        assert used == torch.get_num_threads() == 1
    assert torch.get_num_threads() == before


def test_bad_arguments_are_rejected_before_timing():
    with pytest.raises(ValueError, match="target_ci"):
        measure(lambda: None, target_ci=0)
    with pytest.raises(ValueError, match="device='meta'"):
        measure(lambda: None, device="meta")
    with pytest.raises(ValueError, match="mode='eval'"):
        mode_fn("eval", torch.nn.Identity(), torch.randn(1))
    with pytest.raises(ValueError, match="threads=0"), thread_count(0):
        pass


def test_inference_fn_runs_without_autograd():
    module = av.create("se", 32)
    out = inference_fn(module, torch.randn(2, 32, 4, 4))()
    assert not module.training
    assert out.is_inference() and not out.requires_grad


def test_training_step_fn_recomputes_gradients_each_call():
    module = av.create("cbam", 32)
    step = training_step_fn(module, torch.randn(2, 32, 6, 6))
    step()
    first = {n: p.grad.clone() for n, p in module.named_parameters()}
    step()
    assert module.training
    for name, p in module.named_parameters():
        # dropped and rebuilt, not accumulated (BatchNorm statistics move, so allow a little)
        torch.testing.assert_close(p.grad, first[name], rtol=1e-3, atol=1e-5)
    assert statistics.fmean(p.grad.abs().sum().item() for p in module.parameters()) > 0

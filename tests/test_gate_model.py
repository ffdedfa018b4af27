"""A round's time and its paired copy's level (`bench.gate.model.round_levels`), against
figures worked out by hand and a machine whose speed wanders from sample to sample."""

import numpy as np
import pytest

from bench.gate.model import Rounds, fit_case, round_levels


def test_a_rounds_copy_level_makes_its_ratio_the_median_of_the_samples_ratios():
    seconds = [2.0, 4.0, 6.0, 5.0, 7.0]
    copies = [1.0, 4.0, 3.0, np.nan, np.nan]  # round 1's samples have no pair
    levels = round_levels(seconds, copies, [0, 0, 0, 1, 1])
    assert levels.rounds.tolist() == [0, 1]
    assert levels.times.tolist() == [4.0, 6.0]
    assert levels.samples.tolist() == [3, 2]
    # ratios 2, 1, 2: median 2, so the level is 4 / 2, not the copies' median of 3
    assert levels.references[0] == pytest.approx(2.0)
    assert np.isnan(levels.references[1])


def test_without_pairs_every_level_is_nan():
    levels = round_levels([1.0, 2.0], None, [0, 1])
    assert np.isnan(levels.references).all()


def _side(rng, factor: float, rounds: int = 4, per_round: int = 7):
    """Samples on a machine whose speed jumps by up to 2x from one sample to the next; the
    copy timed right after each sample sees the same speed; the case adds 1% noise of its own."""
    speed = np.exp(rng.uniform(0, np.log(2), rounds * per_round))
    numbers = np.repeat(np.arange(rounds), per_round)
    own = np.exp(rng.uniform(-0.01, 0.01, speed.size))
    seconds, copies = factor * 1e-3 * speed * own, 1e-4 * speed
    levels = round_levels(seconds, copies, numbers)
    medians = [np.median(copies[numbers == r]) for r in range(rounds)]
    return Rounds(levels.times, levels.references, speed.size), np.array(medians)


def test_a_speed_that_wanders_within_rounds_cancels_sample_by_sample():
    rng = np.random.default_rng(0)
    (base, base_copies), (new, new_copies) = _side(rng, 1.0), _side(rng, 1.2)
    fit = fit_case(base, new, slope=1.0)
    assert np.exp(fit.log_ratio) == pytest.approx(1.2, rel=0.01)
    assert np.sqrt(fit.within) < 0.01  # what is left is the case's own noise
    # the rounds' two medians come from samples at different speeds: their ratio keeps them
    old = fit_case(
        Rounds(base.times, base_copies, 28), Rounds(new.times, new_copies, 28), slope=1.0
    )
    assert old.within > 2 * fit.within

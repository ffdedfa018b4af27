import hashlib
import json
import subprocess
import sys
from itertools import product

import numpy as np
import pandas as pd
import pytest
from scipy.stats import kstest

from bench.gate.compare import CompareInputError, compare, parse_threshold
from bench.gate.model import (
    BetweenRuns,
    Rounds,
    between_runs,
    case_test,
    fit_case,
    ratio_from_rounds,
)
from bench.gate.render import markdown, to_json
from bench.sweep.rundir import COLUMNS, SAMPLE_COLUMNS


def write_run(path, cases, *, flops=None, quality=None, rounds=6, references=4, machine=1.0):
    """A run directory whose cases have the given samples, in `rounds` equal rounds.

    `cases` maps a variant name to (samples, paired_reference_samples); a copy reference row is
    written per run as well, and, as every sweep times them, the identity and conv3x3
    references at `references` channel counts, with samples of their own (drawn afresh for
    each run directory, on a machine `machine` times as slow).
    """
    path.mkdir(parents=True)
    rows, samples = [], []
    entries = {(name, 64): value for name, value in cases.items()}
    entries[("copy", 64)] = (cases_reference(cases), None)
    seed = int.from_bytes(hashlib.sha256(path.name.encode()).digest()[:4], "little")
    for j in range(references):  # unpaired, as a sweep times them: read against the copy
        for i, name in enumerate(("copy", "identity", "conv3x3")):
            if (name, 16 * (j + 1)) not in entries:
                times, _ = draws((1 + i) * 1e-4, n=10 * rounds, seed=seed + 10 * j + i,
                                 rounds=rounds, slow_machine=machine)  # fmt: skip
                entries[(name, 16 * (j + 1))] = (times, None)
    for (name, channels), (times, refs) in entries.items():
        case_id = f"id-{name}-{channels}"
        role = "reference" if name in ("copy", "identity", "conv3x3") else "variant"
        rows.append({
            **dict.fromkeys(COLUMNS, ""), "run_id": "r", "case_id": case_id,
            "role": role, "variant": name,
            "variant_label": name, "batch": 8, "channels": channels, "height": 28, "width": 28,
            "dtype": "float32", "device": "cpu", "mode": "infer",
            "memory_format": "contiguous", "compile": False, "status": "ok",
            "flops": (flops or {}).get(name, 1000), "macs": 10, "bytes_moved": 100,
            "peak_memory_bytes": 64, "params": 3, "latency_median_s": float(np.median(times)),
            "quality": (quality or {}).get(name, "ok"),
        })  # fmt: skip
        for i, t in enumerate(times):
            samples.append({
                "run_id": "r", "case_id": case_id, "sample": i,
                "round": i * rounds // len(times), "seconds_per_call": t, "block_size": 1,
                "reference_seconds_per_call": "" if refs is None else refs[i],
            })  # fmt: skip
    pd.DataFrame(rows, columns=COLUMNS).to_csv(path / "results.csv", index=False)
    pd.DataFrame(samples, columns=SAMPLE_COLUMNS).to_csv(path / "samples.csv", index=False)
    return path


def cases_reference(cases):
    first = next(iter(cases.values()))
    return first[1] if first[1] is not None else np.full(len(first[0]), 1e-4)


def draws(median, n=60, spread=0.02, seed=0, slow_machine=1.0, rounds=6, drift=0.03):
    """Samples around `median` and paired copy samples around 1e-4, in `rounds` equal rounds;
    both scaled by the machine, whose speed also moves from round to round by `drift`."""
    rng = np.random.default_rng(seed)
    machine = slow_machine * (1 + drift * rng.standard_normal(rounds))[np.arange(n) * rounds // n]
    times = median * machine * (1 + spread * rng.standard_normal(n))
    refs = 1e-4 * machine * (1 + spread * rng.standard_normal(n))
    return times, refs


def test_no_change_passes(tmp_path):
    base = write_run(tmp_path / "base", {"eca": draws(2e-4, seed=1), "se": draws(3e-4, seed=2)})
    new = write_run(tmp_path / "new", {"eca": draws(2e-4, seed=3), "se": draws(3e-4, seed=4)})
    result = compare(base, new)
    assert result.exit_code == 0 and not result.regressions
    assert {c.verdict for c in result.cases} == {"unchanged"}
    assert all(
        c.reference_slope > 0.5 for c in result.cases
    )  # the copy tracks the machine: divided out
    assert "**no regression**" in markdown(result)


def test_a_clear_regression_fails_with_its_ratio_and_interval(tmp_path):
    base = write_run(tmp_path / "base", {"eca": draws(2e-4, seed=1), "se": draws(3e-4, seed=2)})
    new = write_run(tmp_path / "new", {"eca": draws(2.6e-4, seed=3), "se": draws(3e-4, seed=4)})
    result = compare(base, new)
    assert result.exit_code == 1
    (regression,) = result.regressions
    assert regression.label.startswith("eca ")
    assert regression.ratio == pytest.approx(1.3, rel=0.03)
    assert regression.ci_low > 1.1 and regression.p_value < 1e-4
    assert regression.rounds_base == regression.rounds_new == 6
    report = markdown(result)
    assert "**1 regression(s)**" in report and "### Regressions" in report


def test_an_improvement_is_reported_and_does_not_fail(tmp_path):
    base = write_run(tmp_path / "base", {"eca": draws(2e-4, seed=1)})
    new = write_run(tmp_path / "new", {"eca": draws(1.5e-4, seed=2)})
    result = compare(base, new)
    assert result.exit_code == 0 and len(result.improvements) == 1


def test_noisy_but_not_significant_is_not_a_regression(tmp_path):
    # 15% slower, but rounds with 40% spread: no test can tell
    base = write_run(tmp_path / "base", {"eca": draws(2e-4, n=5, spread=0.4, seed=1)})
    new = write_run(tmp_path / "new", {"eca": draws(2.3e-4, n=5, spread=0.4, seed=2)})
    (case,) = compare(base, new).cases
    assert case.verdict == "undetermined" and case.p_value > 0.05
    assert case.ci_low < 1 / 1.1 and case.ci_high > 1.1  # neither shown changed nor unchanged
    assert case.detectable_ratio > 1.15  # a 15% change was beyond this data


def test_machine_drift_cancels_through_the_paired_copy(tmp_path):
    base = write_run(tmp_path / "base", {"eca": draws(2e-4, seed=1)})
    # the whole machine 30% slower: the variant and its paired copy alike (and, as machines
    # do, also drifting from round to round: how the copy's slope is learnt)
    new = write_run(tmp_path / "new", {"eca": draws(2e-4, seed=2, slow_machine=1.3)}, machine=1.3)
    normalised = compare(base, new)
    assert not normalised.regressions
    assert normalised.drift == pytest.approx(1.3, rel=0.03)
    assert "Machine drift" in markdown(normalised)
    absolute = compare(base, new, reference=None)
    assert len(absolute.regressions) == 1


def test_cases_on_one_side_only_are_listed(tmp_path):
    base = write_run(tmp_path / "base", {"eca": draws(2e-4, seed=1), "se": draws(3e-4, seed=2)})
    new = write_run(tmp_path / "new", {"eca": draws(2e-4, seed=3), "cbam": draws(5e-4, seed=4)})
    result = compare(base, new)
    assert [label.split()[0] for label in result.only_base] == ["se"]
    assert [label.split()[0] for label in result.only_new] == ["cbam"]
    report = markdown(result)
    assert "Only in BASE" in report and "Only in NEW" in report


def test_exact_metric_changes_are_all_shown(tmp_path):
    base = write_run(tmp_path / "base", {"eca": draws(2e-4, seed=1)})
    new = write_run(tmp_path / "new", {"eca": draws(2e-4, seed=2)}, flops={"eca": 1001})
    result = compare(base, new)
    assert result.exact_changes == [
        {"case": result.cases[0].label, "metric": "flops", "base": 1000, "new": 1001}
    ]


def test_pytest_benchmark_json_with_raw_samples(tmp_path):
    def save(path, eca_median, seed, others=("se", "cbam", "simam")):
        """eca and `others` at two channel counts, and the copy, as pytest-benchmark saves
        them (each sample a round, one run per side)."""
        rng = np.random.default_rng(seed)
        benchmarks = []
        medians = {"eca": eca_median, "copy": 1e-4, **dict.fromkeys(others, 3e-4)}
        for (name, median), channels in product(medians.items(), (64, 128)):
            data = list(median * (1 + 0.02 * rng.standard_normal(50)))
            benchmarks.append({
                "name": f"test_block[{name}-{channels}]",
                "fullname": f"tests/perf::test_block[{name}-{channels}]",
                "stats": {"data": data, "median": float(np.median(data))},
                "extra_info": {"variant": name, "role": "reference" if name == "copy" else "variant",
                               "batch": 8, "channels": channels, "height": 28, "width": 28,
                               "dtype": "float32", "device": "cpu", "mode": "infer",
                               "memory_format": "contiguous", "compile": False, "flops": 7},
            })  # fmt: skip
        path.write_text(json.dumps({"benchmarks": benchmarks}))
        return path

    base = save(tmp_path / "base.json", 2e-4, 1)
    assert compare(base, save(tmp_path / "same.json", 2e-4, 2)).exit_code == 0
    assert compare(base, save(tmp_path / "slow.json", 2.6e-4, 3)).exit_code == 1
    # eca alone: one run per side and nothing untouched to say how processes differ
    alone = compare(save(tmp_path / "a.json", 2e-4, 4, ()), save(tmp_path / "b.json", 2e-4, 5, ()))
    assert alone.spread_unknown and alone.verdict == "cannot tell" and alone.exit_code == 3
    assert all("bench ab --runs 2" in c.reason for c in alone.cases)
    without = json.loads(base.read_text())
    del without["benchmarks"][0]["stats"]["data"]
    (tmp_path / "nodata.json").write_text(json.dumps(without))
    with pytest.raises(CompareInputError, match="--benchmark-save-data"):
        compare(tmp_path / "nodata.json", base)


def _cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "bench", "compare", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_bad_input_exits_2_with_a_clear_message(tmp_path):
    base = write_run(tmp_path / "base", {"eca": draws(2e-4, seed=1)})
    missing = _cli(base, tmp_path / "nowhere")
    assert missing.returncode == 2 and "no such file or directory" in missing.stderr
    garbage = tmp_path / "garbage"
    garbage.mkdir()
    (garbage / "results.csv").write_text("not,a\nresults,table\n")
    malformed = _cli(base, garbage)
    assert malformed.returncode == 2 and "lacks columns" in malformed.stderr
    other = write_run(tmp_path / "other", {"cbam": draws(2e-4, seed=1)}, references=0)
    (tmp_path / "other" / "results.csv").write_text(
        (tmp_path / "other" / "results.csv").read_text().replace("id-copy", "id-copy-2")
    )
    nothing = _cli(base, other)
    assert nothing.returncode == 2 and "no case in common" in nothing.stderr
    assert _cli(base, base, "--threshold", "ten").returncode == 2


def test_cli_exit_codes_and_markdown_output(tmp_path):
    base = write_run(tmp_path / "base", {"eca": draws(2e-4, seed=1)})
    slow = write_run(tmp_path / "slow", {"eca": draws(2.6e-4, seed=2)})
    result = _cli(base, slow, "--threshold", "10%", "--output", tmp_path / "report.md")
    assert result.returncode == 1
    assert "### Regressions" in (tmp_path / "report.md").read_text()
    assert _cli(base, slow, "--threshold", "40%").returncode == 0


@pytest.mark.parametrize(("text", "value"), [("10%", 0.10), ("0.25", 0.25), ("5 %", 0.05)])
def test_threshold_parsing(text, value):
    assert parse_threshold(text) == pytest.approx(value)


def test_ab_sweeps_two_revisions_in_turns_and_compares(tmp_path):
    timing = tmp_path / "timing.yaml"
    timing.write_text(
        "timing: {warmup_s: 0.001, min_time_s: 0, max_time_s: 0.02, min_samples: 3}\n"
    )
    out = tmp_path / "ab"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench",
            "ab",
            "--base",
            "HEAD",
            "--new",
            ".",
            "--runs",
            "2",
            "--rounds",
            "2",
            "--out",
            str(out),
            "--spec",
            str(timing),
            "--variants",
            "eca",
            "--channels",
            "8",
            "--resolutions",
            "4",
            "--batch-sizes",
            "1",
            "--modes",
            "infer",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    # 1 only if the tiny sweep was unlucky, 3 if the machine was busy while it ran
    assert result.returncode in (0, 1, 3), result.stderr
    for side in ("base", "new"):
        assert sorted(p.name for p in (out / side).iterdir()) == ["run-1", "run-2"]
    report = (out / "compare.md").read_text()
    assert "## Performance comparison" in report and "eca b1 c8 4x4" in report


def test_ab_sweeps_the_gate_preset_unless_a_sweep_is_named(tmp_path):
    from bench.gate.ab import sweep_options
    from bench.sweep.spec import build_spec

    options = sweep_options(["--variants", "eca"], tmp_path)
    assert options[0] == "--spec" and options[2:] == ["--variants", "eca"]
    from_file, _ = build_spec(None, options[1])
    gate, _ = build_spec("gate")
    # the same sweep as the preset, from a file an older BASE can read too
    assert from_file.model_dump(exclude={"preset"}) == gate.model_dump(exclude={"preset"})
    assert gate.batch_sizes == [2] and gate.timing.rounds == 10 and gate.threads == 1
    assert gate.timing.sweep_budget_s is None
    for named in (["--preset", "quick"], ["--preset=quick"], ["--spec", "mine.yaml"]):
        assert sweep_options(named, tmp_path) == named


def test_a_flagged_case_is_inconclusive_and_exits_3(tmp_path):
    base = write_run(tmp_path / "base", {"eca": draws(2e-4), "se": draws(3e-4, seed=1)})
    # eca looks 30% slower, but NEW was measured on a busy machine: no verdict either way
    new = write_run(
        tmp_path / "new",
        {"eca": draws(2.6e-4, seed=2), "se": draws(3e-4, seed=3)},
        quality={"eca": "contended;unstable"},
    )
    result = compare(base, new)
    verdicts = {c.label.split()[0]: c for c in result.cases}
    assert verdicts["eca"].verdict == "inconclusive"
    assert verdicts["eca"].reason == "NEW flagged contended"  # the machine's flag, not the spread
    assert verdicts["se"].verdict == "unchanged"
    assert result.exit_code == 3
    text = markdown(result)
    assert "**inconclusive**" in text and "NEW flagged contended" in text


def test_a_regression_still_exits_1_beside_an_inconclusive_case(tmp_path):
    base = write_run(tmp_path / "base", {"eca": draws(2e-4), "se": draws(3e-4, seed=1)})
    new = write_run(
        tmp_path / "new",
        {"eca": draws(3e-4, seed=2), "se": draws(3e-4, seed=3)},
        quality={"se": "gpu_shared"},
    )
    result = compare(base, new)
    assert [c.verdict for c in result.cases] == ["regression", "inconclusive"]
    assert result.exit_code == 1


def test_pytest_benchmark_json_from_the_suite_carries_paired_samples_and_quality(tmp_path):
    def benchmark(name, times, refs, quality, rounds):
        info = {
            "variant": name, "role": "variant", "batch": 8, "channels": 64, "height": 28,
            "width": 28, "dtype": "float32", "device": "cpu", "mode": "infer",
            "memory_format": "contiguous", "compile": False, "quality": quality,
            "samples_s": list(times), "reference_samples_s": list(refs), "rounds": rounds,
        }  # fmt: skip
        # pytest-benchmark's own data is absent on purpose: the suite's samples are used
        return {"name": name, "fullname": f"test[{name}]", "stats": {}, "extra_info": info}

    def save(path, slow_machine, quality="ok"):
        eca = draws(2e-4, seed=int(slow_machine * 10), slow_machine=slow_machine)
        rounds = [i * 6 // 60 for i in range(60)]
        path.write_text(json.dumps({"benchmarks": [benchmark("eca", *eca, quality, rounds)]}))
        return path

    # the whole machine twice as slow: the paired copies take it out
    result = compare(save(tmp_path / "a.json", 1.0), save(tmp_path / "b.json", 2.0))
    (case,) = result.cases
    assert case.reference_slope > 0.5 and case.ci_low < 1 < case.ci_high
    assert case.verdict in ("unchanged", "undetermined")  # never a regression
    assert case.rounds_base == 6
    flagged = compare(save(tmp_path / "a.json", 1.0), save(tmp_path / "c.json", 1.0, "contended"))
    assert flagged.cases[0].verdict == "inconclusive" and flagged.exit_code == 3


def test_normalised_and_raw_times_are_never_mixed(tmp_path):
    base = write_run(tmp_path / "base", {"eca": draws(2e-4)})
    new = write_run(tmp_path / "new", {"eca": (draws(2e-4, seed=1)[0], None)})
    rows = pd.read_csv(new / "results.csv")
    rows[rows["variant"] != "copy"].to_csv(new / "results.csv", index=False)  # no copy at all
    with pytest.raises(CompareInputError, match="nothing to divide by: no `copy` reference"):
        compare(base, new)
    assert compare(base, new, reference=None).cases[0].verdict == "unchanged"  # --absolute
    cli = subprocess.run(
        [sys.executable, "-m", "bench", "compare", str(base), str(new)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert cli.returncode == 2 and "--absolute" in cli.stderr


def test_the_reference_asked_for_is_used_even_where_paired_copies_exist(tmp_path):
    def run(path, eca_median, conv_median, seed):
        times, refs = draws(eca_median, seed=seed)
        path = write_run(path, {"eca": (times, refs)}, references=3)  # none at 64 channels
        rows = pd.read_csv(path / "results.csv")
        conv = rows[(rows["variant"] == "copy") & (rows["channels"] == 64)].assign(
            case_id="id-conv3x3", variant="conv3x3", variant_label="conv3x3"
        )
        pd.concat([rows, conv]).to_csv(path / "results.csv", index=False)
        samples = pd.read_csv(path / "samples.csv")
        extra = samples[samples["case_id"] == "id-copy-64"].assign(
            case_id="id-conv3x3", seconds_per_call=draws(conv_median, seed=seed + 5)[0]
        )
        pd.concat([samples, extra]).to_csv(path / "samples.csv", index=False)
        return path

    # eca and the 3x3 convolution both twice as slow; the copy beside eca is not: a reference
    # named is divided out as asked
    base, new = run(tmp_path / "base", 2e-4, 1e-3, 0), run(tmp_path / "new", 4e-4, 2e-3, 10)
    assert compare(base, new).cases[0].verdict == "regression"  # 2x a copy
    by_conv = compare(base, new, reference="conv3x3")
    (case,) = by_conv.cases
    assert case.verdict == "unchanged" and abs(case.ratio - 1) < 0.05
    assert "`conv3x3` reference" in markdown(by_conv)


def test_compare_json_gives_the_verdict_and_every_case_with_its_identity(tmp_path):
    base = write_run(tmp_path / "base", {"eca": draws(2e-4), "se": draws(3e-4, seed=1)})
    new = write_run(tmp_path / "new", {"eca": draws(2.6e-4, seed=2), "se": draws(3e-4, seed=3)},
                    quality={"se": "contended"})  # fmt: skip
    out = tmp_path / "verdict.json"
    cli = subprocess.run(
        [sys.executable, "-m", "bench", "compare", str(base), str(new), "--json", str(out)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert cli.returncode == 1
    verdict = json.loads(out.read_text())
    assert verdict["verdict"] == "regression" and verdict["exit_code"] == 1
    cases = {c["variant_label"]: c for c in verdict["cases"]}
    assert cases["eca"]["verdict"] == "regression" and cases["se"]["verdict"] == "inconclusive"
    eca = cases["eca"]
    for name in ("batch", "channels", "height", "width", "dtype", "device", "mode",
                 "memory_format", "compile", "ratio", "ci_low", "ci_high", "p_value",
                 "p_adjusted", "reference_slope", "rounds_base", "rounds_new"):  # fmt: skip
        assert name in eca, name
    assert eca["batch"] == 8 and eca["compile"] is False and eca["ci_low"] < eca["ratio"]
    assert eca["rounds_base"] == 6 and eca["p_adjusted"] >= eca["p_value"]


def test_the_suite_gets_one_figure_the_geometric_mean_of_trusted_ratios(tmp_path):
    base = write_run(tmp_path / "base", {"eca": draws(2e-4), "se": draws(3e-4, seed=1),
                                         "cbam": draws(4e-4, seed=4)})  # fmt: skip
    new = write_run(tmp_path / "new", {"eca": draws(2.6e-4, seed=2), "se": draws(3e-4, seed=3),
                                       "cbam": draws(9e-4, seed=5)},
                    quality={"cbam": "contended"})  # fmt: skip
    result = compare(base, new)
    ratios = {c.label.split()[0]: c.ratio for c in result.cases}
    mean, low, high, covered = result.geometric_mean
    assert covered == 2  # the contended case is left out
    assert mean == pytest.approx((ratios["eca"] * ratios["se"]) ** 0.5)
    assert low < mean < high
    assert f"over 2 tested cases: **{mean:.3f}**" in markdown(result)


# ---- the statistics on synthetic rounds with known answers -----------------------------------


def rounds_of_case(ratio, *, n=5, noise=0.03, seed=0, disturbed=None):
    """Per-round medians of BASE and NEW (NEW = BASE x ratio), with round-to-round noise; the
    copy beside them unrelated to the case (a copy in cache: noise)."""
    rng = np.random.default_rng(seed)
    base = np.exp(noise * rng.standard_normal(n)) * 1e-4
    new = np.exp(noise * rng.standard_normal(n)) * 1e-4 * ratio
    if disturbed is not None:
        new[0] *= disturbed  # one round measured while something else ran
    copies = [np.exp(0.05 * rng.standard_normal(n)) * 1e-5 for _ in range(2)]
    return Rounds(base, copies[0], n * 10), Rounds(new, copies[1], n * 10)


def test_a_known_shift_is_estimated_inside_its_interval():
    inside = 0
    for seed in range(200):
        tested = ratio_from_rounds(*rounds_of_case(1.2, seed=seed))
        inside += tested.ci_low <= 1.2 <= tested.ci_high
    assert 0.90 <= inside / 200 <= 0.99  # a 95% interval, over 200 trials


def test_no_shift_gives_uniform_p_values():
    p_values = [ratio_from_rounds(*rounds_of_case(1.0, seed=seed)).p_value for seed in range(400)]
    assert kstest(p_values, "uniform").pvalue > 0.01
    assert 0.02 <= np.mean(np.array(p_values) < 0.05) <= 0.09


def test_one_disturbed_round_does_not_make_a_regression():
    # one of five rounds twice as slow moves the mean of the logs by 15%, past the threshold;
    # the spread it adds between rounds keeps the test from calling it
    tested = ratio_from_rounds(*rounds_of_case(1.0, seed=3, disturbed=2.0))
    assert tested.ratio > 1.10 and tested.p_value > 0.05
    base, new = rounds_of_case(1.0, seed=3, disturbed=2.0)
    assert ratio_from_rounds(Rounds(base.times[:1], None, 1), new) is None  # one round: no test


def suite_runs(tmp_path, slowed=(), *, cases=150, seed=0):
    """BASE and NEW runs of `cases` cases, each with 5 rounds; the cases in `slowed` 15% slower
    in NEW. Case i's rounds have its own noise level, 1-4% (as small and large cases do)."""
    rng = np.random.default_rng(seed)
    sides = {"base": {}, "new": {}}
    for i in range(cases):
        noise = 0.01 + 0.03 * i / cases
        for side, factor in (("base", 1.0), ("new", 1.15 if i in slowed else 1.0)):
            per_round = np.exp(noise * rng.standard_normal(5)) * factor
            times = np.repeat(per_round, 4) * 1e-4 * (1 + 0.01 * rng.standard_normal(20))
            refs = np.repeat(np.exp(0.02 * rng.standard_normal(5)), 4) * 1e-5
            sides[side][f"v{i:03d}"] = (times, refs)
    return tuple(write_run(tmp_path / side, sides[side], rounds=5) for side in sides)


def test_a_suite_of_unchanged_cases_flags_none(tmp_path):
    flagged = 0
    for seed in range(5):
        result = compare(*suite_runs(tmp_path / f"s{seed}", seed=seed))
        assert len(result.cases) == 150
        flagged += bool(result.regressions or result.improvements)
    assert flagged == 0  # the suite's chance of any flag is about alpha (0.05) per compare


def test_a_slowdown_of_threshold_and_margin_is_found_across_the_suite(tmp_path):
    slowed = set(range(0, 150, 5))  # 30 of 150 cases, 15% slower
    result = compare(*suite_runs(tmp_path, slowed))
    found = {int(c.label[1:4]) for c in result.regressions}
    assert len(found & slowed) >= 0.9 * len(slowed)
    assert not found - slowed  # no case that was not slowed
    report = markdown(result)
    assert report.index("### Regressions") < report.index("<details>")  # regressions first
    assert "Benjamini-Hochberg" in report


def test_the_validation_scores_slowed_copies_in_place_of_their_originals(tmp_path):
    from bench.gate.validate import score, summary

    for i in range(5):  # BASE = runs i, i+2; NEW = runs i+1, i+3: two compares
        cases = {"eca": draws(2e-4, seed=10 * i), "eca_slowed": draws(2.6e-4, seed=10 * i + 1),
                 "se": draws(3e-4, seed=10 * i + 2)}  # fmt: skip
        write_run(tmp_path / f"run-{i + 1:02d}", cases)
        rows = pd.read_csv(tmp_path / f"run-{i + 1:02d}" / "results.csv")
        rows["model"] = ""
        rows.to_csv(tmp_path / f"run-{i + 1:02d}" / "results.csv", index=False)
    outcomes = score(tmp_path)
    assert sorted(outcomes["compare"].unique()) == [1, 2]
    same = outcomes[outcomes["kind"] == "same code"]
    assert set(same["label"].str.split().str[0]) == {"eca", "se"}  # no slowed copy
    assert (same["verdict"] == "unchanged").all()
    slowed = outcomes[(outcomes["kind"] == "slowed") & outcomes["slowed"]]
    assert set(slowed["label"].str.split().str[0]) == {"eca"} and len(slowed) == 2
    assert (slowed["verdict"] == "regression").all() and (slowed["ratio"] > 1.2).all()
    table = summary(outcomes)
    assert "| same code: compares with any regression flagged | 0 / 2" in " ".join(table.split())
    assert "slowed cases flagged regression | 2 / 2 (100.0%)" in " ".join(table.split())
    # a false improvement is a false alarm too
    outcomes.loc[same.index[0], "verdict"] = "improvement"
    table = " ".join(summary(outcomes).split())
    assert "| same code: compares with any regression flagged | 0 / 2" in table
    assert "compares with any case flagged (regression or improvement) | 1 / 2" in table


def test_the_validation_scores_a_runs_first_rounds_as_a_shorter_preset_would_have(tmp_path):
    from bench.gate.sides import load_side
    from bench.gate.validate import first_rounds, score

    for i in range(4):
        write_run(tmp_path / f"run-{i + 1:02d}", {"eca": draws(2e-4, seed=i)}, rounds=6)
    run = load_side(tmp_path / "run-01").runs[0]
    short = first_rounds(run, 2)
    key = next(k for k in run.samples if k in run.paired_references)
    assert sorted(set(short.rounds[key])) == [0, 1]  # rounds 0-1 of 0-5: a third of the samples
    assert short.samples[key].size == run.samples[key].size // 3
    kept = np.isin(run.rounds[key], [0, 1])
    assert np.array_equal(short.samples[key], run.samples[key][kept])
    assert np.array_equal(short.paired_references[key], run.paired_references[key][kept])
    full, two = score(tmp_path, per_side=1), score(tmp_path, per_side=1, rounds=2)
    assert len(full) == len(two) and not np.allclose(full["ratio"], two["ratio"])


# ---- verdicts that say what the data shows; variance between processes -----------------------


def test_unchanged_needs_an_interval_inside_the_bounds_and_a_wide_one_is_undetermined(tmp_path):
    """A suite of 12 cases at a known ratio 1.0 with tight rounds (1%), one case with wide
    rounds (25%), and one case 20% slower."""
    rng = np.random.default_rng(7)

    def side(slow, seed):
        cases = {f"v{i:02d}": draws(2e-4, spread=0.01, drift=0.005, seed=seed + i)
                 for i in range(12)}  # fmt: skip
        cases["wide"] = draws(2e-4, spread=0.25, drift=0.25, seed=seed + 50)
        cases["slower"] = draws(2e-4 * slow, spread=0.01, drift=0.005, seed=seed + 60)
        return cases

    base = write_run(tmp_path / "base", side(1.0, int(rng.integers(100))))
    new = write_run(tmp_path / "new", side(1.2, 200 + int(rng.integers(100))))
    result = compare(base, new)
    verdicts = {c.label.split()[0]: c for c in result.cases}
    tight = [verdicts[f"v{i:02d}"] for i in range(12)]
    assert all(c.verdict == "unchanged" for c in tight), [(c.ci_low, c.ci_high) for c in tight]
    assert all(c.ci_low >= 1 / 1.1 and c.ci_high <= 1.1 for c in tight)
    wide = verdicts["wide"]
    assert wide.verdict == "undetermined" and not (wide.ci_low >= 1 / 1.1 and wide.ci_high <= 1.1)
    assert wide.detectable_ratio > 1.1
    slower = verdicts["slower"]
    assert slower.verdict == "regression" and slower.ratio == pytest.approx(1.2, rel=0.03)
    assert result.exit_code == 1
    report = markdown(result)
    assert "**12 of 14 cases shown unchanged**" in report and "1 undetermined" in report
    assert "smallest slowdown it could find" in report


def test_a_case_past_the_threshold_that_the_data_cannot_decide_is_cannot_tell(tmp_path):
    # 15% slower, but rounds with 40% spread: the estimate is past 10%, the test cannot tell
    base = write_run(tmp_path / "base", {"eca": draws(2e-4, n=5, spread=0.4, seed=1)})
    new = write_run(tmp_path / "new", {"eca": draws(2.3e-4, n=5, spread=0.4, seed=2)})
    result = compare(base, new)
    (case,) = result.cases
    assert case.verdict == "undetermined" and case.ratio > 1.1 and case.ci_low < 1.1
    assert result.cannot_tell == [case]
    assert result.verdict == "cannot tell" and result.exit_code == 3  # never "no regression"
    report = markdown(result)
    assert "**cannot tell**" in report and "no regression" not in report
    fold = report.index("<details>") if "<details>" in report else len(report)
    assert report.index("### Cannot tell") < fold and case.label in report[:fold]
    cli = _cli(base, new)
    assert cli.returncode == 3, cli.stderr


def test_strict_makes_any_undetermined_case_exit_3(tmp_path):
    # the same noise with no change: the estimate inside the threshold, the interval past it
    base = write_run(tmp_path / "base", {"eca": draws(2e-4, n=5, spread=0.4, seed=1)})
    new = write_run(tmp_path / "new", {"eca": draws(2e-4, n=5, spread=0.4, seed=7)})
    loose = compare(base, new)
    (case,) = loose.cases
    assert case.verdict == "undetermined" and 1 / 1.1 < case.ratio < 1.1 and case.ci_high > 1.1
    assert loose.verdict == "no regression" and loose.exit_code == 0
    strict = compare(base, new, strict=True)
    assert strict.verdict == "undetermined" and strict.exit_code == 3
    out = tmp_path / "verdict.json"
    cli = _cli(base, new, "--strict", "--json", out)
    assert cli.returncode == 3, cli.stderr
    verdict = json.loads(out.read_text())
    assert verdict["verdicts"]["undetermined"] == 1 and verdict["strict"] is True
    assert verdict["cases"][0]["detectable_ratio"] > 1.15


def test_a_suite_mean_wholly_past_the_threshold_is_a_regression(tmp_path):
    """24 variants each 25% slower, each too noisy alone to be called: the suite's geometric
    mean and its whole interval lie past 10%."""

    def side(factor, seed):
        return {f"v{i:02d}": draws(2e-4 * factor, n=12, spread=0.3, drift=0.0, seed=seed + i)
                for i in range(24)}  # fmt: skip

    result = compare(write_run(tmp_path / "base", side(1.0, 0)),
                     write_run(tmp_path / "new", side(1.25, 500)))  # fmt: skip
    _, low, _, covered = result.geometric_mean
    assert covered == 24 and low > 1.1 and not result.regressions
    assert result.suite_finding == "regression"
    assert result.verdict == "regression" and result.exit_code == 1
    assert "the suite as a whole is slower" in markdown(result)


def synthetic_suite(*, cases=300, runs=1, between_sd=0.04, within_sd=0.01, rounds=5, seed=0,
                    slowed=()):  # fmt: skip
    """Per case, BASE and NEW as `runs` processes each: every process moves the case by its
    own factor (sd `between_sd`, log scale), every round by `within_sd` more. The cases in
    `slowed` are 25% slower in NEW."""
    rng = np.random.default_rng(seed)
    suite = []
    for i in range(cases):
        sides = []
        sd = between_sd(i) if callable(between_sd) else between_sd
        for factor in (1.0, 1.25 if i in slowed else 1.0):
            process = np.repeat(rng.normal(0, sd, runs), rounds)
            times = 1e-4 * factor * np.exp(process + rng.normal(0, within_sd, runs * rounds))
            sides.append(Rounds(times, None, runs * rounds, np.repeat(np.arange(runs), rounds)))
        suite.append(fit_case(*sides, slope=0.0))
    return suite


@pytest.mark.parametrize("runs", [1, 2])
def test_the_between_run_variance_of_a_synthetic_suite_is_recovered(runs):
    slowed = set(range(0, 300, 6))  # a sixth of the suite changed: the medians stay put
    fits = synthetic_suite(runs=runs, slowed=slowed)
    estimate = between_runs(fits)
    assert estimate.source == ("suite" if runs == 1 else "runs")
    assert np.sqrt(estimate.variance) == pytest.approx(0.04, rel=0.25)
    # the rounds alone see 1% noise where processes differ by 4%: with the model, the 95%
    # intervals of the unchanged cases hold the truth about 95% of the time; without, far less
    unchanged = [f for i, f in enumerate(fits) if i not in slowed]
    covered = np.mean([case_test(f, estimate).ci_low <= 1 <= case_test(f, estimate).ci_high
                       for f in unchanged])  # fmt: skip
    naive = np.mean([case_test(f, between_runs([])).ci_low <= 1 <= case_test(
        f, between_runs([])).ci_high for f in unchanged])  # fmt: skip
    assert 0.90 <= covered <= 0.99 and naive < 0.6


def test_a_quiet_suite_gets_no_between_run_variance():
    estimate = between_runs(synthetic_suite(between_sd=0.0, within_sd=0.02, seed=3))
    assert np.sqrt(estimate.variance) < 0.01


def test_a_case_whose_processes_differ_more_gets_the_wider_interval_its_runs_show():
    """Two runs per side; one case in ten lands its processes 8% apart where the rest differ
    by 1%: the suite's figure alone would call many of them changed."""
    noisy = set(range(0, 300, 10))
    fits = synthetic_suite(runs=2, between_sd=lambda i: 0.08 if i in noisy else 0.01, seed=5)
    estimate = between_runs(fits)
    assert estimate.source == "runs" and np.isfinite(estimate.prior_df)
    tests = [case_test(f, estimate) for f in fits]
    covered = np.mean([t.ci_low <= 1 <= t.ci_high for i, t in enumerate(tests) if i in noisy])
    width = {kind: np.median([np.log(t.ci_high / t.ci_low) for i, t in enumerate(tests)
                              if (i in noisy) == kind]) for kind in (True, False)}  # fmt: skip
    alone = BetweenRuns(estimate.variance, estimate.df, "runs", estimate.cases)  # no moderation
    covered_alone = np.mean([case_test(f, alone).ci_low <= 1 <= case_test(f, alone).ci_high
                             for i, f in enumerate(fits) if i in noisy])  # fmt: skip
    assert covered >= 0.75 and covered_alone < 0.4  # shrunk toward the suite, not all the way
    assert width[True] > 2 * width[False]


def test_one_run_per_side_calls_no_change_where_only_the_copy_moved(tmp_path):
    """One run per side of 150 cases whose times and paired copies share the machine's drift
    from round to round, NEW's machine 8% slower throughout: in NEW, 5 cases' copies land 30%
    slower still (their tensors in another state in that process) while their times move
    with the machine only, and 22 others are 20% slower."""
    jumped, slowed = set(range(4, 150, 30)), set(range(0, 150, 7))
    assert not jumped & slowed
    sides = {}
    for side in ("base", "new"):
        cases = {}
        for i in range(150):
            slow = 1.2 if side == "new" and i in slowed else 1.0
            machine = 1.08 if side == "new" else 1.0
            times, refs = draws(2e-4 * slow, spread=0.01, seed=1000 * (side == "new") + i,
                                slow_machine=machine)  # fmt: skip
            cases[f"v{i:03d}"] = (times, refs * (1.3 if side == "new" and i in jumped else 1.0))
        sides[side] = write_run(tmp_path / side, cases)
    result = compare(sides["base"], sides["new"])
    assert result.between_runs.source == "suite"
    verdicts = {int(c.label[1:4]): c for c in result.cases}
    for i in jumped:  # against the copy alone, a clear improvement; the raw time says no
        case = verdicts[i]
        assert case.ratio < 0.85 and case.p_adjusted < 0.05
        assert case.raw_ratio > 1.05 and case.check_ratio == pytest.approx(1.0, abs=0.03)
        assert case.verdict == "undetermined" and case.check_p_adjusted >= 0.05
        assert "did not move significantly" in case.reason
    found = {i for i, c in verdicts.items() if c.verdict == "regression"}
    assert found == slowed  # both tests agree on a real slowdown
    # the machine's 8% is taken out of the time (1.2 x 1.08 would be 1.30), the code's 20% not
    assert all(verdicts[i].check_p_adjusted < 0.05 for i in slowed)
    assert np.median([verdicts[i].check_ratio for i in slowed]) == pytest.approx(1.2, rel=0.02)
    assert not result.improvements
    assert "5 case(s) past the threshold against their reference stay" in markdown(result)
    assert result.check == "time over the machine's drift"
    raw = compare(sides["base"], sides["new"], reference=None)  # no copy: nothing to check
    assert all(np.isnan(c.check_p_adjusted) for c in raw.cases)


def test_the_step_summary_is_appended_and_cut_under_githubs_cap(tmp_path, monkeypatch):
    from bench.gate.render import STEP_SUMMARY_BYTES, append_step_summary

    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    assert append_step_summary("## report\n") is None  # outside Actions: nothing written
    summary = tmp_path / "summary.md"
    summary.write_text("an earlier step's line\n")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    append_step_summary("## report\n")
    assert summary.read_text() == "an earlier step's line\n## report\n"
    append_step_summary("| row |\n" * 400_000, whole="ab/compare.md")  # 3.2 MB
    text = summary.read_text()
    assert len(text.encode()) <= STEP_SUMMARY_BYTES < 1024 * 1024
    assert text.startswith("an earlier step's line\n## report\n")
    assert text.rstrip().endswith("the whole report is ab/compare.md)")


def test_two_runs_per_side_call_no_change_where_the_machine_moved_between_the_sides(tmp_path):
    """Two runs per side, each process on a steady machine, both of NEW's on one 16% slower (a
    neighbour busy through the middle of `bench ab`'s base, new, new, base): within a side the
    copies do not move, so nothing there ties a case's time to its copy, and the runs of a
    side agree with each other. Identical code must not be a regression; 4 cases really 30%
    slower must still be."""
    slowed = {2, 7, 11, 16}

    def sides(slow):
        out = {}
        for side in ("base", "new"):
            for run in (1, 2):
                cases = {}
                for i in range(20):
                    factor = 1.3 if side == "new" and i in slow else 1.0
                    cases[f"v{i:03d}"] = draws(
                        2e-4 * factor, spread=0.01, drift=0.0, rounds=3, n=30,
                        seed=100 * run + 1000 * (side == "new") + i,
                        slow_machine=1.16 if side == "new" else 1.0,
                    )  # fmt: skip
                write_run(tmp_path / f"{slow!r}" / side / f"run-{run}", cases, rounds=3,
                          machine=1.16 if side == "new" else 1.0)  # fmt: skip
            out[side] = tmp_path / f"{slow!r}" / side
        return out["base"], out["new"]

    same = compare(*sides(set()))
    assert same.between_runs.source == "runs" and same.drift == pytest.approx(1.16, rel=0.03)
    assert not same.regressions and not same.improvements
    assert same.check == "time over the case's own copy"
    held = [c for c in same.cases if c.ratio > 1.1 and c.p_adjusted < 0.05]
    assert held and all("time over the case's own copy did not move" in c.reason for c in held)
    assert all(c.check_ratio == pytest.approx(1.0, abs=0.04) for c in same.cases)
    assert "the machine may have moved between the sides" in markdown(same)
    record = to_json(same)
    assert record["check"] == "time over the case's own copy" and record["verdict"] != "regression"
    slower = compare(*sides(slowed))
    assert {int(c.label[1:4]) for c in slower.regressions} == slowed

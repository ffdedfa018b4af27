import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from bench.gate.compare import CompareInputError, compare, markdown, parse_threshold
from bench.sweep.results import COLUMNS, SAMPLE_COLUMNS


def write_run(path, cases, *, flops=None, quality=None):
    """A run directory whose cases have the given samples.

    `cases` maps a variant name to (samples, paired_reference_samples); a copy reference row is
    written per run as well.
    """
    path.mkdir(parents=True)
    rows, samples = [], []
    for name, (times, refs) in {**cases, "copy": (cases_reference(cases), None)}.items():
        case_id = f"id-{name}"
        rows.append({
            **dict.fromkeys(COLUMNS, ""), "run_id": "r", "case_id": case_id,
            "role": "reference" if name == "copy" else "variant", "variant": name,
            "variant_label": name, "batch": 8, "channels": 64, "height": 28, "width": 28,
            "dtype": "float32", "device": "cpu", "mode": "infer",
            "memory_format": "contiguous", "compile": False, "status": "ok",
            "flops": (flops or {}).get(name, 1000), "macs": 10, "bytes_moved": 100,
            "peak_memory_bytes": 64, "params": 3, "latency_median_s": float(np.median(times)),
            "quality": (quality or {}).get(name, "ok"),
        })  # fmt: skip
        for i, t in enumerate(times):
            samples.append(
                {
                    "run_id": "r",
                    "case_id": case_id,
                    "sample": i,
                    "seconds_per_call": t,
                    "block_size": 1,
                    "reference_seconds_per_call": "" if refs is None else refs[i],
                }
            )
    pd.DataFrame(rows, columns=COLUMNS).to_csv(path / "results.csv", index=False)
    pd.DataFrame(samples, columns=SAMPLE_COLUMNS).to_csv(path / "samples.csv", index=False)
    return path


def cases_reference(cases):
    first = next(iter(cases.values()))
    return first[1] if first[1] is not None else np.full(len(first[0]), 1e-4)


def draws(median, n=60, spread=0.02, seed=0, slow_machine=1.0):
    """Samples around `median` and paired copy samples around 1e-4, both scaled by the machine."""
    rng = np.random.default_rng(seed)
    times = median * slow_machine * (1 + spread * rng.standard_normal(n))
    refs = 1e-4 * slow_machine * (1 + spread * rng.standard_normal(n))
    return times, refs


def test_no_change_passes(tmp_path):
    base = write_run(tmp_path / "base", {"eca": draws(2e-4, seed=1), "se": draws(3e-4, seed=2)})
    new = write_run(tmp_path / "new", {"eca": draws(2e-4, seed=3), "se": draws(3e-4, seed=4)})
    result = compare(base, new)
    assert result.exit_code == 0 and not result.regressions
    assert {c.verdict for c in result.cases} == {"unchanged"}
    assert all(c.normalised for c in result.cases)
    assert "**no regression**" in markdown(result)


def test_a_clear_regression_fails_with_its_ratio_and_interval(tmp_path):
    base = write_run(tmp_path / "base", {"eca": draws(2e-4, seed=1), "se": draws(3e-4, seed=2)})
    new = write_run(tmp_path / "new", {"eca": draws(2.6e-4, seed=3), "se": draws(3e-4, seed=4)})
    result = compare(base, new)
    assert result.exit_code == 1
    (regression,) = result.regressions
    assert regression.label.startswith("eca ")
    assert regression.ratio == pytest.approx(1.3, rel=0.03)
    assert regression.ci_low > 1.1 and regression.p_value < 1e-6
    report = markdown(result)
    assert "**1 regression(s)**" in report and "### Regressions" in report


def test_an_improvement_is_reported_and_does_not_fail(tmp_path):
    base = write_run(tmp_path / "base", {"eca": draws(2e-4, seed=1)})
    new = write_run(tmp_path / "new", {"eca": draws(1.5e-4, seed=2)})
    result = compare(base, new)
    assert result.exit_code == 0 and len(result.improvements) == 1


def test_noisy_but_not_significant_is_not_a_regression(tmp_path):
    # 15% slower in the median, but 5 samples with 40% spread: no test can tell
    base = write_run(tmp_path / "base", {"eca": draws(2e-4, n=5, spread=0.4, seed=1)})
    new = write_run(tmp_path / "new", {"eca": draws(2.3e-4, n=5, spread=0.4, seed=2)})
    (case,) = compare(base, new).cases
    assert case.verdict == "unchanged" and case.p_value > 0.01


def test_machine_drift_cancels_through_the_paired_copy(tmp_path):
    base = write_run(tmp_path / "base", {"eca": draws(2e-4, seed=1)})
    # the whole machine 30% slower: the variant and its paired copy alike
    new = write_run(tmp_path / "new", {"eca": draws(2e-4, seed=2, slow_machine=1.3)})
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
    def save(path, eca_median, seed):
        rng = np.random.default_rng(seed)
        benchmarks = []
        for name, median in (("eca", eca_median), ("copy", 1e-4)):
            data = list(median * (1 + 0.02 * rng.standard_normal(50)))
            benchmarks.append({
                "name": f"test_block[{name}]", "fullname": f"tests/perf::test_block[{name}]",
                "stats": {"data": data, "median": float(np.median(data))},
                "extra_info": {"variant": name, "role": "reference" if name == "copy" else "variant",
                               "batch": 8, "channels": 64, "height": 28, "width": 28,
                               "dtype": "float32", "device": "cpu", "mode": "infer",
                               "memory_format": "contiguous", "compile": False, "flops": 7},
            })  # fmt: skip
        path.write_text(json.dumps({"benchmarks": benchmarks}))
        return path

    base = save(tmp_path / "base.json", 2e-4, 1)
    assert compare(base, save(tmp_path / "same.json", 2e-4, 2)).exit_code == 0
    assert compare(base, save(tmp_path / "slow.json", 2.6e-4, 3)).exit_code == 1
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
    other = write_run(tmp_path / "other", {"cbam": draws(2e-4, seed=1)})
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
        assert sorted(p.name for p in (out / side).iterdir()) == ["round-1", "round-2"]
    report = (out / "compare.md").read_text()
    assert "## Performance comparison" in report and "eca b1 c8 4x4" in report


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
    assert verdicts["eca"].reason == "NEW flagged contended, unstable"
    assert verdicts["se"].verdict == "unchanged"
    assert result.exit_code == 3
    text = markdown(result)
    assert "**inconclusive**" in text and "NEW flagged contended, unstable" in text


def test_a_regression_still_exits_1_beside_an_inconclusive_case(tmp_path):
    base = write_run(tmp_path / "base", {"eca": draws(2e-4), "se": draws(3e-4, seed=1)})
    new = write_run(
        tmp_path / "new",
        {"eca": draws(3e-4, seed=2), "se": draws(3e-4, seed=3)},
        quality={"se": "few_samples"},
    )
    result = compare(base, new)
    assert [c.verdict for c in result.cases] == ["regression", "inconclusive"]
    assert result.exit_code == 1


def test_pytest_benchmark_json_from_the_suite_carries_paired_samples_and_quality(tmp_path):
    def benchmark(name, times, refs, quality="ok"):
        info = {
            "variant": name, "role": "variant", "batch": 8, "channels": 64, "height": 28,
            "width": 28, "dtype": "float32", "device": "cpu", "mode": "infer",
            "memory_format": "contiguous", "compile": False, "quality": quality,
            "samples_s": list(times), "reference_samples_s": list(refs),
        }  # fmt: skip
        # pytest-benchmark's own data is absent on purpose: the suite's samples are used
        return {"name": name, "fullname": f"test[{name}]", "stats": {}, "extra_info": info}

    def save(path, slow_machine, quality="ok"):
        eca = draws(2e-4, seed=int(slow_machine * 10), slow_machine=slow_machine)
        path.write_text(json.dumps({"benchmarks": [benchmark("eca", *eca, quality)]}))
        return path

    # the whole machine twice as slow: the paired copies take it out
    result = compare(save(tmp_path / "a.json", 1.0), save(tmp_path / "b.json", 2.0))
    (case,) = result.cases
    assert case.normalised and case.verdict == "unchanged" and abs(case.ratio - 1) < 0.03
    flagged = compare(save(tmp_path / "a.json", 1.0), save(tmp_path / "c.json", 1.0, "unstable"))
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
        path = write_run(path, {"eca": (times, refs)})
        rows = pd.read_csv(path / "results.csv")
        conv = rows[rows["variant"] == "copy"].assign(
            case_id="id-conv3x3", variant="conv3x3", variant_label="conv3x3"
        )
        pd.concat([rows, conv]).to_csv(path / "results.csv", index=False)
        samples = pd.read_csv(path / "samples.csv")
        extra = samples[samples["case_id"] == "id-copy"].assign(
            case_id="id-conv3x3", seconds_per_call=draws(conv_median, seed=seed + 5)[0]
        )
        pd.concat([samples, extra]).to_csv(path / "samples.csv", index=False)
        return path

    # eca and the 3x3 convolution both twice as slow; the copy beside eca is not
    base, new = run(tmp_path / "base", 2e-4, 1e-3, 0), run(tmp_path / "new", 4e-4, 2e-3, 10)
    assert compare(base, new).cases[0].verdict == "regression"  # 2x a copy
    by_conv = compare(base, new, reference="conv3x3")
    (case,) = by_conv.cases
    assert case.verdict == "unchanged" and abs(case.ratio - 1) < 0.05
    assert "`conv3x3` reference" in markdown(by_conv)


def test_compare_json_gives_the_verdict_and_every_case_with_its_identity(tmp_path):
    base = write_run(tmp_path / "base", {"eca": draws(2e-4), "se": draws(3e-4, seed=1)})
    new = write_run(tmp_path / "new", {"eca": draws(2.6e-4, seed=2), "se": draws(3e-4, seed=3)},
                    quality={"se": "unstable"})  # fmt: skip
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
                 "rounds_base", "rounds_new"):  # fmt: skip
        assert name in eca, name
    assert eca["batch"] == 8 and eca["compile"] is False and eca["ci_low"] < eca["ratio"]
    assert eca["rounds_base"] == 1  # samples written without a round column: one stretch


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
    assert f"over 2 trusted cases: **{mean:.3f}**" in markdown(result)

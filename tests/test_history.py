"""The history: a store of runs keyed by commit and machine, change points found in it, a check
for CI, and a static site opened in a real headless Chromium.

The browser test needs Debian's chromium and chromium-driver (`bash .ci/browser.sh` installs
them); where they are missing it is skipped with the reason in pytest's summary, and with
BENCH_REQUIRE_BROWSER=1 (as `.ci/run` sets) it fails instead."""

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from bench.history.changes import change_points
from bench.history.series import case_points
from bench.history.store import FORMAT_FILE, HistoryError, HistoryStore
from bench.sweep.rundir import COLUMNS, SAMPLE_COLUMNS

from .browser import chromium

VARIANTS = ("eca", "se", "cbam")


def write_run(path, commit, index, *, factors=None, cpu="Test CPU", rounds=5, seed=0,
              noise=0.01):  # fmt: skip
    """A run directory at `commit` (the `index`-th run of the history, for its start time):
    each variant's rounds around 1e-4 s x its factor, a copy beside each sample."""
    rng = np.random.default_rng(seed)
    path.mkdir(parents=True)
    rows, samples = [], []
    for name in (*VARIANTS, "copy"):
        case_id = f"id-{name}"
        rows.append({
            **dict.fromkeys(COLUMNS, ""), "run_id": f"run-{index:03d}-{cpu[:4]}",
            "case_id": case_id, "role": "reference" if name == "copy" else "variant",
            "variant": name, "variant_label": name, "batch": 2, "channels": 64, "height": 14,
            "width": 14, "dtype": "float32", "device": "cpu",
            "mode": "train" if name == "cbam" else "infer", "memory_format": "contiguous",
            "compile": False, "status": "ok", "quality": "ok",
        })  # fmt: skip
        factor = (factors or {}).get(name, 1.0)
        for r in range(rounds):
            level = factor * np.exp(noise * rng.standard_normal())
            for s in range(4):
                samples.append({
                    "run_id": f"run-{index:03d}", "case_id": case_id, "sample": r * 4 + s,
                    "round": r, "seconds_per_call": 1e-4 * level, "block_size": 1,
                    "reference_seconds_per_call": 1e-5 * np.exp(0.01 * rng.standard_normal()),
                })  # fmt: skip
    pd.DataFrame(rows, columns=COLUMNS).to_csv(path / "results.csv", index=False)
    pd.DataFrame(samples, columns=SAMPLE_COLUMNS).to_csv(path / "samples.csv", index=False)
    (path / "run.json").write_text(json.dumps({
        "run_id": f"run-{index:03d}-{cpu[:4]}", "status": "complete", "schema_version": 2,
        "started_utc": f"2026-01-01T00:{index:02d}:00Z",
    }))  # fmt: skip
    env = {"git_commit": commit, "git_dirty": False, "cpu_model": cpu, "torch": "2.13.0",
           "torch_threads": 2, "packages": {}, "host": "test"}  # fmt: skip
    (path / "env.json").write_text(json.dumps(env))
    return path


def commit_id(i: int) -> str:
    return f"{i:02x}" + "c" * 38  # distinct in their first characters, as real ones are


def history_runs(tmp_path, commits=12, step_at=None, step=1.2, variant="eca", **kwargs):
    """One run per commit; from commit `step_at` on, `variant` is `step` times slower."""
    runs = []
    for i in range(commits):
        factors = {variant: step} if step_at is not None and i >= step_at else {}
        runs.append(write_run(tmp_path / f"run-{i:02d}", commit_id(i), i, factors=factors,
                              seed=i, **kwargs))  # fmt: skip
    return runs


def _bench(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "bench", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout)  # fmt: skip


def _files(store):
    return sorted(str(p.relative_to(store)) for p in store.rglob("*") if p.is_file())


def test_adding_is_idempotent_and_machines_are_kept_apart(tmp_path):
    store = HistoryStore(tmp_path / "store")
    runs = history_runs(tmp_path / "runs", commits=3)
    first = store.add(runs)
    assert len(first.added) == 3 and not first.already
    before = {f: (tmp_path / "store" / f).read_bytes() for f in _files(tmp_path / "store")}
    again = store.add(runs)
    assert not again.added and len(again.already) == 3
    assert {f: (tmp_path / "store" / f).read_bytes() for f in before} == before  # unchanged
    assert _files(tmp_path / "store") == sorted(before)
    other = write_run(tmp_path / "other", f"{0:040x}", 0, cpu="Other CPU")
    store.add([other])
    machines = {p.name for p in (tmp_path / "store").glob("machine=*")}
    assert len(machines) == 2
    rounds = store.rounds()
    assert rounds.groupby("machine")["commit"].nunique().sort_values().tolist() == [1, 3]
    assert set(rounds["round"]) == set(range(5))  # every round kept, not one figure per run
    assert rounds[rounds["case_id"] == "id-eca"]["time_s"].between(0.9e-4, 1.1e-4).all()


def test_bad_input_gets_a_clear_error_and_changes_nothing(tmp_path):
    store_dir = tmp_path / "store"
    good = write_run(tmp_path / "good", f"{1:040x}", 1)
    bad = write_run(tmp_path / "bad", f"{2:040x}", 2)
    env = json.loads((bad / "env.json").read_text())
    del env["git_commit"]
    (bad / "env.json").write_text(json.dumps(env))
    with pytest.raises(HistoryError, match="names no git commit"):
        HistoryStore(store_dir).add([good, bad])
    assert not store_dir.exists() or not _files(store_dir)  # the good run was not added either
    cli = _bench("history", "add", good, bad, "--store", store_dir)
    assert cli.returncode == 2 and "names no git commit" in cli.stderr
    HistoryStore(store_dir).add([good])
    (store_dir / FORMAT_FILE).write_text(json.dumps({"format": 99}))
    files = _files(store_dir)
    with pytest.raises(HistoryError, match="format 99, written by a newer bench"):
        HistoryStore(store_dir).add([write_run(tmp_path / "third", f"{3:040x}", 3)])
    assert _files(store_dir) == files
    no_range = _bench("history", "backfill", "--commits", "nosuchrev..HEAD", "--store", store_dir)
    assert no_range.returncode == 2 and "--commits nosuchrev..HEAD: git:" in no_range.stderr
    assert _files(store_dir) == files
    not_range = _bench("history", "backfill", "--commits", "HEAD", "--store", store_dir)
    assert not_range.returncode == 2 and "allowed: a range A..B" in not_range.stderr
    bad_sweep = _bench("history", "backfill", "--commits", "HEAD~1..HEAD", "--store", store_dir,
                       "--channels", "many")  # fmt: skip
    assert bad_sweep.returncode == 2 and "--channels" in bad_sweep.stderr, bad_sweep.stderr
    assert _files(store_dir) == files


def synthetic_rounds(seed, *, commits=30, step_at=None, step=1.05, rounds=5):
    """A store's rounds for one case over `commits` commits, one run each: every round's time
    off by 1-3% noise (by seed), each process by 0.5% more (the quick preset's between-run
    spread), and from commit `step_at` on `step` times slower."""
    rng = np.random.default_rng(seed)
    noise = 0.01 + 0.02 * (seed % 10) / 9
    rows = []
    for i in range(commits):
        level = np.log(step) * (step_at is not None and i >= step_at) + rng.normal(0, 0.005)
        for r in range(rounds):
            rows.append({
                "machine": "m", "machine_label": "m", "case_id": "id-eca", "label": "eca",
                "variant_label": "eca", "role": "variant", "batch": 2, "channels": 64,
                "height": 14, "width": 14, "dtype": "float32", "device": "cpu", "mode": "infer",
                "memory_format": "contiguous", "compile": False, "commit": commit_id(i),
                "commit_time": f"2026-01-01T00:{i:02d}:00Z", "run_id": f"run-{i:02d}",
                "run_dir": "/nowhere", "round": r, "quality": "ok", "samples": 4,
                "time_s": 1e-4 * np.exp(level + rng.normal(0, noise)),
                "reference_s": 1e-5 * np.exp(rng.normal(0, 0.01)),
            })  # fmt: skip
    points = case_points(pd.DataFrame(rows))
    return points["value"].to_numpy(), points["commit"].tolist()


def test_a_known_step_is_found_at_its_commit_and_a_flat_history_has_none():
    """5% at commit 15 of 30, 1-3% noise per round: the step's commit or its neighbour in at
    least 9 of 10 seeds; on a flat history, no change point in at least 9 of 10."""
    right, false_alarms = 0, 0
    for seed in range(10):
        values, commits = synthetic_rounds(seed, step_at=15)
        found = change_points(values, commits)
        right += any(abs(c.index - 15) <= 1 and c.ratio > 1.02 for c in found)
        flat, flat_commits = synthetic_rounds(100 + seed)
        false_alarms += bool(change_points(flat, flat_commits))
    assert right >= 9, right
    assert false_alarms <= 1, false_alarms


def test_a_change_point_carries_its_commits_step_and_interval():
    values, commits = synthetic_rounds(3, step_at=12, step=1.10)
    (found,) = change_points(values, commits)
    assert (found.before, found.after) == (commit_id(11), commit_id(12))
    assert found.ci_low < found.ratio < found.ci_high
    assert found.ci_low < 1.10 < found.ci_high and found.p_value < 1e-3


def test_check_exits_1_when_the_newest_commit_starts_a_regression(tmp_path):
    store = tmp_path / "store"
    runs = history_runs(tmp_path / "runs", commits=10, step_at=9, step=1.3)
    assert _bench("history", "add", *runs[:9], "--store", store).returncode == 0
    quiet = _bench("history", "check", "--store", store)
    assert quiet.returncode == 0, quiet.stdout + quiet.stderr
    assert "no regression" in quiet.stdout
    assert _bench("history", "add", runs[9], "--store", store).returncode == 0
    slow = _bench("history", "check", "--store", store)
    assert slow.returncode == 1, slow.stdout + slow.stderr
    flagged = [line for line in slow.stdout.splitlines() if "REGRESSION" in line]
    assert flagged and all("eca b2 c64 14x14" in line or "suite" in line for line in flagged)


def test_the_site_opens_in_headless_chromium_with_its_step_marked_and_filters(tmp_path):
    from PIL import Image
    from selenium.webdriver.support.ui import Select, WebDriverWait

    runs = history_runs(tmp_path / "runs", commits=14, step_at=7, step=1.25, variant="se")
    store = tmp_path / "store"
    assert _bench("history", "add", *runs, "--store", store).returncode == 0
    site = tmp_path / "site"
    published = _bench("history", "publish", "--store", store, "--out", site)
    assert published.returncode == 0, published.stderr
    assert sorted(p.name for p in site.iterdir()) == ["index.html", "plotly.min.js"]
    assert "http://" not in (site / "index.html").read_text().split("<script")[0]  # offline
    driver = chromium(width=1400, height=1000)
    try:
        driver.get((site / "index.html").resolve().as_uri())
        WebDriverWait(driver, 30).until(lambda d: d.execute_script(
            "return document.getElementById('suite').dataset.rendered === 'true'"))  # fmt: skip
        boxes = driver.execute_script(
            "return Array.from(document.querySelectorAll('.case')).map(b => "
            "({variant: b.dataset.variant, changes: +b.dataset.changePoints, "
            "commits: b.dataset.changeCommits}))"
        )
        by_variant = {b["variant"]: b for b in boxes}
        assert by_variant["se"]["changes"] >= 1 and commit_id(7)[:10] in by_variant["se"]["commits"]
        assert by_variant["eca"]["changes"] == 0
        WebDriverWait(driver, 30).until(lambda d: d.execute_script(
            "return document.querySelectorAll('.case .chart[data-rendered]').length === 3"))  # fmt: skip
        shapes = driver.execute_script(
            "const box = Array.from(document.querySelectorAll('.case'))"
            ".find(b => b.dataset.variant === 'se'); return box.chart.layout.shapes.length"
        )
        assert shapes >= 1  # the step is drawn on the chart, not only named
        assert driver.find_element("id", "shown-count").text == "3"
        Select(driver.find_element("id", "filter-variant")).select_by_value("se")
        assert driver.find_element("id", "shown-count").text == "1"
        hidden = driver.execute_script(
            "return document.querySelectorAll('.case.hidden').length")  # fmt: skip
        assert hidden == 2
        Select(driver.find_element("id", "filter-variant")).select_by_value("all")
        Select(driver.find_element("id", "filter-mode")).select_by_value("train")
        assert driver.find_element("id", "shown-count").text == "1"  # cbam alone trains here
        Select(driver.find_element("id", "filter-mode")).select_by_value("all")
        errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        assert not errors, errors
        shot = tmp_path / "dashboard.png"
        driver.save_screenshot(str(shot))
    finally:
        driver.quit()
    image = np.asarray(Image.open(shot).convert("L"), dtype=float)
    assert image.shape[0] > 500 and image.std() > 10  # drawn, not a blank page

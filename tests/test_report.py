import itertools
import re
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from bench.report.builder import report
from bench.report.plots import COLUMN_WIDTH_IN, DPI, FULL_WIDTH_IN
from bench.report.tables import decimals_for, format_measured
from bench.sweep.rundir import COLUMNS, RunDirectoryError
from bench.sweep.runner import run_sweep
from bench.sweep.spec import build_spec


def _row(**fields):
    row = dict.fromkeys(COLUMNS, np.nan)
    row.update(
        run_id="r",
        role="variant",
        model="",
        options="",
        batch=2,
        dtype="float32",
        device="cpu",
        memory_format="contiguous",
        compile=False,
        threads=2,
        status="ok",
        error="",
        n_samples=20,
        block_size=1,
        stop_reason="ci_target",
    )
    row.update(fields)
    row["variant_label"] = fields.get("variant_label", row["variant"])
    return row


def write_synthetic_run(run_dir):
    """A run directory with known numbers: references, variants, a failure and networks."""
    rows = []
    base = {"identity": 1e-6, "copy": 1e-5, "conv3x3": 1e-3, "eca": 5e-5, "se": 4e-5}
    for (variant, latency), channels, side, mode in itertools.product(
        base.items(), (64, 128), (14, 28), ("infer", "train")
    ):
        scale = (side / 14) ** 2 * channels / 64 * (3 if mode == "train" else 1)
        median = latency * scale
        rows.append(_row(
            case_id=f"{variant}-{channels}-{side}-{mode}", variant=variant,
            role="variant" if variant in ("eca", "se") else "reference", channels=channels,
            height=side, width=side, mode=mode, latency_median_s=median,
            latency_iqr_s=0.02 * median, latency_ci_low_s=0.99 * median,
            latency_ci_high_s=1.01 * median, latency_mean_s=median, latency_std_s=0.01 * median,
            images_per_s=2 / median, flops=0 if variant == "identity" else int(1e6 * scale),
            macs=int(1e5 * scale), bytes_read=int(4e5 * scale), bytes_written=int(4e5 * scale),
            bytes_moved=int(8e5 * scale), peak_memory_bytes=int(2**20 * scale),
            params={"eca": 3, "se": 580, "conv3x3": 36864}.get(variant, 0), seed=1,
            quality="contended" if (variant, channels, side, mode) == ("copy", 128, 28, "infer")
            else "ok",
        ))  # fmt: skip
    rows.append(
        _row(
            case_id="broken",
            variant="cbam",
            channels=64,
            height=14,
            width=14,
            mode="infer",
            status="error",
            error="RuntimeError: kernel exploded",
        )
    )
    for variant, params, images in (("none", 25_557_032, 100.0), ("eca", 25_557_118, 95.0)):
        for mode in ("infer", "train"):
            rows.append(_row(
                case_id=f"net-{variant}-{mode}", role="network", model="resnet50",
                variant=variant, channels=3, height=224, width=224, batch=8, mode=mode,
                latency_median_s=8 / images, latency_ci_low_s=8 / images * 0.99,
                latency_ci_high_s=8 / images * 1.01, latency_iqr_s=0.01,
                images_per_s=images / (3 if mode == "train" else 1), params=params,
                flops=8 * 8_217_634_280, macs=8 * 4_089_184_256, bytes_moved=10**9,
                peak_memory_bytes=10**8,
            ))  # fmt: skip
    run_dir.mkdir(parents=True)
    pd.DataFrame(rows, columns=COLUMNS).to_csv(run_dir / "results.csv", index=False)
    pd.DataFrame(
        [
            {
                "device": "cpu",
                "dtype": "float32",
                "memory_bandwidth_bytes_per_s": 2e10,
                "peak_flops_per_s": 3e11,
                "copy_bytes": 2**28,
                "matmul_n": 1024,
                "threads": 2,
            }
        ]
    ).to_csv(run_dir / "ceilings.csv", index=False)
    return run_dir


@pytest.fixture(scope="module")
def synthetic_report(tmp_path_factory):
    run_dir = write_synthetic_run(tmp_path_factory.mktemp("synthetic") / "run")
    return run_dir, report(run_dir)


def test_every_table_and_chart_is_written(synthetic_report):
    run_dir, written = synthetic_report
    names = {p.relative_to(run_dir).as_posix() for p in written}
    for setting in ("cpu_float32_infer", "cpu_float32_train"):
        for kind in ("latency", "overhead"):
            for ext in ("md", "tex", "csv"):
                assert f"tables/{kind}_{setting}.{ext}" in names
        for chart in ("latency_vs_resolution", "roofline"):
            for size, ext in itertools.product(("full", "column"), ("png", "pdf", "svg")):
                assert f"plots/{chart}_{setting}_{size}.{ext}" in names
    assert "tables/cost_cpu_float32.md" in names
    assert "plots/memory_vs_resolution_cpu_float32_full.png" in names
    assert "tables/network_resnet50_cpu_float32.tex" in names
    assert "plots/network_overhead_resnet50_cpu_float32_column.pdf" in names
    assert all(p.stat().st_size > 0 for p in written)


def test_pngs_have_the_requested_width_at_300_dpi(synthetic_report):
    _, written = synthetic_report
    pngs = [p for p in written if p.suffix == ".png"]
    assert pngs
    for png in pngs:
        with Image.open(png) as image:
            image.load()  # a truncated file fails here
            width, height = image.size
            dpi = image.info.get("dpi", (0, 0))[0]
        expected = FULL_WIDTH_IN if png.stem.endswith("_full") else COLUMN_WIDTH_IN
        assert width == round(expected * DPI), png.name
        assert 0.5 * width / 3 < height < 1.5 * width, png.name
        assert round(dpi) == DPI


def test_pdfs_embed_type42_fonts_and_no_type3(synthetic_report):
    _, written = synthetic_report
    for pdf in (p for p in written if p.suffix == ".pdf"):
        data = pdf.read_bytes()
        assert data.startswith(b"%PDF")
        assert b"/FontFile2" in data, pdf.name  # embedded TrueType outlines (Type 42)
        assert not re.search(rb"/Subtype\s*/Type3", data), pdf.name


def test_markdown_and_latex_tables_hold_the_expected_rows(synthetic_report):
    run_dir, _ = synthetic_report
    md = (run_dir / "tables" / "latency_cpu_float32_infer.md").read_text()
    rows = [line for line in md.splitlines() if line.startswith("|")][2:]
    assert len(rows) == 2 * 5  # 2 channel counts x (3 references + 2 variants)
    # one unit for the whole report, from all its times (the typical one is about a ms)
    assert (
        "in ms" in md
        and "in ms" in (run_dir / "tables" / "latency_cpu_float32_train.md").read_text()
    )
    # eca, C=64, 14x14: 0.05 ms with a CI of +/-1% (0.0005 ms): digits to the interval's first
    # significant digit; at 28x28, 0.2 ms +/- 0.002 ms
    assert re.search(r"\| 64 +\| eca +\| 0\.0500 \[0\.0010\] +\| 0\.200 \[0\.004\]", md)
    tex = (run_dir / "tables" / "overhead_cpu_float32_infer.tex").read_text()
    for rule in (r"\toprule", r"\midrule", r"\bottomrule"):
        assert rule in tex
    assert tex.count(r"\\") >= 2 * 2 * 2  # channels x resolutions x variants, plus the header
    network = (run_dir / "tables" / "network_resnet50_cpu_float32.md").read_text()
    assert "ResNet-50 + eca" in network and "25.557" in network and "24.373" in network
    assert "4.089" in network  # GMACs


def test_failed_cases_are_reported_not_fatal(synthetic_report):
    run_dir, _ = synthetic_report
    failures = (run_dir / "tables" / "failures.md").read_text()
    assert "RuntimeError: kernel exploded" in failures and "cbam" in failures
    assert "kernel exploded" in (run_dir / "report.md").read_text()


def test_overhead_ratios_are_read_against_the_references_beside_them(synthetic_report):
    run_dir, _ = synthetic_report
    raw = pd.read_csv(run_dir / "tables" / "overhead_cpu_float32_infer.csv")
    eca = raw[(raw.variant == "eca") & (raw.channels == 64) & (raw.height == 14)].iloc[0]
    assert eca.ratio_vs_conv3x3 == pytest.approx(5e-5 / 1e-3)
    assert eca.ratio_vs_copy == pytest.approx(5.0)
    assert eca.added_vs_identity_s == pytest.approx(5e-5 - 1e-6)


def test_the_overhead_table_carries_intervals_and_the_flag_of_the_references_beside(
    synthetic_report,
):
    run_dir, _ = synthetic_report
    md = (run_dir / "tables" / "overhead_cpu_float32_infer.md").read_text()
    # eca at 64 channels, 14x14: 0.05 ms and 5x a copy, each median +-1%: the ratio +-1.4%
    assert re.search(r"\| 64 +\| 14x14 +\| eca +\| 0\.0500 ± 0\.0005 .*\| 5\.00 ± 0\.07 +\|", md)
    # the copy beside the 128-channel 28x28 cases was flagged: both variants there carry it
    flagged = [line for line in md.splitlines() if "†" in line and line.startswith("|")]
    assert len(flagged) == 2 and all("| 128 " in line and "28x28" in line for line in flagged)
    assert "± is the 95% interval's half-width" in md


def test_report_md_links_every_table_it_writes(synthetic_report):
    run_dir, written = synthetic_report
    index = (run_dir / "report.md").read_text()
    tables_md = [p for p in written if p.parent.name == "tables" and p.suffix == ".md"]
    assert len(tables_md) >= 7  # latency, overhead (x2), cost, network, failures
    for path in tables_md:
        assert f"]({path.relative_to(run_dir).as_posix()})" in index, path.name


def test_report_of_a_tiny_real_run(tmp_path):
    spec, _ = build_spec(None, overrides={
        "variants": "eca,eca_mha", "channels": "16", "resolutions": "4,8", "batch_sizes": "1",
        "timing": {"warmup_s": 0.001, "min_time_s": 0, "max_time_s": 0.01, "min_samples": 3},
    })  # fmt: skip
    run_sweep(spec, tmp_path / "run", quiet=True)
    written = report(tmp_path / "run")
    assert (tmp_path / "run" / "tables" / "latency_cpu_float32_train.md").exists()
    assert any(p.name == "roofline_cpu_float32_infer_full.png" for p in written)


def test_missing_or_malformed_run_directories_are_clear_errors(tmp_path):
    with pytest.raises(RunDirectoryError, match="is not a directory"):
        report(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(RunDirectoryError, match=r"no results\.csv"):
        report(tmp_path / "empty")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "results.csv").write_text("a,b\n1,2\n")
    with pytest.raises(RunDirectoryError, match="lacks columns"):
        report(bad)
    cli = subprocess.run(
        [sys.executable, "-m", "bench", "report", str(tmp_path / "nowhere")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert cli.returncode == 2 and "is not a directory" in cli.stderr


@pytest.mark.parametrize(("half_width", "places"), [(0.5, 1), (0.05, 2), (3.0, 0), (0.0009, 4)])
def test_digits_follow_the_confidence_interval(half_width, places):
    assert decimals_for(half_width) == places
    assert format_measured(12.3456789, half_width) == f"{12.3456789:.{places}f}"


def test_two_batch_sizes_each_get_their_tables_and_charts(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    rows = []
    for batch, variant, side in itertools.product((2, 8), ("copy", "eca"), (14, 28)):
        median = 1e-5 * batch * (side / 14) ** 2 * (5 if variant == "eca" else 1)
        rows.append(_row(
            case_id=f"{batch}-{variant}-{side}", variant=variant, batch=batch,
            role="variant" if variant == "eca" else "reference", channels=64, height=side,
            width=side, mode="infer", latency_median_s=median, latency_iqr_s=0.01 * median,
            latency_ci_low_s=0.99 * median, latency_ci_high_s=1.01 * median,
            images_per_s=batch / median, flops=1000 * batch, macs=10, bytes_moved=100 * batch,
            peak_memory_bytes=64, params=3, quality="contended" if batch == 8 else "ok",
        ))  # fmt: skip
    pd.DataFrame(rows, columns=COLUMNS).to_csv(run / "results.csv", index=False)
    written = {p.name for p in report(run)}
    for batch in (2, 8):
        table = pd.read_csv(run / "tables" / f"latency_cpu_float32_infer_b{batch}.csv")
        assert set(table["B"]) == {batch} and len(table) == 2
        assert f"latency_vs_resolution_cpu_float32_infer_b{batch}_full.png" in written
        cost = pd.read_csv(run / "tables" / f"cost_cpu_float32_b{batch}.csv")
        assert set(cost["batch"]) == {batch}
    # a flagged measurement carries its mark into the Markdown table
    flagged = (run / "tables" / "latency_cpu_float32_infer_b8.md").read_text()
    assert (
        "†" in flagged
        and "†"
        not in (run / "tables" / "latency_cpu_float32_infer_b2.md").read_text().split("\n", 1)[1]
    )


def test_no_chart_has_text_that_collides_or_leaves_the_figure(tmp_path, monkeypatch):
    from bench.report import plots

    checked = {}
    save = plots._save

    def check_then_save(fig, directory, stem):
        checked[stem] = plots.text_collisions(fig)
        return save(fig, directory, stem)

    monkeypatch.setattr(plots, "_save", check_then_save)
    report(write_synthetic_run(tmp_path / "run"))
    assert len(checked) >= 10  # latency, roofline, memory and network charts at two widths
    assert {stem: problems for stem, problems in checked.items() if problems} == {}


def test_the_collision_check_sees_overlapping_and_escaping_text():
    import matplotlib.pyplot as plt

    from bench.report import plots

    fig, ax = plt.subplots(figsize=(2, 2))
    ax.text(0.5, 0.5, "a note")
    ax.text(0.5, 0.5, "another note")
    ax.set_xlabel("a label far too long for a figure two inches wide, running past its edge")
    problems = plots.text_collisions(fig)
    plt.close(fig)
    assert "'a note' overlaps 'another note'" in problems
    assert any("leaves the figure" in p and "far too long" in p for p in problems)


def test_charts_use_the_tables_time_unit_and_name_what_they_show(synthetic_report):
    run_dir, _ = synthetic_report
    caption = (run_dir / "tables" / "latency_cpu_float32_infer.md").read_text().splitlines()[0]
    svg = (run_dir / "plots" / "latency_vs_resolution_cpu_float32_infer_column.svg").read_text()
    unit = caption.split("median [IQR] in ")[1].split(",")[0]
    assert f"latency, median ({unit}, log)" in svg
    assert "C = 128, the largest of 64, 128" in svg and "batch 2" in svg

"""`bench history publish`: a static site of the history, opened from file:// with no server
and no network.

    SITE/index.html      the page: the data as JSON, the page's own script and style inline
    SITE/plotly.min.js   Plotly's JavaScript, from the plotly package (offline, interactive)

The page shows the suite's geometric mean over commits, one line per machine, then a small
chart per case (those with change points first) with its 95% band and its change points marked (a dashed line at the step, its
size in the title), filters by variant, shape, device and mode, and a link from each point to
that run's report (a click opens it). The seaborn charts stay the paper report's.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .changes import ChangePoint, change_points
from .series import case_points, commit_order, suite_points

Z_95 = 1.96


def _report_link(run_dir: str) -> str:
    path = Path(run_dir)
    report = path / "report.md"
    return (report if report.exists() else path).resolve().as_uri()


def _changes(found: list[ChangePoint]) -> list[dict[str, Any]]:
    return [{"position": c.index, "before": c.before[:10], "after": c.after[:10],
             "ratio": c.ratio, "ci_low": c.ci_low, "ci_high": c.ci_high} for c in found]  # fmt: skip


def _shape(row: pd.Series) -> str:
    return f"b{row['batch']} c{row['channels']} {row['height']}x{row['width']}"


def site_data(rounds: pd.DataFrame) -> dict[str, Any]:
    """What the page shows, as plain JSON-ready data."""
    order = commit_order(rounds)
    times = rounds.groupby("commit")["commit_time"].first()
    points = case_points(rounds)
    machines = points[["machine", "machine_label"]].drop_duplicates().to_dict("records")
    cases = []
    for case_id, group in points.groupby("case_id", sort=False):
        first = group.iloc[0]
        series = []
        for machine, line in group.groupby("machine", sort=False):
            value, se = line["value"].to_numpy(float), np.nan_to_num(line["se"].to_numpy(float))
            series.append({
                "machine": machine,
                "x": line["position"].tolist(),
                "y": (np.exp(value) * 1e6).tolist(),
                "low": (np.exp(value - Z_95 * se) * 1e6).tolist(),
                "high": (np.exp(value + Z_95 * se) * 1e6).tolist(),
                "report": [_report_link(d) for d in line["run_dir"]],
                "changes": _changes(change_points(value, line["commit"].tolist())),
            })  # fmt: skip
        cases.append({
            "id": case_id, "label": first["label"], "variant": first["variant_label"],
            "shape": _shape(first), "device": first["device"], "mode": first["mode"],
            "dtype": first["dtype"], "series": series,
        })  # fmt: skip
    # the cases that moved first, then by label
    cases.sort(key=lambda c: (-sum(len(s["changes"]) for s in c["series"]), c["label"]))
    suite = []
    for machine, line in suite_points(points).groupby("machine", sort=False):
        suite.append({
            "machine": machine,
            "x": line["position"].tolist(),
            "y": line["ratio"].tolist(),
            "low": line["ci_low"].fillna(line["ratio"]).tolist(),
            "high": line["ci_high"].fillna(line["ratio"]).tolist(),
            "report": [_report_link(d) for d in line["run_dir"]],
            "changes": _changes(change_points(np.log(line["ratio"].to_numpy(float)),
                                              line["commit"].tolist())),
        })  # fmt: skip
    return {
        "commits": [{"sha": c, "short": c[:7], "time": str(times[c])} for c in order],
        "machines": [{"id": m["machine"], "label": m["machine_label"]} for m in machines],
        "suite": suite,
        "cases": cases,
    }


PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Attention blocks over commits</title>
<style>
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }
h1 { font-size: 1.4em; margin-bottom: 0.2em; }
.filters { display: flex; gap: 1em; flex-wrap: wrap; margin: 1em 0; align-items: center; }
.filters label { font-size: 0.9em; }
#suite { height: 320px; }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(360px, 1fr)); gap: 12px; }
.case { border: 1px solid #ddd; border-radius: 4px; padding: 6px; }
.case h3 { font-size: 0.85em; margin: 0 0 4px 0; font-weight: 600; }
.case .step { color: #b00; font-weight: normal; }
.case .chart { height: 200px; }
.hidden { display: none; }
.note { color: #666; font-size: 0.85em; }
</style>
<script src="plotly.min.js"></script>
</head>
<body>
<h1>Attention blocks over commits</h1>
<p class="note">Times normalised by the copy timed beside each sample; bands are 95% intervals;
dashed lines mark change points (PELT). Click a point to open that run's report.</p>
<div id="suite"></div>
<div class="filters" id="filters"></div>
<p class="note"><span id="shown-count"></span> cases shown</p>
<div class="grid" id="cases"></div>
<script type="application/json" id="history-data">__DATA__</script>
<script>
"use strict";
const data = JSON.parse(document.getElementById("history-data").textContent);
const colours = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"];
const machineIndex = Object.fromEntries(data.machines.map((m, i) => [m.id, i]));
const machineLabel = Object.fromEntries(data.machines.map(m => [m.id, m.label]));
const xaxis = {
  tickvals: data.commits.map((c, i) => i), ticktext: data.commits.map(c => c.short),
  range: [-0.5, data.commits.length - 0.5], tickangle: -45, automargin: true, zeroline: false,
};

function percent(r) { return (r >= 1 ? "+" : "") + ((r - 1) * 100).toFixed(1) + "%"; }

function traces(series, unit) {
  const out = [];
  series.forEach(s => {
    const colour = colours[machineIndex[s.machine] % colours.length];
    out.push({x: s.x.concat(s.x.slice().reverse()), y: s.high.concat(s.low.slice().reverse()),
              fill: "toself", fillcolor: colour + "33", line: {width: 0}, hoverinfo: "skip",
              showlegend: false, type: "scatter", mode: "lines"});
    out.push({x: s.x, y: s.y, customdata: s.report, type: "scatter", mode: "lines+markers",
              name: machineLabel[s.machine], line: {color: colour}, marker: {size: 6},
              hovertemplate: "%{y:.4g} " + unit + "<extra>" + machineLabel[s.machine] +
              "</extra>"});
  });
  return out;
}

function shapes(series) {
  const out = [];
  series.forEach(s => s.changes.forEach(c => out.push({
    type: "line", xref: "x", yref: "paper", x0: c.position - 0.5, x1: c.position - 0.5,
    y0: 0, y1: 1, line: {dash: "dash", width: 2, color: c.ratio > 1 ? "#b00" : "#080"},
  })));
  return out;
}

function plot(div, series, unit, height) {
  Plotly.newPlot(div, traces(series, unit), {
    xaxis: JSON.parse(JSON.stringify(xaxis)), yaxis: {title: {text: unit}, automargin: true}, shapes: shapes(series),
    margin: {l: 50, r: 10, t: 10, b: 50}, height: height, showlegend: data.machines.length > 1,
    legend: {orientation: "h"},
  }, {displayModeBar: false, responsive: true});
  div.on("plotly_click", event => {
    const url = event.points[0].customdata;
    if (url) window.open(url, "_blank");
  });
  div.dataset.rendered = "true";
}

plot(document.getElementById("suite"), data.suite, "geometric mean vs each case's median", 320);
document.getElementById("suite").dataset.changePoints =
  String(data.suite.reduce((n, s) => n + s.changes.length, 0));

const grid = document.getElementById("cases");
const observer = new IntersectionObserver(entries => entries.forEach(entry => {
  const box = entry.target;
  if (entry.isIntersecting && !box.chart.dataset.rendered) {
    plot(box.chart, box.caseData.series, "us", 200);
  }
}));
data.cases.forEach(c => {
  const box = document.createElement("div");
  box.className = "case";
  box.dataset.variant = c.variant;
  box.dataset.shape = c.shape;
  box.dataset.device = c.device;
  box.dataset.mode = c.mode;
  const changes = c.series.flatMap(s => s.changes);
  box.dataset.changePoints = String(changes.length);
  box.dataset.changeCommits = changes.map(ch => ch.after).join(" ");
  const title = document.createElement("h3");
  title.textContent = c.label;
  changes.forEach(ch => {
    const step = document.createElement("span");
    step.className = "step";
    step.textContent = " | step " + percent(ch.ratio) + " [" + percent(ch.ci_low) + ", " +
      percent(ch.ci_high) + "] at " + ch.after.slice(0, 7);
    title.appendChild(step);
  });
  const chart = document.createElement("div");
  chart.className = "chart";
  box.appendChild(title);
  box.appendChild(chart);
  box.chart = chart;
  box.caseData = c;
  grid.appendChild(box);
  observer.observe(box);
});

const filters = {variant: "variant", shape: "shape", device: "device", mode: "mode"};
const bar = document.getElementById("filters");
Object.keys(filters).forEach(key => {
  const values = Array.from(new Set(data.cases.map(c => c[key]))).sort();
  const label = document.createElement("label");
  label.textContent = key + " ";
  const select = document.createElement("select");
  select.id = "filter-" + key;
  ["all"].concat(values).forEach(v => {
    const option = document.createElement("option");
    option.value = v;
    option.textContent = v;
    select.appendChild(option);
  });
  select.addEventListener("change", applyFilters);
  label.appendChild(select);
  bar.appendChild(label);
});

function applyFilters() {
  let shown = 0;
  grid.querySelectorAll(".case").forEach(box => {
    const visible = Object.keys(filters).every(key => {
      const wanted = document.getElementById("filter-" + key).value;
      return wanted === "all" || box.dataset[key] === wanted;
    });
    box.classList.toggle("hidden", !visible);
    shown += visible;
  });
  document.getElementById("shown-count").textContent = String(shown);
}
applyFilters();
</script>
</body>
</html>
"""


def publish(rounds: pd.DataFrame, out: str | Path) -> Path:
    """Write the site into `out`; returns its index.html."""
    from plotly.offline import get_plotlyjs  # here: only publishing needs plotly

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "plotly.min.js").write_text(get_plotlyjs(), encoding="utf-8")
    payload = json.dumps(site_data(rounds), allow_nan=False).replace("</", "<\\/")
    index = out / "index.html"
    index.write_text(PAGE.replace("__DATA__", payload), encoding="utf-8")
    return index


def headless_chromium(*, width: int = 1400, height: int = 1100, console_log: bool = False):
    """A selenium driver of Debian's headless chromium with its own chromium-driver (as
    `.ci/browser.sh` installs them); RuntimeError naming what is missing."""
    import shutil

    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError as error:
        raise RuntimeError("the browser needs selenium (pip install -e '.[test]')") from error
    if not browser or not driver_path:
        raise RuntimeError(
            "no chromium and chromedriver here: bash .ci/browser.sh installs Debian's chromium "
            "and chromium-driver"
        )
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu",
                 f"--window-size={width},{height}", "--allow-file-access-from-files"):  # fmt: skip
        options.add_argument(flag)
    if console_log:
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(driver_path), options=options)


def screenshot(index: Path, png: Path, *, width: int = 1400, height: int = 1100) -> Path:
    """A picture of the page as headless Chromium draws it (`headless_chromium`)."""
    import time

    driver = headless_chromium(width=width, height=height)
    try:
        driver.get(index.resolve().as_uri())
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not driver.execute_script(
            "return document.querySelectorAll('.chart[data-rendered]').length > 0"
        ):
            time.sleep(0.2)
        time.sleep(1.0)  # Plotly's transitions settle
        driver.save_screenshot(str(png))
    finally:
        driver.quit()
    return png

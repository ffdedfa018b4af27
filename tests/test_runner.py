import hashlib
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pandas as pd
import pytest
import yaml
from torch import nn

import attention_variants as av
from bench.sweep import runner
from bench.sweep.cases import expand
from bench.sweep.rundir import (
    COLUMNS,
    DERIVED_COLUMNS,
    SCHEMA_VERSION,
    read_results,
    read_samples,
)
from bench.sweep.runner import resume_sweep, run_sweep
from bench.sweep.spec import build_spec

TINY_TIMING = {"warmup_s": 0.001, "min_time_s": 0, "max_time_s": 0.01, "min_samples": 3}


def tiny_spec(**overrides):
    base = {
        "variants": "eca,se",
        "channels": "16",
        "resolutions": "6,4x5",
        "batch_sizes": "2",
        "timing": TINY_TIMING,
    }
    base.update(overrides)
    spec, _ = build_spec(None, overrides=base)
    return spec


def test_tiny_sweep_end_to_end(tmp_path):
    spec = tiny_spec()
    summary = run_sweep(spec, tmp_path / "run", quiet=True)
    assert summary.exit_code == 0
    run = tmp_path / "run"
    for name in (
        "spec.yaml",
        "env.json",
        "run.json",
        "results.csv",
        "results.parquet",
        "samples.csv",
    ):
        assert (run / name).is_file(), name
    rows = read_results(run)
    assert list(rows.columns) == [*COLUMNS, *DERIVED_COLUMNS]
    assert pd.read_csv(run / "results.csv").columns.tolist() == COLUMNS  # derived: never stored
    assert sorted(rows.label) == sorted(c.label for c in expand(spec))
    assert (
        len(rows) == len(expand(spec)) == 2 * 2 * (3 + 2)
    )  # resolutions x modes x (refs + variants)
    assert set(rows.status) == {"ok"}
    # a slow machine may stop a case at its 10 ms cap below six samples: no CI then, by design
    few = rows.quality_flags.map(lambda flags: "few_samples" in flags)
    assert (rows.latency_ci_low_s.isna() == few).all() and (
        rows.latency_ci_high_s.isna() == few
    ).all()
    with_ci = rows[~few]
    assert len(with_ci) > 0
    assert (with_ci.latency_ci_low_s <= with_ci.latency_median_s).all()
    assert (with_ci.latency_median_s <= with_ci.latency_ci_high_s).all()
    identity = rows[rows.variant == "identity"]
    assert (identity.flops == 0).all() and (identity.params == 0).all()
    eca = rows[(rows.variant == "eca") & (rows["mode"] == "infer")]
    assert (eca.flops > 0).all() and (eca.params == 3).all()
    parquet = pd.read_parquet(run / "results.parquet")
    assert len(parquet) == len(rows)
    samples = read_samples(run)
    assert set(samples.case_id) == set(rows.case_id)
    assert samples.groupby("case_id").size().min() >= 3
    saved = yaml.safe_load((run / "spec.yaml").read_text())
    assert saved["variants"] == ["eca", "se"] and saved["resolutions"] == ["6x6", "4x5"]
    info = json.loads((run / "run.json").read_text())
    assert info["status"] == "complete" and info["schema_version"] == SCHEMA_VERSION
    assert json.loads((run / "env.json").read_text())["torch"]


def test_a_failing_variant_is_an_error_row_and_the_sweep_finishes(tmp_path):
    @av.register("test_broken")
    class Broken(av.create("identity", 1).__class__):
        def forward(self, x):
            raise RuntimeError("kernel exploded")

    try:
        summary = run_sweep(
            tiny_spec(variants="test_broken,eca", resolutions="6"), tmp_path / "run", quiet=True
        )
    finally:
        av.unregister("test_broken")
    rows = read_results(tmp_path / "run")
    broken = rows[rows.variant == "test_broken"]
    assert set(broken.status) == {"error"}
    assert broken.error.str.contains("RuntimeError: kernel exploded").all()
    assert set(rows[rows.variant != "test_broken"].status) == {"ok"}
    assert summary.exit_code == 1 and summary.failed == 2


def test_a_block_that_breaks_its_output_promise_is_an_error_row_not_a_time(tmp_path):
    """A block must return its input's shape, dtype and device, finite on a finite input; one
    that does not is not timed: its row is an error naming what it returned and what was
    expected, and the sweep goes on."""
    wrong = {
        "test_half": "x[:, : x.shape[1] // 2]",  # half the channels: fast, and wrong
        "test_double": "x.double()",
        "test_nan": "x * float('nan')",
    }
    for name, body in wrong.items():
        namespace = {}
        exec(f"def forward(self, x):\n    return {body}\n", namespace)
        av.register(name)(type(name, (av.create("identity", 1).__class__,), namespace))
    try:
        summary = run_sweep(
            tiny_spec(variants=",".join([*wrong, "eca"]), resolutions="6", modes="infer"),
            tmp_path / "run", quiet=True,
        )  # fmt: skip
    finally:
        for name in wrong:
            av.unregister(name)
    rows = read_results(tmp_path / "run").set_index("variant")
    assert rows.loc["test_half", "status"] == "error"
    assert rows.loc["test_half", "error"].startswith(
        "OutputContractError: test_half: output (2, 8, 6, 6), expected the input's (2, 16, 6, 6)"
    )
    assert "output dtype torch.float64" in rows.loc["test_double", "error"]
    assert "NaN or infinite on a finite input" in rows.loc["test_nan", "error"]
    assert rows.loc[list(wrong), "latency_median_s"].isna().all()  # never timed
    assert rows.loc["eca", "status"] == "ok" and summary.failed == 3
    # the summary names each failed case with the first line of its error
    line = summary.line()
    assert "failed: 3 case(s)" in line
    rounds = next(part for part in line.splitlines() if part.startswith("rounds:"))
    assert rounds.startswith("rounds: of the cases timed, ") and rounds.endswith(".")
    assert "test_half b2 c16 6x6 float32 cpu infer: OutputContractError: test_half: output" in line


def test_an_error_keeps_the_frame_in_the_users_own_file(tmp_path):
    plugin = tmp_path / "user_block.py"
    plugin.write_text(
        "import torch\n"
        "import attention_variants as av\n"
        "from torch import nn\n"
        "@av.register('test_user_raises')\n"
        "class Raises(nn.Module):\n"
        "    def __init__(self, channels):\n"
        "        super().__init__()\n"
        "    def forward(self, x):\n"
        "        return torch.nn.functional.layer_norm(x, (7,))\n"  # 7 is not x's last dim
    )
    from bench.sweep.plugins import load_plugin

    load_plugin(str(plugin))
    try:
        run_sweep(tiny_spec(variants="test_user_raises", resolutions="6", modes="infer"),
                  tmp_path / "run", quiet=True)  # fmt: skip
    finally:
        av.unregister("test_user_raises")
    error = read_results(tmp_path / "run").set_index("variant").loc["test_user_raises", "error"]
    assert error.startswith("RuntimeError: Given normalized_shape=[7]")
    # the user's line, then where it failed inside torch; no frame of the harness
    frames = error.split(" | ")[1:]
    assert frames[0] == f"{plugin}:9 in forward: return torch.nn.functional.layer_norm(x, (7,))"
    assert "torch/nn/functional.py" in frames[-1] and len(frames) == 2


def test_what_a_variant_builds_on_first_use_is_built_once_before_the_first_round(tmp_path, capsys):
    events = []

    def build(device):
        time.sleep(0.2)  # a kernel build: not in any case's time, and not in the first round
        events.append(("built", device))

    identity = av.create("identity", 1).__class__

    @av.register("test_builds", prepare=build)
    class Builds(identity):
        def forward(self, x):
            events.append(("called", None))
            return x

    try:
        summary = run_sweep(tiny_spec(variants="test_builds,eca"), tmp_path / "run", quiet=False)
    finally:
        av.unregister("test_builds")
    assert summary.exit_code == 0
    assert events[0] == ("built", "cpu") and events.count(("built", "cpu")) == 1
    assert ("called", None) in events[1:]
    out = capsys.readouterr().out
    assert "building what test_builds build on first use (cpu), before the first round" in out
    rows = read_results(tmp_path / "run")
    assert rows[rows.variant == "test_builds"]["latency_median_s"].max() < 0.1


def test_unsupported_dtype_is_a_skipped_row(tmp_path):
    @av.register("test_fp32_only", dtypes=("float32",))
    class Fp32Only(av.create("identity", 1).__class__):
        pass

    try:
        summary = run_sweep(
            tiny_spec(
                variants="test_fp32_only", resolutions="6", modes="infer", dtypes="float32,bfloat16"
            ),
            tmp_path / "run",
            quiet=True,
        )
    finally:
        av.unregister("test_fp32_only")
    rows = read_results(tmp_path / "run").set_index(["variant", "dtype"])
    assert rows.loc[("test_fp32_only", "bfloat16"), "status"] == "skipped"
    assert "float32" in rows.loc[("test_fp32_only", "bfloat16"), "error"]
    assert rows.loc[("test_fp32_only", "float32"), "status"] == "ok"
    assert summary.exit_code == 0


def test_resume_after_an_interrupt_adds_no_duplicate_rows(tmp_path, monkeypatch):
    spec = tiny_spec()
    original = runner.CaseRunner.start
    calls = {"n": 0}

    def interrupting(self, case, settings):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt
        return original(self, case, settings)

    monkeypatch.setattr(runner.CaseRunner, "start", interrupting)
    first = run_sweep(spec, tmp_path / "run", quiet=True)
    assert first.interrupted and first.exit_code == 130
    assert len(read_results(tmp_path / "run")) == 3  # what was measured is on disk
    assert json.loads((tmp_path / "run" / "run.json").read_text())["status"] == "interrupted"
    monkeypatch.setattr(runner.CaseRunner, "start", original)
    second = resume_sweep(tmp_path / "run", quiet=True)
    rows = read_results(tmp_path / "run")
    assert second.skipped_as_recorded == 3
    assert len(rows) == len(expand(spec)) and rows.case_id.is_unique
    assert rows.run_id.nunique() == 1
    assert pd.read_parquet(tmp_path / "run" / "results.parquet").case_id.is_unique


def test_a_plugin_file_registers_a_variant_that_is_swept(tmp_path):
    plugin = tmp_path / "my_gates.py"
    plugin.write_text(
        "import attention_variants as av\n"
        "from torch import nn\n"
        "@av.register('test_plugin_gate', paper='test')\n"
        "class Gate(nn.Module):\n"
        "    def __init__(self, channels, scale=2.0):\n"
        "        super().__init__()\n"
        "        self.scale = scale\n"
        "    def forward(self, x):\n"
        "        return x * self.scale\n"
    )
    out = tmp_path / "run"
    try:
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "bench",
                "run",
                "--plugin",
                str(plugin),
                "--variants",
                "test_plugin_gate(scale=3.0)",
                "--channels",
                "8",
                "--resolutions",
                "4",
                "--batch-sizes",
                "1",
                "--modes",
                "infer",
                "--no-references",
                "--quiet",
                "--out",
                str(out),
                "--spec",
                str(_tiny_timing_yaml(tmp_path)),
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, result.stderr
        rows = read_results(out)
        assert list(rows.variant_label) == ["test_plugin_gate(scale=3.0)"]
        assert rows.status.tolist() == ["ok"] and rows.flops.tolist() == [8 * 16]
        saved = yaml.safe_load((out / "spec.yaml").read_text())
        assert saved["plugins"] == [str(plugin)]
    finally:
        if "test_plugin_gate" in av.available():
            av.unregister("test_plugin_gate")


def _tiny_timing_yaml(tmp_path):
    path = tmp_path / "timing.yaml"
    path.write_text(yaml.safe_dump({"timing": TINY_TIMING}))
    return path


def test_cli_reports_bad_input_with_exit_code_2(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "bench", "run", "--variants", "nope", "--out", str(tmp_path / "x")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert "unknown attention variant 'nope'" in result.stderr
    assert not (tmp_path / "x").exists()  # nothing ran
    listing = subprocess.run(
        [sys.executable, "-m", "bench", "list"], capture_output=True, text=True, timeout=120
    )
    assert listing.returncode == 0
    assert "eca_mha" in listing.stdout and "quick" in listing.stdout


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get_json(url):
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


@pytest.mark.slow
def test_profiled_run_opens_in_tensorboards_pytorch_profiler_plugin(tmp_path):
    spec = tiny_spec(variants="eca", resolutions="6", modes="infer", profile=True, references=False)
    run_sweep(spec, tmp_path / "run", quiet=True)
    traces = tmp_path / "run" / "traces"
    case_dirs = sorted(p for p in traces.iterdir() if p.is_dir())
    assert len(case_dirs) == 1
    assert list(case_dirs[0].glob("*.pt.trace.json"))
    assert "aten::" in (case_dirs[0] / "top_ops.txt").read_text()
    port = _free_port()
    tensorboard = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tensorboard.main",
            "--logdir",
            str(traces),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "CUDA_VISIBLE_DEVICES": ""},
    )
    try:
        runs, deadline = [], time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                answer = _get_json(f"http://127.0.0.1:{port}/data/plugin/pytorch_profiler/runs")
                runs = answer["runs"]
                if runs and not answer.get("loading"):
                    break
            except OSError:
                pass
            time.sleep(0.5)
        assert runs == [case_dirs[0].name]
        views = _get_json(
            f"http://127.0.0.1:{port}/data/plugin/pytorch_profiler/views?run={runs[0]}"
        )
        assert "Overview" in views or "Operator" in views
    finally:
        tensorboard.terminate()
        tensorboard.wait(timeout=30)


def timed_modules(monkeypatch, tmp_path, rounds, **overrides):
    """Runs a tiny sweep of `rounds` rounds; the type of the module each round timed, in order."""
    spec, _ = build_spec(None, overrides={
        "resolutions": "4", "modes": "infer", "references": False, **overrides,
        "timing": {"warmup_s": 0, "min_time_s": 0, "max_time_s": 1.0, "min_samples": 3,
                   "target_ci": 1.0, "rounds": rounds},
    })  # fmt: skip
    timed = []
    original = runner.time_round

    def recording_round(mode, module, x, settings, **kwargs):
        timed.append(type(module).__name__)
        return original(mode, module, x, settings, **kwargs)

    monkeypatch.setattr(runner, "time_round", recording_round)
    assert run_sweep(spec, tmp_path / "run", quiet=True).exit_code == 0
    return timed


def test_a_sweep_times_round_by_round_so_a_cases_rounds_lie_a_pass_apart(tmp_path, monkeypatch):
    order = timed_modules(monkeypatch, tmp_path, 3, variants="eca,se", channels="32")
    first, second = order[0], order[1]
    assert first != second and order == [first, second] * 3  # not first, first, first, ...
    samples = read_samples(tmp_path / "run")
    assert sorted(samples.groupby("case_id")["round"].nunique()) == [3, 3]
    rows = read_results(tmp_path / "run")
    assert list(rows.variant) == ["eca", "se"] and set(rows.rounds) == {3}


def test_every_round_of_a_compiled_case_times_the_compiled_module(tmp_path, monkeypatch):
    timed = timed_modules(monkeypatch, tmp_path, 2, variants="eca", channels="16", compile="on")
    assert timed == ["OptimizedModule", "OptimizedModule"]


@pytest.mark.parametrize("name", ["example", "example-network"])
def test_committed_run_directories_load_and_keep_their_case_ids(name):
    from bench.sweep.cases import CASE_FIELDS
    from bench.sweep.rundir import RunDirectory

    run_dir = RunDirectory(Path(__file__).parents[1] / "results" / name)
    rows = run_dir.results()
    assert run_dir.status == "complete" and len(rows) == run_dir.info()["cases_recorded"]
    for row in rows.to_dict("records"):
        fields = {f: row[f] for f in CASE_FIELDS}
        fields["model"] = fields["model"] or ""
        key = [int(v) if f in ("batch", "channels", "height", "width") else v
               for f, v in fields.items()]  # fmt: skip
        if fields["launch"] == "eager":  # ids from before the launch axis: hashed without it
            key = key[:-1]
        assert hashlib.sha256(json.dumps(key).encode()).hexdigest()[:12] == row["case_id"]
    assert set(run_dir.samples().case_id) <= set(rows.case_id)


def test_a_case_whose_interval_is_tight_closes_at_the_minimum_rounds(tmp_path, capsys):
    spec, _ = build_spec(None, overrides={
        "resolutions": "4", "modes": "infer", "references": False, "variants": "eca,se",
        "channels": "16",
        "timing": {"warmup_s": 0, "min_time_s": 0.01, "max_time_s": 1.0, "min_samples": 3,
                   "target_ci": 1.0, "min_rounds": 2, "rounds": 4, "sweep_budget_s": 60.0},
    })  # fmt: skip
    summary = run_sweep(spec, tmp_path / "run")
    rows = read_results(tmp_path / "run")
    assert set(rows.rounds) == {2} and set(rows.stop_reason) == {"target"}
    assert "2 reached their interval's target (timing.target_ci)." in summary.line()
    assert "budget left" in capsys.readouterr().err  # the progress bar's later passes


def test_the_sweep_budget_starts_after_the_kernel_builds(tmp_path):
    # a variant whose first-use build takes longer than the whole budget: were the build
    # counted, every case would close at the budget after its minimum round
    @av.register("test_slow_build", paper="-", prepare=lambda device: time.sleep(2.5))
    def _identity(channels: int) -> nn.Module:
        return nn.Identity()

    try:
        spec, _ = build_spec(None, overrides={
            "resolutions": "4", "modes": "infer", "references": False,
            "variants": "test_slow_build", "channels": "8,16",
            "timing": {"warmup_s": 0, "min_time_s": 0.005, "max_time_s": 1.0,
                       "min_samples": 3, "target_ci": 1e-9, "min_rounds": 1, "rounds": 3,
                       "sweep_budget_s": 2.0},
        })  # fmt: skip
        run_sweep(spec, tmp_path / "run", quiet=True)
    finally:
        av.unregister("test_slow_build")
    rows = read_results(tmp_path / "run")
    assert set(rows.rounds) == {3} and set(rows.stop_reason) == {"rounds"}


def test_max_time_reaches_the_time_cap_that_the_hints_name():
    from bench.cli import _overrides, build_parser
    from bench.measurement.quality import FLAG_HINTS

    args = build_parser().parse_args(["run", "--max-time", "2.5", "--rounds", "4"])
    spec, _ = build_spec("quick", overrides=_overrides(args))
    assert spec.timing.max_time_s == 2.5 and spec.timing.rounds == 4
    assert spec.timing.min_time_s == 0.03  # the preset's other timing settings stay
    for flag in ("unstable", "few_samples"):
        assert "--max-time" in FLAG_HINTS[flag] and "max_time_s:" in FLAG_HINTS[flag]

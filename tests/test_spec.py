import json
import os
import subprocess
import sys

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.sweep.cases import expand
from bench.sweep.presets import PRESETS
from bench.sweep.spec import SpecError, build_spec, spec_from_dict
from bench.sweep.variant_expr import VariantSpec, split_top_level


def test_variant_specs_parse_their_options():
    v = VariantSpec.parse("se(reduction=8, bias=false)")
    assert v.name == "se" and v.options_dict == {"reduction": 8, "bias": False}
    assert v.label == "se(bias=False,reduction=8)"
    assert VariantSpec.parse(v.label) == v  # labels round-trip
    assert (
        VariantSpec.parse({"name": "eca_mha", "options": {"heads": 8}}).label == "eca_mha(heads=8)"
    )
    assert split_top_level("eca, se(reduction=8,bias=false),cbam") == [
        "eca", "se(reduction=8,bias=false)", "cbam"]  # fmt: skip


def test_every_problem_is_reported_at_once_with_its_location_and_allowed_values():
    with pytest.raises(SpecError) as excinfo:
        build_spec("quick", overrides={
            "variants": "eca,nope", "channels": "64,x", "dtypes": "fp8",
            "resolutions": "0,32x16", "modes": "eval", "devices": "cuda:7", "bogus": 1,
            "timing": {"max_time_s": -1, "rounds": 2.5},
        })  # fmt: skip
    problems = excinfo.value.problems
    expected = [
        "bogus: unknown field; allowed: preset, plugins, batch_sizes, channels",
        "variants[1]: unknown attention variant 'nope'; known variants: cbam, coord, eca",
        "channels[1]: Input should be a valid integer (got 'x')",
        "dtypes[0]: Input should be 'float32', 'float16' or 'bfloat16' (got 'fp8')",
        "resolutions[0][0]: Input should be greater than or equal to 1 (got 0)",
        "modes[0]: Input should be 'infer' or 'train' (got 'eval')",
        "devices: cuda:7 asked for but not present",
        "timing.max_time_s: Input should be greater than 0 (got -1)",
        "timing.rounds: Input should be a valid integer (got 2.5)",
    ]
    for fragment in expected:
        assert any(fragment in p for p in problems), (fragment, problems)


def test_options_are_checked_by_building_each_variant_at_each_channel_count():
    with pytest.raises(SpecError) as excinfo:
        build_spec("quick", overrides={"variants": "eca,se(reduction=300)", "channels": "64"})
    (problem,) = excinfo.value.problems
    assert problem.startswith("variants: se(reduction=300) at channels=64: ValueError: se:")


def test_no_silent_coercion_that_would_change_the_sweep():
    with pytest.raises(SpecError) as excinfo:
        build_spec(None, overrides={
            "variants": "eca", "batch_sizes": [2.7],
            "network": {"depth": "50", "include_plain": "false"},
        })  # fmt: skip
    problems = excinfo.value.problems
    assert "batch_sizes[0]: Input should be a valid integer (got 2.7)" in problems
    assert "network.depth: Input should be 18, 34, 50, 101 or 152 (got '50')" in problems
    assert "network.include_plain: Input should be a valid boolean (got 'false')" in problems
    # the command line's words are YAML scalars: "off,on" is [false, true], "8" is 8
    spec, _ = build_spec(None, overrides={"variants": "eca", "compile": "off,on", "channels": "8"})
    assert spec.compile == [False, True] and spec.channels == [8]


def test_auto_devices_skip_absent_ones_with_a_note():
    spec, notes = build_spec("quick", overrides={"devices": "auto"})
    assert spec.devices[0] == "cpu"
    if "cuda" not in spec.devices:
        assert any("auto skips cuda" in n for n in notes)


def test_yaml_spec_on_top_of_a_preset(tmp_path):
    path = tmp_path / "sweep.yaml"
    path.write_text(
        "preset: quick\n"
        "variants: [eca, 'se(reduction=8)', {name: eca_mha, options: {heads: 8}}]\n"
        "resolutions: [28, '32x16', [7, 9]]\n"
        "timing: {max_time_s: 0.5}\n"
    )
    spec, _ = build_spec(yaml_path=path, overrides={"channels": "64"})
    assert [v.label for v in spec.variants] == ["eca", "se(reduction=8)", "eca_mha(heads=8)"]
    assert spec.resolutions == [(28, 28), (32, 16), (7, 9)]
    assert spec.timing.max_time_s == 0.5
    assert spec.timing.min_samples == PRESETS["quick"]["timing"]["min_samples"]
    assert spec.channels == [64]
    bad = tmp_path / "bad.yaml"
    bad.write_text("- just\n- a list\n")
    with pytest.raises(SpecError, match="expected a mapping"):
        build_spec(yaml_path=bad)


def test_quick_preset_covers_every_variant_and_the_references():
    spec, _ = build_spec("quick")
    cases = expand(spec)
    import attention_variants as av

    assert {c.variant.name for c in cases if c.role == "variant"} | {"identity"} == set(
        av.available()
    )
    assert {c.variant.name for c in cases if c.role == "reference"} == {
        "identity",
        "conv3x3",
        "copy",
    }
    assert len(spec.resolutions) >= 3 and len(spec.channels) >= 3
    assert {c.mode for c in cases} == {"infer", "train"}
    assert len({c.case_id for c in cases}) == len(cases)


def test_network_preset_has_resnet50_with_every_variant_and_the_plain_backbone():
    spec, _ = build_spec("network", overrides={"devices": "cpu"})
    cases = expand(spec)
    assert {c.role for c in cases} == {"network"}
    assert {c.model for c in cases} == {"resnet50"}
    import attention_variants as av

    expected = {"none"} | (set(av.available()) - {"identity"})
    assert {"se", "cbam", "eca", "eca_mha"} <= expected
    assert {c.variant.name for c in cases} == expected
    assert {(c.height, c.width) for c in cases} == {(224, 224)}


def test_a_plugin_that_fails_to_import_is_a_clear_error(tmp_path):
    broken = tmp_path / "broken_plugin.py"
    broken.write_text("raise RuntimeError('boom')\n")
    with pytest.raises(SpecError, match=r"broken_plugin\.py' failed to import: RuntimeError: boom"):
        build_spec("quick", overrides={"plugins": [str(broken)]})
    with pytest.raises(SpecError, match="no_such_module_xyz' failed to import"):
        build_spec("quick", overrides={"plugins": ["no_such_module_xyz"]})


def test_installed_packages_offer_variants_through_the_entry_point_group(tmp_path):
    (tmp_path / "entry_gate.py").write_text(
        "import attention_variants as av\n"
        "from torch import nn\n"
        "@av.register('test_entry_gate', paper='test')\n"
        "class Gate(nn.Identity):\n"
        "    def __init__(self, channels):\n"
        "        super().__init__()\n"
    )
    dist = tmp_path / "entry_gate-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: entry-gate\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[attention_variants.plugins]\ngate = entry_gate\n")
    result = subprocess.run(
        [sys.executable, "-m", "bench", "run", "--variants", "test_entry_gate", "--dry-run"],
        capture_output=True, text=True, timeout=120,
        env={**os.environ, "PYTHONPATH": str(tmp_path)},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    batch = PRESETS["quick"]["batch_sizes"][0]
    assert f"test_entry_gate b{batch}" in result.stdout  # the quick preset, as run_all.py uses


# ---- the variant expression ------------------------------------------------------------------

option_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(10**12), 10**12)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12),
    lambda inner: st.tuples(inner) | st.tuples(inner, inner) | st.tuples(inner, inner, inner),
    max_leaves=6,
)
option_names = st.from_regex(r"[a-z_][a-z0-9_]{0,8}", fullmatch=True)


@settings(max_examples=300, deadline=None)
@given(name=option_names, options=st.dictionaries(option_names, option_values, max_size=4))
def test_labels_read_back_exactly(name, options):
    variant = VariantSpec(name, tuple(sorted(options.items())))
    assert VariantSpec.parse(variant.label) == variant
    assert VariantSpec.parse({"name": name, "options": options}) == variant


@pytest.mark.parametrize(
    ("text", "options"),
    [
        ("simam(e_lambda=1e-5)", {"e_lambda": 1e-5}),
        ("x(a=None, b=null, c='None', d=true, e=FALSE)", {"a": None, "b": None, "c": "None",
                                                           "d": True, "e": False}),
        ("x(k=(1, 2.5, 'a b'), one=(3,), empty=())", {"k": (1, 2.5, "a b"), "one": (3,),
                                                      "empty": ()}),
        ("eca_mha(attention_impl=naive, heads=-2)", {"attention_impl": "naive", "heads": -2}),
    ],
)  # fmt: skip
def test_option_values_are_python_literals_or_words(text, options):
    assert VariantSpec.parse(text).options_dict == options


@pytest.mark.parametrize("text", ["se(", "se(reduction)", "se(a=1 b=2)", "se(a=1)x", "(a=1)",
                                  "se(a=1, a=2)"])  # fmt: skip
def test_malformed_expressions_say_what_is_allowed(text):
    with pytest.raises(ValueError, match="allowed"):
        VariantSpec.parse(text)


def test_simam_with_a_small_lambda_runs_and_resumes(tmp_path):
    spec, _ = build_spec(None, overrides={"variants": "simam(e_lambda=1e-5)", "channels": "8"})
    assert spec.variants[0].options_dict == {"e_lambda": 1e-5}
    saved = tmp_path / "spec.yaml"
    saved.write_text(yaml.safe_dump(spec.to_dict()))
    again, _ = build_spec(yaml_path=saved)
    assert again == spec


# ---- plugins ---------------------------------------------------------------------------------


def test_a_variant_whose_constructor_raises_anything_is_a_spec_error(tmp_path):
    plugin = tmp_path / "angry.py"
    plugin.write_text(
        "import attention_variants as av\nfrom torch import nn\n"
        "@av.register('test_angry', paper='-')\n"
        "class Angry(nn.Module):\n"
        "    def __init__(self, channels):\n"
        "        raise RuntimeError('no GPU context')\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "bench", "run", "--plugin", str(plugin), "--variants",
         "test_angry", "--channels", "8", "--dry-run"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 2
    assert "test_angry at channels=8: RuntimeError: no GPU context" in result.stderr
    assert "Traceback" not in result.stderr


def _broken_entry_point(tmp_path):
    (tmp_path / "broken_gate.py").write_text("raise ImportError('needs libfoo')\n")
    dist = tmp_path / "broken_gate-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-gate\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[attention_variants.plugins]\nbroken = broken_gate\n")
    return {**os.environ, "PYTHONPATH": str(tmp_path)}


def test_a_broken_entry_point_is_a_warning_unless_its_variant_is_asked_for(tmp_path):
    env = _broken_entry_point(tmp_path)
    run = [sys.executable, "-m", "bench", "run", "--channels", "8", "--dry-run", "--variants"]
    fine = subprocess.run([*run, "eca"], capture_output=True, text=True, timeout=120, env=env)
    assert fine.returncode == 0, fine.stderr
    assert "plugin entry point broken (broken_gate, package broken-gate) failed" in fine.stdout
    asked = subprocess.run(
        [*run, "broken_gate"], capture_output=True, text=True, timeout=120, env=env
    )
    assert asked.returncode == 2
    assert "unknown attention variant 'broken_gate'" in asked.stderr
    assert "a broken plugin may have offered it: broken (broken_gate" in asked.stderr


# ---- the schema ------------------------------------------------------------------------------


def test_the_schema_describes_every_field_and_a_preset_validates_against_it():
    result = subprocess.run(
        [sys.executable, "-m", "bench", "schema"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0
    schema = json.loads(result.stdout)
    fields = set(schema["properties"])
    assert {"variants", "resolutions", "timing", "network", "compile"} <= fields
    timing = schema["$defs"]["TimingBudget"]["properties"]
    assert timing["max_time_s"]["exclusiveMinimum"] == 0 and timing["max_time_s"]["description"]
    assert schema["additionalProperties"] is False
    jsonschema = pytest.importorskip("jsonschema")
    for name, preset in PRESETS.items():
        data = {k: v for k, v in preset.items() if k != "description"}
        jsonschema.validate(data, schema), name


def test_bench_run_and_run_all_default_to_the_quick_preset():
    result = subprocess.run(
        [sys.executable, "-m", "bench", "run", "--dry-run"], capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip
    spec, _ = build_spec("quick")
    assert result.stdout.strip().endswith(f"{len(expand(spec))} cases")
    assert "within an 80 s budget" in PRESETS["quick"]["description"]
    assert PRESETS["quick"]["timing"]["sweep_budget_s"] == 80.0


def test_rounds_on_the_command_line_set_the_timing_budget():
    from bench.cli import _overrides, build_parser

    args, _ = build_parser().parse_known_args(["run", "--variants", "eca", "--rounds", "5"])
    spec, _ = build_spec("quick", overrides=_overrides(args))
    assert spec.timing.rounds == 5
    assert spec.timing.max_time_s == PRESETS["quick"]["timing"]["max_time_s"]  # the rest stays


def test_shapes_replace_the_product_of_batches_channels_and_resolutions():
    spec, _ = build_spec("quick", overrides={
        "variants": "eca", "references": False, "modes": "infer",
        "shapes": ["2x16x7x5", [1, 8, 3, 3]],
    })  # fmt: skip
    got = [(c.batch, c.channels, c.height, c.width) for c in expand(spec)]
    assert got == [(2, 16, 7, 5), (1, 8, 3, 3)]  # in order, nothing of the preset's channels
    assert spec_from_dict(spec.model_dump(mode="json"))[0].shapes == spec.shapes  # round-trips
    with pytest.raises(SpecError) as excinfo:
        build_spec("quick", overrides={"shapes": ["2x16x7", "0x1x1x1"]})
    problems = " ".join(excinfo.value.problems)
    assert "shapes[0]" in problems and "shapes[1][0]" in problems


def test_options_are_checked_at_the_channels_of_the_shapes():
    with pytest.raises(SpecError) as excinfo:
        build_spec("quick", overrides={"variants": "se(reduction=32)", "shapes": ["1x16x4x4"]})
    (problem,) = excinfo.value.problems
    assert problem.startswith("variants: se(reduction=32) at channels=16")


def test_a_saved_network_block_with_one_batch_size_still_reads():
    saved = build_spec("network", overrides={"network": {"variants": ["eca"]}})[0]
    raw = saved.model_dump(mode="json")
    del raw["network"]["batch_sizes"]
    raw["network"]["batch_size"] = 4  # as specs saved before batch_sizes wrote it
    spec, _ = spec_from_dict(raw)
    assert spec.network.batch_sizes == [4]
    cases = [c for c in expand(spec) if c.role == "network"]
    assert {c.batch for c in cases} == {4} and len(cases) == 2 * 2  # modes x (plain, eca)

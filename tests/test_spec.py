import os
import subprocess
import sys

import pytest

from bench.sweep.spec import PRESETS, SpecError, VariantSpec, build_spec, expand, split_top_level


def test_variant_specs_parse_options_as_yaml_values():
    v = VariantSpec.parse("se(reduction=8, bias=false)")
    assert v.name == "se" and v.options_dict == {"reduction": 8, "bias": False}
    assert v.label == "se(bias=False,reduction=8)"
    assert VariantSpec.parse(v.label) == v  # labels round-trip
    assert (
        VariantSpec.parse({"name": "eca_mha", "options": {"heads": 8}}).label == "eca_mha(heads=8)"
    )
    assert split_top_level("eca, se(reduction=8,bias=false),cbam") == [
        "eca", "se(reduction=8,bias=false)", "cbam"]  # fmt: skip


def test_every_problem_is_reported_at_once_with_field_and_allowed_values():
    with pytest.raises(SpecError) as excinfo:
        build_spec("quick", overrides={
            "variants": "eca,nope,se(reduction=300)", "channels": "64,x", "dtypes": "fp8",
            "resolutions": "0,32x16", "modes": "eval", "devices": "cuda:7", "bogus": 1,
        })  # fmt: skip
    problems = excinfo.value.problems
    expected = [
        "bogus: unknown field",
        "variants: unknown attention variant 'nope'; known variants: cbam, eca",
        "channels: 'x' is invalid; allowed: positive integers",
        "dtypes: 'fp8' is invalid; allowed: float32, float16, bfloat16",
        "resolutions: '0' is invalid",
        "modes: 'eval' is invalid; allowed: infer, train",
        "devices: 'cuda:7' was asked for but is not present",
        "se(reduction=300) at channels=64: se: reduction=300 is invalid; allowed",
    ]
    for fragment in expected:
        assert any(fragment in p for p in problems), (fragment, problems)


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
    assert "test_entry_gate b8" in result.stdout

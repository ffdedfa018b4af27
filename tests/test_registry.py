import pytest
import torch
from torch import nn

import attention_variants as av


def test_available_lists_the_core_variants_sorted():
    names = av.available()
    assert names == sorted(names)
    assert {"identity", "se", "cbam", "eca", "eca_mha"} <= set(names)


def test_info_gives_paper_options_and_support():
    se = av.info("se")
    assert "Hu" in se.paper
    assert se.options == {"reduction": 16, "bias": True}
    assert set(se.dtypes) == {"float32", "float16", "bfloat16"}
    assert se.backward is True
    assert av.info("eca").options == {"kernel_size": None, "gamma": 2, "beta": 1}
    assert av.info("eca_mha").options["attention_impl"] == "sdpa"


def test_unknown_variant_is_a_key_error_listing_known_names():
    with pytest.raises(KeyError) as excinfo:
        av.create("nope", 8)
    message = str(excinfo.value)
    assert "'nope'" in message
    for name in ("se", "cbam", "eca", "eca_mha", "identity"):
        assert name in message


@pytest.mark.parametrize(
    ("name", "channels", "options", "fragment"),
    [
        ("se", 16, {"reduction": 32}, "reduction=32"),
        ("se", 16, {"reduction": 0}, "reduction=0"),
        ("se", 16, {"bias": "yes"}, "bias='yes'"),
        ("cbam", 16, {"reduction": 17}, "reduction=17"),
        ("cbam", 16, {"spatial_kernel_size": 4}, "spatial_kernel_size=4"),
        ("eca", 64, {"kernel_size": 4}, "kernel_size=4"),
        ("eca", 64, {"gamma": 0}, "gamma=0"),
        ("eca_mha", 64, {"heads": 3}, "heads=3"),
        ("eca_mha", 64, {"attention_impl": "flash"}, "attention_impl='flash'"),
        ("se", 0, {}, "channels=0"),
        ("eca", -8, {}, "channels=-8"),
        ("eca", 8.0, {}, "channels=8.0"),
        ("se", 16, {"ratio": 4}, "unknown option(s) ratio"),
    ],
)
def test_invalid_options_name_the_option_and_what_is_allowed(name, channels, options, fragment):
    with pytest.raises(ValueError) as excinfo:
        av.create(name, channels, **options)
    message = str(excinfo.value)
    assert fragment in message
    assert "allowed" in message


def test_user_variants_register_and_build():
    @av.register("test_scale", paper="none", dtypes=("float32",), backward=False)
    class Scale(nn.Module):
        """Multiply by a constant."""

        def __init__(self, channels, factor=2.0):
            super().__init__()
            self.factor = factor

        def forward(self, x):
            return x * self.factor

    try:
        assert "test_scale" in av.available()
        assert av.info("test_scale").options == {"factor": 2.0}
        assert av.info("test_scale").description == "Multiply by a constant."
        x = torch.ones(1, 4, 2, 2)
        assert torch.equal(av.create("test_scale", 4, factor=3.0)(x), 3 * x)
        with pytest.raises(ValueError, match="already registered"):
            av.register("test_scale")(Scale)
    finally:
        av.unregister("test_scale")
    assert "test_scale" not in av.available()


def test_every_option_of_every_variant_is_explained_and_descriptions_are_whole():
    import attention_variants as av

    for name in av.available():
        info = av.info(name)
        assert set(info.option_help) == set(info.options), name
        assert info.description.endswith((".", ")")), (name, info.description)


def test_bench_list_wraps_whole_descriptions_and_explains_each_option():
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "bench", "list"], capture_output=True, text=True)
    assert done.returncode == 0
    assert "(no description)" not in done.stdout
    assert max(len(line) for line in done.stdout.splitlines()) <= 100
    assert "reduction: the MLP's hidden width C // reduction" in done.stdout  # se
    assert "then a sigmoid gate per direction" in done.stdout  # coord's whole first paragraph

"""Fused ECA and SE gates: the same parameters, math and state_dict as `eca` and `se`.

On CPUs a C++/OpenMP extension (compiled on first use) pools, gates and scales while the data is
in cache; its ops `attention_variants_cpu.eca_gate` / `.se_gate` carry their autograd in C++, so
no Python runs between the call and the kernel. On CUDA, Triton kernels behind the
`torch.library.triton_op`s `attention_variants.eca_gate` / `.se_gate` (triton is optional:
without it these variants raise a clear error on CUDA and still run on CPUs). All are torch
ops, so torch.compile can trace them and the dispatcher sees them by name.
"""

from torch import Tensor

from ..eca import ECA, ECA_OPTION_HELP
from ..registry import register
from ..se import SE_OPTION_HELP, SqueezeExcite
from .cpu import extension
from .ops import backend, eca_gate, se_gate, triton_available

FUSED_DEVICES = ("cpu", "cuda")


def build_kernels(device: str) -> None:
    """The CPU kernels built and loaded (CUDA's Triton kernels compile per shape, when called)."""
    if device == "cpu":
        extension()


@register(
    "eca_fused",
    paper="Wang et al., ECA-Net: Efficient Channel Attention, CVPR 2020 (fused kernels)",
    option_help=ECA_OPTION_HELP,
    devices=FUSED_DEVICES,
    prepare=build_kernels,
)
class ECAFused(ECA):
    """ECA with pool, 1-D conv, sigmoid and scale fused; a drop-in for `eca` (same state_dict)."""

    def forward(self, x: Tensor) -> Tensor:
        if x.device.type == "cpu":
            return extension().eca_gate(x, self.conv.weight)[0]
        return eca_gate(x, self.conv.weight)[0]

    def triton_gate(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(y, pooled, gate) from the Triton op that runs on CUDA (CPU tensors: under
        TRITON_INTERPRET=1)."""
        return eca_gate(x, self.conv.weight)


@register(
    "se_fused",
    paper="Hu et al., Squeeze-and-Excitation Networks, CVPR 2018 (fused kernels)",
    option_help=SE_OPTION_HELP,
    devices=FUSED_DEVICES,
    prepare=build_kernels,
)
class SqueezeExciteFused(SqueezeExcite):
    """SE with pool, MLP, sigmoid and scale fused; a drop-in for `se` (same state_dict)."""

    def forward(self, x: Tensor) -> Tensor:
        mlp = self.mlp
        gate = extension().se_gate if x.device.type == "cpu" else se_gate
        return gate(x, mlp.fc1.weight, mlp.fc1.bias, mlp.fc2.weight, mlp.fc2.bias)[0]

    def triton_gate(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(y, pooled, gate) from the Triton op that runs on CUDA (CPU tensors: under
        TRITON_INTERPRET=1)."""
        mlp = self.mlp
        return se_gate(x, mlp.fc1.weight, mlp.fc1.bias, mlp.fc2.weight, mlp.fc2.bias)


__all__ = ["ECAFused", "SqueezeExciteFused", "backend", "eca_gate", "se_gate", "triton_available"]

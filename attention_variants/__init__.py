"""Attention blocks for CNNs, behind one registry.

import attention_variants as av
av.available()              # sorted names
m = av.create("eca", 256)   # an nn.Module; output shape == input shape
av.info("se").options       # {'reduction': 16, 'bias': True}
"""

from . import (  # noqa: F401  (importing registers them)
    cbam,
    coord,
    eca,
    eca_mha,
    fused,
    gc,
    gct,
    identity,
    se,
    sge,
    shuffle,
    simam,
    triplet,
)
from .registry import (
    UnknownVariantError,
    VariantInfo,
    available,
    create,
    info,
    register,
    unregister,
    validate,
)

__all__ = [
    "UnknownVariantError",
    "VariantInfo",
    "available",
    "create",
    "info",
    "register",
    "unregister",
    "validate",
]

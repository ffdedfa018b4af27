"""Main job: build every registered variant and run it forward and backward on the CPU.

A smoke run until the sweep lands; it exits non-zero if any variant fails.
"""

import sys

import torch

import attention_variants as av


def main() -> int:
    failures = 0
    print(f"{'variant':<10} {'params':>10}  status")
    for name in av.available():
        try:
            module = av.create(name, 64)
            x = torch.randn(2, 64, 14, 14, requires_grad=True)
            module(x).sum().backward()
            params = sum(p.numel() for p in module.parameters())
            print(f"{name:<10} {params:>10,}  ok")
        except Exception as error:  # one broken variant must not hide the others
            failures += 1
            print(f"{name:<10} {'-':>10}  error: {error}")
    print(f"{len(av.available()) - failures} ok, {failures} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

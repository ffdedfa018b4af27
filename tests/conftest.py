import os

# Triton kernels run on the CPU in its interpreter (exact, slow); set before triton is imported
os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest
import torch


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def pytest_collection_modifyitems(session, config, items):
    # an empty collection is a broken suite, never a pass: fail loudly instead of exit code 5
    if not items and not config.getoption("--collect-only"):
        raise pytest.UsageError("no tests were collected; check the test paths and -k/-m filters")

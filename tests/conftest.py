import os

import pytest
import torch

# Keep tests reproducible and polite on a 2-core machine.
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture
def smoke_cfg():
    from stdann.config import load_config

    return load_config("smoke")

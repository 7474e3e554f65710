import os

from stdann.cpu import configure

# Before torch is imported (as the `stdann` command does): when other processes keep the cores busy,
# one thread per free core and sleeping OpenMP waits, so that a suite run beside other work does not
# spin its threads against them (the suite must pass, in time, under load).
configure()

import pytest  # noqa: E402
import torch  # noqa: E402

# Keep tests polite on a 2-core machine: at most 2 threads, fewer when the cores are shared.
torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS") or max(1, min(2, os.cpu_count() or 1))))


@pytest.fixture(autouse=True, scope="session")
def _positions_cache(tmp_path_factory):
    """Cached positions (stdann.topography.cache) go to a folder of this test session, never to the
    user's ~/.cache; commands the tests start inherit it."""
    os.environ["STDANN_CACHE_DIR"] = str(tmp_path_factory.mktemp("stdann-cache"))


@pytest.fixture
def smoke_cfg():
    from stdann.config import load_config

    return load_config("smoke")

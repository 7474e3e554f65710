"""The cache of initial positions: the same records as init_model_positions, made once per geometry."""

import numpy as np
import pytest

import stdann.topography.cache as C
from stdann.topography import init_model_positions

GEOMETRY = dict(width=8, frames=4, size=32, blocks=["layer2.1", "layer3.1"], seed=3, n_windows=200)


def _same(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert a[k].dims == b[k].dims and a[k].neighborhood_width == b[k].neighborhood_width
        assert np.array_equal(a[k].coordinates, b[k].coordinates)
        assert np.array_equal(a[k].neighborhood_indices, b[k].neighborhood_indices)


def test_cached_positions_equal_fresh_ones_and_are_made_once(tmp_path, monkeypatch):
    monkeypatch.setenv("STDANN_CACHE_DIR", str(tmp_path))
    fresh = init_model_positions(**GEOMETRY)
    first = C.cached_model_positions(**GEOMETRY)
    _same(first, fresh)
    assert len(list((tmp_path / "positions").glob("*.npz"))) == 2

    monkeypatch.setattr(C._init, "init_model_positions", lambda *a, **k: pytest.fail("made again"))
    _same(C.cached_model_positions(**GEOMETRY), fresh)
    # one block's positions do not depend on the others requested
    _same(C.cached_model_positions(**{**GEOMETRY, "blocks": ["layer3.1"]}), {"layer3.1": fresh["layer3.1"]})


def test_another_geometry_a_damaged_file_and_no_cache_are_made_anew(tmp_path, monkeypatch):
    monkeypatch.setenv("STDANN_CACHE_DIR", str(tmp_path))
    C.cached_model_positions(**GEOMETRY)
    other = C.cached_model_positions(**{**GEOMETRY, "seed": 4})
    _same(other, init_model_positions(**{**GEOMETRY, "seed": 4}))
    assert len(list((tmp_path / "positions").glob("*.npz"))) == 4

    for f in (tmp_path / "positions").glob("layer3.1-*.npz"):
        f.write_bytes(b"not a positions file")
    _same(C.cached_model_positions(**GEOMETRY), init_model_positions(**GEOMETRY))  # made again, not an error

    monkeypatch.setenv("STDANN_CACHE_DIR", "off")
    assert C.cache_folder() is None
    _same(C.cached_model_positions(**GEOMETRY), init_model_positions(**GEOMETRY))


def test_a_cache_folder_that_cannot_be_written_costs_only_time(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("a file where the cache folder would be")
    monkeypatch.setenv("STDANN_CACHE_DIR", str(blocker))
    _same(C.cached_model_positions(**GEOMETRY), init_model_positions(**GEOMETRY))

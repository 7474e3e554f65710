"""Stimuli: drift direction from the phase shift between frames, RDK coherence by counting dots."""

import numpy as np
import pytest
import torch

from stdann.config import Config
from stdann.ephys.stimuli import (
    blank_set,
    drifting_gratings,
    grating_set,
    plaids,
    random_dot_kinematograms,
    rdk_dots,
    rdk_set,
    render_dots,
)

H = W = 32


def frame_phase_shift(clip, theta_deg, sf):
    """Per-frame phase ψ_t of the fit L − mean = a·sin(2π·sf·u + ψ_t) (least squares on sin and cos
    regressors, exact for a grating), u along θ (screen up = +y); returns the wrapped ψ_{t+1} − ψ_t."""
    lum = clip[0, 0].double().numpy()  # (T, H, W)
    th = np.deg2rad(theta_deg)
    x = np.arange(W) - (W - 1) / 2
    y = (H - 1) / 2 - np.arange(H)
    u = (x[None, :] * np.cos(th) + y[:, None] * np.sin(th)).ravel()
    X = np.stack([np.sin(2 * np.pi * sf * u), np.cos(2 * np.pi * sf * u), np.ones_like(u)], axis=1)
    coef, *_ = np.linalg.lstsq(X, lum.reshape(lum.shape[0], -1).T, rcond=None)
    ph = np.arctan2(coef[1], coef[0])  # sin(X + ψ) = sin X cos ψ + cos X sin ψ
    return np.angle(np.exp(1j * np.diff(ph)))


@pytest.mark.parametrize("theta", np.arange(16) * 22.5)
def test_grating_drift_direction_by_phase_shift(theta):
    sf, tf = 0.125, 0.125
    clip = drifting_gratings(theta, sf, tf, frames=4, height=H, width=W)
    assert clip.shape == (1, 3, 4, H, W)
    # projection onto the claimed direction: the phase advances by −2π·tf per frame (a crest moves
    # toward +u); onto the opposite direction it would be +2π·tf
    assert np.allclose(frame_phase_shift(clip, theta, sf), -2 * np.pi * tf, atol=1e-3)
    assert np.allclose(frame_phase_shift(clip, theta + 180, sf), 2 * np.pi * tf, atol=1e-3)


def test_grating_convention_by_pixel_shift():
    # sf 1/8 cyc/px, tf 1/4 cyc/frame = 2 px/frame; 32 px = 4 whole cycles so the image is periodic
    right = drifting_gratings(0.0, 1 / 8, 1 / 4, frames=3, height=H, width=W)[0, 0]
    assert torch.allclose(right[1], torch.roll(right[0], shifts=2, dims=1), atol=1e-5)  # columns +2
    up = drifting_gratings(90.0, 1 / 8, 1 / 4, frames=3, height=H, width=W)[0, 0]
    assert torch.allclose(up[1], torch.roll(up[0], shifts=-2, dims=0), atol=1e-5)  # rows −2 = upward
    left = drifting_gratings(180.0, 1 / 8, 1 / 4, frames=3, height=H, width=W)[0, 0]
    assert torch.allclose(left[1], torch.roll(left[0], shifts=-2, dims=1), atol=1e-5)


def test_grating_range_contrast_aperture_and_batching():
    g = drifting_gratings(np.array([0, 90.0]), 0.1, 0.2, phase_deg=[0, 45], contrast=[1.0, 0.5], aperture=[0, 0.5],
                          frames=2, height=H, width=W)
    assert g.shape == (2, 3, 2, H, W) and g.dtype == torch.float32
    assert float(g.min()) >= 0 and float(g.max()) <= 1
    assert abs(float(g[0].mean()) - 0.5) < 0.05
    assert float(g[1].max()) <= 0.75 + 1e-6  # half contrast
    assert float(g[1, 0, 0, 0, 0]) == 0.5  # corner outside the aperture is grey
    assert torch.equal(g[:, 0], g[:, 1]) and torch.equal(g[:, 0], g[:, 2])  # achromatic


def test_plaid_pattern_moves_along_its_direction():
    # components ±60° at sf s drift at tf/sf each; the pattern moves along θ at speed/cos(60°)
    sf, tf = 1 / 8, 1 / 16
    p = plaids(0.0, sf, tf, angle_deg=120.0, frames=3, height=64, width=64)[0, 0].double()
    assert float(p.min()) >= 0 and float(p.max()) <= 1
    speed = tf / sf / np.cos(np.deg2rad(60))  # = 1 px/frame
    assert speed == pytest.approx(1.0)
    assert torch.allclose(p[1, 10:54, 10:54], torch.roll(p[0], shifts=1, dims=1)[10:54, 10:54], atol=1e-6)


@pytest.mark.parametrize("coherence", [1.0, 0.5, 0.25, 0.0])
@pytest.mark.parametrize("lifetime", [0, 3])
def test_rdk_coherence_by_counting_dots(coherence, lifetime):
    n, speed, theta = 200, 2.0, 135.0
    pos, signal, replot = rdk_dots(theta, coherence, speed, n, lifetime, frames=8, height=H, width=W, seed=1)
    assert signal.sum() == round(coherence * n)
    step = np.diff(pos, axis=0)
    size = np.array([W, H])
    step = (step + size / 2) % size - size / 2  # undo wrapping
    want = speed * np.array([np.cos(np.deg2rad(theta)), -np.sin(np.deg2rad(theta))])
    moved = ~replot[1:]
    match = np.all(np.abs(step - want) < 1e-6, axis=2) & moved
    # every non-replotted signal dot moves with the signal, no noise dot does
    assert np.array_equal(match, moved & signal[None, :])
    if not lifetime:
        assert match.sum(axis=1).tolist() == [round(coherence * n)] * 7
    assert np.allclose(np.linalg.norm(step[moved], axis=-1), speed)
    if lifetime:
        assert replot.any() and replot.sum(axis=0).max() <= 8 // lifetime + 1


def test_rdk_rendering_moves_and_is_grey_on_average():
    clip = random_dot_kinematograms(0.0, 1.0, speed=2.0, density=0.05, dot_size=2.0, seed=3, frames=4, height=H,
                                    width=W)
    assert clip.shape == (1, 3, 4, H, W)
    assert float(clip.min()) >= 0 and float(clip.max()) <= 1
    assert abs(float(clip.mean()) - 0.5) < 0.05
    f = clip[0, 0]
    assert torch.allclose(f[1], torch.roll(f[0], shifts=2, dims=1), atol=1e-5)
    # one dot renders as a disc centred on its position
    img = render_dots(np.array([[[[10.0, 20.0]]]]), 3.0, H, W)[0, 0]
    w = (img - 0.5).double().numpy()
    rows, cols = np.mgrid[0:H, 0:W]
    assert float(img[20, 10]) == 1.0 and float(img.min()) == 0.5  # one white dot on grey
    assert (w * cols).sum() / w.sum() == pytest.approx(10.0) and (w * rows).sum() / w.sum() == pytest.approx(20.0)


def test_stimulus_sets_order_and_groups():
    e = Config().ephys
    gs = grating_set(e, frames=4, size=16)
    n = e.n_directions * len(e.spatial_frequencies) * len(e.temporal_frequencies) * e.n_phases
    assert len(gs) == n
    groups, shape = gs.groups()
    assert shape == (e.n_directions, len(e.spatial_frequencies), len(e.temporal_frequencies))
    assert np.bincount(groups).tolist() == [e.n_phases] * int(np.prod(shape))
    # group g holds stimuli of one direction/sf/tf
    d = gs.conditions["direction_deg"]
    for g in (0, 7, int(np.prod(shape)) - 1):
        assert len(set(d[groups == g])) == 1
    batches = list(gs.batches(50))
    assert sum(b.shape[0] for b in batches) == n and gs.n_batches(50) == len(batches)
    rs = rdk_set(e, frames=4, size=16, n_offsets=3)
    g2, shape2 = rs.groups()
    assert shape2 == (e.n_directions, len(e.rdk_coherences), 3) and len(rs) == len(g2)
    assert np.bincount(g2).tolist() == [e.rdk_repeats] * int(np.prod(shape2))  # repeats averaged, offsets kept
    a = rs.make([0, 1])
    b = rs.make([1])
    assert torch.equal(a[1:], b)  # a stimulus does not depend on its batch


@pytest.mark.parametrize("coherence", [1.0, 0.5])
@pytest.mark.parametrize("offset", [0, 3])
def test_rdk_opposite_direction_is_the_time_reversal(coherence, offset):
    # one dot field per seed, shared by every direction: the clip of θ + 180° shifted by s frames is the clip of θ
    # shifted by −s played backwards (noise dots keep their angle to the signal direction; trajectories centred on
    # the middle frame)
    kw = dict(coherence=coherence, speed=1.5, density=0.05, seed=4, frames=8, height=H, width=W)
    for theta in (0.0, 67.5, 202.5):
        fwd = random_dot_kinematograms(theta, offset=-offset, **kw)
        back = random_dot_kinematograms(theta + 180.0, offset=offset, **kw)
        assert torch.allclose(back, fwd.flip(2), atol=1e-5)
        if offset:
            assert not torch.allclose(back, random_dot_kinematograms(theta, offset=offset, **kw).flip(2), atol=1e-3)
    other = random_dot_kinematograms(0.0, **dict(kw, seed=5))
    assert not torch.allclose(other, random_dot_kinematograms(0.0, **kw), atol=1e-3)


def test_dot_offsets_make_the_sampled_trajectory_times_symmetric():
    # what the offsets are for: a block of temporal stride n samples frames 0, n, 2n, ...; over offsets 0 .. n-1 the
    # trajectory times it sees (frame + offset - centre) are symmetric about 0, so θ + 180° (times negated) is seen
    # at the same set of dot configurations as θ
    frames = 8
    for n in (1, 2, 4, 8):
        times = (np.arange(0, frames, n)[:, None] + np.arange(n)[None, :] - (frames - 1) / 2).ravel()
        assert np.array_equal(np.sort(times), np.sort(-times))
        shifted = (np.arange(0, frames, n)[:, None] + np.arange(n + 1)[None, :] - (frames - 1) / 2).ravel()
        assert n == 8 or not np.array_equal(np.sort(shifted), np.sort(-shifted))


def test_rdk_set_shares_one_field_per_repeat():
    e = Config().ephys
    rs = rdk_set(e, frames=4, size=16, n_offsets=2)
    seed, d, c = rs.conditions["seed"], rs.conditions["direction_deg"], rs.conditions["coherence"]
    assert len(np.unique(seed)) == e.rdk_repeats  # the seed is the repeat: every direction and coherence share it
    for s in np.unique(seed)[:2]:
        assert set(d[seed == s]) == set(d) and set(c[seed == s]) == set(c)


def test_blank_set_is_one_grey_clip():
    bs = blank_set(Config().ephys, frames=4, size=16)
    assert len(bs) == 1 and bs.groups()[1] == (1,)
    x = bs.make([0])
    assert x.shape == (1, 3, 4, 16, 16) and torch.all(x == 0.5)

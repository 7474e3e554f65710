"""Built-in naturalistic video, generated on the fly (on the GPU when the device is one).

Each clip is a view onto a large texture from the scene bank (scikit-image sample photos and 1/f
noise, see :mod:`stdann.data.textures`) seen by a moving camera, plus foreground objects:

- camera: translation in a uniformly random direction, speed log-uniform in
  [``speed_min``, ``speed_max``] px/frame, heading and speed drift slowly; with some probability
  an expansion/contraction (zoom) and a rotation component. The texture is mirrored at its
  borders, so the camera can travel any distance;
- objects: soft-edged ellipses cut from another texture, moving with their own velocity and
  occluding the background;
- a brightness drift over time and additive sensor noise.

All frames of a batch are rendered by one ``grid_sample`` (frames and views stacked along the
output height), the objects by one more per object slot. Random parameters come from a CPU
``torch.Generator``, so the result depends only on the seed (not on the device, up to float
rounding); they reach the GPU by non-blocking copies from pinned memory
(:func:`stdann.devices.upload`), so drawing the next batch never waits for the GPU.

Ground truth: ``motion`` dictionaries give the global (camera) translation of each clip as seen in
the output clip: ``direction`` in degrees (0° = rightward, 90° = upward on the screen,
counter-clockwise), ``speed`` in output px per clip frame, plus ``expansion`` (d log zoom per
underlying frame), ``rotation`` (deg per underlying frame, counter-clockwise), ``scene`` index and
``objects`` (count).
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import torch
import torch.nn.functional as F

from stdann.data import augment as aug
from stdann.data.config import DataConfig
from stdann.data.textures import build_bank
from stdann.devices import upload


def make_generator(*keys: int) -> torch.Generator:
    """A CPU torch.Generator seeded from a tuple of integers (order matters)."""
    state = np.random.SeedSequence([int(k) & 0xFFFFFFFF for k in keys] + [0x5D]).generate_state(2, dtype=np.uint64)
    g = torch.Generator()
    g.manual_seed(int(state[0] >> 1))
    return g


def _u(gen, shape, lo, hi):
    return torch.rand(shape, generator=gen, dtype=torch.float64) * (hi - lo) + lo


class VideoGenerator:
    """Renders clips and positive pairs of the built-in video.

    ``VideoGenerator(cfg, device)`` builds the scene bank once (deterministic in ``cfg.seed``).
    """

    def __init__(self, cfg: DataConfig | None = None, device: str | torch.device = "cpu"):
        self.cfg = cfg if cfg is not None else DataConfig()
        self.device = torch.device(device)
        ts = self.cfg.texture_size if self.cfg.texture_size > 0 else 3 * self.cfg.size
        self.texture_size = int(max(ts, 16))
        bank, self.scene_names = build_bank(self.cfg.num_scenes, self.texture_size, self.cfg.seed, self.cfg.images, self.cfg.noise_texture_fraction)
        self.bank = bank.to(self.device)
        self._noise_pool: torch.Tensor | None = None

    @property
    def num_scenes(self) -> int:
        return self.bank.shape[0]

    # -- parameter sampling ----------------------------------------------------------
    def _trajectories(self, gen, n: int, length: int, directions=None, speeds=None, repeats: int = 1):
        """Per row: displacement d (n, length, 2) in view px (x right, y down), zoom exponent and
        rotation angle per underlying frame, texture scale and origin."""
        cfg = self.cfg
        if directions is None:
            if repeats > 1:
                groups = -(-n // repeats)
                base = _u(gen, groups, 0, 360).repeat_interleave(repeats)[:n]
                k = torch.arange(n, dtype=torch.float64) % repeats
                theta0 = (base + 360.0 * k / repeats + _u(gen, n, -180.0 / repeats, 180.0 / repeats) * 0.5) % 360
            else:
                theta0 = _u(gen, n, 0, 360)
        else:
            theta0 = torch.as_tensor(directions, dtype=torch.float64).expand(n).clone()
        if speeds is None:
            s0 = torch.exp(_u(gen, n, math.log(cfg.speed_min), math.log(cfg.speed_max)))
        else:
            s0 = torch.as_tensor(speeds, dtype=torch.float64).expand(n).clone()
        drift = cfg.velocity_drift if directions is None and speeds is None else 0.0
        dtheta = torch.randn(n, generator=gen, dtype=torch.float64) * drift  # deg / frame
        dlogs = torch.randn(n, generator=gen, dtype=torch.float64) * drift / 100.0
        tau = torch.arange(length, dtype=torch.float64)
        theta = torch.deg2rad(theta0[:, None] + dtheta[:, None] * tau)
        speed = s0[:, None] * torch.exp(dlogs[:, None] * tau)
        v = torch.stack([speed * torch.cos(theta), -speed * torch.sin(theta)], -1)  # y down
        d = torch.cumsum(v, 1) - v  # d(0) = 0, d(τ) = Σ_{τ'<τ} v(τ')
        has_e = torch.rand(n, generator=gen) < cfg.expansion_prob
        e = torch.where(has_e, _u(gen, n, -cfg.expansion_max, cfg.expansion_max), torch.zeros(n, dtype=torch.float64))
        has_r = torch.rand(n, generator=gen) < cfg.rotation_prob
        w = torch.where(has_r, _u(gen, n, -cfg.rotation_max, cfg.rotation_max), torch.zeros(n, dtype=torch.float64))
        if directions is not None or speeds is not None:
            e = torch.zeros(n, dtype=torch.float64)
            w = torch.zeros(n, dtype=torch.float64)
        k = torch.exp(_u(gen, n, math.log(cfg.texture_scale_min), math.log(cfg.texture_scale_max)))
        u0 = _u(gen, (n, 2), 0, self.texture_size)
        return dict(d=d, e=e, w=w, k=k, u0=u0)

    def _objects(self, gen, n: int, length: int, vh: int, vw: int):
        cfg = self.cfg
        K = max(0, int(cfg.objects_max))
        if K == 0:
            return None
        present = torch.rand(n, K, generator=gen) < cfg.object_prob
        side = min(vh, vw)
        diam = _u(gen, (n, K), cfg.object_size_min, cfg.object_size_max) * side
        aspect = torch.exp(_u(gen, (n, K), math.log(0.6), math.log(1.6)))
        a = diam / 2 * torch.sqrt(aspect)
        b = diam / 2 / torch.sqrt(aspect)
        psi = _u(gen, (n, K), 0, math.pi)
        theta = _u(gen, (n, K), 0, 2 * math.pi)
        sp = torch.exp(_u(gen, (n, K), math.log(cfg.speed_min), math.log(cfg.speed_max)))
        vel = torch.stack([sp * torch.cos(theta), -sp * torch.sin(theta)], -1)  # (n, K, 2)
        mid = _u(gen, (n, K, 2), 0, 1) * torch.tensor([vw, vh], dtype=torch.float64) - torch.tensor([vw, vh], dtype=torch.float64) / 2
        tau = torch.arange(length, dtype=torch.float64)
        centre = mid[:, :, None, :] + (tau[None, None, :, None] - length / 2) * vel[:, :, None, :]  # (n,K,L,2), view coords centred
        scene = torch.randint(0, self.num_scenes, (n, K), generator=gen)
        k = torch.exp(_u(gen, (n, K), math.log(cfg.texture_scale_min), math.log(cfg.texture_scale_max)))
        u0 = _u(gen, (n, K, 2), 0, self.texture_size)
        tint = _u(gen, (n, K, 3), 0.75, 1.25)
        return dict(present=present, a=a, b=b, psi=psi, centre=centre, scene=scene, k=k, u0=u0, tint=tint)

    # -- rendering -------------------------------------------------------------------------
    def _bg_affines(self, traj, rows, times, crops, flips, oh, ow, vh, vw):
        """(N, T, 2, 3) maps output pixel → background texture px for clips (rows, times)."""
        C = aug.crop_affine(crops, flips, oh, ow)  # output px → view px (top-left origin)
        C = C.clone()
        C[:, 0, 2] -= (vw - 1) / 2  # centre the view coordinates
        C[:, 1, 2] -= (vh - 1) / 2
        d = traj["d"][rows[:, None], times]  # (N, T, 2)
        t = times.double()
        z = torch.exp(-traj["e"][rows][:, None] * t)  # 1/zoom
        phi = torch.deg2rad(traj["w"][rows][:, None] * t)
        k = traj["k"][rows][:, None] * z
        # u = u0 + k R(-φ) (v - d): R(-φ) = [[cos, -sin], [sin, cos]] in (x, y-down)
        c, s = torch.cos(phi), torch.sin(phi)
        Rm = torch.stack([torch.stack([c, -s], -1), torch.stack([s, c], -1)], -2) * k[..., None, None]  # (N,T,2,2)
        L = Rm @ C[:, None, :, :2]  # (N,T,2,2)
        off = (Rm @ (C[:, None, :, 2:] - d[..., None]))[..., 0] + traj["u0"][rows][:, None, :]
        return torch.cat([L, off[..., None]], -1)

    def _reflect_norm(self, u: torch.Tensor) -> torch.Tensor:
        Lm = float(self.texture_size - 1)
        m = torch.remainder(u, 2 * Lm)
        return (Lm - (m - Lm).abs()) * (2.0 / Lm) - 1.0

    def _sample(self, scenes: torch.Tensor, A: torch.Tensor, oh: int, ow: int, out_rows: int) -> torch.Tensor:
        """Sample textures ``scenes`` (R,) with affines A (R, V·T, 2, 3) → (R, 3, V·T·oh, ow)."""
        R, VT = A.shape[:2]
        pix = aug.pixel_grid(oh, ow, self.device)  # (P, 3)
        A = upload(A, self.device, torch.float32)
        uv = torch.einsum("rfij,pj->rfpi", A, pix)  # (R, VT, P, 2)
        g = self._reflect_norm(uv).reshape(R, VT * oh, ow, 2)
        # a stack of views (plain copies): index_select on a large tensor scales badly with threads
        src = torch.stack([self.bank[i] for i in scenes.tolist()])
        return F.grid_sample(src, g, mode="bilinear", padding_mode="border", align_corners=True)

    _NOISE_BLOCK = 1 << 20

    def _noise(self, n_el: int, gen) -> torch.Tensor:
        """A window of a fixed pseudo-random normal sequence (built in blocks, so the values never
        depend on which sizes were asked for before); the offset comes from ``gen``."""
        need = 2 * n_el
        have = 0 if self._noise_pool is None else self._noise_pool.numel()
        if have < need:
            blocks = [] if self._noise_pool is None else [self._noise_pool]
            for b in range(have // self._NOISE_BLOCK, -(-need // self._NOISE_BLOCK)):
                blocks.append(torch.randn(self._NOISE_BLOCK, generator=make_generator(self.cfg.seed, 0xA015E, b)).to(self.device))
            self._noise_pool = torch.cat(blocks)
        off = int(torch.randint(0, n_el + 1, (1,), generator=gen))
        return self._noise_pool[off : off + n_el]

    def _render(self, gen, traj, objs, scenes, rows, times, crops, flips, oh, ow, vh, vw, views: int):
        """Render N = R·views clips. rows/times/crops/flips are per clip, ordered (row-major over
        (R, views)); scenes (R,) are the textures, one per render row."""
        N, T = times.shape
        R = N // views
        A = self._bg_affines(traj, rows, times, crops, flips, oh, ow, vh, vw)  # (N,T,2,3)
        out = self._sample(scenes, A.view(R, views * T, 2, 3), oh, ow, R)  # (R,3,V*T*oh,ow)
        out = out.view(R, 3, views, T, oh, ow).permute(0, 2, 1, 3, 4, 5).reshape(N, 3, T, oh, ow)
        n_obj = torch.zeros(N, dtype=torch.long)
        if objs is not None:
            K = objs["present"].shape[1]
            C = aug.crop_affine(crops, flips, oh, ow).clone()
            C[:, 0, 2] -= (vw - 1) / 2
            C[:, 1, 2] -= (vh - 1) / 2
            for j in range(K):
                sel = torch.nonzero(objs["present"][rows, j]).flatten()
                if sel.numel() == 0:
                    continue
                r = rows[sel]
                n_obj[sel] += 1
                ctr = objs["centre"][r, j][torch.arange(sel.numel())[:, None], times[sel]]  # (M,T,2)
                Cs = C[sel]  # (M,2,3)
                # texture: u = u0 + k (v - o(t)), v = Cs·p
                kk = objs["k"][r, j][:, None, None, None]
                Lt = (kk * Cs[:, None, :, :2]).expand(-1, T, -1, -1)
                off_t = kk[..., 0] * (Cs[:, None, :, 2] - ctr) + objs["u0"][r, j][:, None, :]
                At = torch.cat([Lt, off_t[..., None]], -1)  # (M,T,2,3)
                tex = self._sample(objs["scene"][r, j], At, oh, ow, sel.numel()).view(-1, 3, T, oh, ow)
                tex = tex * upload(objs["tint"][r, j], self.device, torch.float32)[:, :, None, None, None]
                # mask: q = diag(1/a, 1/b) R(ψ)ᵀ (v - o(t)); soft edge on 1 − |q|²
                ps = objs["psi"][r, j]
                c, s = torch.cos(ps), torch.sin(ps)
                Q = torch.stack([torch.stack([c / objs["a"][r, j], s / objs["a"][r, j]], -1), torch.stack([-s / objs["b"][r, j], c / objs["b"][r, j]], -1)], -2)  # (M,2,2)
                Lq = (Q @ Cs[:, :, :2])[:, None].expand(-1, T, -1, -1)
                off_q = (Q[:, None] @ (Cs[:, None, :, 2:] - ctr[..., None]))[..., 0]
                Aq = upload(torch.cat([Lq, off_q[..., None]], -1), self.device, torch.float32)
                q = torch.einsum("mtij,pj->mtpi", Aq, aug.pixel_grid(oh, ow, self.device))
                r2 = (q * q).sum(-1)
                mask = ((1.0 - r2) / (2 * self.cfg.object_edge)).clamp_(0, 1).view(-1, 1, T, oh, ow)
                # every clip holding object j at once (``sel`` has no repeats); the slots stay in
                # order, so a later object still occludes an earlier one
                idx = upload(sel, self.device)
                out.index_copy_(0, idx, torch.lerp(out.index_select(0, idx), tex, mask))
        return out, n_obj

    def _finish_params(self, gen, N: int, T: int, color: bool, rows_time0: torch.Tensor | None = None) -> dict:
        """The per-clip draws of :meth:`_finish`: brightness gain (N, T), colour matrix and offset
        weight, sensor-noise strength."""
        cfg = self.cfg
        rate = torch.randn(N, generator=gen, dtype=torch.float64) * cfg.brightness_drift
        t0 = rows_time0 if rows_time0 is not None else torch.zeros(N, dtype=torch.float64)
        tt = t0[:, None] + torch.arange(T, dtype=torch.float64)[None] * cfg.frame_stride
        gain = torch.exp(rate[:, None] * (tt - tt.mean(1, keepdim=True))).float()
        if color:
            M, ow_, _ = aug.sample_color(gen, N, cfg)
        else:
            M, ow_ = torch.eye(3).repeat(N, 1, 1), torch.zeros(N)
        sig = torch.rand(N, generator=gen) * cfg.sensor_noise if cfg.sensor_noise > 0 else None
        return dict(gain=gain, M=M, ow=ow_, sig=sig)

    def _finish(self, gen, x: torch.Tensor, T: int, color: bool, rows_time0: torch.Tensor | None = None,
                params: dict | None = None):
        """Brightness drift, colour augmentation (optional) and sensor noise; clip to [0, 1].
        ``params`` (of :meth:`_finish_params`) are drawn here unless given; the noise is always new."""
        p = params if params is not None else self._finish_params(gen, x.shape[0], T, color, rows_time0)
        x = aug.apply_color(x, p["M"], p["ow"], p["gain"])
        if p["sig"] is not None:
            sig = upload(p["sig"], self.device)
            x = x.add_(self._noise(x.numel(), gen).view_as(x) * sig[:, None, None, None, None])
        return x.clamp_(0.0, 1.0)

    @staticmethod
    def _rotated_paths(d: torch.Tensor, centre: torch.Tensor, angle_deg: torch.Tensor) -> torch.Tensor:
        """Camera paths ``d`` (M, L, 2) in view px (x right, y down) turned by ``angle_deg`` (M,)
        counter-clockwise on the screen about their position at time index ``centre`` (M,): the
        camera passes the same place at that time, moving in another direction at the same speed."""
        a = torch.deg2rad(angle_deg.double())
        c, s = torch.cos(a), torch.sin(a)
        R = torch.stack([torch.stack([c, s], -1), torch.stack([-s, c], -1)], -2)  # CCW on screen with y down
        at = d[torch.arange(d.shape[0]), centre][:, None, :]  # (M, 1, 2)
        return at + ((d - at) @ R.transpose(1, 2))

    def _motion_negatives(self, gen, k: int, traj, objs, scenes, rows, times, crops, flips, finish: dict, oh, ow, vh, vw):
        """``k`` clips per clip of (rows, times, crops, flips): same scene, texture place, crop, flip,
        objects, colour and brightness, camera path turned about its middle frame by
        360°·(j + u)/(k + 1), j = 1…k (u uniform in ±½, one per clip): other directions at the same
        speed through the same place. Returns ((N, k, 3, T, H, W), their camera directions (N, k))."""
        N, T = times.shape
        m = torch.arange(N).repeat_interleave(k)
        jitter = (torch.rand(N, generator=gen, dtype=torch.float64) - 0.5).repeat_interleave(k)
        j = torch.arange(1, k + 1, dtype=torch.float64).repeat(N)
        angle = 360.0 * (j + jitter) / (k + 1)
        d = self._rotated_paths(traj["d"][rows[m]], times[m, T // 2], angle)
        ntraj = dict(d=d, **{key: traj[key][rows[m]] for key in ("e", "w", "k", "u0")})
        nobjs = None if objs is None else {key: v[rows[m]] for key, v in objs.items()}
        own = torch.arange(N * k)
        x, n_obj = self._render(gen, ntraj, nobjs, scenes[m], own, times[m], crops[m], flips[m], oh, ow, vh, vw, 1)
        params = {key: (None if v is None else v[m]) for key, v in finish.items()}
        x = self._finish(gen, x, T, color=True, params=params)
        motion = self._motion(ntraj, own, times[m], crops[m], flips[m], oh, ow, n_obj, scenes[m])
        return x.view(N, k, *x.shape[1:]), motion["direction"].view(N, k)

    @staticmethod
    def _motion(traj, rows, times, crops, flips, oh, ow, n_obj, scenes):
        d = traj["d"][rows[:, None], times]
        T = times.shape[1]
        v = (d[:, -1] - d[:, 0]) / max(T - 1, 1)  # px per clip frame, in view px
        vx = v[:, 0] / (crops[:, 2] / ow)
        vy = v[:, 1] / (crops[:, 3] / oh)
        vx = torch.where(flips, -vx, vx)
        direction = torch.rad2deg(torch.atan2(-vy, vx)) % 360.0
        w = traj["w"][rows]
        return dict(
            direction=direction.float(), speed=torch.sqrt(vx**2 + vy**2).float(),
            expansion=traj["e"][rows].float(), rotation=torch.where(flips, -w, w).float(),
            scene=scenes.clone(), objects=n_obj.clone(),
        )

    # -- public ------------------------------------------------------------------------------
    @torch.no_grad()
    def generate(self, n: int, frames: int | None = None, height: int | None = None, width: int | None = None,
                 seed: int | torch.Generator = 0, return_motion: bool = False, directions=None, speeds=None,
                 objects: bool = True, noise: bool = True):
        """``n`` clips (n, 3, T, H, W) float32 in [0, 1] on the generator's device, without
        augmentation. ``directions`` (deg) / ``speeds`` (px/frame) fix the camera translation
        (no drift, zoom or rotation then). With ``return_motion`` also the ground-truth dict."""
        cfg = self.cfg
        T = int(frames or cfg.frames)
        oh = int(height or cfg.size)
        ow = int(width or oh)
        gen = seed if isinstance(seed, torch.Generator) else make_generator(cfg.seed, int(seed), 0x6E4)
        stride = max(1, int(cfg.frame_stride))
        length = (T - 1) * stride + 1
        traj = self._trajectories(gen, n, length, directions, speeds, max(1, cfg.same_scene_repeats))
        objs = self._objects(gen, n, length, oh, ow) if objects else None
        scenes = torch.randint(0, self.num_scenes, (n,), generator=gen)
        rows = torch.arange(n)
        times = (torch.arange(T) * stride)[None].repeat(n, 1)
        crops = torch.tensor([ow / 2, oh / 2, ow, oh], dtype=torch.float64).repeat(n, 1)
        flips = torch.zeros(n, dtype=torch.bool)
        x, n_obj = self._render(gen, traj, objs, scenes, rows, times, crops, flips, oh, ow, oh, ow, 1)
        if noise:
            x = self._finish(gen, x, T, color=False)
        else:
            x = x.clamp_(0, 1)
        if return_motion:
            return x, self._motion(traj, rows, times, crops, flips, oh, ow, n_obj, scenes)
        return x

    @torch.no_grad()
    def pairs(self, n: int, seed: int | torch.Generator = 0, return_motion: bool = False, motion_negatives: int = 0):
        """``n`` positive pairs (x1, x2), each (n, 3, T, size, size) in [0, 1], augmented per
        ``cfg`` (crop and flip fused into the rendering). Row i of x1 and x2: the same scene
        (``pair_mode='scene'``) seen at two start times ``pair_min_gap``–``pair_max_gap`` s apart
        with independent crops; with ``pair_mode='motion'`` the second view shows another scene
        moving with the same camera motion.

        Returns ``(x1, x2)``, then with ``motion_negatives = k > 0`` the motion-only negatives of
        each view ``(neg1, neg2)``, each (n, k, 3, T, size, size): the view's scene, place, crop,
        flip, objects, colour and brightness with the camera turned to k other directions (see
        :meth:`_motion_negatives`), then with ``return_motion`` the ground truth ``(m1, m2)`` (with
        the negatives' directions as ``negative_direction`` (n, k)). Without negatives the draws, and
        so the clips, are those of earlier versions."""
        cfg = self.cfg
        T, oh, ow = int(cfg.frames), int(cfg.size), int(cfg.size)
        vh, vw = oh, ow
        gen = seed if isinstance(seed, torch.Generator) else make_generator(cfg.seed, int(seed), 0x9A1)
        stride = max(1, int(cfg.frame_stride))
        gmin = int(round(cfg.pair_min_gap * cfg.fps))
        gmax = max(gmin, int(round(cfg.pair_max_gap * cfg.fps)))
        clip_len = (T - 1) * stride + 1
        length = clip_len + gmax
        repeats = max(1, int(cfg.same_scene_repeats))
        traj = self._trajectories(gen, n, length, repeats=repeats)
        objs = self._objects(gen, n, length, vh, vw)
        groups = -(-n // repeats)
        scenes = torch.randint(0, self.num_scenes, (groups,), generator=gen).repeat_interleave(repeats)[:n]
        gap = torch.randint(gmin, gmax + 1, (n,), generator=gen)
        late = torch.rand(n, generator=gen) < 0.5  # which view is the later one
        start1 = torch.where(late, gap, torch.zeros_like(gap))
        start2 = torch.where(late, torch.zeros_like(gap), gap)
        steps = torch.arange(T) * stride
        b1, b2 = aug.sample_pair_crops(gen, n, vh, vw, cfg)
        f1, f2 = aug.sample_pair_flips(gen, n, cfg)
        rows = torch.arange(n).repeat_interleave(2)
        times = torch.stack([start1[:, None] + steps, start2[:, None] + steps], 1).view(2 * n, T)
        crops = torch.stack([b1, b2], 1).view(2 * n, 4)
        flips = torch.stack([f1, f2], 1).view(2 * n)
        if cfg.pair_mode == "motion":
            other = (scenes + torch.randint(1, max(2, self.num_scenes), (n,), generator=gen)) % self.num_scenes
            sc = torch.stack([scenes, other], 1).view(2 * n)
            x, n_obj = self._render(gen, traj, objs, sc, rows, times, crops, flips, oh, ow, vh, vw, 1)
        elif cfg.pair_mode == "scene":
            sc = scenes.repeat_interleave(2)
            x, n_obj = self._render(gen, traj, objs, scenes, rows, times, crops, flips, oh, ow, vh, vw, 2)
        else:
            raise ValueError(f"data.pair_mode must be 'scene' or 'motion', got {cfg.pair_mode!r}")
        finish = self._finish_params(gen, 2 * n, T, cfg.augment, times[:, 0].double())
        x = self._finish(gen, x, T, color=cfg.augment, params=finish)
        x = x.view(n, 2, 3, T, oh, ow)
        out: tuple = (x[:, 0].contiguous(), x[:, 1].contiguous())
        if motion_negatives > 0:
            neg, neg_dir = self._motion_negatives(gen, int(motion_negatives), traj, objs, sc, rows, times, crops, flips,
                                                  finish, oh, ow, vh, vw)
            neg = neg.view(n, 2, *neg.shape[1:])
            out += (neg[:, 0].contiguous(), neg[:, 1].contiguous())
        if return_motion:
            m = self._motion(traj, rows, times, crops, flips, oh, ow, n_obj, sc)
            if motion_negatives > 0:
                m["negative_direction"] = neg_dir
            out += ({k: v[0::2] for k, v in m.items()}, {k: v[1::2] for k, v in m.items()})
        return out


def with_overrides(cfg: DataConfig, **kw) -> DataConfig:
    return replace(cfg, **kw)

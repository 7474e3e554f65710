"""Task-performance readouts: what the network's pooled features know about motion.

A linear probe (ridge regression, closed form) from the backbone's pooled features of generated
clips to the generator's ground-truth camera motion: direction as (cos θ, sin θ) and log speed.
Fitted on one set of clips, scored on held-out clips of other scenes/seeds. This is how much
the spatial loss costs the task, in numbers that mean something for motion.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from stdann.data.generator import VideoGenerator
from stdann.models.inputs import normalize
from stdann.runs.trainlog import read_log


@torch.no_grad()
def pooled_features(model, clips: torch.Tensor, batch_size: int = 32) -> np.ndarray:
    model.eval()
    out = []
    for s in range(0, clips.shape[0], batch_size):
        out.append(model(normalize(clips[s : s + batch_size])).float().cpu())
    return torch.cat(out).numpy().astype(np.float64)


def _ridge(x: np.ndarray, y: np.ndarray, lam: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    mu, sd = x.mean(0), x.std(0) + 1e-8
    z = (x - mu) / sd
    w = np.linalg.solve(z.T @ z + lam * len(z) * np.eye(z.shape[1]), z.T @ (y - y.mean(0)))
    return w, mu, sd


def _choose_lambda(x: np.ndarray, y: np.ndarray, grid=(1e-3, 1e-2, 1e-1, 1.0, 10.0)) -> float:
    """Ridge strength by a validation split inside the training set (the test set is untouched)."""
    n = len(x)
    cut = int(0.75 * n)
    best, best_err = grid[0], np.inf
    for lam in grid:
        w, mu, sd = _ridge(x[:cut], y[:cut], lam)
        err = float((((x[cut:] - mu) / sd @ w + y[:cut].mean(0) - y[cut:]) ** 2).mean())
        if err < best_err:
            best, best_err = lam, err
    return best


def linear_probe_motion(model, data_cfg, n_train: int = 512, n_test: int = 256, device="cpu", lam: float | None = None,
                        seed: int = 0) -> dict[str, float]:
    """Held-out R² of direction (cos, sin) and log-speed, and the median absolute direction error."""
    gen = VideoGenerator(data_cfg, device=device)

    def draw(n, s):
        xs, dirs, speeds = [], [], []
        for start in range(0, n, 64):
            k = min(64, n - start)
            x, m = gen.generate(k, seed=s + start, return_motion=True)
            xs.append(pooled_features(model, x))
            dirs.append(torch.as_tensor(m["direction"]).double().cpu().numpy().reshape(-1))
            speeds.append(torch.as_tensor(m["speed"]).double().cpu().numpy().reshape(-1))
        return np.concatenate(xs), np.concatenate(dirs), np.concatenate(speeds)

    xtr, dtr, str_ = draw(n_train, 900_000 + 10_000 * seed)
    xte, dte, ste = draw(n_test, 950_000 + 10_000 * seed)

    def targets(d, s):
        r = np.deg2rad(d)
        return np.stack([np.cos(r), np.sin(r), np.log(np.maximum(s, 1e-3))], 1)

    ytr, yte = targets(dtr, str_), targets(dte, ste)
    lam = _choose_lambda(xtr, ytr) if lam is None else lam
    w, mu, sd = _ridge(xtr, ytr, lam)
    pred = ((xte - mu) / sd) @ w + ytr.mean(0)

    def r2(p, y):
        return float(1 - ((p - y) ** 2).sum() / max(((y - y.mean(0)) ** 2).sum(), 1e-12))

    ang_err = np.abs((np.rad2deg(np.arctan2(pred[:, 1], pred[:, 0])) - dte + 180) % 360 - 180)
    return {
        "direction_r2": r2(pred[:, :2], yte[:, :2]),
        "speed_r2": r2(pred[:, 2:], yte[:, 2:]),
        "direction_error_deg_median": float(np.median(ang_err)),
        "chance_direction_error_deg": 90.0,
        "ridge_lambda": float(lam),
        "n_train": int(n_train),
        "n_test": int(n_test),
    }


def final_task_loss(run_dir) -> float | None:
    """The last logged InfoNCE of a run (``logs/train.csv``)."""
    rows = read_log(run_dir)
    vals = [r["loss_task"] for r in rows if "loss_task" in r and math.isfinite(r["loss_task"])]
    return vals[-1] if vals else None

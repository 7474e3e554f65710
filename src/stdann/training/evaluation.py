"""Held-out instance discrimination: has the contrastive task been learned?

The training loss alone is a poor witness. Early in training the queue holds keys of older,
quickly changing encoders, so the current positive beats them for the wrong reason (it is simply
*fresher*), and the training top-1 accuracy can read 0.4–0.9 while the network has learned
nothing; later, keys of the same scene make top-1 against the queue small even when the network
discriminates well. The measure here has neither artefact: a fixed set of ``n`` held-out positive
pairs (never used for training), both encoders in evaluation mode (BatchNorm running statistics),
every query compared with the ``n`` keys of the same set:

* ``top1`` = fraction of queries whose own key is the most similar of the ``n`` (chance 1/n);
* ``top5`` = fraction whose own key is among the five most similar;
* ``infonce`` = cross-entropy of the similarities / τ with the own key as the target (chance
  ln n), i.e. the InfoNCE loss with the other ``n − 1`` held-out keys as negatives;
* ``positive_cosine`` and ``negative_cosine`` = mean cosine similarity of q with its own key and
  with the other keys.

The held-out pairs come from the same source as the training pairs, drawn with a seed stream that
training never uses (``HELDOUT_SALT``).

For the supervised positive control (``train.objective``) the check is its own task on held-out
clips (:func:`heldout_classification`): direction top-1 (chance 1/bins), the cross-entropy (chance
Σ ln(classes)) and, with speed bins, the speed top-1.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

HELDOUT_SALT = 0x4E1D0


def heldout_seed(data_seed: int, train_seed: int) -> int:
    """Seed of the held-out pair set: disjoint from the training stream (which uses the step)."""
    return (int(data_seed) * 1_000_003 + int(train_seed) * 7919 + HELDOUT_SALT) % (2**31 - 1)


def eager(encoder):
    """The encoder's forward without ``torch.compile`` (kept by ``compile_encoders``): the checks run
    in eval mode at their own batch size, which would make the compiled training forward recompile."""
    return encoder.__dict__.get("eager_forward", encoder)


@torch.no_grad()
def _embed(encoder, clips: torch.Tensor, batch_size: int) -> torch.Tensor:
    fwd = eager(encoder)
    out = [F.normalize(fwd(clips[i : i + batch_size])[0].float(), dim=1) for i in range(0, clips.shape[0], batch_size)]
    return torch.cat(out, dim=0)


@torch.no_grad()
def similarity_metrics(q: torch.Tensor, k: torch.Tensor, temperature: float) -> dict[str, float]:
    """Instance-discrimination metrics of L2-normalised queries ``q`` (n, d) against keys ``k``
    (n, d), row i of each being a positive pair (see the module docstring)."""
    if q.shape != k.shape or q.ndim != 2 or q.shape[0] < 2:
        raise ValueError(f"q and k must both be (n >= 2, d), got {tuple(q.shape)} and {tuple(k.shape)}")
    n = q.shape[0]
    sim = q.double() @ k.double().T
    target = torch.arange(n)
    logits = sim / float(temperature)
    # ties count against the query (a collapsed encoder must not score top-1 = 1)
    ranks = (sim >= sim.diagonal()[:, None]).sum(dim=1) - 1  # 0 = own key strictly the most similar
    off = ~torch.eye(n, dtype=torch.bool)
    return {
        "n_pairs": int(n),
        "top1": float((ranks == 0).double().mean()),
        "top5": float((ranks < 5).double().mean()),
        "infonce": float(F.cross_entropy(logits, target)),
        "chance_infonce": math.log(n),
        "chance_top1": 1.0 / n,
        "positive_cosine": float(sim.diagonal().mean()),
        "negative_cosine": float(sim[off].mean()),
    }


@torch.no_grad()
def instance_discrimination(model, x1: torch.Tensor, x2: torch.Tensor, batch_size: int = 64) -> dict[str, float]:
    """Held-out metrics of a :class:`~stdann.models.moco.MoCo` on model-ready clips ``x1``, ``x2``
    (row i = a positive pair). Queries from the query encoder, keys from the key encoder, both in
    eval mode; the model's train/eval state is restored afterwards."""
    was_training = model.training
    model.eval()
    try:
        q = _embed(model.encoder_q, x1, batch_size)
        k = _embed(model.encoder_k, x2, batch_size)
    finally:
        model.train(was_training)
    return similarity_metrics(q.cpu(), k.cpu(), model.temperature)


@torch.no_grad()
def heldout_classification(model, clips: torch.Tensor, targets: torch.Tensor, batch_size: int = 64) -> dict[str, float]:
    """Held-out metrics of a :class:`~stdann.models.motion_classifier.MotionClassifier` on model-ready
    ``clips`` with their motion bins ``targets`` (n, heads), in eval mode (BatchNorm running
    statistics); the model's train/eval state is restored afterwards."""
    was_training = model.training
    model.eval()
    try:
        fwd = eager(model.encoder_q)
        logits = torch.cat([fwd(clips[i : i + batch_size])[0].float()
                            for i in range(0, clips.shape[0], batch_size)])
    finally:
        model.train(was_training)
    loss, hits, _ = model.task(logits, targets)
    out = {"n_clips": int(clips.shape[0]), "top1": float(hits[:, 0].mean()), "chance_top1": 1.0 / model.classes[0],
           "loss": float(loss), "chance_loss": model.chance_loss()}
    if len(model.classes) > 1:
        out.update(speed_top1=float(hits[:, 1].mean()), chance_speed_top1=1.0 / model.classes[1])
    return out

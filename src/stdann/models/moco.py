"""Momentum Contrast (He et al. 2020; MoCo v2: Chen et al. 2020) for video clips.

Query encoder = 3D ResNet-18 + 2-layer MLP head; key encoder = its exponential moving average;
a queue of K negatives; InfoNCE over [positive, queue] at temperature τ.

By default the loss is symmetrised: each view is a query once and a key once, so the spatial loss
sees the block outputs of every clip of both views. ``symmetric=False`` is MoCo v2 as published
(view 1 the query, view 2 its key): one query and one key pass per pair instead of two each, half
the compute, and the spatial loss sees the query view's clips only. Each view goes through the query
encoder in its own pass (BatchNorm statistics never mix a clip with its positive), and the key
batch is shuffled before the key encoder — across ranks under DDP (shuffle-BN), or split into
``bn_groups`` groups on one device — so that BatchNorm cannot leak which key is the positive.

Option ``reverse_negatives`` (a motion-dependent variant, off in the paper's recipe): each query
also meets the *time-reversed* version of its positive as a hard negative. The reversed clip has
exactly the positive's appearance and the opposite motion, so the only way to tell them apart
is to encode the direction of motion (cf. arrow-of-time objectives, Wei et al. 2018).

Option ``motion_negatives`` (``moco.motion_negatives = k``): the data source also renders, for
every clip, k clips of the same scene through the same place at the same time with the same crop,
colour and objects, but with the camera moving in other directions. Each query meets the k
negatives of its positive key as hard negatives: they share everything with the positive except
its motion. They go through the key encoder together with the positive keys (one shuffle-BN pass),
so BatchNorm statistics cannot tell a negative from a positive key. Without them, MoCo's negatives
are only the queue's: clips of one batch are never negatives of each other, so no negative ever
differs from a positive by motion alone.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from stdann import distributed
from stdann.devices import upload
from stdann.models.r3d import VideoResNet, build_backbone


def _autocast_dtype(x: torch.Tensor) -> torch.dtype | None:
    """bf16 when autocast will round ``x`` to bf16 at the key encoder's first convolution (then the
    clips can travel between ranks in bf16 at no cost in accuracy), else None."""
    kind = x.device.type
    if kind in ("cuda", "cpu") and torch.is_autocast_enabled(kind) and torch.get_autocast_dtype(kind) == torch.bfloat16:
        return torch.bfloat16
    return None


class Encoder(nn.Module):
    """Backbone + MLP projection head."""

    def __init__(self, backbone: VideoResNet, hidden_dim: int, dim: int, head_bn: bool = False):
        super().__init__()
        self.backbone = backbone
        feat = backbone.num_features
        if head_bn:  # SimCLR / MoCo v3 style: BN after both layers, the last one without affine
            self.head = nn.Sequential(nn.Linear(feat, hidden_dim, bias=False), nn.BatchNorm1d(hidden_dim),
                                      nn.ReLU(inplace=True), nn.Linear(hidden_dim, dim, bias=False),
                                      nn.BatchNorm1d(dim, affine=False))
        else:  # MoCo v2
            self.head = nn.Sequential(nn.Linear(feat, hidden_dim), nn.ReLU(inplace=True), nn.Linear(hidden_dim, dim))

    def forward(self, x: torch.Tensor, blocks: tuple[str, ...] = (), tap=None):
        """(embedding before normalisation, {block: output}); one code path with or without blocks,
        so that one compiled graph covers contrastive-only and topographic training alike."""
        pooled, outs = self.backbone.forward_blocks(x, blocks, tap=tap)
        return self.head(pooled), outs


class MoCo(nn.Module):
    def __init__(
        self,
        width: int = 64,
        dim: int = 128,
        hidden_dim: int = 512,
        queue_size: int = 65536,
        momentum: float = 0.999,
        temperature: float = 0.2,
        bn_groups: int = 2,
        shuffle_bn: bool = True,
        reverse_negatives: bool = False,
        head_bn: bool = False,
        symmetric: bool = True,
        arch: str = "r3d_18",
        encoder: Encoder | None = None,
    ):
        """``encoder``: the query encoder (a backbone with a ``num_features`` attribute and its
        projection head, :class:`Encoder`), as in MoCo's builder; by default ``model.arch`` at
        ``width`` from :func:`stdann.models.r3d.build_backbone` with an MLP head of ``hidden_dim`` →
        ``dim``. The key encoder starts as its copy."""
        super().__init__()
        self.symmetric = bool(symmetric)
        self.reverse_negatives = reverse_negatives
        self.momentum = momentum
        self.temperature = temperature
        self.bn_groups = max(1, int(bn_groups))
        self.shuffle_bn = shuffle_bn
        self.encoder_q = encoder if encoder is not None else Encoder(build_backbone(arch, width), hidden_dim, dim, head_bn)
        self.encoder_k = copy.deepcopy(self.encoder_q)
        for p in self.encoder_k.parameters():
            p.requires_grad_(False)
        self.register_buffer("queue", F.normalize(torch.randn(dim, queue_size), dim=0))
        self.register_buffer("queue_ptr", torch.zeros((), dtype=torch.long))

    @property
    def views(self) -> int:
        """Views of each pair that are queries (and keys) per step: 2 symmetrised, 1 as in MoCo v2."""
        return 2 if self.symmetric else 1

    @property
    def backbone(self) -> VideoResNet:
        return self.encoder_q.backbone

    @torch.no_grad()
    def momentum_update(self) -> None:
        """key ← m·key + (1 − m)·query, as one fused op over all parameters."""
        qp = [p.detach() for p in self.encoder_q.parameters()]
        kp = [p for p in self.encoder_k.parameters()]
        torch._foreach_mul_(kp, self.momentum)
        torch._foreach_add_(kp, qp, alpha=1.0 - self.momentum)

    @torch.no_grad()
    def enqueue(self, keys: torch.Tensor) -> None:
        keys = distributed.all_gather_cat(keys)
        n, k = keys.shape[0], self.queue.shape[1]
        if k % n:
            raise ValueError(
                f"queue size {k} must be a multiple of the keys enqueued per step ({n} = global batch x "
                f"{self.views} view(s) that are keys); "
                f"set moco.queue_size to a multiple of {n}"
            )
        # Index arithmetic on the device: no host synchronisation in the hot loop.
        idx = (self.queue_ptr + torch.arange(n, device=keys.device)) % k
        self.queue[:, idx] = keys.T.to(self.queue.dtype)
        self.queue_ptr.copy_((self.queue_ptr + n) % k)

    @torch.no_grad()
    def _keys(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        if not self.shuffle_bn:
            return F.normalize(self.encoder_k(x)[0].float(), dim=1)
        if distributed.is_dist():
            xs, perm = distributed.shuffle_across_ranks(x, generator, wire_dtype=_autocast_dtype(x))
            return F.normalize(distributed.unshuffle_across_ranks(self.encoder_k(xs)[0].float(), perm), dim=1)
        perm = upload(torch.randperm(x.shape[0], generator=generator), x.device)
        groups = torch.chunk(x[perm], min(self.bn_groups, x.shape[0]), dim=0)
        k = torch.cat([self.encoder_k(g)[0] for g in groups], dim=0).float()
        return F.normalize(k[torch.argsort(perm)], dim=1)

    def _keys_with(self, x: torch.Tensor, negatives: torch.Tensor | None, generator: torch.Generator):
        """Keys of clips ``x`` (B, ...) and of their hard negatives (B, k, ...) in one key-encoder
        pass: ((B, dim), (B, k, dim) or None)."""
        if negatives is None:
            return self._keys(x, generator), None
        b, k = negatives.shape[:2]
        keys = self._keys(torch.cat([x, negatives.flatten(0, 1)], dim=0), generator)
        return keys[:b], keys[b:].view(b, k, -1)

    def info_nce(
        self, q: torch.Tensor, k: torch.Tensor, hard_neg: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """InfoNCE of queries ``q`` against their positives ``k`` and the queue, plus hard negatives
        of each query when given (``hard_neg`` (B, dim): one per query; (B, m, dim): m per query,
        L2-normalised), placed after the positive; also the top-1 accuracy.

        Always float32, autocast off: under bf16 autocast ``q @ queue`` would round the similarities
        of all K negatives to bf16 (about 0.01 in a logit after dividing by τ = 0.2)."""
        with torch.autocast(device_type=q.device.type, enabled=False):
            q = F.normalize(q.float(), dim=1)
            k = k.float()
            pos = (q * k).sum(dim=1, keepdim=True)
            neg = q @ self.queue.clone().detach().float()
            if hard_neg is None:
                parts = [pos, neg]
            else:
                hard = hard_neg.float() if hard_neg.dim() == 3 else hard_neg.float()[:, None, :]
                parts = [pos, torch.einsum("bd,bmd->bm", q, hard), neg]
            logits = torch.cat(parts, dim=1) / self.temperature
            labels = torch.zeros(q.shape[0], dtype=torch.long, device=q.device)
            loss = F.cross_entropy(logits, labels)
            acc = (logits.argmax(dim=1) == 0).float().mean()
        return loss, acc

    def hard_negatives_per_query(self, motion_negatives: int = 0) -> int:
        """Negatives each query meets besides the queue (time-reversed and motion-only)."""
        return int(self.reverse_negatives) + int(motion_negatives)

    def forward(self, x1: torch.Tensor, x2: torch.Tensor, blocks: tuple[str, ...] = (), generator: torch.Generator | None = None,
                tap=None, task_grad: bool = True, negatives: tuple[torch.Tensor, torch.Tensor] | None = None):
        """Returns ``{"loss": InfoNCE, "acc": top-1, "blocks": {name: (out_view1, out_view2)}, "keys": (views·B, dim)}``;
        each block output is (B, C, T, H, W).

        ``negatives`` = (neg1, neg2), each (B, k, 3, T, H, W): the motion-only negatives of each view
        (module docstring); a query of view 1 meets those of view 2, its positive's, and vice versa.

        ``tap`` is passed to :meth:`VideoResNet.forward_blocks` for both views (view 1 first).
        ``task_grad=False`` (the spatial-loss-only control) computes the InfoNCE loss for the log
        only: it is detached from the network, so that backward never expects gradients for the
        projection head (under DDP those parameters are then simply unused).
        The queue is not updated here; call :meth:`enqueue` with ``out["keys"]`` after the
        optimiser step (and :meth:`momentum_update` before the next forward).
        """
        if generator is None:
            generator = torch.Generator().manual_seed(0)
        if not self.symmetric:
            return self._forward_asymmetric(x1, x2, blocks, generator, tap, task_grad, negatives)
        q1, b1 = self.encoder_q(x1, blocks, tap)
        q2, b2 = self.encoder_q(x2, blocks, tap)
        if not task_grad:
            q1, q2 = q1.detach(), q2.detach()
        n1, n2 = negatives if negatives is not None else (None, None)
        with torch.no_grad():
            k1, h1 = self._keys_with(x1, n1, generator)
            k2, h2 = self._keys_with(x2, n2, generator)
            if self.reverse_negatives:
                r1 = self._keys(x1.flip(2), generator)[:, None]
                r2 = self._keys(x2.flip(2), generator)[:, None]
                h1 = r1 if h1 is None else torch.cat([r1, h1], dim=1)
                h2 = r2 if h2 is None else torch.cat([r2, h2], dim=1)
        l1, a1 = self.info_nce(q1, k2, h2)
        l2, a2 = self.info_nce(q2, k1, h1)
        # Block outputs stay per view, (view-1 output, view-2 output): the spatial loss gathers its
        # few sampled units from each, so the full outputs are never concatenated (a copy of every
        # block of both views, several GB per step at paper scale).
        outs = {name: (b1[name], b2[name]) for name in b1}
        return {"loss": 0.5 * (l1 + l2), "acc": 0.5 * (a1 + a2), "blocks": outs, "keys": torch.cat([k1, k2], dim=0)}

    def _forward_asymmetric(self, x1, x2, blocks, generator, tap, task_grad, negatives):
        """MoCo v2 as published: view 1 is the query, view 2 its key (and the source of its hard
        negatives); block outputs are view 1's only, as a 1-tuple."""
        q1, b1 = self.encoder_q(x1, blocks, tap)
        if not task_grad:
            q1 = q1.detach()
        with torch.no_grad():
            k2, h2 = self._keys_with(x2, negatives[1] if negatives is not None else None, generator)
            if self.reverse_negatives:
                r2 = self._keys(x2.flip(2), generator)[:, None]
                h2 = r2 if h2 is None else torch.cat([r2, h2], dim=1)
        loss, acc = self.info_nce(q1, k2, h2)
        return {"loss": loss, "acc": acc, "blocks": {name: (b1[name],) for name in b1}, "keys": k2}


def build_moco(cfg) -> MoCo:
    """MoCo from a :class:`stdann.config.Config`."""
    m = cfg.moco
    return MoCo(
        width=cfg.model.width,
        dim=m.dim,
        hidden_dim=m.hidden_dim,
        queue_size=m.queue_size,
        momentum=m.momentum,
        temperature=m.temperature,
        bn_groups=m.bn_groups,
        shuffle_bn=m.shuffle_bn,
        reverse_negatives=m.reverse_negatives,
        head_bn=m.head_bn,
        symmetric=m.symmetric,
        arch=cfg.model.arch,
    )

"""Hierarchical contrastive pre-training over labelled images, in the shape of the SSL methods.

Like the methods of :mod:`benthicnet_hf.ssl`, a method has ``.encoder`` (a plain timm model,
``num_classes=0``, exported with :func:`benthicnet_hf.ssl.export.export_encoder` and loaded by the
fine-tuning script like any SSL encoder) and ``default_optimizer``; its ``forward`` also takes the
batch's ``labels``/``label_mask`` ``(batch, N)``::

    method = build_contrastive_method("himulcone", "resnet50", hierarchy, heads=["substrate"])
    loss = method(view1, view2, labels, label_mask)

Per tree head the per-level label ids come from :class:`~.levels.LevelLabeller`; the loss is the
mean over the heads that have a usable level in the batch.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from ..hierarchy import Hierarchy
from .feature_masks import AttentionFeatureMasks, GaussianMixtureFeatureMasks
from .hmlc import hmlc_loss
from .levels import LevelLabeller

#: method name → (loss type, feature mask kind)
CONTRASTIVE_METHODS: dict[str, tuple[str, str | None]] = {
    "himulcon": ("himulcon", None),
    "hicone": ("hicone", None),
    "himulcone": ("himulcone", None),
    "g_hmlc": ("himulcone", "gmm"),
    "a_hmlc": ("himulcone", "attention"),
}


def gather_rows(x: Tensor) -> Tensor:
    """``(rows, ...)`` → ``(world_size * rows, ...)``: every process's rows, in rank order.

    The identity in a single process. Every process must call it with the same shape (the training
    loader drops its last partial batch).
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return x
    out = [torch.empty_like(x) for _ in range(dist.get_world_size())]
    dist.all_gather(out, x.contiguous())
    return torch.cat(out)


class HierarchicalContrastive(nn.Module):
    """Encoder + projector + (optional) level feature masks, trained with an HMLC loss.

    Args:
        method: a key of :data:`CONTRASTIVE_METHODS`.
        encoder: a timm name (built ``pretrained=False, num_classes=0``) or a module with
            ``num_features``.
        hierarchy: the label hierarchy of ``labels``.
        heads: tree heads to contrast on (default: every tree head).
        proj_hidden_dim, proj_dim: projector widths (the authors use a 2-layer MLP to 128).
        temperature: ``τ`` (authors' default 0.1 in their training script).
        on_multi: ``"unknown"`` (default) or ``"error"`` for rows with two labels at one depth.
        image_size, encoder_kwargs: passed to the timm encoder.
        gmm_refit_every, gmm_fit: G-HMLC mixture options (:class:`.feature_masks.GaussianMixtureFeatureMasks`):
            ``"per_vector"`` (default, a mixture over each embedding vector's entries) or
            ``"batch_fisher"`` (shared masks refitted every ``gmm_refit_every`` steps).
    """

    default_optimizer = {"name": "sgd", "lr": 0.1, "weight_decay": 1e-4}

    def __init__(self, method: str, encoder: str | nn.Module, hierarchy: Hierarchy, *,
                 heads: Sequence[str] | None = None, proj_hidden_dim: int = 2048, proj_dim: int = 128,
                 temperature: float = 0.1, on_multi: str = "unknown", image_size: int | None = None,
                 encoder_kwargs: dict[str, Any] | None = None, gmm_refit_every: int = 50,
                 gmm_fit: str = "per_vector") -> None:
        super().__init__()
        if method not in CONTRASTIVE_METHODS:
            raise ValueError(f"unknown hierarchical contrastive method {method!r}; choose one of {sorted(CONTRASTIVE_METHODS)}")
        self.method = method
        self.loss_type, mask_kind = CONTRASTIVE_METHODS[method]
        if isinstance(encoder, str):
            from ..ssl.encoder import build_timm_encoder

            encoder = build_timm_encoder(encoder, image_size, **(encoder_kwargs or {}))
        self.encoder = encoder
        d = int(encoder.num_features)
        self.projector = nn.Sequential(nn.Linear(d, proj_hidden_dim), nn.ReLU(inplace=True),
                                       nn.Linear(proj_hidden_dim, proj_dim))
        names = list(heads) if heads is not None else [h.name for h in hierarchy.heads if h.kind != "flat"]
        if not names:
            raise ValueError("hierarchical contrastive pre-training needs at least one tree head; "
                             f"the hierarchy has {[(h.name, h.kind) for h in hierarchy.heads]}")
        self.head_names = names
        self.labellers = [LevelLabeller(hierarchy, n, on_multi) for n in names]
        self.temperature = temperature
        masks: dict[str, nn.Module] = {}
        for name, lab in zip(names, self.labellers):
            if mask_kind == "gmm":
                masks[name] = GaussianMixtureFeatureMasks(proj_dim, lab.num_levels, gmm_refit_every, fit=gmm_fit)
            elif mask_kind == "attention":
                masks[name] = AttentionFeatureMasks(proj_dim, lab.num_levels)
        self.feature_masks = nn.ModuleDict(masks)

    def embed(self, images: Tensor) -> Tensor:
        """``(batch, 3, H, W)`` → ``(batch, proj_dim)`` L2-normalised projections."""
        return F.normalize(self.projector(self.encoder(images)), dim=1)

    def forward(self, view1: Tensor, view2: Tensor, labels: Tensor, label_mask: Tensor) -> Tensor:
        """Two views ``(batch, 3, H, W)`` and ``labels``/``label_mask`` ``(batch, N)`` → scalar loss."""
        z = self.embed(torch.cat([view1, view2]))
        z = torch.stack(z.chunk(2), dim=1)  # (batch, 2, proj_dim)
        losses = []
        for name, labeller in zip(self.head_names, self.labellers):
            ids = labeller(labels, label_mask)
            masker = self.feature_masks[name] if name in self.feature_masks else None
            if isinstance(masker, GaussianMixtureFeatureMasks) and masker.refits_on_batches and self.training:
                # refit on the global batch, before any rank-dependent branch: every process then
                # takes part in the gather and fits the same masks
                emb, lab = z.detach().flatten(0, 1), ids.repeat_interleave(2, dim=0)
                if int(masker.steps) % masker.refit_every == 0:  # same step count on every process
                    emb, lab = gather_rows(emb), gather_rows(lab)
                masker.maybe_refit(emb, lab)
            if not bool((ids >= 0).any()):
                continue
            feats = z if masker is None else masker(z)
            losses.append(hmlc_loss(feats, ids, self.loss_type, self.temperature))
        if not losses:
            return z.sum() * 0.0
        return torch.stack(losses).mean()


def build_contrastive_method(name: str, encoder: str | nn.Module, hierarchy: Hierarchy, **kwargs: Any) -> HierarchicalContrastive:
    """``HierarchicalContrastive(name, encoder, hierarchy, **kwargs)`` with name normalisation
    (``"G-HMLC"`` → ``"g_hmlc"``)."""
    return HierarchicalContrastive(name.lower().replace("-", "_"), encoder, hierarchy, **kwargs)

"""Joint image–label order embeddings (Dhall's ETHEC study, after Vendrov et al. 2016).

The head's MLP maps an image to a point ``x`` of ``ℝᵈ`` (``config.embedding_dim``) and every label
of the taxonomy has a trainable point ``l`` of the same space (:class:`LabelEnergy`, the module that
ends the head: the label points are weights of the model, saved with it). The image is the most
specific concept: it is "below" every label of its path, and the order-embedding energy
(:func:`benthicnet_hf.embeddings.order_energy`) of "label ``l`` entails image ``x``" is

    ``E(l, x) = ||max(0, l − x)||²``   (0 when ``x`` dominates ``l`` coordinatewise).

The head outputs ``logits = −E`` ``(batch, n_nodes)``, so the rest of the model (temperatures,
the NaN check, the criterion) sees the usual layout. :class:`JointEmbeddingOutputType` turns them into:

- probabilities ``p = exp(−MCM(−E) / τ)``: the max-constraint over descendants on ``−E`` (a parent's
  energy is the least of its descendants' and its own), then ``exp(−E/τ)``, monotone, so no child
  scores above its parent; ``τ = γ / (2 ln 2)`` puts ``p = 0.5`` at ``E = γ/2``, halfway between a
  positive's target (0) and a negative's margin ``γ``. Ranking by ``p`` within a level is ranking by
  the least-violating energy (the study's classification rule, for labels whose energy the
  constraint leaves alone);
- the loss of the study: ``E`` for a positive label and ``max(0, γ − E)`` for a negative one, per
  sample summed over its known bits (unknown bits count nowhere) and divided by its number of known
  positives (at least 1); node weights multiply every bit of their node.

Only order embeddings, which live in Euclidean space and train with the model's AdamW. Hyperbolic
entailment cones need a Riemannian optimiser (:mod:`benthicnet_hf.embeddings.label_embedding`) and
are label-only for now. Flat taxonomies keep per-node logits and sigmoid + BCE, as under every type.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from ..constraint import max_constraint
from ..hierarchy import Hierarchy, Taxonomy
from ..losses import known_targets
from .base import OutputType

#: Margin ``γ`` of the negative labels' hinge ``max(0, γ − E)``.
MARGIN = 1.0
#: Temperature of ``p = exp(−E/τ)``: ``p = 0.5`` at ``E = γ/2``.
TEMPERATURE = MARGIN / (2.0 * math.log(2.0))
#: Standard deviation of the label points at initialisation.
INIT_STD = 0.5


class LabelEnergy(nn.Module):
    """The label points of one taxonomy, ``(n_nodes, d)``, and the energies of images against them.

    ``forward``: image embeddings ``(..., d)`` → ``(..., n_nodes)`` logits ``−E(label, image)``.
    """

    def __init__(self, num_nodes: int, dim: int) -> None:
        super().__init__()
        if num_nodes < 1 or dim < 1:
            raise ValueError(f"LabelEnergy needs num_nodes >= 1 and dim >= 1, got {num_nodes} and {dim}")
        #: std of the label points at (re)initialisation (``classifier_heads.init_head_layer``)
        self.init_std = INIT_STD
        self.label_embeddings = nn.Parameter(torch.randn(num_nodes, dim) * INIT_STD)

    def energies(self, images: Tensor) -> Tensor:
        """``E(label, image)`` for images ``(..., d)`` → ``(..., n_nodes)``, non-negative."""
        # imported here: the embeddings package loads geoopt (seconds, a warning), which only
        # joint-embedding models need, not every import of the output types
        from ..embeddings.energies import order_energy

        n, d = self.label_embeddings.shape
        if images.shape[-1] != d:
            raise ValueError(f"image embeddings must end in dimension {d}, got shape {tuple(images.shape)}")
        lead = images.shape[:-1]
        x = images.reshape(-1, 1, d).expand(-1, n, d)
        labels = self.label_embeddings.to(images.dtype).unsqueeze(0).expand_as(x)
        # every (image, label) pair as one row of order_energy's (P, d) inputs: label general, image specific
        return order_energy(labels.reshape(-1, d), x.reshape(-1, d)).view(*lead, n)

    def forward(self, images: Tensor) -> Tensor:
        return -self.energies(images)


class JointEmbeddingOutputType(OutputType):
    """Order embeddings of images and labels: ``logits = −E`` in, coherent ``exp(−E/τ)`` out,
    positive energy + negative margin loss on known bits (module docstring). Trees and DAGs."""

    name = "joint_embedding"

    def __init__(self, head: Taxonomy) -> None:
        super().__init__(head)
        self._pairs_np = Hierarchy((head,)).ancestor_pairs
        self._pairs_by_device: dict[torch.device, Tensor] = {}

    def _pairs(self, ref: Tensor) -> Tensor:
        if ref.device not in self._pairs_by_device:
            self._pairs_by_device[ref.device] = torch.as_tensor(self._pairs_np, dtype=torch.long, device=ref.device)
        return self._pairs_by_device[ref.device]

    def probabilities(self, logits: Tensor) -> Tensor:
        """``(batch, n)`` logits ``−E`` → ``(batch, n)`` ``exp(MCM(−E) / τ)``, in ``(0, 1]``."""
        return torch.exp(max_constraint(logits.clamp_max(0.0), self._pairs(logits)) / TEMPERATURE)

    def loss(self, logits: Tensor, targets: Tensor, mask: Tensor, node_weights: Tensor | None = None) -> Tensor:
        """``(batch,)``: ``(Σ E over known positive bits + Σ max(0, γ − E) over known negative bits)
        / max(1, number of known positive bits)``."""
        targets = known_targets(targets, mask)
        energy = (-logits).clamp_min(0.0)
        known = mask > 0.5
        pos = (known & (targets > 0.5)).to(energy.dtype)
        neg = (known & (targets <= 0.5)).to(energy.dtype)
        hinge = torch.clamp(MARGIN - energy, min=0.0)
        if node_weights is not None:
            energy, hinge = energy * node_weights.to(energy.dtype), hinge * node_weights.to(energy.dtype)
        # the study's sum over pairs, per positive: a mean over the negatives instead lets the few path
        # bits win, the image grows to dominate every label point, and the negatives' hinge goes dead
        return ((energy * pos).sum(1) + (hinge * neg).sum(1)) / pos.sum(1).clamp_min(1)

    def labelled(self, targets: Tensor, mask: Tensor) -> Tensor:
        return (mask > 0.5).any(1)


def head_output(head: Taxonomy, embedding_dim: int) -> tuple[int, nn.Module | None]:
    """What ends a head's MLP for ``head``: ``(embedding_dim, LabelEnergy)`` for a tree or DAG
    taxonomy, ``(n_nodes, None)`` (plain logits) for a flat one."""
    if head.kind == "flat":
        return len(head.nodes), None
    return embedding_dim, LabelEnergy(len(head.nodes), embedding_dim)

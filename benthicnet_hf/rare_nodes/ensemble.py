"""Ensembles for the focal term and for inference (Xu et al. 2026, arXiv 2602.08986, Sec. 3.2).

- :class:`StackedLinear` / :class:`EnsembleMLP`: ``K`` independent members computed in one batched
  ``einsum`` (no loop over members). Over a shared encoder's features they are the paper's "K heads
  on one encoder"; on raw inputs (HMC tabular data) an :class:`EnsembleMLP` is a full ensemble of
  ``K`` C-HMCNN networks.
- :class:`MCDropoutEnsemble`: one network evaluated ``K`` times with dropout on (Gal & Ghahramani
  2016) — the paper's cheaper "dropout ensemble"; the ``K`` passes run as one ``(K·B)`` batch.
- :func:`ensemble_predict`: coherent probabilities per member (max-constraint, then sigmoid), their
  mean (a mean of coherent vectors is coherent), and a per-node uncertainty.
"""

from __future__ import annotations

import contextlib
import math
from typing import Iterator, NamedTuple

import torch
from torch import Tensor, nn

from ..constraint import max_constraint
from .uncertainty import ensemble_uncertainty


class StackedLinear(nn.Module):
    """``K`` independent linear layers: ``(B, in)`` or ``(K, B, in)`` → ``(K, B, out)``."""

    def __init__(self, in_features: int, out_features: int, num_members: int) -> None:
        super().__init__()
        if num_members < 1:
            raise ValueError(f"num_members must be >= 1, got {num_members}")
        self.in_features, self.out_features, self.num_members = in_features, out_features, num_members
        self.weight = nn.Parameter(torch.empty(num_members, out_features, in_features))
        self.bias = nn.Parameter(torch.empty(num_members, out_features))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # nn.Linear's default init, member by member (each member is an independent draw)
        bound = 1 / math.sqrt(self.in_features)
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() == 2:
            out = torch.einsum("bi,koi->kbo", x, self.weight)
        elif x.dim() == 3 and x.shape[0] == self.num_members:
            out = torch.einsum("kbi,koi->kbo", x, self.weight)
        else:
            raise ValueError(
                f"expected (batch, {self.in_features}) or ({self.num_members}, batch, {self.in_features}), "
                f"got {tuple(x.shape)}"
            )
        return out + self.bias.unsqueeze(1)

    def extra_repr(self) -> str:
        return f"members={self.num_members}, in={self.in_features}, out={self.out_features}"


class EnsembleMLP(nn.Module):
    """``K`` independent MLPs (Linear → ReLU → Dropout)×(layers−1) → Linear, batched.

    Args:
        in_features: input width (encoder features or raw inputs).
        hidden: hidden width.
        out_features: number of nodes ``N``.
        num_members: ``K``.
        num_layers: linear layers per member (C-HMCNN uses 3).
        dropout: dropout probability after each hidden layer.

    Forward: ``(B, in)`` → ``(K, B, N)`` logits.
    """

    def __init__(
        self, in_features: int, hidden: int, out_features: int, num_members: int, num_layers: int = 3,
        dropout: float = 0.7,
    ) -> None:
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {num_layers}")
        widths = [in_features] + [hidden] * (num_layers - 1) + [out_features]
        self.layers = nn.ModuleList(StackedLinear(a, b, num_members) for a, b in zip(widths[:-1], widths[1:]))
        self.drop = nn.Dropout(dropout)
        self.num_members = num_members

    def forward(self, x: Tensor) -> Tensor:
        for layer in self.layers[:-1]:
            x = self.drop(torch.relu(layer(x)))
        return self.layers[-1](x)


@contextlib.contextmanager
def dropout_active(module: nn.Module) -> Iterator[None]:
    """Dropout layers of ``module`` in training mode (MC dropout); everything else keeps its mode."""
    drops = [m for m in module.modules() if isinstance(m, nn.modules.dropout._DropoutNd)]
    modes = [m.training for m in drops]
    for m in drops:
        m.train()
    try:
        yield
    finally:
        for m, mode in zip(drops, modes):
            m.train(mode)


class MCDropoutEnsemble(nn.Module):
    """``K`` stochastic passes of one network with its dropout layers active.

    Args:
        model: maps ``(B, ...)`` to ``(B, N)`` logits and contains ``nn.Dropout`` layers.
        num_samples: ``K``.

    Forward: ``(B, ...)`` → ``(K, B, N)``; dropout stays on in ``eval()`` (MC dropout), while
    BatchNorm and other layers follow the module's mode.
    """

    def __init__(self, model: nn.Module, num_samples: int) -> None:
        super().__init__()
        if num_samples < 1:
            raise ValueError(f"num_samples must be >= 1, got {num_samples}")
        self.model, self.num_samples = model, num_samples
        if not any(isinstance(m, nn.modules.dropout._DropoutNd) for m in model.modules()):
            raise ValueError("MCDropoutEnsemble needs a model with dropout layers")

    def forward(self, x: Tensor) -> Tensor:
        k, b = self.num_samples, x.shape[0]
        with dropout_active(self.model):
            out = self.model(x.repeat(k, *([1] * (x.dim() - 1))))  # one (K·B) batch, independent masks
        return out.view(k, b, *out.shape[1:])


class EnsemblePrediction(NamedTuple):
    probs: Tensor  #: (batch, N) mean of the members' coherent probabilities (coherent itself)
    uncertainty: Tensor  #: (batch, N) per-node uncertainty of the coherent member probabilities
    member_probs: Tensor  #: (K, batch, N) coherent probabilities of each member


@torch.no_grad()
def ensemble_predict(member_logits: Tensor, ancestor_pairs: Tensor, uncertainty: str = "bma") -> EnsemblePrediction:
    """Inference with an ensemble.

    Args:
        member_logits: ``(K, batch, N)`` raw logits of the members.
        ancestor_pairs: ``(2, M)`` (ancestor, descendant) pairs incl. self pairs.
        uncertainty: mode of :func:`ensemble_uncertainty` for the per-node uncertainty output.
    """
    if member_logits.dim() != 3:
        raise ValueError(f"member_logits must have shape (members, batch, N), got {tuple(member_logits.shape)}")
    k, b, n = member_logits.shape
    coherent = max_constraint(member_logits.reshape(k * b, n), ancestor_pairs.to(member_logits.device), n)
    member_probs = coherent.sigmoid().view(k, b, n)
    return EnsemblePrediction(member_probs.mean(0), ensemble_uncertainty(member_probs, uncertainty), member_probs)

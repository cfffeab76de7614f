"""The classifier heads of a BenthicNet model: one MLP per hierarchy head over the encoder's pooled
features, optionally ``K`` ensemble members batched as stacked weights.

Remote-code safe: imports only installed packages (``benthicnet_hf.rare_nodes`` for ensembles is
found as a sibling package or the installed one).
"""

from __future__ import annotations

import importlib
from collections import OrderedDict
from typing import Any

import torch
from torch import Tensor, nn
from transformers import initialization as init

from .hierarchy import Hierarchy


def rare_nodes_module(name: str) -> Any:
    """``benthicnet_hf.rare_nodes.<name>``: a sibling package when installed, else the installed package
    (remote code copies only this file's direct relative imports)."""
    try:
        return importlib.import_module(f".rare_nodes.{name}", __package__)
    except ImportError:
        try:
            return importlib.import_module(f"benthicnet_hf.rare_nodes.{name}")
        except ImportError as err:
            raise ImportError(f"this model needs benthicnet_hf.rare_nodes.{name} (ensembles, MC dropout, node "
                              "weights): pip install benthicnet_hf") from err


def head_output(taxonomy: Any, output_type: str, embedding_dim: int) -> tuple[int, nn.Module | None]:
    """What the output type asks of a head: its MLP's output width and a module after the MLP.
    ``(n_nodes, None)`` (logits) for every type but ``"joint_embedding"``, whose tree/DAG heads end in
    ``embedding_dim`` values and the label points (``output_types.joint_embedding.head_output``)."""
    if output_type != "joint_embedding":
        return len(taxonomy.nodes), None
    try:  # a sibling package when installed; as remote code, the installed package
        joint = importlib.import_module(".output_types.joint_embedding", __package__)
    except ImportError:
        joint = importlib.import_module("benthicnet_hf.output_types.joint_embedding")
    return joint.head_output(taxonomy, embedding_dim)


def head_layers(in_features: int, num_nodes: int, hidden_dim: int, dropout: float) -> nn.Sequential:
    """One head: ``BN(affine=False) → Linear(hidden) → ReLU → Dropout → Linear(nodes)`` (reference);
    with ``hidden_dim=0``: ``BN(affine=False) → Dropout → Linear(nodes)``."""
    norm = nn.BatchNorm1d(in_features, affine=False)
    if hidden_dim == 0:
        return nn.Sequential(OrderedDict(norm=norm, drop=nn.Dropout(dropout), fc=nn.Linear(in_features, num_nodes)))
    return nn.Sequential(OrderedDict(
        norm=norm, fc1=nn.Linear(in_features, hidden_dim), act=nn.ReLU(), drop=nn.Dropout(dropout),
        fc2=nn.Linear(hidden_dim, num_nodes),
    ))


class Broadcast(nn.Module):
    """``(B, F)`` → ``(K, B, F)`` (a view): gives every ensemble member its own dropout mask."""

    def __init__(self, num_members: int) -> None:
        super().__init__()
        self.num_members = num_members

    def forward(self, x: Tensor) -> Tensor:
        return x.unsqueeze(0).expand(self.num_members, *x.shape)


def ensemble_head_layers(in_features: int, num_nodes: int, hidden_dim: int, dropout: float,
                         num_members: int) -> nn.Sequential:
    """:func:`head_layers` for ``K`` members at once: ``(B, F)`` → ``(K, B, nodes)``.

    The Linear layers are ``rare_nodes.StackedLinear`` (weights ``(K, out, in)``, one batched
    einsum); the BatchNorm (no affine parameters) sees the same features for every member, so one is
    shared. Parameter names match :func:`head_layers` (``fc1``/``fc2`` or ``fc``).
    """
    stacked = rare_nodes_module("ensemble").StackedLinear
    norm = nn.BatchNorm1d(in_features, affine=False)
    if hidden_dim == 0:
        return nn.Sequential(OrderedDict(
            norm=norm, members=Broadcast(num_members), drop=nn.Dropout(dropout),
            fc=stacked(in_features, num_nodes, num_members),
        ))
    return nn.Sequential(OrderedDict(
        norm=norm, fc1=stacked(in_features, hidden_dim, num_members), act=nn.ReLU(), drop=nn.Dropout(dropout),
        fc2=stacked(hidden_dim, num_nodes, num_members),
    ))


class ClassifierHeads(nn.Module):
    """Per-head classifiers over shared pooled features: ``(batch, F) → (batch, num_nodes)`` raw
    logits; with ``num_members = K > 1``, ``K`` independent head stacks batched over members,
    ``(batch, F) → (K, batch, num_nodes)`` (needs ``benthicnet_hf.rare_nodes``). The output type
    sets each MLP's width (:func:`head_output`): ``"joint_embedding"`` heads end in an
    ``embedding_dim``-wide MLP and an ``energy`` module whose logits are ``−E(label, image)``."""

    def __init__(self, in_features: int, hierarchy: Hierarchy, hidden_dim: int, dropout: float,
                 num_members: int = 1, output_type: str = "mcm", embedding_dim: int = 32) -> None:
        super().__init__()
        self.head_names = hierarchy.head_names
        self.num_members = num_members
        heads = []
        for h in hierarchy.heads:
            width, end = head_output(h, output_type, embedding_dim)
            heads.append(head_layers(in_features, width, hidden_dim, dropout) if num_members == 1
                         else ensemble_head_layers(in_features, width, hidden_dim, dropout, num_members))
            if end is not None:
                heads[-1].add_module("energy", end)
        self.heads = nn.ModuleList(heads)

    def forward(self, features: Tensor) -> Tensor:
        return torch.cat([head(features) for head in self.heads], dim=-1)


def init_head_layer(layer: nn.Module) -> None:
    """Initialise one layer of a head: torch's default Linear init (as the reference), also per member
    of a ``StackedLinear`` ``(K, out, in)``; fresh BatchNorm statistics."""
    if isinstance(layer, nn.BatchNorm1d):
        init.zeros_(layer.running_mean)
        init.ones_(layer.running_var)
        init.zeros_(layer.num_batches_tracked)
    elif hasattr(layer, "in_features") and isinstance(getattr(layer, "weight", None), Tensor):
        bound = 1 / layer.in_features**0.5
        if layer.weight.dim() == 2:
            init.kaiming_uniform_(layer.weight, a=5**0.5)
        else:  # kaiming_uniform_ would take a (K, out, in) weight's fan-in as out · in
            init.uniform_(layer.weight, -bound, bound)
        init.uniform_(layer.bias, -bound, bound)
    elif isinstance(getattr(layer, "label_embeddings", None), Tensor):  # joint_embedding's label points
        init.normal_(layer.label_embeddings, std=layer.init_std)

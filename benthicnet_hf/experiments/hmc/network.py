"""The C-HMCNN(h) feed-forward network for tabular features, on our max-constraint.

Giunchiglia & Lukasiewicz (NeurIPS 2020), reference settings: ``num_layers`` linear layers in
all (input → hidden → … → hidden → nodes), ReLU then dropout after every hidden layer. The network
returns raw logits; training feeds them to MCLoss (which applies the constraint itself), inference
returns ``sigmoid(MCM(logits))``, equal to the paper's ``MCM(sigmoid(logits))`` since sigmoid is
monotonic.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ...constraint import MaxConstraint
from ...hierarchy import Hierarchy


class HMCNetwork(nn.Module):
    """C-HMCNN(h) for ``(batch, input_dim)`` features → ``(batch, N)`` node logits.

    Example::

        net = HMCNetwork(77, 500, hierarchy)
        logits = net(x)                    # (batch, N), unconstrained
        probs = net.coherent_probs(x)      # (batch, N), child <= parent
    """

    def __init__(
        self, input_dim: int, hidden_dim: int, hierarchy: Hierarchy, num_layers: int = 3, dropout: float = 0.7
    ) -> None:
        super().__init__()
        if num_layers < 2:
            raise ValueError(f"num_layers counts the output layer and must be >= 2, got {num_layers}")
        dims = [input_dim] + [hidden_dim] * (num_layers - 1)
        layers: list[nn.Module] = []
        for a, b in zip(dims[:-1], dims[1:]):
            layers += [nn.Linear(a, b), nn.ReLU(), nn.Dropout(dropout)]
        layers.append(nn.Linear(dims[-1], hierarchy.num_nodes))
        self.layers = nn.Sequential(*layers)
        self.constraint = MaxConstraint(hierarchy)

    def forward(self, x: Tensor) -> Tensor:
        """``(batch, input_dim)`` → ``(batch, N)`` raw logits (no constraint)."""
        return self.layers(x)

    @torch.no_grad()
    def coherent_probs(self, x: Tensor) -> Tensor:
        """``(batch, input_dim)`` → ``(batch, N)`` coherent probabilities ``sigmoid(MCM(logits))``."""
        return self.constraint(self.layers(x)).sigmoid()

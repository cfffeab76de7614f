"""The interface every output type implements for one :class:`~benthicnet_hf.hierarchy.Taxonomy`.

A output type turns a head's raw logits ``(batch, n_nodes)`` into coherent per-node probabilities in
the C-HMCNN layout (one column per node, no child above its parent) and into a per-sample loss
that the masked per-head reduction (:func:`benthicnet_hf.losses.masked_head_reduction`) averages.
"""

from __future__ import annotations

from torch import Tensor

from ..hierarchy import Taxonomy


class OutputType:
    """Base class. Subclasses set :attr:`name` and implement the three methods below."""

    name: str = ""

    def __init__(self, head: Taxonomy) -> None:
        self.head = head

    @staticmethod
    def num_outputs(head: Taxonomy) -> int:
        """Logits the classifier layer must produce for ``head``: one per node for every head
        type, so logits, checkpoints and the widget export keep the ``(batch, num_nodes)`` layout
        (marginalisation reads only the leaf columns)."""
        return len(head.nodes)

    def probabilities(self, logits: Tensor) -> Tensor:
        """``(batch, n)`` logits → ``(batch, n)`` coherent per-node probabilities."""
        raise NotImplementedError

    def loss(self, logits: Tensor, targets: Tensor, mask: Tensor, node_weights: Tensor | None = None) -> Tensor:
        """``(batch,)`` per-sample loss; 0 for samples without a usable label (see :meth:`labelled`).

        Args:
            logits: ``(batch, n)``.  targets / mask: ``(batch, n)`` 0/1, mask 1 = known.
            node_weights: optional ``(n,)`` multiplier per node (applied to the label's term).
        """
        raise NotImplementedError

    def labelled(self, targets: Tensor, mask: Tensor) -> Tensor:
        """``(batch,)`` bool: the sample counts in this head's mean over samples."""
        raise NotImplementedError

"""The interface every output type implements for one :class:`~benthicnet_hf.hierarchy.Taxonomy`.

An *output type* is how one taxonomy's raw logits become coherent per-node probabilities and a
masked loss: ``(batch, n_nodes)`` logits → ``(batch, n_nodes)`` probabilities in the C-HMCNN layout
(one column per node, no child above its parent), and a per-sample loss that the masked per-head
reduction (:func:`benthicnet_hf.losses.masked_head_reduction`) averages. It holds no weights: the
logits come from the model's classifier MLPs (:class:`~benthicnet_hf.classifier_heads.ClassifierHeads`,
one *head* per taxonomy in the paper's sense), which keep one output per node for every output type.
"""

from __future__ import annotations

from torch import Tensor

from ..hierarchy import Taxonomy


class OutputType:
    """How one taxonomy's logits become coherent probabilities and a masked loss.

    Subclasses set :attr:`name` (a key of :data:`~benthicnet_hf.output_types.OUTPUT_TYPES`) and
    implement the three methods below. ``head`` is the taxonomy (one classification head's labels).
    """

    name: str = ""

    def __init__(self, head: Taxonomy) -> None:
        self.head = head

    def probabilities(self, logits: Tensor) -> Tensor:
        """``(batch, n)`` logits → ``(batch, n)`` coherent per-node probabilities."""
        raise NotImplementedError

    def loss(self, logits: Tensor, targets: Tensor, mask: Tensor, node_weights: Tensor | None = None) -> Tensor:
        """``(batch,)`` per-sample loss; 0 for samples without a usable label (see :meth:`labelled`).

        Args:
            logits: ``(batch, n)``.  targets / mask: ``(batch, n)`` 0/1, mask 1 = known.
            node_weights: optional ``(n,)`` multiplier per node (where it applies is the type's
                choice: the labelled node's term for the ETHEC types, the bits of
                ``node_weights_apply_to`` for ``"mcm"`` and flat taxonomies).
        """
        raise NotImplementedError

    def labelled(self, targets: Tensor, mask: Tensor) -> Tensor:
        """``(batch,)`` bool: the sample counts in this taxonomy's mean over samples."""
        raise NotImplementedError

"""The C-HMCNN max-constraint module (MCM), without the dense ``B×N×N`` tensor.

Giunchiglia & Lukasiewicz, "Coherent Hierarchical Multi-Label Classification Networks", NeurIPS
2020: the coherent score of a node is the maximum over the node and all of its descendants,

    MCM(x)[b, i] = max_{j : R[i, j] = 1} x[b, j],    R[i, j] = 1 iff j is i or a descendant of i,

so a child never scores above its parent. Because sigmoid is monotonic, applying MCM to logits and
then the sigmoid equals applying it to probabilities.

The reference implementations build ``R`` densely and take ``max(R * x)`` over a ``(B, N, N)``
float64 tensor (520 MiB at ``B=4`` on the 4,122-node GO DAG). Here the ``M`` (ancestor, descendant)
pairs of :attr:`Hierarchy.ancestor_pairs` are gathered and scatter-maxed: ``O(B·M)`` time and
memory in the input dtype, autograd-correct (the gradient goes to the arg-max descendant, ties to
the smallest index, exactly as the dense reference's ``torch.max``).

Non-finite scores never crash it: a NaN ranks as ``+inf`` when the arg-max is chosen, so a NaN
descendant makes its ancestors non-finite too (as ``torch.max`` propagates NaN); ``±inf`` are
ordinary extremes. Callers that want an error
use :func:`check_finite_logits` (one ``isfinite().all()`` per call), which raises
:class:`NonFiniteLogitsError` naming how many scores, which rows and which nodes.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from .hierarchy import Hierarchy


def max_constraint(x: Tensor, ancestor_pairs: Tensor, num_nodes: int | None = None) -> Tensor:
    """Coherent scores ``out[b, a] = max over descendants d of a (a included) of x[b, d]``.

    Args:
        x: ``(batch, N)`` logits or probabilities.
        ancestor_pairs: ``(2, M)`` long tensor of (ancestor, descendant) global indices, self pairs
            included, on ``x``'s device.
        num_nodes: N (defaults to ``x.shape[-1]``).

    Returns:
        ``(batch, N)`` tensor in ``x``'s dtype.
    """
    n = x.shape[-1] if num_nodes is None else num_nodes
    if x.shape[-1] != n:
        raise ValueError(f"expected scores of shape (batch, {n}), got {tuple(x.shape)}")
    return x.gather(-1, max_constraint_argmax(x.detach(), ancestor_pairs))


@torch.no_grad()
def max_constraint_argmax(x: Tensor, ancestor_pairs: Tensor) -> Tensor:
    """For each (sample, node), the index of the descendant holding the max, ``(batch, N)`` long.

    Ties go to the smallest descendant index, as ``torch.max(dim=-1)`` does in the dense
    reference. Computed without autograd: the coherent scores are then a plain ``gather``, whose
    backward is a cheap ``(batch, N)`` scatter-add instead of the backward of a scatter-max over
    all ``M`` pairs (about 1.5-2x faster forward+backward on the GO DAG).
    """
    anc, desc = ancestor_pairs[0], ancestor_pairs[1]
    m = desc.shape[0]
    # NaN never equals the max, so without this no pair would win and desc[m] would be out of range
    # (an IndexError, a device-side assert on CUDA): rank NaN above +inf so it wins and propagates
    x = torch.where(torch.isnan(x), torch.inf, x)
    src = x.index_select(-1, desc)
    best = x.new_empty(x.shape).scatter_reduce(-1, anc.expand_as(src), src, reduce="amax", include_self=False)
    pair_pos = torch.arange(m, device=x.device).expand_as(src)
    winners = torch.where(src == best.index_select(-1, anc), pair_pos, m)
    first = torch.full(x.shape, m, dtype=torch.long, device=x.device)
    first = first.scatter_reduce(-1, anc.expand_as(winners), winners, reduce="amin", include_self=True)
    return desc[first]


class NonFiniteLogitsError(FloatingPointError):
    """Scores hold NaN or ±inf. ``count``: how many entries; ``rows``/``nodes``: the batch rows and
    node indices (or names) that hold them, each sorted and at most ``limit`` long."""

    def __init__(self, message: str, count: int, rows: list[int], nodes: list[str | int]) -> None:
        super().__init__(message)
        self.count, self.rows, self.nodes = count, rows, nodes


def check_finite_logits(x: Tensor, node_names: Sequence[str] | None = None, what: str = "logits",
                        limit: int = 10) -> None:
    """Raise :class:`NonFiniteLogitsError` if ``x`` ``(batch, N)`` holds NaN or ±inf.

    One ``torch.isfinite(x).all()`` (a single host sync); the details are only computed on failure.

    Args:
        x: ``(batch, N)`` scores.
        node_names: ``N`` names for the message (e.g. ``config.id2label`` values); indices otherwise.
        what: what ``x`` is, for the message.
        limit: at most this many rows and nodes are listed.
    """
    finite = torch.isfinite(x)
    if bool(finite.all()):
        return
    bad = ~finite.reshape(-1, x.shape[-1])
    flat = x.detach().reshape(-1, x.shape[-1])
    count = int(bad.sum())
    n_nan = int(torch.isnan(flat).sum())
    rows = torch.nonzero(bad.any(-1)).flatten().tolist()
    node_idx = torch.nonzero(bad.any(0)).flatten().tolist()
    nodes: list[str | int] = [node_names[i] for i in node_idx] if node_names is not None else node_idx
    more_rows = f" (+{len(rows) - limit} more)" if len(rows) > limit else ""
    more_nodes = f" (+{len(nodes) - limit} more)" if len(nodes) > limit else ""
    raise NonFiniteLogitsError(
        f"non-finite {what}: {count} of {flat.numel()} values ({n_nan} NaN, {count - n_nan} ±inf) in "
        f"{len(rows)} of {flat.shape[0]} batch rows {rows[:limit]}{more_rows}, at {len(nodes)} node(s) "
        f"{nodes[:limit]}{more_nodes}. Usual causes: NaN/inf pixel values, NaN weights (a corrupted "
        "checkpoint) or a diverging run (lower the learning rate, clip gradients, use fp16 only with a "
        "gradient scaler)",
        count, rows[:limit], nodes[:limit],
    )


def dense_max_constraint(x: Tensor, r: Tensor) -> Tensor:
    """The reference dense formula ``max_j R[i, j] * x[b, j]`` over a ``(B, N, N)`` tensor.

    Slow and memory-hungry by design: the oracle for tests and the baseline of the benchmark.
    Only valid for non-negative ``x`` (probabilities), as in the C-HMCNN paper.

    Args:
        x: ``(batch, N)`` probabilities.
        r: ``(N, N)`` ancestor matrix (``R[i, j] = 1`` iff j is i or a descendant of i).
    """
    # max(dim) keeps only arg-max indices for backward (as C-HMCNN's get_constr_out does), so the
    # (B, N, N) product is freed after the forward
    return (r.unsqueeze(0).to(x.dtype) * x.unsqueeze(1)).max(dim=-1).values


class MaxConstraint(nn.Module):
    """:func:`max_constraint` over the tree and DAG heads of a hierarchy; flat heads pass through.

    Example::

        mcm = MaxConstraint(Hierarchy.catami())
        coherent_logits = mcm(logits)          # (batch, 324)
        probs = coherent_logits.sigmoid()      # child <= parent everywhere
    """

    def __init__(self, hierarchy: Hierarchy) -> None:
        super().__init__()
        self.num_nodes = hierarchy.num_nodes
        # flat heads have only self pairs: MCM is the identity there, so all pairs can be used
        pairs = torch.as_tensor(hierarchy.ancestor_pairs, dtype=torch.long)
        self.register_buffer("ancestor_pairs", pairs, persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        """``(batch, N)`` → ``(batch, N)`` coherent scores."""
        return max_constraint(x, self.ancestor_pairs, self.num_nodes)

    def extra_repr(self) -> str:
        return f"num_nodes={self.num_nodes}, pairs={self.ancestor_pairs.shape[1]}"

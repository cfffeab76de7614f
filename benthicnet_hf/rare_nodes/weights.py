"""Node-wise imbalance weights (Xu et al. 2026, "Improving Detection of Rare Nodes in Hierarchical
Multi-Label Learning", arXiv 2602.08986, Sec. 3.1, the "class-wise" balanced weights).

Rare *nodes*, not rare samples, get weight. Per head (each head is one hierarchy in the paper's
sense) with ``n`` labelled training samples and ``C`` nodes:

1. positive count of node ``d``: ``c_d = Σ_i y_id · m_id`` (known positives only; ``y`` is closed
   under ancestors, as in the HMC benchmark files);
2. frequency closed under descendants: ``f_j = Σ_{d ∈ desc(j) ∪ {j}} c_d``;
3. balanced weight (sklearn's ``n_samples / (n_classes · bincount)``): ``r_j = n / (C · f_j)``,
   with ``r_j = 1`` where ``f_j = 0`` or ``f_j = n`` (never seen / always on);
4. rescaled into ``[ω, ω + max r]``: ``w_j = ω + max(r) · (r_j − min r) / (max r − min r)``,
   ``ω = 0.25`` (``min_weight_const``).

The public code (``utils/utils.py: obtain_node_frequencies``) closes the counts with an in-place
loop that equals step 2 when every parent precedes its descendants in the node order; this module
computes step 2 directly (a scatter over the ancestor pairs), order-independent. With
``mode="binary"`` ``C = 2`` (the code's other option).

How the weight is applied to bits (:func:`bit_weights`): the public code indexes its
``[positive, negative]`` weight pair with the target bit, so in effect the node weight multiplies the
``y = 0`` bits and the ``y = 1`` bits get 1 (``apply_to="negative"``, the default of
:class:`RareNodeLoss`): most nodes get ``w < 1`` on their negatives, which raises recall. The paper's
text was not available offline to confirm; ``"positive"`` (weight on positives) and ``"all"`` are
options (``config.node_weights_apply_to``, ``--node_weights_apply_to``, ``benchmarks/hmc.py --apply-to``);
docs/rare-nodes.md works out what each does to a rare node's optimum and reports both on FunCat.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from ..hierarchy import Hierarchy
# one home for the node weight → bit mapping (the model's loss uses it too); re-exported here
from ..losses import NODE_WEIGHT_BITS as APPLY_TO  # noqa: F401
from ..losses import bit_weights  # noqa: F401

DEFAULT_OMEGA = 0.25


def _as_numpy(x: Tensor | np.ndarray, name: str) -> np.ndarray:
    arr = x.detach().cpu().numpy() if isinstance(x, Tensor) else np.asarray(x)
    if arr.ndim != 2:
        raise ValueError(f"{name} must have shape (rows, num_nodes), got {arr.shape}")
    return arr


def node_frequencies(
    hierarchy: Hierarchy, targets: Tensor | np.ndarray, mask: Tensor | np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Frequencies closed under descendants and labelled-sample counts.

    Args:
        hierarchy: the label hierarchy (``N`` nodes).
        targets: ``(rows, N)`` 0/1 training targets.
        mask: ``(rows, N)`` 1 = known; None = all known.

    Returns:
        ``f`` ``(N,)`` int64, ``f_j = Σ_{d ∈ desc(j) ∪ {j}} Σ_i y_id m_id``, and ``n`` ``(N,)``
        int64, the number of rows with at least one known bit in the node's head.
    """
    y = _as_numpy(targets, "targets")
    n_nodes = hierarchy.num_nodes
    if y.shape[1] != n_nodes:
        raise ValueError(f"targets have {y.shape[1]} columns, the hierarchy has {n_nodes} nodes")
    m = np.ones_like(y, dtype=bool) if mask is None else _as_numpy(mask, "mask").astype(bool)
    if m.shape != y.shape:
        raise ValueError(f"mask shape {m.shape} differs from targets shape {y.shape}")
    counts = ((y > 0.5) & m).sum(0).astype(np.int64)
    anc, desc = hierarchy.ancestor_pairs
    closed = np.bincount(anc, weights=counts[desc], minlength=n_nodes).round().astype(np.int64)
    head_of_node = hierarchy.head_of_node
    n_heads = len(hierarchy.heads)
    # (rows, heads): does the row know anything about the head?
    known_head = np.zeros((y.shape[0], n_heads), dtype=bool)
    for h in range(n_heads):  # loop over heads (a handful), vectorised over rows and nodes
        known_head[:, h] = m[:, hierarchy.head_slice(h)].any(1)
    n_labelled = known_head.sum(0).astype(np.int64)[head_of_node]
    return closed, n_labelled


def balanced_weights(
    frequencies: np.ndarray, n: np.ndarray | int, num_classes: int, omega: float = DEFAULT_OMEGA
) -> np.ndarray:
    """``r_j = n / (C f_j)`` (1 where ``f_j ∈ {0, n}``), rescaled into ``[ω, ω + max r]``.

    Args:
        frequencies: ``(C,)`` closed node frequencies ``f``.
        n: number of labelled samples (scalar or ``(C,)``).
        num_classes: ``C`` in the balanced-weight formula.
        omega: the floor ``ω`` of the rescaled weights.

    Returns:
        ``(C,)`` float64 weights.
    """
    f = np.asarray(frequencies, dtype=np.float64)
    n_arr = np.broadcast_to(np.asarray(n, dtype=np.float64), f.shape)
    raw = np.ones_like(f)
    regular = (f > 0) & (f != n_arr)
    raw[regular] = n_arr[regular] / (num_classes * f[regular])
    lo, hi = raw.min(), raw.max()
    if hi == lo:  # nothing to rebalance: every node equally (in)frequent
        return np.full_like(raw, omega + hi)
    return omega + hi * (raw - lo) / (hi - lo)


def imbalance_weights(
    hierarchy: Hierarchy,
    targets: Tensor | np.ndarray,
    mask: Tensor | np.ndarray | None = None,
    omega: float = DEFAULT_OMEGA,
    mode: str = "class-wise",
) -> Tensor:
    """Node-wise imbalance weights from (masked) training labels, computed per head.

    Args:
        hierarchy: the label hierarchy.
        targets: ``(rows, N)`` 0/1 training targets (closed under ancestors).
        mask: ``(rows, N)`` 1 = known; None = all known.
        omega: floor ``ω`` of the rescaled weights (paper: 0.25).
        mode: ``"class-wise"`` (``C`` = nodes in the head) or ``"binary"`` (``C = 2``).

    Returns:
        ``(N,)`` float32 weights; store them as ``config.node_weights`` (a list) so that a saved
        model reproduces its training objective.
    """
    if mode not in ("class-wise", "binary"):
        raise ValueError(f"mode must be 'class-wise' or 'binary', got {mode!r}")
    freq, n_lab = node_frequencies(hierarchy, targets, mask)
    out = np.empty(hierarchy.num_nodes, dtype=np.float64)
    for h in range(len(hierarchy.heads)):  # per head: each head is its own hierarchy
        sl = hierarchy.head_slice(h)
        c = 2 if mode == "binary" else sl.stop - sl.start
        out[sl] = balanced_weights(freq[sl], n_lab[sl], c, omega)
    return torch.as_tensor(out, dtype=torch.float32)


def node_imbalance_weights(hierarchy: Hierarchy, targets: np.ndarray, mask: np.ndarray) -> list[float]:
    """``(N,)`` node weights for ``config.node_weights`` (fine-tuning's ``--node_weights imbalance``):
    :func:`imbalance_weights` of the training targets/mask, computed once before training, as the
    plain floats a config stores."""
    return [float(w) for w in imbalance_weights(hierarchy, targets, mask).tolist()]

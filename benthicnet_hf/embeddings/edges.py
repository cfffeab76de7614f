"""The edges of a label hierarchy as ordered pairs, their train/validation/test split and negatives.

An *edge* is an ordered pair ``(u, v)`` of local node indices with ``u`` a proper ancestor of ``v``
(the transitive closure of the taxonomy's parent links, as in Dhall's ETHEC study and Ganea et
al.). *Basic* edges are the parent links themselves (the transitive reduction). Every other ordered
pair of distinct nodes is a negative.

The split follows the study's code (``create_splits`` in ``network/order_embeddings.py``): all basic
edges are trained on (without them the hierarchy cannot be recovered), and the non-basic edges are
divided at random into validation, test and training parts.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..taxonomy import HierarchyError, Taxonomy

__all__ = ["EdgeSplit", "basic_pairs", "closure_matrix", "sample_negatives", "split_edges"]


def closure_matrix(taxonomy: Taxonomy) -> np.ndarray:
    """``(n, n)`` bool, ``[u, v]`` True iff ``u`` is a proper ancestor of ``v``."""
    n = len(taxonomy.nodes)
    rows = np.fromiter((a for anc in taxonomy.ancestors for a in anc), dtype=np.int64)
    cols = np.repeat(np.arange(n), [len(anc) for anc in taxonomy.ancestors])
    out = np.zeros((n, n), dtype=bool)
    out[rows, cols] = True
    np.fill_diagonal(out, False)  # Taxonomy.ancestors includes the node itself
    return out


def basic_pairs(taxonomy: Taxonomy) -> np.ndarray:
    """``(E, 2)`` int64 ``(parent, child)`` pairs of the taxonomy's parent links."""
    pairs = [(p, c) for c, ps in enumerate(taxonomy.parents) for p in ps]
    return np.asarray(pairs, dtype=np.int64).reshape(-1, 2)


@dataclass(frozen=True)
class EdgeSplit:
    """Positive ``(u, v)`` pairs (``u`` the ancestor) of one taxonomy, split for training.

    Attributes:
        taxonomy: the hierarchy.
        closure: ``(n, n)`` bool, all edges (:func:`closure_matrix`).
        train: ``(T, 2)`` int64, every basic edge plus the training share of the non-basic ones.
        val: ``(V, 2)`` int64, held-out non-basic edges (choose thresholds here).
        test: ``(S, 2)`` int64, held-out non-basic edges.
    """

    taxonomy: Taxonomy
    closure: np.ndarray
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray

    @property
    def num_nodes(self) -> int:
        return len(self.taxonomy.nodes)


def split_edges(taxonomy: Taxonomy, val_fraction: float = 0.05, test_fraction: float = 0.05,
                seed: int = 0) -> EdgeSplit:
    """Split the taxonomy's edges: basic edges train; non-basic ones go to val/test/train at random.

    ``val_fraction`` and ``test_fraction`` are shares of the *non-basic* edges (0.05 each in the study).
    """
    if not (0 <= val_fraction and 0 <= test_fraction and val_fraction + test_fraction < 1):
        raise ValueError(f"val_fraction={val_fraction} and test_fraction={test_fraction} must be >= 0 "
                         "and sum to less than 1")
    closure = closure_matrix(taxonomy)
    basic = basic_pairs(taxonomy)
    if len(basic) == 0:
        raise HierarchyError(f"head {taxonomy.name!r} has no parent links: there is no order to embed")
    non_basic_mask = closure.copy()
    non_basic_mask[basic[:, 0], basic[:, 1]] = False
    non_basic = np.argwhere(non_basic_mask).astype(np.int64)
    perm = np.random.default_rng(seed).permutation(len(non_basic))
    n_val = int(val_fraction * len(non_basic))
    n_test = int(test_fraction * len(non_basic))
    val = non_basic[perm[:n_val]]
    test = non_basic[perm[n_val:n_val + n_test]]
    train = np.concatenate([basic, non_basic[perm[n_val + n_test:]]])
    return EdgeSplit(taxonomy=taxonomy, closure=closure, train=train, val=val, test=test)


def sample_negatives(positives: torch.Tensor, closure: torch.Tensor, per_positive: int,
                     generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Corrupt each positive pair into ``per_positive`` candidate negatives.

    Half of them replace the specific node (``(u, v')``), half the general one (``(u', v)``), with
    ``v'``/``u'`` uniform over all nodes (the study's 5 + 5 scheme at ``per_positive=10``).

    Args:
        positives: ``(B, 2)`` int64 ``(u, v)`` pairs.
        closure: ``(n, n)`` bool edge matrix.
        per_positive: negatives per positive (even counts split evenly; an odd one goes to ``v'``).

    Returns:
        ``(B * per_positive, 2)`` pairs and a ``(B * per_positive,)`` bool mask: False where the
        corruption hit an edge or a node paired with itself (those must not be pushed apart).
    """
    n = closure.shape[0]
    b = positives.shape[0]
    k_v = (per_positive + 1) // 2
    rand = torch.randint(0, n, (b, per_positive), generator=generator)
    u = positives[:, 0:1].expand(b, per_positive).clone()
    v = positives[:, 1:2].expand(b, per_positive).clone()
    v[:, :k_v] = rand[:, :k_v]
    u[:, k_v:] = rand[:, k_v:]
    pairs = torch.stack([u.reshape(-1), v.reshape(-1)], dim=1)
    valid = (pairs[:, 0] != pairs[:, 1]) & ~closure[pairs[:, 0], pairs[:, 1]]
    return pairs, valid

"""Train and evaluate C-HMCNN(h) on an HMC benchmark with our constraint and loss.

Protocol of the C-HMCNN reference (``EGiunchiglia/C-HMCNN`` ``main.py``): train on train+valid
merged, shuffled, batch 4, Adam (weight decay 1e-5) for a fixed number of epochs; evaluate once on
test with sklearn's step-sum ``average_precision_score(Y[:, to_eval], P[:, to_eval],
average="micro")`` over all flattened (sample, non-root node) pairs, all-zero columns kept.

The reference objective is ``BCELoss`` (mean over every batch × non-root bit) of MCLoss's ``h``.
:class:`~benthicnet_hf.losses.HierarchicalLoss` with a mask that is 1 on non-root nodes gives
exactly that: each sample has the same number of known bits, so its per-sample mean followed by
the batch mean is the all-bits mean (no constant factor at all).

``dense=True`` swaps in the reference's dense float64 ``B×N×N`` formulation (constraint and loss)
for the per-epoch time comparison.

Rare-node variants (Xu et al. 2026, arXiv 2602.08986; :mod:`.rare`) share this one training loop:
``loss`` ``"weighted"``, ``"weighted+focal-bma"``, ``"focal-gmu"``, ``"weighted+sched-lin+mixed"`` …
(:func:`.rare.parse_rare_loss`) swap the criterion (the focal ones train a ``members``-member ensemble — K output layers on a shared body as in the
paper, K full networks, or K MC-dropout passes — and predict with the mean of its coherent
probabilities), and ``lpros=True`` draws each epoch from an :class:`LPROSSampler`.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import average_precision_score
from torch import Tensor, nn

from ...constraint import dense_max_constraint, max_constraint
from ...hierarchy import Hierarchy
from ...losses import HierarchicalLoss
from ...rare_nodes import LPROSSampler, ensemble_predict
from ...rare_nodes.metrics import rare_and_all_metrics
from .arff import HMCDataset
from .preprocess import preprocess_splits
from .rare import RARE_LOSSES, MaskedRareLoss, build_network, focal_mode_of, parse_rare_loss
from .significance import per_node_scores

#: lower-case dataset name → (published C-HMCNN AU(PRC), hidden, lr, epochs). Hyper-parameters from
#: the reference ``main.py``; AU(PRC) from the paper's table (mean of 10 seeds).
REFERENCE_SETTINGS: dict[str, tuple[float, int, float, int]] = {
    "cellcycle_fun": (0.255, 500, 1e-4, 106),
    "derisi_fun": (0.195, 500, 1e-4, 67),
    "eisen_fun": (0.306, 500, 1e-4, 110),
    "expr_fun": (0.302, 1250, 1e-4, 20),
    "gasch1_fun": (0.286, 1000, 1e-4, 42),
    "gasch2_fun": (0.258, 500, 1e-4, 123),
    "seq_fun": (0.292, 2000, 1e-4, 13),
    "spo_fun": (0.215, 250, 1e-4, 115),
    "cellcycle_go": (0.413, 1000, 1e-4, 62),
    "derisi_go": (0.370, 500, 1e-4, 91),
    "eisen_go": (0.455, 500, 1e-4, 123),
    "expr_go": (0.447, 4000, 1e-4, 70),
    "gasch1_go": (0.436, 500, 1e-4, 122),
    "gasch2_go": (0.414, 500, 1e-4, 177),
    "seq_go": (0.446, 9000, 1e-4, 45),
    "spo_go": (0.382, 500, 1e-4, 103),
    "diatoms": (0.758, 2000, 1e-5, 474),
    "enron_corr": (0.756, 1000, 1e-5, 133),
    "imclef07a": (0.956, 1000, 1e-5, 592),
    "imclef07d": (0.927, 1000, 1e-5, 588),
}
LOSSES = ("mcloss",) + RARE_LOSSES


@dataclass
class HMCConfig:
    """Training settings; defaults are the reference's shared ones (hidden/lr/epochs per dataset)."""

    hidden: int = 500
    lr: float = 1e-4
    epochs: int = 100
    batch_size: int = 4
    num_layers: int = 3
    dropout: float = 0.7
    weight_decay: float = 1e-5
    seed: int = 0
    loss: str = "mcloss"
    imputation: str = "fit"
    dense: bool = False
    loss_options: dict = field(default_factory=dict)
    members: int = 4  #: ensemble size K of the focal losses (the others train one network)
    ensemble: str = "heads"  #: "heads" (K output layers, shared body), "full" (K networks), "dropout" (MC)
    lpros: bool = False  #: LP-ROS oversampling of the training set (Charte et al. 2015)
    lpros_percentage: float = 10.0
    threshold: float = 0.5  #: decision threshold of the recall/F1 metrics

    @property
    def num_members(self) -> int:
        """Networks (or passes) the loss sees: ``members`` for focal losses, else 1."""
        return self.members if focal_mode_of(self.loss) else 1

    @classmethod
    def reference(cls, name: str, **overrides) -> "HMCConfig":
        """The reference settings of dataset ``name`` (KeyError if unknown), then ``overrides``."""
        _, hidden, lr, epochs = REFERENCE_SETTINGS[name.lower()]
        cfg = cls(hidden=hidden, lr=lr, epochs=epochs)
        for k, v in overrides.items():
            if v is not None:
                setattr(cfg, k, v)
        return cfg


@dataclass
class HMCResult:
    auprc: float
    seconds_per_epoch: float
    epochs: int
    final_loss: float
    config: dict
    metrics: dict = field(default_factory=dict)  #: rare_*/all_* recall and F1 (see :mod:`.rare`)
    per_node: dict = field(default_factory=dict)  #: per-node AP/F1 (:func:`.significance.per_node_scores`)


class DenseMCLoss(nn.Module):
    """The reference's dense float64 MCLoss: ``BCE((1−y)·MCM(p) + y·MCM(y·p), y)`` on to_eval bits.

    ``MCM`` is :func:`~benthicnet_hf.constraint.dense_max_constraint` over a ``(B, N, N)`` tensor.
    Baseline for timing only.
    """

    def __init__(self, hierarchy: Hierarchy, to_eval: np.ndarray) -> None:
        super().__init__()
        self.register_buffer("r", torch.as_tensor(hierarchy.dense_ancestor_matrix(), dtype=torch.float64))
        self.register_buffer("to_eval", torch.as_tensor(to_eval))

    def forward(self, logits: Tensor, targets: Tensor, step: int = 0) -> Tensor:
        p = logits.sigmoid().double()
        y = targets.double()
        h = (1 - y) * dense_max_constraint(p, self.r) + y * dense_max_constraint(y * p, self.r)
        return F.binary_cross_entropy(h[:, self.to_eval], y[:, self.to_eval])


class MaskedMCLoss(nn.Module):
    """Our :class:`HierarchicalLoss` with the roots masked out: ``(logits, targets) → scalar``."""

    def __init__(self, hierarchy: Hierarchy, to_eval: np.ndarray) -> None:
        super().__init__()
        self.loss = HierarchicalLoss(hierarchy)
        self.register_buffer("mask", torch.as_tensor(to_eval, dtype=torch.float32).unsqueeze(0))

    def forward(self, logits: Tensor, targets: Tensor, step: int = 0) -> Tensor:
        return self.loss(logits, targets, self.mask.expand_as(logits)).loss


def build_criterion(
    hierarchy: Hierarchy, to_eval: np.ndarray, kind: str = "mcloss", dense: bool = False,
    fit_targets: Tensor | np.ndarray | None = None, **options,
) -> nn.Module:
    """The training objective ``(logits, targets (B, N), step=0) → scalar``; the one place losses are chosen.

    Args:
        kind: ``"mcloss"`` (C-HMCNN's MCLoss) or a rare-node loss of :func:`.rare.parse_rare_loss`
            (logits ``(B, N)`` or ``(K, B, N)``).
        dense: use the reference's dense float64 formulation instead of our scatter one (mcloss only).
        fit_targets: ``(rows, N)`` training targets; rare-node losses compute their node weights from them.
        options: loss-specific settings (none for ``"mcloss"``; :class:`.rare.MaskedRareLoss`'s otherwise).
    """
    spec = None if kind == "mcloss" else parse_rare_loss(kind)  # ValueError "unknown loss ..."
    if spec is None:
        if options:
            raise ValueError(f"loss {kind!r} takes no options, got {sorted(options)}")
        return DenseMCLoss(hierarchy, to_eval) if dense else MaskedMCLoss(hierarchy, to_eval)
    if dense:
        raise ValueError(f"dense=True is the reference MCLoss formulation; loss {kind!r} has none")
    if fit_targets is None and spec.weighted:
        raise ValueError(f"loss {kind!r} computes node weights from the training targets: pass fit_targets")
    return MaskedRareLoss(hierarchy, to_eval, fit_targets, kind, **options)


def prepare_tensors(data: HMCDataset, imputation: str = "fit") -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``(x_fit, y_fit, x_test, y_test)``: train+valid merged and test, preprocessed, float32."""
    fit = [data.train.features] + ([data.valid.features] if data.valid is not None else [])
    out = preprocess_splits(fit, {"fit": np.concatenate(fit), "test": data.test.features}, imputation)
    y_fit = np.concatenate([data.train.targets] + ([data.valid.targets] if data.valid is not None else []))
    as_t = lambda a: torch.as_tensor(a, dtype=torch.float32)  # noqa: E731
    return as_t(out["fit"]), as_t(y_fit), as_t(out["test"]), as_t(data.test.targets)


def micro_auprc(y: np.ndarray, p: np.ndarray, to_eval: np.ndarray) -> float:
    """sklearn step-sum micro average precision over all (sample, evaluated node) pairs."""
    return float(average_precision_score(y[:, to_eval], p[:, to_eval], average="micro"))


def check_coherent(p: Tensor, hierarchy: Hierarchy) -> None:
    """Raise AssertionError if any node scores above one of its ancestors. ``p``: ``(rows, N)``."""
    pairs = torch.as_tensor(hierarchy.ancestor_pairs, dtype=torch.long)
    bad = (p[:, pairs[1]] > p[:, pairs[0]]).sum().item()
    if bad:
        raise AssertionError(f"{bad} (sample, ancestor, descendant) triples have descendant > ancestor")


def prior_auprc(data: HMCDataset) -> float:
    """AU(PRC) of the prior-only baseline: every test row scores each node by its train+valid frequency."""
    y_fit = np.concatenate([data.train.targets] + ([data.valid.targets] if data.valid is not None else []))
    p = np.broadcast_to(y_fit.mean(0), data.test.targets.shape)
    return micro_auprc(data.test.targets, p, data.to_eval)


def predict(
    model: nn.Module, x: Tensor, ancestor_pairs: Tensor, dense_r: Tensor | None = None, chunk: int = 1024
) -> Tensor:
    """``(rows, N)`` coherent probabilities; with ``dense_r`` via the dense float64 formula.

    A model returning ``(K, B, N)`` member logits is an ensemble: the mean of the members' coherent
    probabilities (:func:`ensemble_predict`), itself coherent.
    """
    model.eval()
    outs = []
    with torch.no_grad():
        for i in range(0, len(x), chunk):
            logits = model(x[i : i + chunk])
            if logits.dim() == 3:
                outs.append(ensemble_predict(logits, ancestor_pairs).probs)
            elif dense_r is None:
                outs.append(max_constraint(logits, ancestor_pairs).sigmoid())
            else:
                outs.append(dense_max_constraint(logits.sigmoid().double(), dense_r).float())
    return torch.cat(outs)


def run_epoch(model: nn.Module, criterion: nn.Module, opt: torch.optim.Optimizer, x: Tensor, y: Tensor,
              batch_size: int, max_steps: int | None = None, order: Tensor | None = None, step0: int = 0) -> float:
    """One pass (last batch partial, as the reference's DataLoader); returns the mean loss.

    ``order``: the row indices of the epoch (an LP-ROS draw); default a fresh permutation.
    ``step0``: global step of the first batch (the rare-node loss's scheduler).
    """
    model.train()
    perm = torch.randperm(len(x)) if order is None else order
    total, steps = 0.0, 0
    for start in range(0, len(perm), batch_size):
        if max_steps is not None and steps >= max_steps:
            break
        idx = perm[start : start + batch_size]
        opt.zero_grad(set_to_none=True)
        loss = criterion(model(x[idx]), y[idx], step0 + steps)
        loss.backward()
        opt.step()
        total += loss.item()
        steps += 1
    return total / max(steps, 1)


def make_model(
    data: HMCDataset, config: HMCConfig, fit_targets: Tensor | None = None
) -> tuple[nn.Module, nn.Module, torch.optim.Optimizer]:
    """Seeded network (or ensemble), criterion and Adam optimiser for ``config``.

    ``fit_targets``: ``(rows, N)`` training targets, needed by the rare-node losses' node weights.
    """
    torch.manual_seed(config.seed)
    np.random.seed(config.seed)
    model = build_network(data.input_dim, config.hidden, data.hierarchy, config.num_layers, config.dropout,
                          config.num_members, config.ensemble)
    criterion = build_criterion(data.hierarchy, data.to_eval, config.loss, config.dense, fit_targets,
                                **config.loss_options)
    # fused Adam: the same update rule in one kernel; the per-parameter loop dominates at batch 4
    opt = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay, fused=True)
    return model, criterion, opt


def train_and_evaluate(data: HMCDataset, config: HMCConfig, log_every: int = 0) -> HMCResult:
    """Train on train+valid, evaluate on test: micro AU(PRC) and rare/all-node recall and F1.

    Asserts coherent test predictions.
    """
    x_fit, y_fit, x_test, y_test = prepare_tensors(data, config.imputation)
    model, criterion, opt = make_model(data, config, y_fit)
    sampler = None
    if config.lpros:
        known = np.broadcast_to(data.to_eval, y_fit.shape)  # roots are not part of any label set
        sampler = LPROSSampler(y_fit, known, config.lpros_percentage, seed=config.seed)
    seconds, loss, step = 0.0, float("nan"), 0
    for epoch in range(config.epochs):
        t0 = time.perf_counter()
        order = None if sampler is None else torch.as_tensor(list(sampler))  # reshuffled per epoch
        loss = run_epoch(model, criterion, opt, x_fit, y_fit, config.batch_size, order=order, step0=step)
        step += -(-len(x_fit if order is None else order) // config.batch_size)
        seconds += time.perf_counter() - t0
        if log_every and (epoch + 1) % log_every == 0:
            print(f"  epoch {epoch + 1}/{config.epochs} loss {loss:.4f} {seconds / (epoch + 1):.2f} s/epoch", flush=True)
    dense_r = criterion.r if isinstance(criterion, DenseMCLoss) else None
    pairs = torch.as_tensor(data.hierarchy.ancestor_pairs, dtype=torch.long)
    p = predict(model, x_test, pairs, dense_r)
    check_coherent(p, data.hierarchy)
    y_np, p_np = y_test.numpy(), p.numpy()
    auprc = micro_auprc(y_np, p_np, data.to_eval)
    metrics = rare_and_all_metrics(y_np, p_np, y_fit.numpy(), data.to_eval, config.threshold)
    per_node = per_node_scores(y_np, p_np, data.to_eval, config.threshold)
    return HMCResult(auprc, seconds / max(config.epochs, 1), config.epochs, loss, asdict(config), metrics, per_node)


def epoch_time(data: HMCDataset, config: HMCConfig, steps: int = 50) -> float:
    """Seconds per full epoch, extrapolated from ``steps`` timed training steps (after 5 warm-up steps)."""
    x_fit, y_fit, _, _ = prepare_tensors(data, config.imputation)
    model, criterion, opt = make_model(data, config, y_fit)
    run_epoch(model, criterion, opt, x_fit, y_fit, config.batch_size, max_steps=5)
    t0 = time.perf_counter()
    run_epoch(model, criterion, opt, x_fit, y_fit, config.batch_size, max_steps=steps)
    per_step = (time.perf_counter() - t0) / steps
    return per_step * -(-len(x_fit) // config.batch_size)

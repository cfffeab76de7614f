"""Rare-node experiments on the HMC benchmarks (FunCat/GO ARFF) on top of :mod:`benthicnet_hf.hmc`.

Variants (``--loss`` of the benchmark): ``mcloss`` (C-HMCNN baseline), ``weighted`` (node-wise
imbalance weights), ``weighted+focal-bma`` / ``weighted+focal-gmu`` (plus the focal factor from
an ensemble's uncertainty); ``lpros`` adds LP-ROS oversampling of the training set.

Metrics on test, threshold 0.5 on the (ensemble-mean) coherent probabilities: micro AU(PRC) as the
C-HMCNN protocol, and micro/macro recall and F1 over all evaluated nodes and over the rarest nodes
(bottom quartile of training frequency among evaluated nodes with a training positive). Macro
figures average over nodes with at least one test positive.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from ..hmc.arff import HMCDataset
from ..hmc.network import HMCNetwork
from ..hmc.train import HMCConfig, check_coherent, micro_auprc, prepare_tensors
from .ensemble import EnsembleMLP, MCDropoutEnsemble, ensemble_predict
from .focal import RareNodeLoss
from .lpros import LPROSSampler
from .weights import imbalance_weights

RARE_LOSSES = ("mcloss", "weighted", "weighted+focal-bma", "weighted+focal-gmu")


@dataclass
class RareNodeSettings:
    loss: str = "mcloss"
    lpros: bool = False
    lpros_percentage: float = 10.0
    members: int = 4  #: ensemble size K for the focal variants
    ensemble: str = "full"  #: "full" (K independent networks) or "dropout" (MC dropout, one network)
    focal_k: float = 2.0
    focal_min: float = 0.25
    omega: float = 0.25
    apply_to: str = "negative"


def build_model(data: HMCDataset, config: HMCConfig, members: int, ensemble: str) -> nn.Module:
    """``(B, D)`` → ``(K, B, N)`` logits (K = 1 for a single network)."""
    if ensemble == "full" and members > 1:
        return EnsembleMLP(data.input_dim, config.hidden, data.hierarchy.num_nodes, members, config.num_layers,
                           config.dropout)
    net = HMCNetwork(data.input_dim, config.hidden, data.hierarchy, config.num_layers, config.dropout)
    if ensemble == "dropout" and members > 1:
        return MCDropoutEnsemble(net, members)
    return _Single(net)


class _Single(nn.Module):
    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x).unsqueeze(0)


def build_loss(data: HMCDataset, y_fit: Tensor, mask: Tensor, s: RareNodeSettings) -> RareNodeLoss:
    """The criterion of variant ``s.loss``; imbalance weights from the (masked) training labels."""
    if s.loss not in RARE_LOSSES:
        raise ValueError(f"unknown loss {s.loss!r}; choose one of {RARE_LOSSES}")
    if s.loss == "mcloss":
        return RareNodeLoss(data.hierarchy)
    w = imbalance_weights(data.hierarchy, y_fit, mask.expand_as(y_fit), omega=s.omega)
    focal = s.loss.split("focal-")[1] if "focal-" in s.loss else None
    return RareNodeLoss(data.hierarchy, w, focal_mode=focal, focal_k=s.focal_k, focal_min=s.focal_min,
                        apply_to=s.apply_to)


def rare_nodes(y_fit: np.ndarray, to_eval: np.ndarray, quantile: float = 0.25) -> np.ndarray:
    """Indices of evaluated nodes in the bottom ``quantile`` of training frequency (frequency > 0)."""
    freq = y_fit.sum(0)
    cand = np.flatnonzero(to_eval & (freq > 0))
    cut = np.quantile(freq[cand], quantile)
    return cand[freq[cand] <= cut]


def recall_f1(y: np.ndarray, pred: np.ndarray, nodes: np.ndarray) -> dict[str, float]:
    """Micro and macro recall/F1 over ``nodes`` (macro over nodes with a test positive)."""
    yt, yp = y[:, nodes].astype(bool), pred[:, nodes].astype(bool)
    tp, fp, fn = (yt & yp).sum(0), (~yt & yp).sum(0), (yt & ~yp).sum(0)
    micro_r = tp.sum() / max(tp.sum() + fn.sum(), 1)
    micro_f1 = 2 * tp.sum() / max(2 * tp.sum() + fp.sum() + fn.sum(), 1)
    has = (tp + fn) > 0
    macro_r = float(np.mean(tp[has] / (tp[has] + fn[has]))) if has.any() else 0.0
    macro_f1 = float(np.mean(2 * tp[has] / (2 * tp[has] + fp[has] + fn[has]))) if has.any() else 0.0
    return {"micro_recall": float(micro_r), "micro_f1": float(micro_f1), "macro_recall": macro_r, "macro_f1": macro_f1}


def train_rare(data: HMCDataset, config: HMCConfig, s: RareNodeSettings, log_every: int = 0) -> dict:
    """Train variant ``s`` with ``config``'s hyper-parameters; return test metrics as a dict."""
    x_fit, y_fit, x_test, y_test = prepare_tensors(data, config.imputation)
    to_eval = data.to_eval
    mask = torch.as_tensor(to_eval, dtype=torch.float32).unsqueeze(0)
    torch.manual_seed(config.seed)
    members = 1 if s.loss in ("mcloss", "weighted") else s.members
    model = build_model(data, config, members, s.ensemble)
    criterion = build_loss(data, y_fit, mask, s)
    opt = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    if s.lpros:
        sampler = LPROSSampler(y_fit, mask.expand_as(y_fit), s.lpros_percentage, seed=config.seed)
    g = torch.Generator().manual_seed(config.seed)
    t0, step = time.perf_counter(), 0
    for epoch in range(config.epochs):
        model.train()
        order = torch.as_tensor(list(sampler)) if s.lpros else torch.randperm(len(x_fit), generator=g)
        for start in range(0, len(order), config.batch_size):
            idx = order[start : start + config.batch_size]
            yb = y_fit[idx]
            opt.zero_grad(set_to_none=True)
            loss = criterion(model(x_fit[idx]), yb, mask.expand_as(yb), step=step).loss
            loss.backward()
            opt.step()
            step += 1
        if log_every and (epoch + 1) % log_every == 0:
            print(f"  [{s.loss}{'+lpros' if s.lpros else ''}] epoch {epoch + 1} loss {loss.item():.4f}", flush=True)
    seconds = time.perf_counter() - t0
    model.eval()
    pairs = torch.as_tensor(data.hierarchy.ancestor_pairs, dtype=torch.long)
    with torch.no_grad():
        probs = torch.cat([ensemble_predict(model(x_test[i : i + 1024]), pairs).probs for i in range(0, len(x_test), 1024)])
    check_coherent(probs, data.hierarchy)
    y_np, p_np = y_test.numpy(), probs.numpy()
    pred = p_np > 0.5
    rare = rare_nodes(y_fit.numpy(), to_eval)
    out = {"loss": s.loss + ("+lpros" if s.lpros else ""), "auprc": micro_auprc(y_np, p_np, to_eval),
           "train_seconds": round(seconds, 1), "members": members, "rare_nodes": int(len(rare))}
    out.update({f"all_{k}": v for k, v in recall_f1(y_np, pred, np.flatnonzero(to_eval)).items()})
    out.update({f"rare_{k}": v for k, v in recall_f1(y_np, pred, rare).items()})
    return out


def ensemble_cost_ratio(data: HMCDataset, config: HMCConfig, members: int = 4, steps: int = 30) -> dict[str, float]:
    """Dropout-ensemble / full-ensemble ratios of training-step time and training memory.

    Memory = parameters + Adam moments + gradients (4 × parameter bytes) + the tensors autograd saves
    for backward in one step (measured with ``saved_tensors_hooks``).
    """
    x_fit, y_fit, _, _ = prepare_tensors(data, config.imputation)
    mask = torch.as_tensor(data.to_eval, dtype=torch.float32).unsqueeze(0)
    s = RareNodeSettings(loss="weighted+focal-bma", members=members)
    out = {}
    for kind in ("full", "dropout"):
        torch.manual_seed(config.seed)
        model = build_model(data, config, members, kind)
        crit = build_loss(data, y_fit, mask, s)
        opt = torch.optim.Adam(model.parameters(), lr=config.lr)
        saved = [0]

        def pack(t: Tensor) -> Tensor:
            saved[0] += t.numel() * t.element_size()
            return t

        def one_step(i: int) -> None:
            idx = torch.arange(i * config.batch_size, (i + 1) * config.batch_size) % len(x_fit)
            opt.zero_grad(set_to_none=True)
            yb = y_fit[idx]
            crit(model(x_fit[idx]), yb, mask.expand_as(yb)).loss.backward()
            opt.step()

        for i in range(3):
            one_step(i)
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            one_step(0)
        t0 = time.perf_counter()
        for i in range(steps):
            one_step(i)
        params = sum(p.numel() * p.element_size() for p in model.parameters())
        out[kind] = ((time.perf_counter() - t0) / steps, 4 * params + saved[0])
    return {
        "dropout_vs_full_time_ratio": round(out["dropout"][0] / out["full"][0], 3),
        "dropout_vs_full_memory_ratio": round(out["dropout"][1] / out["full"][1], 3),
        "ensemble_members": members,
    }

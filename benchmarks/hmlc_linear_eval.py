"""Linear evaluation of hierarchical contrastive pre-training (Ott et al.'s protocol), offline.

Data: the paper's "hierarchical MNIST" (its Fig. 3) rebuilt from sklearn's bundled 8x8 digits
(``sklearn.datasets.load_digits``, shipped with sklearn, nothing downloaded): a 32x32 canvas with a
large central digit (the class) and a small subsidiary digit placed at random in the border (the
category). Level 0 = category (the subsidiary digit, ``--categories`` of them), level 1 =
(category, central digit), ``10 x categories`` classes. Train and test composites draw their digit
images from disjoint halves of the 1797 digits.

Each method pre-trains a ``test_resnet`` (timm, ``pretrained=False``) with two augmented views
(random shift + noise) for ``--steps`` steps; then the encoder is frozen and one linear classifier
per level is fitted on its pooled features (:mod:`benthicnet_hf.contrastive.linear_eval`).
Compared: ``himulcone`` (Zhang et al., the paper's "HMCE" baseline), ``g_hmlc``, ``a_hmlc``, the
same encoder at random init, and the label prior (``--methods ... g_hmlc:batch_fisher`` adds the
shared, label-informed G-HMLC masks). Last line: one JSON object.

    nice -n 10 .venv/bin/python benchmarks/hmlc_linear_eval.py --steps 150
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
import torch.nn.functional as F

from benthicnet_hf.contrastive import build_contrastive_method
from benthicnet_hf.contrastive.linear_eval import encode_frozen, linear_eval_per_level
from benthicnet_hf.hierarchy import Hierarchy, Taxonomy

SIZE = 32


def hierarchical_digits(n: int, images: np.ndarray, digits: np.ndarray, categories: int,
                        rng: np.random.Generator) -> tuple[torch.Tensor, np.ndarray]:
    """``n`` composites → ``(n, 3, 32, 32)`` images in [0, 1] and ``(n, 2)`` level ids."""
    pools = [np.flatnonzero(digits == d) for d in range(10)]
    cls = rng.integers(0, 10, n)
    cat = rng.integers(0, categories, n)
    centre = images[np.array([rng.choice(pools[d]) for d in cls])]
    side = images[np.array([rng.choice(pools[d]) for d in cat])]
    canvas = np.zeros((n, SIZE, SIZE), np.float32)
    canvas[:, 8:24, 8:24] = centre.repeat(2, 1).repeat(2, 2)  # the class digit, 2x upscaled
    where, offset = rng.integers(0, 4, n), rng.integers(0, SIZE - 8 + 1, n)
    rows = np.select([where == 0, where == 1, where == 2], [0, SIZE - 8, offset], offset)
    cols = np.select([where == 0, where == 1, where == 2], [offset, offset, 0], SIZE - 8)
    for i in range(n):  # building the set once, not a training hot path
        patch = canvas[i, rows[i]:rows[i] + 8, cols[i]:cols[i] + 8]
        np.maximum(patch, side[i], out=patch)
    x = torch.from_numpy(canvas / 16.0).unsqueeze(1).expand(-1, 3, -1, -1).contiguous()
    return x, np.stack([cat, cat * 10 + cls], 1)


def taxonomy_targets(levels: np.ndarray, categories: int) -> tuple[Hierarchy, torch.Tensor]:
    """The two-level tree ``c{cat} > c{cat} d{digit}`` and ``(n, N)`` path targets of ``levels``."""
    tree = Taxonomy.from_paths("hdigits", [f"c{c} > c{c} d{d}" for c in range(categories) for d in range(10)])
    hier = Hierarchy((tree,))
    node = np.array([[tree.index[f"c{c}"], tree.index[f"c{c} > c{c} d{f % 10}"]] for c, f in levels])
    targets = torch.zeros(len(levels), hier.num_nodes)
    targets.scatter_(1, torch.from_numpy(node), 1.0)
    return hier, targets


def augment(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Random shift of up to 3 px (one affine grid per image) and pixel noise."""
    b = x.shape[0]
    theta = torch.zeros(b, 2, 3)
    theta[:, 0, 0] = theta[:, 1, 1] = 1.0
    theta[:, :, 2] = (torch.rand(b, 2, generator=g) * 2 - 1) * (3 * 2 / SIZE)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    out = F.grid_sample(x, grid, align_corners=False)
    return out + 0.1 * torch.randn(out.shape, generator=g)


def pretrain(method: str, hier: Hierarchy, x: torch.Tensor, targets: torch.Tensor, steps: int,
             batch: int, seed: int) -> tuple[torch.nn.Module, list[float]]:
    torch.manual_seed(seed)
    name, _, gmm_fit = method.partition(":")  # "g_hmlc:batch_fisher" selects the other mixture reading
    model = build_contrastive_method(name, "test_resnet", hier, proj_hidden_dim=256, proj_dim=64,
                                     temperature=0.1, gmm_fit=gmm_fit or "per_vector")
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-4)
    g = torch.Generator().manual_seed(seed)
    mask = torch.ones(batch, targets.shape[1])
    losses = []
    model.train()
    for _ in range(steps):
        idx = torch.randint(0, len(x), (batch,), generator=g)
        loss = model(augment(x[idx], g), augment(x[idx], g), targets[idx], mask)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    return model.encoder, losses


def main() -> None:
    from sklearn.datasets import load_digits

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=150)
    p.add_argument("--batch_size", type=int, default=128)
    p.add_argument("--categories", type=int, default=4)
    p.add_argument("--train", type=int, default=2400)
    p.add_argument("--test", type=int, default=1200)
    p.add_argument("--methods", nargs="+", default=["himulcone", "g_hmlc", "a_hmlc"],
                   help="method names; g_hmlc:batch_fisher for the label-informed shared masks")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    torch.set_num_threads(1)
    start = time.time()
    digits = load_digits()
    rng = np.random.default_rng(args.seed)
    order = rng.permutation(len(digits.target))
    half = len(order) // 2
    imgs = digits.images
    x_tr, lv_tr = hierarchical_digits(args.train, imgs[order[:half]], digits.target[order[:half]], args.categories, rng)
    x_te, lv_te = hierarchical_digits(args.test, imgs[order[half:]], digits.target[order[half:]], args.categories, rng)
    hier, targets = taxonomy_targets(lv_tr, args.categories)

    results: dict[str, dict[str, float]] = {}
    rows = []

    def evaluate(name: str, encoder: torch.nn.Module, extra: dict) -> None:
        scores = linear_eval_per_level(encode_frozen(encoder, x_tr), lv_tr, encode_frozen(encoder, x_te), lv_te)
        results[name] = {f"level{s['level']}_{k}": round(s[k], 4) for s in scores for k in ("accuracy", "macro_f1")}
        results[name].update(extra)
        rows.append((name, scores))
        if "prior" not in results:
            results["prior"] = {f"level{s['level']}_{k}": round(s[f"prior_{k}"], 4)
                                for s in scores for k in ("accuracy", "macro_f1")}

    torch.manual_seed(args.seed)
    evaluate("random_init", build_contrastive_method("himulcone", "test_resnet", hier).encoder, {})
    for method in args.methods:
        t0 = time.time()
        encoder, losses = pretrain(method, hier, x_tr, targets, args.steps, args.batch_size, args.seed)
        evaluate(method, encoder, {"first_loss": round(losses[0], 4), "last10_loss": round(float(np.mean(losses[-10:])), 4),
                                   "pretrain_s": round(time.time() - t0, 1)})

    print(f"hierarchical digits: {args.train} train / {args.test} test, level 0 = {args.categories} categories, "
          f"level 1 = {10 * args.categories} classes; {args.steps} steps x batch {args.batch_size}")
    print(f"{'encoder':<12} {'L0 acc':>7} {'L0 F1':>7} {'L1 acc':>7} {'L1 F1':>7}")
    for name in ["prior", "random_init", *args.methods]:
        r = results[name]
        print(f"{name:<12} {r['level0_accuracy']:7.3f} {r['level0_macro_f1']:7.3f} "
              f"{r['level1_accuracy']:7.3f} {r['level1_macro_f1']:7.3f}")
    print(json.dumps({"benchmark": "hmlc_linear_eval", "dataset": "hierarchical_digits(sklearn load_digits)",
                      "steps": args.steps, "batch_size": args.batch_size, "seed": args.seed,
                      "encoder": "test_resnet", "results": results, "seconds": round(time.time() - start, 1)}))


if __name__ == "__main__":
    main()

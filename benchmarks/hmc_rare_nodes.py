"""Rare-node losses on an HMC benchmark dataset (Xu et al. 2026, arXiv 2602.08986).

Usage::

    python benchmarks/hmc_rare_nodes.py ../shared/data/hmc/derisi_FUN \
        --loss mcloss weighted weighted+focal-bma weighted+focal-gmu [--lpros] [--epochs 20]

Prints one table row per variant and, as the last line, one JSON object with all figures and the
dropout-ensemble / full-ensemble time and memory ratios.
"""

from __future__ import annotations

import argparse
import json

import torch

from benthicnet_hf.hmc import HMCConfig, load_hmc
from benthicnet_hf.rare_nodes.hmc_runner import RARE_LOSSES, RareNodeSettings, ensemble_cost_ratio, train_rare


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("prefix", help="dataset prefix, e.g. ../shared/data/hmc/derisi_FUN")
    ap.add_argument("--loss", nargs="+", choices=RARE_LOSSES, default=list(RARE_LOSSES))
    ap.add_argument("--lpros", action="store_true", help="also run every variant with LP-ROS oversampling")
    ap.add_argument("--lpros-percentage", type=float, default=10.0)
    ap.add_argument("--epochs", type=int, default=None, help="override the reference epoch count")
    ap.add_argument("--batch-size", type=int, default=None, help="override the reference batch size (4)")
    ap.add_argument("--lr", type=float, default=None, help="override the reference learning rate")
    ap.add_argument("--members", type=int, default=4, help="ensemble size K of the focal variants")
    ap.add_argument("--ensemble", choices=("full", "dropout"), default="full")
    ap.add_argument("--apply-to", choices=("positive", "negative", "all"), default="negative")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    data = load_hmc(args.prefix)
    config = HMCConfig.reference(data.name, epochs=args.epochs, seed=args.seed, batch_size=args.batch_size, lr=args.lr)
    rows = []
    for lpros in ([False, True] if args.lpros else [False]):
        for loss in args.loss:
            s = RareNodeSettings(loss=loss, lpros=lpros, lpros_percentage=args.lpros_percentage,
                                 members=args.members, ensemble=args.ensemble, apply_to=args.apply_to)
            r = train_rare(data, config, s)
            rows.append(r)
            print(f"{r['loss']:<28} AU(PRC) {r['auprc']:.3f}  rare R {r['rare_micro_recall']:.3f}/"
                  f"{r['rare_macro_recall']:.3f} F1 {r['rare_micro_f1']:.3f}/{r['rare_macro_f1']:.3f}  "
                  f"all R {r['all_micro_recall']:.3f}/{r['all_macro_recall']:.3f} "
                  f"F1 {r['all_micro_f1']:.3f}/{r['all_macro_f1']:.3f}  ({r['train_seconds']} s)", flush=True)
    cost = ensemble_cost_ratio(data, config, members=args.members)
    print(json.dumps({"bench": "hmc_rare_nodes", "dataset": data.name, "epochs": config.epochs, "rows": rows, **cost}))


if __name__ == "__main__":
    main()

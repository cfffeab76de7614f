"""Reproduce C-HMCNN(h) on the HMC benchmarks with benthicnet_hf's max-constraint and MCLoss.

    python benchmarks/hmc.py cellcycle_FUN --seeds 3
    python benchmarks/hmc.py --all --dense-timing --json hmc.json
    python benchmarks/hmc.py some/dir/gasch2_FUN --hidden 500 --lr 1e-4 --epochs 123

DATASET is a name in --data-dir (default ../shared/data/hmc) or a path prefix with
``.train/.valid/.test.arff(.gz)`` (or ``_train/_test``) files beside it. Prints our AU(PRC) (sklearn
step-sum micro average precision over all (test sample, non-root node) pairs) beside the published
figure, seconds per epoch, and with --dense-timing the per-epoch time of the reference's dense
float64 B×N×N formulation over ours (both timed in this process on the same steps). The last line
is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benthicnet_hf.hmc import (  # noqa: E402
    REFERENCE_SETTINGS,
    HMCConfig,
    epoch_time,
    find_splits,
    load_hmc,
    prior_auprc,
    train_and_evaluate,
)
from benthicnet_hf.hmc.train import LOSSES  # noqa: E402

DEFAULT_DATA = ROOT.parent / "shared" / "data" / "hmc"
_TRAIN = re.compile(r"^(.+?)[._](?:train|Train|TRAIN)\.arff(?:\.gz)?$")


def datasets_in(folder: Path) -> list[str]:
    """Dataset prefixes with a train split in ``folder``, sorted."""
    return sorted({m.group(1) for p in folder.iterdir() if (m := _TRAIN.match(p.name))})


def resolve(dataset: str, data_dir: Path) -> Path:
    """A path prefix for ``dataset``: as given if its splits exist, else inside ``data_dir``."""
    for prefix in (Path(dataset), data_dir / dataset):
        try:
            find_splits(prefix)
            return prefix
        except FileNotFoundError:
            continue
    raise SystemExit(f"dataset {dataset!r}: no split files as a path prefix nor in {data_dir}")


def run_dataset(prefix: Path, args: argparse.Namespace) -> dict:
    name = prefix.name
    overrides = dict(hidden=args.hidden, lr=args.lr, epochs=args.epochs, batch_size=args.batch_size,
                     loss=args.loss, imputation=args.imputation)
    known = name.lower() in REFERENCE_SETTINGS
    if known:
        config = HMCConfig.reference(name, **overrides)
    else:
        print(f"[{name}] no reference settings: using --hidden/--lr/--epochs or the defaults", flush=True)
        config = HMCConfig(**{k: v for k, v in overrides.items() if v is not None})
    published = REFERENCE_SETTINGS[name.lower()][0] if known else None
    data = load_hmc(prefix)
    print(f"[{name}] {data.hierarchy.num_nodes} nodes, {data.input_dim} features, rows "
          f"{len(data.train.features)}/{0 if data.valid is None else len(data.valid.features)}/"
          f"{len(data.test.features)}; hidden {config.hidden} lr {config.lr} epochs {config.epochs}", flush=True)
    row: dict = {"dataset": name, "published": published, "epochs": config.epochs, "hidden": config.hidden,
                 "lr": config.lr, "prior_auprc": round(prior_auprc(data), 4)}
    if args.dense_timing:
        ours = epoch_time(data, config, steps=args.timing_steps)
        config.dense = True
        dense = epoch_time(data, config, steps=args.timing_steps)
        config.dense = False
        row.update(ours_timed_s_per_epoch=round(ours, 3), dense_s_per_epoch=round(dense, 3),
                   dense_over_ours=round(dense / ours, 2))
        print(f"[{name}] per epoch ({args.timing_steps} timed steps): ours {ours:.2f} s, dense float64 "
              f"{dense:.2f} s, dense/ours {dense / ours:.1f}x", flush=True)
    scores, times = [], []
    for seed in range(args.seed0, args.seed0 + args.seeds):
        config.seed = seed
        result = train_and_evaluate(data, config, log_every=args.log_every)
        scores.append(result.auprc)
        times.append(result.seconds_per_epoch)
        print(f"[{name}] seed {seed}: AU(PRC) {result.auprc:.4f} (published {published}), "
              f"{result.seconds_per_epoch:.2f} s/epoch, final loss {result.final_loss:.4f}", flush=True)
    if scores:
        mean = statistics.fmean(scores)
        std = statistics.stdev(scores) if len(scores) > 1 else 0.0
        row.update(seeds=len(scores), auprcs=[round(s, 4) for s in scores], auprc_mean=round(mean, 4),
                   auprc_std=round(std, 4), s_per_epoch=round(statistics.fmean(times), 3))
        if published is not None:
            row.update(diff=round(mean - published, 4), within_0_01=abs(mean - published) <= 0.01)
        print(f"[{name}] ours {mean:.4f} ± {std:.4f} over {len(scores)} seed(s) vs published {published}; "
              f"prior-only {row['prior_auprc']}", flush=True)
    return row


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dataset", nargs="?", help="name in --data-dir or path prefix")
    p.add_argument("--all", action="store_true", help="every dataset in --data-dir")
    p.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    p.add_argument("--seeds", type=int, default=1, help="number of seeds (0: timing only)")
    p.add_argument("--seed0", type=int, default=0, help="first seed")
    p.add_argument("--epochs", type=int)
    p.add_argument("--hidden", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--loss", choices=LOSSES, default="mcloss", help="training objective (see build_criterion)")
    p.add_argument("--imputation", choices=("fit", "per_split"), default="fit",
                   help="fit: train+valid means everywhere; per_split: each split's own means (reference parser)")
    p.add_argument("--dense-timing", action="store_true", help="also time the dense float64 formulation")
    p.add_argument("--timing-steps", type=int, default=50)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--log-every", type=int, default=0)
    p.add_argument("--json", type=Path, help="also write the result object here")
    args = p.parse_args(argv)
    if bool(args.dataset) == args.all:
        p.error("give exactly one of DATASET or --all")
    torch.set_num_threads(args.threads)
    prefixes = [args.data_dir / n for n in datasets_in(args.data_dir)] if args.all else [resolve(args.dataset, args.data_dir)]
    rows = [run_dataset(prefix, args) for prefix in prefixes]
    if rows:
        print("\n| dataset | ours AU(PRC) | published | seeds | s/epoch | dense/ours |\n|---|---|---|---|---|---|")
        for r in rows:
            ours = f"{r['auprc_mean']:.3f} ± {r['auprc_std']:.3f}" if "auprc_mean" in r else "-"
            print(f"| {r['dataset']} | {ours} | {r['published']} | {r.get('seeds', 0)} | "
                  f"{r.get('s_per_epoch', r.get('ours_timed_s_per_epoch', '-'))} | {r.get('dense_over_ours', '-')} |")
    out = {"bench": "hmc", "metric": "micro AP (sklearn step-sum), non-root nodes", "results": rows}
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()

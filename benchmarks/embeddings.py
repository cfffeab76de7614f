"""Label-only order embeddings, Euclidean and hyperbolic entailment cones on a label hierarchy.

    python benchmarks/embeddings.py                          # ETHEC, d = 2 and 100, seeds 0 1
    python benchmarks/embeddings.py --dims 2 100 1000 --seeds 0 1 2
    python benchmarks/embeddings.py --hierarchy catami-biota
    python benchmarks/embeddings.py --hierarchy go           # cellcycle_GO DAG (4,126 nodes)
    python benchmarks/embeddings.py --quick                  # smoke run: few epochs, d = 2

Reproduces the label-only table of Dhall's ETHEC study (``../shared/data/ethec/README.md``):
every ordered pair of distinct labels is classified as an edge of the hierarchy (``u`` a proper
ancestor of ``v``: the transitive closure, 1,974 edges on ETHEC, as the study's code) or not
(520,032 pairs), with the energy threshold chosen on validation edges. Training edges are all
basic edges plus 90 % of the others (5 % validation, 5 % test), as in the study. Printed per
model and d: TPR / TNR / (F1) over all pairs at the validation threshold (mean over seeds, the
F1's standard deviation beside it), the F1 at the best threshold on all pairs (the study's
protocol, which picks the threshold on the pairs it scores), and the TPR on the held-out test
edges (generalisation to unseen edges). The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benthicnet_hf.embeddings import (  # noqa: E402
    MODELS,
    default_config,
    evaluate_edges,
    split_edges,
    train_label_embedding,
)
from benthicnet_hf.taxonomy import Taxonomy  # noqa: E402

SHARED = ROOT.parent / "shared" / "data"

#: Dhall's table, label hierarchy only: (TPR, TNR, F1) per model and d.
PUBLISHED = {
    "order_embeddings": {2: (0.2309, 0.9708, 0.1372), 100: (0.4686, 0.9880, 0.3894), 1000: (0.3788, 0.9878, 0.3489)},
    "euclidean_cones": {2: (0.3617, 0.9975, 0.3573), 100: (0.4802, 0.9985, 0.4151), 1000: (0.5790, 0.9973, 0.4091)},
    "hyperbolic_cones": {2: (0.4443, 0.9907, 0.2296), 100: (0.9336, 0.9986, 0.8060), 1000: (0.9721, 0.9986, 0.8257)},
}

#: Epochs per (hierarchy, d): modest, so that the default ETHEC run stays well under 20 min on one core.
EPOCHS = {"ethec": {2: 600, 100: 100, 1000: 60}, "catami-biota": {2: 600, 100: 200, 1000: 100},
          "go": {2: 20, 100: 20, 1000: 5}}


def load_taxonomy(name: str, data_dir: Path) -> Taxonomy:
    """The label hierarchy called ``name`` (``ethec``, ``catami-biota`` or ``go``)."""
    if name == "ethec":
        path = data_dir / "ethec" / "ethec_hierarchy.json"
        if not path.exists():
            raise SystemExit(f"{path} not found: pass --data-dir (the folder holding ethec/ and hmc/)")
        spec = json.loads(path.read_text())
        return Taxonomy.from_paths("ethec", [" > ".join(row[level] for level in spec["levels"])
                                             for row in spec["paths"]])
    if name == "catami-biota":
        from benthicnet_hf.hierarchy import Hierarchy

        return Hierarchy.catami().head("biota")
    if name == "go":
        from benthicnet_hf.data.arff import taxonomy_from_arff

        path = data_dir / "hmc" / "cellcycle_GO.train.arff.gz"
        if not path.exists():
            raise SystemExit(f"{path} not found: pass --data-dir (the folder holding ethec/ and hmc/)")
        return taxonomy_from_arff(path, name="cellcycle_GO")
    raise SystemExit(f"unknown hierarchy {name!r}; expected ethec, catami-biota or go")


def _cell(values: list[float]) -> str:
    return f"{statistics.mean(values):.4f}"


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--hierarchy", default="ethec", choices=["ethec", "catami-biota", "go"])
    p.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    p.add_argument("--dims", nargs="+", type=int, default=[2, 100])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    p.add_argument("--epochs", type=int, default=None, help="override the per-d defaults (EPOCHS)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--data-dir", type=Path, default=SHARED)
    p.add_argument("--quick", action="store_true", help="smoke run: d = 2, one seed, 5 epochs")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.quick:
        args.dims, args.seeds, args.epochs = [2], [0], 5
    tax = load_taxonomy(args.hierarchy, args.data_dir)

    runs: dict[tuple[str, int], list[dict]] = {}
    seconds: dict[tuple[str, int], float] = {}
    for model in args.models:
        for dim in args.dims:
            epochs = args.epochs if args.epochs is not None else EPOCHS[args.hierarchy].get(dim, 100)
            start = time.perf_counter()
            for seed in args.seeds:
                split = split_edges(tax, seed=seed)
                trained = train_label_embedding(split, default_config(model, dim=dim, epochs=epochs, seed=seed))
                result = evaluate_edges(trained.embedding, split, seed=seed)
                runs.setdefault((model, dim), []).append(result)
                print(f"{model} d={dim} seed={seed} epochs={epochs}: F1 {result['all']['f1']:.4f} "
                      f"(best threshold {result['best_threshold']['f1']:.4f}), "
                      f"test-edge TPR {result['test']['tpr']:.4f}", flush=True)
            seconds[(model, dim)] = (time.perf_counter() - start) / len(args.seeds)

    n_pos = int(split.closure.sum())
    n = len(tax.nodes)
    print(f"\n{args.hierarchy}: {n} labels, {n_pos} edges (transitive closure), {n * (n - 1) - n_pos} negative "
          f"ordered pairs; seeds {args.seeds}; TPR / TNR / (F1 ± sd over seeds) at the validation threshold")
    published = args.hierarchy == "ethec"
    header = f"{'model':<18}{'d':>5}  {'ours':<36}{'best-thr F1':>12}{'test TPR':>10}"
    print(header + ("   published TPR / TNR / (F1)" if published else ""))
    summary: dict[str, float | str | list[int]] = {"hierarchy": args.hierarchy, "labels": n, "edges": n_pos,
                                                   "seeds": args.seeds}
    for (model, dim), results in runs.items():
        f1 = [r["all"]["f1"] for r in results]
        tpr, tnr = [r["all"]["tpr"] for r in results], [r["all"]["tnr"] for r in results]
        best = [r["best_threshold"]["f1"] for r in results]
        test_tpr = [r["test"]["tpr"] for r in results]
        sd = statistics.stdev(f1) if len(f1) > 1 else 0.0
        ours = f"{_cell(tpr)} / {_cell(tnr)} / ({_cell(f1)} ± {sd:.4f})"
        line = f"{model:<18}{dim:>5}  {ours:<36}{_cell(best):>12}{_cell(test_tpr):>10}"
        if published and dim in PUBLISHED[model]:
            ptpr, ptnr, pf1 = PUBLISHED[model][dim]
            line += f"   {ptpr:.4f} / {ptnr:.4f} / ({pf1:.4f})"
            summary[f"{model}_d{dim}_published_f1"] = pf1
        print(line)
        key = f"{model}_d{dim}"
        summary.update({f"{key}_f1": statistics.mean(f1), f"{key}_f1_sd": sd, f"{key}_tpr": statistics.mean(tpr),
                        f"{key}_tnr": statistics.mean(tnr), f"{key}_f1_best_threshold": statistics.mean(best),
                        f"{key}_test_tpr": statistics.mean(test_tpr),
                        f"{key}_seconds": round(seconds[(model, dim)], 1)})
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()

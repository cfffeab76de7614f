"""Time one C-HMCNN training step on the ImCLEF07A network, ours vs a reference-style step.

Network 80 → 1000 → 1000 → 96 (ReLU, dropout 0.7), batch 4, one CPU thread — the setting of the
C-HMCNN reference for ImCLEF07A (592 epochs × 2,752 steps, which is why the optimiser step matters).

- **ours** (:mod:`benthicnet_hf.experiments.hmc.train`): MCLoss through the gather max-constraint in float32
  (:class:`~benthicnet_hf.experiments.hmc.train.MaskedMCLoss`) and ``Adam(fused=True)``;
- **reference-style**: the dense float64 ``B×N×N`` MCLoss (:class:`~benthicnet_hf.experiments.hmc.train.DenseMCLoss`)
  and torch's default ``Adam`` (a per-parameter loop on CPU), as the reference's ``main.py``.

Both take the same batches from the same start weights; rounds alternate (ours, reference, ...) so
that machine noise hits both alike; the median ms per step of each side is reported, with
``ratio = ours / reference`` (goal ≤ 0.35) and the loss difference after the timed steps.

    python benchmarks/bench_hmc_step.py [--steps 300] [--rounds 5]

Needs ``../shared/data/hmc`` (or ``--data-dir``). Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import time
from pathlib import Path

import torch

from benthicnet_hf.experiments.hmc.arff import load_hmc
from benthicnet_hf.experiments.hmc.rare import build_network
from benthicnet_hf.experiments.hmc.train import DenseMCLoss, MaskedMCLoss, prepare_tensors

ROOT = Path(__file__).resolve().parents[1]


def timed_steps(model, criterion, opt, x, y, batches) -> tuple[float, float]:
    """(seconds, last loss) of one optimisation step per batch of row indices."""
    model.train()
    start = time.perf_counter()
    for idx in batches:
        opt.zero_grad(set_to_none=True)
        loss = criterion(model(x[idx]), y[idx])
        loss.backward()
        opt.step()
    return time.perf_counter() - start, float(loss)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data" / "hmc"))
    parser.add_argument("--steps", type=int, default=300, help="steps per round and side")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    data = load_hmc(Path(args.data_dir) / "ImCLEF07A")
    x, y, _, _ = prepare_tensors(data)
    torch.manual_seed(0)
    net = build_network(data.input_dim, 1000, data.hierarchy, 3, 0.7, 1, "heads")
    sides = {}
    for name, criterion, fused in (("ours", MaskedMCLoss(data.hierarchy, data.to_eval), True),
                                   ("reference", DenseMCLoss(data.hierarchy, data.to_eval), False)):
        model = copy.deepcopy(net)
        opt = torch.optim.Adam(model.parameters(), lr=1e-5, weight_decay=1e-5, **({"fused": True} if fused else {}))
        sides[name] = (model, criterion, opt)
    g = torch.Generator().manual_seed(1)
    times: dict[str, list[float]] = {name: [] for name in sides}
    losses: dict[str, float] = {}
    timed_steps(*sides["ours"], x, y, [torch.randint(0, len(x), (4,), generator=g)] * 3)  # warm-up both
    timed_steps(*sides["reference"], x, y, [torch.randint(0, len(x), (4,), generator=g)] * 3)
    for r in range(args.rounds):
        batches = [torch.randint(0, len(x), (4,), generator=g) for _ in range(args.steps)]
        for name in sides:  # the same batches for both sides, alternating
            torch.manual_seed(100 + r)  # same dropout masks
            seconds, losses[name] = timed_steps(*sides[name], x, y, batches)
            times[name].append(1000 * seconds / args.steps)
        print(f"round {r}: ours {times['ours'][-1]:.3f} ms/step, reference {times['reference'][-1]:.3f} ms/step")
    ours, ref = statistics.median(times["ours"]), statistics.median(times["reference"])
    print(json.dumps({
        "bench": "hmc_step", "dataset": "ImCLEF07A", "network": [data.input_dim, 1000, 1000, data.hierarchy.num_nodes],
        "batch": 4, "threads": 1, "steps_per_round": args.steps, "rounds": args.rounds,
        "ours_ms": round(ours, 3), "reference_ms": round(ref, 3), "ratio": round(ours / ref, 3), "goal": 0.35,
        "loss_abs_diff": round(abs(losses["ours"] - losses["reference"]), 6),
    }))


if __name__ == "__main__":
    main()

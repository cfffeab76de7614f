"""MCM + MCLoss forward+backward: ours (scatter over ancestor pairs, input dtype) against the dense
``B×N×N`` formulation of the reference code, in float64 (the reference's dtype) and in float32
(equal precision to ours), as time and peak-memory ratios, and ``max_abs_diff`` of our loss and
gradient against the dense float64 formula on the same inputs.

Cases: CATAMI biota (272 nodes, B=128) and cellcycle_GO (4,126 nodes incl. roots, B=4 and B=64).
Each variant runs in a fresh subprocess so its peak resident memory can be read in isolation.
Also prints the whole-model forward time over a bare timm forward when the model is available.

    python benchmarks/bench_constraint.py [--reps 5] [--skip-go64]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GO_FILE = ROOT.parent / "shared" / "data" / "hmc" / "cellcycle_GO.train.arff.gz"


def available_gib() -> float:
    """MemAvailable from /proc/meminfo, in GiB."""
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / 2**20
    return float("inf")


def current_rss_kib() -> int:
    """Resident set size now (KiB), from /proc (Linux)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() // 1024


def run_case(case: str, batch: int, variant: str, reps: int) -> dict:
    """Time one variant in this process; returns seconds/iteration and peak RSS growth (MiB)."""
    import torch
    import torch.nn.functional as F

    from benthicnet_hf import Hierarchy
    from benthicnet_hf.data.arff import taxonomy_from_arff
    from benthicnet_hf.constraint import dense_max_constraint
    from benthicnet_hf.losses import mcloss_logits

    torch.set_num_threads(1)
    if case == "catami_biota":
        h = Hierarchy.catami().subset(["biota"])
    else:
        h = Hierarchy((taxonomy_from_arff(GO_FILE),))
    n = h.num_nodes
    g = torch.Generator().manual_seed(0)
    y = (torch.rand(batch, n, generator=g) < 0.05).double()
    r = torch.as_tensor(h.dense_ancestor_matrix(), dtype=torch.float64)
    y = ((y @ r.T) > 0).double()  # closed under ancestors
    pairs = torch.as_tensor(h.ancestor_pairs)

    dtype = torch.float32 if variant in ("ours", "dense_f32") else torch.float64
    r_dense = r.to(dtype)

    def step(rows: int = batch, x: torch.Tensor | None = None) -> tuple[float, torch.Tensor]:
        if x is None:
            x = torch.randn(rows, n, generator=g, dtype=dtype)
        x = x.to(dtype).detach().requires_grad_(True)
        yy = y[:rows].to(dtype)
        if variant == "ours":
            loss = F.binary_cross_entropy_with_logits(mcloss_logits(x, yy, pairs), yy)
        else:  # the reference: dense B x N x N, probability space
            p = torch.sigmoid(x)
            hh = (1 - yy) * dense_max_constraint(p, r_dense) + yy * dense_max_constraint(yy * p, r_dense)
            loss = F.binary_cross_entropy(hh, yy)
        loss.backward()
        return float(loss), x.grad

    # one-row step first: the one-time start-up of autograd and the kernels (~10 MiB, the same for
    # both variants) is then outside the measured growth
    step(1)
    before = current_rss_kib()
    step()  # warm-up (its peak counts: the dense formulation allocates the same every step)
    t0 = time.perf_counter()
    for _ in range(reps):
        step()
    dt = (time.perf_counter() - t0) / reps
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    # value and gradient on fixed inputs (a few rows), for the max_abs_diff against dense float64
    x_fixed = torch.randn(min(batch, 4), n, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    loss, grad = step(x_fixed.shape[0], x_fixed)
    return {"seconds": dt, "peak_mib": max(peak, 1) / 1024, "loss": loss, "grad": grad.double().flatten().tolist()}


def model_overhead(reps: int) -> dict | None:
    """Whole BenthicNet forward / bare timm forward (ResNet-50, B=16, 224², eval, no grad)."""
    try:
        from benthicnet_hf.configuration_benthicnet import BenthicNetConfig
        from benthicnet_hf.modeling_benthicnet import BenthicNetForHierarchicalClassification
    except ImportError:
        return None
    import timm
    import torch

    torch.manual_seed(0)
    bare = timm.create_model("resnet50", pretrained=False, num_classes=0).eval()
    model = BenthicNetForHierarchicalClassification(BenthicNetConfig(encoder_name="resnet50")).eval()
    x = torch.randn(16, 3, 224, 224)
    times = {"bare": [], "model": []}
    with torch.no_grad():
        bare(x), model(pixel_values=x)
        for _ in range(reps):  # interleaved so drift hits both alike
            t0 = time.perf_counter(); bare(x); times["bare"].append(time.perf_counter() - t0)
            t0 = time.perf_counter(); model(pixel_values=x); times["model"].append(time.perf_counter() - t0)
    b, m = min(times["bare"]), min(times["model"])
    return {"bare_s": b, "model_s": m, "ratio": m / b}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--skip-go64", action="store_true", help="skip the 8.7 GB dense GO B=64 case")
    ap.add_argument("--skip-model", action="store_true")
    ap.add_argument("--_child", nargs=3, metavar=("CASE", "BATCH", "VARIANT"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args._child:
        case, batch, variant = args._child
        print(json.dumps(run_case(case, int(batch), variant, args.reps)))
        return
    cases = [("catami_biota", 128)]
    if GO_FILE.exists():
        cases.append(("cellcycle_GO", 4))
        if not args.skip_go64:
            cases.append(("cellcycle_GO", 64))
    else:
        print(f"{GO_FILE} absent: GO cases skipped")
    results = {}
    for case, batch in cases:
        n = 4126 if case == "cellcycle_GO" else 272
        need_gib = 1.3 * batch * n * n * 8 / 2**30  # the dense (B, N, N) float64 product
        if need_gib > available_gib():
            print(f"{case} B={batch}: skipped, the dense reference needs ~{need_gib:.1f} GiB and only "
                  f"{available_gib():.1f} GiB is available now")
            continue
        res = {}
        for variant in ("ours", "dense_f32", "dense_f64"):
            reps = 1 if batch >= 64 and variant != "ours" else args.reps  # ~9 GB per step
            out = subprocess.run(
                [sys.executable, __file__, "--reps", str(reps), "--_child", case, str(batch), variant],
                capture_output=True, text=True, check=True,
            )
            res[variant] = json.loads(out.stdout.strip().splitlines()[-1])
        speed = res["dense_f64"]["seconds"] / res["ours"]["seconds"]
        mem = res["ours"]["peak_mib"] / res["dense_f64"]["peak_mib"]
        key = f"{case}_B{batch}"
        diff = max(abs(res["ours"]["loss"] - res["dense_f64"]["loss"]),
                   max(abs(a - b) for a, b in zip(res["ours"]["grad"], res["dense_f64"]["grad"])))
        results[key] = {"speedup": round(speed, 1), "mem_ratio": round(mem, 4),
                        "speedup_vs_f32": round(res["dense_f32"]["seconds"] / res["ours"]["seconds"], 1),
                        "mem_ratio_vs_f32": round(res["ours"]["peak_mib"] / res["dense_f32"]["peak_mib"], 4),
                        "max_abs_diff": float(f"{diff:.2e}"),
                        "ours_ms": round(1e3 * res["ours"]["seconds"], 2),
                        "dense_ms": round(1e3 * res["dense_f64"]["seconds"], 2),
                        "ours_peak_mib": round(res["ours"]["peak_mib"], 1),
                        "dense_peak_mib": round(res["dense_f64"]["peak_mib"], 1)}
        print(f"{key:>20}: {speed:6.1f}x faster, peak memory ratio {mem:.4f} "
              f"({results[key]['ours_ms']} ms vs {results[key]['dense_ms']} ms dense float64); vs dense float32 "
              f"{results[key]['speedup_vs_f32']}x, memory {results[key]['mem_ratio_vs_f32']}; "
              f"max |ours - dense f64| (loss, gradient) {results[key]['max_abs_diff']}")
    summary = {"bench": "constraint",
               **{f"{k}_{m}": v[m] for k, v in results.items()
                  for m in ("speedup", "mem_ratio", "speedup_vs_f32", "mem_ratio_vs_f32", "max_abs_diff")}}
    if not args.skip_model:
        over = model_overhead(args.reps)
        if over:
            print(f"whole model / bare timm forward (resnet50, B=16, 224²): {over['ratio']:.3f}x")
            summary["model_forward_ratio"] = round(over["ratio"], 3)
    summary["min_speedup"] = min(v["speedup"] for v in results.values())
    summary["min_speedup_vs_f32"] = min(v["speedup_vs_f32"] for v in results.values())
    summary["max_mem_ratio"] = max(v["mem_ratio"] for v in results.values())
    summary["max_abs_diff"] = max(v["max_abs_diff"] for v in results.values())
    print(json.dumps(summary))


if __name__ == "__main__":
    main()

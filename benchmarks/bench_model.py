"""Whole-model forward time over a bare timm forward (ResNet-50, B=16, 224², eval, no grad).

The model adds the CATAMI heads (5 MLPs, 2048 hidden) and the max-constraint to the encoder;
goal: ratio ≤ 1.03. Timings are interleaved (model, bare, model, ...) and the medians compared,
so that load from other processes affects both alike. Last line: one JSON object.

    python benchmarks/bench_model.py [--device cuda] [--repeats 7] [--batch 16]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import timm
import torch

from benthicnet_hf.configuration_benthicnet import BenthicNetConfig
from benthicnet_hf.modeling_benthicnet import BenthicNetForHierarchicalClassification


def timed(fn, x: torch.Tensor, device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn(x)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--encoder", default="resnet50")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)

    model = BenthicNetForHierarchicalClassification(BenthicNetConfig(encoder_name=args.encoder)).eval().to(device)
    bare = timm.create_model(args.encoder, pretrained=False, num_classes=0).eval().to(device)
    bare.load_state_dict(model.backbone.state_dict())
    bare_1000 = timm.create_model(args.encoder, pretrained=False).eval().to(device)  # with its classifier
    x = torch.randn(args.batch, 3, args.size, args.size, device=device)

    runs = {"model": lambda t: model(pixel_values=t), "bare": bare, "bare_1000": bare_1000}
    times: dict[str, list[float]] = {k: [] for k in runs}
    with torch.inference_mode():
        for fn in runs.values():  # warm-up
            timed(fn, x, device)
        for _ in range(args.repeats):
            for name, fn in runs.items():
                times[name].append(timed(fn, x, device))
    med = {k: statistics.median(v) for k, v in times.items()}
    for k, v in med.items():
        print(f"{k:<10} median {v * 1000:9.1f} ms over {args.repeats} runs")
    result = {
        "bench": "model_forward",
        "encoder": args.encoder,
        "batch": args.batch,
        "size": args.size,
        "device": str(device),
        "ratio_vs_bare_features": round(med["model"] / med["bare"], 4),
        "ratio_vs_bare_classifier": round(med["model"] / med["bare_1000"], 4),
        "model_ms": round(med["model"] * 1000, 2),
        "bare_ms": round(med["bare"] * 1000, 2),
        "goal": "<= 1.03",
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()

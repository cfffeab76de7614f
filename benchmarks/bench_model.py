"""Whole model over bare timm: inference forward and a full training step (ResNet-50, CPU by default).

1. Inference (eval, no grad, B=16, 224²): the model (encoder + CATAMI heads, 5 MLPs of 2048 hidden
   units, + the max-constraint) over the bare timm forward; goal ratio ≤ 1.03.
2. Training step (train mode, B=8): forward + backward + AdamW step of the whole model (encoder +
   CATAMI heads + MCLoss on labels and a mask) over a plain timm model with its own linear
   classifier of the same number of outputs (324) + ``BCEWithLogitsLoss`` on the same batch, same
   optimiser → ``train_step_ratio``. The heads are real extra work (≈ 21 M parameters on top of
   ResNet-50's 23.5 M), so this ratio measures their cost; it has no goal of 1.

Timings are interleaved (model, bare, model, ...) and medians compared, so load from other
processes affects both alike. ``--tiny`` (test_resnet, 32², B=4) is the smoke-test mode.
Last line: one JSON object.

    python benchmarks/bench_model.py [--device cuda] [--repeats 7] [--train-repeats 5] [--tiny]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Callable

import timm
import torch
from torch import nn

from benthicnet_hf.configuration_benthicnet import BenthicNetConfig
from benthicnet_hf.modeling_benthicnet import BenthicNetForHierarchicalClassification


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn: Callable[[], object], device: torch.device) -> float:
    """Seconds of one call of ``fn`` (CUDA work included)."""
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - start


def random_batch(model: BenthicNetForHierarchicalClassification, batch: int, size: int, device: torch.device,
                 seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``pixel_values (B,3,size,size)``, coherent-free random 0/1 ``labels (B,N)``, ``mask (B,N)`` (~80 % known)."""
    g = torch.Generator().manual_seed(seed)
    n = model.config.num_labels
    x = torch.randn(batch, 3, size, size, generator=g)
    labels = (torch.rand(batch, n, generator=g) < 0.05).float()
    mask = (torch.rand(batch, n, generator=g) < 0.8).float()
    return x.to(device), labels.to(device), mask.to(device)


def train_pair(encoder: str, size: int, device: torch.device, lr: float = 1e-4, encoder_kwargs: dict | None = None,
               head_hidden_dim: int = 2048) -> tuple[BenthicNetForHierarchicalClassification, nn.Module,
                                                     torch.optim.Optimizer, torch.optim.Optimizer]:
    """Our model and a plain timm model with ``num_classes = N`` (same encoder weights), each with AdamW.

    ``head_hidden_dim=0`` gives our model linear heads: the same parameters as the plain model's one
    linear classifier, so the comparison is equal work and measures only our overhead (MCM, masked loss).
    """
    torch.manual_seed(0)
    model = BenthicNetForHierarchicalClassification(
        BenthicNetConfig(encoder_name=encoder, image_size=size, encoder_kwargs=encoder_kwargs,
                         head_hidden_dim=head_hidden_dim)).train().to(device)
    bare = timm.create_model(encoder, pretrained=False, num_classes=model.config.num_labels,
                             **(encoder_kwargs or {})).train().to(device)
    bare.load_state_dict(model.backbone.state_dict(), strict=False)  # encoder weights; its classifier stays
    return model, bare, torch.optim.AdamW(model.parameters(), lr=lr), torch.optim.AdamW(bare.parameters(), lr=lr)


def model_step(model: nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor, m: torch.Tensor,
               autocast_dtype: torch.dtype | None = None) -> torch.Tensor:
    """One training step of our model: forward (masked MCLoss), backward, optimiser step."""
    with torch.autocast(x.device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
        loss = model(pixel_values=x, labels=y, label_mask=m).loss
    loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    return loss.detach()


def bare_step(bare: nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor,
              autocast_dtype: torch.dtype | None = None) -> torch.Tensor:
    """One plain timm training step: forward, ``BCEWithLogitsLoss`` over the same N outputs, backward, step."""
    with torch.autocast(x.device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
        logits = bare(x)
    loss = nn.functional.binary_cross_entropy_with_logits(logits.float(), y)
    loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    return loss.detach()


def interleaved_medians(runs: dict, repeats: int, device: torch.device) -> tuple[dict, dict]:
    """One warm-up call each, then ``repeats`` rounds of one call each (a busy machine slows both
    sides alike): ``(median seconds, all seconds)`` per name."""
    times: dict[str, list[float]] = {k: [] for k in runs}
    for fn in runs.values():  # warm-up (kernels, optimiser state allocation)
        timed(fn, device)
    for _ in range(repeats):
        for name, fn in runs.items():
            times[name].append(timed(fn, device))
    return {k: statistics.median(v) for k, v in times.items()}, times


def inference_ratio(encoder: str, batch: int, size: int, repeats: int, device: torch.device) -> dict:
    torch.manual_seed(0)
    model = BenthicNetForHierarchicalClassification(
        BenthicNetConfig(encoder_name=encoder, image_size=size)).eval().to(device)
    bare = timm.create_model(encoder, pretrained=False, num_classes=0).eval().to(device)
    bare.load_state_dict(model.backbone.state_dict())
    bare_1000 = timm.create_model(encoder, pretrained=False).eval().to(device)  # with its classifier
    x = torch.randn(batch, 3, size, size, device=device)
    runs = {"model": lambda: model(pixel_values=x), "bare": lambda: bare(x), "bare_1000": lambda: bare_1000(x)}
    with torch.inference_mode():
        med, _ = interleaved_medians(runs, repeats, device)
    for k, v in med.items():
        print(f"forward {k:<10} median {v * 1000:9.1f} ms over {repeats} runs")
    return {"ratio_vs_bare_features": round(med["model"] / med["bare"], 4),
            "ratio_vs_bare_classifier": round(med["model"] / med["bare_1000"], 4),
            "model_ms": round(med["model"] * 1000, 2), "bare_ms": round(med["bare"] * 1000, 2)}


def train_step_ratio(encoder: str, batch: int, size: int, repeats: int, device: torch.device) -> dict:
    model, bare, opt_model, opt_bare = train_pair(encoder, size, device)
    x, y, m = random_batch(model, batch, size, device)
    runs = {"model": lambda: model_step(model, opt_model, x, y, m), "bare": lambda: bare_step(bare, opt_bare, x, y)}
    med, times = interleaved_medians(runs, repeats, device)
    for k, v in times.items():
        print(f"train step {k:<6} median {med[k] * 1000:9.1f} ms; runs {[round(t * 1000) for t in v]}")
    n_model = sum(p.numel() for p in model.parameters())
    n_bare = sum(p.numel() for p in bare.parameters())
    return {"train_step_ratio": round(med["model"] / med["bare"], 4),
            "train_model_ms": round(med["model"] * 1000, 2), "train_bare_ms": round(med["bare"] * 1000, 2),
            "train_batch": batch, "params_model": n_model, "params_bare": n_bare}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--encoder", default="resnet50")
    parser.add_argument("--batch", type=int, default=16, help="inference batch")
    parser.add_argument("--train-batch", type=int, default=8)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--repeats", type=int, default=7, help="inference repeats")
    parser.add_argument("--train-repeats", type=int, default=5)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--tiny", action="store_true", help="test_resnet, 32², B=4, 3 repeats (smoke test)")
    args = parser.parse_args(argv)
    if args.tiny:
        args.encoder, args.size, args.batch, args.train_batch = "test_resnet", 32, 4, 4
        args.repeats, args.train_repeats = 3, 3
    device = torch.device(args.device)
    result = {"bench": "model_forward", "encoder": args.encoder, "batch": args.batch, "size": args.size,
              "device": str(device)}
    result.update(inference_ratio(args.encoder, args.batch, args.size, args.repeats, device))
    result.update(train_step_ratio(args.encoder, args.train_batch, args.size, args.train_repeats, device))
    result["goal"] = "forward <= 1.03; train step: measured, no goal (the heads are real extra work)"
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()

"""GPU throughput: fine-tuning steps vs a plain timm loop, MFU, one SSL step per method, the loader.

Runs only where CUDA exists; elsewhere it prints ``{"bench": "gpu", "skipped": "no CUDA device"}``
and exits 0 (never a made-up figure). On CUDA (defaults: 224², bf16 autocast):

- **fine-tune step** (forward + backward + AdamW step) of our model (encoder + CATAMI heads +
  MCLoss on labels and a mask) and of a plain timm training loop (timm model with its own
  classifier over the same 324 outputs + ``BCEWithLogitsLoss``) on the same batch, for ResNet-50
  and ViT-B/16: images/s of each and ``ratio`` = ours / plain (goal ≥ 0.95). Equal work: our model
  with linear heads (``head_hidden_dim=0``: the same weights as the plain classifier); the
  ``*_mlp_heads`` rows add the reference's 2048-wide MLP heads (real extra work, reported beside).
  Blocks of ``--steps`` steps are interleaved (ours, plain, ours, ...) and the medians compared.
- **MFU** = (forward FLOPs × 3 for forward + backward) × steps/s / the device's peak dense bf16
  FLOP/s. Forward FLOPs are counted with ``torch.utils.flop_counter.FlopCounterMode`` on one
  forward of the batch; the peak comes from :data:`PEAK_BF16_FLOPS` keyed by the device name
  (H100/H200/A100), an unknown device gives ``null``.
- **SSL**: one training step per method (its own loss, AdamW, EMA update where it has one),
  images/s (CNN methods on ResNet-50, MAE on ViT-B/16).
- **loader**: images/s of the training loop's own loader (``training.components.make_dataloaders``)
  with 16 workers over a 4,096-row synthetic BenthicNet table of 128 demo JPEGs (256²; decode +
  augment + labels + collate, no model).

- **probe** (``--sections probe``, not in the default run): ms per step of variants of our ResNet
  step (without the masked MCLoss, channels-last, ``--compile``) beside the plain loop's, to show
  where the gap to the 0.95 goal goes before changing the model.

``--device cpu --tiny`` runs the same functions on CPU with test_resnet / test_vit at 32² (the
smoke test). Last line: one JSON object.

    python benchmarks/bench_gpu.py [--batch 64] [--steps 5] [--repeats 5] [--tiny --device cpu]
"""

from __future__ import annotations

import argparse
import inspect
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_model import bare_step, model_step, random_batch, sync, train_pair  # noqa: E402

#: peak dense bf16 tensor FLOP/s by device-name substring (first match wins; vendor data sheets)
PEAK_BF16_FLOPS: list[tuple[str, float]] = [
    ("H200", 989.4e12), ("H100 PCIe", 756.0e12), ("H100 NVL", 835.5e12), ("H100", 989.4e12),
    ("A100", 312.0e12),
]
SSL_METHODS = ("simsiam", "byol", "barlow_twins", "mocov3", "mae")


def peak_bf16_flops(device_name: str) -> float | None:
    """Peak dense bf16 FLOP/s of a device from its name, or None when the name is not in the table."""
    for key, flops in PEAK_BF16_FLOPS:
        if key.lower() in device_name.lower():
            return flops
    return None


def forward_flops(fn) -> int:
    """FLOPs of one call of ``fn`` as counted by ``FlopCounterMode`` (matmuls, convolutions)."""
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


def _block(step, steps: int, device: torch.device) -> float:
    sync(device)
    t = time.perf_counter()
    for _ in range(steps):
        step()
    sync(device)
    return time.perf_counter() - t


def interleaved(steps_by_name: dict, steps: int, repeats: int, device: torch.device) -> dict[str, float]:
    """Median seconds per step of each callable, blocks of ``steps`` interleaved ``repeats`` times."""
    for step in steps_by_name.values():  # warm-up: kernels, optimiser state, autotuning
        _block(step, 2, device)
    times: dict[str, list[float]] = {k: [] for k in steps_by_name}
    for _ in range(repeats):
        for name, step in steps_by_name.items():
            times[name].append(_block(step, steps, device) / steps)
    return {k: statistics.median(v) for k, v in times.items()}


def finetune_throughput(encoder: str, batch: int, size: int, device: torch.device, steps: int, repeats: int,
                        dtype: torch.dtype | None, peak: float | None, encoder_kwargs: dict | None = None,
                        head_hidden_dim: int = 2048) -> dict:
    """Images/s of our fine-tuning step and of a plain timm step on the same batch, their ratio, MFU.

    ``head_hidden_dim=0`` (linear heads) is equal work with the plain loop's linear classifier; the
    default 2048 (the reference's MLP heads: 5 × 2048² more weights) adds real work on our side.
    """
    model, bare, opt_model, opt_bare = train_pair(encoder, size, device, encoder_kwargs=encoder_kwargs,
                                                  head_hidden_dim=head_hidden_dim)
    x, y, m = random_batch(model, batch, size, device)
    med = interleaved({"ours": lambda: model_step(model, opt_model, x, y, m, dtype),
                       "plain": lambda: bare_step(bare, opt_bare, x, y, dtype)}, steps, repeats, device)
    flops = {"ours": forward_flops(lambda: model(pixel_values=x)), "plain": forward_flops(lambda: bare(x))}
    out = {"batch": batch, "size": size, "head_hidden_dim": head_hidden_dim}
    for name in ("ours", "plain"):
        out[f"{name}_images_per_s"] = round(batch / med[name], 1)
        out[f"{name}_step_ms"] = round(med[name] * 1000, 2)
        out[f"{name}_forward_gflops"] = round(flops[name] / 1e9, 4)
        out[f"{name}_mfu"] = None if peak is None else round(3 * flops[name] / med[name] / peak, 4)
    out["ratio"] = round(med["plain"] / med["ours"], 4)  # images/s ours over plain
    return out


def probe_finetune_step(encoder: str, batch: int, size: int, device: torch.device, steps: int, repeats: int,
                        dtype: torch.dtype | None, compile_models: bool = False) -> dict:
    """Where our step's extra time goes, for the next fix: ms per step of variants on one batch.

    ``ours`` / ``plain`` as in :func:`finetune_throughput` (linear heads); ``ours_bce``: our model's
    forward without labels (heads, max-constraint, finiteness check) and a plain BCE on its logits,
    i.e. ours without the masked MCLoss; ``*_channels_last``: both in channels-last memory format;
    with ``compile_models``, ``*_compiled``: ``torch.compile`` of each model (CUDA; minutes to compile).
    Each variant trains its own copy with its own AdamW.
    """
    import copy

    model, bare, _, _ = train_pair(encoder, size, device, head_hidden_dim=0)
    x, y, m = random_batch(model, batch, size, device)

    def ours_step(net, inputs):
        opt = torch.optim.AdamW(net.parameters(), lr=1e-4)
        return lambda: model_step(net, opt, inputs, y, m, dtype)

    def plain_step(net, inputs):
        opt = torch.optim.AdamW(net.parameters(), lr=1e-4)
        return lambda: bare_step(net, opt, inputs, y, dtype)

    def ours_bce_step(net, inputs):
        opt = torch.optim.AdamW(net.parameters(), lr=1e-4)

        def step():
            with torch.autocast(inputs.device.type, dtype=dtype, enabled=dtype is not None):
                logits = net(pixel_values=inputs).logits
            torch.nn.functional.binary_cross_entropy_with_logits(logits.float(), y).backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
        return step

    cl = x.contiguous(memory_format=torch.channels_last)
    runs = {"ours": ours_step(copy.deepcopy(model), x), "plain": plain_step(copy.deepcopy(bare), x),
            "ours_bce": ours_bce_step(copy.deepcopy(model), x),
            "ours_channels_last": ours_step(copy.deepcopy(model).to(memory_format=torch.channels_last), cl),
            "plain_channels_last": plain_step(copy.deepcopy(bare).to(memory_format=torch.channels_last), cl)}
    if compile_models:
        runs["ours_compiled"] = ours_step(torch.compile(copy.deepcopy(model)), x)
        runs["plain_compiled"] = plain_step(torch.compile(copy.deepcopy(bare)), x)
    med = interleaved(runs, steps, repeats, device)
    out: dict = {"encoder": encoder, "batch": batch, "size": size}
    out.update({f"{k}_ms": round(v * 1000, 2) for k, v in med.items()})
    out["ratio"] = round(med["plain"] / med["ours"], 4)
    out["ratio_channels_last"] = round(med["plain_channels_last"] / med["ours_channels_last"], 4)
    if compile_models:
        out["ratio_compiled"] = round(med["plain_compiled"] / med["ours_compiled"], 4)
    return out


def ssl_throughput(method: str, encoder: str, batch: int, size: int, device: torch.device, steps: int,
                   repeats: int, dtype: torch.dtype | None) -> dict:
    """Images/s of one SSL training step (loss, backward, AdamW step, EMA update where there is one)."""
    from benthicnet_hf.ssl import SINGLE_VIEW_METHODS, build_ssl_method

    torch.manual_seed(0)
    net = build_ssl_method(method, encoder, image_size=size).to(device).train()
    opt = torch.optim.AdamW([p for p in net.parameters() if p.requires_grad], lr=1e-4)
    g = torch.Generator().manual_seed(0)
    views = [torch.randn(batch, 3, size, size, generator=g).to(device) for _ in range(2)]
    single = method in SINGLE_VIEW_METHODS
    counter = iter(range(10**9))

    def step() -> None:
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            loss = net(views[0]) if single else net(views[0], views[1])
        loss.float().backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if hasattr(net, "update_momentum"):
            net.update_momentum(next(counter), 1000)

    sec = interleaved({method: step}, steps, repeats, device)[method]
    return {"encoder": encoder, "batch": batch, "images_per_s": round(batch / sec, 1), "step_ms": round(sec * 1000, 2)}


def loader_throughput(num_workers: int, images: int, image_size: int, crop: int, batch: int,
                      use_cuda: bool, pool: int = 128) -> dict:
    """Images/s of the fine-tuning loop's train loader (one epoch after one warm-up epoch).

    ``images`` rows of a synthetic BenthicNet table over ``pool`` demo JPEGs of ``image_size``².
    """
    from bench_rehearsal import image_pool

    from benthicnet_hf import Hierarchy
    from benthicnet_hf.configuration_benthicnet import BenthicNetConfig
    from benthicnet_hf.data import build_dataset
    from benthicnet_hf.data.synthetic_table import link_image_pool, synthetic_benthicnet_table
    from benthicnet_hf.training.args import FinetuneArguments
    from benthicnet_hf.training.components import EpochCounter, make_dataloaders

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        frame = synthetic_benthicnet_table(images, seed=0, rows_per_site=8)
        link_image_pool(frame, image_pool(work, pool, image_size), work)
        frame.to_csv(work / "table.csv", index=False)
        data = build_dataset(work / "table.csv", cache_dir=work / "cache")
        args = FinetuneArguments(output_dir=str(work / "run"), table=str(work / "table.csv"),
                                 dataloader_num_workers=num_workers, per_device_train_batch_size=batch)
        counter = EpochCounter()
        extra = {"use_cuda": use_cuda} if "use_cuda" in inspect.signature(make_dataloaders).parameters else {}
        loader = make_dataloaders(args, data, Hierarchy.catami(), BenthicNetConfig(image_size=crop), counter,
                                  **extra)["train"]
        rates = []
        for epoch in range(2):
            if hasattr(counter, "epoch"):
                counter.epoch = epoch
            t, n = time.perf_counter(), 0
            for b in loader:
                n += b["pixel_values"].shape[0]
            rates.append(n / (time.perf_counter() - t))
    return {"workers": num_workers, "train_images": n, "source_size": image_size, "crop": crop,
            "images_per_s": round(rates[-1], 1), "first_epoch_images_per_s": round(rates[0], 1)}


def run(device: torch.device, tiny: bool, batch: int, steps: int, repeats: int, workers: int,
        loader_images: int, dtype: torch.dtype | None,
        sections: tuple[str, ...] = ("finetune", "ssl", "loader"), compile_models: bool = False) -> dict:
    """Every section; a section that fails records its error instead of a figure."""
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    peak = peak_bf16_flops(name) if device.type == "cuda" else None
    size = 32 if tiny else 224
    cnn, vit = ("test_resnet", "test_vit") if tiny else ("resnet50", "vit_base_patch16_224")
    vit_kwargs = {"img_size": size} if tiny else None
    out: dict = {"bench": "gpu", "device": name, "dtype": str(dtype).replace("torch.", "") if dtype else "float32",
                 "peak_bf16_flops": peak, "finetune": {}, "ssl": {}}

    def section(where: dict, key: str, fn) -> None:
        try:
            where[key] = fn()
        except Exception as err:  # noqa: BLE001 - recorded in the JSON, the other sections still run
            where[key] = {"error": f"{type(err).__name__}: {err}"[:300]}
        print(key, json.dumps(where[key]), flush=True)
        if device.type == "cuda":
            torch.cuda.empty_cache()

    if "finetune" in sections:
        for enc, kwargs in ((cnn, None), (vit, vit_kwargs)):
            # linear heads: equal work with the plain loop (the goal); MLP heads: the reference's design
            section(out["finetune"], enc, lambda: finetune_throughput(enc, batch, size, device, steps, repeats,
                                                                      dtype, peak, kwargs, head_hidden_dim=0))
            section(out["finetune"], f"{enc}_mlp_heads", lambda: finetune_throughput(
                enc, batch, size, device, steps, repeats, dtype, peak, kwargs, head_hidden_dim=2048))
    if "probe" in sections:
        section(out, "probe", lambda: probe_finetune_step(cnn, batch, size, device, steps, repeats, dtype,
                                                          compile_models))
    if "ssl" in sections:
        for method in SSL_METHODS:
            enc = vit if method == "mae" else cnn
            section(out["ssl"], method, lambda: ssl_throughput(method, enc, batch, size, device, steps, repeats, dtype))
    if "loader" in sections:
        section(out, "loader", lambda: loader_throughput(workers, loader_images, 48 if tiny else 256, size,
                                                         batch, device.type == "cuda", 16 if tiny else 128))
    ratios = [v["ratio"] for k, v in out["finetune"].items() if "ratio" in v and not k.endswith("_mlp_heads")]
    out["worst_finetune_ratio"] = min(ratios) if ratios else None
    out["goal"] = "finetune ratio >= 0.95 on equal work (linear heads)"
    return out


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default=None, help="default: cuda when available, else print the skip JSON")
    p.add_argument("--tiny", action="store_true", help="test_resnet / test_vit at 32² (with --device cpu: smoke test)")
    p.add_argument("--batch", type=int, default=None, help="default 64 (tiny: 4)")
    p.add_argument("--steps", type=int, default=None, help="steps per timed block, default 5 (tiny: 1)")
    p.add_argument("--repeats", type=int, default=None, help="interleaved blocks, default 5 (tiny: 2)")
    p.add_argument("--workers", type=int, default=None, help="loader workers, default 16 (tiny: 2)")
    p.add_argument("--loader-images", type=int, default=None, help="table rows, default 4096 (tiny: 96)")
    p.add_argument("--fp32", action="store_true", help="no bf16 autocast")
    p.add_argument("--sections", nargs="+", default=["finetune", "ssl", "loader"],
                   choices=["finetune", "ssl", "loader", "probe"],
                   help="what to measure (default: finetune ssl loader; probe: variants of our CNN step)")
    p.add_argument("--compile", action="store_true", help="probe: also torch.compile both models")
    a = p.parse_args(argv)
    if a.device is None and not torch.cuda.is_available():
        result = {"bench": "gpu", "skipped": "no CUDA device"}
        print(json.dumps(result))
        return result
    device = torch.device(a.device or "cuda")
    tiny = a.tiny
    pick = lambda v, full, small: v if v is not None else (small if tiny else full)  # noqa: E731
    dtype = None if a.fp32 or device.type != "cuda" else torch.bfloat16
    torch.backends.cudnn.benchmark = True
    if device.type == "cpu" and tiny:
        torch.set_num_threads(1)  # the smoke test shares a small CPU
    result = run(device, tiny, pick(a.batch, 64, 4), pick(a.steps, 5, 1), pick(a.repeats, 5, 2),
                 pick(a.workers, 16, 2), pick(a.loader_images, 4096, 96), dtype, tuple(a.sections), a.compile)
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()

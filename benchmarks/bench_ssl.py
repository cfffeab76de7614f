"""Step time of each SSL method against lightly's equivalent (same timm backbone, batch, heads; CPU).

Per method a training step (forward, backward, SGD step, EMA update where the method has one) is
timed for ours and for lightly's construction from its documented building blocks, interleaved
rep by rep so machine load affects both alike; the median ratio ours / lightly is reported
(goal <= 1.0). Last line: one JSON object.

    python benchmarks/bench_ssl.py [--reps 4] [--batch 16] [--threads 2]
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import time
import warnings

import timm
import torch
from torch import nn

from benthicnet_hf.ssl import build_ssl_method

from lightly.loss import BarlowTwinsLoss, NegativeCosineSimilarity, NTXentLoss
from lightly.models import utils as lu
from lightly.models.modules import heads as lh
from lightly.models.modules.masked_autoencoder_timm import MAEDecoderTIMM
from lightly.models.modules.masked_vision_transformer_timm import MaskedVisionTransformerTIMM
from lightly.utils.scheduler import cosine_schedule

CNN, VIT = "resnet18", "test_vit"
warnings.filterwarnings("ignore", message="MAEDecoderTIMM is deprecated")  # still lightly 1.6's MAE decoder


class LightlySimSiam(nn.Module):
    def __init__(self):
        super().__init__()
        self.backbone = timm.create_model(CNN, num_classes=0)
        self.proj = lh.SimSiamProjectionHead(512, 512, 512)
        self.pred = lh.SimSiamPredictionHead(512, 128, 512)
        self.crit = NegativeCosineSimilarity()

    def forward(self, x0, x1):
        z0, z1 = self.proj(self.backbone(x0)), self.proj(self.backbone(x1))
        p0, p1 = self.pred(z0), self.pred(z1)
        return 0.5 * (self.crit(p0, z1.detach()) + self.crit(p1, z0.detach()))


class LightlyBYOL(nn.Module):
    def __init__(self):
        super().__init__()
        self.backbone = timm.create_model(CNN, num_classes=0)
        self.proj = lh.BYOLProjectionHead(512, 1024, 256)
        self.pred = lh.BYOLPredictionHead(256, 1024, 256)
        self.backbone_m, self.proj_m = copy.deepcopy(self.backbone), copy.deepcopy(self.proj)
        lu.deactivate_requires_grad(self.backbone_m)
        lu.deactivate_requires_grad(self.proj_m)
        self.crit = NegativeCosineSimilarity()

    def update_momentum(self, step, total):
        m = cosine_schedule(step, total, 0.996, 1.0)
        lu.update_momentum(self.backbone, self.backbone_m, m)
        lu.update_momentum(self.proj, self.proj_m, m)

    def forward(self, x0, x1):
        p0, p1 = self.pred(self.proj(self.backbone(x0))), self.pred(self.proj(self.backbone(x1)))
        with torch.no_grad():
            z0, z1 = self.proj_m(self.backbone_m(x0)), self.proj_m(self.backbone_m(x1))
        return 0.5 * (self.crit(p0, z1) + self.crit(p1, z0))


class LightlyBarlowTwins(nn.Module):
    def __init__(self):
        super().__init__()
        self.backbone = timm.create_model(CNN, num_classes=0)
        self.proj = lh.BarlowTwinsProjectionHead(512, 1024, 1024)
        self.crit = BarlowTwinsLoss(lambda_param=5.1e-3)

    def forward(self, x0, x1):
        return self.crit(self.proj(self.backbone(x0)), self.proj(self.backbone(x1)))


class LightlyMoCoV3(nn.Module):
    def __init__(self, image_size):
        super().__init__()
        self.backbone = timm.create_model(VIT, num_classes=0, img_size=image_size)
        d = self.backbone.num_features
        self.proj = lh.MoCoProjectionHead(d, 1024, 256, num_layers=3, batch_norm=True)
        self.pred = lh.BYOLPredictionHead(256, 1024, 256)
        self.backbone_m, self.proj_m = copy.deepcopy(self.backbone), copy.deepcopy(self.proj)
        lu.deactivate_requires_grad(self.backbone_m)
        lu.deactivate_requires_grad(self.proj_m)
        self.crit = NTXentLoss(temperature=0.2)

    def update_momentum(self, step, total):
        m = cosine_schedule(step, total, 0.99, 1.0)
        lu.update_momentum(self.backbone, self.backbone_m, m)
        lu.update_momentum(self.proj, self.proj_m, m)

    def forward(self, x0, x1):
        q0, q1 = self.pred(self.proj(self.backbone(x0))), self.pred(self.proj(self.backbone(x1)))
        with torch.no_grad():
            k0, k1 = self.proj_m(self.backbone_m(x0)), self.proj_m(self.backbone_m(x1))
        return self.crit(q0, k1) + self.crit(q1, k0)


class LightlyMAE(nn.Module):
    def __init__(self, image_size):
        super().__init__()
        vit = timm.create_model(VIT, num_classes=0, img_size=image_size)
        self.patch_size = vit.patch_embed.patch_size[0]
        self.backbone = MaskedVisionTransformerTIMM(vit=vit)
        self.seq_len = self.backbone.sequence_length
        self.decoder = MAEDecoderTIMM(num_patches=vit.patch_embed.num_patches, patch_size=self.patch_size,
                                      embed_dim=vit.embed_dim, decoder_embed_dim=64, decoder_depth=1,
                                      decoder_num_heads=4)

    def forward(self, images):
        b = images.shape[0]
        idx_keep, idx_mask = lu.random_token_mask((b, self.seq_len), mask_ratio=0.75, device=images.device)
        x = self.backbone.encode(images=images, idx_keep=idx_keep)
        x = self.decoder.embed(x)
        full = lu.repeat_token(self.decoder.mask_token, (b, self.seq_len))
        full = lu.set_at_index(full, idx_keep, x.type_as(full))
        pred = self.decoder.predict(lu.get_at_index(self.decoder.decode(full), idx_mask))
        target = lu.get_at_index(lu.patchify(images, self.patch_size), idx_mask - 1)
        mean, var = target.mean(-1, keepdim=True), target.var(-1, keepdim=True)
        return nn.functional.mse_loss(pred, (target - mean) / (var + 1e-6) ** 0.5)


def _pairs(image_size):
    return {
        "simsiam": (lambda: build_ssl_method("simsiam", CNN, proj_hidden_dim=512, proj_dim=512, pred_hidden_dim=128),
                    LightlySimSiam, 2),
        "byol": (lambda: build_ssl_method("byol", CNN, proj_hidden_dim=1024, proj_dim=256), LightlyBYOL, 2),
        "barlow_twins": (lambda: build_ssl_method("barlow_twins", CNN, proj_hidden_dim=1024, proj_dim=1024),
                         LightlyBarlowTwins, 2),
        "mocov3": (lambda: build_ssl_method("mocov3", VIT, image_size=image_size, proj_hidden_dim=1024, proj_dim=256),
                   lambda: LightlyMoCoV3(image_size), 2),
        "mae": (lambda: build_ssl_method("mae", VIT, image_size=image_size, decoder_dim=64, decoder_depth=1,
                                         decoder_heads=4), lambda: LightlyMAE(image_size), 1),
    }


def _step_fn(model, views):
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1e-3, momentum=0.9)
    state = {"step": 0}

    def step():
        loss = model(*views)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if hasattr(model, "update_momentum"):
            model.update_momentum(state["step"], 1000)
        state["step"] += 1

    return step


def _time(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=4)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--image_size", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    out = {"bench": "ssl_step_time_vs_lightly", "device": "cpu", "threads": args.threads, "batch": args.batch,
           "image_size": args.image_size, "backbones": {"cnn": CNN, "vit": VIT}}
    ratios = {}
    for name, (ours_fn, theirs_fn, n_views) in _pairs(args.image_size).items():
        torch.manual_seed(0)
        views = tuple(torch.randn(args.batch, 3, args.image_size, args.image_size) for _ in range(n_views))
        ours, theirs = ours_fn().train(), theirs_fn().train()
        step_ours, step_theirs = _step_fn(ours, views), _step_fn(theirs, views)
        for _ in range(args.warmup):
            step_ours(), step_theirs()
        t_ours, t_theirs = [], []
        for _ in range(args.reps):  # interleaved: load on the machine hits both alike
            t_ours.append(_time(step_ours))
            t_theirs.append(_time(step_theirs))
        r = statistics.median(a / b for a, b in zip(t_ours, t_theirs))
        ratios[name] = round(r, 3)
        out[f"{name}_ms_ours"] = round(1e3 * statistics.median(t_ours), 1)
        out[f"{name}_ms_lightly"] = round(1e3 * statistics.median(t_theirs), 1)
        print(f"{name:13s} ours {out[f'{name}_ms_ours']:8.1f} ms  lightly {out[f'{name}_ms_lightly']:8.1f} ms  ratio {r:.3f}",
              flush=True)
    out["ratio"] = ratios
    out["max_ratio"] = max(ratios.values())
    out["goal_met"] = out["max_ratio"] <= 1.0
    print(json.dumps(out))


if __name__ == "__main__":
    main()

"""The bundled demo set: deterministic, real CATAMI labels with missing information, and enough
visual signal that a tiny CNN trained briefly on a CPU beats the label-prior baseline."""

from __future__ import annotations

import hashlib
import time

import numpy as np
import pandas as pd
import timm
import torch
from torch.utils.data import DataLoader

from benthicnet_hf import Hierarchy, LabelEncoder
from benthicnet_hf.data import build_dataset
from benthicnet_hf.data.demo import DEMO_SOURCE_EXHAUSTIVE, SUBSTRATES, make_demo_dataset
from benthicnet_hf.data.table import DEFAULT_LABEL_COLUMNS
from benthicnet_hf.data.transforms import collate_hml, eval_transform, hml_transform, train_transform

CATAMI = Hierarchy.catami()


def _digest(folder):
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            h.update(p.relative_to(folder).as_posix().encode() + p.read_bytes())
    return h.hexdigest()


def test_deterministic_and_fast(tmp_path):
    t0 = time.perf_counter()
    make_demo_dataset(tmp_path / "a", num_images=120, image_size=64, seed=5)
    assert time.perf_counter() - t0 < 20
    make_demo_dataset(tmp_path / "b", num_images=120, image_size=64, seed=5)
    make_demo_dataset(tmp_path / "c", num_images=120, image_size=64, seed=6)
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b") != _digest(tmp_path / "c")


def test_labels_are_catami_with_missing_information(tmp_path):
    table = pd.read_csv(make_demo_dataset(tmp_path / "d", num_images=400, image_size=32, seed=0),
                        dtype=str, keep_default_na=False)
    assert {"image", "dataset", "site", "latitude", "longitude", "date"} <= set(table.columns)
    cols = {h: table[c].tolist() for h, c in DEFAULT_LABEL_COLUMNS.items()}
    enc = LabelEncoder(CATAMI).encode(cols)  # raises on any label that is not a CATAMI node
    for head, col in DEFAULT_LABEL_COLUMNS.items():
        assert (table[col] == "").mean() > 0.02, f"{head}: no missing-head rows"
    sub = table["catami_substrate"]
    assert set(SUBSTRATES) <= set(sub)
    assert (sub == "Substrate > Unconsolidated (soft)").any()  # labels cut short
    assert table["catami_biota"].str.contains(";").any()  # several organisms per image
    # survey B is non-exhaustive for biota: it never lists two organisms
    assert not table.loc[table["dataset"] == "demo_survey_b", "catami_biota"].str.contains(";").any()
    sl = CATAMI.head_slice("substrate")
    cut = (sub == "Substrate > Unconsolidated (soft)").to_numpy()
    assert (enc.mask[cut, sl] == 0).any(axis=1).all()  # unknown below the cut
    # the demo's opt-in: survey B's biota is non-exhaustive (only positives known), survey A keeps
    # the exhaustive default (known negatives)
    assert DEMO_SOURCE_EXHAUSTIVE == {"demo_survey_b": {"biota": False}}
    enc = LabelEncoder(CATAMI, source_exhaustive=DEMO_SOURCE_EXHAUSTIVE).encode(
        cols, sources=table["dataset"].tolist())
    b = CATAMI.head_slice("biota")
    labelled = (table["catami_biota"] != "").to_numpy()
    in_b = (table["dataset"] == "demo_survey_b").to_numpy()
    np.testing.assert_array_equal(enc.mask[in_b & labelled, b], enc.targets[in_b & labelled, b])
    negatives = (enc.mask[:, b] & (1 - enc.targets[:, b])).sum(axis=1)
    assert (negatives[~in_b & labelled] > 200).all() and (negatives[in_b] == 0).all()


def test_tiny_cnn_beats_label_prior(tmp_path):
    torch.manual_seed(0)
    table = make_demo_dataset(tmp_path / "demo", num_images=320, image_size=56, seed=0)
    ds = build_dataset(table, cache_dir=tmp_path / "c", source_exhaustive=DEMO_SOURCE_EXHAUSTIVE,
                       split_fractions={"train": 0.75, "test": 0.25}, seed=0)
    size = 48
    train = ds["train"].with_transform(hml_transform(CATAMI, train_transform(size, scale=(0.5, 1.0))))
    test = ds["test"].with_transform(hml_transform(CATAMI, eval_transform(size, crop_pct=1.0)))
    # label prior: per-node frequency of 1 among the known training bits
    ty = np.asarray([np.concatenate([r[f"{h}_target"] for h in CATAMI.head_names]) for r in
                     ds["train"].remove_columns("image")], dtype=np.float64)
    tm = np.asarray([np.concatenate([r[f"{h}_mask"] for h in CATAMI.head_names]) for r in
                     ds["train"].remove_columns("image")], dtype=np.float64)
    prior = np.clip((ty * tm).sum(0) / np.maximum(tm.sum(0), 1), 1e-3, 1 - 1e-3)

    model = timm.create_model("test_resnet", pretrained=False, num_classes=CATAMI.num_nodes)
    with torch.no_grad():  # start from the prior, as one would for a long-tailed multi-label head
        model.get_classifier().bias.copy_(torch.from_numpy(np.log(prior / (1 - prior))).float())
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-4)
    loader = DataLoader(train, batch_size=32, shuffle=True, collate_fn=collate_hml)
    bce = torch.nn.functional.binary_cross_entropy_with_logits
    for _ in range(8):  # a fixed budget (~30 s of CPU on 2 idle cores), not wall-clock: results must not depend on load
        model.train()
        for b in loader:
            loss = (bce(model(b["pixel_values"]), b["labels"], reduction="none") * b["label_mask"]).sum() \
                / b["label_mask"].sum().clamp_min(1)
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    batch = collate_hml([test[i] for i in range(len(test))])
    with torch.no_grad():
        probs = torch.sigmoid(model(batch["pixel_values"])).numpy()
    y, m = batch["labels"].numpy(), batch["label_mask"].numpy()
    def masked_bce(p):
        p = np.clip(p, 1e-6, 1 - 1e-6)
        return float(-(m * (y * np.log(p) + (1 - y) * np.log(1 - p))).sum() / m.sum())

    # BCE over the heads a picture shows (substrate, bedforms): the prior cannot tell images apart
    seen = np.zeros(CATAMI.num_nodes, dtype=bool)
    seen[CATAMI.head_slice("substrate")] = seen[CATAMI.head_slice("bedforms")] = True
    y, m, probs = y[:, seen], m[:, seen], probs[:, seen]
    model_bce, prior_bce = masked_bce(probs), masked_bce(np.broadcast_to(prior[seen], probs.shape))
    prior = prior[seen]
    # substrate class among the five drawn kinds, on test rows labelled down to that level
    idx = [CATAMI.index("substrate", s) - CATAMI.head_slice("substrate").start for s in SUBSTRATES]
    labelled = y[:, idx].sum(1) == 1
    truth = y[labelled][:, idx].argmax(1)
    model_acc = float((probs[labelled][:, idx].argmax(1) == truth).mean())
    prior_acc = float((truth == prior[idx].argmax()).mean())
    print(f"masked BCE model {model_bce:.4f} vs prior {prior_bce:.4f}; "
          f"substrate accuracy model {model_acc:.3f} vs prior {prior_acc:.3f} ({labelled.sum()} rows)")
    assert model_bce < prior_bce
    assert model_acc > prior_acc + 0.2

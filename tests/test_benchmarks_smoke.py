"""Smoke runs of bench_model / bench_ssl / bench_gpu / bench_rehearsal in their tiny modes, and the synthetic table.

The benchmarks run as scripts (their last stdout line must be one JSON object); their figures are
checked for consistency, not speed. The synthetic BenthicNet table is read back with the
builder's own table functions (an independent path from its generator).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from benthicnet_hf import Hierarchy
from benthicnet_hf.data.mask_columns import listed_unknowns, positive_conflicts, resolve_mask_columns
from benthicnet_hf.data.synthetic_table import MISSING_RATES, link_image_pool, synthetic_benthicnet_table
from benthicnet_hf.data.table import TableColumns, label_strings, resolve_label_columns
from benthicnet_hf.labels import LabelEncoder

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"


def run_bench(script: str, *args: str, timeout: int = 600) -> dict:
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, str(BENCH / script), *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_bench_model_tiny_reports_inference_and_train_step():
    out = run_bench("bench_model.py", "--tiny", "--device", "cpu")
    assert out["encoder"] == "test_resnet" and out["size"] == 32
    for key in ("ratio_vs_bare_features", "train_step_ratio", "train_model_ms", "train_bare_ms"):
        assert out[key] > 0, key
    assert out["train_step_ratio"] == pytest.approx(out["train_model_ms"] / out["train_bare_ms"], rel=0.01)
    assert out["params_model"] > out["params_bare"]  # the CATAMI heads are extra parameters


def test_bench_ssl_reports_ratios_and_the_a_a_control():
    out = run_bench("bench_ssl.py", "--reps", "3", "--warmup", "0", "--batch", "2", "--image_size", "32",
                    "--methods", "mocov3", "mae", "--control")
    assert set(out["ratio"]) == set(out["control"]) == {"mocov3", "mae"}
    for name in ("mocov3", "mae"):
        assert out["ratio_spread"][name]["min"] <= out["ratio"][name] <= out["ratio_spread"][name]["max"]
        assert out["control"][name]["q1"] <= out["control"][name]["median"] <= out["control"][name]["q3"]
    assert out["max_ratio"] == max(out["ratio"].values())


def test_bench_gpu_skips_without_cuda():
    if torch.cuda.is_available():
        pytest.skip("CUDA present: the skip path is not taken")
    assert run_bench("bench_gpu.py") == {"bench": "gpu", "skipped": "no CUDA device"}


def test_bench_gpu_cpu_tiny_runs_every_section():
    out = run_bench("bench_gpu.py", "--device", "cpu", "--tiny")
    assert out["device"] == "cpu" and out["peak_bf16_flops"] is None
    for enc in ("test_resnet", "test_vit"):
        f = out["finetune"][enc]
        assert "error" not in f, f
        assert f["ours_mfu"] is None and f["plain_mfu"] is None  # no peak for a CPU: never a made-up MFU
        assert f["ratio"] == pytest.approx(f["ours_images_per_s"] / f["plain_images_per_s"], rel=0.05)
        # linear heads: the same matmuls as the plain classifier (equal work; the MCM adds no FLOPs)
        assert f["head_hidden_dim"] == 0
        assert f["ours_forward_gflops"] == pytest.approx(f["plain_forward_gflops"], rel=1e-3)
        assert f["plain_forward_gflops"] > 0
        mlp = out["finetune"][f"{enc}_mlp_heads"]
        assert "error" not in mlp and mlp["head_hidden_dim"] == 2048
        assert mlp["ours_forward_gflops"] > mlp["plain_forward_gflops"]  # the MLP heads are real extra work
    assert set(out["ssl"]) == {"simsiam", "byol", "barlow_twins", "mocov3", "mae"}
    assert all("error" not in v and v["images_per_s"] > 0 for v in out["ssl"].values()), out["ssl"]
    assert out["loader"]["workers"] == 2 and out["loader"]["train_images"] > 0, out["loader"]


def test_bench_gpu_probe_times_each_variant_on_cpu():
    out = run_bench("bench_gpu.py", "--device", "cpu", "--tiny", "--sections", "probe")
    probe = out["probe"]
    assert "error" not in probe, probe
    for key in ("ours", "plain", "ours_bce", "ours_channels_last", "plain_channels_last"):
        assert probe[f"{key}_ms"] > 0, key
    assert probe["ratio"] == pytest.approx(probe["plain_ms"] / probe["ours_ms"], rel=0.02)
    assert "ratio_compiled" not in probe  # only with --compile


def test_peak_table_and_flop_counter():
    sys.path.insert(0, str(BENCH))
    try:
        import bench_gpu
    finally:
        sys.path.remove(str(BENCH))
    assert bench_gpu.peak_bf16_flops("NVIDIA H100 80GB HBM3") == 989.4e12
    assert bench_gpu.peak_bf16_flops("NVIDIA H100 PCIe") == 756.0e12
    assert bench_gpu.peak_bf16_flops("NVIDIA H200") == 989.4e12
    assert bench_gpu.peak_bf16_flops("NVIDIA A100-SXM4-80GB") == 312.0e12
    assert bench_gpu.peak_bf16_flops("Tesla T4") is None
    layer, x = nn.Linear(10, 20), torch.randn(4, 10)
    assert bench_gpu.forward_flops(lambda: layer(x)) == 2 * 4 * 10 * 20  # one matmul: 2·B·in·out


def test_bench_rehearsal_small(tmp_path):
    out = run_bench("bench_rehearsal.py", "--rows", "2000", "--pool", "16", "--workdir", str(tmp_path / "w"))
    assert out["rows"] == 2000 and sum(out["split_rows"].values()) == 2000  # no row refused by the builder
    assert out["stream_rows"] == out["split_rows"]["train"]
    assert out["parquet_shards"] == len(out["split_rows"])
    assert out["peak_rss_end_mb"] >= out["peak_rss_after_build_mb"] >= out["rss_before_build_mb"] > 0
    assert not (tmp_path / "w").exists()  # deleted without --keep


def test_synthetic_table_reads_back_in_the_released_format(tmp_path):
    h = Hierarchy.catami()
    frame = synthetic_benthicnet_table(3000, h, seed=1)
    assert frame.equals(synthetic_benthicnet_table(3000, h, seed=1))
    columns = TableColumns()
    label_cols = resolve_label_columns(frame, h, columns)
    mask_cols = resolve_mask_columns(frame, h, columns)
    assert set(label_cols) == set(mask_cols) == set(h.head_names)
    labels, bad = label_strings(frame, h, label_cols)
    unknown, bad_masks = listed_unknowns(frame, h, mask_cols)
    assert bad == [] and bad_masks == []
    encoded = LabelEncoder(h).encode(labels, sources=frame["dataset"].tolist(), column_names=label_cols)
    assert positive_conflicts(encoded.targets, unknown, h, mask_cols) == []
    for head in h.heads:  # missing-head rates as configured (binomial, 3000 rows: ±0.03 is > 4 sigma)
        share = float((frame[label_cols[head.name]] == "").mean())
        assert abs(share - MISSING_RATES[head.name]) < 0.03, (head.name, share)
    # Zipf-like: the commonest biota node is far above uniform; cut-short labels are interior nodes
    biota = h.head("biota")
    leaf = {i for i in range(len(biota.nodes)) if not any(i in ps for ps in biota.parents)}
    firsts = [json.loads(c)[0] for c in frame["catami_biota"] if c]
    top_share = Counter(firsts).most_common(1)[0][1] / len(firsts)
    assert top_share > 5 / len(leaf)
    interior = np.mean([i not in leaf for i in firsts])
    assert 0.15 < interior < 0.45  # cut_short=0.3, minus leaves with no ancestor
    # a cut-short single label lists its descendants as unknown
    sub = h.head("substrate")
    for lab, mask in zip(frame["catami_substrate"], frame["substrate_mask"]):
        if lab:
            (i,) = json.loads(lab)
            expected = sorted(sub.descendants[i] - {i})
            assert (json.loads(mask) if mask else []) == expected
    pool = [tmp_path / f"p{i}.jpg" for i in range(3)]
    for p in pool:
        p.write_bytes(b"x")
    assert link_image_pool(frame.head(7), pool, tmp_path / "root") == 7
    assert os.path.realpath(tmp_path / "root" / frame["image"][4]) == str(pool[1].resolve())

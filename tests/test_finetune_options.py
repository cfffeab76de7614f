"""Fine-tuning options: prior-initialised head biases, LP-ROS and node weights (exact resume,
sharding over processes), ``--init_from``, ``--linear_probe``, ``--table``/``--image_root`` and
``--dataset_dir``."""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path

import datasets
import numpy as np
import pandas as pd
import pytest
import torch
from accelerate.data_loader import prepare_data_loader, skip_first_batches
from accelerate.state import AcceleratorState, GradientState
from PIL import Image
from safetensors.torch import load_file
from torch.utils.data import DataLoader

from benthicnet_hf import Hierarchy
from benthicnet_hf.configuration_benthicnet import BenthicNetConfig
from benthicnet_hf.modeling_benthicnet import BenthicNetForHierarchicalClassification
from benthicnet_hf.output_types.per_level import PerLevelOutputType
from benthicnet_hf.training import list_checkpoints, parse_args, run_finetune
from benthicnet_hf.training.bias_init import init_head_biases, known_bit_priors
from benthicnet_hf.rare_nodes import EpochKeyedLPROSSampler

TINY = ["--encoder", "test_resnet", "--image_size", "32", "--head_hidden_dim", "0", "--head_dropout", "0.2",
        "--learning_rate", "1e-3", "--warmup_epochs", "0", "--report_to", "none", "--checkpointing_steps", "0"]


def fresh_run(argv: list[str]) -> dict:
    """One run in this process, as if it were a new one (accelerate keeps global state)."""
    AcceleratorState._reset_state(True)
    GradientState._reset_state()
    return run_finetune(parse_args(argv))


def brute_force_prior(y: np.ndarray, m: np.ndarray, eps: float = 1e-4, unknown: float = 1e-2) -> np.ndarray:
    """Per node, by plain loops: positives among known bits / known bits, clamped."""
    out = []
    for j in range(y.shape[1]):
        known = [int(y[i, j]) for i in range(y.shape[0]) if m[i, j]]
        p = sum(known) / len(known) if known else unknown
        out.append(min(max(p, eps), 1 - eps))
    return np.array(out)


def logit(p: np.ndarray) -> np.ndarray:
    return np.log(p / (1 - p))


# ------------------------------------------------------------------------ prior biases
@pytest.mark.parametrize("hidden,output_type", [(0, "mcm"), (8, "mcm"), (0, "flat_baseline")])
def test_prior_bias_makes_the_untrained_model_predict_the_prior(hidden: int, output_type: str) -> None:
    hierarchy = Hierarchy.catami().subset(["substrate", "colour"])
    n = hierarchy.num_nodes
    rng = np.random.default_rng(0)
    y = (rng.random((40, n)) < rng.random(n)).astype(np.uint8)
    m = (rng.random((40, n)) < 0.7).astype(np.uint8)
    y[:, 0], m[:, 0] = 1, 1  # always positive: clamped to 1 - eps
    m[:, 1] = 0  # never known: the small default prior
    torch.manual_seed(0)
    model = BenthicNetForHierarchicalClassification(BenthicNetConfig(
        encoder_name="test_resnet", hierarchy=hierarchy.to_list(), head_hidden_dim=hidden, image_size=32,
        output_type=output_type)).eval()
    init_head_biases(model, y, m, how="prior")
    expected = brute_force_prior(y, m)
    assert expected[0] == 1 - 1e-4 and expected[1] == 1e-2
    bias = torch.cat([head[-1].bias for head in model.heads.heads]).detach().numpy()
    np.testing.assert_allclose(bias, logit(expected), rtol=1e-5, atol=1e-5)

    # with the final weights at zero the model outputs the prior: as is for the flat head, and for
    # the tree head the coherent max over each node's descendants (C-HMCNN)
    with torch.no_grad():
        for head in model.heads.heads:
            head[-1].weight.zero_()
        probs = model(pixel_values=torch.randn(3, 3, 32, 32)).probabilities.numpy()
    colour = hierarchy.head_slice("colour")
    np.testing.assert_allclose(probs[:, colour], np.broadcast_to(expected[colour], (3, colour.stop - colour.start)),
                               rtol=1e-5)
    dense = hierarchy.dense_ancestor_matrix()  # dense[a, d]: a is an ancestor of d (or d itself)
    coherent = np.array([max(expected[d] for d in range(n) if dense[j, d]) for j in range(n)])
    np.testing.assert_allclose(probs, np.broadcast_to(coherent, probs.shape), rtol=1e-5)

    init_head_biases(model, y, m, how="zero")
    assert all(torch.count_nonzero(head[-1].bias) == 0 for head in model.heads.heads)
    with pytest.raises(ValueError, match="--init_head_bias"):
        init_head_biases(model, y, m, how="uniform")
    assert np.allclose(known_bit_priors(y, m), expected)
    joint_model = BenthicNetForHierarchicalClassification(BenthicNetConfig(
        encoder_name="test_resnet", hierarchy=hierarchy.to_list(), head_hidden_dim=hidden, image_size=32,
        output_type="joint_embedding"))
    assert init_head_biases(joint_model, y, m, how="prior") is None  # no output bias: left alone


def single_path_labels(hierarchy: Hierarchy, rows: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Targets/mask with one labelled path per row in every tree head (cut at a random node, a fifth
    of the rows without the head), random known negatives; flat heads multi-label with random masks."""
    y = np.zeros((rows, hierarchy.num_nodes), dtype=np.uint8)
    m = np.zeros_like(y)
    for h, head in enumerate(hierarchy.heads):
        cols = hierarchy.head_slice(h)
        if head.kind == "flat":
            y[:, cols] = rng.random((rows, len(head.nodes))) < 0.3
            m[:, cols] = rng.random((rows, len(head.nodes))) < 0.8
            continue
        # skewed choice of the deepest labelled node, so the frequencies differ between siblings
        weights = rng.random(len(head.nodes)) ** 3
        for i in range(rows):
            if rng.random() < 0.2:
                continue
            j = rng.choice(len(head.nodes), p=weights / weights.sum())
            path = sorted(head.ancestors[j])
            m[i, cols.start + np.flatnonzero(rng.random(len(head.nodes)) < 0.3)] = 1
            y[i, [cols.start + a for a in path]] = 1
            m[i, [cols.start + a for a in path]] = 1
            # a single path: the other nodes at the path's depths are negatives wherever known
    return y, m


def brute_force_conditionals(head, y: np.ndarray, m: np.ndarray, pseudo: float = 1.0) -> dict[int, float]:
    """``P(node | parent)`` by counting rows: (known positives of the node + pseudo) over the same sum
    across the node and its siblings (the roots are siblings of each other)."""
    count = {j: sum(1 for i in range(len(y)) if y[i, j] and m[i, j]) + pseudo for j in range(len(head.nodes))}
    parent = {j: (head.parents[j][0] if head.parents[j] else -1) for j in count}
    return {j: count[j] / sum(count[k] for k in count if parent[k] == parent[j]) for j in count}


@pytest.mark.parametrize("output_type", ["hsoftmax", "masked_per_level", "marginalisation", "per_level"])
def test_prior_bias_of_softmax_types_starts_at_the_label_frequencies(output_type: str) -> None:
    hierarchy = Hierarchy.catami().subset(["substrate", "colour"])
    rng = np.random.default_rng(1)
    y, m = single_path_labels(hierarchy, 60, rng)
    torch.manual_seed(0)
    model = BenthicNetForHierarchicalClassification(BenthicNetConfig(
        encoder_name="test_resnet", hierarchy=hierarchy.to_list(), head_hidden_dim=0, image_size=32,
        output_type=output_type)).eval()
    assert init_head_biases(model, y, m, how="prior") is not None
    with torch.no_grad():
        for head in model.heads.heads:
            head[-1].weight.zero_()
        out = model(pixel_values=torch.randn(3, 3, 32, 32))
    probs = out.probabilities.numpy()
    colour, substrate = hierarchy.head_slice("colour"), hierarchy.head_slice("substrate")
    # flat heads stay sigmoids under every output type: their known-bit prior
    np.testing.assert_allclose(probs[:, colour], np.broadcast_to(brute_force_prior(y, m)[colour], (3, colour.stop - colour.start)),
                               rtol=1e-5)
    head = hierarchy.head("substrate")
    ys, ms = y[:, substrate], m[:, substrate]
    if output_type == "per_level":  # one softmax per depth: the label frequency among that depth's labels
        depth = np.asarray(head.depth)
        count = np.array([sum(1 for i in range(len(ys)) if ys[i, j] and ms[i, j]) + 1.0 for j in range(len(depth))])
        expected = np.array([count[j] / count[depth == depth[j]].sum() for j in range(len(depth))])
        q = PerLevelOutputType(head).level_log_probs(out.logits[:, substrate]).exp()
        np.testing.assert_allclose(q.numpy(), np.broadcast_to(expected, q.shape), rtol=1e-5)
        return
    # sibling softmaxes / leaf softmax: every node starts at the product of P(node | parent) on its path
    cond = brute_force_conditionals(head, ys, ms)
    expected = np.array([math.prod(cond[a] for a in head.ancestors[j]) for j in range(len(head.nodes))])
    np.testing.assert_allclose(probs[:, substrate], np.broadcast_to(expected, (3, len(expected))), rtol=1e-5)
    roots = [j for j in range(len(head.nodes)) if not head.parents[j]]
    assert math.isclose(expected[roots].sum(), 1.0)


# ----------------------------------------------------------------------------- LP-ROS
class _Epoch:
    epoch = 0


def test_lpros_order_is_keyed_by_epoch_and_shards_exactly_over_two_processes() -> None:
    from benthicnet_hf.rare_nodes import LPROSSampler

    rng = np.random.default_rng(1)
    y = (rng.random((50, 6)) < [0.9, 0.5, 0.2, 0.1, 0.05, 0.5]).astype(np.uint8)
    m = np.ones_like(y)
    counter = _Epoch()
    sampler = EpochKeyedLPROSSampler(y, m, percentage=40, seed=3, counter=counter)
    assert sampler.num_clones > 0 and len(sampler) == 50 + sampler.num_clones
    reference = LPROSSampler(y, m, percentage=40, seed=3)

    def order(epoch: int) -> list[int]:
        reference.set_epoch(epoch)
        return list(reference)

    # pinned to the counter, not to how often it was iterated (a resumed run iterates it anew)
    counter.epoch = 2
    assert list(sampler) == list(sampler) == order(2)
    counter.epoch = 3
    assert list(sampler) != order(2) and list(sampler) == order(3)
    assert Counter(order(3)) == Counter(reference.indices().tolist())  # every row once plus the clones

    batch = 4
    loader = DataLoader(list(range(50)), batch_size=batch, sampler=sampler)
    shards = [prepare_data_loader(loader, num_processes=2, process_index=i, put_on_device=False) for i in (0, 1)]
    per_process = [[b.tolist() for b in shard] for shard in shards]
    assert len(per_process[0]) == len(per_process[1])
    interleaved = [i for pair in zip(*per_process) for b in pair for i in b]
    full = order(3)
    assert interleaved[:len(full)] == full  # process i gets batches i, i + 2, ...: all of them once
    assert interleaved[len(full):] == full[:len(interleaved) - len(full)]  # last round padded from the start
    # a resumed epoch: skipping the first k batches yields exactly the rest
    rest = [b.tolist() for b in skip_first_batches(shards[1], 3)]
    assert rest == per_process[1][3:]


# -------------------------------------------------------------- --init_from, --linear_probe
def test_init_from_keeps_the_weights_and_linear_probe_trains_only_the_heads(
        small_dataset: tuple[list[str], datasets.DatasetDict], tmp_path: Path) -> None:
    demo = small_dataset[0]
    source = tmp_path / "source"
    fresh_run(demo + TINY + ["--num_train_epochs", "0", "--output_dir", str(source)])
    start = load_file(str(source / "final" / "model.safetensors"))

    # no training: the loaded model is saved again unchanged (no re-initialised head bias)
    again = tmp_path / "again"
    fresh_run(demo + TINY + ["--num_train_epochs", "0", "--init_from", str(source / "final"),
                             "--output_dir", str(again)])
    reloaded = load_file(str(again / "final" / "model.safetensors"))
    assert reloaded.keys() == start.keys()
    for key in start:
        assert torch.equal(reloaded[key], start[key]), key

    probe = tmp_path / "probe"
    fresh_run(demo + TINY + ["--num_train_epochs", "1", "--per_device_train_batch_size", "16", "--linear_probe",
                             "--init_from", str(source / "final"), "--output_dir", str(probe)])
    trained = load_file(str(probe / "final" / "model.safetensors"))
    encoder = [k for k in start if k.startswith("backbone.")]
    heads = [k for k in start if k.startswith("heads.")]
    assert encoder and heads
    for key in encoder:  # weights and BatchNorm statistics untouched
        assert torch.equal(trained[key], start[key]), key
    colour = [k for k in heads if k.startswith("heads.heads.1.") and k.endswith((".weight", ".bias"))]
    assert colour and all(not torch.equal(trained[k], start[k]) for k in colour)
    # relief is unknown in every row: no gradient reaches its (undecayed) bias
    assert torch.equal(trained["heads.heads.0.fc.bias"], start["heads.heads.0.fc.bias"])
    assert json.loads((probe / "final" / "config.json").read_text())["freeze_encoder"] is True


# ------------------------------------------------------------ --table / --dataset_dir
def test_table_and_image_root(tmp_path: Path) -> None:
    from benthicnet_hf.data.demo import make_demo_dataset

    table = make_demo_dataset(tmp_path / "data", num_images=48, image_size=32, seed=1)
    frame = pd.read_csv(table, dtype=str, keep_default_na=False)  # keeps bedforms "None"
    frame["partition"] = ["train"] * 32 + ["val"] * 9 + ["test"] * 7  # an explicit split column
    frame.to_csv(table, index=False)
    result = fresh_run(TINY + ["--table", str(table), "--image_root", str(tmp_path / "data"),
                               "--cache_dir", str(tmp_path / "cache"), "--num_train_epochs", "1",
                               "--per_device_train_batch_size", "16", "--output_dir", str(tmp_path / "run")])
    assert result["eval_count"] == {"validation": 9, "test": 7}
    assert result["completed_steps"] == 2
    assert result["test"]["overall/num_samples"] == 7
    assert (tmp_path / "run" / "final" / "model.safetensors").is_file()


HIERARCHY = Hierarchy.catami().subset(["relief", "colour"])
SPLIT_ROWS = {"train": 40, "valid": 6, "test": 5}  # "valid": an accepted alias of "validation"


@pytest.fixture(scope="module")
def small_dataset(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[str], datasets.DatasetDict]:
    """A DatasetDict saved with ``save_to_disk`` (tiny images) and its ``--hierarchy`` JSON: relief
    is a missing head everywhere; colour label sets come from a few skewed patterns (so LP-ROS
    finds minority label sets) and a fifth of the rows has no colour label (mask 0)."""
    root = tmp_path_factory.mktemp("small")
    n_relief, n_colour = (len(HIERARCHY.head(h).nodes) for h in ("relief", "colour"))
    rng = np.random.default_rng(0)
    patterns = (rng.random((5, n_colour)) < 0.3).astype(np.uint8)

    def split(rows: int) -> datasets.Dataset:
        colour_y = patterns[rng.choice(5, size=rows, p=[0.5, 0.25, 0.12, 0.08, 0.05])]
        colour_m = np.repeat((rng.random((rows, 1)) < 0.8).astype(np.uint8), n_colour, axis=1)
        images = [Image.fromarray(rng.integers(0, 255, (24, 24, 3), dtype=np.uint8)) for _ in range(rows)]
        return datasets.Dataset.from_dict(
            {"image": images,
             "relief_target": [[0] * n_relief] * rows, "relief_mask": [[0] * n_relief] * rows,
             "colour_target": colour_y.tolist(), "colour_mask": colour_m.tolist()},
            features=datasets.Features({
                "image": datasets.Image(),
                **{f"{h}_{k}": datasets.List(datasets.Value("uint8"))
                   for h in ("relief", "colour") for k in ("target", "mask")}}))

    data = datasets.DatasetDict({name: split(rows) for name, rows in SPLIT_ROWS.items()})
    data.save_to_disk(str(root / "ds"))
    (root / "h.json").write_text(HIERARCHY.to_json())
    return ["--dataset_dir", str(root / "ds"), "--hierarchy", str(root / "h.json")], data


def train_arrays(data: datasets.DatasetDict) -> tuple[np.ndarray, np.ndarray]:
    """``(rows, N)`` targets and mask of the train split, in the hierarchy's node order."""
    n_relief = len(HIERARCHY.head("relief").nodes)
    rows = len(data["train"])
    y = np.concatenate([np.zeros((rows, n_relief)), np.array(data["train"]["colour_target"])], axis=1)
    m = np.concatenate([np.zeros((rows, n_relief)), np.array(data["train"]["colour_mask"])], axis=1)
    return y.astype(np.uint8), m.astype(np.uint8)


def test_dataset_dir_with_a_custom_hierarchy(small_dataset: tuple[list[str], datasets.DatasetDict],
                                             tmp_path: Path) -> None:
    flags, data = small_dataset
    # learning rates 0: one real epoch through the data path, heads left at their prior init
    result = fresh_run(TINY + flags + ["--num_train_epochs", "1", "--per_device_train_batch_size", "16",
                                       "--learning_rate", "0", "--head_learning_rate", "0",
                                       "--output_dir", str(tmp_path / "run")])
    assert result["eval_count"] == {"validation": 6, "test": 5}
    assert result["completed_steps"] == 3
    y, m = train_arrays(data)
    weights = load_file(str(tmp_path / "run" / "final" / "model.safetensors"))
    bias = torch.cat([weights["heads.heads.0.fc.bias"], weights["heads.heads.1.fc.bias"]]).numpy()
    np.testing.assert_allclose(bias, logit(brute_force_prior(y, m)), rtol=1e-5, atol=1e-5)


def test_lpros_and_node_weights_resume_exactly(small_dataset: tuple[list[str], datasets.DatasetDict],
                                               tmp_path: Path) -> None:
    from benthicnet_hf.rare_nodes import LPROSSampler, imbalance_weights

    flags, data = small_dataset
    y, m = train_arrays(data)
    rows = len(LPROSSampler(y, m, percentage=25, seed=0))
    assert rows > len(data["train"])  # the epoch is oversampled
    batch = 8
    steps_per_epoch = rows // batch if rows % batch == 1 else math.ceil(rows / batch)
    common = TINY + flags + ["--num_train_epochs", "2", "--per_device_train_batch_size", str(batch),
                             "--lpros", "25", "--node_weights", "imbalance"]
    full = fresh_run(common + ["--output_dir", str(tmp_path / "full")])
    assert full["completed_steps"] == 2 * steps_per_epoch
    saved = json.loads((tmp_path / "full" / "final" / "config.json").read_text())
    np.testing.assert_allclose(saved["node_weights"], imbalance_weights(HIERARCHY, y, m).numpy(), rtol=1e-6)

    cut = steps_per_epoch + 2  # inside the second epoch
    part = fresh_run(common + ["--output_dir", str(tmp_path / "cut"), "--stop_after_steps", str(cut)])
    assert part["stopped_early"] and part["completed_steps"] == cut
    resumed = fresh_run(common + ["--output_dir", str(tmp_path / "cut"), "--resume_from_checkpoint", "latest"])
    assert resumed["completed_steps"] == full["completed_steps"]
    w_full = load_file(str(list_checkpoints(tmp_path / "full")[-1] / "model.safetensors"))
    w_resumed = load_file(str(list_checkpoints(tmp_path / "cut")[-1] / "model.safetensors"))
    w_start = load_file(str(list_checkpoints(tmp_path / "cut")[0] / "model.safetensors"))
    for key in w_full:
        torch.testing.assert_close(w_resumed[key], w_full[key], rtol=0, atol=1e-6, msg=key)
    assert any(not torch.equal(w_start[k], w_full[k]) for k in w_full)  # it did train after the cut
    assert resumed["test"]["overall/ap_micro"] == pytest.approx(full["test"]["overall/ap_micro"], abs=1e-6)


# ------------------------------------------------------------------------------- ensembles
def test_ensemble_options_reach_the_saved_model(small_dataset: tuple[list[str], datasets.DatasetDict],
                                                tmp_path: Path) -> None:
    flags, data = small_dataset
    result = fresh_run(TINY + flags + ["--num_train_epochs", "1", "--per_device_train_batch_size", "16",
                                       "--ensemble_size", "2", "--mc_dropout_samples", "3", "--uncertainty", "gmu",
                                       "--output_dir", str(tmp_path / "run")])
    assert result["completed_steps"] == 3 and result["eval_count"] == {"validation": 6, "test": 5}
    final = tmp_path / "run" / "final"
    config = json.loads((final / "config.json").read_text())
    assert (config["ensemble_size"], config["ensemble_dropout_samples"], config["uncertainty"]) == (2, 3, "gmu")
    weights = load_file(str(final / "model.safetensors"))
    assert weights["heads.heads.1.fc.weight"].shape[0] == 2  # (K, nodes, features)
    model = BenthicNetForHierarchicalClassification.from_pretrained(final).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, 32, 32))
    assert out.member_probabilities.shape == (2, 6, HIERARCHY.num_nodes)
    with pytest.raises(ValueError, match="ensemble_size=3"):  # --init_from with another K is named
        fresh_run(TINY + flags + ["--num_train_epochs", "0", "--init_from", str(final), "--ensemble_size", "3",
                                  "--output_dir", str(tmp_path / "again")])


# ------------------------------------------------------------------------------ output types
def test_head_type_reaches_the_saved_model(small_dataset: tuple[list[str], datasets.DatasetDict],
                                           tmp_path: Path) -> None:
    flags, _ = small_dataset
    result = fresh_run(TINY + flags + ["--num_train_epochs", "1", "--per_device_train_batch_size", "16",
                                       "--output_type", "hsoftmax", "--output_dir", str(tmp_path / "run")])
    assert result["completed_steps"] == 3 and math.isfinite(result["test"]["overall/ap_micro"])
    final = tmp_path / "run" / "final"
    assert json.loads((final / "config.json").read_text())["output_type"] == "hsoftmax"
    assert BenthicNetForHierarchicalClassification.from_pretrained(final).config.output_type == "hsoftmax"
    with pytest.raises(ValueError, match="--output_type per_level does not match"):
        fresh_run(TINY + flags + ["--num_train_epochs", "0", "--init_from", str(final), "--output_type", "per_level",
                                  "--output_dir", str(tmp_path / "again")])
    with pytest.raises(ValueError, match="--output_type must be one of"):
        parse_args(TINY + flags + ["--output_type", "softmax", "--output_dir", str(tmp_path / "x")])


def test_table_builder_options_reach_the_builder(tmp_path: Path) -> None:
    """--columns, --on_unknown, --source_exhaustive, --non_exhaustive go to the builder: a renamed image
    column and an unknown label fail without them and train with them."""
    from benthicnet_hf.labels import UnknownLabelError
    from benthicnet_hf.training.args import parse_args, table_options

    from benthicnet_hf.data.demo import make_demo_dataset

    table = make_demo_dataset(tmp_path / "data", num_images=48, image_size=32, seed=1)
    frame = pd.read_csv(table, dtype=str, keep_default_na=False).rename(columns={"image": "file"})
    frame.loc[3, "catami_substrate"] = "Substrate > Martian dust"
    frame["partition"] = ["train"] * 32 + ["val"] * 9 + ["test"] * 7
    frame.to_csv(table, index=False)
    base = TINY + ["--table", str(table), "--image_root", str(tmp_path / "data"), "--num_train_epochs", "1",
                   "--per_device_train_batch_size", "16"]
    with pytest.raises(ValueError, match="image"):  # no image column without --columns
        fresh_run(base + ["--cache_dir", str(tmp_path / "c0"), "--output_dir", str(tmp_path / "r0")])
    with pytest.raises(UnknownLabelError, match="Martian dust"):
        fresh_run(base + ["--cache_dir", str(tmp_path / "c1"), "--output_dir", str(tmp_path / "r1"),
                          "--columns", '{"image": "file"}'])
    opts = ["--columns", '{"image": "file"}', "--on_unknown", "mask",
            "--source_exhaustive", '{"demo_survey_b": {"biota": false}}', "--non_exhaustive", "colour"]
    assert table_options(parse_args(base + opts + ["--output_dir", "x"])) == {
        "columns": {"image": "file"}, "on_unknown": "mask",
        "source_exhaustive": {"demo_survey_b": {"biota": False}}, "exhaustive": {"colour": False}}
    # colour made non-exhaustive keeps only its positives: the run refuses the head (so the flag arrived)
    from benthicnet_hf.data.label_support import DegenerateHeadError

    with pytest.raises(DegenerateHeadError, match="colour"):
        fresh_run(base + opts + ["--cache_dir", str(tmp_path / "c2"), "--output_dir", str(tmp_path / "r2")])
    result = fresh_run(base + opts[:-2] + ["--cache_dir", str(tmp_path / "c3"), "--output_dir", str(tmp_path / "r3")])
    assert result["completed_steps"] >= 1
    with pytest.raises(ValueError, match="--on_unknown must be one of"):
        parse_args(base + ["--on_unknown", "guess", "--output_dir", "x"])
    with pytest.raises(ValueError, match="--columns must be JSON"):
        parse_args(base + ["--columns", "{image: file}", "--output_dir", "x"])
    with pytest.raises(ValueError, match="apply to --table"):
        parse_args(["--demo", "--non_exhaustive", "biota", "--output_dir", "x"])

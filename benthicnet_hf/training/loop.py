"""The fine-tuning loop with accelerate: train, evaluate every epoch, keep the best, report on test.

Runs unchanged on 1..N processes (``accelerate launch``). Determinism for resuming: the data order
is a permutation keyed by (seed, epoch) or, with ``--lpros``, the LP-ROS order keyed by (seed,
epoch); the augmentation is keyed by ``(seed, epoch, position)``, the epoch reaching the DataLoader
workers inside the sample keys (see :mod:`.keyed_loader`); the global generators (dropout) are
reseeded from ``(seed, step, process)`` before every forward pass. So a run resumed from a checkpoint
continues exactly like the uninterrupted run.
"""

from __future__ import annotations

import json
import logging
import math
import os
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import DataLoaderConfiguration, set_seed
from ..constraint import NonFiniteLogitsError
from ..data.label_matrices import label_matrices
from .args import FinetuneArguments
from .checkpointing import TrainingState, save_checkpoint
from .components import build_model, load_hierarchy, load_splits, make_dataloaders, node_support
from .keyed_loader import EpochCounter, keyed_seed, reseed_all
from .bias_init import init_head_biases
from .calibrate import calibrate_on_validation, split_calibration_report
from .one_hot import one_hot_splits
from .main_process import run_on_main
from .publish import push_final, save_final
from ..rare_nodes import EpochKeyedLPROSSampler, node_imbalance_weights
from .run_dir import args_snapshot, start_run
from .run_log import StepLogger, epoch_line, init_trackers, progress_bar, quiet_saves, resolve_tracker
from .sync_bn import convert_sync_batchnorm
from .evaluation import check_label_support, evaluate_split, lookup_metric, prior_baseline, scalar_metrics

logger = logging.getLogger(__name__)

BEST_DIR = "best"
TEST_JSON = "test_metrics.json"
TEST_TABLE = "test_metrics.txt"
PER_NODE_CSV = "per_node_metrics.csv"
PLOTS_DIR = "plots"


def resolve_mixed_precision(choice: str) -> str:
    """``auto`` → bf16 on a GPU that supports it, else full precision."""
    if choice != "auto":
        return choice
    if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        return "bf16"
    return "no"


def make_accelerator(args: FinetuneArguments) -> Accelerator:
    return Accelerator(
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        mixed_precision=resolve_mixed_precision(args.mixed_precision),
        log_with=resolve_tracker(args.report_to), project_dir=args.output_dir,
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True, data_seed=args.seed),
    )


def param_groups(model: torch.nn.Module, weight_decay: float, lr: float, head_lr: float | None = None
                 ) -> list[dict[str, Any]]:
    """Trainable parameters in AdamW groups: no weight decay on biases and normalisation weights
    (1-D tensors, and every ``*bias``); the heads (``heads.*``) at ``head_lr`` when given."""
    groups: dict[tuple[bool, bool], list[torch.nn.Parameter]] = {}
    for name, p in model.named_parameters():
        if p.requires_grad:
            # an ensemble's stacked biases are (K, out): biases never decay, whatever their rank
            decay = p.ndim > 1 and not name.endswith("bias")
            groups.setdefault((name.startswith("heads."), decay), []).append(p)
    if not groups:
        raise ValueError("the model has no trainable parameter")
    return [{"params": params, "weight_decay": weight_decay if decay else 0.0,
             "lr": head_lr if (is_head and head_lr is not None) else lr}
            for (is_head, decay), params in sorted(groups.items())]


def run_finetune(args: FinetuneArguments) -> dict[str, Any]:
    """Fine-tune, select the best epoch on validation, evaluate it on test and save everything.

    Writes into ``args.output_dir``: ``checkpoints/step_*`` (resumable state), ``best/`` (best
    model), ``test_metrics.json`` / ``.txt`` (test report with the label-prior baseline) and
    ``final/`` (model, processor, card, widget export; pushed with ``--push_to_hub``).

    Returns:
        ``{"test": metrics, "baseline": metrics, "history": [...], "best_epoch": int,
        "eval_count": {"validation": n, "test": n}, "stopped_early": bool}``.
    """
    from transformers import get_cosine_schedule_with_warmup

    out_dir = Path(args.output_dir)
    accelerator = make_accelerator(args)
    resume_path = start_run(accelerator, args)  # before any work: a foreign folder or changed settings
    set_seed(args.seed)
    hierarchy = load_hierarchy(args)
    data = load_splits(args, accelerator, hierarchy)
    if args.one_hot_task:  # rows with one known label at the depth → one K-class softmax head
        labels = {split: label_matrices(ds, hierarchy) for split, ds in data.items()}
        data, hierarchy = one_hot_splits(data, labels, hierarchy, args.one_hot_task, log=accelerator.print)
    train_y, train_m = label_matrices(data["train"], hierarchy)
    split_labels = {"train": (train_y, train_m),
                    **{split: label_matrices(data[split], hierarchy) for split in ("validation", "test")}}
    check_label_support(accelerator, split_labels, hierarchy, args.allow_degenerate_heads)
    weights = node_imbalance_weights(hierarchy, train_y, train_m) if args.node_weights == "imbalance" else None
    support = node_support(train_y, train_m)
    model = build_model(args, hierarchy, node_weights=weights, support=support)
    # an --init_from model's temperatures/thresholds belong to its old weights: train on raw logits, refit after
    model.config.head_temperatures = model.config.node_thresholds = None
    if not (args.init_from or args.resume_from_checkpoint):  # fresh heads only
        init_head_biases(model, train_y, train_m, how=args.init_head_bias)
    counter = EpochCounter()
    sampler = None
    if args.lpros is not None:
        sampler = EpochKeyedLPROSSampler(train_y, train_m, args.lpros, args.seed, counter)
        accelerator.print(f"LP-ROS {args.lpros}%: {sampler.num_clones} clones, {len(sampler)} training rows per epoch")
    loaders = make_dataloaders(args, data, hierarchy, model.config, counter, train_sampler=sampler,
                               use_cuda=accelerator.device.type == "cuda")
    check_train_batches(loaders["train"], args, accelerator)

    # before prepare: DDP must wrap the synchronised layers (same parameters, same state-dict keys)
    model = convert_sync_batchnorm(model, accelerator.num_processes, args.sync_bn, accelerator.device)
    optimizer = torch.optim.AdamW(param_groups(model, args.weight_decay, args.learning_rate, args.head_learning_rate),
                                  lr=args.learning_rate,
                                  betas=(args.adam_beta1, args.adam_beta2))
    model, optimizer, train_dl, val_dl, test_dl = accelerator.prepare(
        model, optimizer, loaders["train"], loaders["validation"], loaders["test"])
    # len(train_dl) is per process after prepare; the prepared scheduler steps num_processes times
    # per optimizer step, hence the factor (accelerate's convention).
    steps_per_epoch = math.ceil(len(train_dl) / args.gradient_accumulation_steps)
    total_steps = steps_per_epoch * args.num_train_epochs
    scheduler = get_cosine_schedule_with_warmup(
        optimizer, num_warmup_steps=round(args.warmup_epochs * steps_per_epoch) * accelerator.num_processes,
        num_training_steps=max(total_steps, 1) * accelerator.num_processes)
    scheduler = accelerator.prepare(scheduler)
    state = TrainingState()
    accelerator.register_for_checkpointing(state)

    if resume_path is not None:
        accelerator.print(f"resuming from {resume_path}")
        accelerator.load_state(str(resume_path))
    init_trackers(accelerator, "finetune", args)

    greater = args.metric_greater_is_better
    best_dir = out_dir / BEST_DIR
    stopped = False
    val_count = 0
    progress = progress_bar(accelerator, total_steps, state.completed_steps)
    step_log = StepLogger(accelerator, progress, args.logging_steps)
    while state.epoch < args.num_train_epochs and not stopped:
        epoch = state.epoch
        counter.epoch = epoch
        train_dl.set_epoch(epoch)
        stopped = _train_epoch(args, accelerator, model, optimizer, scheduler, train_dl, state, step_log)
        if stopped:
            break
        metrics, val_count = evaluate_split(model, val_dl, accelerator, hierarchy, args.threshold, desc="validation")
        value = lookup_metric(metrics, args.metric_for_best_model)
        improved = _improves(value, state.best_metric, greater)
        if improved:
            state.best_metric, state.best_epoch = value, epoch
            _save_best(accelerator, model, best_dir)
        state.history.append({"epoch": epoch, "step": state.completed_steps, **scalar_metrics(metrics, "validation")})
        accelerator.log(scalar_metrics(metrics, "validation"), step=state.completed_steps)
        epoch_line(accelerator, f"epoch {epoch}: validation {args.metric_for_best_model} = {value:.4f}"
                                f"{' (best)' if improved else ''}")
        state.epoch, state.batches_done = epoch + 1, 0
    progress.close()
    if state.completed_steps > 0 or args.num_train_epochs > 0:
        save_checkpoint(accelerator, out_dir, state.completed_steps, args.save_total_limit, args_snapshot(args))
    if stopped:
        accelerator.end_training()
        return {"stopped_early": True, "history": state.history, "completed_steps": state.completed_steps}

    if best_dir.exists():
        _load_best(accelerator, model, best_dir)
    # temperatures and thresholds from the VALIDATION split only; the test split is read after, to report
    calibration = calibrate_on_validation(model, val_dl, accelerator, hierarchy, args.calibrate, args.tune_thresholds,
                                          args.threshold, args.threshold_min_positives)
    test_metrics, test_count, test_nodes = evaluate_split(model, test_dl, accelerator, hierarchy, args.threshold,
                                                          desc="test", per_node=True)
    test_y, test_m = split_labels["test"]
    baseline = prior_baseline(train_y, train_m, test_y, test_m, hierarchy, args.threshold)
    test_nodes.insert(3, "train_positives", support["positives"])
    test_nodes.insert(4, "train_negatives", support["negatives"])
    test_calibration = split_calibration_report(model, test_dl, accelerator, hierarchy, args.threshold)
    arrays = test_calibration.pop("arrays")
    calibration["test"] = test_calibration
    result = {"test": test_metrics, "baseline": baseline, "history": state.history, "best_epoch": state.best_epoch,
              "eval_count": {"validation": val_count, "test": test_count}, "stopped_early": False,
              "completed_steps": state.completed_steps, "num_processes": accelerator.num_processes,
              "calibration": calibration}
    accelerator.log(scalar_metrics(test_metrics, "test"), step=state.completed_steps)

    def publish() -> str:
        from ..plots import write_plots

        result["plots"] = write_plots(out_dir / PLOTS_DIR, hierarchy, test_metrics, baseline, test_nodes,
                                      arrays["before"], arrays["after"] if args.calibrate else None,
                                      arrays["targets"], arrays["mask"])
        _write_report(out_dir, result)
        test_nodes.to_csv(out_dir / PER_NODE_CSV, index=False)
        return str(save_final(accelerator.unwrap_model(model), out_dir, args, hierarchy, result,
                              eval_loader=loaders["test"]))  # the widget export's own test metrics

    final_dir = run_on_main(accelerator, f"writing the test report and {out_dir / 'final'}", publish)
    if final_dir is not None:
        result["final_dir"] = final_dir
    accelerator.end_training()
    # after the last barrier: a failed upload raises on the main process only, with everything saved
    if args.push_to_hub and accelerator.is_main_process:
        result["hub_url"] = push_final(out_dir, args)
    return result


def _train_epoch(args: FinetuneArguments, accelerator: Accelerator, model: Any, optimizer: Any, scheduler: Any,
                 train_dl: Any, state: TrainingState, step_log: StepLogger) -> bool:
    """Train the rest of ``state.epoch``; True when ``--stop_after_steps`` interrupted it."""
    model.train()
    loader = train_dl
    if state.batches_done:
        loader = accelerator.skip_first_batches(train_dl, state.batches_done)
        loader.set_epoch(state.epoch)
    for batch in loader:
        # keyed by the global position, not by how often the generator was drawn before
        reseed_all(keyed_seed(args.seed, state.epoch, state.batches_done, accelerator.process_index, 1))
        with accelerator.accumulate(model):
            try:
                out = model(**batch)
            except NonFiniteLogitsError as err:  # say where, not only what
                raise NonFiniteLogitsError(
                    f"epoch {state.epoch}, batch {state.batches_done} (optimizer step {state.completed_steps}, "
                    f"process {accelerator.process_index}): {err} (--resume_from_checkpoint latest restarts from "
                    "the last checkpoint; lower --learning_rate or check the images of this batch)",
                    err.count, err.rows, err.nodes) from err
            accelerator.backward(out.loss)
            if accelerator.sync_gradients and args.max_grad_norm > 0:
                accelerator.clip_grad_norm_(model.parameters(), args.max_grad_norm)
            lr = scheduler.get_last_lr()[0]  # the rate of this step
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad()
        state.batches_done += 1
        if not accelerator.sync_gradients:
            continue
        state.completed_steps += 1
        step_log.step(state.completed_steps, out.loss, lr=lr)
        if args.stop_after_steps is not None and state.completed_steps >= args.stop_after_steps:
            save_checkpoint(accelerator, args.output_dir, state.completed_steps, args.save_total_limit,
                            args_snapshot(args))
            return True
        if args.checkpointing_steps and state.completed_steps % args.checkpointing_steps == 0:
            save_checkpoint(accelerator, args.output_dir, state.completed_steps, args.save_total_limit,
                            args_snapshot(args))
    return False


def _improves(value: float, best: float | None, greater: bool) -> bool:
    """Whether ``value`` beats ``best`` (NaN, a metric undefined on this split, never beats a number)."""
    if best is None or math.isnan(best):
        return True
    if math.isnan(value):
        return False
    return value > best if greater else value < best


def check_train_batches(train_loader: Any, args: FinetuneArguments, accelerator: Accelerator) -> None:
    """Refuse a run that would take no optimisation step; say when a last batch of 1 is dropped.

    Raises:
        ValueError: ``--num_train_epochs`` > 0 but the training loader yields no batch.
    """
    rows = len(train_loader.sampler)
    if args.num_train_epochs > 0 and len(train_loader) == 0:
        raise ValueError(
            f"{rows} training row(s) with --per_device_train_batch_size {args.per_device_train_batch_size}: "
            "no training step (a lone last sample is dropped because BatchNorm cannot train on one). "
            "Use more training rows (--max_train_samples) or --num_train_epochs 0 to evaluate only")
    if train_loader.drop_last:
        accelerator.print(f"{rows} training rows, batch {args.per_device_train_batch_size}: the last batch "
                          "of 1 sample is dropped every epoch (BatchNorm cannot train on a single sample)")


def _save_best(accelerator: Accelerator, model: Any, best_dir: Path) -> None:
    """Best weights via a temp folder + rename (a kill mid-save keeps the previous best)."""
    accelerator.wait_for_everyone()
    run_on_main(accelerator, f"saving {best_dir}", lambda: _write_best(accelerator.unwrap_model(model), best_dir))


def _write_best(model: Any, best_dir: Path) -> None:
    """Main process: ``save_pretrained`` into ``best.tmp``, then swap it in."""
    import shutil

    tmp = best_dir.with_name(best_dir.name + ".tmp")
    if tmp.exists():  # left by a run killed mid-save
        shutil.rmtree(tmp)
    with quiet_saves():  # one line per epoch, not a "Writing model shards" bar per save
        model.save_pretrained(tmp, safe_serialization=True)
    old = best_dir.with_name(best_dir.name + ".old")
    if best_dir.exists():
        os.replace(best_dir, old)
    os.replace(tmp, best_dir)
    if old.exists():
        shutil.rmtree(old)


def _load_best(accelerator: Accelerator, model: Any, best_dir: Path) -> None:
    from safetensors.torch import load_file

    weights = load_file(str(best_dir / "model.safetensors"))
    accelerator.unwrap_model(model).load_state_dict(weights, strict=True)


def _json_safe(value: Any) -> Any:
    """NaN (a metric undefined on this split) → null, so the report is strict JSON."""
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def _write_report(out_dir: Path, result: dict[str, Any]) -> None:
    """``test_metrics.json`` and the readable ``test_metrics.txt`` (model and baseline side by side)."""
    from ..metrics import format_metrics_table

    report = {k: result[k] for k in ("test", "baseline", "best_epoch", "eval_count", "num_processes", "calibration")}
    (out_dir / TEST_JSON).write_text(json.dumps(_json_safe(report), indent=2, default=float))
    title = (f"test split, best epoch {result['best_epoch']} ({result['eval_count']['test']} images; "
             "in brackets: label-prior baseline)\n")
    (out_dir / TEST_TABLE).write_text(title + format_metrics_table(result["test"], baseline=result["baseline"]) + "\n")
    print(title + format_metrics_table(result["test"], baseline=result["baseline"], headline_only=True)
          + f"\n(all metrics: {out_dir / TEST_TABLE})")

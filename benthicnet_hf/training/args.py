"""Every option of the fine-tuning script, with the reference's defaults.

Defaults reproduce the BenthicNet HML fine-tuning recipe (arXiv 2409.06618): AdamW, learning rate
3e-5, weight decay 1e-5, 10 warm-up epochs then cosine decay, batch 128, 100 epochs, heads with a
2048-wide hidden layer and dropout 0.7. Parsed with ``transformers.HfArgumentParser`` so that every
field is also a ``--flag``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence, TypeVar

#: Metrics where lower is better (everything else: higher is better).
LOWER_IS_BETTER = ("loss",)

T = TypeVar("T")


def _help(text: str) -> dict[str, str]:
    return {"help": text}


@dataclass
class FinetuneArguments:
    """Options of ``train_scripts/finetune.py`` (see ``--help``)."""

    output_dir: str = field(metadata=_help("run folder: checkpoints/, best/, final/, metrics, logs"))

    # ------------------------------------------------------------------ data
    demo: bool = field(default=False, metadata=_help("generate the synthetic demo dataset into --data_dir"))
    data_dir: str | None = field(default=None, metadata=_help("demo data folder (default OUTPUT_DIR/demo_data)"))
    demo_num_images: int = field(default=400, metadata=_help("images of the demo dataset"))
    demo_image_size: int = field(default=96, metadata=_help("side of the demo images in pixels"))
    table: str | None = field(default=None, metadata=_help("label table (CSV/TSV/JSONL/Parquet) for the builder"))
    image_root: str | None = field(default=None, metadata=_help("folder the table's image paths are relative to"))
    columns: str | None = field(default=None, metadata=_help(
        'with --table: the builder\'s column mapping as JSON, e.g. {"image": "file", "labels": {"biota": '
        '"Biota"}, "masks": {"biota": "biota_unknown"}} (as build_dataset.py --column/--label-column)'))
    source_exhaustive: str | None = field(default=None, metadata=_help(
        'with --table: JSON per source and head, e.g. {"survey_B": {"biota": false}}: that source lists '
        "only some of the head's nodes, so its unlisted nodes are unknown, not negatives"))
    non_exhaustive: list[str] = field(default_factory=list, metadata=_help(
        "with --table: heads whose unlisted nodes are unknown in every row (default: every head exhaustive)"))
    on_unknown: str = field(default="error", metadata=_help(
        "with --table: a label path not in the hierarchy: error (list them all and stop) | ancestor (its "
        "deepest known prefix) | mask (that head unknown for the row); opt-ins are reported"))
    dataset_dir: str | None = field(default=None, metadata=_help("a DatasetDict saved with save_to_disk"))
    hierarchy: str | None = field(default=None, metadata=_help(
        "hierarchy JSON file (Hierarchy.to_json); default: the model's (--init_from) or CATAMI"))
    cache_dir: str | None = field(default=None, metadata=_help("datasets cache folder"))
    max_train_samples: int | None = field(default=None, metadata=_help("use only the first N training rows"))
    max_eval_samples: int | None = field(default=None, metadata=_help("use only the first N validation/test rows"))
    preprocessing_num_workers: int | None = field(default=None, metadata=_help(
        "processes that read, verify and embed the images when --table is built into a dataset "
        "(datasets' num_proc; default: one)"))
    dataloader_num_workers: int = field(default=-1, metadata=_help(
        "DataLoader worker processes per training process, which decode and augment: -1 = auto, "
        "min(8, CPUs // processes on this machine); 0 = in the training process"))
    dataloader_pin_memory: bool = field(default=True, metadata=_help(
        "pin the batches in host memory (only when training on CUDA: faster, asynchronous copies)"))
    dataloader_persistent_workers: bool = field(default=True, metadata=_help(
        "keep the train and validation workers alive between epochs (no re-fork each epoch)"))
    dataloader_prefetch_factor: int | None = field(default=None, metadata=_help(
        "batches each worker loads ahead (default: torch's, 2)"))

    # --------------------------------------------------------------- encoder
    encoder: str = field(default="resnet50", metadata=_help("timm architecture (built with pretrained=False)"))
    encoder_kwargs: str | None = field(default=None, metadata=_help('JSON dict for timm.create_model, e.g. {"img_size": 96}'))
    init_from: str | None = field(default=None, metadata=_help("a saved BenthicNet model folder to start from"))
    encoder_checkpoint: str | None = field(default=None, metadata=_help(
        "encoder weights: SSL export folder/encoder.safetensors, timm, torchvision or Lightning checkpoint"))
    linear_probe: bool = field(default=False, metadata=_help("freeze the encoder (linear probing)"))
    allow_degenerate_heads: bool = field(default=False, metadata=_help(
        "train even when a head's training labels have no known negatives (or no known positives); "
        "by default that stops the run, since such a head learns to say yes to everything"))
    head_hidden_dim: int = field(default=2048, metadata=_help("hidden width of each head's MLP (0 = linear)"))
    head_dropout: float = field(default=0.7, metadata=_help("dropout inside each head"))
    output_type: str | None = field(default=None, metadata={**_help(
        "mcm | per_level | masked_per_level | marginalisation | hsoftmax | flat_baseline | joint_embedding "
        "(config.output_type; default: the --init_from model's, else mcm; --head_type is its deprecated 0.1 "
        "name)"), "aliases": ["--head_type"]})
    image_size: int = field(default=224, metadata=_help("encoder input side in pixels"))
    init_head_bias: str = field(default="prior", metadata=_help(
        "output bias of fresh heads: prior (the label prior of the output type: logit of each node's known-bit "
        "training frequency for sigmoids, log of its smoothed label count for softmax types) | zero"))

    # ------------------------------------------------- recipe, task, augmentation
    recipe: str | None = field(default=None, metadata=_help(
        "the authors' settings as defaults (training.recipes): linear_probe | hft (hft_resnet50 or hft_vit "
        "by --encoder) | hft_resnet50 | hft_vit | one_hot_probe | one_hot_hft; flags given explicitly win"))
    one_hot_task: str | None = field(default=None, metadata=_help(
        "train a softmax (cross-entropy) classifier on the rows with one known label in HEAD at DEPTH "
        "(1 = root): HEAD:DEPTH, e.g. substrate:3, or a named task: substrate_depth_2 (the paper's five "
        "substrate classes) (training.one_hot); output_type hsoftmax: one softmax over the classes"))
    crop_scale_min: float = field(default=0.35, metadata=_help(
        "random resized crop: smallest crop area fraction (the authors' recipe: 0.1)"))
    vflip: float = field(default=0.5, metadata=_help("vertical flip probability (horizontal: 0.5)"))
    color_jitter: float = field(default=0.4, metadata=_help("colour jitter of brightness/contrast/saturation (0 = off)"))
    pca_lighting: float = field(default=0.0, metadata=_help(
        "AlexNet PCA lighting noise, std of alpha (0 = off; the authors' recipe: 0.1)"))

    # ------------------------------------------------------------ rare nodes
    lpros: float | None = field(default=None, metadata=_help(
        "LP-ROS oversampling of the training set by PERCENT (rare_nodes.LPROSSampler)"))
    node_weights: str | None = field(default=None, metadata=_help(
        "per-node loss weights stored in config.node_weights: imbalance (rare_nodes.imbalance_weights)"))
    node_weights_apply_to: str | None = field(default=None, metadata=_help(
        "bits a node weight multiplies (config.node_weights_apply_to): negative (the rare-node authors' code: "
        "y = 0 bits) | positive (y = 1 bits) | all (default: the --init_from model's, else negative)"))
    loss: str | None = field(default=None, metadata=_help(
        "training objective (config.loss): mcloss | focal (the rare-node paper's weighted focal MCLoss over "
        "the ensemble members: needs --ensemble_size > 1 or --mc_dropout_samples > 0; default: the "
        "--init_from model's, else mcloss)"))
    focal_uncertainty: str | None = field(default=None, metadata=_help(
        "uncertainty of the focal factor: bma | predictive | aleatoric | epistemic | gmu (default bma)"))
    focal_k: float | None = field(default=None, metadata=_help("exponent of the focal factor (default 2)"))
    focal_min: float | None = field(default=None, metadata=_help("floor of the focal factor (default 0.25)"))

    ensemble_size: int | None = field(default=None, metadata=_help(
        "K head stacks over the shared encoder, trained together (config.ensemble_size; default: the "
        "--init_from model's, else 1)"))
    mc_dropout_samples: int | None = field(default=None, metadata=_help(
        "MC dropout passes at evaluation (config.ensemble_dropout_samples; 0 = off; default: the "
        "--init_from model's, else 0)"))
    uncertainty: str | None = field(default=None, metadata=_help(
        "per-node ensemble uncertainty in the outputs: bma | predictive | aleatoric | epistemic | gmu "
        "(default: the --init_from model's, else bma)"))

    # ---------------------------------------------------------- optimisation
    learning_rate: float = field(default=3e-5, metadata=_help("AdamW peak learning rate"))
    head_learning_rate: float | None = field(default=None, metadata=_help(
        "peak learning rate of the heads (default: --learning_rate)"))
    weight_decay: float = field(default=1e-5, metadata=_help("AdamW weight decay (not on biases/norms)"))
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    warmup_epochs: float = field(default=10.0, metadata=_help("linear warm-up length in epochs, then cosine decay"))
    num_train_epochs: int = field(default=100, metadata=_help("epochs (0 = evaluate the initial model only)"))
    per_device_train_batch_size: int = field(default=128, metadata=_help("batch per process"))
    per_device_eval_batch_size: int | None = field(default=None, metadata=_help("default: the training batch"))
    gradient_accumulation_steps: int = 1
    max_grad_norm: float = field(default=1.0, metadata=_help("gradient clipping norm (0 = off)"))
    mixed_precision: str = field(default="auto", metadata=_help("no | bf16 | fp16 | auto (bf16 on a GPU that has it)"))
    sync_bn: bool = field(default=False, metadata=_help(
        "on more than 1 process, synchronise every BatchNorm (encoder, heads) over the global batch "
        "(training.sync_bn; CPU/gloo too); a no-op on 1 process. Changes the run: kept on resume"))
    seed: int = 0

    # ------------------------------------------------- checkpoints and eval
    checkpointing_steps: int = field(default=500, metadata=_help("save_state every N optimizer steps (0 = only at the end)"))
    save_total_limit: int = field(default=2, metadata=_help("step checkpoints kept (oldest deleted first)"))
    resume_from_checkpoint: str | None = field(default=None, metadata=_help(
        "checkpoint folder or 'latest'; the settings must match the checkpoint's (see training.run_dir)"))
    overwrite_output_dir: bool = field(default=False, metadata=_help(
        "delete an earlier run's checkpoints/, best/, final/ and test report in --output_dir before "
        "starting (without it such a folder is refused)"))
    stop_after_steps: int | None = field(default=None, metadata=_help(
        "save a checkpoint and stop after N optimizer steps (an interruption, for tests)"))
    metric_for_best_model: str = field(default="overall/hml_ap", metadata=_help(
        "validation metric that selects the best epoch (a key of compute_metrics)"))
    greater_is_better: bool | None = field(default=None, metadata=_help("default: False for losses, else True"))
    threshold: float = field(default=0.5, metadata=_help("decision threshold of the thresholded metrics"))
    calibrate: bool = field(default=True, metadata=_help(
        "after training, fit one temperature per head on the validation split (masked NLL) and store it in "
        "config.head_temperatures; ECE/Brier before and after go into test_metrics.json (--calibrate False: off)"))
    tune_thresholds: str = field(default="f1", metadata=_help(
        "after training (and calibration), tune one threshold per node on the validation split into "
        "config.node_thresholds, used by predict: f1 (F1-optimal) | precision:P (highest recall with "
        "precision >= P, e.g. precision:0.9) | none. Never on the test split"))
    threshold_min_positives: int = field(default=5, metadata=_help(
        "a node needs this many known validation positives (and a known negative) for its own threshold; "
        "others keep --threshold"))
    report_to: str = field(default="auto", metadata=_help("tracker: tensorboard | none | auto (tensorboard if installed)"))
    logging_steps: int = 10

    # ------------------------------------------------------------------- hub
    push_to_hub: bool = field(default=False, metadata=_help("upload OUTPUT_DIR/final to --hub_model_id"))
    hub_model_id: str | None = field(default=None, metadata=_help("ORG/NAME"))
    hub_widget_model_id: str | None = field(default=None, metadata=_help(
        "ORG/NAME of a second model repo for the flat widget export (OUTPUT_DIR/widget, pushed with "
        "--push_to_hub): the Hub widget only serves a repo's root, never a subfolder"))
    hub_private: bool = False
    dataset_name: str | None = field(default=None, metadata=_help("dataset id named in the model card"))

    def __post_init__(self) -> None:
        sources = [s for s, on in (("--demo", self.demo), ("--table", self.table), ("--dataset_dir", self.dataset_dir)) if on]
        if len(sources) != 1:
            raise ValueError(f"give exactly one data source of --demo, --table, --dataset_dir (got {sources or 'none'})")
        table_options(self)  # a bad JSON or policy fails here, before anything runs
        if self.init_from and self.encoder_checkpoint:
            raise ValueError("--init_from already holds encoder weights; do not also give --encoder_checkpoint")
        if self.push_to_hub and not self.hub_model_id:
            raise ValueError("--push_to_hub needs --hub_model_id ORG/NAME")
        if self.hub_model_id and self.hub_model_id.count("/") != 1:
            raise ValueError(f"--hub_model_id must look like ORG/NAME, got {self.hub_model_id!r}")
        if self.hub_widget_model_id and (self.hub_widget_model_id.count("/") != 1
                                         or self.hub_widget_model_id == self.hub_model_id):
            raise ValueError("--hub_widget_model_id must look like ORG/NAME and differ from --hub_model_id, got "
                             f"{self.hub_widget_model_id!r}")
        from .calibrate import parse_tune_thresholds

        parse_tune_thresholds(self.tune_thresholds)  # a bad spelling fails before anything runs
        if self.threshold_min_positives < 1:
            raise ValueError(f"--threshold_min_positives must be >= 1, got {self.threshold_min_positives}")
        if self.mixed_precision not in ("no", "bf16", "fp16", "auto"):
            raise ValueError(f"--mixed_precision must be no|bf16|fp16|auto, got {self.mixed_precision!r}")
        if self.report_to not in ("tensorboard", "none", "auto"):
            raise ValueError(f"--report_to must be tensorboard|none|auto, got {self.report_to!r}")
        if self.dataloader_num_workers < -1:
            raise ValueError(f"--dataloader_num_workers must be >= 0 or -1 (auto), got {self.dataloader_num_workers}")
        if self.dataloader_prefetch_factor is not None and self.dataloader_prefetch_factor < 1:
            raise ValueError(f"--dataloader_prefetch_factor must be >= 1, got {self.dataloader_prefetch_factor}")
        for name in ("per_device_train_batch_size", "gradient_accumulation_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name} must be >= 1, got {getattr(self, name)}")
        from ..configuration_benthicnet import OUTPUT_TYPE_NAMES

        if self.output_type is not None and self.output_type not in OUTPUT_TYPE_NAMES:
            raise ValueError(f"--output_type must be one of {OUTPUT_TYPE_NAMES}, got {self.output_type!r}")
        if self.init_head_bias not in ("prior", "zero"):
            raise ValueError(f"--init_head_bias must be prior|zero, got {self.init_head_bias!r}")
        if self.lpros is not None and not self.lpros >= 0:
            raise ValueError(f"--lpros must be a percentage >= 0, got {self.lpros}")
        if self.node_weights not in (None, "imbalance"):
            raise ValueError(f"--node_weights must be imbalance, got {self.node_weights!r}")
        from ..configuration_benthicnet import LOSS_NAMES
        from ..losses import NODE_WEIGHT_BITS

        if self.node_weights_apply_to not in (None, *NODE_WEIGHT_BITS):
            raise ValueError(f"--node_weights_apply_to must be one of {NODE_WEIGHT_BITS}, got {self.node_weights_apply_to!r}")
        if self.loss not in (None, *LOSS_NAMES):
            raise ValueError(f"--loss must be one of {LOSS_NAMES}, got {self.loss!r}")
        if self.ensemble_size is not None and self.ensemble_size < 1:
            raise ValueError(f"--ensemble_size must be >= 1, got {self.ensemble_size}")
        if self.mc_dropout_samples is not None and self.mc_dropout_samples < 0:
            raise ValueError(f"--mc_dropout_samples must be >= 0, got {self.mc_dropout_samples}")
        _check_recipe_and_task(self)
        if self.encoder_kwargs:
            kwargs = json.loads(self.encoder_kwargs)
            if not isinstance(kwargs, dict):
                raise ValueError(f"--encoder_kwargs must be a JSON object, got {self.encoder_kwargs!r}")

    @property
    def ensemble_overrides(self) -> dict[str, Any]:
        """The ensemble and rare-node loss settings given on the command line, as ``BenthicNetConfig``
        arguments."""
        given = {"ensemble_size": self.ensemble_size, "ensemble_dropout_samples": self.mc_dropout_samples,
                 "uncertainty": self.uncertainty, "node_weights_apply_to": self.node_weights_apply_to,
                 "loss": self.loss, "focal_uncertainty": self.focal_uncertainty, "focal_k": self.focal_k,
                 "focal_min": self.focal_min}
        return {k: v for k, v in given.items() if v is not None}

    @property
    def eval_batch_size(self) -> int:
        return self.per_device_eval_batch_size or self.per_device_train_batch_size

    @property
    def encoder_kwargs_dict(self) -> dict[str, Any]:
        return json.loads(self.encoder_kwargs) if self.encoder_kwargs else {}

    @property
    def metric_greater_is_better(self) -> bool:
        if self.greater_is_better is not None:
            return self.greater_is_better
        return not any(self.metric_for_best_model.endswith(k) for k in LOWER_IS_BETTER)

    @property
    def demo_dir(self) -> Path:
        return Path(self.data_dir) if self.data_dir else Path(self.output_dir) / "demo_data"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _check_recipe_and_task(args: "FinetuneArguments") -> None:
    """Recipe name, one-hot task spelling, augmentation ranges; the one-hot task trains ``hsoftmax``."""
    from .one_hot import parse_one_hot_task
    from .recipes import RECIPE_NAMES, resolve_recipe

    if args.recipe is not None:
        if args.recipe not in RECIPE_NAMES:
            raise ValueError(f"--recipe must be one of {', '.join(RECIPE_NAMES)}, got {args.recipe!r}")
        args.recipe = resolve_recipe(args.recipe, args.encoder).name  # hft → hft_vit | hft_resnet50, as saved
    if not 0 < args.crop_scale_min <= 1:
        raise ValueError(f"--crop_scale_min must be in (0, 1], got {args.crop_scale_min}")
    for name in ("vflip", "color_jitter", "pca_lighting"):
        if getattr(args, name) < 0 or (name == "vflip" and args.vflip > 1):
            raise ValueError(f"--{name} out of range: {getattr(args, name)}")
    if args.one_hot_task is not None:
        task = parse_one_hot_task(args.one_hot_task)  # a bad spelling fails here
        if args.init_from:
            raise ValueError("--one_hot_task builds a new K-class head; --init_from loads a model with its own "
                             "heads and hierarchy. Start from encoder weights with --encoder_checkpoint instead")
        if args.output_type is None:
            args.output_type = "hsoftmax"
        elif args.output_type != "hsoftmax":
            raise ValueError(f"--one_hot_task trains a softmax over its classes (output_type hsoftmax); "
                             f"got --output_type {args.output_type}")
        if args.metric_for_best_model == "overall/hml_ap":  # the default: a one-hot task is chosen by accuracy
            args.metric_for_best_model = f"{task.name}/accuracy"


def table_options(args: "FinetuneArguments") -> dict[str, Any]:
    """The builder options of ``--table`` (``columns``, ``source_exhaustive``, ``exhaustive``,
    ``on_unknown``) as :func:`benthicnet_hf.data.build_dataset` keywords; only the ones set."""
    from ..labels import UNKNOWN_POLICIES

    given = [flag for flag, on in (("--columns", args.columns), ("--source_exhaustive", args.source_exhaustive),
                                   ("--non_exhaustive", args.non_exhaustive),
                                   ("--on_unknown", args.on_unknown != "error")) if on]
    if given and not args.table:
        raise ValueError(f"{', '.join(given)} apply to --table (the builder); a --demo or --dataset_dir "
                         "dataset is already encoded")
    if args.on_unknown not in UNKNOWN_POLICIES:
        raise ValueError(f"--on_unknown must be one of {UNKNOWN_POLICIES}, got {args.on_unknown!r}")
    options: dict[str, Any] = {"columns": _json_flag("--columns", args.columns),
                               "source_exhaustive": _json_flag("--source_exhaustive", args.source_exhaustive),
                               "exhaustive": {head: False for head in args.non_exhaustive} or None,
                               "on_unknown": args.on_unknown}
    return {k: v for k, v in options.items() if v is not None and not (k == "on_unknown" and v == "error")}


def _json_flag(flag: str, text: str | None) -> Any:
    if text is None:
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"{flag} must be JSON, got {text!r}: {err}") from None
    if not isinstance(value, dict):
        raise ValueError(f"{flag} must be a JSON object, got {text!r}")
    return value


def parse_dataclass_args(cls: type[T], argv: Sequence[str] | None = None, description: str | None = None) -> T:
    """Command-line flags (``argv`` default: ``sys.argv[1:]``) → one ``cls`` instance, through
    transformers' ``HfArgumentParser``: the one argument style of every training script."""
    import sys

    from transformers import HfArgumentParser

    from .recipes import apply_recipe_defaults

    argv = sys.argv[1:] if argv is None else list(argv)
    parser = HfArgumentParser(cls, description=description)
    if any(action.dest == "recipe" for action in parser._actions):
        apply_recipe_defaults(parser, argv)  # defaults only: explicit flags win
    (args,) = parser.parse_args_into_dataclasses(args=argv)
    return args


def parse_args(argv: Sequence[str] | None = None) -> FinetuneArguments:
    """Parse command-line flags (``argv`` default: ``sys.argv[1:]``) into :class:`FinetuneArguments`."""
    return parse_dataclass_args(FinetuneArguments, argv)

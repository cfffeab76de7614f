"""Configuration of BenthicNet hierarchical multi-label classifiers (a transformers ``PretrainedConfig``).

Remote-code safe: imports only installed packages and relative siblings, so the file works when
``register_for_auto_class`` copies it next to the weights.
"""

from __future__ import annotations

import numbers
import warnings
from typing import Any

from transformers import PretrainedConfig

from .calibration import check_head_temperatures, check_node_thresholds
from .hierarchy import Hierarchy, fingerprint_difference
from .losses import NODE_WEIGHT_BITS

#: BenthicNet image statistics (the reference's normalisation), RGB.
BENTHICNET_MEAN = (0.359, 0.413, 0.386)
BENTHICNET_STD = (0.219, 0.215, 0.209)

#: The output types (``config.output_type``): how a taxonomy's logits become coherent probabilities
#: and a masked loss. The one list of names: ``"mcm"`` (C-HMCNN, :class:`.losses.MCMCriterion`) and
#: the ETHEC variants; :data:`benthicnet_hf.output_types.OUTPUT_TYPES` maps each to its class and
#: checks at import that it covers exactly these names. Kept here so that remote code validates configs.
OUTPUT_TYPE_NAMES = ("mcm", "per_level", "masked_per_level", "marginalisation", "hsoftmax", "flat_baseline",
                     "joint_embedding")

#: Per-node ensemble uncertainty measures (``rare_nodes.uncertainty.MODES``; repeated here because a
#: remote-code config may not import the package) and the public code's aliases for them.
UNCERTAINTY_MODES = ("bma", "predictive", "aleatoric", "epistemic", "gmu")
UNCERTAINTY_ALIASES = {"mean": "bma", "bbma": "bma", "pcs": "gmu", "vgmu": "gmu", "js": "epistemic"}

#: Training objectives of the ``"mcm"`` output type (``config.loss``): the masked MCLoss, or the
#: rare-node paper's weighted focal MCLoss over the ensemble members (``rare_nodes.member_focal``).
LOSS_NAMES = ("mcloss", "focal")


#: CATAMI classes that mean "nothing of this head here" (head → keys). Such a class is exclusive with
#: the rest of its head: predicted only when no other node of the head is (``absence_nodes``).
ABSENCE_CLASSES = {"biota": ("No visible biota",), "bedforms": ("None",)}


def default_absence_nodes(hier: Hierarchy) -> list[str]:
    """``"head: key"`` of the :data:`ABSENCE_CLASSES` present in ``hier`` (none for other schemes)."""
    present = set(hier.labels)
    return [f"{h}: {k}" for h, keys in ABSENCE_CLASSES.items() for k in keys if f"{h}: {k}" in present]


def canonical_uncertainty(mode: str) -> str:
    """The canonical name of an uncertainty mode (aliases accepted, case-insensitive)."""
    name = UNCERTAINTY_ALIASES.get(str(mode).lower(), str(mode).lower())
    if name not in UNCERTAINTY_MODES:
        raise ValueError(f"uncertainty must be one of {UNCERTAINTY_MODES} (aliases {sorted(UNCERTAINTY_ALIASES)}), "
                         f"got {mode!r}")
    return name


def check_ensemble(output_type: str, head_dropout: float, ensemble_size: Any, dropout_samples: Any) -> None:
    """Clear errors for ensemble settings the model cannot run (see :class:`BenthicNetConfig`)."""
    for name, value, low in (("ensemble_size", ensemble_size, 1), ("ensemble_dropout_samples", dropout_samples, 0)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    if (ensemble_size > 1 or dropout_samples > 0) and output_type != "mcm":
        raise ValueError(f"ensembles (ensemble_size={ensemble_size}, ensemble_dropout_samples={dropout_samples}) "
                         f"need output_type='mcm', got {output_type!r}")
    if dropout_samples > 0 and not head_dropout > 0:
        raise ValueError(f"MC dropout (ensemble_dropout_samples={dropout_samples}) needs head_dropout > 0, "
                         f"got {head_dropout}")


def check_loss(loss: str, output_type: str, ensemble_size: int, dropout_samples: int, focal_k: Any,
               focal_min: Any) -> None:
    """Clear errors for a training objective the model cannot run (see :class:`BenthicNetConfig`)."""
    if loss not in LOSS_NAMES:
        raise ValueError(f"loss must be one of {LOSS_NAMES}, got {loss!r}")
    if loss == "focal":
        if output_type != "mcm":
            raise ValueError(f"loss='focal' is the weighted focal MCLoss of output_type='mcm', got {output_type!r}")
        if ensemble_size < 2 and dropout_samples < 1:
            raise ValueError("loss='focal' takes its uncertainty from ensemble members: set ensemble_size > 1 "
                             f"or ensemble_dropout_samples > 0 (got {ensemble_size} and {dropout_samples})")
    for name, value in (("focal_k", focal_k), ("focal_min", focal_min)):
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not value >= 0:
            raise ValueError(f"{name} must be a number >= 0, got {value!r}")


def check_hierarchy_fingerprint(saved: Any, hier: Hierarchy) -> None:
    """Refuse a hierarchy that differs from the ``hierarchy_fingerprint`` saved with it (None: no check)."""
    if saved is None:
        return
    if not isinstance(saved, dict) or not isinstance(saved.get("all"), str):
        raise ValueError(f"hierarchy_fingerprint must be the dict written by save_pretrained "
                         f"({{'all': sha256, 'heads': {{...}}}}), got {str(saved)[:200]}")
    diff = fingerprint_difference(saved, hier.fingerprint())
    if diff:
        raise ValueError(
            f"the config's hierarchy is not the one the weights were saved with ({diff}): the head outputs "
            "would be read as the wrong labels. Restore the saved hierarchy (config.json 'hierarchy'); to "
            "train new heads, build a new config and load the encoder only"
        )


def check_node_support(support: Any, num_nodes: int) -> dict[str, list[int]] | None:
    """Validated ``{"positives": [...], "negatives": [...]}`` (non-negative ints, ``num_nodes`` each)."""
    if support is None:
        return None
    if not isinstance(support, dict) or set(support) != {"positives", "negatives"}:
        raise ValueError("node_support must be a dict with exactly the keys 'positives' and 'negatives', "
                         f"got {type(support).__name__} {sorted(support) if isinstance(support, dict) else ''}")
    out = {}
    for key, values in support.items():
        values = [int(v) for v in values]
        if len(values) != num_nodes or min(values, default=0) < 0:
            raise ValueError(f"node_support[{key!r}] must hold {num_nodes} counts >= 0, got {len(values)} "
                             f"values (min {min(values, default=0)})")
        out[key] = values
    return out


class BenthicNetConfig(PretrainedConfig):
    r"""Configuration of :class:`BenthicNetForHierarchicalClassification`.

    Args:
        encoder_name (`str`, defaults to ``"resnet50"``): a ``timm`` architecture name, built with
            ``pretrained=False`` and ``num_classes=0`` (pooled features; never touches the network).
        encoder_kwargs (`dict`, *optional*): extra keyword arguments for ``timm.create_model``
            (e.g. ``{"img_size": 64}`` for a ViT); ``num_classes``/``pretrained`` are not allowed.
        hierarchy (`list[dict]`, *optional*): the label hierarchy in the ordered list form of
            ``Hierarchy.to_list()`` (a list, because config.json is written with sorted keys).
            Defaults to the shipped CATAMI scheme (biota, substrate, relief, bedforms, colour).
        head_hidden_dim (`int`, defaults to 2048): hidden width of each head's MLP
            ``BatchNorm1d(affine=False) → Linear(hidden) → ReLU → Dropout → Linear(nodes)``.
            0 makes linear heads ``BatchNorm1d(affine=False) → Dropout → Linear(nodes)``, which
            can be exported exactly for the Hub widget.
        head_dropout (`float`, defaults to 0.7): dropout probability inside each head.
        output_type (`str`, defaults to ``"mcm"``): coherence of the outputs; ``"mcm"`` is the
            C-HMCNN max-constraint module with MCLoss (flat heads: plain sigmoid and masked BCE);
            ``"per_level"``, ``"masked_per_level"``, ``"marginalisation"``, ``"hsoftmax"`` are the
            ETHEC variants of :mod:`benthicnet_hf.output_types` (single-path tree heads);
            ``"joint_embedding"``: images and labels as order embeddings in one space (``embedding_dim``).
        embedding_dim (`int`, defaults to 32): dimension ``d`` of the joint image–label space of
            ``output_type="joint_embedding"`` (each tree/DAG head's MLP outputs ``d`` values and holds
            ``(n_nodes, d)`` label points); unused by the other output types.
        freeze_encoder (`bool`, defaults to False): linear probing: encoder weights get no
            gradient and the encoder stays in eval mode (BatchNorm statistics untouched).
        image_size (`int`, defaults to 224): side of the square centre crop fed to the encoder.
        image_mean / image_std (`list[float]`): RGB normalisation (BenthicNet statistics).
        crop_pct (`float`, defaults to 0.875): eval resize is ``image_size / crop_pct`` on the
            shortest edge, then a centre crop (timm's eval transform).
        node_weights (`list[float]`, *optional*): per-node loss multipliers, ``(num_nodes,)``, e.g. the
            imbalance weights of ``rare_nodes.imbalance_weights`` (stored here so that a saved model
            reproduces its training objective).
        node_weights_apply_to (`str`, defaults to ``"negative"``): for ``output_type="mcm"`` (and flat
            heads under every output type), which bits the node weight multiplies
            (``losses.bit_weights``): ``"negative"`` (``y = 0`` bits, what the rare-node paper's public
            code does in effect), ``"positive"`` or ``"all"``. The ETHEC output types of tree heads
            weight the labelled node's term.
        ensemble_size (`int`, defaults to 1): ``K`` independent copies of the whole head stack over the
            shared encoder, computed batched (stacked weights ``(K, out, in)``; ``output_type="mcm"``
            only). Each member is trained on every batch; the loss is the mean of the members' losses.
        ensemble_dropout_samples (`int`, defaults to 0): MC dropout: in eval mode, every member's heads
            run this many times with dropout active (``K · S`` members in all); 0 = off. Needs
            ``head_dropout > 0``.
        uncertainty (`str`, defaults to ``"bma"``): the per-node uncertainty reported for ensembles
            and MC dropout, one of ``"bma"`` (bBMA, ``1 − |2 p̄ − 1|``), ``"predictive"``,
            ``"aleatoric"``, ``"epistemic"``, ``"gmu"`` (see ``rare_nodes.uncertainty``).
        loss (`str`, defaults to ``"mcloss"``): the training objective of ``output_type="mcm"``:
            ``"mcloss"`` (masked MCLoss, node weights on the bits of ``node_weights_apply_to``) or
            ``"focal"``, the rare-node paper's weighted focal MCLoss (``rare_nodes.member_focal``): each
            member's bit ``j`` of sample ``b`` weighs ``w_bj · (focal_min + u_bj ** focal_k)``, ``u`` the
            ``focal_uncertainty`` of the members' detached sigmoid outputs, ``w`` the node weight on the
            bits of ``node_weights_apply_to`` (1 without ``node_weights``: focal alone). Needs members
            (``ensemble_size > 1`` and/or ``ensemble_dropout_samples > 0``; with this loss the MC dropout
            passes also run in training, the paper's dropout ensemble).
        focal_uncertainty (`str`, defaults to ``"bma"``): the uncertainty of the focal factor (the
            modes of ``uncertainty``; the paper's best: ``"bma"`` and ``"gmu"``).
        focal_k (`float`, defaults to 2.0): exponent ``γ`` of the focal factor.
        focal_min (`float`, defaults to 0.25): floor ``f_min`` of the focal factor.
        node_support (`dict`, *optional*): per-node training support from the training split,
            ``{"positives": [...], "negatives": [...]}`` (known positive / negative bits, ``(num_nodes,)``
            each), written by fine-tuning. Prediction leaves out nodes with no positive training
            example and heads with no training label (:meth:`trained_nodes`). None = unknown (all
            nodes predicted, as for models saved before it existed).
        absence_nodes (`list[str]`, *optional*): ``"head: key"`` of classes that mean absence within
            their head (CATAMI: ``"biota: No visible biota"``, ``"bedforms: None"``); predicted only
            when nothing else in the head is. Defaults to the CATAMI ones present in the hierarchy.
        head_temperatures (`dict[str, float]`, *optional*): ``{head: T}``, one temperature per head fitted
            on the validation split after fine-tuning; the model divides each head's logits by it before
            the output type (see ``calibration.py``: coherence is kept). None = no scaling.
        node_thresholds (`list[float]`, *optional*): ``(num_nodes,)`` decision thresholds tuned per node on
            the validation split (F1-optimal or for a target precision); ``predict`` and
            ``predict_paths_for_config`` use them. None = the global 0.5.
        hierarchy_fingerprint (`dict`, *optional*): written by ``save_pretrained`` (a hash per head of
            :meth:`Hierarchy.fingerprint`). When given, it must match ``hierarchy``: a ``config.json``
            whose hierarchy was edited after saving is refused, naming the heads that differ. Configs
            saved without it load as before.
        problem_type (`str`): always ``"multi_label_classification"``.
        kwargs: passed to ``PretrainedConfig`` (``id2label``/``label2id`` are derived from the
            hierarchy: ``"head: key"`` per node; given ones must agree).
    """

    model_type = "benthicnet"

    def __init__(
        self,
        encoder_name: str = "resnet50",
        encoder_kwargs: dict[str, Any] | None = None,
        hierarchy: list[dict[str, Any]] | None = None,
        head_hidden_dim: int = 2048,
        head_dropout: float = 0.7,
        output_type: str = "mcm",
        freeze_encoder: bool = False,
        image_size: int = 224,
        image_mean: list[float] | tuple[float, ...] = BENTHICNET_MEAN,
        image_std: list[float] | tuple[float, ...] = BENTHICNET_STD,
        crop_pct: float = 0.875,
        node_weights: list[float] | None = None,
        node_weights_apply_to: str = "negative",
        ensemble_size: int = 1,
        ensemble_dropout_samples: int = 0,
        uncertainty: str = "bma",
        loss: str = "mcloss",
        focal_uncertainty: str = "bma",
        focal_k: float = 2.0,
        focal_min: float = 0.25,
        node_support: dict[str, list[int]] | None = None,
        absence_nodes: list[str] | None = None,
        hierarchy_fingerprint: dict[str, Any] | None = None,
        head_temperatures: dict[str, float] | None = None,
        node_thresholds: list[float] | None = None,
        embedding_dim: int = 32,
        **kwargs: Any,
    ) -> None:
        if "head_type" in kwargs:  # the 0.1 name, still in saved configs: read for one release
            legacy = kwargs.pop("head_type")
            if output_type != "mcm" and output_type != legacy:
                raise ValueError(f"config sets both output_type={output_type!r} and its old name "
                                 f"head_type={legacy!r}; keep output_type only")
            warnings.warn("BenthicNetConfig(head_type=...) is renamed output_type; head_type will be "
                          "removed in 0.3", FutureWarning, stacklevel=2)
            output_type = legacy
        if isinstance(hierarchy, Hierarchy):
            hierarchy = hierarchy.to_list()
        if hierarchy is None:
            hierarchy = Hierarchy.catami().to_list()
        hier = Hierarchy.from_list(hierarchy)  # validates
        check_hierarchy_fingerprint(hierarchy_fingerprint, hier)
        encoder_kwargs = dict(encoder_kwargs or {})
        reserved = sorted({"num_classes", "pretrained"} & set(encoder_kwargs))
        if reserved:
            raise ValueError(f"encoder_kwargs must not set {reserved}: the model always uses "
                             "num_classes=0 and pretrained=False (load weights with load_encoder)")
        if output_type not in OUTPUT_TYPE_NAMES:
            raise ValueError(f"output_type must be one of {OUTPUT_TYPE_NAMES}, got {output_type!r}")
        if isinstance(embedding_dim, bool) or not isinstance(embedding_dim, int) or embedding_dim < 1:
            raise ValueError(f"embedding_dim must be an integer >= 1, got {embedding_dim!r}")
        if head_hidden_dim < 0:
            raise ValueError(f"head_hidden_dim must be >= 0 (0 = linear heads), got {head_hidden_dim}")
        if node_weights is not None and len(node_weights) != hier.num_nodes:
            raise ValueError(f"node_weights has {len(node_weights)} entries, the hierarchy has "
                             f"{hier.num_nodes} nodes")
        if node_weights_apply_to not in NODE_WEIGHT_BITS:
            raise ValueError(f"node_weights_apply_to must be one of {NODE_WEIGHT_BITS}, got {node_weights_apply_to!r}")
        check_ensemble(output_type, head_dropout, ensemble_size, ensemble_dropout_samples)
        uncertainty = canonical_uncertainty(uncertainty)
        check_loss(loss, output_type, ensemble_size, ensemble_dropout_samples, focal_k, focal_min)
        focal_uncertainty = canonical_uncertainty(focal_uncertainty)
        for name, stat in (("image_mean", image_mean), ("image_std", image_std)):
            if len(stat) != 3:
                raise ValueError(f"{name} must have 3 (RGB) values, got {list(stat)}")

        self.encoder_name = encoder_name
        self.encoder_kwargs = encoder_kwargs
        self.hierarchy = hierarchy
        self.head_hidden_dim = int(head_hidden_dim)
        self.head_dropout = float(head_dropout)
        self.output_type = output_type
        self.embedding_dim = embedding_dim
        self.freeze_encoder = bool(freeze_encoder)
        self.image_size = int(image_size)
        self.image_mean = [float(v) for v in image_mean]
        self.image_std = [float(v) for v in image_std]
        self.crop_pct = float(crop_pct)
        self.node_weights = None if node_weights is None else [float(w) for w in node_weights]
        self.node_weights_apply_to = node_weights_apply_to
        self.ensemble_size = int(ensemble_size)
        self.ensemble_dropout_samples = int(ensemble_dropout_samples)
        self.uncertainty = uncertainty
        self.loss = loss
        self.focal_uncertainty = focal_uncertainty
        self.focal_k = float(focal_k)
        self.focal_min = float(focal_min)
        self.node_support = check_node_support(node_support, hier.num_nodes)
        if absence_nodes is None:
            absence_nodes = default_absence_nodes(hier)
        unknown = sorted(set(absence_nodes) - set(hier.labels))
        if unknown:
            raise ValueError(f"absence_nodes {unknown} are not nodes of the hierarchy (names are 'head: key')")
        self.absence_nodes = list(absence_nodes)
        self.head_temperatures = check_head_temperatures(head_temperatures, hier.head_names)
        self.node_thresholds = check_node_thresholds(node_thresholds, hier.num_nodes, hier.labels)

        labels = hier.labels
        id2label = {i: name for i, name in enumerate(labels)}
        given = kwargs.pop("id2label", None)
        if given is not None:
            given = {int(k): v for k, v in given.items()}
            if given != id2label:
                diff = [i for i in range(max(len(given), len(id2label))) if given.get(i) != id2label.get(i)]
                raise ValueError(
                    f"id2label does not match the hierarchy ({len(given)} vs {len(id2label)} labels; "
                    f"first difference at index {diff[0]}: {given.get(diff[0])!r} vs {id2label.get(diff[0])!r})"
                )
        kwargs.pop("label2id", None)
        kwargs.pop("num_labels", None)
        kwargs["problem_type"] = "multi_label_classification"
        super().__init__(id2label=id2label, label2id={n: i for i, n in id2label.items()}, **kwargs)

    def get_hierarchy(self) -> Hierarchy:
        """The :class:`Hierarchy` described by ``self.hierarchy`` (cached per list object)."""
        cached = self.__dict__.get("_hierarchy_cache")
        if cached is None or cached[0] is not self.hierarchy:
            cached = (self.hierarchy, Hierarchy.from_list(self.hierarchy))
            self.__dict__["_hierarchy_cache"] = cached
        return cached[1]

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        out.pop("_hierarchy_cache", None)  # a derived object, not configuration
        # computed at save time, so a hierarchy changed after construction is still recorded exactly
        out["hierarchy_fingerprint"] = self.get_hierarchy().fingerprint()
        return out

    def trained_nodes(self) -> list[bool] | None:
        """``(num_nodes,)`` True where the node had a positive training example (so its head had
        training labels); None when the config has no ``node_support``."""
        if self.node_support is None:
            return None
        return [p > 0 for p in self.node_support["positives"]]

    @property
    def num_nodes(self) -> int:
        return self.get_hierarchy().num_nodes

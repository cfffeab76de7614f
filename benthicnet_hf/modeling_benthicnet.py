"""BenthicNet models: a timm encoder with coherent hierarchical multi-label heads (transformers API).

``images → backbone (timm, pooled features (B, F)) → classifier heads (one MLP per taxonomy) →
raw logits (B, N) → output type (default: the C-HMCNN max-constraint) → coherent probabilities
(B, N)``. Node order is the hierarchy's global layout (``config.id2label``). The output type is one
``criterion`` object (:func:`build_criterion`) that gives both the probabilities and the loss.

Ensembles (``config.ensemble_size = K > 1`` and/or MC dropout, ``config.ensemble_dropout_samples``)
run ``M`` members over the shared features, ``(M, B, N)`` logits, and report the mean of the
members' coherent probabilities with a per-node uncertainty. They use ``benthicnet_hf.rare_nodes``
(imported from the installed package when this file runs as remote code).

Remote-code safe: this file imports only installed packages and relative siblings, so
``save_pretrained`` can copy it next to the weights (``trust_remote_code=True`` loading).
"""

from __future__ import annotations

import copy
import importlib
import inspect
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from transformers import AutoConfig, AutoModelForImageClassification, PreTrainedModel
from transformers import initialization as init
from transformers.utils import ModelOutput

from .calibration import scale_logits
from .checkpoint_match import check_loaded_heads, head_shape_mismatch
from .encoder import checked_pixel_values, create_encoder
from .classifier_heads import ClassifierHeads, init_head_layer, rare_nodes_module
from .configuration_benthicnet import BenthicNetConfig, check_ensemble
from .constraint import MaxConstraint, check_finite_logits
from .hierarchy import Hierarchy
from .losses import HierarchicalLoss, MCMCriterion


@dataclass
class BenthicNetClassifierOutput(ModelOutput):
    """Output of :class:`BenthicNetForHierarchicalClassification`.

    Args:
        loss: scalar masked hierarchical loss (MCLoss / BCE), when ``labels`` were given.
        logits: ``(batch, num_nodes)`` node logits of all heads over ``config.head_temperatures`` (not coherent).
        probabilities: ``(batch, num_nodes)`` coherent scores of the output type (``"mcm"``:
            ``sigmoid(MCM(logits))``): no node scores above any of its ancestors.
        features: ``(batch, num_features)`` pooled encoder features.
        hidden_states: ``(feature_map,)`` the unpooled encoder output, if requested.
        member_probabilities: ``(batch, members, num_nodes)`` coherent scores of each ensemble member
            (``members = K``, or ``K · S`` with ``S`` MC dropout passes in eval mode); batch-first so
            that pipelines can split a batch. None for a single head stack without MC dropout.
        uncertainty: ``(batch, num_nodes)`` per-node uncertainty of the members (``config.uncertainty``,
            e.g. bBMA ``1 − |2 p̄ − 1|``); None when ``member_probabilities`` is None.

    With members, ``probabilities`` is the mean of ``member_probabilities`` over members (a mean of
    coherent vectors is coherent), ``logits`` the members' mean raw logits (for inspection: they are
    not the logits of ``probabilities``) and ``loss`` the mean of the members' losses.
    """

    loss: Tensor | None = None
    logits: Tensor | None = None
    probabilities: Tensor | None = None
    features: Tensor | None = None
    hidden_states: tuple[Tensor, ...] | None = None
    member_probabilities: Tensor | None = None
    uncertainty: Tensor | None = None


@dataclass
class BenthicNetModelOutput(ModelOutput):
    """Output of :class:`BenthicNetModel`: ``pooler_output`` ``(batch, num_features)``."""

    pooler_output: Tensor | None = None
    hidden_states: tuple[Tensor, ...] | None = None


class BenthicNetPreTrainedModel(PreTrainedModel):
    config_class = BenthicNetConfig
    base_model_prefix = "benthicnet"
    main_input_name = "pixel_values"
    input_modalities = ("image",)
    supports_gradient_checkpointing = False

    def _init_weights(self, module: nn.Module) -> None:
        # Only our own modules: the timm encoder keeps timm's init (or its loaded weights).
        if isinstance(module, ClassifierHeads):
            for head in module.heads:
                for layer in head:
                    init_head_layer(layer)
        elif isinstance(module, BenthicNetForHierarchicalClassification) and module.node_weights is not None:
            init.copy_(module.node_weights, torch.tensor(self.config.node_weights, dtype=module.node_weights.dtype))
        elif isinstance(module, (MaxConstraint, HierarchicalLoss)):
            # non-persistent index buffers are not in checkpoints: rebuild them from the config
            hier = self.config.get_hierarchy()
            init.copy_(module.ancestor_pairs, torch.as_tensor(hier.ancestor_pairs, dtype=torch.long))
            if isinstance(module, HierarchicalLoss):
                init.copy_(module.head_of_node, torch.as_tensor(hier.head_of_node, dtype=torch.long))

    def check_pixel_values(self, pixel_values: Tensor) -> Tensor:
        """:func:`~benthicnet_hf.encoder.checked_pixel_values` for this model's encoder."""
        return checked_pixel_values(pixel_values, self.config, self.backbone)


class BenthicNetModel(BenthicNetPreTrainedModel):
    """The encoder alone: ``pixel_values (B, C, H, W) → pooler_output (B, num_features)``."""

    def __init__(self, config: BenthicNetConfig) -> None:
        super().__init__(config)
        self.backbone = create_encoder(config)
        self.num_features = self.backbone.num_features
        self.post_init()

    def forward(self, pixel_values: Tensor, output_hidden_states: bool | None = None,
                return_dict: bool | None = None, **kwargs: Any) -> BenthicNetModelOutput | tuple:
        pixel_values = self.check_pixel_values(pixel_values)
        fmap = self.backbone.forward_features(pixel_values)
        pooled = self.backbone.forward_head(fmap, pre_logits=True)
        out = BenthicNetModelOutput(pooler_output=pooled, hidden_states=(fmap,) if output_hidden_states else None)
        return out if return_dict is not False else out.to_tuple()


class BenthicNetForHierarchicalClassification(BenthicNetPreTrainedModel):
    """Timm encoder + per-head MLPs + max-constraint: coherent hierarchical multi-label outputs.

    Example::

        config = BenthicNetConfig(encoder_name="resnet50")          # CATAMI heads
        model = BenthicNetForHierarchicalClassification(config)
        model.load_encoder("barlow_twins_rn50.ckpt")                  # optional SSL weights
        out = model(pixel_values, labels=targets, label_mask=mask)    # (B, 3, 224, 224), (B, N), (B, N)
        out.loss.backward(); out.probabilities                       # (B, N) coherent

    With ``BenthicNetConfig(ensemble_size=5)`` the model holds 5 head stacks over the encoder and
    also returns ``out.member_probabilities`` (B, 5, N) and ``out.uncertainty`` (B, N).
    """

    def __init__(self, config: BenthicNetConfig) -> None:
        super().__init__(config)
        hierarchy = config.get_hierarchy()
        self.backbone = create_encoder(config)
        self.num_features = self.backbone.num_features
        self.heads = ClassifierHeads(self.num_features, hierarchy, config.head_hidden_dim, config.head_dropout,
                                       config.ensemble_size, config.output_type, config.embedding_dim)
        self.focal = rare_nodes_module("member_focal").MemberFocalWeights.from_config(config) if config.loss == "focal" else None
        self.criterion = build_criterion(hierarchy, config.output_type, "all" if self.focal else config.node_weights_apply_to)
        weights = None if config.node_weights is None else torch.tensor(config.node_weights, dtype=torch.float32)
        self.register_buffer("node_weights", weights, persistent=False)
        self.set_encoder_frozen(config.freeze_encoder)
        self.post_init()

    @property
    def constraint(self) -> MaxConstraint | None:
        """The max-constraint of ``output_type="mcm"`` (``criterion.constraint``); None otherwise."""
        return self.criterion.constraint if isinstance(self.criterion, MCMCriterion) else None

    # ------------------------------------------------------------- linear probing
    def set_encoder_frozen(self, frozen: bool = True) -> None:
        """Freeze (linear probing) or unfreeze the encoder; a frozen encoder also stays in eval mode."""
        self.config.freeze_encoder = bool(frozen)
        self.backbone.requires_grad_(not frozen)
        if frozen:
            self.backbone.eval()

    def train(self, mode: bool = True) -> "BenthicNetForHierarchicalClassification":
        super().train(mode)
        if self.config.freeze_encoder:  # keep BatchNorm statistics of a frozen encoder untouched
            self.backbone.eval()
        return self

    # ------------------------------------------------------------------ ensembles
    def set_mc_dropout(self, samples: int) -> None:
        """Set ``config.ensemble_dropout_samples`` (MC dropout passes in eval mode; 0 = off), checked."""
        check_ensemble(self.config.output_type, self.config.head_dropout, self.config.ensemble_size, samples)
        self.config.ensemble_dropout_samples = int(samples)

    def mc_dropout_samples(self) -> int:
        """MC dropout passes ``S`` of the next forward: ``config.ensemble_dropout_samples`` in eval mode (and in
        training with ``loss="focal"``: its members), else 0 in training mode (where dropout is on anyway)."""
        return 0 if self.training and self.focal is None else self.config.ensemble_dropout_samples

    def has_members(self) -> bool:
        """Whether the next forward runs an ensemble (``K > 1`` heads and/or MC dropout)."""
        return self.config.ensemble_size > 1 or self.mc_dropout_samples() > 0

    def member_logits(self, features: Tensor) -> Tensor:
        """Raw logits of every member: ``(batch, F)`` → ``(members, batch, N)``, members ordered
        ``k · S + s`` (member ``k``, MC dropout pass ``s``)."""
        samples = self.mc_dropout_samples()
        b = features.shape[0]
        if samples > 0:
            # one (S·B) batch, rows s·B + b; repeating leaves BatchNorm's (eval or batch) statistics as for B rows
            with rare_nodes_module("ensemble").dropout_active(self.heads):
                out = self.heads(features.repeat(samples, 1))
        else:
            out = self.heads(features)
        if out.dim() == 2:  # a single head stack
            out = out.unsqueeze(0)
        # (K, S·B, N) → (K·S, B, N)
        return out.reshape(out.shape[0] * max(samples, 1), b, out.shape[-1])

    def member_uncertainty(self, member_probs: Tensor) -> Tensor:
        """``config.uncertainty`` of ``(members, batch, N)`` coherent probabilities → ``(batch, N)``."""
        return rare_nodes_module("uncertainty").ensemble_uncertainty(member_probs, self.config.uncertainty)

    # -------------------------------------------------------------------- forward
    def check_logits(self, logits: Tensor) -> None:
        """Raise ``constraint.NonFiniteLogitsError`` (a ``FloatingPointError``) when the ``(rows, N)``
        logits hold NaN/inf, naming the count, rows and nodes (one host sync per forward). With
        ensemble members the rows are ``member · batch + row``.

        Skipped under fp16 autocast (``accelerate --mixed_precision fp16``): there an overflow is
        expected now and then; the loss comes out non-finite, and the gradient scaler skips the step and
        lowers its scale, as usual. The max-constraint propagates NaN instead of failing.
        """
        dev = logits.device.type
        if torch.is_autocast_enabled(dev) and torch.get_autocast_dtype(dev) == torch.float16:
            return
        check_finite_logits(logits, self.config.get_hierarchy().labels)

    def forward(
        self,
        pixel_values: Tensor,
        labels: Tensor | None = None,
        label_mask: Tensor | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs: Any,
    ) -> BenthicNetClassifierOutput | tuple:
        """Args:
            pixel_values: ``(batch, 3, H, W)`` normalised images.
            labels: optional ``(batch, num_nodes)`` 0/1 targets (ancestors of positives set).
            label_mask: optional ``(batch, num_nodes)`` 1 = known bit; ``labels`` without a mask
                means every bit is known.

        With an ensemble (``config.ensemble_size > 1``, or MC dropout in eval mode) the ``M`` members'
        logits ``(M, batch, N)`` are made coherent one by one; the output then has
        ``probabilities`` = their mean ``(batch, N)``, ``member_probabilities`` ``(batch, M, N)``,
        ``uncertainty`` ``(batch, N)``, ``logits`` = the members' mean raw logits ``(batch, N)`` and
        ``loss`` = the mean over members of each member's masked loss on the same batch.
        """
        pixel_values = self.check_pixel_values(pixel_values)
        n = self.config.num_labels
        if labels is not None and (labels.ndim != 2 or labels.shape != (pixel_values.shape[0], n)):
            raise ValueError(f"labels must have shape (batch, num_nodes) = ({pixel_values.shape[0]}, {n}), "
                             f"got {tuple(labels.shape)}")
        if label_mask is not None:
            if labels is None:
                raise ValueError("label_mask was given without labels")
            if label_mask.shape != labels.shape:
                raise ValueError(f"label_mask must have the shape of labels {tuple(labels.shape)}, "
                                 f"got {tuple(label_mask.shape)}")

        frozen = self.config.freeze_encoder
        with torch.set_grad_enabled(torch.is_grad_enabled() and not frozen):
            fmap = self.backbone.forward_features(pixel_values)
            features = self.backbone.forward_head(fmap, pre_logits=True)
        loss = None
        if self.has_members():
            members = scale_logits(self.member_logits(features), self.config)  # (M, B, N), per-head T
            m, b, _ = members.shape
            # every member's loss on the same batch at once: (M·B, N) rows, labels repeated
            flat_logits = members.reshape(m * b, n)
            logits = members.mean(0)
        else:
            m, logits = 1, scale_logits(self.heads(features), self.config)
            flat_logits = logits
        self.check_logits(flat_logits)
        # the loss runs in float32, which holds these dtypes exactly: one max-constraint serves both
        share = labels is not None and flat_logits.dtype in (torch.float32, torch.float16, torch.bfloat16)
        if not share:
            flat_probs = self.criterion.probabilities(flat_logits)
        if labels is not None:
            mask = torch.ones_like(labels) if label_mask is None else label_mask
            if m > 1:  # the masked mean over M copies of the batch = the mean of the members' losses
                labels, mask = labels.repeat(m, 1), mask.repeat(m, 1)
            weights = self.node_weights if self.focal is None else self.focal(flat_logits, labels, mask, self.node_weights, m)
            args = (flat_logits.float(), labels.float(), mask, weights)  # weights: the criterion's bits
            if share:
                flat_probs, out = self.criterion.probabilities_and_loss(*args, probabilities_dtype=flat_logits.dtype)
            loss = (out if share else self.criterion(*args)).loss
        member_probs = None if m == 1 else flat_probs.view(m, b, n)
        probabilities = flat_probs if m == 1 else member_probs.mean(0)
        uncertainty = None if m == 1 else self.member_uncertainty(member_probs)

        out = BenthicNetClassifierOutput(
            loss=loss, logits=logits, probabilities=probabilities, features=features,
            hidden_states=(fmap,) if output_hidden_states else None,
            member_probabilities=None if member_probs is None else member_probs.transpose(0, 1),
            uncertainty=uncertainty,
        )
        return out if return_dict is not False else out.to_tuple()

    # --------------------------------------------------------------- weights in/out
    def load_encoder(self, path: str | Path, strict: bool = True, **kwargs: Any) -> Any:
        """Load self-supervised encoder weights (timm/torchvision/Lightning checkpoints) into
        ``self.backbone`` through :func:`benthicnet_hf.conversion.load_encoder_weights`.

        A separate step after construction (``from_pretrained`` builds on the meta device).
        Returns the conversion's ``LoadReport``.
        """
        try:  # a sibling when installed; the package when this file runs as remote code
            conversion = importlib.import_module(".conversion", __package__)
        except ImportError:
            try:
                conversion = importlib.import_module("benthicnet_hf.conversion")
            except ImportError as err:
                raise ImportError("load_encoder needs the benthicnet_hf package (pip install benthicnet_hf)") from err
        return conversion.load_encoder_weights(self.backbone, path, strict=strict, **kwargs)

    def save_pretrained(self, save_directory: str | Path, *args: Any, **kwargs: Any) -> None:
        """``PreTrainedModel.save_pretrained`` plus the image processor (timm's eval transform) and
        the coherent-score pipeline (``config.custom_pipelines``; its file is copied as a relative
        import of this one), so that ``pipeline("image-classification", model=dir, trust_remote_code=True)`` works."""
        from .image_processing import make_image_processor
        from .pipeline_benthicnet import CUSTOM_PIPELINES

        had = "custom_pipelines" in self.config.__dict__
        previous = getattr(self.config, "custom_pipelines", None)
        # only the saved folder names the custom pipeline: in memory, plain pipeline(model=obj) works
        self.config.custom_pipelines = copy.deepcopy(CUSTOM_PIPELINES)
        try:
            super().save_pretrained(save_directory, *args, **kwargs)
        finally:
            if had:
                self.config.custom_pipelines = previous
            else:
                del self.config.__dict__["custom_pipelines"]
        processor = make_image_processor(self.config)
        # the processor class travels as remote code too (its file is copied, auto_map written)
        processor.register_for_auto_class("AutoImageProcessor")
        processor.save_pretrained(save_directory)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: Any, *args: Any, **kwargs: Any):
        """``PreTrainedModel.from_pretrained`` that refuses a config whose hierarchy does not match the
        checkpoint: other head shapes, fewer or more heads (transformers would only warn about
        unexpected or newly initialised head weights), or other labels of the same shapes (the saved
        ``hierarchy_fingerprint`` differs). ``ignore_mismatched_sizes=True`` skips the head check."""
        want_info = kwargs.pop("output_loading_info", False)
        try:
            model, info = super().from_pretrained(pretrained_model_name_or_path, *args,
                                                  output_loading_info=True, **kwargs)
        except RuntimeError as err:
            if "mismatched" not in str(err) and "size mismatch" not in str(err):
                raise
            config = kwargs.get("config")
            if not isinstance(config, BenthicNetConfig):
                # the saved config with the caller's overrides (e.g. ensemble_size=2), as the load used
                names = set(inspect.signature(BenthicNetConfig.__init__).parameters) - {"self", "kwargs"}
                overrides = {k: v for k, v in kwargs.items() if k in names}
                config = BenthicNetConfig.from_pretrained(pretrained_model_name_or_path, **overrides)
            detail = head_shape_mismatch(pretrained_model_name_or_path, config)
            raise ValueError(detail or f"the checkpoint does not match the config: {err}") from err
        where = {k: kwargs[k] for k in ("subfolder", "revision", "cache_dir") if kwargs.get(k) is not None}
        check_loaded_heads(pretrained_model_name_or_path, model.config, info,
                           kwargs.get("ignore_mismatched_sizes", False), **where)
        return (model, info) if want_info else model


def build_criterion(hierarchy: Hierarchy, output_type: str = "mcm",
                    node_weights_apply_to: str = "negative") -> nn.Module:
    """The output type over ``hierarchy``: ``.probabilities(logits)`` ``(B, N) → (B, N)`` and
    ``(logits, labels, mask, node_weights) → HierarchicalLossOutput``. ``"mcm"`` is
    :class:`~benthicnet_hf.losses.MCMCriterion` (a sibling file: runs as remote code); the ETHEC types
    come from ``benthicnet_hf.output_types`` (a subpackage, which remote code does not copy: the
    installed package is used then). ``OutputTypeCriterion(hierarchy, "mcm")`` wraps the same class.
    Every criterion sets unknown bits (mask 0) of the labels to 0 before they reach loss or weights."""
    if output_type == "mcm":
        return MCMCriterion(hierarchy, node_weights_apply_to)
    try:  # a sibling package when installed; as remote code, the installed package
        output_types = importlib.import_module(".output_types", __package__)
    except ImportError:
        output_types = importlib.import_module("benthicnet_hf.output_types")
    return output_types.OutputTypeCriterion(hierarchy, output_type, node_weights_apply_to)


def register_auto_classes() -> None:
    """Register with ``AutoConfig``/``AutoModelForImageClassification`` and for remote code."""
    AutoConfig.register(BenthicNetConfig.model_type, BenthicNetConfig, exist_ok=True)
    AutoModelForImageClassification.register(
        BenthicNetConfig, BenthicNetForHierarchicalClassification, exist_ok=True)
    BenthicNetConfig.register_for_auto_class()
    BenthicNetForHierarchicalClassification.register_for_auto_class("AutoModelForImageClassification")
    from transformers import AutoImageProcessor

    from .image_processing import BenthicNetImageProcessor

    # a torchvision-backend class: registered as such, or transformers warns of a "fallback"
    AutoImageProcessor.register(BenthicNetConfig, image_processor_classes={"torchvision": BenthicNetImageProcessor},
                                exist_ok=True)


# As remote code this file lives under ``transformers_modules``: the package's registration wins.
if not __name__.startswith("transformers_modules"):
    register_auto_classes()

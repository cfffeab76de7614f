"""benthicnet_hf: hierarchical multi-label classification of seafloor imagery on the HF stack.

The light layer (hierarchy, labels) imports eagerly; the model, conversion and data layers import
on first use, so ``import benthicnet_hf`` stays fast for label work.
"""

from importlib import import_module
from typing import TYPE_CHECKING, Any

from .hierarchy import Taxonomy, Hierarchy, HierarchyError
from .labels import EncodedLabels, LabelEncoder, UnknownLabelError, decode

__version__ = "0.1.0"

_LAZY = {
    "BenthicNetConfig": "configuration_benthicnet",
    "BenthicNetModel": "modeling_benthicnet",
    "BenthicNetForHierarchicalClassification": "modeling_benthicnet",
    "BenthicNetClassifierOutput": "modeling_benthicnet",
    "make_image_processor": "image_processing",
    "predict_paths": "prediction",
    "export_for_widget": "widget_export",
    "WidgetExportError": "widget_export",
    "MaxConstraint": "constraint",
    "HierarchicalLoss": "losses",
    "load_encoder_weights": "conversion",
    "save_encoder_safetensors": "conversion",
    "LoadReport": "conversion",
    "compute_metrics": "metrics",
}


if TYPE_CHECKING:  # what IDEs and type checkers see; at run time _LAZY imports on first use
    from .configuration_benthicnet import BenthicNetConfig
    from .constraint import MaxConstraint
    from .conversion import LoadReport, load_encoder_weights, save_encoder_safetensors
    from .image_processing import make_image_processor
    from .losses import HierarchicalLoss
    from .metrics import compute_metrics
    from .modeling_benthicnet import (
        BenthicNetClassifierOutput,
        BenthicNetForHierarchicalClassification,
        BenthicNetModel,
    )
    from .prediction import predict_paths
    from .widget_export import WidgetExportError, export_for_widget


def __getattr__(name: str) -> Any:
    if name == "Head":  # deprecated alias of Taxonomy, kept for one release
        from . import hierarchy

        return hierarchy.Head
    if name in _LAZY:
        module = import_module(f".{_LAZY[name]}", __name__)
        if _LAZY[name] == "configuration_benthicnet":
            import_module(".modeling_benthicnet", __name__)  # registers the Auto classes too
        return getattr(module, name)
    raise AttributeError(f"module 'benthicnet_hf' has no attribute {name!r}")


__all__ = [
    "Taxonomy",
    "Hierarchy",
    "HierarchyError",
    "LabelEncoder",
    "EncodedLabels",
    "UnknownLabelError",
    "decode",
    # lazy (listed literally, not *_LAZY, so IDEs and linters read them)
    "BenthicNetConfig",
    "BenthicNetModel",
    "BenthicNetForHierarchicalClassification",
    "BenthicNetClassifierOutput",
    "make_image_processor",
    "predict_paths",
    "export_for_widget",
    "WidgetExportError",
    "MaxConstraint",
    "HierarchicalLoss",
    "load_encoder_weights",
    "save_encoder_safetensors",
    "LoadReport",
    "compute_metrics",
]


def __dir__() -> list[str]:
    """Module globals plus the lazy names, so ``dir()`` and tab completion list them all."""
    return sorted(set(globals()) | set(__all__))

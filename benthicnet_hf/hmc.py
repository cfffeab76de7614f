"""Deprecated path of :mod:`benthicnet_hf.experiments.hmc` (the HMC reproduction moved out of the
core); kept for one release. ``import benthicnet_hf.hmc.train`` and friends keep working too."""

import sys
import warnings
from importlib import import_module

from .experiments.hmc import *  # noqa: F401,F403
from .experiments.hmc import __all__  # noqa: F401

# FutureWarning, not DeprecationWarning: the latter is hidden outside __main__ and this import
# usually happens in a user's script or notebook
warnings.warn(
    "benthicnet_hf.hmc moved to benthicnet_hf.experiments.hmc; the old path goes in the next release",
    FutureWarning,
    stacklevel=2,
)

# the old submodule paths alias the new modules (same objects, so isinstance checks agree)
for _name in ("arff", "ensemble_cost", "network", "preprocess", "rare", "train"):
    globals()[_name] = sys.modules[f"{__name__}.{_name}"] = import_module(f".experiments.hmc.{_name}", __package__)
del _name

"""Feature preprocessing of the HMC benchmarks: mean imputation, then standardisation.

Both are fitted on train+valid (train alone for train/test datasets) and applied to every split,
with sklearn's conventions: ``SimpleImputer(strategy="mean")`` then ``StandardScaler`` (population
standard deviation; a constant column keeps scale 1).

The C-HMCNN code additionally fills each split's NaNs with that split's *own* column means when
it parses the file (so its test rows are imputed from test statistics). ``imputation="per_split"``
reproduces that; the default ``"fit"`` uses the train+valid means for every split.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

IMPUTATIONS = ("fit", "per_split")


def impute_own_mean(x: np.ndarray) -> np.ndarray:
    """``(rows, F)`` with NaNs replaced by the column mean of ``x`` itself (all-NaN columns stay NaN)."""
    observed = ~np.isnan(x)
    counts = observed.sum(0)
    mean = np.where(counts > 0, np.where(observed, x, 0.0).sum(0) / np.maximum(counts, 1), np.nan)
    return np.where(observed, x, mean)


@dataclass(frozen=True)
class Standardizer:
    """Mean imputation + standardisation with statistics from the fitting rows.

    Attributes:
        mean_impute: ``(F,)`` column means of the fitting rows, NaNs ignored (0 for all-NaN columns).
        mean: ``(F,)`` mean after imputation.
        scale: ``(F,)`` population std after imputation, 1 where it is 0.
    """

    mean_impute: np.ndarray
    mean: np.ndarray
    scale: np.ndarray

    @classmethod
    def fit(cls, x: np.ndarray) -> "Standardizer":
        """Fit on ``(rows, F)`` float features with NaN for missing values."""
        if x.ndim != 2 or len(x) == 0:
            raise ValueError(f"expected a non-empty (rows, features) array, got shape {x.shape}")
        observed = ~np.isnan(x)
        counts = observed.sum(0)
        impute = np.where(counts > 0, np.where(observed, x, 0.0).sum(0) / np.maximum(counts, 1), 0.0)
        filled = np.where(observed, x, impute)
        mean = filled.mean(0)
        std = filled.std(0)
        return cls(impute, mean, np.where(std > 0, std, 1.0))

    def transform(self, x: np.ndarray) -> np.ndarray:
        """``(rows, F)`` → ``(rows, F)`` float64, imputed and standardised."""
        if x.shape[1] != len(self.mean):
            raise ValueError(f"expected {len(self.mean)} feature columns, got {x.shape[1]}")
        filled = np.where(np.isnan(x), self.mean_impute, x)
        return (filled - self.mean) / self.scale


def preprocess_splits(
    fit_on: list[np.ndarray], apply_to: dict[str, np.ndarray], imputation: str = "fit"
) -> dict[str, np.ndarray]:
    """Fit a :class:`Standardizer` on the concatenated ``fit_on`` arrays and transform ``apply_to``.

    With ``imputation="per_split"`` every array is first imputed with its own column means (the
    reference code's parser), then the fit/transform runs as usual.
    """
    if imputation not in IMPUTATIONS:
        raise ValueError(f"imputation must be one of {IMPUTATIONS}, got {imputation!r}")
    if imputation == "per_split":
        fit_on = [impute_own_mean(x) for x in fit_on]
        apply_to = {k: impute_own_mean(x) for k, x in apply_to.items()}
    std = Standardizer.fit(np.concatenate(fit_on))
    return {k: std.transform(x) for k, x in apply_to.items()}
